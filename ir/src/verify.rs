//! The verifier: structural invariants every pass and backend relies on.

use std::collections::HashMap;

use crate::error::BuildError;
use crate::graph::{StateInit, StepGraph};
use crate::op::Op;
use petgraph::Direction;
use petgraph::visit::EdgeRef;

/// A name is an identifier: a letter or `_`, then letters, digits or `_`.
pub(crate) fn valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// A declared initial value follows the rule for numbers a user writes: not NaN (infinities
/// are written with the named constants and stay allowed).
pub(crate) fn check_state_init(name: &str, init: StateInit) -> Result<(), BuildError> {
    match init {
        StateInit::Const(c) if c.is_nan() => Err(BuildError::NanStateInit(name.into())),
        _ => Ok(()),
    }
}

/// Checks `g`: operand counts, operands defined before use (index order is topological), leaf
/// indices in range, edges matching operands, unique valid names, and outputs and next states
/// that refer to existing nodes (one next value per state).
pub fn verify(g: &StepGraph) -> Result<(), BuildError> {
    // By name: graphs may declare hundreds of thousands of names.
    let mut names: HashMap<&str, &'static str> = HashMap::new();
    let decls = g
        .inputs
        .iter()
        .map(|d| (d.name.as_str(), "an input"))
        .chain(g.states.iter().map(|d| (d.name.as_str(), "a state")))
        .chain(g.params.iter().map(|d| (d.name.as_str(), "a param")))
        .chain(g.outputs.iter().map(|d| (d.name.as_str(), "an output")));
    for (name, kind) in decls {
        if !valid_name(name) {
            return Err(BuildError::InvalidName(name.into()));
        }
        if let Some(&first) = names.get(name) {
            return Err(BuildError::DuplicateName {
                name: name.into(),
                first,
                second: kind,
            });
        }
        names.insert(name, kind);
    }
    for d in &g.states {
        check_state_init(&d.name, d.init)?;
    }

    for (v, node) in g.nodes() {
        let expected = node.op.arity().count();
        if node.args.len() != expected {
            return Err(BuildError::Arity {
                op: node.op.name(),
                expected,
                got: node.args.len(),
            });
        }
        for (operand, a) in node.args.iter().enumerate() {
            if a.index() >= v.index() {
                return Err(BuildError::ForwardReference {
                    node: v.index() as u32,
                    operand,
                    arg: a.index() as u32,
                });
            }
        }
        let (kind, index, count) = match node.op {
            Op::Input(i) => ("input", i, g.inputs.len()),
            Op::State(i) => ("state", i, g.states.len()),
            Op::Param(i) => ("param", i, g.params.len()),
            _ => ("", 0, usize::MAX),
        };
        if index as usize >= count {
            return Err(BuildError::LeafOutOfRange { kind, index, count });
        }
        if let Op::Spike(s) = node.op {
            s.validate()?;
        }
        let mut from_edges: Vec<(u8, usize)> = g
            .graph
            .edges_directed(v, Direction::Incoming)
            .map(|e| (*e.weight(), e.source().index()))
            .collect();
        from_edges.sort_unstable();
        let from_args: Vec<(u8, usize)> = node
            .args
            .iter()
            .enumerate()
            .map(|(i, a)| (i as u8, a.index()))
            .collect();
        if from_edges != from_args {
            return Err(BuildError::EdgeMismatch(v.index() as u32));
        }
    }

    if g.next_states.len() != g.states.len() {
        let missing = g
            .states
            .get(g.next_states.len())
            .map(|s| s.name.clone())
            .unwrap_or_default();
        return Err(BuildError::StateNotUpdated(missing));
    }
    for v in g.roots() {
        if v.index() >= g.len() {
            return Err(BuildError::DanglingValue(v.index() as u32));
        }
    }
    if g.outputs.is_empty() && g.states.is_empty() {
        return Err(BuildError::Empty);
    }
    Ok(())
}
