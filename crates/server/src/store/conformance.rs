//! What every [`Store`] must do, as checks any implementation's tests run on a fresh store:
//! the embedded store's and the cluster's (JetStream) alike, so the hub can rely on one
//! behaviour whichever it is given.

use tlschat_proto::{Anchor, Trust};

use super::{Kind, Record, Store};

/// A room message from alice to `to`, as the store tests write them.
pub(crate) fn room(to: &str, text: &str) -> Record {
    Record {
        kind: Kind::Room,
        from: "alice".into(),
        to: to.into(),
        trust: Trust::Verified,
        time_ms: 1_700_000_000_000,
        text: text.into(),
        keep_for_recipient: false,
    }
}

/// A direct message kept for its (verified) recipient.
pub(crate) fn direct(from: &str, to: &str, text: &str) -> Record {
    Record {
        kind: Kind::Direct,
        from: from.into(),
        to: to.into(),
        keep_for_recipient: true,
        ..room("", text)
    }
}

fn ids(
    store: &dyn Store,
    conversation: &str,
    anchor: Option<Anchor>,
    limit: usize,
) -> (Vec<u64>, bool) {
    let page = store.read(conversation, anchor, limit).unwrap();
    (page.messages.iter().map(|m| m.id).collect(), page.more)
}

/// Runs every check on `store`, which must be empty.
pub(crate) fn check_all(store: &dyn Store) {
    ids_count_per_conversation_and_pages_read_both_ways(store);
    memberships_resume_points_and_direct_conversations(store);
    names_keys_and_settings_are_kept(store);
    pruning_keeps_the_newest_and_ids_are_never_reused(store);
}

fn ids_count_per_conversation_and_pages_read_both_ways(store: &dyn Store) {
    let got = store
        .append(&[
            room("#a", "one"),
            room("#b", "uno"),
            room("#a", "two"),
            direct("alice", "bob", "psst"),
        ])
        .unwrap();
    assert_eq!(got, [1, 1, 2, 1]);
    assert_eq!(store.append(&[room("#a", "three")]).unwrap(), [3]);
    let page = store.read("#a", None, 10).unwrap();
    let texts: Vec<&str> = page
        .messages
        .iter()
        .map(|m| m.record.text.as_str())
        .collect();
    assert_eq!(texts, ["one", "two", "three"]);
    assert_eq!(page.messages[0].record, room("#a", "one"));
    let records: Vec<Record> = (0..10).map(|i| room("#p", &format!("m{i}"))).collect();
    assert_eq!(
        store.append(&records).unwrap(),
        (1..=10).collect::<Vec<_>>()
    );
    assert_eq!(ids(store, "#p", None, 3), (vec![8, 9, 10], true));
    assert_eq!(
        ids(store, "#p", Some(Anchor::Before(8)), 3),
        (vec![5, 6, 7], true)
    );
    assert_eq!(
        ids(store, "#p", Some(Anchor::Before(2)), 3),
        (vec![1], false)
    );
    assert_eq!(
        ids(store, "#p", Some(Anchor::After(7)), 10),
        (vec![8, 9, 10], false)
    );
    assert_eq!(
        ids(store, "#p", Some(Anchor::After(2)), 3),
        (vec![3, 4, 5], true)
    );
    assert_eq!(
        ids(store, "#p", Some(Anchor::After(10)), 3),
        (vec![], false)
    );
    assert_eq!(ids(store, "#nobody", None, 3), (vec![], false));
    let stats = store.stats().unwrap();
    assert_eq!((stats.messages, stats.conversations), (15, 4));
}

fn memberships_resume_points_and_direct_conversations(store: &dyn Store) {
    assert_eq!(store.join("Gina", "#m").unwrap(), 0, "a new room");
    store.append(&[room("#m", "1"), room("#m", "2")]).unwrap();
    assert_eq!(
        store.join("hank", "#m").unwrap(),
        2,
        "hank starts after what was said"
    );
    // Forward only, and only where the user is kept.
    store
        .set_resume_points("gina", &[("#m".into(), 2), ("#not-a-member".into(), 9)])
        .unwrap();
    store
        .set_resume_points("gina", &[("#m".into(), 1)])
        .unwrap();
    assert_eq!(store.resume_points("GINA").unwrap(), [("#m".to_owned(), 2)]);
    store.leave("gina", "#m").unwrap();
    assert!(store.resume_points("gina").unwrap().is_empty());

    // A direct message kept for a verified recipient: their conversation starts before it, a
    // verified sender has seen it.
    let ids = store.append(&[direct("dave", "erin", "hi")]).unwrap();
    assert_eq!(ids, [1]);
    assert_eq!(
        store.resume_points("erin").unwrap(),
        [("dave erin".to_owned(), 0)]
    );
    assert_eq!(
        store.resume_points("dave").unwrap(),
        [("dave erin".to_owned(), 1)]
    );
    assert_eq!(store.unread_direct("erin").unwrap(), 1);
    assert_eq!(store.unread_direct("dave").unwrap(), 0);
    store.append(&[direct("erin", "frank", "yo")]).unwrap();
    let mut partners = store.partners("erin").unwrap();
    partners.sort();
    assert_eq!(partners, ["dave", "frank"]);
}

fn names_keys_and_settings_are_kept(store: &dyn Store) {
    store.reserve("Alice").unwrap();
    store.reserve("alice").unwrap();
    assert!(store.reserved().unwrap().contains(&"alice".to_owned()));
    store.put_key("alice", "01aa 01ab").unwrap();
    store.put_key("bob", "02bb").unwrap();
    store.put_key("bob", "02bc").unwrap();
    let mut keys = store.keys().unwrap();
    keys.sort();
    assert_eq!(
        keys,
        [
            ("alice".to_owned(), "01aa 01ab".to_owned()),
            ("bob".to_owned(), "02bc".to_owned())
        ]
    );
    store.remove_key("alice").unwrap();
    assert_eq!(store.keys().unwrap().len(), 1);
    store.put_setting("#ops", Some("topic=hello")).unwrap();
    store.put_setting("*", Some("mallory")).unwrap();
    store.put_setting("#ops", None).unwrap();
    assert_eq!(
        store.settings().unwrap(),
        [("*".to_owned(), "mallory".to_owned())]
    );
}

fn pruning_keeps_the_newest_and_ids_are_never_reused(store: &dyn Store) {
    let records: Vec<Record> = (0..5).map(|i| room("#z", &format!("z{i}"))).collect();
    store.append(&records).unwrap();
    let mut deleted = 0;
    // Within a budget per round, until nothing is left to delete.
    loop {
        let round = store.prune(0, 2, 2).unwrap();
        assert!(round <= 2);
        if round == 0 {
            break;
        }
        deleted += round;
    }
    assert!(deleted >= 3, "at least #z's three oldest went: {deleted}");
    assert_eq!(ids(store, "#z", None, 10), (vec![4, 5], false));
    assert_eq!(store.append(&[room("#z", "z5")]).unwrap(), [6]);
    // By age: everything before the cut goes, whatever the count.
    let mut old = room("#y", "old");
    old.time_ms = 1_000;
    store.append(&[old, room("#y", "new")]).unwrap();
    while store.prune(2_000, 1_000, 100).unwrap() > 0 {}
    assert_eq!(ids(store, "#y", None, 10), (vec![2], false));
}
