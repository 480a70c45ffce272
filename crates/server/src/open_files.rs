//! The process's open-file limit. Every connection is an open file; a `max-connections` above
//! what the limit allows is reported once at startup, instead of only as `accept` failures
//! when the server is busiest. The server does not raise the limit itself: that is the
//! operator's call (`ulimit -n`, systemd's `LimitNOFILE=`).

/// Files the server keeps open besides its connections (listeners, the runtime's event queue,
/// standard streams, certificate reloads), with room to spare.
pub const RESERVED_FILES: u64 = 64;

/// The soft open-file limit (`ulimit -n`), where the platform tells it: Linux, from
/// `/proc/self/limits`. `None` when it is unlimited or cannot be read.
pub fn soft_limit() -> Option<u64> {
    #[cfg(target_os = "linux")]
    {
        std::fs::read_to_string("/proc/self/limits")
            .ok()
            .and_then(|limits| parse_soft_limit(&limits))
    }
    #[cfg(not(target_os = "linux"))]
    {
        None
    }
}

/// The most connections a soft limit of `files` leaves room for, when that is fewer than
/// `max_connections`; `None` when the limit has room for all of them.
pub fn shortfall(max_connections: usize, files: u64) -> Option<u64> {
    let room = files.saturating_sub(RESERVED_FILES);
    (max_connections as u64 > room).then_some(room)
}

/// The soft limit from the text of `/proc/self/limits` (`None` for "unlimited").
fn parse_soft_limit(limits: &str) -> Option<u64> {
    let rest = limits
        .lines()
        .find_map(|line| line.strip_prefix("Max open files"))?;
    rest.split_whitespace().next()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: &str = "\
Limit                     Soft Limit           Hard Limit           Units
Max processes             unlimited            unlimited            processes
Max open files            1024                 524288               files
Max locked memory         8388608              8388608              bytes
";

    #[test]
    fn the_soft_limit_is_read_from_the_limits_table() {
        assert_eq!(parse_soft_limit(LIMITS), Some(1024));
        assert_eq!(
            parse_soft_limit(&LIMITS.replace("1024  ", "unlimited")),
            None
        );
        assert_eq!(parse_soft_limit("Limit  Soft Limit\n"), None);
    }

    #[test]
    fn a_shortfall_starts_one_connection_past_the_room_the_limit_leaves() {
        assert_eq!(shortfall(960, 1024), None);
        assert_eq!(shortfall(961, 1024), Some(960));
        assert_eq!(shortfall(10_000, 1024), Some(960));
        assert_eq!(shortfall(1, 10), Some(0));
        assert_eq!(shortfall(10_000, 20_000), None);
    }
}
