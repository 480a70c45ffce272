//! The workloads. Each connects first, then measures: wall time, the server's CPU time (with a
//! probe) and, per operation, latency.

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tlschat_client::udp::{UdpClient, UdpOptions};
use tlschat_client::ClientConfig;
use tlschat_proto::Reply;
use tokio::io::AsyncWriteExt;

use crate::probe::Probe;
use crate::report::{Recorder, Report};
use crate::target::{Conn, Endpoint, Kind, Writer};

/// What every mode needs.
#[derive(Clone)]
pub struct Setup {
    /// Where to connect.
    pub endpoint: Endpoint,
    /// The server's process, for CPU and memory figures.
    pub probe: Option<Probe>,
    /// Every run stops here, whatever is left.
    pub deadline: Duration,
}

impl Setup {
    fn cpu(&self) -> Option<u64> {
        self.probe.as_ref().and_then(|p| p.cpu_us().ok())
    }

    fn report(&self, mode: &str, op: &str) -> Report {
        Report {
            mode: mode.to_owned(),
            target: self.endpoint.kind.to_string(),
            op: op.to_owned(),
            ..Report::default()
        }
    }
}

/// A fan-out load.
#[derive(Debug, Clone, Copy)]
pub struct Fanout {
    /// Subscribers, each receiving every message.
    pub subscribers: usize,
    /// Senders, sharing the messages.
    pub senders: usize,
    /// Messages in all (each delivered to every subscriber).
    pub messages: u64,
    /// Payload size in bytes (at least 32).
    pub size: usize,
    /// Messages a second across senders; `None`: as fast as the window allows.
    pub rate: Option<u64>,
    /// Most messages sent but not yet received by every subscriber, at full speed.
    pub window: u64,
}

/// Messages written per write at full speed.
const BATCH: u64 = 32;

/// Fan-out: senders publish to a room every subscriber is in. The phases: connect, start the
/// subscribers' readers, warm up until every subscription is live, send (measured), gather.
pub async fn fanout(setup: &Setup, load: Fanout) -> anyhow::Result<Report> {
    let (subscribers, senders) = connect_fanout(&setup.endpoint, load).await?;
    let run = FanoutRun::new(load);
    let sub_tasks = run.spawn_subscribers(subscribers);
    let (mut writers, reply_tasks): (Vec<_>, Vec<_>) = senders
        .into_iter()
        .map(|conn| {
            let (mut reader, writer) = conn.split();
            (
                writer,
                tokio::spawn(async move { reader.count_replies().await }),
            )
        })
        .unzip();
    run.warm_up(setup.endpoint.kind, &mut writers[0]).await?;

    let cpu_before = setup.cpu();
    let measured_from = Instant::now();
    let send_tasks = run.spawn_senders(setup.endpoint.kind, writers);
    let tallies = run.gather(sub_tasks, setup.deadline).await?;
    let elapsed = measured_from.elapsed();
    let cpu_after = setup.cpu();
    run.stop.store(true, Ordering::Relaxed);
    for task in send_tasks {
        task.await??;
    }
    drop(reply_tasks);
    let cpu = cpu_before.zip(cpu_after).map(|(b, a)| a.saturating_sub(b));
    Ok(fanout_report(setup, load, &tallies, elapsed, cpu))
}

/// Connects the subscribers (each in its own room for the warm-up, as every target needs) and
/// the senders.
async fn connect_fanout(
    endpoint: &Endpoint,
    load: Fanout,
) -> anyhow::Result<(Vec<Conn>, Vec<Conn>)> {
    let mut subscribers = Vec::with_capacity(load.subscribers);
    for i in 0..load.subscribers {
        // A person's second session is in the room already (membership is the person's):
        // its JOIN is answered OK all the same.
        let (mut conn, name) = endpoint.connect_subscriber(i).await?;
        conn.join(&name).await?;
        subscribers.push(conn);
    }
    let mut senders = Vec::with_capacity(load.senders);
    for i in 0..load.senders {
        let mut conn = endpoint.connect(load.subscribers + i).await?;
        conn.join(&format!("pub{i}")).await?;
        senders.push(conn);
    }
    Ok((subscribers, senders))
}

/// What the tasks of one fan-out run share.
struct FanoutRun {
    load: Fanout,
    started: Instant,
    stop: Arc<AtomicBool>,
    /// Distinct messages each subscriber has received.
    received: Arc<Vec<AtomicU64>>,
    /// Whether each subscriber has seen the warm-up.
    ready: Arc<Vec<AtomicBool>>,
    per_sender: u64,
}

impl FanoutRun {
    fn new(load: Fanout) -> Self {
        Self {
            load,
            started: Instant::now(),
            stop: Arc::new(AtomicBool::new(false)),
            received: Arc::new((0..load.subscribers).map(|_| AtomicU64::new(0)).collect()),
            ready: Arc::new(
                (0..load.subscribers)
                    .map(|_| AtomicBool::new(false))
                    .collect(),
            ),
            per_sender: load.messages.div_ceil(load.senders as u64),
        }
    }

    /// One reader task per subscriber, tallying what arrives until it has every message.
    fn spawn_subscribers(&self, subscribers: Vec<Conn>) -> Vec<tokio::task::JoinHandle<Tally>> {
        subscribers
            .into_iter()
            .enumerate()
            .map(|(i, conn)| {
                let (mut reader, writer) = conn.split();
                let (received, ready, stop) =
                    (self.received.clone(), self.ready.clone(), self.stop.clone());
                let (expected, senders) = (self.load.messages, self.load.senders);
                let (per_sender, started) = (self.per_sender, self.started);
                tokio::spawn(async move {
                    let _writer = writer;
                    let mut tally = Tally::new(senders, per_sender);
                    while tally.unique < expected && !stop.load(Ordering::Relaxed) {
                        let Ok(Some(payload)) = reader.next_payload().await else {
                            break;
                        };
                        match parse_payload(&payload) {
                            Some(Stamp::Warmup) => ready[i].store(true, Ordering::Relaxed),
                            Some(Stamp::Message {
                                sender,
                                seq,
                                sent_ns,
                            }) => {
                                let now = started.elapsed().as_nanos() as u64;
                                let latency = Duration::from_nanos(now.saturating_sub(sent_ns));
                                tally.record(sender, seq, latency);
                                received[i].store(tally.unique, Ordering::Relaxed);
                            }
                            None => {}
                        }
                    }
                    tally
                })
            })
            .collect()
    }

    /// Publishes warm-up messages until every subscriber has seen one: subscriptions are then
    /// live on every target.
    async fn warm_up(&self, kind: Kind, writer: &mut Writer) -> anyhow::Result<()> {
        let deadline = Instant::now() + Duration::from_secs(10);
        while !self.ready.iter().all(|r| r.load(Ordering::Relaxed)) {
            anyhow::ensure!(
                Instant::now() < deadline,
                "subscribers never saw the warm-up message"
            );
            let mut buf = Vec::new();
            Conn::encode_publish(kind, &pad("@W:", self.load.size), &mut buf);
            writer.write_all(&buf).await?;
            writer.flush().await?;
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Ok(())
    }

    /// One task per sender: at the given rate, or as fast as the window allows.
    fn spawn_senders(
        &self,
        kind: Kind,
        writers: Vec<Writer>,
    ) -> Vec<tokio::task::JoinHandle<std::io::Result<u64>>> {
        let sent_total = Arc::new(AtomicU64::new(0));
        let load = self.load;
        writers
            .into_iter()
            .enumerate()
            .map(|(s, mut writer)| {
                let (received, stop, sent_total) =
                    (self.received.clone(), self.stop.clone(), sent_total.clone());
                let count = self
                    .per_sender
                    .min(load.messages.saturating_sub(self.per_sender * s as u64));
                let started = self.started;
                tokio::spawn(async move {
                    let mut buf = Vec::with_capacity(load.size * BATCH as usize + 64);
                    let mut ticker = load.rate.map(|rate| ticker(rate, load.senders));
                    let mut seq = 0;
                    while seq < count && !stop.load(Ordering::Relaxed) {
                        let batch = match &mut ticker {
                            Some(ticker) => {
                                ticker.tick().await;
                                1
                            }
                            None => {
                                let window = (received.as_slice(), &*sent_total, load.window);
                                if !wait_for_window(window, &stop).await {
                                    return Ok(seq);
                                }
                                BATCH.min(count - seq)
                            }
                        };
                        buf.clear();
                        for _ in 0..batch {
                            let stamp = format!("@{s}:{seq}:{}:", started.elapsed().as_nanos());
                            Conn::encode_publish(kind, &pad(&stamp, load.size), &mut buf);
                            seq += 1;
                        }
                        writer.write_all(&buf).await?;
                        writer.flush().await?;
                        sent_total.fetch_add(batch, Ordering::Relaxed);
                    }
                    Ok(seq)
                })
            })
            .collect()
    }

    /// Waits for every subscriber's tally, within the run's deadline.
    async fn gather(
        &self,
        sub_tasks: Vec<tokio::task::JoinHandle<Tally>>,
        limit: Duration,
    ) -> anyhow::Result<Vec<Tally>> {
        let deadline = tokio::time::sleep(limit);
        tokio::pin!(deadline);
        let mut tallies = Vec::new();
        for task in sub_tasks {
            tokio::select! {
                tally = task => tallies.push(tally?),
                () = &mut deadline => {
                    self.stop.store(true, Ordering::Relaxed);
                    anyhow::bail!("the run passed its deadline of {limit:?}");
                }
            }
        }
        Ok(tallies)
    }
}

/// A sender's share of `rate` messages a second, as a ticker.
fn ticker(rate: u64, senders: usize) -> tokio::time::Interval {
    let per_sender_rate = (rate / senders as u64).max(1);
    let mut interval = tokio::time::interval(Duration::from_nanos(1_000_000_000 / per_sender_rate));
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    interval
}

/// Waits until at most `window` messages are in flight towards the slowest subscriber; false
/// when the run stops first.
async fn wait_for_window(
    (received, sent_total, window): (&[AtomicU64], &AtomicU64, u64),
    stop: &AtomicBool,
) -> bool {
    let slowest = || {
        received
            .iter()
            .map(|r| r.load(Ordering::Relaxed))
            .min()
            .unwrap_or(0)
    };
    while sent_total.load(Ordering::Relaxed) > slowest() + window {
        if stop.load(Ordering::Relaxed) {
            return false;
        }
        tokio::time::sleep(Duration::from_micros(200)).await;
    }
    true
}

/// The fan-out's report from the subscribers' tallies.
fn fanout_report(
    setup: &Setup,
    load: Fanout,
    tallies: &[Tally],
    elapsed: Duration,
    cpu: Option<u64>,
) -> Report {
    let mut report = setup.report("fanout", "deliveries");
    let mut latency = Recorder::new();
    for tally in tallies {
        report.ops += tally.unique;
        report.lost += load.messages - tally.unique;
        report.duplicated += tally.duplicated;
        report.reordered += tally.reordered;
        latency.merge(&tally.latency);
    }
    report.latency_us = latency.latency();
    let bytes = report.ops * load.size as u64;
    report.finish(elapsed, bytes, cpu)
}

/// `payload` padded with `x` to `size` bytes (never cut).
fn pad(stamp: &str, size: usize) -> String {
    let mut payload = String::with_capacity(size.max(stamp.len()));
    payload.push_str(stamp);
    while payload.len() < size {
        payload.push('x');
    }
    payload
}

enum Stamp {
    Warmup,
    Message {
        sender: usize,
        seq: u64,
        sent_ns: u64,
    },
}

fn parse_payload(payload: &str) -> Option<Stamp> {
    let rest = payload.strip_prefix('@')?;
    if rest.starts_with("W:") {
        return Some(Stamp::Warmup);
    }
    let mut parts = rest.splitn(4, ':');
    Some(Stamp::Message {
        sender: parts.next()?.parse().ok()?,
        seq: parts.next()?.parse().ok()?,
        sent_ns: parts.next()?.parse().ok()?,
    })
}

/// One subscriber's view: what it received, once, in order.
struct Tally {
    seen: Vec<Vec<bool>>,
    highest: HashMap<usize, u64>,
    unique: u64,
    duplicated: u64,
    reordered: u64,
    latency: Recorder,
}

impl Tally {
    fn new(senders: usize, per_sender: u64) -> Self {
        Self {
            seen: vec![vec![false; per_sender as usize]; senders],
            highest: HashMap::new(),
            unique: 0,
            duplicated: 0,
            reordered: 0,
            latency: Recorder::new(),
        }
    }

    fn record(&mut self, sender: usize, seq: u64, latency: Duration) {
        let Some(slot) = self
            .seen
            .get_mut(sender)
            .and_then(|s| s.get_mut(seq as usize))
        else {
            return;
        };
        if *slot {
            self.duplicated += 1;
            return;
        }
        *slot = true;
        self.unique += 1;
        let highest = self.highest.entry(sender).or_insert(0);
        if seq < *highest {
            self.reordered += 1;
        }
        *highest = (*highest).max(seq);
        self.latency.record(latency);
    }
}

/// Request/response: `connections` clients, each pinging in a closed loop.
pub async fn echo(setup: &Setup, connections: usize, requests: u64) -> anyhow::Result<Report> {
    let mut conns = Vec::new();
    for i in 0..connections {
        let mut conn = setup.endpoint.connect(i).await?;
        for _ in 0..100 {
            conn.ping().await?;
        }
        conns.push(conn);
    }
    let per_conn = requests.div_ceil(connections as u64);
    closed_loop(
        setup,
        setup.report("echo", "replies"),
        conns,
        per_conn,
        |mut conn, _| async move {
            let sent = Instant::now();
            let ok = conn.ping().await.is_ok();
            (conn, ok.then(|| sent.elapsed()))
        },
    )
    .await
}

/// Acknowledged publishing: `connections` clients, each sending a message of `size` bytes and
/// waiting until the server says it is stored before the next (closed loop). Latency is the
/// time to the acknowledgement.
pub async fn durable(
    setup: &Setup,
    connections: usize,
    messages: u64,
    size: usize,
) -> anyhow::Result<Report> {
    let mut conns = Vec::new();
    for i in 0..connections {
        let mut conn = setup.endpoint.connect(i).await?;
        if i == 0 && setup.endpoint.kind == Kind::Nats {
            conn.create_stream().await?;
        }
        conn.prepare_durable(i).await?;
        // Warm up: the first messages create files, tables and caches.
        for _ in 0..20 {
            conn.publish_acked(i, &"w".repeat(size)).await?;
        }
        conns.push((conn, i));
    }
    let payload: Arc<str> = Arc::from("d".repeat(size));
    let per_conn = messages.div_ceil(connections as u64);
    closed_loop(
        setup,
        setup.report("durable", "acks"),
        conns,
        per_conn,
        move |(mut conn, i), _| {
            let payload = payload.clone();
            async move {
                let sent = Instant::now();
                let ok = conn.publish_acked(i, &payload).await.is_ok();
                ((conn, i), ok.then(|| sent.elapsed()))
            }
        },
    )
    .await
}

/// `HISTORY` pages: `stored` messages are stored first, then one connection reads all of them
/// as one page, `pages` times (tlschat only; the server's page cap must allow `stored`).
pub async fn history(setup: &Setup, stored: u64, pages: u64) -> anyhow::Result<Report> {
    let mut conn = setup.endpoint.connect(0).await?;
    conn.prepare_durable(0).await?;
    let payload = "h".repeat(64);
    for _ in 0..stored {
        conn.publish_acked(0, &payload).await?;
    }
    closed_loop(
        setup,
        setup.report("history", "pages"),
        vec![conn],
        pages,
        move |mut conn, _| async move {
            let sent = Instant::now();
            let page = conn.history_page("#dur0", 0, stored).await;
            let ok = matches!(page, Ok(n) if n == stored);
            (conn, ok.then(|| sent.elapsed()))
        },
    )
    .await
}

/// Catching up: a verified user (the client certificate) joins a room and leaves; `missed`
/// messages are stored meanwhile; then the time from reconnecting to having every one of
/// them (the server's catch-up, then `HISTORY` for what it announces as a gap). One
/// operation per message.
pub async fn catch_up(setup: &Setup, anonymous: &Endpoint, missed: u64) -> anyhow::Result<Report> {
    let mut member = setup.endpoint.connect(0).await?;
    member.join_only("#catchup").await?;
    member.quit().await?;
    let mut writer = anonymous.connect(1).await?;
    writer.nick_and_join("writer", "#catchup").await?;
    writer.publish_pipelined("#catchup", missed, 64).await?;
    let cpu_before = setup.cpu();
    let started = Instant::now();
    let mut member = setup.endpoint.connect(0).await?;
    let received = tokio::time::timeout(setup.deadline, member.catch_up("#catchup", missed))
        .await
        .map_err(|_| anyhow::anyhow!("catching up took longer than the deadline"))??;
    let elapsed = started.elapsed();
    let cpu = cpu_before
        .zip(setup.cpu())
        .map(|(b, a)| a.saturating_sub(b));
    let mut report = setup.report("catchup", "messages");
    report.ops = received;
    report.errors = missed.saturating_sub(received);
    report.seconds = elapsed.as_secs_f64();
    report.per_second = received as f64 / elapsed.as_secs_f64().max(1e-9);
    report.server_cpu_us_per_op = cpu.map(|us| us as f64 / received.max(1) as f64);
    Ok(report)
}

/// Full handshakes (or resumed ones): connect, open the protocol, close; `concurrency` at once.
pub async fn connect(setup: &Setup, count: u64, concurrency: usize) -> anyhow::Result<Report> {
    // One connection first, so a resuming client has a ticket.
    setup.endpoint.connect(0).await?.close().await;
    let per_task = count.div_ceil(concurrency as u64);
    let workers = (0..concurrency)
        .map(|t| (setup.endpoint.clone(), t))
        .collect();
    closed_loop(
        setup,
        setup.report("connect", "handshakes"),
        workers,
        per_task,
        move |(endpoint, t), i| async move {
            let began = Instant::now();
            let latency = match endpoint.connect(t + i as usize * concurrency).await {
                Ok(conn) => {
                    let latency = began.elapsed();
                    conn.close().await;
                    Some(latency)
                }
                Err(_) => None,
            };
            ((endpoint, t), latency)
        },
    )
    .await
}

/// Holds `count` idle connections (opened `concurrency` at a time) and reports the server's
/// memory per connection; then checks the server still answers promptly (round trips on a
/// fresh connection, as latency) and, with `fanout`, runs that fan-out while they stay open.
pub async fn hold(
    setup: &Setup,
    count: usize,
    concurrency: usize,
    fanout_load: Option<Fanout>,
) -> anyhow::Result<Report> {
    let probe = setup
        .probe
        .clone()
        .ok_or_else(|| anyhow::anyhow!("hold needs --server-pid"))?;
    let before = probe.rss_kib()?;
    let started = Instant::now();
    let stop_at = started + setup.deadline;
    let concurrency = concurrency.clamp(1, count.max(1));
    let openers: Vec<_> = (0..concurrency)
        .map(|t| {
            let endpoint = setup.endpoint.clone();
            tokio::spawn(async move {
                let mut held = Vec::new();
                let mut errors = 0u64;
                for index in (t..count).step_by(concurrency) {
                    if Instant::now() >= stop_at {
                        return Err(anyhow::anyhow!("the run passed its deadline"));
                    }
                    match endpoint.connect(index).await {
                        Ok(conn) => held.push(conn),
                        Err(_) => errors += 1,
                    }
                }
                Ok((held, errors))
            })
        })
        .collect();
    let mut held = Vec::with_capacity(count);
    let mut errors = 0;
    for opener in openers {
        let (conns, failed) = opener.await??;
        held.extend(conns);
        errors += failed;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let after = probe.rss_kib()?;
    let elapsed = started.elapsed();
    let mut report = setup.report("hold", "connections");
    report.ops = held.len() as u64;
    report.errors = errors;
    report.server_rss_kib_per_conn =
        Some(after.saturating_sub(before) as f64 / held.len().max(1) as f64);
    if setup.endpoint.kind != Kind::Ncat {
        let mut probe_conn = setup.endpoint.connect(count).await?;
        let mut latency = Recorder::new();
        for _ in 0..200 {
            let sent = Instant::now();
            probe_conn.ping().await?;
            latency.record(sent.elapsed());
        }
        report.latency_us = latency.latency();
    }
    if let Some(load) = fanout_load {
        let mut during = fanout(setup, load).await?;
        during.mode = format!("fanout while {} held", held.len());
        report.while_held = Some(Box::new(during));
    }
    drop(held);
    Ok(report.finish(elapsed, 0, None))
}

/// Closed-loop load, measured: one task per worker, each running `op` up to `per_worker`
/// times in a row until the deadline. `op` hands the worker back with the latency of a success,
/// or `None` for a failure. The report gets the latencies, the failures as errors, the rates
/// and the server's CPU time over the whole run.
async fn closed_loop<W, F, Fut>(
    setup: &Setup,
    mut report: Report,
    workers: Vec<W>,
    per_worker: u64,
    op: F,
) -> anyhow::Result<Report>
where
    W: Send + 'static,
    F: Fn(W, u64) -> Fut + Clone + Send + 'static,
    Fut: Future<Output = (W, Option<Duration>)> + Send + 'static,
{
    let cpu_before = setup.cpu();
    let started = Instant::now();
    let stop_at = started + setup.deadline;
    let tasks: Vec<_> = workers
        .into_iter()
        .map(|mut worker| {
            let op = op.clone();
            tokio::spawn(async move {
                let mut recorder = Recorder::new();
                let mut errors = 0;
                for i in 0..per_worker {
                    if Instant::now() >= stop_at {
                        break;
                    }
                    let (back, latency) = op(worker, i).await;
                    worker = back;
                    match latency {
                        Some(latency) => recorder.record(latency),
                        None => errors += 1,
                    }
                }
                (recorder, errors)
            })
        })
        .collect();
    let mut latency = Recorder::new();
    for task in tasks {
        let (recorder, errors) = task.await?;
        latency.merge(&recorder);
        report.errors += errors;
    }
    let elapsed = started.elapsed();
    let cpu = setup
        .cpu()
        .zip(cpu_before)
        .map(|(a, b)| a.saturating_sub(b));
    report.ops = latency.count();
    report.latency_us = latency.latency();
    Ok(report.finish(elapsed, 0, cpu))
}

/// Signed UDP requests (tlschat only): `sockets` clients sharing one key, closed loop.
pub async fn udp(
    config: &ClientConfig,
    setup: &Setup,
    sockets: u64,
    requests: u64,
) -> anyhow::Result<Report> {
    let options = UdpOptions {
        timeout: Duration::from_secs(1),
        retries: 0,
    };
    let start = tlschat_client::clock::now_micros();
    let mut clients = Vec::new();
    for index in 0..sockets {
        let mut client = UdpClient::connect(config, options).await?;
        client.share_key(start, index, sockets);
        clients.push(client);
    }
    // Round-robin warm-up, so the shared key's sequence numbers stay close together.
    for _ in 0..100 {
        for client in &mut clients {
            client.request("PING").await?;
        }
    }
    let per_socket = requests.div_ceil(sockets);
    let mut report = closed_loop(
        setup,
        setup.report("udp", "replies"),
        clients,
        per_socket,
        |mut client, _| async move {
            let sent = Instant::now();
            let ok = matches!(client.request("PING").await, Ok(Reply::Ok(_)));
            (client, ok.then(|| sent.elapsed()))
        },
    )
    .await?;
    report.target = "tlschat-udp".into();
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payloads_carry_their_stamp_and_size() {
        let payload = pad("@3:42:123456:", 64);
        assert_eq!(payload.len(), 64);
        let Some(Stamp::Message {
            sender,
            seq,
            sent_ns,
        }) = parse_payload(&payload)
        else {
            panic!("not a message stamp");
        };
        assert_eq!((sender, seq, sent_ns), (3, 42, 123456));
        assert!(matches!(
            parse_payload(&pad("@W:", 32)),
            Some(Stamp::Warmup)
        ));
        assert!(parse_payload("no stamp").is_none());
    }

    #[test]
    fn the_tally_counts_duplicates_and_reordering() {
        let mut tally = Tally::new(2, 10);
        for (sender, seq) in [(0, 0), (0, 2), (0, 1), (1, 0), (0, 2)] {
            tally.record(sender, seq, Duration::from_micros(5));
        }
        assert_eq!((tally.unique, tally.duplicated, tally.reordered), (4, 1, 1));
    }
}
