//! Room messages that are in the journal but not yet in redb.
//!
//! A group's room messages are acknowledged once the journal has them (see
//! [`super::super::wal`]); writing them into redb at once cost a redb transaction per group,
//! most of the commit thread's work when groups are small. They wait here instead, already in
//! chunks, and go into redb in one transaction when anything needs redb to hold them: the
//! checkpoint (every second), a read of that room, or any other write (`STATS` counts them
//! here without moving them). Direct messages are not kept here: they set resume points,
//! which connecting users read at once.
//!
//! Bounded by the checkpoint: at most a second's (or [`CHECKPOINT_BYTES`]') worth of
//! messages.
//!
//! [`CHECKPOINT_BYTES`]: super::super::wal::CHECKPOINT_BYTES

use std::collections::HashMap;

use super::chunk::Chunk;

/// Per room, its waiting messages in chunks, in id order, contiguous.
#[derive(Debug, Default)]
pub struct Pending {
    rooms: HashMap<String, Vec<Chunk>>,
}

impl Pending {
    /// Adds message `id` of `room` (the next one after what the room has).
    pub fn add(&mut self, room: &str, id: u64, record: &[u8]) {
        let chunks = match self.rooms.get_mut(room) {
            Some(chunks) => chunks,
            None => self.rooms.entry(room.to_owned()).or_default(),
        };
        match chunks.last_mut() {
            Some(chunk) if chunk.next_id() == id && !chunk.is_full() => chunk.push(record),
            _ => {
                let mut chunk = Chunk::starting_at(id);
                chunk.push(record);
                chunks.push(chunk);
            }
        }
    }

    /// Whether messages of `room` wait here.
    pub fn holds(&self, room: &str) -> bool {
        self.rooms.contains_key(room)
    }

    /// How many messages wait.
    pub fn count(&self) -> u64 {
        self.rooms
            .values()
            .flatten()
            .map(|chunk| chunk.next_id() - chunk.first())
            .sum()
    }

    /// The rooms with messages waiting.
    pub fn rooms(&self) -> impl Iterator<Item = &str> {
        self.rooms.keys().map(String::as_str)
    }

    /// Whether nothing waits.
    pub fn is_empty(&self) -> bool {
        self.rooms.is_empty()
    }

    /// Everything waiting (empty afterwards): per room, its chunks and its last id.
    pub fn take(&mut self) -> Vec<(String, Vec<Chunk>, u64)> {
        std::mem::take(&mut self.rooms)
            .into_iter()
            .filter_map(|(room, chunks)| {
                let last = chunks.last()?.next_id() - 1;
                Some((room, chunks, last))
            })
            .collect()
    }

    /// Forgets everything (the journal, replayed into redb, has it all).
    pub fn clear(&mut self) {
        self.rooms.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::embedded::chunk::{entries, CHUNK_MESSAGES};

    #[test]
    fn messages_wait_in_full_chunks_per_room_and_are_taken_once() {
        let mut pending = Pending::default();
        assert!(pending.is_empty());
        let total = CHUNK_MESSAGES as u64 + 3;
        for id in 10..10 + total {
            pending.add("#a", id, format!("a{id}").as_bytes());
        }
        pending.add("#b", 1, b"b1");
        assert!(pending.holds("#a") && pending.holds("#b") && !pending.holds("#c"));
        assert_eq!(pending.count(), total + 1);
        let mut rooms: Vec<&str> = pending.rooms().collect();
        rooms.sort_unstable();
        assert_eq!(rooms, ["#a", "#b"]);
        let mut taken = pending.take();
        taken.sort_by(|x, y| x.0.cmp(&y.0));
        assert!(pending.is_empty(), "taken once");
        let (room, chunks, last) = &taken[0];
        assert_eq!((room.as_str(), chunks.len(), *last), ("#a", 2, 9 + total));
        let ids: Vec<u64> = chunks
            .iter()
            .flat_map(|c| entries(c.first(), c.value()).map(|e| e.unwrap().0))
            .collect();
        assert_eq!(ids, (10..10 + total).collect::<Vec<_>>());
        assert_eq!((taken[1].0.as_str(), taken[1].2), ("#b", 1));
    }
}
