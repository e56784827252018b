//! Deterministic random numbers: [`SplitMix64`], identical on every platform, for test data,
//! benchmarks and parameter initialisation; and [`Draws`], the helpers (uniform floats, ranges,
//! picks) over any source of 64-bit words, so that the test-graph generator can also replay a
//! fixed sequence of choices (which a property-test framework shrinks).

use std::ops::RangeInclusive;

/// A source of 64-bit words.
pub trait Words {
    /// The next word.
    fn next_word(&mut self) -> u64;
}

/// The state of the SplitMix64 generator: tiny, fast, and identical everywhere.
#[derive(Clone, Debug)]
pub struct SplitMixState {
    state: u64,
}

impl Words for SplitMixState {
    fn next_word(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}

/// Random draws (uniform floats, ranges, picks) from a source of words.
#[derive(Clone, Debug)]
pub struct Draws<W> {
    words: W,
}

/// The SplitMix64 generator with its draws.
pub type SplitMix64 = Draws<SplitMixState>;

impl SplitMix64 {
    /// The generator seeded with `seed`.
    pub fn new(seed: u64) -> Self {
        Draws {
            words: SplitMixState { state: seed },
        }
    }
}

impl<W: Words> Draws<W> {
    /// Draws from `words`.
    pub fn from_words(words: W) -> Self {
        Draws { words }
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.words.next_word()
    }

    /// Uniform in `[0, 1)`, 53 bits.
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    /// Uniform in `[0, 1)` from the top 24 bits of one draw, so every value is an exact `f32`.
    pub fn next_unit_f32(&mut self) -> f32 {
        (self.next_u64() >> 40) as f32 * (1.0 / (1u32 << 24) as f32)
    }

    /// Uniform in `[-bound, bound)`: [`next_unit_f32`](Self::next_unit_f32) mapped to
    /// `(2u - 1) * bound` in `f32` (parameter initialisation and test data use this).
    pub fn uniform_symmetric(&mut self, bound: f32) -> f32 {
        (2.0 * self.next_unit_f32() - 1.0) * bound
    }

    /// Uniform in `0..n`; `0` when `n == 0`.
    pub fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            0
        } else {
            // The bias of a plain modulo is below 2^-40 for the sizes used here.
            (self.next_u64() % n as u64) as usize
        }
    }

    /// Uniform in the range; the start when the range is empty.
    pub fn in_range(&mut self, r: &RangeInclusive<usize>) -> usize {
        let (lo, hi) = (*r.start(), *r.end());
        if hi <= lo {
            lo
        } else {
            lo + self.below(hi - lo + 1)
        }
    }

    /// `true` with probability `p`.
    pub fn chance(&mut self, p: f64) -> bool {
        self.unit() < p
    }

    /// Uniform in `[lo, hi)`, as f32.
    pub fn uniform(&mut self, lo: f32, hi: f32) -> f32 {
        let v = lo as f64 + (hi as f64 - lo as f64) * self.unit();
        (v as f32).clamp(lo.min(hi), lo.max(hi))
    }

    /// One element of a non-empty slice.
    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn draws_stay_in_their_ranges() {
        let mut r = SplitMix64::new(3);
        for _ in 0..1000 {
            assert!(r.below(7) < 7);
            assert!((2..=5).contains(&r.in_range(&(2..=5))));
            let u = r.uniform(-1.5, 0.5);
            assert!((-1.5..=0.5).contains(&u));
            assert!((0.0..1.0).contains(&r.unit()));
        }
        assert_eq!(r.below(0), 0);
        assert_eq!(r.in_range(&(4..=4)), 4);
    }
}
