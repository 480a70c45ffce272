//! The load modes.

use std::time::{Duration, Instant};

use tlschat_client::udp::{UdpClient, UdpOptions};
use tlschat_client::{Client, ClientConfig};
use tlschat_proto::Reply;

use crate::report::{Recorder, Report};

/// How much load to generate.
#[derive(Debug, Clone)]
pub struct Load {
    /// The request line each round trip sends.
    pub request: String,
    /// Requests in all.
    pub requests: u64,
    /// Concurrent connections (or UDP sockets), each sending its share in a closed loop.
    pub connections: u64,
    /// Unmeasured requests per connection before measuring (warm caches, finished handshakes).
    pub warmup: u64,
    /// The run stops here even if requests remain.
    pub deadline: Duration,
}

/// Request/response over TLS.
///
/// Connects without a client certificate: the server keeps one connection per verified user
/// (a second one with the same certificate replaces the first), and load needs many.
pub async fn echo(config: &ClientConfig, load: &Load) -> anyhow::Result<Report> {
    let mut config = config.clone();
    config.cert = None;
    config.key = None;
    let mut clients = Vec::new();
    for _ in 0..load.connections {
        let mut client = Client::connect(&config).await?;
        for _ in 0..load.warmup {
            client.request_line(&load.request).await?;
        }
        clients.push(client);
    }
    let started = Instant::now();
    let stop = started + load.deadline;
    let tasks: Vec<_> = clients
        .into_iter()
        .enumerate()
        .map(|(i, mut client)| {
            let share = share(load, i as u64);
            let line = load.request.clone();
            tokio::spawn(async move {
                let mut recorder = Recorder::new();
                let mut failed = 0;
                for _ in 0..share {
                    if Instant::now() >= stop {
                        break;
                    }
                    let sent = Instant::now();
                    match client.request_line(&line).await {
                        Ok(Reply::Ok(_)) => recorder.record(sent.elapsed()),
                        _ => failed += 1,
                    }
                }
                (recorder, failed)
            })
        })
        .collect();
    collect("echo", tasks, started).await
}

/// Request/response over signed UDP.
pub async fn udp(config: &ClientConfig, load: &Load) -> anyhow::Result<Report> {
    let options = UdpOptions {
        timeout: Duration::from_secs(1),
        retries: 0,
    };
    let mut clients = Vec::new();
    let start = tlschat_client::udp::now_micros();
    for index in 0..load.connections {
        let mut client = UdpClient::connect(config, options).await?;
        client.share_key(start, index, load.connections);
        clients.push(client);
    }
    // Round-robin, so the shared key's sequence numbers stay close together.
    for _ in 0..load.warmup.max(1) {
        for client in &mut clients {
            client.request(&load.request).await?;
        }
    }
    let started = Instant::now();
    let stop = started + load.deadline;
    let tasks: Vec<_> = clients
        .into_iter()
        .enumerate()
        .map(|(i, mut client)| {
            let share = share(load, i as u64);
            let line = load.request.clone();
            tokio::spawn(async move {
                let mut recorder = Recorder::new();
                let mut failed = 0;
                for _ in 0..share {
                    if Instant::now() >= stop {
                        break;
                    }
                    let sent = Instant::now();
                    match client.request(&line).await {
                        Ok(Reply::Ok(_)) => recorder.record(sent.elapsed()),
                        _ => failed += 1,
                    }
                }
                (recorder, failed)
            })
        })
        .collect();
    collect("udp", tasks, started).await
}

/// Connection `i`'s share of the requests.
fn share(load: &Load, i: u64) -> u64 {
    let base = load.requests / load.connections;
    base + u64::from(i < load.requests % load.connections)
}

async fn collect(
    mode: &str,
    tasks: Vec<tokio::task::JoinHandle<(Recorder, u64)>>,
    started: Instant,
) -> anyhow::Result<Report> {
    let mut total = Recorder::new();
    let mut failed = 0;
    for task in tasks {
        let (recorder, task_failed) = task.await?;
        total.merge(&recorder);
        failed += task_failed;
    }
    Ok(total.report(mode, failed, started.elapsed()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shares_add_up_to_the_total() {
        let load = Load {
            request: "PING".into(),
            requests: 10,
            connections: 3,
            warmup: 0,
            deadline: Duration::from_secs(1),
        };
        let shares: Vec<u64> = (0..3).map(|i| share(&load, i)).collect();
        assert_eq!(shares, [4, 3, 3]);
    }
}
