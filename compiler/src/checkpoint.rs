//! Save policies: what a training forward keeps for backward, and the scans that recompute the
//! rest.
//!
//! Under [`SavePolicy::States`] the training forward stores every state after every step
//! (`S·T·N` floats). Under [`SavePolicy::Checkpoint`]`(K)` it stores only the state before every
//! `K`-th step (`S·⌈T/K⌉·N` floats, the initial state included); backward then walks the
//! segments of `K` steps from the last to the first, recomputes each segment's states from its
//! checkpoint ([`recompute_kernel`]) and runs the reverse scan over the segment
//! ([`SegmentBackward`]).
//!
//! Results are bit-identical to `States`: the recomputation runs the same step graph on the same
//! values, and the backward scan's sum-over-time outputs (parameter-gradient contributions)
//! become carried states `acc' = acc + v`, so their sums continue across segments with the same
//! additions in the same order as one sum over the whole reverse scan.

use std::fmt;
use std::str::FromStr;

use crate::autodiff::BackwardGraph;
use crate::dsl::GraphBuilder;
use crate::error::BuildError;
use crate::ir::{Op, StateInit, StepGraph, ValueId};
use crate::scan::{Direction, OutputMode, ScanKernel};

/// What a training forward keeps for backward.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum SavePolicy {
    /// Every state after every step: `S·T·N` floats.
    #[default]
    States,
    /// The states before every `K`-th step: `S·⌈T/K⌉·N` floats; backward recomputes the rest,
    /// one segment of `K` steps at a time.
    Checkpoint(usize),
}

/// The default checkpoint interval (chosen by measurement: see the README's performance
/// section).
pub const DEFAULT_CHECKPOINT: usize = 32;

/// A save policy that could not be parsed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("invalid save policy `{0}`: use `states`, `checkpoint` or `checkpoint:K` with K >= 1")]
pub struct SavePolicyError(pub String);

impl SavePolicy {
    /// `Ok(self)` unless it is `checkpoint:0` (a policy built directly rather than parsed), whose
    /// interval no scan can run with.
    pub fn check(self) -> Result<SavePolicy, SavePolicyError> {
        match self {
            SavePolicy::Checkpoint(0) => Err(SavePolicyError(self.to_string())),
            _ => Ok(self),
        }
    }

    /// Segments of a `T`-step scan: `(first step, steps)`, in time order. `States` is one
    /// segment.
    pub fn segments(self, t: usize) -> Vec<(usize, usize)> {
        let k = match self {
            SavePolicy::States => t.max(1),
            SavePolicy::Checkpoint(k) => k.max(1),
        };
        (0..t).step_by(k).map(|t0| (t0, k.min(t - t0))).collect()
    }

    /// Floats per neuron and state that a training forward of `T` steps keeps for backward:
    /// `T + 1` (the initial state and every step's) or `⌈T/K⌉`.
    pub fn saved_rows(self, t: usize) -> usize {
        match self {
            SavePolicy::States => t + 1,
            SavePolicy::Checkpoint(k) => t.div_ceil(k.max(1)),
        }
    }
}

impl fmt::Display for SavePolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SavePolicy::States => write!(f, "states"),
            SavePolicy::Checkpoint(k) => write!(f, "checkpoint:{k}"),
        }
    }
}

impl FromStr for SavePolicy {
    type Err = SavePolicyError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || SavePolicyError(s.to_string());
        match s.split_once(':') {
            None if s == "states" => Ok(SavePolicy::States),
            None if s == "checkpoint" => Ok(SavePolicy::Checkpoint(DEFAULT_CHECKPOINT)),
            Some(("checkpoint", k)) => match k.parse::<usize>() {
                Ok(k) if k >= 1 => Ok(SavePolicy::Checkpoint(k)),
                _ => Err(bad()),
            },
            _ => Err(bad()),
        }
    }
}

/// Copies every node of `g` into `b` (declarations already there); returns the new id of each.
fn copy_nodes(g: &StepGraph, b: &mut GraphBuilder) -> Result<Vec<ValueId>, BuildError> {
    let mut map = Vec::with_capacity(g.len());
    for (_, node) in g.nodes() {
        let args: Vec<ValueId> = node.args.iter().map(|a| map[a.index()]).collect();
        map.push(b.op(node.op, &args)?);
    }
    Ok(map)
}

/// The forward scan that recomputes a segment's states: `fwd` without its outputs (they were
/// returned by the training forward already), storing state sequences.
pub fn recompute_kernel(fwd: &StepGraph) -> Result<ScanKernel, BuildError> {
    let mut b = GraphBuilder::with_decls_of(fwd);
    let map = copy_nodes(fwd, &mut b)?;
    for (j, v) in fwd.next_states().iter().enumerate() {
        b.set_next_state(j, map[v.index()])?;
    }
    Ok(ScanKernel::forward(b.finish()?, true))
}

/// A backward scan run one segment at a time: the sum-over-time outputs of the backward kernel
/// are carried states here, so that each segment continues the previous one's sums.
#[derive(Clone, Debug)]
pub struct SegmentBackward {
    /// The segment scan: the backward kernel's states, then one accumulator state per
    /// sum-over-time output (its initial value is zero); the backward kernel's sequence outputs,
    /// in order.
    pub kernel: ScanKernel,
    /// Per output of the backward kernel: `Ok(o)`, output `o` of [`SegmentBackward::kernel`], or
    /// `Err(j)`, the final value of its state `j`.
    pub sources: Vec<Result<usize, usize>>,
}

impl SegmentBackward {
    /// Derives the segment scan of `bwd` (whose graph may have been optimised: it is copied node
    /// for node, so each value is computed by the same operations).
    pub fn new(bwd: &BackwardGraph) -> Result<SegmentBackward, BuildError> {
        let k = &bwd.kernel;
        let g = &k.graph;
        let mut b = GraphBuilder::with_decls_of(g);
        let map = copy_nodes(g, &mut b)?;
        let mut sources = Vec::with_capacity(g.outputs().len());
        let mut modes = vec![];
        let mut taken: Vec<String> = g
            .inputs()
            .iter()
            .map(|d| d.name.clone())
            .chain(g.states().iter().map(|d| d.name.clone()))
            .chain(g.params().iter().map(|d| d.name.clone()))
            .chain(g.outputs().iter().map(|d| d.name.clone()))
            .collect();
        let mut accs = vec![];
        for (d, mode) in g.outputs().iter().zip(&k.output_modes) {
            let v = map[d.value.index()];
            match mode {
                OutputMode::Sequence => {
                    sources.push(Ok(modes.len()));
                    modes.push(OutputMode::Sequence);
                    b.add_output(&d.name, v)?;
                }
                OutputMode::SumOverTime => {
                    let mut name = format!("sum_{}", d.name);
                    while taken.contains(&name) {
                        name.push('_');
                    }
                    taken.push(name.clone());
                    let acc = b.add_state(&name, StateInit::Const(0.0))?;
                    // The same addition as a sum-over-time output: accumulator + value.
                    let next = b.op(Op::Add, &[acc, v])?;
                    let j = g.states().len() + accs.len();
                    accs.push(next);
                    sources.push(Err(j));
                }
            }
        }
        for (j, v) in g.next_states().iter().enumerate() {
            b.set_next_state(j, map[v.index()])?;
        }
        for (i, next) in accs.into_iter().enumerate() {
            b.set_next_state(g.states().len() + i, next)?;
        }
        Ok(SegmentBackward {
            kernel: ScanKernel {
                graph: b.finish()?,
                direction: Direction::Reverse,
                output_modes: modes,
                state_seqs: false,
            },
            sources,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_prints() {
        for (s, p) in [
            ("states", SavePolicy::States),
            ("checkpoint:1", SavePolicy::Checkpoint(1)),
            ("checkpoint:64", SavePolicy::Checkpoint(64)),
            ("checkpoint", SavePolicy::Checkpoint(DEFAULT_CHECKPOINT)),
        ] {
            assert_eq!(s.parse::<SavePolicy>(), Ok(p));
        }
        assert_eq!(SavePolicy::Checkpoint(8).to_string(), "checkpoint:8");
        for bad in [
            "",
            "state",
            "checkpoint:0",
            "checkpoint:",
            "checkpoint:-1",
            "all:3",
        ] {
            assert_eq!(
                bad.parse::<SavePolicy>(),
                Err(SavePolicyError(bad.into())),
                "{bad}"
            );
        }
    }

    #[test]
    fn segments_cover_every_step_once() {
        assert_eq!(SavePolicy::States.segments(5), [(0, 5)]);
        assert_eq!(
            SavePolicy::Checkpoint(2).segments(5),
            [(0, 2), (2, 2), (4, 1)]
        );
        assert_eq!(SavePolicy::Checkpoint(9).segments(5), [(0, 5)]);
        assert!(SavePolicy::Checkpoint(3).segments(0).is_empty());
        assert_eq!(SavePolicy::Checkpoint(32).saved_rows(1024), 32);
        assert_eq!(SavePolicy::Checkpoint(32).saved_rows(1025), 33);
        assert_eq!(SavePolicy::States.saved_rows(1024), 1025);
    }
}
