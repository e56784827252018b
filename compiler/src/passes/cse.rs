//! Common-subexpression elimination.

use crate::ir::StepGraph;
use crate::ir::rebuild::rebuild;

/// Merges nodes that compute the same op of the same operands (commutative operands in either
/// order; constants compared by bits after NaNs are made canonical), by rebuilding through the
/// hash-consing builder. Graphs from the builder are already free of duplicates; other passes'
/// rewrites and hand-assembled graphs may not be.
pub fn cse(g: &StepGraph) -> StepGraph {
    rebuild(g, |_| true, |b, op, args| b.op(op, args))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ir::builder::assemble;
    use crate::ir::{InputDecl, Node, Op, OutputDecl, ValueId};

    /// A graph assembled without hash-consing: `y0 = (x * 2) + (2 * x)`, `y1 = x * 2`, with two
    /// NaN constants of different bits.
    fn duplicated() -> StepGraph {
        let mut nodes = vec![];
        let mut add = |op: Op, args: &[ValueId]| {
            nodes.push(Node {
                op,
                args: args.to_vec(),
            });
            ValueId::new(nodes.len() - 1)
        };
        let x = add(Op::Input(0), &[]);
        let c1 = add(Op::Const(2.0), &[]);
        let c2 = add(Op::Const(2.0), &[]);
        let m1 = add(Op::Mul, &[x, c1]);
        let m2 = add(Op::Mul, &[c2, x]);
        let s = add(Op::Add, &[m1, m2]);
        let n1 = add(Op::Const(f32::NAN), &[]);
        let n2 = add(Op::Const(f32::from_bits(0xffc0_0001)), &[]);
        let t = add(Op::Add, &[n1, n2]);
        let output = |name: &str, value| OutputDecl {
            name: name.into(),
            value,
        };
        let outputs = vec![output("y0", s), output("y1", m2), output("y2", t)];
        let inputs = vec![InputDecl { name: "x".into() }];
        assemble("dup", nodes, inputs, vec![], vec![], outputs, vec![]).unwrap()
    }

    #[test]
    fn merges_duplicates() {
        let g = duplicated();
        crate::verify::verify(&g).unwrap();
        let c = cse(&g);
        crate::verify::verify(&c).unwrap();
        // x, 2, x*2, add, NaN, NaN + NaN
        assert_eq!(c.len(), 6);
        assert_eq!(c.outputs()[1].value, c.node(c.outputs()[0].value).args[0]);
        let add = c.node(c.outputs()[0].value);
        assert_eq!(add.args[0], add.args[1]);
        let nan_add = c.node(c.outputs()[2].value);
        assert_eq!(nan_add.args[0], nan_add.args[1]);
    }

    #[test]
    fn is_identity_on_builder_graphs() {
        let cfg = crate::random::RandomGraphConfig::all();
        for seed in 0..50 {
            let g = crate::random::random_graph(seed, &cfg);
            assert_eq!(crate::text::print(&cse(&g)), crate::text::print(&g));
        }
    }
}
