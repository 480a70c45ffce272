//! Default protocol limits shared by both sides.
//!
//! Every limit here is a default: the server exposes each one as a configuration value, and the
//! client uses the same defaults for what it accepts from the server.

/// Longest request or reply line accepted, in bytes, not counting the `\n` (or `\r\n`) ending it.
///
/// 64 KiB: long enough for any chat message a person types, short enough that a hostile peer
/// cannot make the other side buffer much. A longer line is answered with `ERR LINE_TOO_LONG`
/// and discarded as it arrives, without being buffered whole.
pub const DEFAULT_MAX_LINE_LEN: usize = 64 * 1024;

/// Lowest number `NUMBER` accepts.
pub const NUMBER_MIN: i64 = 1;

/// Highest number `NUMBER` accepts.
pub const NUMBER_MAX: i64 = 100;

/// Lowest number `LUCKY` answers with.
pub const LUCKY_MIN: u32 = 1;

/// Highest number `LUCKY` answers with.
pub const LUCKY_MAX: u32 = 100;

/// Most integers one `SUM` request may add up.
pub const SUM_MAX_TERMS: usize = 1024;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_defaults_are_the_documented_ones() {
        // docs/PROTOCOL.md and README.md give these numbers.
        assert_eq!(DEFAULT_MAX_LINE_LEN, 65_536);
        assert_eq!(SUM_MAX_TERMS, 1024);
        assert_eq!((LUCKY_MAX, NUMBER_MIN, NUMBER_MAX), (100, 1, 100));
    }
}
