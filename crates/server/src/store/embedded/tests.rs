use tlschat_proto::Anchor;

use super::*;
use crate::store::conformance::{direct, room};

fn texts(page: &Page) -> Vec<(u64, &str)> {
    page.messages
        .iter()
        .map(|m| (m.id, m.record.text.as_str()))
        .collect()
}

#[test]
fn ids_count_per_conversation_and_continue_after_reopening() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("data/store.redb");
    {
        let store = EmbeddedStore::open(&path, Fsync::Never).unwrap();
        let ids = store
            .append(&[room("#a", "1"), room("#b", "1"), room("#a", "2")])
            .unwrap();
        assert_eq!(ids, [1, 1, 2]);
    }
    let store = EmbeddedStore::open(&path, Fsync::Always).unwrap();
    assert_eq!(store.append(&[room("#a", "3")]).unwrap(), [3]);
    let stats = store.stats().unwrap();
    assert_eq!((stats.messages, stats.conversations), (4, 2));
    assert!(stats.bytes > 0);
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&path), 0o600, "the store is private");
        assert_eq!(mode(path.parent().unwrap()), 0o700);
    }
}

#[test]
fn pages_read_newest_before_and_after_an_id_oldest_first() {
    let dir = tempfile::tempdir().unwrap();
    let store = EmbeddedStore::open(&dir.path().join("s.redb"), Fsync::Never).unwrap();
    let batch: Vec<Record> = (1..=10).map(|n| room("#a", &n.to_string())).collect();
    store.append(&batch).unwrap();
    store.append(&[room("#other", "x")]).unwrap();

    let newest = store.read("#a", None, 3).unwrap();
    assert_eq!(texts(&newest), [(8, "8"), (9, "9"), (10, "10")]);
    assert!(newest.more);
    let back = store.read("#a", Some(Anchor::Before(8)), 5).unwrap();
    assert_eq!(back.messages.first().map(|m| m.id), Some(3));
    assert_eq!(back.messages.last().map(|m| m.id), Some(7));
    assert!(back.more);
    let first = store.read("#a", Some(Anchor::Before(3)), 5).unwrap();
    assert_eq!(texts(&first), [(1, "1"), (2, "2")]);
    assert!(!first.more);
    let after = store.read("#a", Some(Anchor::After(8)), 5).unwrap();
    assert_eq!(texts(&after), [(9, "9"), (10, "10")]);
    assert!(!after.more);
    let all = store.read("#a", Some(Anchor::After(0)), 100).unwrap();
    assert_eq!(all.messages.len(), 10);
    assert!(store
        .read("#a", Some(Anchor::After(u64::MAX)), 5)
        .unwrap()
        .messages
        .is_empty());
    assert!(store.read("#none", None, 5).unwrap().messages.is_empty());
    assert_eq!(
        store.read("#a", None, 0).unwrap(),
        Page {
            messages: vec![],
            more: true
        }
    );
}

#[test]
fn a_file_that_is_not_a_store_is_refused_with_its_name() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("notes.txt");
    std::fs::write(
        &path,
        "these are not the messages you are looking for\n".repeat(200),
    )
    .unwrap();
    let err = EmbeddedStore::open(&path, Fsync::Always).unwrap_err();
    assert!(matches!(err, StoreError::Damaged { .. }), "{err:?}");
    let text = err.to_string();
    assert!(
        text.contains("notes.txt") && text.contains("damaged"),
        "{text}"
    );
}

#[test]
fn a_store_of_a_newer_format_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.redb");
    drop(EmbeddedStore::open(&path, Fsync::Never).unwrap());
    {
        let db = Database::create(&path).unwrap();
        let txn = db.begin_write().unwrap();
        txn.open_table(META)
            .unwrap()
            .insert("format", FORMAT + 1)
            .unwrap();
        txn.commit().unwrap();
    }
    let err = EmbeddedStore::open(&path, Fsync::Never).unwrap_err();
    assert!(
        matches!(err, StoreError::Newer { found, .. } if found == FORMAT + 1),
        "{err:?}"
    );
    assert!(err.to_string().contains("newer tlschat"), "{err}");
}

#[test]
fn one_file_serves_one_server() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.redb");
    let _first = EmbeddedStore::open(&path, Fsync::Never).unwrap();
    let err = EmbeddedStore::open(&path, Fsync::Never).unwrap_err();
    assert!(matches!(err, StoreError::InUse { .. }), "{err:?}");
}

#[test]
fn a_folder_others_may_write_to_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let shared = dir.path().join("shared");
    std::fs::create_dir(&shared).unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&shared, std::fs::Permissions::from_mode(0o777)).unwrap();
        let err = EmbeddedStore::open(&shared.join("s.redb"), Fsync::Never).unwrap_err();
        assert!(matches!(err, StoreError::Open { .. }), "{err:?}");
        assert!(!shared.join("s.redb").exists());
    }
}

#[test]
fn members_and_direct_conversations_resume_where_they_stopped() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.redb");
    {
        let store = EmbeddedStore::open(&path, Fsync::Never).unwrap();
        store.append(&[room("#a", "before bob")]).unwrap();
        assert_eq!(
            store.join("Bob", "#a").unwrap(),
            1,
            "bob starts after what was said"
        );
        assert_eq!(store.join("bob", "#b").unwrap(), 0);
        store
            .append(&[room("#a", "for bob"), direct("alice", "bob", "psst")])
            .unwrap();
        store.leave("bob", "#b").unwrap();
    }
    let store = EmbeddedStore::open(&path, Fsync::Never).unwrap();
    let mut points = store.resume_points("BOB").unwrap();
    points.sort();
    assert_eq!(points, [("#a".to_owned(), 1), ("alice bob".to_owned(), 0)]);
    assert_eq!(
        store.resume_points("alice").unwrap(),
        [("alice bob".to_owned(), 1)],
        "a verified sender has seen its own message"
    );
    assert!(store.resume_points("carol").unwrap().is_empty());
    store
        .set_resume_points(
            "bob",
            &[
                ("#a".into(), 2),
                ("alice bob".into(), 1),
                ("#not-a-member".into(), 9),
            ],
        )
        .unwrap();
    let mut points = store.resume_points("bob").unwrap();
    points.sort();
    assert_eq!(points, [("#a".to_owned(), 2), ("alice bob".to_owned(), 1)]);
    // Another of bob's devices, which got less far, leaves later: the points stay.
    store
        .set_resume_points("bob", &[("#a".into(), 1), ("alice bob".into(), 0)])
        .unwrap();
    let mut points = store.resume_points("bob").unwrap();
    points.sort();
    assert_eq!(points, [("#a".to_owned(), 2), ("alice bob".to_owned(), 1)]);
}

#[test]
fn pruning_deletes_the_oldest_past_the_count_or_the_age_and_ids_go_on() {
    let dir = tempfile::tempdir().unwrap();
    let store = EmbeddedStore::open(&dir.path().join("s.redb"), Fsync::Never).unwrap();
    let at = |time_ms: i64, text: &str| Record {
        time_ms,
        ..room("#a", text)
    };
    let batch: Vec<Record> = (1..=10).map(|n| at(n * 1000, &n.to_string())).collect();
    store.append(&batch).unwrap();
    store
        .append(&[at(500, "other")].map(|r| Record {
            to: "#b".into(),
            ..r
        }))
        .unwrap();
    // Nothing is old, nothing over the count: nothing goes.
    assert_eq!(store.prune(0, 100, 1000).unwrap(), 0);
    // Keep the newest 7 of each: #a loses 1-3, #b keeps its one.
    assert_eq!(store.prune(0, 7, 1000).unwrap(), 3);
    // Older than 5.5 s: #a loses 4 and 5, #b loses its one; a budget of 2 stops it early.
    assert_eq!(store.prune(5_500, 7, 2).unwrap(), 2);
    assert_eq!(store.prune(5_500, 7, 1000).unwrap(), 1);
    let left = store.read("#a", None, 100).unwrap();
    assert_eq!(left.messages.first().map(|m| m.id), Some(6));
    assert!(store.read("#b", None, 100).unwrap().messages.is_empty());
    // Ids are never reused, even for an emptied conversation.
    assert_eq!(store.append(&[room("#b", "again")]).unwrap(), [2]);
    assert_eq!(store.append(&[room("#a", "11")]).unwrap(), [11]);
}

#[test]
fn direct_messages_waiting_are_counted_per_user() {
    let dir = tempfile::tempdir().unwrap();
    let store = EmbeddedStore::open(&dir.path().join("s.redb"), Fsync::Never).unwrap();
    store
        .append(&[
            direct("alice", "bob", "1"),
            direct("carol", "bob", "2"),
            direct("alice", "bob", "3"),
        ])
        .unwrap();
    store.join("bob", "#a").unwrap();
    store.append(&[room("#a", "rooms do not count")]).unwrap();
    assert_eq!(store.unread_direct("bob").unwrap(), 3);
    assert_eq!(store.unread_direct("alice").unwrap(), 0, "her own");
    store
        .set_resume_points("bob", &[("alice bob".into(), 2)])
        .unwrap();
    assert_eq!(store.unread_direct("bob").unwrap(), 1);
}

/// The files as a crash would leave them: copied while the store is open, after groups that
/// were acknowledged but not yet folded into redb by a checkpoint.
fn crash_image(path: &Path, into: &Path) {
    std::fs::create_dir_all(into.parent().unwrap()).unwrap();
    std::fs::copy(path, into).unwrap();
    std::fs::copy(Wal::path_for(path), Wal::path_for(into)).unwrap();
}

#[test]
fn acknowledged_groups_survive_a_crash_through_the_journal_and_ids_go_on() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("live/store.redb");
    let image = dir.path().join("image/store.redb");
    let store = EmbeddedStore::open(&path, Fsync::Never).unwrap();
    store.append(&[room("#a", "1"), room("#b", "1")]).unwrap();
    store
        .append(&[room("#a", "2"), direct("alice", "bob", "psst")])
        .unwrap();
    // Nothing was folded into redb yet (a checkpoint waits a second): the journal has it all.
    assert!(std::fs::metadata(Wal::path_for(&path)).unwrap().len() > 0);
    crash_image(&path, &image);
    // A crash in the middle of the next group's journal write: half a frame.
    let mut torn = std::fs::read(Wal::path_for(&image)).unwrap();
    let whole = torn.len();
    torn.extend_from_slice(b"TCJ1\x40\x00\x00\x00half");
    std::fs::write(Wal::path_for(&image), &torn).unwrap();
    drop(store);

    let recovered = EmbeddedStore::open(&image, Fsync::Never).unwrap();
    assert_eq!(
        texts(&recovered.read("#a", None, 10).unwrap()),
        [(1, "1"), (2, "2")]
    );
    assert_eq!(texts(&recovered.read("#b", None, 10).unwrap()), [(1, "1")]);
    assert_eq!(
        texts(&recovered.read("alice bob", None, 10).unwrap()),
        [(1, "psst")]
    );
    // The direct message waits for bob, as it did before the crash.
    assert_eq!(recovered.unread_direct("bob").unwrap(), 1);
    assert_eq!(recovered.append(&[room("#a", "3")]).unwrap(), [3]);
    // Replayed into redb for good: the journal was emptied (and the torn end dropped).
    assert!(std::fs::metadata(Wal::path_for(&image)).unwrap().len() < whole as u64);
    drop(recovered);
    let again = EmbeddedStore::open(&image, Fsync::Never).unwrap();
    assert_eq!(
        texts(&again.read("#a", None, 10).unwrap()),
        [(1, "1"), (2, "2"), (3, "3")],
        "nothing replayed twice"
    );
}

#[test]
fn a_journal_damaged_before_its_end_stops_startup_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("live/store.redb");
    let image = dir.path().join("image/store.redb");
    let store = EmbeddedStore::open(&path, Fsync::Never).unwrap();
    store.append(&[room("#a", "1")]).unwrap();
    store.append(&[room("#a", "2")]).unwrap();
    crash_image(&path, &image);
    let journal = Wal::path_for(&image);
    let mut bytes = std::fs::read(&journal).unwrap();
    bytes[10] ^= 0x55;
    std::fs::write(&journal, &bytes).unwrap();
    let err = EmbeddedStore::open(&image, Fsync::Never).unwrap_err();
    assert!(
        matches!(&err, StoreError::Damaged { path, .. } if *path == journal),
        "{err}"
    );
    assert!(err.to_string().contains("journal"), "{err}");
}

#[test]
fn a_journal_left_by_a_deleted_store_is_not_replayed_into_a_new_one() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("live/store.redb");
    let image = dir.path().join("image/store.redb");
    let store = EmbeddedStore::open(&path, Fsync::Never).unwrap();
    store.append(&[room("#a", "1")]).unwrap();
    crash_image(&path, &image);
    std::fs::remove_file(&image).unwrap();
    let err = EmbeddedStore::open(&image, Fsync::Never).unwrap_err();
    assert!(err.to_string().contains("no longer exists"), "{err}");
    std::fs::remove_file(Wal::path_for(&image)).unwrap();
    let fresh = EmbeddedStore::open(&image, Fsync::Never).unwrap();
    assert_eq!(fresh.append(&[room("#a", "new")]).unwrap(), [1]);
}

#[test]
fn a_checkpoint_empties_the_journal() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store.redb");
    let store = EmbeddedStore::open(&path, Fsync::Always).unwrap();
    store.append(&[room("#a", "1")]).unwrap();
    let journal = Wal::path_for(&path);
    assert!(std::fs::metadata(&journal).unwrap().len() > 0);
    store.checkpoint().unwrap();
    assert_eq!(std::fs::metadata(&journal).unwrap().len(), 0);
    // The room message that waited in memory is in the file now: a crash right after the
    // checkpoint (the journal empty) keeps it.
    assert!(lock(&store.pending).is_empty());
    let image = dir.path().join("image/store.redb");
    crash_image(&path, &image);
    let recovered = EmbeddedStore::open(&image, Fsync::Always).unwrap();
    assert_eq!(texts(&recovered.read("#a", None, 5).unwrap()), [(1, "1")]);
    assert_eq!(texts(&store.read("#a", None, 5).unwrap()), [(1, "1")]);
}

#[test]
fn the_embedded_store_behaves_as_every_store_must() {
    let dir = tempfile::tempdir().unwrap();
    let store = EmbeddedStore::open(&dir.path().join("store.redb"), Fsync::Never).unwrap();
    crate::store::conformance::check_all(&store);
}

/// What a read of ids `lowest..=last` must give, from the anchor's definition.
fn expected_page(lowest: u64, last: u64, anchor: Option<Anchor>, limit: usize) -> (Vec<u64>, bool) {
    let all: Vec<u64> = (lowest..=last).collect();
    let (matching, newest_first): (Vec<u64>, bool) = match anchor {
        None => (all, true),
        Some(Anchor::Before(id)) => (all.into_iter().filter(|&x| x < id).collect(), true),
        Some(Anchor::After(id)) => (all.into_iter().filter(|&x| x > id).collect(), false),
    };
    let more = matching.len() > limit;
    let page = if newest_first {
        matching[matching.len().saturating_sub(limit)..].to_vec()
    } else {
        matching[..limit.min(matching.len())].to_vec()
    };
    (page, more)
}

/// Every anchor and a few limits around the chunk size, against the definition.
fn check_every_page(store: &EmbeddedStore, conversation: &str, lowest: u64, last: u64) {
    let limits = [
        0,
        1,
        5,
        chunk::CHUNK_MESSAGES - 1,
        chunk::CHUNK_MESSAGES,
        chunk::CHUNK_MESSAGES + 1,
        1000,
    ];
    let mut anchors = vec![None];
    for id in 0..=last + 2 {
        anchors.push(Some(Anchor::Before(id)));
        anchors.push(Some(Anchor::After(id)));
    }
    for anchor in anchors {
        for limit in limits {
            let page = store.read(conversation, anchor, limit).unwrap();
            let got: Vec<u64> = page.messages.iter().map(|m| m.id).collect();
            assert_eq!(
                (got, page.more),
                expected_page(lowest, last, anchor, limit),
                "{conversation} {anchor:?} limit {limit}"
            );
            for message in &page.messages {
                assert_eq!(
                    message.record.text,
                    format!("{conversation} {}", message.id)
                );
            }
        }
    }
}

#[test]
fn messages_stored_in_chunks_read_and_prune_exactly_as_one_row_each() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.redb");
    let store = EmbeddedStore::open(&path, Fsync::Never).unwrap();
    let at = |to: &str, id: u64| Record {
        time_ms: id as i64 * 1000,
        ..room(to, &format!("{to} {id}"))
    };
    // Groups below, at and past a chunk's size, #a and #b interleaved in each.
    let (mut a, mut b) = (0, 0);
    for size in [1, 63, 64, 65, 130, 2, 200] {
        let group: Vec<Record> = (0..size)
            .map(|n| {
                if n % 3 == 2 {
                    b += 1;
                    at("#b", b)
                } else {
                    a += 1;
                    at("#a", a)
                }
            })
            .collect();
        store.append(&group).unwrap();
    }
    check_every_page(&store, "#a", 1, a);
    check_every_page(&store, "#b", 1, b);
    assert_eq!(store.stats().unwrap().messages, a + b);

    // Pruned by count in small budgets, so chunks are cut in two; then by age.
    let mut lowest = 1;
    // Keeping the newest a - 100: #a loses 1-100, #b (fewer) nothing.
    assert!(b < a - 100);
    for budget in [37, 1, 64, 100] {
        let gone = store.prune(0, a - 100, budget).unwrap();
        assert_eq!(gone, budget.min((101 - lowest) as usize) as u64);
        lowest += gone;
        check_every_page(&store, "#a", lowest, a);
        check_every_page(&store, "#b", 1, b);
    }
    assert_eq!(lowest, 101, "the count reached");
    // Older than message 300 of #a (time = id s): #a keeps 300 on, #b keeps 300 on too.
    store.prune(300_000, u64::MAX, 10_000).unwrap();
    check_every_page(&store, "#a", 300, a);
    check_every_page(&store, "#b", 300.min(b + 1), b);
    assert_eq!(
        store.stats().unwrap().messages,
        a + 1 - 300 + (b + 1).saturating_sub(300)
    );

    // The same after a restart, and ids go on.
    drop(store);
    let store = EmbeddedStore::open(&path, Fsync::Never).unwrap();
    check_every_page(&store, "#a", 300, a);
    assert_eq!(store.append(&[at("#a", a + 1)]).unwrap(), [a + 1]);
}

#[test]
fn a_format_1_store_is_converted_when_opened() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.redb");
    // A store as format 1 wrote it: a row per message.
    {
        let db = Database::create(&path).unwrap();
        let txn = db.begin_write().unwrap();
        {
            txn.open_table(META).unwrap().insert("format", 1).unwrap();
            let mut rows = txn.open_table(MESSAGES_V1).unwrap();
            let mut last_ids = txn.open_table(LAST_IDS).unwrap();
            for id in 5..=150u64 {
                let text = format!("#a {id}");
                rows.insert(("#a", id), room("#a", &text).encode().as_slice())
                    .unwrap();
            }
            last_ids.insert("#a", 150).unwrap();
            for id in 1..=3u64 {
                let text = format!("alice bob {id}");
                let record = direct("alice", "bob", &text).encode();
                rows.insert(("alice bob", id), record.as_slice()).unwrap();
            }
            last_ids.insert("alice bob", 3).unwrap();
            txn.open_table(RESUME)
                .unwrap()
                .insert(("bob", "alice bob"), 1)
                .unwrap();
        }
        txn.commit().unwrap();
    }
    // And its journal, left by a crash: two acknowledged messages not yet in the file.
    {
        let (mut wal, _) = Wal::open(&Wal::path_for(&path), false).unwrap();
        let mut frame = Frame::default();
        for id in [151u64, 152] {
            let text = format!("#a {id}");
            frame.push("#a", id, false, &room("#a", &text).encode());
        }
        wal.append(frame).unwrap();
    }
    let store = EmbeddedStore::open(&path, Fsync::Never).unwrap();
    check_every_page(&store, "#a", 5, 152);
    check_every_page(&store, "alice bob", 1, 3);
    assert_eq!(store.stats().unwrap().messages, 148 + 3);
    assert_eq!(store.unread_direct("bob").unwrap(), 2);
    assert_eq!(store.append(&[room("#a", "#a 153")]).unwrap(), [153]);
    drop(store);
    let db = Database::open(&path).unwrap();
    let txn = db.begin_read().unwrap();
    let format = txn
        .open_table(META)
        .unwrap()
        .get("format")
        .unwrap()
        .map(|v| v.value());
    assert_eq!(format, Some(FORMAT));
    assert!(
        matches!(
            txn.open_table(MESSAGES_V1),
            Err(redb::TableError::TableDoesNotExist(_))
        ),
        "the old table is gone"
    );
}

#[test]
fn room_messages_waiting_in_memory_are_seen_by_every_reader() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.redb");
    let store = EmbeddedStore::open(&path, Fsync::Never).unwrap();
    // Room groups wait in memory (no redb transaction); a direct message goes in at once.
    store.append(&[room("#a", "1"), room("#a", "2")]).unwrap();
    let stats = store.stats().unwrap();
    assert_eq!(
        (stats.messages, stats.conversations),
        (2, 1),
        "counted where they wait"
    );
    store
        .append(&[
            room("#a", "3"),
            direct("alice", "bob", "hi"),
            room("#b", "1"),
        ])
        .unwrap();
    assert!(!lock(&store.pending).is_empty(), "room messages wait");
    // A member joining now starts after the last message, not before the waiting ones.
    assert_eq!(store.join("carol", "#a").unwrap(), 3);
    assert_eq!(store.append(&[room("#a", "4")]).unwrap(), [4]);
    assert_eq!(
        texts(&store.read("#a", Some(Anchor::After(3)), 10).unwrap()),
        [(4, "4")]
    );
    store.append(&[room("#b", "2")]).unwrap();
    let stats = store.stats().unwrap();
    assert_eq!((stats.messages, stats.conversations), (7, 3));
    store.append(&[room("#b", "3")]).unwrap();
    // Pruning counts the waiting ones: keeping 1 of #b leaves message 3.
    assert_eq!(store.prune(0, 1, 100).unwrap(), 2 + 3);
    assert_eq!(texts(&store.read("#b", None, 10).unwrap()), [(3, "3")]);
    // A clean close folds them in; nothing is replayed twice or lost.
    store.append(&[room("#a", "5")]).unwrap();
    drop(store);
    let store = EmbeddedStore::open(&path, Fsync::Never).unwrap();
    assert_eq!(
        texts(&store.read("#a", None, 10).unwrap()),
        [(4, "4"), (5, "5")]
    );
    assert_eq!(store.append(&[room("#a", "6")]).unwrap(), [6]);
}

#[test]
fn a_reader_waits_for_a_transaction_that_took_the_waiting_messages() {
    use std::sync::mpsc;
    use std::time::Duration;
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(EmbeddedStore::open(&dir.path().join("s.redb"), Fsync::Never).unwrap());
    store.append(&[room("#a", "1"), room("#a", "2")]).unwrap();
    // A transaction takes the waiting messages (as a write does when some arrive while it
    // starts) and is held there before its commit.
    let (started, taken) = mpsc::channel();
    let (go, hold) = mpsc::channel::<()>();
    let writer = {
        let store = store.clone();
        std::thread::spawn(move || {
            let txn = store.db().unwrap().begin_write().unwrap();
            store.commit_with_pending(txn, |_| {
                started.send(()).unwrap();
                hold.recv().unwrap();
                Ok(())
            })
        })
    };
    taken.recv().unwrap();
    assert!(lock(&store.pending).is_empty(), "the write took them");
    let (sent, page) = mpsc::channel();
    let reader = {
        let store = store.clone();
        std::thread::spawn(move || sent.send(store.read("#a", None, 10).unwrap()).unwrap())
    };
    // Neither in memory nor in redb yet: the read must not answer now (an empty page).
    assert!(
        page.recv_timeout(Duration::from_millis(200)).is_err(),
        "the read waits for the write's commit"
    );
    go.send(()).unwrap();
    writer.join().unwrap().unwrap();
    assert_eq!(texts(&page.recv().unwrap()), [(1, "1"), (2, "2")]);
    reader.join().unwrap();
}
