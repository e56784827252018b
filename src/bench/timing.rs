//! Timing: the median of repeated runs of a phase, interleaved run by run with the same-run
//! memory copy it is compared with.
//!
//! On a shared machine the memory system's speed moves while a benchmark runs (other tenants,
//! the host). Timing the copy after the phase let the two medians come from different moments;
//! alternating them run by run makes both describe the same stretch of time. (On this project's
//! development machine, a virtual machine, a copy of the same two buffers ran at 52 GB/s, then
//! a second later at 74 GB/s; fresh buffers start at either speed.)

use std::time::Instant;

use anyhow::Result;

use super::BenchOptions;

/// The baseline of a row: `bytes / 2` bytes copied between two buffers (reading and writing
/// `bytes` in all), split over the kernel's thread count, the calling thread copying the first
/// part itself (as the CPU kernels run their first neuron range), so one thread spawns nothing.
pub(crate) struct Baseline {
    src: Vec<f32>,
    dst: Vec<f32>,
    per: usize,
    samples: Vec<f64>,
}

impl Baseline {
    /// A copy of `bytes / 2` bytes over `threads` threads; its buffers are touched once here.
    pub fn new(bytes: u64, threads: usize) -> Baseline {
        let len = (bytes / 8) as usize; // f32 elements per buffer
        Baseline {
            src: (0..len).map(|i| i as f32).collect(),
            dst: vec![0.0; len],
            per: len.div_ceil(threads.max(1)).max(1),
            samples: vec![],
        }
    }

    fn copy(&mut self) {
        let per = self.per;
        std::thread::scope(|s| {
            let mut parts = self.dst.chunks_mut(per).zip(self.src.chunks(per));
            let first = parts.next();
            for (d, c) in parts {
                s.spawn(move || d.copy_from_slice(c));
            }
            if let Some((d, c)) = first {
                d.copy_from_slice(c);
            }
        });
        std::hint::black_box(&self.dst);
    }

    fn timed_copy(&mut self) {
        let t0 = Instant::now();
        self.copy();
        self.samples.push(t0.elapsed().as_secs_f64());
    }

    /// Median seconds of the copies timed so far (one untimed copy if none were).
    pub fn median(&mut self) -> f64 {
        if self.samples.is_empty() {
            self.copy();
            self.timed_copy();
        }
        median(self.samples.clone())
    }
}

/// The median of `xs` (the mean of the middle two for an even count).
pub(crate) fn median(mut xs: Vec<f64>) -> f64 {
    xs.sort_by(f64::total_cmp);
    let m = xs.len() / 2;
    if xs.len() % 2 == 1 {
        xs[m]
    } else {
        (xs[m - 1] + xs[m]) / 2.0
    }
}

/// Times `f`: one warm-up, then at least `min_runs` runs and `min_time` (at most 50 runs past
/// `min_runs`); the median in seconds. With a `baseline`, one copy runs (and is timed) after
/// each run of `f`, warm-up included.
pub(crate) fn time(
    opts: &BenchOptions,
    mut baseline: Option<&mut Baseline>,
    mut f: impl FnMut() -> Result<()>,
) -> Result<f64> {
    f()?;
    if let Some(b) = baseline.as_deref_mut() {
        b.copy();
    }
    let mut samples = vec![];
    let start = Instant::now();
    while samples.len() < opts.min_runs || (start.elapsed() < opts.min_time && samples.len() < 50) {
        let t0 = Instant::now();
        f()?;
        samples.push(t0.elapsed().as_secs_f64());
        if let Some(b) = baseline.as_deref_mut() {
            b.timed_copy();
        }
    }
    Ok(median(samples))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn medians() {
        assert_eq!(median(vec![3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(vec![4.0, 1.0, 2.0, 3.0]), 2.5);
    }

    /// Every timed run of the phase is followed by one timed copy.
    #[test]
    fn the_copy_runs_beside_each_run() {
        let opts = BenchOptions {
            min_runs: 3,
            min_time: std::time::Duration::ZERO,
            ..BenchOptions::default()
        };
        let mut b = Baseline::new(4096, 2);
        let mut runs = 0;
        time(&opts, Some(&mut b), || {
            runs += 1;
            Ok(())
        })
        .unwrap();
        assert_eq!(runs, 4);
        assert_eq!(b.samples.len(), 3);
        assert!(b.median() >= 0.0);
        assert_eq!(b.dst, b.src);
    }
}
