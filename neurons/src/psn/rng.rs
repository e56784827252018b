//! Parameter initialisation for the PSN family, drawn from the compiler's [`SplitMix64`].
//!
//! It does not reproduce torch's generator: golden cases bring their own parameter values. It
//! gives every seed a reproducible, well-mixed stream, which is all initialisation needs. The
//! generator is re-exported here so that `psn::rng::SplitMix64` keeps naming it.

pub use flexsn_compiler::rng::SplitMix64;

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

    #[test]
    fn same_draws_as_before_the_generator_moved() {
        // fan_in 16 gives bound 0.25; these are the bits the neurons crate's own SplitMix64 drew
        // from seed 7 before it was replaced by the compiler's.
        let w = kaiming_uniform_a_sqrt5(&mut SplitMix64::new(7), 4, 16);
        let bits: Vec<u32> = w.iter().map(|v| v.to_bits()).collect();
        assert_eq!(bits, [0xBD61_A0F8, 0xBE77_6788, 0x3E4D_3080, 0x3D29_D758]);
    }
}
