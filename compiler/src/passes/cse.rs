//! Common-subexpression elimination.

use super::rebuild;
use crate::ir::StepGraph;

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
    use crate::ir::{InputDecl, Node, Op, OutputDecl};
    use petgraph::graph::{DiGraph, NodeIndex};

    /// A graph assembled without hash-consing: `y0 = (x * 2) + (2 * x)`, `y1 = x * 2`, with two
    /// NaN constants of different bits.
    fn duplicated() -> StepGraph {
        let mut graph = DiGraph::<Node, u8>::default();
        let mut add = |op: Op, args: &[u32]| {
            let args: Vec<NodeIndex<u32>> =
                args.iter().map(|&a| NodeIndex::new(a as usize)).collect();
            let v = graph.add_node(Node {
                op,
                args: args.clone(),
            });
            for (i, a) in args.into_iter().enumerate() {
                graph.add_edge(a, v, i as u8);
            }
            v
        };
        let x = add(Op::Input(0), &[]);
        let c1 = add(Op::Const(2.0), &[]);
        let c2 = add(Op::Const(2.0), &[]);
        let m1 = add(Op::Mul, &[x.index() as u32, c1.index() as u32]);
        let m2 = add(Op::Mul, &[c2.index() as u32, x.index() as u32]);
        let s = add(Op::Add, &[m1.index() as u32, m2.index() as u32]);
        let n1 = add(Op::Const(f32::NAN), &[]);
        let n2 = add(Op::Const(f32::from_bits(0xffc0_0001)), &[]);
        let t = add(Op::Add, &[n1.index() as u32, n2.index() as u32]);
        StepGraph {
            name: "dup".into(),
            description: String::new(),
            graph,
            inputs: vec![InputDecl { name: "x".into() }],
            states: vec![],
            params: vec![],
            outputs: vec![
                OutputDecl {
                    name: "y0".into(),
                    value: s,
                },
                OutputDecl {
                    name: "y1".into(),
                    value: m2,
                },
                OutputDecl {
                    name: "y2".into(),
                    value: t,
                },
            ],
            next_states: vec![],
        }
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
