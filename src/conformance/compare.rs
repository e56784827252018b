//! Comparing computed tensors with golden ones: spikes exactly, everything else within a
//! [`Tolerance`]; each comparison records its worst errors ([`TensorStat`]).

use serde::Serialize;

/// Tolerances for non-spike values: `|got - want| <= atol + rtol * |want|`.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct Tolerance {
    /// Relative tolerance.
    pub rtol: f64,
    /// Absolute tolerance.
    pub atol: f64,
}

impl Default for Tolerance {
    /// rtol 1e-5, atol 1e-6 (f32 results against PyTorch's).
    fn default() -> Self {
        Tolerance {
            rtol: 1e-5,
            atol: 1e-6,
        }
    }
}

/// An error value and where it occurred.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Worst {
    /// The error (absolute or relative).
    pub value: f64,
    /// `tensor[index]`, e.g. `grads.x_seq[3,5]`.
    pub at: String,
    /// The computed value there.
    pub got: f32,
    /// The golden value there.
    pub want: f32,
}

/// How one tensor compared.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct TensorStat {
    /// The tensor, named by its JSON path (`outputs.spike_seq`, `grads.x_seq`).
    pub label: String,
    /// Its number of values.
    pub len: usize,
    /// Compared for exact equality (spikes) rather than within tolerance.
    pub exact: bool,
    /// The largest absolute error.
    pub max_abs: Option<Worst>,
    /// The largest relative error (over non-zero golden values).
    pub max_rel: Option<Worst>,
    /// How many values are out of tolerance (or unequal, for exact tensors).
    pub mismatches: usize,
    /// The first mismatch.
    pub first_mismatch: Option<Worst>,
}

/// A tensor to compare: its label, shape (for readable indices) and expected values.
#[derive(Clone, Debug)]
pub struct Expect {
    /// The tensor's JSON path, shown in reports.
    pub label: String,
    /// Its shape (row-major), for indices like `[3,5]`.
    pub dims: Vec<usize>,
    /// The golden values.
    pub values: Vec<f32>,
    /// Compare for exact equality (spikes).
    pub exact: bool,
}

impl Expect {
    /// An expected tensor.
    pub fn new(label: impl Into<String>, dims: Vec<usize>, values: Vec<f32>, exact: bool) -> Self {
        Expect {
            label: label.into(),
            dims,
            values,
            exact,
        }
    }
}

/// A compared tensor that differs from its golden values.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum Mismatch {
    /// The computed tensor has the wrong number of values.
    #[error("{label}: got {got} values, expected {expected}")]
    Count {
        /// The tensor.
        label: String,
        /// Values computed.
        got: usize,
        /// Golden values.
        expected: usize,
    },
    /// Some values are out of tolerance (or unequal, for exact tensors).
    #[error(
        "{label}: {count} of {len} values {rule}, first at {}: got {:?}, want {:?} (abs err {:.3e})",
        .first.at, .first.got, .first.want, .first.value
    )]
    Values {
        /// The tensor.
        label: String,
        /// How many values differ.
        count: usize,
        /// Values compared.
        len: usize,
        /// The rule they break (`differ (exact comparison)`, `outside rtol ... / atol ...`).
        rule: String,
        /// The first differing value, with its absolute error.
        first: Worst,
    },
}

/// Where per-family code sends comparisons (the harness's checker).
pub trait CompareSink {
    /// Compares `got` with `e`; the error describes the mismatch.
    fn compare(&mut self, e: &Expect, got: &[f32]) -> Result<(), Mismatch>;
}

/// `[i]`, or `[a,b]` for a multi-dimensional shape; empty for a one-value tensor.
pub(crate) fn fmt_index(dims: &[usize], mut i: usize) -> String {
    if dims.len() <= 1 {
        return if dims.first() == Some(&1) && i == 0 {
            String::new()
        } else {
            format!("[{i}]")
        };
    }
    let mut idx = vec![0; dims.len()];
    for (k, &d) in dims.iter().enumerate().rev() {
        let d = d.max(1);
        idx[k] = i % d;
        i /= d;
    }
    let idx: Vec<String> = idx.iter().map(usize::to_string).collect();
    format!("[{}]", idx.join(","))
}

/// Collects the tensor comparisons of one case.
#[derive(Debug)]
pub(crate) struct Checker {
    pub(crate) tol: Tolerance,
    pub(crate) stats: Vec<TensorStat>,
}

impl Checker {
    pub(crate) fn new(tol: Tolerance) -> Self {
        Checker { tol, stats: vec![] }
    }
}

impl CompareSink for Checker {
    fn compare(&mut self, e: &Expect, got: &[f32]) -> Result<(), Mismatch> {
        if got.len() != e.values.len() {
            return Err(Mismatch::Count {
                label: e.label.clone(),
                got: got.len(),
                expected: e.values.len(),
            });
        }
        let mut st = TensorStat {
            label: e.label.clone(),
            len: got.len(),
            exact: e.exact,
            max_abs: None,
            max_rel: None,
            mismatches: 0,
            first_mismatch: None,
        };
        let at = |i: usize| format!("{}{}", e.label, fmt_index(&e.dims, i));
        for (i, (&g, &w)) in got.iter().zip(&e.values).enumerate() {
            let both_nan = g.is_nan() && w.is_nan();
            let abs = if both_nan {
                0.0
            } else {
                (g as f64 - w as f64).abs()
            };
            let abs = if abs.is_nan() { f64::INFINITY } else { abs };
            let ok = if e.exact {
                both_nan || g == w
            } else {
                both_nan || abs <= self.tol.atol + self.tol.rtol * (w as f64).abs()
            };
            let worst = |value| Worst {
                value,
                at: at(i),
                got: g,
                want: w,
            };
            if st.max_abs.as_ref().is_none_or(|m| abs > m.value) {
                st.max_abs = Some(worst(abs));
            }
            if w != 0.0 && !w.is_nan() {
                let rel = abs / (w as f64).abs();
                if st.max_rel.as_ref().is_none_or(|m| rel > m.value) {
                    st.max_rel = Some(worst(rel));
                }
            }
            if !ok {
                st.mismatches += 1;
                if st.first_mismatch.is_none() {
                    st.first_mismatch = Some(worst(abs));
                }
            }
        }
        let verdict = match &st.first_mismatch {
            None => Ok(()),
            Some(first) => Err(Mismatch::Values {
                label: e.label.clone(),
                count: st.mismatches,
                len: st.len,
                rule: if e.exact {
                    "differ (exact comparison)".to_string()
                } else {
                    format!(
                        "outside rtol {:e} / atol {:e}",
                        self.tol.rtol, self.tol.atol
                    )
                },
                first: first.clone(),
            }),
        };
        self.stats.push(st);
        verdict
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn index_formatting() {
        assert_eq!(fmt_index(&[4, 7], 9), "[1,2]");
        assert_eq!(fmt_index(&[7], 3), "[3]");
        assert_eq!(fmt_index(&[], 0), "[0]");
    }

    #[test]
    fn comparison_rules() {
        let mut c = Checker::new(Tolerance::default());
        let e = Expect::new("a", vec![3], vec![1.0, 0.0, -2.0], false);
        assert!(c.compare(&e, &[1.000009, 9e-7, -2.0]).is_ok());
        let err = c.compare(&e, &[1.0, 2e-6, -2.0]).unwrap_err();
        assert!(
            matches!(&err, Mismatch::Values { count: 1, len: 3, first, .. } if first.at == "a[1]"),
            "{err:?}"
        );
        let msg = err.to_string();
        assert!(msg.contains("a[1]") && msg.contains("1 of 3"), "{msg}");
        let s = Expect::new("s", vec![3], vec![1.0, 0.0, 1.0], true);
        assert!(c.compare(&s, &[1.0, 0.0, 1.0]).is_ok());
        assert!(c.compare(&s, &[1.0, 1e-30, 1.0]).is_err());
        let nan = Expect::new("n", vec![1], vec![f32::NAN], false);
        assert!(c.compare(&nan, &[f32::NAN]).is_ok());
        assert!(c.compare(&nan, &[0.0]).is_err());
        assert!(matches!(
            c.compare(&e, &[1.0]),
            Err(Mismatch::Count {
                got: 1,
                expected: 3,
                ..
            })
        ));
        // Worst errors and where: the first comparison's largest error is at [0]; relative
        // errors skip zero references.
        let st = &c.stats[0];
        assert_eq!(st.max_abs.as_ref().unwrap().at, "a[0]");
        assert_eq!(st.max_rel.as_ref().unwrap().at, "a[0]");
        assert_eq!(st.mismatches, 0);
        assert_eq!(c.stats[1].max_abs.as_ref().unwrap().at, "a[1]");
        assert_eq!(c.stats[1].mismatches, 1);
    }
}
