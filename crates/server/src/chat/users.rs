//! Who is online: each name's sessions. A verified person may be connected several times at
//! once (a laptop, a phone, a `tlschat listen`), up to a limit; a name claimed with `NICK` has
//! one session. Presence counts the person once.

use std::collections::HashMap;
use std::sync::Arc;

use tlschat_proto::names::name_key;

use super::peer::Peer;

/// The sessions of everyone online, by name key, oldest first.
#[derive(Default)]
pub(crate) struct Users {
    by_name: HashMap<String, Vec<Arc<Peer>>>,
}

impl Users {
    /// The sessions of `name` (any case), oldest first.
    pub(crate) fn sessions(&self, name: &str) -> &[Arc<Peer>] {
        self.by_name
            .get(&name_key(name))
            .map_or(&[][..], Vec::as_slice)
    }

    /// The sessions of `name` (any case), as a list of their own.
    pub(crate) fn sessions_of(&self, name: &str) -> Vec<Arc<Peer>> {
        self.sessions(name).to_vec()
    }

    /// Adds `peer` under `name` (a name key), after its other sessions.
    pub(crate) fn add(&mut self, name: String, peer: Arc<Peer>) {
        self.by_name.entry(name).or_default().push(peer);
    }

    /// Takes out and returns every session of `name` that `leaves` says must go.
    pub(crate) fn take_out(
        &mut self,
        name: &str,
        mut leaves: impl FnMut(usize, &Arc<Peer>) -> bool,
    ) -> Vec<Arc<Peer>> {
        let Some(sessions) = self.by_name.get_mut(name) else {
            return Vec::new();
        };
        let mut gone = Vec::new();
        let mut index = 0;
        sessions.retain(|peer| {
            let leave = leaves(index, peer);
            index += 1;
            if leave {
                gone.push(peer.clone());
            }
            !leave
        });
        if sessions.is_empty() {
            self.by_name.remove(name);
        }
        gone
    }

    /// Removes the session with id `id` from `name` (a name key); whether it was there.
    pub(crate) fn remove(&mut self, name: &str, id: u64) -> bool {
        !self.take_out(name, |_, peer| peer.id() == id).is_empty()
    }

    /// Every session of everyone.
    pub(crate) fn all(&self) -> impl Iterator<Item = &Arc<Peer>> {
        self.by_name.values().flatten()
    }

    /// The name keys of everyone online.
    pub(crate) fn names(&self) -> Vec<String> {
        self.by_name.keys().cloned().collect()
    }

    /// People online (each counted once, whatever their sessions).
    pub(crate) fn len(&self) -> usize {
        self.by_name.len()
    }
}
