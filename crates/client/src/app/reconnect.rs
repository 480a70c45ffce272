//! When and how the interactive clients (chat and TUI) reconnect: exponential backoff with
//! jitter. The disconnect codes after which coming back would be wrong are
//! `DisconnectCode::is_final`.

use std::time::{Duration, SystemTime};

/// First wait before reconnecting.
pub(crate) const FIRST_BACKOFF: Duration = Duration::from_millis(500);

/// Longest wait between reconnection attempts.
pub(crate) const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// The wait after `wait`: doubled, at most [`MAX_BACKOFF`].
pub(crate) fn next_backoff(wait: Duration) -> Duration {
    (wait * 2).min(MAX_BACKOFF)
}

/// Spreads reconnection attempts by up to ±20 % so clients of a restarted server do not all
/// return at once.
pub(crate) fn jitter(wait: Duration) -> Duration {
    let nanos = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    let factor = 0.8 + 0.4 * f64::from(nanos % 1000) / 1000.0;
    wait.mul_f64(factor)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_the_cap_and_jitter_stays_within_a_fifth() {
        assert_eq!(next_backoff(FIRST_BACKOFF), Duration::from_secs(1));
        assert_eq!(next_backoff(Duration::from_secs(20)), MAX_BACKOFF);
        for _ in 0..100 {
            let j = jitter(Duration::from_secs(10));
            assert!(
                j >= Duration::from_secs(8) && j <= Duration::from_secs(12),
                "{j:?}"
            );
        }
    }
}
