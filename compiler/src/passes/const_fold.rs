//! Constant folding: an op whose operands are all constants becomes a constant.

use crate::ir::StepGraph;
use crate::ir::eval::eval_op;
use crate::ir::rebuild::{canonical_const, const_value, rebuild};

/// Replaces every op whose operands are all constants by its value, computed with
/// [`eval_op`] in `f32`: exactly the bits the `f32` interpreter computes at run time. Folding
/// cascades through chains of constant ops. `spike` and `detach` of a constant fold too (their
/// forward value is the constant's; a constant has no gradient to keep or stop).
pub fn const_fold(g: &StepGraph) -> StepGraph {
    rebuild(
        g,
        |_| true,
        |b, op, args| {
            if op.is_leaf() {
                return b.op(op, args);
            }
            let mut values = [0.0f32; 3];
            for (slot, &a) in values.iter_mut().zip(args) {
                match const_value(b, a) {
                    Some(c) => *slot = c,
                    None => return b.op(op, args),
                }
            }
            let v = eval_op::<f32>(&op, &values[..args.len()]);
            Ok(b.constant(canonical_const(v)))
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ir::builder::GraphBuilder;
    use crate::ir::{Op, StateInit, Surrogate};

    fn graph(f: impl FnOnce(&mut GraphBuilder) -> crate::ir::ValueId) -> StepGraph {
        let mut b = GraphBuilder::new("t");
        let v = f(&mut b);
        b.add_output("y", v).unwrap();
        b.finish().unwrap()
    }

    fn output_op(g: &StepGraph) -> Op {
        g.node(g.outputs()[0].value).op
    }

    #[test]
    fn folds_chains_with_f32_bits() {
        let g = graph(|b| {
            let c = b.constant(1.0);
            let e = b.op(Op::Exp, &[c]).unwrap();
            let three = b.constant(3.0);
            let d = b.op(Op::Div, &[e, three]).unwrap();
            b.op(Op::Sin, &[d]).unwrap()
        });
        let f = super::super::dce(&const_fold(&g));
        let expect = (1.0f32.exp() / 3.0).sin();
        assert_eq!(output_op(&f), Op::Const(expect));
        assert_eq!(f.len(), 1);
    }

    #[test]
    fn folds_spike_and_detach_of_constants() {
        let g = graph(|b| {
            let z = b.constant(-0.0);
            let s = b
                .op(Op::Spike(Surrogate::ATan { alpha: 2.0 }), &[z])
                .unwrap();
            b.op(Op::Detach, &[s]).unwrap()
        });
        // Θ(-0) = 1
        assert_eq!(output_op(&const_fold(&g)), Op::Const(1.0));
    }

    #[test]
    fn keeps_ops_on_non_constants() {
        let g = graph(|b| {
            let x = b.add_input("x").unwrap();
            let s = b.add_state("v", StateInit::Runtime).unwrap();
            b.set_next_state(0, s).unwrap();
            let one = b.constant(1.0);
            let t = b.op(Op::Add, &[x, one]).unwrap();
            b.op(Op::Spike(Surrogate::Sigmoid { alpha: 4.0 }), &[t])
                .unwrap()
        });
        let f = const_fold(&g);
        assert_eq!(crate::text::print(&f), crate::text::print(&g));
    }

    #[test]
    fn nan_results_are_canonical() {
        let g = graph(|b| {
            let z = b.constant(0.0);
            let nan = b.op(Op::Div, &[z, z]).unwrap();
            let m = b.constant(-1.0);
            let nan2 = b.op(Op::Sqrt, &[m]).unwrap();
            b.op(Op::Add, &[nan, nan2]).unwrap()
        });
        let f = const_fold(&g);
        match output_op(&f) {
            Op::Const(c) => assert_eq!(c.to_bits(), f32::NAN.to_bits()),
            op => panic!("not folded: {op:?}"),
        }
    }
}
