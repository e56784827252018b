//! Dead-code elimination.

use crate::graph::StepGraph;
use crate::rebuild::rebuild;

/// Removes every node that no output and no next state depends on, leaves included. The
/// declarations stay: an input nobody reads is still an input of the kernel's ABI.
pub fn dce(g: &StepGraph) -> StepGraph {
    let mut live = vec![false; g.len()];
    for v in g.roots() {
        live[v.index()] = true;
    }
    // Index order is topological, so one reverse sweep marks everything reachable.
    for (v, node) in g.nodes().collect::<Vec<_>>().into_iter().rev() {
        if live[v.index()] {
            for a in &node.args {
                live[a.index()] = true;
            }
        }
    }
    rebuild(g, |v| live[v.index()], |b, op, args| b.op(op, args))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::builder::GraphBuilder;
    use crate::graph::StateInit;
    use crate::op::{Op, ParamKind};

    #[test]
    fn removes_unreachable_nodes_and_leaves_keeps_decls() {
        let mut b = GraphBuilder::new("t");
        let x = b.add_input("x").unwrap();
        let unused_in = b.add_input("u").unwrap();
        let p = b.add_param("p", ParamKind::PerTime, true).unwrap();
        let v = b.add_state("v", StateInit::Const(0.5)).unwrap();
        let dead = b.op(Op::Exp, &[unused_in]).unwrap();
        let _dead2 = b.op(Op::Mul, &[dead, p]).unwrap();
        let h = b.op(Op::Add, &[v, x]).unwrap();
        b.add_output("h", h).unwrap();
        b.set_next_state(0, h).unwrap();
        let g = b.finish().unwrap();
        let d = dce(&g);
        crate::verify::verify(&d).unwrap();
        assert_eq!(d.len(), 3);
        assert_eq!(d.inputs().len(), 2);
        assert_eq!(d.params().len(), 1);
        assert_eq!(d.states()[0].init, StateInit::Const(0.5));
        let names: Vec<&str> = d.nodes().map(|(_, n)| n.op.name()).collect();
        assert_eq!(names, ["input", "state", "add"]);
        // idempotent
        assert_eq!(crate::text::print(&dce(&d)), crate::text::print(&d));
    }
}
