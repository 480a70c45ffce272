//! Published E2E keys: each verified user's latest `KEY SET` bundle, kept as the hex the user
//! sent. The server cannot read E2E messages and does not try to check these keys (clients
//! do, against the CA); it only makes sure a bundle is filed under its owner's name.
//!
//! Keys outlive their owner's connection, so a message sent just before its sender left can
//! still be verified. The directory is bounded: past [`KeyDirectory::limit`] names, the
//! least recently published key is dropped.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tlschat_proto::names::name_key;

use crate::sync::lock;

/// The bounded directory of published keys.
#[derive(Debug)]
pub struct KeyDirectory {
    limit: usize,
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    /// Name key → (publication number, bundle hex).
    keys: HashMap<String, (u64, Arc<str>)>,
    published: u64,
}

impl Default for KeyDirectory {
    fn default() -> Self {
        Self::new(crate::config::DEFAULT_MAX_PUBLISHED_KEYS)
    }
}

impl KeyDirectory {
    /// An empty directory holding at most `limit` keys (at least one).
    pub fn new(limit: usize) -> Self {
        Self {
            limit: limit.max(1),
            state: Mutex::default(),
        }
    }

    /// Most keys kept.
    pub fn limit(&self) -> usize {
        self.limit
    }

    /// Files `bundle` (hex) as `name`'s key, replacing any earlier one.
    pub fn publish(&self, name: &str, bundle: &str) {
        let key = name_key(name);
        let mut state = lock(&self.state);
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
        state.keys.insert(key, (number, Arc::from(bundle)));
    }

    /// `name`'s published key, hex.
    pub fn get(&self, name: &str) -> Option<Arc<str>> {
        lock(&self.state)
            .keys
            .get(&name_key(name))
            .map(|(_, bundle)| bundle.clone())
    }

    /// Withdraws every key whose bundle `gone` says so; returns the names withdrawn.
    pub fn withdraw(&self, gone: impl Fn(&str) -> bool) -> Vec<String> {
        let mut state = lock(&self.state);
        let names: Vec<String> = state
            .keys
            .iter()
            .filter(|(_, (_, bundle))| gone(bundle))
            .map(|(name, _)| name.clone())
            .collect();
        for name in &names {
            state.keys.remove(name);
        }
        names
    }

    /// Keys held now.
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
    fn keys_are_filed_by_name_and_the_oldest_goes_first() {
        let keys = KeyDirectory::new(2);
        keys.publish("Alice", "01aa");
        keys.publish("bob", "01bb");
        assert_eq!(keys.get("ALICE").as_deref(), Some("01aa"));
        // Republishing refreshes alice, so bob is now the oldest.
        keys.publish("alice", "01a2");
        keys.publish("carol", "01cc");
        assert_eq!(keys.len(), 2);
        assert_eq!(keys.get("alice").as_deref(), Some("01a2"));
        assert_eq!(keys.get("bob"), None);
        assert_eq!(keys.get("carol").as_deref(), Some("01cc"));
    }
}
