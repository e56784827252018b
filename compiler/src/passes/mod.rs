//! Optimisation passes over step graphs: constant folding, common-subexpression elimination,
//! dead-code elimination and IEEE-safe algebraic simplification.
//!
//! Every pass takes a graph and returns a new one, rebuilt through
//! [`GraphBuilder::with_decls_of`](crate::ir::builder::GraphBuilder::with_decls_of): the declarations (inputs, states, params) stay as they are,
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
mod simplify;

pub use crate::ir::dce::dce;
pub use const_fold::const_fold;
pub use cse::cse;
pub use simplify::simplify;

use crate::ir::StepGraph;
use crate::ir::error::BuildError;
use crate::ir::verify::verify;

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

/// The optimiser broke a promise it makes: a compiler bug, reported rather than worked around.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum OptimizeError {
    /// The optimised graph's declarations or outputs differ from the original's.
    #[error(
        "compiler bug: optimising `{graph}` changed its {what}; please report it with the neuron's IR (`flexsn ir`)"
    )]
    Interface {
        /// The graph's name.
        graph: String,
        /// What changed (`inputs`, `states`, `params`, `outputs`).
        what: &'static str,
    },
    /// The optimised graph fails the verifier.
    #[error(
        "compiler bug: optimising `{graph}` produced a graph that fails verification: {source}; please report it with the neuron's IR (`flexsn ir`)"
    )]
    Invalid {
        /// The graph's name.
        graph: String,
        /// The verifier's error.
        source: BuildError,
    },
}

/// [`optimize`], checked: the result must keep `g`'s interface (inputs, states, params and
/// output names, in order) and pass the verifier. What the backends compile.
pub fn optimize_checked(g: &StepGraph) -> Result<StepGraph, OptimizeError> {
    let o = optimize(g);
    check_optimized(g, &o)?;
    Ok(o)
}

/// Checks that `after` (an optimised `before`) keeps `before`'s interface and is valid.
pub fn check_optimized(before: &StepGraph, after: &StepGraph) -> Result<(), OptimizeError> {
    let interface = |what| OptimizeError::Interface {
        graph: before.name().to_string(),
        what,
    };
    if after.inputs() != before.inputs() {
        return Err(interface("inputs"));
    }
    if after.states() != before.states() {
        return Err(interface("states"));
    }
    if after.params() != before.params() {
        return Err(interface("params"));
    }
    let names = |g: &StepGraph| {
        g.outputs()
            .iter()
            .map(|o| o.name.clone())
            .collect::<Vec<_>>()
    };
    if names(after) != names(before) {
        return Err(interface("outputs"));
    }
    verify(after).map_err(|source| OptimizeError::Invalid {
        graph: before.name().to_string(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ir::builder::GraphBuilder;
    use crate::ir::{Op, StateInit};

    fn lif(extra_input: bool, output: &str) -> StepGraph {
        let mut b = GraphBuilder::new("k");
        let x = b.add_input("x").unwrap();
        if extra_input {
            b.add_input("y").unwrap();
        }
        let v = b.add_state("v", StateInit::Const(0.0)).unwrap();
        let h = b.op(Op::Add, &[v, x]).unwrap();
        b.add_output(output, h).unwrap();
        b.set_next_state(0, h).unwrap();
        b.finish().unwrap()
    }

    #[test]
    fn a_changed_interface_is_a_typed_error() {
        let g = lif(false, "h");
        assert_eq!(optimize_checked(&g).map(|o| o.len()), Ok(g.len()));
        let err = check_optimized(&g, &lif(true, "h")).unwrap_err();
        assert_eq!(
            err,
            OptimizeError::Interface {
                graph: "k".into(),
                what: "inputs"
            }
        );
        assert!(err.to_string().starts_with("compiler bug"), "{err}");
        let err = check_optimized(&g, &lif(false, "s")).unwrap_err();
        assert!(matches!(
            err,
            OptimizeError::Interface {
                what: "outputs",
                ..
            }
        ));
    }
}
