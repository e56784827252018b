//! Optimisation passes over step graphs: constant folding, common-subexpression elimination,
//! dead-code elimination and IEEE-safe algebraic simplification.
//!
//! Every pass takes a graph and returns a new one, rebuilt through
//! [`GraphBuilder::with_decls_of`]: the declarations (inputs, states, params) stay as they are,
//! nodes stay in topological index order, and identical nodes are shared. Every pass preserves
//! the graph's `f32` semantics bit for bit (NaN payloads aside: NaN constants are made canonical)
//! and its gradients, so autodiff may run before or after them. The `f64` interpreter can differ
//! after [`const_fold`], which evaluates in `f32` as kernels do.
//!
//! ```
//! use flexsn_compiler::dsl::CoreBuilder;
//! use flexsn_compiler::ir::StateInit;
//! use flexsn_compiler::passes::optimize;
//!
//! let b = CoreBuilder::new("k");
//! let (x, v) = (b.input("x"), b.state("v", StateInit::Const(0.0)));
//! let two = b.constant(1.0) + 1.0;            // folds to 2
//! b.set_state("v", v * 1.0 + x * two);         // v * 1 -> v
//! let g = optimize(&b.build()?);
//! assert_eq!(g.len(), 5); // x, v, 2, x * 2, v + x * 2
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod const_fold;
mod cse;
mod dce;
mod simplify;

pub use const_fold::const_fold;
pub use cse::cse;
pub use dce::dce;
pub use simplify::simplify;

use crate::dsl::GraphBuilder;
use crate::error::BuildError;
use crate::ir::{Op, StepGraph, ValueId};

/// Bound on the rounds of [`optimize`]; each round that changes the graph removes or replaces
/// nodes, so real graphs reach the fixed point in a few rounds.
const MAX_ROUNDS: usize = 64;

/// Runs [`simplify`], [`const_fold`], [`cse`] and [`dce`] until the graph stops changing.
pub fn optimize(g: &StepGraph) -> StepGraph {
    let mut current = g.clone();
    let mut text = crate::text::print(&current);
    for _ in 0..MAX_ROUNDS {
        let next = dce(&cse(&const_fold(&simplify(&current))));
        let next_text = crate::text::print(&next);
        if next_text == text {
            return next;
        }
        current = next;
        text = next_text;
    }
    current
}

/// The canonical form of a constant: every NaN becomes `f32::NAN` (no op can observe a NaN's
/// sign or payload, and the text form cannot write them).
pub(crate) fn canonical_const(c: f32) -> f32 {
    if c.is_nan() { f32::NAN } else { c }
}

/// Rebuilds `g` through a fresh builder with its declarations. Nodes for which `keep` is false
/// are skipped (they must not be needed by kept nodes or roots); every kept node goes through
/// `rewrite`, which receives the op and the rebuilt operands and returns the node's new value.
pub(crate) fn rebuild(
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
pub(crate) fn const_value(b: &GraphBuilder, v: ValueId) -> Option<f32> {
    match b.node(v).op {
        Op::Const(c) => Some(c),
        _ => None,
    }
}
