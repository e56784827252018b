//! A small seedable generator for parameter initialisation (SplitMix64).
//!
//! It does not reproduce torch's generator: golden cases bring their own parameter values. It
//! gives every seed a reproducible, well-mixed stream, which is all initialisation needs.

/// SplitMix64 (Steele, Lea and Flood, 2014): 64 bits of state, one add and a mixing function
/// per draw.
#[derive(Clone, Debug)]
pub struct SplitMix64 {
    state: u64,
}

impl SplitMix64 {
    pub fn new(seed: u64) -> Self {
        SplitMix64 { state: seed }
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `[0, 1)`, with 24 random bits (every value exactly representable in `f32`).
    pub fn next_unit_f32(&mut self) -> f32 {
        (self.next_u64() >> 40) as f32 * (1.0 / (1u32 << 24) as f32)
    }

    /// Uniform in `[-bound, bound)`.
    pub fn uniform_symmetric(&mut self, bound: f32) -> f32 {
        (2.0 * self.next_unit_f32() - 1.0) * bound
    }
}

/// `n` values of `U(-1/sqrt(fan_in), 1/sqrt(fan_in))`: what `kaiming_uniform_(w, a=sqrt(5))`
/// draws from (gain `sqrt(2 / (1 + 5))`, bound `gain * sqrt(3 / fan_in) = 1 / sqrt(fan_in)`).
pub fn kaiming_uniform_a_sqrt5(rng: &mut SplitMix64, n: usize, fan_in: usize) -> Vec<f32> {
    let bound = (1.0 / (fan_in.max(1) as f64).sqrt()) as f32;
    (0..n).map(|_| rng.uniform_symmetric(bound)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reproducible_and_in_range() {
        let a = kaiming_uniform_a_sqrt5(&mut SplitMix64::new(7), 1000, 16);
        let b = kaiming_uniform_a_sqrt5(&mut SplitMix64::new(7), 1000, 16);
        let c = kaiming_uniform_a_sqrt5(&mut SplitMix64::new(8), 1000, 16);
        assert_eq!(a, b);
        assert_ne!(a, c);
        assert!(a.iter().all(|&w| (-0.25..0.25).contains(&w)));
        // Roughly uniform: mean near 0, variance near bound^2 / 3.
        let mean = a.iter().map(|&w| w as f64).sum::<f64>() / a.len() as f64;
        let var = a.iter().map(|&w| (w as f64 - mean).powi(2)).sum::<f64>() / a.len() as f64;
        assert!(mean.abs() < 0.02, "mean {mean}");
        assert!((var - 0.0625 / 3.0).abs() < 0.003, "var {var}");
    }
}
