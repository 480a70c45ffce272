//! The wall clock, as the protocol counts it: milliseconds and microseconds since the Unix
//! epoch (timestamps of datagrams and sealed messages, sequence-number starts).

use std::time::SystemTime;

/// Microseconds since the Unix epoch: where sequence numbers start.
pub fn now_micros() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}
