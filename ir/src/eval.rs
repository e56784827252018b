//! Evaluating ops on numbers: the semantics of every op of the IR, in `f32` or `f64`.
//!
//! The interpreter runs step graphs with these functions, and the constant folders (the passes'
//! and the frontend's) fold with them in `f32`. Their tests check every op against `std` and
//! `libm` directly, so that a mistake here cannot hide behind a comparison of the interpreter
//! with a folded graph.

use crate::graph::StepGraph;
use crate::num::Real;
use crate::op::Op;

/// Evaluates one op on already evaluated operands.
pub fn eval_op<F: Real>(op: &Op, a: &[F]) -> F {
    let b01 = |c: bool| if c { F::one() } else { F::zero() };
    let truthy = |x: F| x != F::zero();
    match *op {
        Op::Input(_) | Op::State(_) | Op::Param(_) => {
            unreachable!("leaves are read by the scan, not evaluated")
        }
        Op::Const(c) => F::from_f32(c),
        Op::Neg => -a[0],
        Op::Reciprocal => F::one() / a[0],
        Op::Exp => a[0].exp(),
        Op::Log => a[0].ln(),
        Op::Log2 => a[0].log2(),
        Op::Sqrt => a[0].sqrt(),
        Op::Rsqrt => F::one() / a[0].sqrt(),
        Op::Tanh => a[0].tanh(),
        Op::Sin => a[0].sin(),
        Op::Cos => a[0].cos(),
        Op::Erf => a[0].erf(),
        Op::Atan => a[0].atan(),
        Op::Floor => a[0].floor(),
        Op::Ceil => a[0].ceil(),
        Op::Round => a[0].round_ties_even(),
        // NaN passes through (as `torch.relu`); -0 and negatives give +0.
        Op::Relu => {
            if a[0] > F::zero() || a[0].is_nan() {
                a[0]
            } else {
                F::zero()
            }
        }
        Op::Sigmoid => a[0].sigmoid(),
        Op::Sign => {
            if a[0].is_nan() {
                a[0]
            } else {
                b01(a[0] > F::zero()) - b01(a[0] < F::zero())
            }
        }
        Op::Abs => a[0].abs(),
        Op::Not => b01(!truthy(a[0])),
        Op::Add => a[0] + a[1],
        Op::Sub => a[0] - a[1],
        Op::Mul => a[0] * a[1],
        Op::Div => a[0] / a[1],
        Op::Pow => a[0].powf(a[1]),
        Op::Fmod => a[0].fmod(a[1]),
        Op::Min => a[0].min_nan(a[1]),
        Op::Max => a[0].max_nan(a[1]),
        Op::Eq => b01(a[0] == a[1]),
        Op::Ne => b01(a[0] != a[1]),
        Op::Lt => b01(a[0] < a[1]),
        Op::Le => b01(a[0] <= a[1]),
        Op::Gt => b01(a[0] > a[1]),
        Op::Ge => b01(a[0] >= a[1]),
        Op::And => b01(truthy(a[0]) && truthy(a[1])),
        Op::Or => b01(truthy(a[0]) || truthy(a[1])),
        Op::Clamp => a[0].max_nan(a[1]).min_nan(a[2]),
        Op::Select => {
            if truthy(a[0]) {
                a[1]
            } else {
                a[2]
            }
        }
        Op::Spike(s) => s.forward(a[0]),
        Op::Detach => a[0],
    }
}

/// Evaluates one step for one neuron: `values` receives every node's value (index order).
/// Leaves read `inputs`, `states` and `params` (already indexed for this neuron and step).
pub fn eval_step<F: Real>(
    g: &StepGraph,
    inputs: &[F],
    states: &[F],
    params: &[F],
    values: &mut Vec<F>,
) {
    values.clear();
    let mut args = Vec::with_capacity(3);
    for (_, node) in g.nodes() {
        let v = match node.op {
            Op::Input(i) => inputs[i as usize],
            Op::State(i) => states[i as usize],
            Op::Param(i) => params[i as usize],
            ref op => {
                args.clear();
                args.extend(node.args.iter().map(|a| values[a.index()]));
                eval_op(op, &args)
            }
        };
        values.push(v);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::surrogate::Surrogate;

    /// Operands that reach every branch: signed zeros, NaN, infinities, ties, tiny and large.
    const SAMPLES: [f32; 14] = [
        0.0,
        -0.0,
        f32::NAN,
        f32::INFINITY,
        f32::NEG_INFINITY,
        0.5,
        -0.5,
        1.5,
        -2.5,
        3.0,
        1e-30,
        -7.25,
        1e30,
        0.1,
    ];

    fn bool01(c: bool) -> f32 {
        if c { 1.0 } else { 0.0 }
    }

    fn nan_min(a: f32, b: f32) -> f32 {
        if a.is_nan() || b.is_nan() {
            f32::NAN
        } else if b < a {
            b
        } else {
            a
        }
    }

    fn nan_max(a: f32, b: f32) -> f32 {
        if a.is_nan() || b.is_nan() {
            f32::NAN
        } else if b > a {
            b
        } else {
            a
        }
    }

    /// What each op computes, written against `std` and `libm` directly (not through `Real`).
    fn expected(op: Op, a: &[f32]) -> f32 {
        match op {
            Op::Neg => -a[0],
            Op::Reciprocal => 1.0 / a[0],
            Op::Exp => a[0].exp(),
            Op::Log => a[0].ln(),
            Op::Log2 => a[0].log2(),
            Op::Sqrt => a[0].sqrt(),
            Op::Rsqrt => 1.0 / a[0].sqrt(),
            Op::Tanh => a[0].tanh(),
            Op::Sin => a[0].sin(),
            Op::Cos => a[0].cos(),
            Op::Erf => libm::erff(a[0]),
            Op::Atan => a[0].atan(),
            Op::Floor => a[0].floor(),
            Op::Ceil => a[0].ceil(),
            Op::Round => a[0].round_ties_even(),
            Op::Relu => {
                if a[0].is_nan() {
                    a[0]
                } else {
                    a[0].max(0.0) + 0.0
                }
            }
            Op::Sigmoid => 1.0 / (1.0 + (-a[0]).exp()),
            Op::Sign => {
                if a[0].is_nan() {
                    a[0]
                } else if a[0] == 0.0 {
                    0.0
                } else {
                    a[0].signum()
                }
            }
            Op::Abs => a[0].abs(),
            Op::Not => bool01(a[0] == 0.0),
            Op::Add => a[0] + a[1],
            Op::Sub => a[0] - a[1],
            Op::Mul => a[0] * a[1],
            Op::Div => a[0] / a[1],
            Op::Pow => a[0].powf(a[1]),
            Op::Fmod => libm::fmodf(a[0], a[1]),
            Op::Min => nan_min(a[0], a[1]),
            Op::Max => nan_max(a[0], a[1]),
            Op::Eq => bool01(a[0] == a[1]),
            Op::Ne => bool01(a[0] != a[1]),
            Op::Lt => bool01(a[0] < a[1]),
            Op::Le => bool01(a[0] <= a[1]),
            Op::Gt => bool01(a[0] > a[1]),
            Op::Ge => bool01(a[0] >= a[1]),
            Op::And => bool01(a[0] != 0.0 && a[1] != 0.0),
            Op::Or => bool01(a[0] != 0.0 || a[1] != 0.0),
            Op::Clamp => nan_min(nan_max(a[0], a[1]), a[2]),
            Op::Select => {
                if a[0] != 0.0 {
                    a[1]
                } else {
                    a[2]
                }
            }
            Op::Detach => a[0],
            Op::Input(_) | Op::State(_) | Op::Param(_) | Op::Const(_) | Op::Spike(_) => {
                unreachable!("not a plain op")
            }
        }
    }

    fn same(a: f32, b: f32) -> bool {
        a.to_bits() == b.to_bits() || (a.is_nan() && b.is_nan())
    }

    #[test]
    fn every_plain_op_matches_std_and_libm() {
        let mut checked = 0;
        for &op in Op::PLAIN {
            let arity = op.arity().count();
            let mut args = vec![0.0f32; arity];
            let combos = SAMPLES.len().pow(arity as u32);
            for mut k in 0..combos {
                for a in args.iter_mut() {
                    *a = SAMPLES[k % SAMPLES.len()];
                    k /= SAMPLES.len();
                }
                let (got, want) = (eval_op::<f32>(&op, &args), expected(op, &args));
                assert!(same(got, want), "{op:?}{args:?}: {got} != {want}");
                checked += 1;
            }
        }
        assert!(checked > 1000, "only {checked} cases checked");
    }

    #[test]
    fn spike_is_heaviside_and_constants_read_back() {
        for x in SAMPLES {
            let s = eval_op::<f32>(&Op::Spike(Surrogate::ATan { alpha: 2.0 }), &[x]);
            assert_eq!(s, bool01(x >= 0.0), "spike({x})");
        }
        // The multi-level surrogate spikes a count: round(clamp(x, 0, max)), ties to even.
        let count = Surrogate::MultiLevelSpikeCount {
            max_spike_count: 3,
            grad_min: 0.0,
            grad_max: 3.0,
        };
        for x in SAMPLES.into_iter().chain([2.5, 3.5, 0.5]) {
            let want = if x.is_nan() {
                x
            } else {
                x.clamp(0.0, 3.0).round_ties_even()
            };
            let got = eval_op::<f32>(&Op::Spike(count), &[x]);
            assert!(same(got, want), "count({x}) = {got}, want {want}");
        }
        assert_eq!(
            eval_op::<f32>(&Op::Const(-0.0), &[]).to_bits(),
            (-0.0f32).to_bits()
        );
        assert_eq!(eval_op::<f64>(&Op::Const(0.1), &[]), 0.1f32 as f64);
    }

    #[test]
    fn eval_step_reads_leaves_in_place() {
        let mut b = crate::builder::GraphBuilder::new("t");
        let x = b.add_input("x").unwrap();
        let v = b.add_state("v", crate::graph::StateInit::Runtime).unwrap();
        let p = b
            .add_param("p", crate::op::ParamKind::Shared, false)
            .unwrap();
        let h = b.op(Op::Mul, &[v, p]).unwrap();
        let h = b.op(Op::Add, &[h, x]).unwrap();
        b.set_next_state(0, h).unwrap();
        let g = b.finish().unwrap();
        let mut values = vec![];
        eval_step::<f32>(&g, &[1.0], &[2.0], &[3.0], &mut values);
        assert_eq!(values[h.index()], 7.0);
    }
}
