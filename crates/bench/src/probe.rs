//! The server's CPU time and resident memory, from `/proc/<pid>` (Linux).

use std::io;

/// Clock ticks per second of `/proc/<pid>/stat` times (`getconf CLK_TCK`; 100 on Linux).
const CLK_TCK: f64 = 100.0;

/// Reads the counters of the server's processes (several: a cluster's nodes and its NATS),
/// summed.
#[derive(Debug, Clone)]
pub struct Probe {
    pids: Vec<u32>,
}

impl Probe {
    /// A probe for process `pid`.
    pub fn new(pid: u32) -> Self {
        Self { pids: vec![pid] }
    }

    /// A probe for all of `pids`, summed.
    pub fn of(pids: Vec<u32>) -> Self {
        Self { pids }
    }

    /// CPU time used so far (user + system, all threads, all processes), in microseconds.
    pub fn cpu_us(&self) -> io::Result<u64> {
        self.pids.iter().map(|&pid| cpu_us_of(pid)).sum()
    }

    /// Resident memory now, in KiB (all processes).
    pub fn rss_kib(&self) -> io::Result<u64> {
        self.pids.iter().map(|&pid| rss_kib_of(pid)).sum()
    }
}

/// CPU time process `pid` used so far (user + system, all threads), in microseconds.
fn cpu_us_of(pid: u32) -> io::Result<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // Fields after the command name, which is in parentheses and may hold spaces.
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or_default();
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| -> io::Result<f64> {
        fields
            .get(i)
            .and_then(|f| f.parse::<f64>().ok())
            .ok_or_else(|| io::Error::other("unexpected /proc/PID/stat format"))
    };
    // utime and stime are fields 14 and 15 of the line; 12 and 13 after the name.
    let total = ticks(11)? + ticks(12)?;
    Ok((total / CLK_TCK * 1e6) as u64)
}

/// Resident memory of process `pid` now, in KiB.
fn rss_kib_of(pid: u32) -> io::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .ok_or_else(|| io::Error::other("no VmRSS in /proc/PID/status"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_its_own_process() {
        let probe = Probe::new(std::process::id());
        let before = probe.cpu_us().unwrap();
        let mut x = 0u64;
        for i in 0..50_000_000u64 {
            x = x.wrapping_add(i * i);
        }
        assert!(x > 0);
        assert!(probe.cpu_us().unwrap() >= before);
        assert!(probe.rss_kib().unwrap() > 100);
    }
}
