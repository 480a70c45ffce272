//! The JetStream store against a real nats-server (with JetStream, on a loopback port the
//! server picks, storing in a temporary folder). Skipped, and said so, where nats-server is
//! not installed; CI installs it.

use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use super::*;
use crate::store::conformance::{self, room};

/// How long nats-server may take to start.
const START_TIMEOUT: Duration = Duration::from_secs(20);

/// A nats-server with JetStream, stopped on drop.
struct NatsServer {
    child: Child,
    addr: SocketAddr,
    dir: PathBuf,
}

impl NatsServer {
    /// Starts one on a free port (or on `port`), storing in `dir`; `None` (and a `SKIPPED`
    /// line) when nats-server is not installed.
    fn start(test: &str, dir: &Path, port: Option<u16>) -> Option<Self> {
        let port = port.map_or_else(|| "-1".to_owned(), |p| p.to_string());
        let spawned = Command::new("nats-server")
            .args(["-a", "127.0.0.1", "-p", &port, "-js", "-sd"])
            .arg(dir)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn();
        let mut child = match spawned {
            Ok(child) => child,
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
                let _ = writeln!(
                    std::io::stderr(),
                    "SKIPPED {test}: nats-server is not installed"
                );
                return None;
            }
            Err(err) => panic!("starting nats-server: {err}"),
        };
        // Its log says where it listens, then that it is ready.
        let stderr = child.stderr.take().expect("piped");
        let (lines, seen) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if lines.send(line).is_err() {
                    break;
                }
            }
        });
        let deadline = Instant::now() + START_TIMEOUT;
        let mut addr = None;
        let mut log = Vec::new();
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            let Ok(line) = seen.recv_timeout(left) else {
                break;
            };
            if let Some(at) = line.split("Listening for client connections on ").nth(1) {
                addr = at.trim().parse().ok();
            }
            let ready = line.contains("Server is ready");
            log.push(line);
            if ready {
                break;
            }
        }
        let addr = addr.unwrap_or_else(|| panic!("nats-server did not start: {log:?}"));
        Some(Self {
            child,
            addr,
            dir: dir.to_owned(),
        })
    }

    fn url(&self) -> String {
        format!("nats://{}", self.addr)
    }

    /// Stops it (as a crash would: SIGKILL).
    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        self.kill();
    }
}

#[test]
fn the_jetstream_store_behaves_as_every_store_must() {
    let dir = tempfile::tempdir().unwrap();
    let Some(nats) = NatsServer::start(
        "the_jetstream_store_behaves_as_every_store_must",
        dir.path(),
        None,
    ) else {
        return;
    };
    let store = JetStreamStore::open(&nats.url(), None, "node-1").unwrap();
    conformance::check_all(&store);
}

#[test]
fn two_nodes_share_one_sequence_of_ids_per_conversation() {
    let dir = tempfile::tempdir().unwrap();
    let Some(nats) = NatsServer::start(
        "two_nodes_share_one_sequence_of_ids_per_conversation",
        dir.path(),
        None,
    ) else {
        return;
    };
    let nodes = [
        JetStreamStore::open(&nats.url(), None, "node-1").unwrap(),
        JetStreamStore::open(&nats.url(), None, "node-2").unwrap(),
    ];
    // Both write to one room at once, in groups: every id is given once, with no hole.
    let all: Vec<u64> = std::thread::scope(|scope| {
        let writers: Vec<_> = nodes
            .iter()
            .enumerate()
            .map(|(n, node)| {
                scope.spawn(move || {
                    let mut got = Vec::new();
                    for group in 0..20 {
                        let records: Vec<Record> = (0..5)
                            .map(|i| room("#ops", &format!("node {n} group {group} #{i}")))
                            .collect();
                        got.extend(node.append(&records).unwrap());
                    }
                    got
                })
            })
            .collect();
        writers
            .into_iter()
            .flat_map(|w| w.join().unwrap())
            .collect()
    });
    let mut sorted = all.clone();
    sorted.sort_unstable();
    assert_eq!(sorted, (1..=200).collect::<Vec<u64>>());
    // Each node reads the same history, in one order.
    let page = |node: &JetStreamStore| -> Vec<(u64, String)> {
        let mut out = Vec::new();
        let mut after = 0;
        loop {
            let page = node.read("#ops", Some(Anchor::After(after)), 64).unwrap();
            out.extend(page.messages.iter().map(|m| (m.id, m.record.text.clone())));
            after = out.last().map_or(after, |m| m.0);
            if !page.more {
                return out;
            }
        }
    };
    let seen = page(&nodes[0]);
    assert_eq!(seen.len(), 200);
    assert_eq!(seen, page(&nodes[1]));
    // A node started later carries on from there.
    let late = JetStreamStore::open(&nats.url(), None, "node-3").unwrap();
    assert_eq!(late.append(&[room("#ops", "late")]).unwrap(), [201]);
}

#[test]
fn while_nats_is_down_messages_are_refused_and_after_it_returns_they_are_stored() {
    let dir = tempfile::tempdir().unwrap();
    let test = "while_nats_is_down_messages_are_refused_and_after_it_returns_they_are_stored";
    let Some(mut nats) = NatsServer::start(test, dir.path(), None) else {
        return;
    };
    let store = JetStreamStore::open(&nats.url(), None, "node-1").unwrap();
    assert_eq!(store.append(&[room("#ops", "before")]).unwrap(), [1]);
    let port = nats.addr.port();
    nats.kill();
    // Refused, with a clear error, and in bounded time (never acknowledged and lost).
    let refused = Instant::now();
    let err = loop {
        match store.append(&[room("#ops", "during")]) {
            Err(err) => break err,
            Ok(ids) => {
                // The client had not noticed yet: what was acknowledged must survive.
                assert!(
                    refused.elapsed() < OP_TIMEOUT,
                    "acknowledged {ids:?} while down"
                );
            }
        }
    };
    assert!(refused.elapsed() <= OP_TIMEOUT + Duration::from_secs(1));
    let text = err.to_string();
    assert!(text.contains("NATS"), "{text}");
    // Back on the same port and folder: the store reconnects by itself.
    let nats = NatsServer::start(test, &nats.dir.clone(), Some(port)).expect("restarted");
    let deadline = Instant::now() + Duration::from_secs(30);
    let ids = loop {
        match store.append(&[room("#ops", "after")]) {
            Ok(ids) => break ids,
            Err(err) => {
                assert!(Instant::now() < deadline, "not back after 30 s: {err}");
                // The client reconnects on its own schedule; nothing to wait on but it.
                std::thread::sleep(Duration::from_millis(100));
            }
        }
    };
    let page = store.read("#ops", None, 10).unwrap();
    let texts: Vec<&str> = page
        .messages
        .iter()
        .map(|m| m.record.text.as_str())
        .collect();
    assert_eq!(texts.first(), Some(&"before"));
    assert_eq!(texts.last(), Some(&"after"));
    assert_eq!(page.messages.last().unwrap().id, ids[0]);
    drop(nats);
}
