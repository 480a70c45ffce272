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
    assert_eq!(texts(&store.read("#a", None, 5).unwrap()), [(1, "1")]);
}

#[test]
fn the_embedded_store_behaves_as_every_store_must() {
    let dir = tempfile::tempdir().unwrap();
    let store = EmbeddedStore::open(&dir.path().join("store.redb"), Fsync::Never).unwrap();
    crate::store::conformance::check_all(&store);
}
