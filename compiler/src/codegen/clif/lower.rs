//! The lowering of every non-leaf [`Op`] onto [`Lanes`], matching the interpreter's semantics
//! ([`crate::interp::eval_op`]) exactly for everything but the approximated transcendental
//! functions of [`super::math`].

use super::lanes::{Cmp, Lanes};
use super::math;
use crate::ir::{Op, Surrogate};

/// NaN-propagating minimum with the interpreter's tie rule: `b < a ? b : a`.
fn min_nan<L: Lanes>(l: &mut L, a: L::F, b: L::F) -> L::F {
    let lt = l.fcmp(Cmp::Lt, b, a);
    let r = l.fsel(lt, b, a);
    let uno = l.fcmp(Cmp::Uno, a, b);
    let nan = l.fc(f32::NAN);
    l.fsel(uno, nan, r)
}

/// NaN-propagating maximum with the interpreter's tie rule: `b > a ? b : a`.
fn max_nan<L: Lanes>(l: &mut L, a: L::F, b: L::F) -> L::F {
    // `a < b` is `b > a` (both false on NaN); this form lowers to one `maxps`.
    let gt = l.fcmp(Cmp::Lt, a, b);
    let r = l.fsel(gt, b, a);
    let uno = l.fcmp(Cmp::Uno, a, b);
    let nan = l.fc(f32::NAN);
    l.fsel(uno, nan, r)
}

/// `x != 0` (NaN is true), as a mask.
fn truthy<L: Lanes>(l: &mut L, x: L::F) -> L::I {
    let z = l.fc(0.0);
    l.fcmp(Cmp::Ne, x, z)
}

/// Emits `op` applied to `a` (one operand per [`Op::arity`]). Leaves other than constants are
/// read by the scan and must not reach this function.
///
/// # Panics
/// On `Input`, `State` or `Param` (the scan emitter handles them).
pub fn lower_op<L: Lanes>(l: &mut L, op: &Op, a: &[L::F]) -> L::F {
    let cmp = |l: &mut L, cc: Cmp| {
        let m = l.fcmp(cc, a[0], a[1]);
        l.mask01(m)
    };
    match *op {
        Op::Input(_) | Op::State(_) | Op::Param(_) => {
            unreachable!("leaves are read by the scan emitter")
        }
        Op::Const(c) => l.fc(c),
        Op::Neg => l.neg(a[0]),
        Op::Reciprocal => {
            let one = l.fc(1.0);
            l.div(one, a[0])
        }
        Op::Exp => math::exp(l, a[0]),
        Op::Log => math::log(l, a[0]),
        Op::Log2 => math::log2(l, a[0]),
        Op::Sqrt => l.sqrt(a[0]),
        Op::Rsqrt => {
            let s = l.sqrt(a[0]);
            let one = l.fc(1.0);
            l.div(one, s)
        }
        Op::Tanh => math::tanh(l, a[0]),
        Op::Sin => math::sin(l, a[0]),
        Op::Cos => math::cos(l, a[0]),
        Op::Erf => math::erf(l, a[0]),
        Op::Atan => math::atan(l, a[0]),
        Op::Floor => l.floor(a[0]),
        Op::Ceil => l.ceil(a[0]),
        Op::Round => l.nearest(a[0]),
        Op::Relu => {
            // x > 0 or NaN: x; else +0.
            let z = l.fc(0.0);
            let m = l.fcmp(Cmp::Ugt, a[0], z);
            l.fsel(m, a[0], z)
        }
        Op::Sigmoid => math::sigmoid(l, a[0]),
        Op::Sign => {
            let z = l.fc(0.0);
            let gt = l.fcmp(Cmp::Gt, a[0], z);
            let lt = l.fcmp(Cmp::Lt, a[0], z);
            let p = l.mask01(gt);
            let n = l.mask01(lt);
            let r = l.sub(p, n);
            let uno = l.fcmp(Cmp::Uno, a[0], a[0]);
            l.fsel(uno, a[0], r)
        }
        Op::Abs => l.abs(a[0]),
        Op::Not => {
            let z = l.fc(0.0);
            let m = l.fcmp(Cmp::Eq, a[0], z);
            l.mask01(m)
        }
        Op::Add => l.add(a[0], a[1]),
        Op::Sub => l.sub(a[0], a[1]),
        Op::Mul => l.mul(a[0], a[1]),
        Op::Div => l.div(a[0], a[1]),
        Op::Pow => math::pow(l, a[0], a[1]),
        Op::Fmod => l.fmod(a[0], a[1]),
        Op::Min => min_nan(l, a[0], a[1]),
        Op::Max => max_nan(l, a[0], a[1]),
        Op::Eq => cmp(l, Cmp::Eq),
        Op::Ne => cmp(l, Cmp::Ne),
        Op::Lt => cmp(l, Cmp::Lt),
        Op::Le => cmp(l, Cmp::Le),
        Op::Gt => cmp(l, Cmp::Gt),
        Op::Ge => cmp(l, Cmp::Ge),
        Op::And => {
            let x = truthy(l, a[0]);
            let y = truthy(l, a[1]);
            let m = l.iand(x, y);
            l.mask01(m)
        }
        Op::Or => {
            let x = truthy(l, a[0]);
            let y = truthy(l, a[1]);
            let m = l.ior(x, y);
            l.mask01(m)
        }
        Op::Clamp => {
            let t = max_nan(l, a[0], a[1]);
            min_nan(l, t, a[2])
        }
        Op::Select => {
            let m = truthy(l, a[0]);
            l.fsel(m, a[1], a[2])
        }
        Op::Spike(Surrogate::MultiLevelSpikeCount {
            max_spike_count, ..
        }) => {
            // round(clamp(x, 0, max)): the spike count, as the interpreter's `Surrogate::forward`.
            let lo = l.fc(0.0);
            let hi = l.fc(max_spike_count as f32);
            let t = max_nan(l, a[0], lo);
            let t = min_nan(l, t, hi);
            l.nearest(t)
        }
        Op::Spike(_) => {
            // Θ(x): 1 for x >= 0, 0 otherwise (and for NaN).
            let z = l.fc(0.0);
            let m = l.fcmp(Cmp::Ge, a[0], z);
            l.mask01(m)
        }
        Op::Detach => a[0],
    }
}

/// Whether `op`'s lowering is an approximation (may differ from the interpreter by a few ulp).
pub fn is_approximated(op: &Op) -> bool {
    matches!(
        op,
        Op::Exp
            | Op::Log
            | Op::Log2
            | Op::Tanh
            | Op::Sin
            | Op::Cos
            | Op::Erf
            | Op::Atan
            | Op::Sigmoid
            | Op::Pow
    )
}

#[cfg(test)]
mod tests {
    use super::super::lanes::Scalar;
    use super::*;
    use crate::interp::eval_op;

    /// Every exactly lowered op agrees with the interpreter bit for bit (NaN with NaN).
    #[test]
    fn exact_ops_match_the_interpreter() {
        let vals = [
            0.0f32,
            -0.0,
            1.0,
            -1.0,
            0.5,
            -2.5,
            2.5,
            3.5,
            1e-40,
            -1e-40,
            7.25,
            -1e30,
            f32::INFINITY,
            f32::NEG_INFINITY,
            f32::NAN,
            f32::MAX,
            123456.78,
        ];
        let same = |a: f32, b: f32| a.to_bits() == b.to_bits() || (a.is_nan() && b.is_nan());
        let count = Op::Spike(Surrogate::MultiLevelSpikeCount {
            max_spike_count: 3,
            grad_min: 0.0,
            grad_max: 3.0,
        });
        for op in Op::PLAIN
            .iter()
            .chain([&Op::Spike(Surrogate::DeterministicPass), &count])
        {
            if is_approximated(op) {
                continue;
            }
            let n = op.arity().count();
            let mut idx = vec![0usize; n];
            loop {
                let args: Vec<f32> = idx.iter().map(|&i| vals[i]).collect();
                let want = eval_op::<f32>(op, &args);
                let got = lower_op(&mut Scalar::default(), op, &args);
                assert!(
                    same(got, want),
                    "{}({args:?}): got {got}, want {want}",
                    op.name()
                );
                // next combination
                let mut k = 0;
                while k < n {
                    idx[k] += 1;
                    if idx[k] < vals.len() {
                        break;
                    }
                    idx[k] = 0;
                    k += 1;
                }
                if k == n {
                    break;
                }
            }
        }
    }
}
