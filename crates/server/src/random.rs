//! Random numbers from the TLS crypto provider's CSPRNG, so no second random source or crypto
//! crate enters the tree.

use rustls::crypto::SecureRandom;

/// A source of uniformly distributed numbers. The server uses [`ProviderRandom`]; tests may
/// supply a fixed sequence.
pub trait Dice: Send {
    /// A uniformly distributed number in `low..=high` (`low <= high`).
    fn roll(&mut self, low: u32, high: u32) -> u32;
}

/// [`Dice`] backed by the crypto provider's secure random generator.
pub struct ProviderRandom {
    source: &'static dyn SecureRandom,
}

impl ProviderRandom {
    /// Uses the aws-lc-rs provider's generator.
    pub fn new() -> Self {
        Self {
            source: rustls::crypto::aws_lc_rs::default_provider().secure_random,
        }
    }

    fn next_u32(&mut self) -> u32 {
        let mut bytes = [0u8; 4];
        // The OS generator failing is not something a server can recover from or hide: the
        // numbers it hands out would no longer be random.
        self.source
            .fill(&mut bytes)
            .expect("the operating system's random generator failed");
        u32::from_le_bytes(bytes)
    }
}

impl Default for ProviderRandom {
    fn default() -> Self {
        Self::new()
    }
}

impl Dice for ProviderRandom {
    fn roll(&mut self, low: u32, high: u32) -> u32 {
        debug_assert!(low <= high);
        let span = u64::from(high - low) + 1;
        // Rejection sampling: drop the top partial bucket so every value is equally likely.
        let limit = (1u64 << 32) - (1u64 << 32) % span;
        loop {
            let x = u64::from(self.next_u32());
            if x < limit {
                // x % span < span <= 2^32, so the value fits in u32.
                return low + (x % span) as u32;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rolls_stay_in_range_and_reach_both_ends() {
        let mut dice = ProviderRandom::new();
        let mut seen = [false; 6];
        for _ in 0..10_000 {
            let n = dice.roll(1, 6);
            assert!((1..=6).contains(&n));
            seen[n as usize - 1] = true;
        }
        assert!(seen.iter().all(|s| *s), "{seen:?}");
        assert_eq!(dice.roll(7, 7), 7);
        let _ = dice.roll(0, u32::MAX);
    }
}
