//! Rebuilding a graph node by node through a fresh builder: the skeleton of every pass.

use crate::builder::GraphBuilder;
use crate::error::BuildError;
use crate::graph::{StepGraph, ValueId};
use crate::op::Op;

/// The canonical form of a constant: every NaN becomes `f32::NAN` (no op can observe a NaN's
/// sign or payload, and the text form cannot write them).
pub fn canonical_const(c: f32) -> f32 {
    if c.is_nan() { f32::NAN } else { c }
}

/// Rebuilds `g` through a fresh builder with its declarations. Nodes for which `keep` is false
/// are skipped (they must not be needed by kept nodes or roots); every kept node goes through
/// `rewrite`, which receives the op and the rebuilt operands and returns the node's new value.
pub fn rebuild(
    g: &StepGraph,
    keep: impl Fn(ValueId) -> bool,
    mut rewrite: impl FnMut(&mut GraphBuilder, Op, &[ValueId]) -> Result<ValueId, BuildError>,
) -> StepGraph {
    const INVARIANT: &str = "rebuilding a verified graph with its own declarations cannot fail";
    let mut b = GraphBuilder::with_decls_of(g);
    let mut map: Vec<Option<ValueId>> = vec![None; g.len()];
    let mut args = Vec::with_capacity(3);
    for (v, node) in g.nodes() {
        if !keep(v) {
            continue;
        }
        args.clear();
        args.extend(
            node.args
                .iter()
                .map(|a| map[a.index()].expect("operands of kept nodes are kept")),
        );
        let op = match node.op {
            Op::Const(c) => Op::Const(canonical_const(c)),
            op => op,
        };
        map[v.index()] = Some(rewrite(&mut b, op, &args).expect(INVARIANT));
    }
    let get = |v: ValueId| map[v.index()].expect("roots are kept");
    for o in g.outputs() {
        b.add_output(&o.name, get(o.value)).expect(INVARIANT);
    }
    for (j, &v) in g.next_states().iter().enumerate() {
        b.set_next_state(j, get(v)).expect(INVARIANT);
    }
    b.finish().expect(INVARIANT)
}

/// The value of `v` if it is a constant.
pub fn const_value(b: &GraphBuilder, v: ValueId) -> Option<f32> {
    match b.node(v).op {
        Op::Const(c) => Some(c),
        _ => None,
    }
}
