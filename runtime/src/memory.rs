//! Memory estimates checked before large allocations, against a limit the user can raise.
//!
//! A run of `T` steps over `N` neurons allocates buffers of `T·N` (sequences), `N` (states),
//! `T` or `N` (params) and `T²` (PSN weights) values. Their sizes are computed with checked
//! arithmetic and compared with a [`MemoryLimit`] before anything is allocated, so that a
//! mistyped size is a clear error instead of an abort (or minutes of swapping).

use std::fmt;

/// The default limit: 8 GiB.
pub const DEFAULT_MAX_MEMORY: u64 = 8 << 30;

/// Bytes a run may allocate.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct MemoryLimit(pub u64);

impl Default for MemoryLimit {
    fn default() -> Self {
        MemoryLimit(DEFAULT_MAX_MEMORY)
    }
}

/// A run that would need more memory than allowed, or whose size overflows.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum MemoryError {
    #[error(
        "{what} needs about {} of memory, more than the limit of {}; raise the limit (`--max-memory` on the command line, `Jit::set_memory_limit` in the library) if this is intended",
        Bytes(*needed),
        Bytes(*limit)
    )]
    /// More than the limit.
    TooLarge {
        /// What needs the memory.
        what: String,
        /// Bytes needed.
        needed: u64,
        /// The limit in bytes.
        limit: u64,
    },
    /// The sizes do not fit in 64 bits.
    #[error("{what}: the sizes overflow (no machine holds that much memory)")]
    Overflow {
        /// What needs the memory.
        what: String,
    },
}

/// A byte count in readable units.
struct Bytes(u64);

impl fmt::Display for Bytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
        let mut v = self.0 as f64;
        let mut u = 0;
        while v >= 1024.0 && u + 1 < UNITS.len() {
            v /= 1024.0;
            u += 1;
        }
        if u == 0 {
            write!(f, "{} B", self.0)
        } else {
            write!(f, "{v:.1} {}", UNITS[u])
        }
    }
}

/// A sum of products of element counts, with the size of one element: `None` on overflow.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Estimate(Option<u64>);

impl Estimate {
    /// Nothing yet.
    pub fn new() -> Self {
        Estimate(Some(0))
    }

    /// Adds `count` buffers of `factors` multiplied elements of `elem_bytes` bytes each.
    pub fn add(self, count: usize, factors: &[usize], elem_bytes: usize) -> Self {
        let product = factors
            .iter()
            .try_fold(count as u64, |acc, &f| acc.checked_mul(f as u64))
            .and_then(|p| p.checked_mul(elem_bytes as u64));
        Estimate(self.0.zip(product).and_then(|(a, b)| a.checked_add(b)))
    }

    /// The bytes, or `None` when they overflow.
    pub fn bytes(self) -> Option<u64> {
        self.0
    }

    /// Checks the estimate against `limit`; `what` names the run in the error.
    pub fn check(self, limit: MemoryLimit, what: &str) -> Result<u64, MemoryError> {
        match self.0 {
            None => Err(MemoryError::Overflow { what: what.into() }),
            Some(needed) if needed > limit.0 => Err(MemoryError::TooLarge {
                what: what.into(),
                needed,
                limit: limit.0,
            }),
            Some(needed) => Ok(needed),
        }
    }
}

impl Default for Estimate {
    fn default() -> Self {
        Estimate::new()
    }
}

/// Parses a size: bytes (`1000000`), or a number with a binary unit (`512K`, `8G`, `1.5GiB`,
/// `2T`; case-insensitive, `B`/`iB` optional).
pub fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let lower = t.to_ascii_lowercase();
    let body = lower
        .strip_suffix("ib")
        .or_else(|| lower.strip_suffix('b'))
        .unwrap_or(&lower);
    let (num, shift) = match body.chars().last() {
        Some('k') => (&body[..body.len() - 1], 10),
        Some('m') => (&body[..body.len() - 1], 20),
        Some('g') => (&body[..body.len() - 1], 30),
        Some('t') => (&body[..body.len() - 1], 40),
        _ => (body, 0),
    };
    let bad = || format!("`{t}` is not a size (examples: 4096, 512M, 8G, 1.5GiB)");
    let v: f64 = num.trim().parse().map_err(|_| bad())?;
    let bytes = v * (1u64 << shift) as f64;
    if !bytes.is_finite() || bytes < 0.0 || bytes >= u64::MAX as f64 {
        return Err(bad());
    }
    Ok(bytes as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn estimates_are_checked_and_overflow_is_an_error() {
        let e = Estimate::new().add(2, &[16, 4096], 4).add(1, &[4096], 4);
        assert_eq!(e.bytes(), Some(2 * 16 * 4096 * 4 + 4096 * 4));
        assert!(e.check(MemoryLimit::default(), "run").is_ok());
        // T·N·4 bytes for T = 1, N = 2^62: overflows, no allocation attempted.
        let huge = Estimate::new().add(1, &[1, 1 << 62], 4);
        assert!(matches!(
            huge.check(MemoryLimit::default(), "run"),
            Err(MemoryError::Overflow { .. })
        ));
        // 40 TB: over the limit, and the message says how much is needed.
        let big = Estimate::new().add(1, &[100_000, 100_000_000], 4);
        let err = big.check(MemoryLimit::default(), "the run").unwrap_err();
        assert!(err.to_string().contains("36.4 TiB"), "{err}");
        assert!(err.to_string().contains("8.0 GiB"), "{err}");
        assert!(big.check(MemoryLimit(u64::MAX), "run").is_ok());
    }

    #[test]
    fn sizes_parse_with_units() {
        assert_eq!(parse_size("4096"), Ok(4096));
        assert_eq!(parse_size("512K"), Ok(512 << 10));
        assert_eq!(parse_size("8g"), Ok(8 << 30));
        assert_eq!(parse_size("1.5GiB"), Ok(3 << 29));
        assert_eq!(parse_size("2TB"), Ok(2 << 40));
        for bad in ["", "-1G", "nan", "inf", "1e30T", "G", "8X"] {
            assert!(parse_size(bad).is_err(), "{bad}");
        }
    }
}
