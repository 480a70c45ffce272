//! Replay detection.
//!
//! For signed datagrams, [`ReplayWindow`]: a sliding window over sequence numbers, as in
//! RFC 6479 and DTLS (RFC 6347, section 4.1.2.6). For E2E messages, whose counters are sparse,
//! [`CounterMemory`]: the last few thousand counters, remembered exactly.
//!
//! The window remembers the highest sequence number accepted (`top`) and which of the
//! [`REPLAY_WINDOW`] numbers just below it were seen:
//!
//! - above `top`: accepted; the window slides up (a jump of a whole window or more forgets
//!   everything below);
//! - within the window and not seen: accepted (datagrams may arrive out of order);
//! - within the window and seen: a duplicate, refused;
//! - `REPLAY_WINDOW` or more below `top`: too old to tell, refused.
//!
//! Check first (cheap, before any signature work), and accept only once the datagram or
//! message is verified, so forgeries cannot move the window.

/// Sequence numbers the window spans, `top` included.
pub const REPLAY_WINDOW: u64 = 1024;

const WORDS: usize = (REPLAY_WINDOW / 64) as usize;

/// Why a sequence number is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ReplayError {
    /// Already accepted once.
    #[error("duplicate sequence number")]
    Duplicate,
    /// Below the window.
    #[error("sequence number older than the replay window")]
    TooOld,
}

/// One sender's replay window.
#[derive(Debug, Clone, Default)]
pub struct ReplayWindow {
    /// The highest number accepted; `None` before the first.
    top: Option<u64>,
    /// Bit `i` (word `i / 64`, bit `i % 64`) set: `top - i` was accepted.
    seen: [u64; WORDS],
}

impl ReplayWindow {
    /// An empty window: the first number is always accepted.
    pub fn new() -> Self {
        Self::default()
    }

    /// The highest number accepted so far.
    pub fn top(&self) -> Option<u64> {
        self.top
    }

    /// Whether `seq` would be accepted. Changes nothing.
    pub fn check(&self, seq: u64) -> Result<(), ReplayError> {
        let Some(top) = self.top else { return Ok(()) };
        if seq > top {
            return Ok(());
        }
        let age = top - seq;
        if age >= REPLAY_WINDOW {
            return Err(ReplayError::TooOld);
        }
        if self.bit(age) {
            Err(ReplayError::Duplicate)
        } else {
            Ok(())
        }
    }

    /// Checks `seq` and, when acceptable, records it.
    pub fn accept(&mut self, seq: u64) -> Result<(), ReplayError> {
        self.check(seq)?;
        match self.top {
            Some(top) if seq <= top => self.set_bit(top - seq),
            Some(top) => {
                self.shift(seq - top);
                self.top = Some(seq);
                self.set_bit(0);
            }
            None => {
                self.top = Some(seq);
                self.set_bit(0);
            }
        }
        Ok(())
    }

    fn bit(&self, age: u64) -> bool {
        let (word, bit) = ((age / 64) as usize, age % 64);
        self.seen[word] & (1 << bit) != 0
    }

    fn set_bit(&mut self, age: u64) {
        let (word, bit) = ((age / 64) as usize, age % 64);
        self.seen[word] |= 1 << bit;
    }

    /// Moves every bit `by` places older; bits pushed past the window are forgotten.
    fn shift(&mut self, by: u64) {
        if by >= REPLAY_WINDOW {
            self.seen = [0; WORDS];
            return;
        }
        let (words, bits) = ((by / 64) as usize, (by % 64) as u32);
        for i in (0..WORDS).rev() {
            let from = i.checked_sub(words);
            let high = from.map_or(0, |f| self.seen[f] << bits);
            let low = match from.and_then(|f| f.checked_sub(1)) {
                Some(f) if bits > 0 => self.seen[f] >> (64 - bits),
                _ => 0,
            };
            self.seen[i] = high | low;
        }
    }
}

/// Counters an E2E recipient remembers per sender by default.
pub const DEFAULT_COUNTER_MEMORY: usize = 4096;

/// Replay detection for sparse counters (E2E messages number themselves with a microsecond
/// clock, so consecutive messages are far apart and a bit window would not span two of them).
///
/// Remembers the last `capacity` counters accepted; a counter seen is a duplicate, and one at
/// or below the highest counter forgotten (the floor) is too old to tell. Anything else is
/// accepted, including a counter below the highest (reordering: the caller may flag it).
#[derive(Debug, Clone)]
pub struct CounterMemory {
    seen: std::collections::BTreeSet<u64>,
    floor: Option<u64>,
    capacity: usize,
}

impl Default for CounterMemory {
    fn default() -> Self {
        Self::new(DEFAULT_COUNTER_MEMORY)
    }
}

impl CounterMemory {
    /// Remembers up to `capacity` counters (at least one).
    pub fn new(capacity: usize) -> Self {
        Self {
            seen: std::collections::BTreeSet::new(),
            floor: None,
            capacity: capacity.max(1),
        }
    }

    /// Remembers up to `capacity` counters, refusing everything at or below `floor` (the
    /// highest counter accepted before, by an earlier process).
    pub fn with_floor(capacity: usize, floor: Option<u64>) -> Self {
        Self {
            floor,
            ..Self::new(capacity)
        }
    }

    /// The highest counter accepted.
    pub fn top(&self) -> Option<u64> {
        self.seen.last().copied().or(self.floor)
    }

    /// Whether `counter` would be accepted. Changes nothing.
    pub fn check(&self, counter: u64) -> Result<(), ReplayError> {
        if self.floor.is_some_and(|floor| counter <= floor) {
            return Err(ReplayError::TooOld);
        }
        if self.seen.contains(&counter) {
            return Err(ReplayError::Duplicate);
        }
        Ok(())
    }

    /// Checks `counter` and, when acceptable, remembers it.
    pub fn accept(&mut self, counter: u64) -> Result<(), ReplayError> {
        self.check(counter)?;
        self.seen.insert(counter);
        if self.seen.len() > self.capacity {
            self.floor = self.seen.pop_first();
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use proptest::prelude::*;

    use super::*;

    #[test]
    fn sparse_counters_refuse_duplicates_and_forgotten_ones_only() {
        let mut memory = CounterMemory::new(3);
        for counter in [1_000_000, 5_000_000, 2_000_000] {
            assert_eq!(memory.accept(counter), Ok(()), "{counter}");
        }
        assert_eq!(memory.top(), Some(5_000_000));
        assert_eq!(memory.accept(2_000_000), Err(ReplayError::Duplicate));
        assert_eq!(memory.accept(9_000_000), Ok(()));
        // 1,000,000 was forgotten to make room: it and anything below it are too old.
        assert_eq!(memory.check(1_000_000), Err(ReplayError::TooOld));
        assert_eq!(memory.check(999), Err(ReplayError::TooOld));
        assert_eq!(
            memory.check(1_500_000),
            Ok(()),
            "unseen and above the floor"
        );
    }

    #[test]
    fn the_first_packet_is_accepted_whatever_its_number() {
        for first in [0, 1, 5000, u64::MAX] {
            let mut window = ReplayWindow::new();
            assert_eq!(window.accept(first), Ok(()));
            assert_eq!(window.top(), Some(first));
            assert_eq!(window.accept(first), Err(ReplayError::Duplicate));
        }
    }

    #[test]
    fn an_exact_duplicate_is_refused_and_reordering_is_not() {
        let mut window = ReplayWindow::new();
        for seq in [10, 12, 11, 15] {
            assert_eq!(window.accept(seq), Ok(()), "{seq}");
        }
        for seq in [10, 11, 12, 15] {
            assert_eq!(window.accept(seq), Err(ReplayError::Duplicate), "{seq}");
        }
        assert_eq!(window.accept(13), Ok(()));
        assert_eq!(window.accept(14), Ok(()));
    }

    #[test]
    fn the_window_edge_is_exact() {
        let mut window = ReplayWindow::new();
        window.accept(5000).unwrap();
        let oldest_inside = 5000 - (REPLAY_WINDOW - 1);
        assert_eq!(window.check(oldest_inside), Ok(()));
        assert_eq!(window.check(oldest_inside - 1), Err(ReplayError::TooOld));
        assert_eq!(window.accept(oldest_inside), Ok(()));
        assert_eq!(window.accept(oldest_inside), Err(ReplayError::Duplicate));
    }

    #[test]
    fn sliding_keeps_what_stays_inside_and_drops_what_leaves() {
        let mut window = ReplayWindow::new();
        window.accept(100).unwrap();
        window.accept(90).unwrap();
        window.accept(100 + 70).unwrap(); // a shift across a word boundary
        assert_eq!(window.check(90), Err(ReplayError::Duplicate));
        assert_eq!(window.check(100), Err(ReplayError::Duplicate));
        assert_eq!(window.check(95), Ok(()));
        window.accept(90 + REPLAY_WINDOW).unwrap(); // 90 is now just outside
        assert_eq!(window.check(90), Err(ReplayError::TooOld));
        assert_eq!(
            window.check(100),
            Err(ReplayError::Duplicate),
            "still inside"
        );
    }

    #[test]
    fn a_far_jump_ahead_forgets_everything_below() {
        let mut window = ReplayWindow::new();
        for seq in 1..=100 {
            window.accept(seq).unwrap();
        }
        window.accept(1_000_000).unwrap();
        assert_eq!(window.check(100), Err(ReplayError::TooOld));
        assert_eq!(
            window.check(1_000_000 - 1),
            Ok(()),
            "nothing below the jump was seen"
        );
        assert_eq!(window.check(1_000_000), Err(ReplayError::Duplicate));
    }

    /// The simplest correct model: every number ever accepted, and the highest.
    #[derive(Default)]
    struct Model {
        accepted: HashSet<u64>,
        top: Option<u64>,
    }

    impl Model {
        fn accept(&mut self, seq: u64) -> Result<(), ReplayError> {
            if let Some(top) = self.top {
                if seq <= top && top - seq >= REPLAY_WINDOW {
                    return Err(ReplayError::TooOld);
                }
            }
            if !self.accepted.insert(seq) {
                return Err(ReplayError::Duplicate);
            }
            self.top = Some(self.top.map_or(seq, |t| t.max(seq)));
            Ok(())
        }
    }

    proptest! {
        // 256 cases, or PROPTEST_CASES from the environment (scripts/fuzz.sh).
        #![proptest_config(ProptestConfig::default())]

        #[test]
        fn the_window_agrees_with_the_model(
            start in 0u64..u64::MAX / 2,
            steps in prop::collection::vec((-1500i64..1500, any::<bool>()), 1..400),
        ) {
            let mut window = ReplayWindow::new();
            let mut model = Model::default();
            let mut cursor = start;
            for (delta, replay_last) in steps {
                let seq = if replay_last { cursor } else { cursor.saturating_add_signed(delta) };
                prop_assert_eq!(window.accept(seq), model.accept(seq), "seq {}", seq);
                cursor = seq;
            }
        }
    }
}
