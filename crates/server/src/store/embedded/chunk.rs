//! Messages stored in chunks: one redb row holds a run of consecutive messages of one
//! conversation, keyed by `(conversation, first id)`, so a commit group adds one row per
//! conversation instead of one per message (a B-tree insert is most of what redb costs per
//! message; a room's group of a few hundred messages becomes a few rows).
//!
//! # Encoding
//!
//! A chunk's value is its messages in id order, each `length (4, LE) | record bytes`
//! ([`Record::encode`](crate::store::Record::encode)); the first has the key's id and each next
//! one the id after. A chunk closes at [`CHUNK_MESSAGES`] messages or [`CHUNK_BYTES`] bytes,
//! whichever comes first, so reading one message never reads much more than it.

use crate::store::record::Malformed;

/// Most messages in one chunk.
pub const CHUNK_MESSAGES: usize = 64;

/// A chunk closes once its value reaches this many bytes (one message may take it past).
pub const CHUNK_BYTES: usize = 64 * 1024;

/// A chunk being filled: consecutive messages from `first`.
#[derive(Debug)]
pub struct Chunk {
    first: u64,
    count: usize,
    bytes: Vec<u8>,
}

impl Chunk {
    /// An empty chunk whose first message will be `first`.
    pub fn starting_at(first: u64) -> Self {
        Self {
            first,
            count: 0,
            bytes: Vec::new(),
        }
    }

    /// The id its first message has.
    pub fn first(&self) -> u64 {
        self.first
    }

    /// The id the next message must have.
    pub fn next_id(&self) -> u64 {
        self.first + self.count as u64
    }

    /// Adds the next message's bytes.
    pub fn push(&mut self, record: &[u8]) {
        // Records are far below 4 GiB: a line is capped long before.
        let len = u32::try_from(record.len()).unwrap_or(u32::MAX);
        self.bytes.extend_from_slice(&len.to_le_bytes());
        self.bytes.extend_from_slice(record);
        self.count += 1;
    }

    /// Whether it is full: the next message starts a new chunk.
    pub fn is_full(&self) -> bool {
        self.count >= CHUNK_MESSAGES || self.bytes.len() >= CHUNK_BYTES
    }

    /// The value stored.
    pub fn value(&self) -> &[u8] {
        &self.bytes
    }
}

/// The messages of a stored chunk whose first id is `first`: `(id, record bytes)` in id order;
/// a value cut short or with a length past its end is [`Malformed`].
pub fn entries(
    first: u64,
    mut value: &[u8],
) -> impl Iterator<Item = Result<(u64, &[u8]), Malformed>> {
    let mut id = first;
    std::iter::from_fn(move || {
        if value.is_empty() {
            return None;
        }
        let Some((len, rest)) = value.split_first_chunk::<4>() else {
            value = &[];
            return Some(Err(Malformed));
        };
        let len = u32::from_le_bytes(*len) as usize;
        if rest.len() < len {
            value = &[];
            return Some(Err(Malformed));
        }
        let (record, rest) = rest.split_at(len);
        value = rest;
        id += 1;
        Some(Ok((id - 1, record)))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_chunk_gives_back_its_messages_with_consecutive_ids() {
        let mut chunk = Chunk::starting_at(41);
        for text in ["a", "", "ccc"] {
            chunk.push(text.as_bytes());
        }
        assert_eq!((chunk.first(), chunk.next_id()), (41, 44));
        let back: Vec<(u64, &[u8])> = entries(41, chunk.value()).map(Result::unwrap).collect();
        assert_eq!(back, [(41, &b"a"[..]), (42, b""), (43, b"ccc")]);
    }

    #[test]
    fn a_chunk_closes_at_its_count_or_its_size() {
        let mut chunk = Chunk::starting_at(1);
        for _ in 0..CHUNK_MESSAGES - 1 {
            chunk.push(b"x");
        }
        assert!(!chunk.is_full());
        chunk.push(b"x");
        assert!(chunk.is_full());
        let mut big = Chunk::starting_at(1);
        big.push(&vec![0; CHUNK_BYTES - 5]);
        assert!(
            !big.is_full(),
            "4 bytes of length + {} < the limit",
            CHUNK_BYTES - 5
        );
        big.push(b"");
        assert!(big.is_full());
    }

    #[test]
    fn a_cut_value_is_malformed_not_a_panic() {
        let mut chunk = Chunk::starting_at(1);
        chunk.push(b"hello");
        let whole = chunk.value();
        for cut in 1..whole.len() {
            let got: Vec<_> = entries(1, &whole[..cut]).collect();
            assert_eq!(got.last(), Some(&Err(Malformed)), "cut at {cut}");
        }
    }
}
