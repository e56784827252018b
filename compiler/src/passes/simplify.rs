//! IEEE-safe algebraic simplification.
//!
//! Every rewrite here is exact for every `f32` input, NaN, infinities and signed zeros included,
//! and keeps gradients (autodiff sees the same derivative before and after). Rewrites:
//!
//! | before | after | why it is exact |
//! |---|---|---|
//! | `x * 1`, `1 * x`, `x / 1`, `pow(x, 1)` | `x` | identity in IEEE 754 |
//! | `x * -1`, `-1 * x`, `x / -1` | `neg x` | multiplying by -1 only flips the sign |
//! | `m * +0`, `+0 * m`, `m` always `+0` or `1` (through `detach`) | `+0` | `m` is finite and not negative |
//! | `neg a * neg b`, `neg a / neg b` | `a * b`, `a / b` | signs cancel, magnitudes unchanged |
//! | `x - 0` | `x` | `-0 - 0 = -0`, `+0 - 0 = +0` |
//! | `x + -0`, `-0 + x` | `x` | `-0` is the additive identity |
//! | `-0 - x` | `neg x` | `-0 - x = -0 + (-x) = -x` |
//! | `a + neg b`, `neg a + b` | `a - b`, `b - a` | IEEE defines `a - b` as `a + (-b)` |
//! | `a - neg b` | `a + b` | likewise |
//! | `neg neg x` | `x` | |
//! | `select(c, a, a)` | `a` | |
//! | `select(k, a, b)`, `k` constant | `a` if `k != 0` (NaN too), else `b` | |
//! | `select(not c, a, b)` | `select(c, b, a)` | `not c` is `c == 0` |
//! | `select(c != 0, a, b)`, `select(0 != c, a, b)` | `select(c, a, b)` | select tests `c != 0` |
//! | `detach detach x` | `detach x` | |
//! | `abs abs x`, `abs neg x` | `abs x` | |
//! | `relu relu x`, `sign sign x` | `relu x`, `sign x` | idempotent |
//! | `f g x` for `f, g` in `floor ceil round` | `g x` | `g x` is integral, infinite or NaN |
//! | `not not m`, `m and m`, `m or m`, `m` a 0/1 mask | `m` | (comparisons and logic ops) |
//!
//! `m * +0 -> +0` leaves out the product's gradient to `m`, `g * 0`: it is `0` too, unless `g` is
//! infinite or NaN (then the gradient does not stay finite anyway: `g` reaches the product's other
//! uses). `m` is a spike (a reset `v_reset * spike` with `v_reset = 0`), a detached spike (the
//! same with `detach_reset`) or a mask ([`crate::ir::is_zero_one`]); the last two have no
//! gradient at all.
//!
//! Deliberately absent, because they are wrong for some input: `x * 0 -> 0` (NaN, inf, and
//! `-x * 0 = -0`), `x + 0 -> x` (`-0 + 0 = +0`), `x - x -> 0` (NaN, inf), `x / x -> 1`,
//! `0 - x -> neg x` (`0 - 0 = +0`), `neg (a - b) -> b - a` (zero sign), `not (a < b) -> a >= b`
//! (NaN), `min(x, x) -> x` (kept for gradients' tie rules). `spike` is never removed (its
//! gradient is the surrogate's); `detach` only as above.

use crate::error::BuildError;
use crate::ir::builder::GraphBuilder;
use crate::ir::rebuild::{const_value, rebuild};
use crate::ir::{Op, StepGraph, ValueId, is_zero_one};

/// Applies the rewrites listed in this module's docs bottom-up, once per node (rewrites of the
/// nodes a rewrite creates are applied too).
pub fn simplify(g: &StepGraph) -> StepGraph {
    rebuild(g, |_| true, simplify_node)
}

fn is_const_bits(b: &GraphBuilder, v: ValueId, c: f32) -> bool {
    const_value(b, v).is_some_and(|k| k.to_bits() == c.to_bits())
}

/// `Some(a)` if `v` is `op(a)` for the unary `op`.
fn unary_arg(b: &GraphBuilder, v: ValueId, op: Op) -> Option<ValueId> {
    let n = b.node(v);
    (n.op == op).then(|| n.args[0])
}

/// Whether `v` is always exactly 0 or 1 (a comparison or logic op).
fn is_mask(b: &GraphBuilder, v: ValueId) -> bool {
    matches!(
        b.node(v).op,
        Op::Eq | Op::Ne | Op::Lt | Op::Le | Op::Gt | Op::Ge | Op::And | Op::Or | Op::Not
    )
}

fn is_zero(b: &GraphBuilder, v: ValueId) -> bool {
    const_value(b, v).is_some_and(|c| c == 0.0)
}

/// Builds `op(args)`, simplified.
pub(crate) fn simplify_node(
    b: &mut GraphBuilder,
    op: Op,
    args: &[ValueId],
) -> Result<ValueId, BuildError> {
    let neg = |b: &GraphBuilder, v| unary_arg(b, v, Op::Neg);
    match op {
        Op::Mul => {
            let (x, y) = (args[0], args[1]);
            if is_const_bits(b, y, 1.0) {
                return Ok(x);
            }
            if is_const_bits(b, x, 1.0) {
                return Ok(y);
            }
            if is_const_bits(b, y, -1.0) {
                return simplify_node(b, Op::Neg, &[x]);
            }
            if is_const_bits(b, x, -1.0) {
                return simplify_node(b, Op::Neg, &[y]);
            }
            if let (Some(p), Some(q)) = (neg(b, x), neg(b, y)) {
                return simplify_node(b, Op::Mul, &[p, q]);
            }
            let zero_one = |v: ValueId| is_zero_one(|u| b.node(u), v);
            if (is_const_bits(b, y, 0.0) && zero_one(x))
                || (is_const_bits(b, x, 0.0) && zero_one(y))
            {
                return Ok(b.constant(0.0));
            }
        }
        Op::Div => {
            let (x, y) = (args[0], args[1]);
            if is_const_bits(b, y, 1.0) {
                return Ok(x);
            }
            if is_const_bits(b, y, -1.0) {
                return simplify_node(b, Op::Neg, &[x]);
            }
            if let (Some(p), Some(q)) = (neg(b, x), neg(b, y)) {
                return simplify_node(b, Op::Div, &[p, q]);
            }
        }
        Op::Pow if is_const_bits(b, args[1], 1.0) => return Ok(args[0]),
        Op::Add => {
            let (x, y) = (args[0], args[1]);
            if is_const_bits(b, y, -0.0) {
                return Ok(x);
            }
            if is_const_bits(b, x, -0.0) {
                return Ok(y);
            }
            if let Some(q) = neg(b, y) {
                return simplify_node(b, Op::Sub, &[x, q]);
            }
            if let Some(p) = neg(b, x) {
                return simplify_node(b, Op::Sub, &[y, p]);
            }
        }
        Op::Sub => {
            let (x, y) = (args[0], args[1]);
            if is_const_bits(b, y, 0.0) {
                return Ok(x);
            }
            if is_const_bits(b, x, -0.0) {
                return simplify_node(b, Op::Neg, &[y]);
            }
            if let Some(q) = neg(b, y) {
                return simplify_node(b, Op::Add, &[x, q]);
            }
        }
        Op::Neg => {
            if let Some(p) = neg(b, args[0]) {
                return Ok(p);
            }
        }
        Op::Select => {
            let (c, x, y) = (args[0], args[1], args[2]);
            if x == y {
                return Ok(x);
            }
            if let Some(k) = const_value(b, c) {
                // NaN is truthy, like every other non-zero value.
                return Ok(if k != 0.0 { x } else { y });
            }
            if let Some(inner) = unary_arg(b, c, Op::Not) {
                return simplify_node(b, Op::Select, &[inner, y, x]);
            }
            let cn = b.node(c);
            if cn.op == Op::Ne {
                let (p, q) = (cn.args[0], cn.args[1]);
                if is_zero(b, q) {
                    return simplify_node(b, Op::Select, &[p, x, y]);
                }
                if is_zero(b, p) {
                    return simplify_node(b, Op::Select, &[q, x, y]);
                }
            }
        }
        Op::Detach if unary_arg(b, args[0], Op::Detach).is_some() => return Ok(args[0]),
        Op::Abs => {
            if unary_arg(b, args[0], Op::Abs).is_some() {
                return Ok(args[0]);
            }
            if let Some(p) = neg(b, args[0]) {
                return simplify_node(b, Op::Abs, &[p]);
            }
        }
        Op::Relu | Op::Sign if b.node(args[0]).op == op => return Ok(args[0]),
        Op::Floor | Op::Ceil | Op::Round => {
            if matches!(b.node(args[0]).op, Op::Floor | Op::Ceil | Op::Round) {
                return Ok(args[0]);
            }
        }
        Op::Not => {
            if let Some(m) = unary_arg(b, args[0], Op::Not)
                && is_mask(b, m)
            {
                return Ok(m);
            }
        }
        Op::And | Op::Or if args[0] == args[1] && is_mask(b, args[0]) => return Ok(args[0]),
        _ => {}
    }
    b.op(op, args)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ir::StateInit;

    /// Builds `y = f(x)` with `x` an input, simplifies, and returns the printed ops of the
    /// result after DCE (index order).
    fn simplified(f: impl FnOnce(&mut GraphBuilder, ValueId) -> ValueId) -> Vec<String> {
        let mut b = GraphBuilder::new("t");
        let x = b.add_input("x").unwrap();
        let y = f(&mut b, x);
        b.add_output("y", y).unwrap();
        let g = b.finish().unwrap();
        let s = super::super::dce(&simplify(&g));
        crate::verify::verify(&s).unwrap();
        s.nodes()
            .map(|(_, n)| match n.op {
                Op::Const(c) => format!("{c:?}"),
                op => op.name().to_string(),
            })
            .collect()
    }

    fn bin(b: &mut GraphBuilder, op: Op, x: ValueId, c: f32) -> ValueId {
        let c = b.constant(c);
        b.op(op, &[x, c]).unwrap()
    }

    fn bin_l(b: &mut GraphBuilder, op: Op, c: f32, x: ValueId) -> ValueId {
        let c = b.constant(c);
        b.op(op, &[c, x]).unwrap()
    }

    #[test]
    fn identities() {
        assert_eq!(simplified(|b, x| bin(b, Op::Mul, x, 1.0)), ["input"]);
        assert_eq!(simplified(|b, x| bin_l(b, Op::Mul, 1.0, x)), ["input"]);
        assert_eq!(simplified(|b, x| bin(b, Op::Div, x, 1.0)), ["input"]);
        assert_eq!(simplified(|b, x| bin(b, Op::Pow, x, 1.0)), ["input"]);
        assert_eq!(simplified(|b, x| bin(b, Op::Sub, x, 0.0)), ["input"]);
        assert_eq!(simplified(|b, x| bin(b, Op::Add, x, -0.0)), ["input"]);
        assert_eq!(simplified(|b, x| bin_l(b, Op::Add, -0.0, x)), ["input"]);
        assert_eq!(
            simplified(|b, x| bin(b, Op::Mul, x, -1.0)),
            ["input", "neg"]
        );
        assert_eq!(
            simplified(|b, x| bin_l(b, Op::Mul, -1.0, x)),
            ["input", "neg"]
        );
        assert_eq!(
            simplified(|b, x| bin(b, Op::Div, x, -1.0)),
            ["input", "neg"]
        );
        assert_eq!(
            simplified(|b, x| bin_l(b, Op::Sub, -0.0, x)),
            ["input", "neg"]
        );
    }

    #[test]
    fn negations() {
        let nn = simplified(|b, x| {
            let n = b.op(Op::Neg, &[x]).unwrap();
            b.op(Op::Neg, &[n]).unwrap()
        });
        assert_eq!(nn, ["input"]);
        // x * -1 * -1 -> neg neg x -> x
        let mm = simplified(|b, x| {
            let n = bin(b, Op::Mul, x, -1.0);
            bin(b, Op::Mul, n, -1.0)
        });
        assert_eq!(mm, ["input"]);
        let sub = simplified(|b, x| {
            let e = b.op(Op::Exp, &[x]).unwrap();
            let n = b.op(Op::Neg, &[e]).unwrap();
            b.op(Op::Add, &[x, n]).unwrap()
        });
        assert_eq!(sub, ["input", "exp", "sub"]);
        let add = simplified(|b, x| {
            let e = b.op(Op::Exp, &[x]).unwrap();
            let n = b.op(Op::Neg, &[e]).unwrap();
            b.op(Op::Sub, &[x, n]).unwrap()
        });
        assert_eq!(add, ["input", "exp", "add"]);
        let prod = simplified(|b, x| {
            let e = b.op(Op::Exp, &[x]).unwrap();
            let n1 = b.op(Op::Neg, &[e]).unwrap();
            let n2 = b.op(Op::Neg, &[x]).unwrap();
            b.op(Op::Mul, &[n1, n2]).unwrap()
        });
        assert_eq!(prod, ["input", "exp", "mul"]);
        let abs = simplified(|b, x| {
            let n = b.op(Op::Neg, &[x]).unwrap();
            let a = b.op(Op::Abs, &[n]).unwrap();
            b.op(Op::Abs, &[a]).unwrap()
        });
        assert_eq!(abs, ["input", "abs"]);
    }

    #[test]
    fn selects() {
        let same = simplified(|b, x| {
            let c = bin(b, Op::Gt, x, 0.0);
            let e = b.op(Op::Exp, &[x]).unwrap();
            b.op(Op::Select, &[c, e, e]).unwrap()
        });
        assert_eq!(same, ["input", "exp"]);
        for (k, pick) in [(2.0, "exp"), (f32::NAN, "exp"), (-0.0, "sin"), (0.0, "sin")] {
            let r = simplified(|b, x| {
                let c = b.constant(k);
                let e = b.op(Op::Exp, &[x]).unwrap();
                let s = b.op(Op::Sin, &[x]).unwrap();
                b.op(Op::Select, &[c, e, s]).unwrap()
            });
            assert_eq!(r.last().unwrap(), pick, "select({k}, exp, sin)");
        }
        // select(not (x > 0), exp x, sin x) -> select(x > 0, sin x, exp x)
        let g = {
            let mut b = GraphBuilder::new("t");
            let x = b.add_input("x").unwrap();
            let c = bin(&mut b, Op::Gt, x, 0.0);
            let n = b.op(Op::Not, &[c]).unwrap();
            let e = b.op(Op::Exp, &[x]).unwrap();
            let s = b.op(Op::Sin, &[x]).unwrap();
            let y = b.op(Op::Select, &[n, e, s]).unwrap();
            b.add_output("y", y).unwrap();
            super::super::dce(&simplify(&b.finish().unwrap()))
        };
        let sel = g.node(g.outputs()[0].value);
        assert_eq!(sel.op, Op::Select);
        assert_eq!(g.node(sel.args[0]).op, Op::Gt);
        assert_eq!(g.node(sel.args[1]).op, Op::Sin);
        assert_eq!(g.node(sel.args[2]).op, Op::Exp);
        // select(x != 0, ...) -> select(x, ...), zero of either sign on either side
        for (c, left) in [(0.0, false), (-0.0, true)] {
            let r = simplified(|b, x| {
                let z = b.constant(c);
                let ne = if left {
                    b.op(Op::Ne, &[z, x]).unwrap()
                } else {
                    b.op(Op::Ne, &[x, z]).unwrap()
                };
                let e = b.op(Op::Exp, &[x]).unwrap();
                let s = b.op(Op::Sin, &[x]).unwrap();
                b.op(Op::Select, &[ne, e, s]).unwrap()
            });
            assert_eq!(r, ["input", "exp", "sin", "select"]);
        }
    }

    #[test]
    fn idempotent_unaries_and_masks() {
        for op in [Op::Detach, Op::Abs, Op::Relu, Op::Sign, Op::Floor] {
            let r = simplified(|b, x| {
                let a = b.op(op, &[x]).unwrap();
                b.op(op, &[a]).unwrap()
            });
            assert_eq!(r, ["input", op.name()]);
        }
        let r = simplified(|b, x| {
            let a = b.op(Op::Round, &[x]).unwrap();
            b.op(Op::Ceil, &[a]).unwrap()
        });
        assert_eq!(r, ["input", "round"]);
        let r = simplified(|b, x| {
            let m = bin(b, Op::Lt, x, 1.0);
            let n = b.op(Op::Not, &[m]).unwrap();
            let nn = b.op(Op::Not, &[n]).unwrap();
            let a = b.op(Op::And, &[nn, nn]).unwrap();
            b.op(Op::Or, &[a, a]).unwrap()
        });
        assert_eq!(r, ["input", "1.0", "lt"]);
    }

    /// `m * +0` is `+0` for every `m` that is always `+0` or `1`; the product of a spike that
    /// counts, or of `-0`, stays.
    #[test]
    fn zero_one_times_zero() {
        use crate::ir::Surrogate;
        let sig = Op::Spike(Surrogate::Sigmoid { alpha: 4.0 });
        for (m, left) in [(sig, false), (sig, true), (Op::Ge, false), (Op::Not, true)] {
            let r = simplified(|b, x| {
                let v = match m.arity().count() {
                    1 => b.op(m, &[x]).unwrap(),
                    _ => bin(b, m, x, 1.0),
                };
                if left {
                    bin_l(b, Op::Mul, 0.0, v)
                } else {
                    bin(b, Op::Mul, v, 0.0)
                }
            });
            assert_eq!(r, ["0.0"], "{} * 0", m.name());
        }
        // A detached spike (a reset with `detach_reset`).
        let r = simplified(|b, x| {
            let s = b.op(sig, &[x]).unwrap();
            let d = b.op(Op::Detach, &[s]).unwrap();
            bin(b, Op::Mul, d, 0.0)
        });
        assert_eq!(r, ["0.0"], "detach(spike) * 0");
        let count = Op::Spike(Surrogate::MultiLevelSpikeCount {
            max_spike_count: 3,
            grad_min: 0.0,
            grad_max: 3.0,
        });
        for (m, c) in [(count, 0.0), (sig, -0.0)] {
            let r = simplified(|b, x| {
                let v = b.op(m, &[x]).unwrap();
                bin(b, Op::Mul, v, c)
            });
            assert_eq!(r.len(), 4, "{} * {c} was rewritten: {r:?}", m.name());
        }
    }

    #[test]
    fn unsafe_rewrites_are_not_made() {
        // x + 0 (fails for x = -0), x * 0 (NaN, inf, -0), x - x, x / x, 0 - x, x - (-0)
        for (op, c, left) in [
            (Op::Add, 0.0, false),
            (Op::Add, 0.0, true),
            (Op::Mul, 0.0, false),
            (Op::Mul, -0.0, true),
            (Op::Sub, 0.0, true),
            (Op::Sub, -0.0, false),
            (Op::Div, 1.0, true),
            (Op::Pow, 1.0, true),
        ] {
            let r = simplified(|b, x| {
                if left {
                    bin_l(b, op, c, x)
                } else {
                    bin(b, op, x, c)
                }
            });
            assert_eq!(
                r.len(),
                3,
                "{} with {c} ({left}) was rewritten: {r:?}",
                op.name()
            );
        }
        for op in [Op::Sub, Op::Div, Op::Min, Op::Max, Op::Eq] {
            let r = simplified(|b, x| b.op(op, &[x, x]).unwrap());
            assert_eq!(r, ["input", op.name()]);
        }
        // not not x for a non-mask x is x != 0, not x
        let r = simplified(|b, x| {
            let n = b.op(Op::Not, &[x]).unwrap();
            b.op(Op::Not, &[n]).unwrap()
        });
        assert_eq!(r, ["input", "not", "not"]);
        // spike and a lone detach stay
        let r = simplified(|b, x| {
            let s = b
                .op(Op::Spike(crate::ir::Surrogate::Rect { alpha: 1.0 }), &[x])
                .unwrap();
            b.op(Op::Detach, &[s]).unwrap()
        });
        assert_eq!(r, ["input", "spike", "detach"]);
    }

    #[test]
    fn x_plus_zero_keeps_its_meaning_for_negative_zero() {
        let mut b = GraphBuilder::new("t");
        let x = b.add_input("x").unwrap();
        let v = b.add_state("v", StateInit::Const(0.0)).unwrap();
        let y = bin(&mut b, Op::Add, x, 0.0);
        let w = bin(&mut b, Op::Add, v, -0.0);
        b.add_output("y", y).unwrap();
        b.set_next_state(0, w).unwrap();
        let g = super::super::optimize(&b.finish().unwrap());
        let k = crate::scan::ScanKernel::forward(g, false);
        let xs = [-0.0f32, 0.0, f32::NAN];
        let v0 = [-0.0f32];
        let r = crate::interp::run_scan(
            &k,
            &crate::scan::ScanArgs {
                t: 3,
                n: 1,
                inputs: vec![&xs],
                init_states: vec![&v0],
                params: vec![],
            },
        )
        .unwrap();
        assert_eq!(r.outputs[0][0].to_bits(), 0.0f32.to_bits());
        assert_eq!(r.outputs[0][1].to_bits(), 0.0f32.to_bits());
        assert!(r.outputs[0][2].is_nan());
        // v + (-0) -> v keeps the -0 initial state
        assert_eq!(r.final_states[0][0].to_bits(), (-0.0f32).to_bits());
    }
}
