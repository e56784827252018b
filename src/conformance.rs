//! Conformance against SpikingJelly golden data (`tests/golden/*.json`, format in
//! `tests/golden/FORMAT.md`), on any backend.
//!
//! A [`Harness`] loads cases, builds each case's neuron (a built-in from `neuron` + `params`, or
//! a FlexSN core bound by name in [`Cores`]), compiles it with the runtime's
//! [`Jit`](flexsn_runtime::Jit) for the chosen [`Backend`](flexsn_runtime::Backend) and runs forward and — when the case has upstream gradients — backward
//! through the compiled [`Kernel`](flexsn_runtime::Kernel): the same path as every other user of
//! the runtime. It compares every output and gradient: spikes exactly, everything else within
//! [`Tolerance`] (default rtol 1e-5, atol 1e-6, in f32). Each case gives a [`CaseReport`] with
//! its worst absolute and relative errors and where they occurred, or the [`CaseError`] it
//! failed with.
//!
//! The parts, one module each: the cases as JSON ([`Case`], [`load_cases`]); the comparison
//! ([`Tolerance`], [`Expect`], [`TensorStat`]); the reports ([`CaseReport`], [`Summary`], also
//! as JSON); the harness ([`Harness`], [`ScanCase`], [`run_scan_case`]); the FlexSN cores
//! ([`Cores`]); and one module per family of neurons, each mapping a case onto a scan
//! ([`spiking_case`], [`nonspiking_case`], [`sliding_psn_case`], [`zoo_case`], [`flexsn_case`])
//! or comparing by itself ([`mixing_psn_case`]).
//!
//! ```no_run
//! use flexsn::conformance::{Cores, Harness};
//! use flexsn::runtime::Backend;
//!
//! let cores = Cores::default();
//! let mut h = Harness::new(Backend::Interpreter, &cores)?;
//! let reports = h.run_file("tests/golden/lifnode.json")?;
//! assert!(reports.iter().all(|r| r.passed()));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod builtin;
mod case;
mod compare;
mod cores;
mod error;
mod flexsn;
mod harness;
mod psn;
mod report;
mod zoo;

pub use builtin::{builtin_from_case, nonspiking_case, spiking_case};
pub use case::{Case, load_cases, parse_cases};
pub use compare::{CompareSink, Expect, Mismatch, TensorStat, Tolerance, Worst};
pub use cores::{CoreArgs, CoreFactory, Cores};
pub use error::{BoxError, CaseError, LoadError};
pub use flexsn::flexsn_case;
pub use harness::{DecodeCheck, Harness, ScanCase, run_scan_case};
pub use psn::{mixing_psn_case, sliding_psn_case};
pub use report::{CaseReport, RunReport, Summary};
pub use zoo::{CLASSES as ZOO_CLASSES, zoo_case};

#[cfg(test)]
mod tests {
    use super::*;
    use flexsn_runtime::Backend;

    #[test]
    fn unknown_and_unsupported_kinds_fail_with_reasons() {
        let cases = parse_cases(
            r#"[{"name": "a", "neuron": "DSRIFNode", "shape": [1, 1]},
                {"name": "b", "neuron": "PSN", "shape": [1, 1]},
                {"name": "c", "neuron": "FlexSN:mycore", "shape": [1, 1]},
                {"name": "d", "neuron": "LIFNode", "shape": [1, 1], "params": {"tau": 2.0, "wobble": 1}}]"#,
            "inline",
        )
        .unwrap();
        let cores = Cores::default();
        let mut h = Harness::new(Backend::Interpreter, &cores).unwrap();
        let r: Vec<_> = cases.iter().map(|c| h.run_case(c)).collect();
        assert!(r.iter().all(|r| !r.passed()));
        let why = |i: usize| r[i].failure.as_ref().unwrap();
        assert!(matches!(why(0), CaseError::UnknownKind { kind, .. } if kind == "DSRIFNode"));
        assert!(matches!(why(1), CaseError::Missing(p) if p == "inputs.x_seq"));
        assert!(matches!(why(2), CaseError::UnboundCore(c) if c == "mycore"));
        assert!(matches!(why(3), CaseError::Neuron(_)));
        assert!(why(3).to_string().contains("wobble"));
        assert!(
            r[0].to_string()
                .starts_with("FAIL a  unknown neuron kind `DSRIFNode`")
        );
    }
}
