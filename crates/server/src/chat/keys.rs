//! Published E2E keys: for each verified user, the latest `KEY SET` bundle of each of their
//! devices, kept as the hex the user sent. The server cannot read E2E messages and does not
//! try to check these keys (clients do, against the CA); it only makes sure a bundle is filed
//! under its owner's name and device.
//!
//! Keys outlive their owner's connection, so a message sent just before its sender left can
//! still be verified. The directory is bounded: at most [`KeyDirectory::limit`] names (past
//! it, the person who published least recently is dropped) and at most
//! [`KeyDirectory::max_devices`] devices per person (past it, a new device is refused).

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use tlschat_proto::names::name_key;

use crate::sync::lock;

/// The bounded directory of published keys.
#[derive(Debug)]
pub struct KeyDirectory {
    limit: usize,
    max_devices: usize,
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    /// Name key → (publication number, device → bundle hex).
    keys: HashMap<String, (u64, BTreeMap<String, Arc<str>>)>,
    published: u64,
}

/// What [`KeyDirectory::publish`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Published {
    /// A device this person had not published before.
    NewDevice,
    /// A new key for a device already there.
    Changed,
    /// The same key as before.
    Same,
    /// Refused: the person has [`KeyDirectory::max_devices`] devices already.
    TooManyDevices,
}

impl Default for KeyDirectory {
    fn default() -> Self {
        Self::new(
            crate::config::DEFAULT_MAX_PUBLISHED_KEYS,
            crate::config::DEFAULT_MAX_DEVICES_PER_USER,
        )
    }
}

impl KeyDirectory {
    /// An empty directory holding the keys of at most `limit` people (at least one), each
    /// with at most `max_devices` devices (at least one).
    pub fn new(limit: usize, max_devices: usize) -> Self {
        Self {
            limit: limit.max(1),
            max_devices: max_devices.max(1),
            state: Mutex::default(),
        }
    }

    /// Most people whose keys are kept.
    pub fn limit(&self) -> usize {
        self.limit
    }

    /// Most devices per person.
    pub fn max_devices(&self) -> usize {
        self.max_devices
    }

    /// Files `bundle` (hex) as the key of `name`'s `device`, replacing any earlier one.
    pub fn publish(&self, name: &str, device: &str, bundle: &str) -> Published {
        let key = name_key(name);
        let mut state = lock(&self.state);
        if let Some((_, devices)) = state.keys.get(&key) {
            match devices.get(device) {
                Some(old) if &**old == bundle => return Published::Same,
                None if devices.len() >= self.max_devices => return Published::TooManyDevices,
                _ => {}
            }
        }
        state.published += 1;
        let number = state.published;
        if !state.keys.contains_key(&key) && state.keys.len() >= self.limit {
            let oldest = state
                .keys
                .iter()
                .min_by_key(|(_, (n, _))| *n)
                .map(|(k, _)| k.clone());
            if let Some(oldest) = oldest {
                state.keys.remove(&oldest);
            }
        }
        let entry = state.keys.entry(key).or_default();
        entry.0 = number;
        match entry.1.insert(device.to_owned(), Arc::from(bundle)) {
            Some(_) => Published::Changed,
            None => Published::NewDevice,
        }
    }

    /// Files `name`'s devices as another node of a cluster filed them: `bundles` (device, hex)
    /// replace what was here (none: every key withdrawn).
    pub fn replace(&self, name: &str, bundles: &[(String, String)]) {
        lock(&self.state).keys.remove(&name_key(name));
        for (device, bundle) in bundles {
            self.publish(name, device, bundle);
        }
    }

    /// `name`'s published keys, hex, one per device, by device name.
    pub fn get(&self, name: &str) -> Vec<Arc<str>> {
        lock(&self.state)
            .keys
            .get(&name_key(name))
            .map(|(_, devices)| devices.values().cloned().collect())
            .unwrap_or_default()
    }

    /// `name`'s devices with a published key.
    pub fn devices(&self, name: &str) -> Vec<String> {
        lock(&self.state)
            .keys
            .get(&name_key(name))
            .map(|(_, devices)| devices.keys().cloned().collect())
            .unwrap_or_default()
    }

    /// Withdraws the key of `name`'s `device`; whether there was one.
    pub fn remove(&self, name: &str, device: &str) -> bool {
        let key = name_key(name);
        let mut state = lock(&self.state);
        let Some((_, devices)) = state.keys.get_mut(&key) else {
            return false;
        };
        let removed = devices.remove(device).is_some();
        if devices.is_empty() {
            state.keys.remove(&key);
        }
        removed
    }

    /// Withdraws every key whose bundle `gone` says so; returns the names that lost one.
    pub fn withdraw(&self, gone: impl Fn(&str) -> bool) -> Vec<String> {
        let mut state = lock(&self.state);
        let mut names = Vec::new();
        state.keys.retain(|name, (_, devices)| {
            let before = devices.len();
            devices.retain(|_, bundle| !gone(bundle));
            if devices.len() != before {
                names.push(name.clone());
            }
            !devices.is_empty()
        });
        names.sort();
        names
    }

    /// People with a published key now.
    pub fn len(&self) -> usize {
        lock(&self.state).keys.len()
    }

    /// Whether no key is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_filed_by_name_and_device_and_the_oldest_person_goes_first() {
        let keys = KeyDirectory::new(2, 8);
        assert_eq!(
            keys.publish("Alice", "laptop", "01aa"),
            Published::NewDevice
        );
        assert_eq!(keys.publish("bob", "laptop", "01bb"), Published::NewDevice);
        assert_eq!(keys.get("ALICE"), vec![Arc::from("01aa")]);
        // Republishing refreshes alice, so bob is now the oldest.
        assert_eq!(keys.publish("alice", "phone", "01a2"), Published::NewDevice);
        assert_eq!(keys.publish("alice", "phone", "01a2"), Published::Same);
        assert_eq!(
            keys.publish("carol", "laptop", "01cc"),
            Published::NewDevice
        );
        assert_eq!(keys.len(), 2);
        assert_eq!(
            keys.get("alice"),
            vec![Arc::from("01aa"), Arc::from("01a2")]
        );
        assert_eq!(keys.devices("alice"), vec!["laptop", "phone"]);
        assert!(keys.get("bob").is_empty());
        assert_eq!(keys.publish("carol", "laptop", "01c2"), Published::Changed);
        assert_eq!(keys.get("carol"), vec![Arc::from("01c2")]);
    }

    #[test]
    fn devices_are_bounded_removed_one_by_one_and_withdrawn_by_bundle() {
        let keys = KeyDirectory::new(10, 2);
        keys.publish("alice", "a", "01");
        keys.publish("alice", "b", "02");
        assert_eq!(keys.publish("alice", "c", "03"), Published::TooManyDevices);
        assert_eq!(
            keys.publish("alice", "b", "04"),
            Published::Changed,
            "a known device"
        );
        assert!(keys.remove("ALICE", "a"));
        assert!(!keys.remove("alice", "a"));
        assert_eq!(keys.publish("alice", "c", "03"), Published::NewDevice);
        keys.publish("bob", "x", "05");
        assert_eq!(
            keys.withdraw(|hex| hex == "03" || hex == "05"),
            vec!["alice", "bob"]
        );
        assert_eq!(keys.devices("alice"), vec!["b"]);
        assert_eq!(keys.len(), 1, "bob has no key left");
        assert!(keys.remove("alice", "b"));
        assert!(keys.is_empty());
    }
}
