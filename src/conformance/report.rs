//! What a run of golden cases gives: one [`CaseReport`] per case and a [`Summary`]; both print
//! as the CLI's lines and serialise as its `--json` output.
//!
//! ## JSON
//!
//! A [`CaseReport`] serialises as an object with the fields
//!
//! - `name`, `neuron`: the case's;
//! - `passed`: a boolean; `failure`: why it failed (text), or `null`;
//! - `max_abs`, `max_rel`: the worst absolute and relative error over every compared tensor, each
//!   `{"value", "at", "got", "want"}` or `null`;
//! - `tensors`: every compared tensor: `{"label", "len", "exact", "max_abs", "max_rel",
//!   "mismatches", "first_mismatch"}`.
//!
//! A non-finite number (an infinite error, a NaN value) is `null`. A [`Summary`] is
//! `{"passed", "failed"}`, and a [`RunReport`] (`flexsn conformance --json`) is
//! `{"backend", "tolerance": {"rtol", "atol"}, "cases": [...], "summary"}`.

use std::fmt;

use serde::{Serialize, Serializer};

use super::compare::{TensorStat, Tolerance, Worst};
use super::error::CaseError;

/// The result of one case.
#[derive(Debug)]
pub struct CaseReport {
    /// The case's name.
    pub name: String,
    /// The case's neuron kind.
    pub neuron: String,
    /// `None` when the case passed; otherwise why it failed.
    pub failure: Option<CaseError>,
    /// Every tensor compared (also for a failed case, up to the failure).
    pub tensors: Vec<TensorStat>,
}

impl CaseReport {
    /// Whether every comparison passed.
    pub fn passed(&self) -> bool {
        self.failure.is_none()
    }

    /// The largest absolute error over every compared tensor.
    pub fn worst_abs(&self) -> Option<&Worst> {
        worst_of(self.tensors.iter().filter_map(|t| t.max_abs.as_ref()))
    }

    /// The largest relative error over every compared tensor (where the reference is non-zero).
    pub fn worst_rel(&self) -> Option<&Worst> {
        worst_of(self.tensors.iter().filter_map(|t| t.max_rel.as_ref()))
    }
}

fn worst_of<'a>(it: impl Iterator<Item = &'a Worst>) -> Option<&'a Worst> {
    it.fold(None, |best: Option<&Worst>, w| match best {
        Some(b) if b.value >= w.value => Some(b),
        _ => Some(w),
    })
}

impl fmt::Display for CaseReport {
    /// One line: `PASS name  max abs 1.2e-7 at grads.x_seq[3,5]  max rel ... at ...`, or
    /// `FAIL name  <reason>  max abs ...`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {}",
            if self.passed() { "PASS" } else { "FAIL" },
            self.name
        )?;
        if let Some(why) = &self.failure {
            write!(f, "  {why}")?;
        }
        match self.worst_abs() {
            Some(w) if w.value == 0.0 => {
                return write!(f, "  exact ({} tensors equal)", self.tensors.len());
            }
            Some(w) => write!(f, "  max abs {:.2e} at {}", w.value, w.at)?,
            None if self.passed() => write!(f, "  (nothing compared)")?,
            None => {}
        }
        if let Some(w) = self.worst_rel() {
            write!(f, "  max rel {:.2e} at {}", w.value, w.at)?;
        }
        Ok(())
    }
}

/// The JSON form of a [`CaseReport`] (see the [module docs](self)).
#[derive(Serialize)]
struct CaseJson<'a> {
    name: &'a str,
    neuron: &'a str,
    passed: bool,
    failure: Option<String>,
    max_abs: Option<&'a Worst>,
    max_rel: Option<&'a Worst>,
    tensors: &'a [TensorStat],
}

impl Serialize for CaseReport {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        CaseJson {
            name: &self.name,
            neuron: &self.neuron,
            passed: self.passed(),
            failure: self.failure.as_ref().map(ToString::to_string),
            max_abs: self.worst_abs(),
            max_rel: self.worst_rel(),
            tensors: &self.tensors,
        }
        .serialize(s)
    }
}

/// Counts of passed and failed cases; prints as `N passed, M failed`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Summary {
    /// Cases that passed.
    pub passed: usize,
    /// Cases that failed.
    pub failed: usize,
}

impl Summary {
    /// Counts `r`.
    pub fn add(&mut self, r: &CaseReport) {
        if r.passed() {
            self.passed += 1;
        } else {
            self.failed += 1;
        }
    }
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} passed, {} failed", self.passed, self.failed)
    }
}

/// A run of golden cases on one backend: what `flexsn conformance --json` prints.
#[derive(Debug, Serialize)]
pub struct RunReport {
    /// The backend's name (`interpreter`, `cpu`, ...).
    pub backend: String,
    /// The tolerance non-spike values were compared with.
    pub tolerance: Tolerance,
    /// Every case run, in order.
    pub cases: Vec<CaseReport>,
    /// The counts of passed and failed cases.
    pub summary: Summary,
}
