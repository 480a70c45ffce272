//! Results of a run: counts, rate and latency percentiles.

use std::time::Duration;

use hdrhistogram::Histogram;
use serde::Serialize;

/// What a run measured.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// The mode, such as `echo` or `udp`.
    pub mode: String,
    /// Requests answered.
    pub requests: u64,
    /// Requests that failed (no reply, error reply, connection lost).
    pub failed: u64,
    /// Wall-clock time of the measured part, in seconds.
    pub seconds: f64,
    /// Answered requests per second.
    pub per_second: f64,
    /// Latency percentiles, in microseconds.
    pub latency_us: Latency,
}

/// Latency percentiles, in microseconds.
#[derive(Debug, Clone, Serialize)]
pub struct Latency {
    /// Median.
    pub p50: u64,
    /// 90th percentile.
    pub p90: u64,
    /// 99th percentile.
    pub p99: u64,
    /// Largest seen.
    pub max: u64,
}

/// A latency recorder (1 µs to 60 s, 3 significant digits).
pub struct Recorder {
    histogram: Histogram<u64>,
}

impl Default for Recorder {
    fn default() -> Self {
        Self::new()
    }
}

impl Recorder {
    /// An empty recorder.
    pub fn new() -> Self {
        Self {
            // The bounds are constants that hdrhistogram accepts.
            histogram: Histogram::new_with_bounds(1, 60_000_000, 3)
                .expect("valid histogram bounds"),
        }
    }

    /// Records one latency (saturating at the upper bound).
    pub fn record(&mut self, latency: Duration) {
        let micros = u64::try_from(latency.as_micros()).unwrap_or(u64::MAX);
        self.histogram.saturating_record(micros.max(1));
    }

    /// Adds another recorder's samples.
    pub fn merge(&mut self, other: &Self) {
        // Both histograms have the same bounds, so adding cannot fail.
        let _ = self.histogram.add(&other.histogram);
    }

    /// Samples recorded.
    pub fn count(&self) -> u64 {
        self.histogram.len()
    }

    /// The report for a run that took `elapsed`.
    pub fn report(&self, mode: &str, failed: u64, elapsed: Duration) -> Report {
        let seconds = elapsed.as_secs_f64();
        let h = &self.histogram;
        Report {
            mode: mode.to_owned(),
            requests: h.len(),
            failed,
            seconds,
            per_second: if seconds > 0.0 {
                h.len() as f64 / seconds
            } else {
                0.0
            },
            latency_us: Latency {
                p50: h.value_at_quantile(0.50),
                p90: h.value_at_quantile(0.90),
                p99: h.value_at_quantile(0.99),
                max: h.max(),
            },
        }
    }
}

impl Report {
    /// A markdown table row: mode, requests, failed, req/s, p50, p90, p99, max (ms).
    pub fn table_row(&self) -> String {
        let ms = |us: u64| format!("{:.3}", us as f64 / 1000.0);
        format!(
            "| {} | {} | {} | {:.0} | {} | {} | {} | {} |",
            self.mode,
            self.requests,
            self.failed,
            self.per_second,
            ms(self.latency_us.p50),
            ms(self.latency_us.p90),
            ms(self.latency_us.p99),
            ms(self.latency_us.max)
        )
    }

    /// The markdown table header matching [`table_row`](Self::table_row).
    pub fn table_header() -> &'static str {
        "| mode | requests | failed | req/s | p50 ms | p90 ms | p99 ms | max ms |\n|---|---|---|---|---|---|---|---|"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_come_from_the_samples() {
        let mut recorder = Recorder::new();
        for us in 1..=100 {
            recorder.record(Duration::from_micros(us * 10));
        }
        let report = recorder.report("echo", 2, Duration::from_secs(2));
        assert_eq!(report.requests, 100);
        assert_eq!(report.failed, 2);
        assert!((report.per_second - 50.0).abs() < 1e-9);
        assert!(
            (495..=505).contains(&report.latency_us.p50),
            "{:?}",
            report.latency_us
        );
        assert!(
            (985..=995).contains(&report.latency_us.p99),
            "{:?}",
            report.latency_us
        );
        assert!(report.table_row().starts_with("| echo | 100 | 2 | 50 |"));
    }
}
