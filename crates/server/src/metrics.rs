//! The server's metrics, in the Prometheus text format (prometheus-client, whose OpenMetrics
//! output is rewritten as classic text for every scraper and `promtool`):
//! connections, handshake failures, requests, errors, disconnects, bytes, certificate expiry and
//! the store's size. Every label has a small fixed set of values: verbs, error and disconnect
//! codes, reasons; never a name, a room or an address.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::text::encode;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;
use tlschat_proto::{ErrorCode, Request, Target, Verb};

use crate::udp::UdpStats;

/// One label, both parts fixed strings.
type Labels = Vec<(&'static str, &'static str)>;

/// Every metric, registered once.
pub struct Metrics {
    /// Whether anything is counted: only with `--metrics`, so a server without the endpoint
    /// pays one branch per call and nothing else.
    enabled: bool,
    registry: Registry,
    connections_open: Gauge,
    connections: Family<Labels, Counter>,
    handshake_failures: Family<Labels, Counter>,
    requests: Family<Labels, Counter>,
    errors: Family<Labels, Counter>,
    disconnects: Family<Labels, Counter>,
    bytes_received: Counter,
    bytes_sent: Counter,
    certificate_expiry: Family<Labels, Gauge>,
    store_bytes: Gauge,
    cluster_people: Gauge,
    cluster_held: Gauge,
    tls_sessions: Family<Labels, Counter>,
    handshake_seconds: Histogram,
    messages_received: Family<Labels, Counter>,
    gaps: Counter,
    delivered: Counter,
    delivery_seconds: Histogram,
    outbox_bytes: Histogram,
    rate_limited: Counter,
    commit_seconds: Histogram,
    /// The per-request counters, made once: counting a request is a map look-up and an atomic
    /// increment, with no label built and nothing allocated.
    by_verb: HashMap<Verb, Counter>,
    by_code: HashMap<ErrorCode, Counter>,
    /// Messages received: room, direct, e2e.
    by_kind: [Counter; 3],
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Default for Metrics {
    /// Counting, with no UDP service.
    fn default() -> Self {
        Self::new(true, None)
    }
}

impl Metrics {
    /// The metrics; counting only when `enabled`. `udp`: the UDP service's counters, read at
    /// each scrape.
    pub fn new(enabled: bool, udp: Option<Arc<UdpStats>>) -> Self {
        let mut registry = Registry::default();
        let metrics = Self {
            enabled,
            connections_open: Gauge::default(),
            connections: Family::default(),
            handshake_failures: Family::default(),
            requests: Family::default(),
            errors: Family::default(),
            disconnects: Family::default(),
            bytes_received: Counter::default(),
            bytes_sent: Counter::default(),
            certificate_expiry: Family::default(),
            store_bytes: Gauge::default(),
            cluster_people: Gauge::default(),
            cluster_held: Gauge::default(),
            tls_sessions: Family::default(),
            // From half a millisecond to about a second.
            handshake_seconds: Histogram::new(exponential_buckets(0.0005, 2.0, 12)),
            messages_received: Family::default(),
            gaps: Counter::default(),
            delivered: Counter::default(),
            // From 50 µs to about 1.6 s.
            delivery_seconds: Histogram::new(exponential_buckets(0.000_05, 2.0, 16)),
            // From 64 bytes to 16 MiB.
            outbox_bytes: Histogram::new(exponential_buckets(64.0, 4.0, 10)),
            rate_limited: Counter::default(),
            // From 10 µs to about 0.3 s.
            commit_seconds: Histogram::new(exponential_buckets(0.000_01, 2.0, 16)),
            by_verb: HashMap::new(),
            by_code: HashMap::new(),
            by_kind: Default::default(),
            registry: Registry::default(),
        };
        let by_verb = Verb::ALL
            .iter()
            .map(|&verb| {
                let counter = metrics.requests.get_or_create(&vec![("verb", verb.name())]);
                (verb, counter.clone())
            })
            .collect();
        let by_code = ErrorCode::ALL
            .iter()
            .map(|&code| {
                let counter = metrics.errors.get_or_create(&vec![("code", code.as_str())]);
                (code, counter.clone())
            })
            .collect();
        let by_kind = ["room", "direct", "e2e"].map(|kind| {
            metrics
                .messages_received
                .get_or_create(&vec![("kind", kind)])
                .clone()
        });
        registry.register(
            "tlschat_connections_open",
            "Connections past the TLS handshake, now",
            metrics.connections_open.clone(),
        );
        registry.register(
            "tlschat_connections",
            "TCP connections by outcome: accepted, refused_limit (per-address limits), handshake_failed",
            metrics.connections.clone(),
        );
        registry.register(
            "tlschat_handshake_failures",
            "Failed TLS handshakes by reason: no_certificate, bad_certificate, revoked, timeout, protocol",
            metrics.handshake_failures.clone(),
        );
        registry.register(
            "tlschat_requests",
            "Requests by verb",
            metrics.requests.clone(),
        );
        registry.register(
            "tlschat_errors",
            "ERR replies by code",
            metrics.errors.clone(),
        );
        registry.register(
            "tlschat_disconnects",
            "Connections ended, by code: quit, peer_closed, shutdown, slow_consumer, kicked, replaced, nick_reclaimed, idle, flood, revoked, read_failed, write_failed, write_timeout, other",
            metrics.disconnects.clone(),
        );
        registry.register(
            "tlschat_bytes_received",
            "Bytes of requests read (after TLS)",
            metrics.bytes_received.clone(),
        );
        registry.register(
            "tlschat_bytes_sent",
            "Bytes of replies and events written (before TLS)",
            metrics.bytes_sent.clone(),
        );
        registry.register(
            "tlschat_certificate_expiry_timestamp_seconds",
            "When the server certificate, the CA and the revocation list (next update) run out",
            metrics.certificate_expiry.clone(),
        );
        registry.register(
            "tlschat_store_bytes",
            "Size of the message store on disk",
            metrics.store_bytes.clone(),
        );
        registry.register(
            "tlschat_cluster_people_elsewhere",
            "In a cluster: people connected to the other nodes (as their presence says)",
            metrics.cluster_people.clone(),
        );
        registry.register(
            "tlschat_cluster_held_messages",
            "In a cluster: messages held for an earlier id another node has not stored yet",
            metrics.cluster_held.clone(),
        );
        registry.register(
            "tlschat_tls_sessions",
            "TLS sessions by protocol version and key exchange group (X25519MLKEM768: post-quantum hybrid)",
            metrics.tls_sessions.clone(),
        );
        registry.register(
            "tlschat_handshake_duration_seconds",
            "Time from accepting a connection to the end of its TLS handshake",
            metrics.handshake_seconds.clone(),
        );
        registry.register(
            "tlschat_messages_received",
            "Messages received by kind: room, direct, e2e",
            metrics.messages_received.clone(),
        );
        registry.register(
            "tlschat_gaps",
            "Gaps told to readers that fell behind (EVENT GAP)",
            metrics.gaps.clone(),
        );
        registry.register(
            "tlschat_messages_delivered",
            "Messages (room, direct, e2e) written to recipients' sockets",
            metrics.delivered.clone(),
        );
        registry.register(
            "tlschat_delivery_latency_seconds",
            "From a message being queued for a recipient (after its commit, with the store) to the write that carries it completing; one observation per write, for the oldest message in it",
            metrics.delivery_seconds.clone(),
        );
        registry.register(
            "tlschat_outbox_bytes",
            "Bytes waiting in a connection's outbound queue when its writer takes them",
            metrics.outbox_bytes.clone(),
        );
        registry.register(
            "tlschat_rate_limited",
            "Requests refused by a rate limit (RATE_LIMITED)",
            metrics.rate_limited.clone(),
        );
        registry.register(
            "tlschat_store_commit_duration_seconds",
            "Time one group commit to the store takes (write, and sync with --fsync always)",
            metrics.commit_seconds.clone(),
        );
        if let Some(udp) = udp {
            registry.register_collector(Box::new(UdpCollector(udp)));
        }
        Self {
            registry,
            by_verb,
            by_code,
            by_kind,
            ..metrics
        }
    }
}

impl Metrics {
    /// A TCP connection accepted, refused by a per-address limit, or whose handshake failed.
    pub fn connection(&self, result: &'static str) {
        if !self.enabled {
            return;
        }
        self.connections
            .get_or_create(&vec![("result", result)])
            .inc();
    }

    /// A TLS handshake failed for `reason`.
    pub fn handshake_failed(&self, reason: &'static str) {
        if !self.enabled {
            return;
        }
        self.handshake_failures
            .get_or_create(&vec![("reason", reason)])
            .inc();
        self.connection("handshake_failed");
    }

    /// A connection is past its handshake (`opened`) or ended.
    pub fn connection_open(&self, opened: bool) {
        if !self.enabled {
            return;
        }
        if opened {
            self.connections_open.inc();
        } else {
            self.connections_open.dec();
        }
    }

    /// A request was read.
    pub fn request(&self, request: &Request) {
        if !self.enabled {
            return;
        }
        if let Some(counter) = self.by_verb.get(&request.verb()) {
            counter.inc();
        }
        let kind = match request {
            Request::Msg {
                target: Target::Room(_),
                ..
            } => 0,
            Request::Msg { .. } => 1,
            Request::E2e { .. } => 2,
            _ => return,
        };
        self.by_kind[kind].inc();
    }

    /// A TLS handshake finished after `seconds`, with this version and key exchange group
    /// (their names as rustls writes them).
    pub fn handshake_done(&self, seconds: f64, version: &str, group: &str) {
        if !self.enabled {
            return;
        }
        self.handshake_seconds.observe(seconds);
        let version = match version {
            "TLSv1_3" => "TLSv1_3",
            "TLSv1_2" => "TLSv1_2",
            _ => "other",
        };
        let group = match group {
            "X25519MLKEM768" => "X25519MLKEM768",
            "X25519" => "X25519",
            "secp256r1" => "secp256r1",
            "secp384r1" => "secp384r1",
            _ => "other",
        };
        self.tls_sessions
            .get_or_create(&vec![("version", version), ("group", group)])
            .inc();
    }

    /// `count` gaps were told to a reader.
    pub fn gaps(&self, count: usize) {
        if !self.enabled {
            return;
        }
        self.gaps.inc_by(count as u64);
    }

    /// An `ERR` reply was sent.
    pub fn error(&self, code: ErrorCode) {
        if !self.enabled {
            return;
        }
        if let Some(counter) = self.by_code.get(&code) {
            counter.inc();
        }
        if code == ErrorCode::RateLimited {
            self.rate_limited.inc();
        }
    }

    /// A connection ended, for `why` (`quit`, `peer_closed`, a disconnect code in lower case…).
    pub fn disconnect(&self, why: &'static str) {
        if !self.enabled {
            return;
        }
        self.disconnects.get_or_create(&vec![("code", why)]).inc();
    }

    /// A write to a client completed, carrying `messages` messages, the oldest of them queued
    /// `waited` before.
    pub fn delivered(&self, messages: u64, waited: Duration) {
        if !self.enabled {
            return;
        }
        self.delivered.inc_by(messages);
        self.delivery_seconds.observe(waited.as_secs_f64());
    }

    /// A connection's writer took `bytes` from its outbound queue.
    pub fn outbox(&self, bytes: usize) {
        if !self.enabled {
            return;
        }
        self.outbox_bytes.observe(bytes as f64);
    }

    /// A group commit to the store took `took`.
    pub fn committed(&self, took: Duration) {
        if !self.enabled {
            return;
        }
        self.commit_seconds.observe(took.as_secs_f64());
    }

    /// Bytes read from a client.
    pub fn received(&self, bytes: usize) {
        if !self.enabled {
            return;
        }
        self.bytes_received.inc_by(bytes as u64);
    }

    /// Bytes written to a client.
    pub fn sent(&self, bytes: usize) {
        if !self.enabled {
            return;
        }
        self.bytes_sent.inc_by(bytes as u64);
    }

    /// When `what` (`server`, `ca`, `crl`) runs out, seconds since 1970.
    pub fn set_expiry(&self, what: &'static str, at: i64) {
        self.certificate_expiry
            .get_or_create(&vec![("cert", what)])
            .set(at);
    }

    /// The store's size on disk.
    pub fn set_store_bytes(&self, bytes: u64) {
        self.store_bytes
            .set(i64::try_from(bytes).unwrap_or(i64::MAX));
    }

    /// In a cluster: people on the other nodes, and messages held for an earlier id.
    pub fn set_cluster(&self, people: usize, held: usize) {
        self.cluster_people
            .set(i64::try_from(people).unwrap_or(i64::MAX));
        self.cluster_held
            .set(i64::try_from(held).unwrap_or(i64::MAX));
    }

    /// Everything, in the OpenMetrics text format.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing to a String cannot fail.
        let _ = encode(&mut out, &self.registry);
        out
    }

    /// Everything, in the classic Prometheus text format (version 0.0.4), which every scraper
    /// and `promtool check metrics` read: as [`encode`](Self::encode), with a counter's help and
    /// type under its sample name (`x_total`) and no `# EOF`.
    pub fn encode_prometheus(&self) -> String {
        openmetrics_to_prometheus(&self.encode())
    }
}

/// The UDP service's datagram counters, read at each scrape: `tlschat_udp_datagrams_total` by
/// result. Every result is written (zero until seen), so a dashboard has every series.
#[derive(Debug)]
struct UdpCollector(Arc<UdpStats>);

/// The results a datagram can have, as labels: what the service counts, with every malformed
/// kind as `malformed`.
const UDP_RESULTS: [&str; 13] = [
    "answered",
    "malformed",
    "not_a_request",
    "stale",
    "expired_cert",
    "unknown_key",
    "key_mismatch",
    "untrusted_cert",
    "replayed",
    "too_old",
    "bad_signature",
    "amplification",
    "revoked",
];

impl Collector for UdpCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let mut counts = [0u64; UDP_RESULTS.len()];
        for (name, count) in self.0.snapshot() {
            let index = UDP_RESULTS.iter().position(|r| *r == name).unwrap_or(1);
            counts[index] += count;
        }
        let mut family = encoder.encode_descriptor(
            "tlschat_udp_datagrams",
            "UDP datagrams by result: answered, or why dropped",
            None,
            ConstCounter::new(0u64).metric_type(),
        )?;
        for (result, count) in UDP_RESULTS.iter().zip(counts) {
            let labels = [("result", *result)];
            ConstCounter::new(count).encode(family.encode_family(&labels)?)?;
        }
        Ok(())
    }
}

/// Rewrites OpenMetrics text as classic Prometheus text (see [`Metrics::encode_prometheus`]).
fn openmetrics_to_prometheus(text: &str) -> String {
    let counters: Vec<&str> = text
        .lines()
        .filter_map(|line| line.strip_prefix("# TYPE "))
        .filter_map(|rest| rest.strip_suffix(" counter"))
        .collect();
    let mut out = String::with_capacity(text.len());
    for line in text.lines() {
        if line == "# EOF" {
            continue;
        }
        let renamed = ["# HELP ", "# TYPE "].iter().find_map(|prefix| {
            let rest = line.strip_prefix(prefix)?;
            let (name, tail) = rest.split_once(' ')?;
            counters
                .contains(&name)
                .then(|| format!("{prefix}{name}_total {tail}"))
        });
        out.push_str(renamed.as_deref().unwrap_or(line));
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_and_gauges_are_written_with_their_labels() {
        let metrics = Metrics::default();
        metrics.connection("accepted");
        metrics.handshake_failed("revoked");
        let msg = Request::Msg {
            target: Target::Room("#a".into()),
            text: "hi".into(),
        };
        metrics.request(&msg);
        metrics.request(&msg);
        metrics.handshake_done(0.002, "TLSv1_3", "X25519MLKEM768");
        metrics.error(ErrorCode::NotInRoom);
        metrics.connection_open(true);
        metrics.set_expiry("server", 1_900_000_000);
        let text = metrics.encode();
        for line in [
            "tlschat_connections_total{result=\"accepted\"} 1",
            "tlschat_connections_total{result=\"handshake_failed\"} 1",
            "tlschat_handshake_failures_total{reason=\"revoked\"} 1",
            "tlschat_requests_total{verb=\"MSG\"} 2",
            "tlschat_messages_received_total{kind=\"room\"} 2",
            "tlschat_tls_sessions_total{version=\"TLSv1_3\",group=\"X25519MLKEM768\"} 1",
            "tlschat_handshake_duration_seconds_count 1",
            "tlschat_errors_total{code=\"NOT_IN_ROOM\"} 1",
            "tlschat_connections_open 1",
            "tlschat_certificate_expiry_timestamp_seconds{cert=\"server\"} 1900000000",
        ] {
            assert!(text.contains(line), "{line} in\n{text}");
        }
        assert!(text.ends_with("# EOF\n"));
        let classic = metrics.encode_prometheus();
        assert!(
            classic.contains("# TYPE tlschat_requests_total counter\n"),
            "{classic}"
        );
        assert!(classic.contains("# HELP tlschat_requests_total Requests by verb."));
        assert!(classic.contains("# TYPE tlschat_connections_open gauge\n"));
        assert!(!classic.contains("# EOF"));
    }
}
