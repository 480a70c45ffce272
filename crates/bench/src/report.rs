//! Results of a run: counts, rates, latency percentiles and server cost per operation.

use std::time::Duration;

use hdrhistogram::Histogram;
use serde::Serialize;

/// What a run measured.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Report {
    /// The workload: `fanout`, `echo`, `connect`, `hold`, `udp`.
    pub mode: String,
    /// The server under test: `tlschat`, `nats`, `ncat`.
    pub target: String,
    /// What one operation is: deliveries, replies, handshakes, connections, requests.
    pub op: String,
    /// Operations completed in the measured part.
    pub ops: u64,
    /// Operations that failed (no reply, error reply, refused connection).
    pub errors: u64,
    /// Fan-out: messages some subscriber never received.
    pub lost: u64,
    /// Fan-out: messages a subscriber received twice.
    pub duplicated: u64,
    /// Fan-out: messages that arrived before one sent earlier by the same sender.
    pub reordered: u64,
    /// Wall-clock time of the measured part, seconds.
    pub seconds: f64,
    /// Operations per second.
    pub per_second: f64,
    /// Payload megabytes (10^6) per second delivered.
    pub mb_per_s: f64,
    /// Latency percentiles, microseconds (for operations that have one).
    pub latency_us: Option<Latency>,
    /// Server CPU time (user + system) per operation, microseconds (with `--server-pid`).
    pub server_cpu_us_per_op: Option<f64>,
    /// Server resident memory per connection held, KiB (mode `hold`).
    pub server_rss_kib_per_conn: Option<f64>,
    /// Mode `hold` with `--fanout`: the fan-out run while the connections were held.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub while_held: Option<Box<Self>>,
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
#[derive(Clone)]
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

    /// The percentiles, or `None` with no samples.
    pub fn latency(&self) -> Option<Latency> {
        let h = &self.histogram;
        (!h.is_empty()).then(|| Latency {
            p50: h.value_at_quantile(0.50),
            p90: h.value_at_quantile(0.90),
            p99: h.value_at_quantile(0.99),
            max: h.max(),
        })
    }
}

impl Report {
    /// Fills the rates from `ops`, `bytes` and `elapsed`, and the CPU cost from `cpu_us`.
    pub fn finish(mut self, elapsed: Duration, bytes: u64, cpu_us: Option<u64>) -> Self {
        self.seconds = elapsed.as_secs_f64();
        if self.seconds > 0.0 {
            self.per_second = self.ops as f64 / self.seconds;
            self.mb_per_s = bytes as f64 / 1e6 / self.seconds;
        }
        if let (Some(cpu), true) = (cpu_us, self.ops > 0) {
            self.server_cpu_us_per_op = Some(cpu as f64 / self.ops as f64);
        }
        self
    }

    /// The markdown table header matching [`table_row`](Self::table_row).
    pub fn table_header() -> &'static str {
        "| target | mode | ops | op/s | MB/s | p50 ms | p99 ms | max ms | server CPU µs/op | RSS KiB/conn | errors | lost/dup/reordered |\n|---|---|---|---|---|---|---|---|---|---|---|---|"
    }

    /// The markdown table rows: this report's, then the one run while its connections were
    /// held, if any.
    pub fn table_rows(&self) -> String {
        match &self.while_held {
            Some(during) => format!("{}\n{}", self.table_row(), during.table_row()),
            None => self.table_row(),
        }
    }

    /// One markdown table row.
    pub fn table_row(&self) -> String {
        let ms = |us: u64| format!("{:.3}", us as f64 / 1000.0);
        let (p50, p99, max) = match &self.latency_us {
            Some(l) => (ms(l.p50), ms(l.p99), ms(l.max)),
            None => ("-".into(), "-".into(), "-".into()),
        };
        let opt = |v: Option<f64>| v.map_or("-".to_owned(), |v| format!("{v:.2}"));
        format!(
            "| {} | {} | {} {} | {:.0} | {:.1} | {p50} | {p99} | {max} | {} | {} | {} | {}/{}/{} |",
            self.target,
            self.mode,
            self.ops,
            self.op,
            self.per_second,
            self.mb_per_s,
            opt(self.server_cpu_us_per_op),
            opt(self.server_rss_kib_per_conn),
            self.errors,
            self.lost,
            self.duplicated,
            self.reordered
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_and_costs_follow_from_the_counts() {
        let mut recorder = Recorder::new();
        for us in 1..=100 {
            recorder.record(Duration::from_micros(us * 10));
        }
        let latency = recorder.latency().unwrap();
        assert!((495..=505).contains(&latency.p50), "{latency:?}");
        assert!((985..=995).contains(&latency.p99), "{latency:?}");
        let report = Report {
            mode: "fanout".into(),
            target: "tlschat".into(),
            op: "deliveries".into(),
            ops: 1000,
            latency_us: Some(latency),
            ..Report::default()
        }
        .finish(Duration::from_secs(2), 2_000_000, Some(500));
        assert!((report.per_second - 500.0).abs() < 1e-9);
        assert!((report.mb_per_s - 1.0).abs() < 1e-9);
        assert_eq!(report.server_cpu_us_per_op, Some(0.5));
        assert!(report
            .table_row()
            .starts_with("| tlschat | fanout | 1000 deliveries | 500 | 1.0 |"));
        assert!(Recorder::new().latency().is_none());
    }
}
