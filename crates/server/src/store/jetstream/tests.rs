//! The JetStream store against a real nats-server (with JetStream, on a loopback port the
//! server picks, storing in a temporary folder). Skipped, and said so, where nats-server is
//! not installed; CI installs it.

use std::time::{Duration, Instant};

use tlschat_tests::nats::Nats;

use super::*;
use crate::store::conformance::{self, room};

#[test]
fn the_jetstream_store_behaves_as_every_store_must() {
    let Some(nats) = Nats::start_temp("the_jetstream_store_behaves_as_every_store_must") else {
        return;
    };
    let store = JetStreamStore::open(&nats.url(), None, "node-1").unwrap();
    conformance::check_all(&store);
}

#[test]
fn two_nodes_share_one_sequence_of_ids_per_conversation() {
    let Some(nats) = Nats::start_temp("two_nodes_share_one_sequence_of_ids_per_conversation")
    else {
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
    let test = "while_nats_is_down_messages_are_refused_and_after_it_returns_they_are_stored";
    let Some(mut nats) = Nats::start_temp(test) else {
        return;
    };
    let store = JetStreamStore::open(&nats.url(), None, "node-1").unwrap();
    assert_eq!(store.append(&[room("#ops", "before")]).unwrap(), [1]);
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
    nats.restart();
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
