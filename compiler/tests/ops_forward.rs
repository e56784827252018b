//! The forward rule of every op in `interp::eval_op`, in f32 and f64, with IEEE edge cases.

use std::collections::BTreeSet;

use flexsn_compiler::interp::eval_op;
use flexsn_compiler::ir::{Op, Surrogate};
use flexsn_compiler::num::Real;

const NAN: f64 = f64::NAN;
const INF: f64 = f64::INFINITY;

/// Runs checks for one scalar type and records which ops were covered.
struct Checker<F> {
    seen: BTreeSet<&'static str>,
    _f: std::marker::PhantomData<F>,
}

fn same(a: f64, b: f64) -> bool {
    a.to_bits() == b.to_bits() || (a.is_nan() && b.is_nan())
}

impl<F: Real> Checker<F> {
    fn new() -> Self {
        Checker {
            seen: BTreeSet::new(),
            _f: std::marker::PhantomData,
        }
    }

    fn is_f32() -> bool {
        std::mem::size_of::<F>() == 4
    }

    /// `x` as the scalar type would hold it.
    fn round(x: f64) -> f64 {
        F::from_f64(x).to_f64()
    }

    fn eval(&mut self, op: Op, args: &[f64]) -> f64 {
        self.seen.insert(op.name());
        let a: Vec<F> = args.iter().map(|&x| F::from_f64(x)).collect();
        eval_op::<F>(&op, &a).to_f64()
    }

    /// Exactly `want` (bit for bit; any NaN matches NaN), after rounding `want` to `F`.
    #[track_caller]
    fn exact(&mut self, op: Op, args: &[f64], want: f64) {
        let got = self.eval(op, args);
        let want = Self::round(want);
        assert!(
            same(got, want),
            "{}{args:?} = {got:?}, want {want:?} ({})",
            op.name(),
            std::any::type_name::<F>()
        );
    }

    /// Close to `reference` applied (in f64) to each argument as `F` holds it.
    #[track_caller]
    fn approx(&mut self, op: Op, xs: &[f64], reference: impl Fn(f64) -> f64) {
        let tol = if Self::is_f32() { 4e-7 } else { 4e-16 };
        for &x in xs {
            let xr = Self::round(x);
            let got = self.eval(op, &[x]);
            let want = reference(xr);
            assert!(
                (got - want).abs() <= tol * want.abs().max(1e-3),
                "{}({xr}) = {got}, want {want} ({})",
                op.name(),
                std::any::type_name::<F>()
            );
        }
    }

    fn run_all(&mut self) {
        self.leaves_and_arithmetic();
        self.transcendental();
        self.rounding();
        self.piecewise();
        self.binary_math();
        self.comparisons_and_logic();
        self.ternary();
        self.spike_and_detach();
    }

    fn leaves_and_arithmetic(&mut self) {
        self.exact(Op::Const(2.5), &[], 2.5);
        self.exact(Op::Const(-0.0), &[], -0.0);
        self.exact(Op::Const(f32::NAN), &[], NAN);

        self.exact(Op::Neg, &[0.0], -0.0);
        self.exact(Op::Neg, &[-0.0], 0.0);
        self.exact(Op::Neg, &[INF], -INF);
        self.exact(Op::Neg, &[1.5], -1.5);
        self.exact(Op::Neg, &[NAN], NAN);

        self.exact(Op::Reciprocal, &[4.0], 0.25);
        self.exact(Op::Reciprocal, &[0.0], INF);
        self.exact(Op::Reciprocal, &[-0.0], -INF);
        self.exact(Op::Reciprocal, &[-INF], -0.0);
        self.exact(Op::Reciprocal, &[NAN], NAN);

        self.exact(Op::Add, &[-0.0, 0.0], 0.0);
        self.exact(Op::Add, &[-0.0, -0.0], -0.0);
        self.exact(Op::Add, &[INF, -INF], NAN);
        self.exact(Op::Add, &[1.5, 2.25], 3.75);
        self.exact(Op::Sub, &[5.0, 5.0], 0.0);
        self.exact(Op::Sub, &[-0.0, 0.0], -0.0);
        self.exact(Op::Sub, &[-0.0, -0.0], 0.0);
        self.exact(Op::Sub, &[INF, INF], NAN);
        self.exact(Op::Mul, &[0.0, INF], NAN);
        self.exact(Op::Mul, &[-2.0, 0.0], -0.0);
        self.exact(Op::Mul, &[3.0, -0.5], -1.5);
        self.exact(Op::Mul, &[NAN, 0.0], NAN);
        self.exact(Op::Div, &[1.0, 0.0], INF);
        self.exact(Op::Div, &[-1.0, 0.0], -INF);
        self.exact(Op::Div, &[1.0, -0.0], -INF);
        self.exact(Op::Div, &[0.0, 0.0], NAN);
        self.exact(Op::Div, &[INF, INF], NAN);
        self.exact(Op::Div, &[3.0, 4.0], 0.75);
        // Division rounds once: 1/3 is the correctly rounded quotient in each type.
        self.exact(
            Op::Div,
            &[1.0, 3.0],
            if Self::is_f32() {
                (1.0f32 / 3.0) as f64
            } else {
                1.0 / 3.0
            },
        );
    }

    fn transcendental(&mut self) {
        let xs = [-3.7, -1.0, -0.25, 0.1, 0.5, 1.0, 2.3, 5.0];
        let pos = [1e-3, 0.1, 0.5, 1.0, 2.0, 7.5, 1e4];

        self.approx(Op::Exp, &xs, f64::exp);
        self.exact(Op::Exp, &[0.0], 1.0);
        self.exact(Op::Exp, &[-0.0], 1.0);
        self.exact(Op::Exp, &[-INF], 0.0);
        self.exact(Op::Exp, &[INF], INF);
        self.exact(Op::Exp, &[1000.0], INF);
        self.exact(Op::Exp, &[NAN], NAN);

        self.approx(Op::Log, &pos, f64::ln);
        self.exact(Op::Log, &[1.0], 0.0);
        self.exact(Op::Log, &[0.0], -INF);
        self.exact(Op::Log, &[-0.0], -INF);
        self.exact(Op::Log, &[-1.0], NAN);
        self.exact(Op::Log, &[INF], INF);
        self.exact(Op::Log, &[NAN], NAN);

        self.approx(Op::Log2, &pos, f64::log2);
        self.exact(Op::Log2, &[8.0], 3.0);
        self.exact(Op::Log2, &[0.5], -1.0);
        self.exact(Op::Log2, &[0.0], -INF);
        self.exact(Op::Log2, &[-2.0], NAN);

        self.approx(Op::Sqrt, &pos, f64::sqrt);
        self.exact(Op::Sqrt, &[4.0], 2.0);
        self.exact(Op::Sqrt, &[-0.0], -0.0);
        self.exact(Op::Sqrt, &[-1.0], NAN);
        self.exact(Op::Sqrt, &[INF], INF);

        self.approx(Op::Rsqrt, &pos, |x| 1.0 / x.sqrt());
        self.exact(Op::Rsqrt, &[4.0], 0.5);
        self.exact(Op::Rsqrt, &[0.0], INF);
        self.exact(Op::Rsqrt, &[-0.0], -INF);
        self.exact(Op::Rsqrt, &[-1.0], NAN);
        self.exact(Op::Rsqrt, &[INF], 0.0);

        self.approx(Op::Tanh, &xs, f64::tanh);
        self.exact(Op::Tanh, &[0.0], 0.0);
        self.exact(Op::Tanh, &[-0.0], -0.0);
        self.exact(Op::Tanh, &[INF], 1.0);
        self.exact(Op::Tanh, &[-INF], -1.0);
        self.exact(Op::Tanh, &[NAN], NAN);

        self.approx(Op::Sin, &xs, f64::sin);
        self.exact(Op::Sin, &[-0.0], -0.0);
        self.exact(Op::Sin, &[INF], NAN);
        self.approx(Op::Cos, &xs, f64::cos);
        self.exact(Op::Cos, &[0.0], 1.0);
        self.exact(Op::Cos, &[-INF], NAN);

        let erf_table = [
            (0.5, 0.520_499_877_813_046_5),
            (1.0, 0.842_700_792_949_714_9),
            (-2.0, -0.995_322_265_018_952_7),
            (0.1, 0.112_462_916_018_284_9),
        ];
        for (x, want) in erf_table {
            let got = self.eval(Op::Erf, &[x]);
            let tol = if Self::is_f32() { 3e-7 } else { 1e-15 };
            assert!((got - want).abs() <= tol, "erf({x}) = {got}, want {want}");
        }
        self.exact(Op::Erf, &[0.0], 0.0);
        self.exact(Op::Erf, &[-0.0], -0.0);
        self.exact(Op::Erf, &[INF], 1.0);
        self.exact(Op::Erf, &[-INF], -1.0);
        self.exact(Op::Erf, &[NAN], NAN);

        self.approx(Op::Atan, &xs, f64::atan);
        self.approx(Op::Atan, &[INF, -INF], |x| {
            std::f64::consts::FRAC_PI_2.copysign(x)
        });
        self.exact(Op::Atan, &[-0.0], -0.0);
        self.exact(Op::Atan, &[NAN], NAN);

        self.approx(Op::Sigmoid, &xs, |x| 1.0 / (1.0 + (-x).exp()));
        self.exact(Op::Sigmoid, &[0.0], 0.5);
        self.exact(Op::Sigmoid, &[INF], 1.0);
        self.exact(Op::Sigmoid, &[-INF], 0.0);
        self.exact(Op::Sigmoid, &[NAN], NAN);
    }

    fn rounding(&mut self) {
        self.exact(Op::Floor, &[2.7], 2.0);
        self.exact(Op::Floor, &[-0.5], -1.0);
        self.exact(Op::Floor, &[-0.0], -0.0);
        self.exact(Op::Floor, &[-INF], -INF);
        self.exact(Op::Floor, &[NAN], NAN);
        self.exact(Op::Ceil, &[2.1], 3.0);
        self.exact(Op::Ceil, &[-0.5], -0.0);
        self.exact(Op::Ceil, &[INF], INF);
        self.exact(Op::Ceil, &[NAN], NAN);
        // Round half to even, as torch.round; the sign of zero is kept.
        for (x, want) in [
            (0.5, 0.0),
            (1.5, 2.0),
            (2.5, 2.0),
            (3.5, 4.0),
            (-0.5, -0.0),
            (-1.5, -2.0),
            (-2.5, -2.0),
            (2.4999, 2.0),
            (2.5001, 3.0),
            (-0.0, -0.0),
            (INF, INF),
            (NAN, NAN),
        ] {
            self.exact(Op::Round, &[x], want);
        }
    }

    fn piecewise(&mut self) {
        self.exact(Op::Relu, &[2.0], 2.0);
        self.exact(Op::Relu, &[-1.0], 0.0);
        self.exact(Op::Relu, &[-0.0], 0.0);
        self.exact(Op::Relu, &[0.0], 0.0);
        self.exact(Op::Relu, &[-INF], 0.0);
        self.exact(Op::Relu, &[INF], INF);
        self.exact(Op::Relu, &[NAN], NAN);

        // sign(x) = (x > 0) - (x < 0): both zeros give +0, NaN stays NaN.
        self.exact(Op::Sign, &[3.0], 1.0);
        self.exact(Op::Sign, &[-2.0], -1.0);
        self.exact(Op::Sign, &[0.0], 0.0);
        self.exact(Op::Sign, &[-0.0], 0.0);
        self.exact(Op::Sign, &[-INF], -1.0);
        self.exact(Op::Sign, &[1e-45], 1.0);
        self.exact(Op::Sign, &[NAN], NAN);

        self.exact(Op::Abs, &[-0.0], 0.0);
        self.exact(Op::Abs, &[-2.5], 2.5);
        self.exact(Op::Abs, &[-INF], INF);
        self.exact(Op::Abs, &[NAN], NAN);
    }

    fn binary_math(&mut self) {
        self.exact(Op::Pow, &[2.0, 3.0], 8.0);
        self.exact(Op::Pow, &[-2.0, 3.0], -8.0);
        self.exact(Op::Pow, &[4.0, 0.5], 2.0);
        self.exact(Op::Pow, &[0.0, 0.0], 1.0);
        self.exact(Op::Pow, &[NAN, 0.0], 1.0);
        self.exact(Op::Pow, &[1.0, NAN], 1.0);
        self.exact(Op::Pow, &[-8.0, 1.0 / 3.0], NAN);
        self.exact(Op::Pow, &[0.0, -1.0], INF);
        self.exact(Op::Pow, &[-0.0, -1.0], -INF);
        self.exact(Op::Pow, &[2.0, -INF], 0.0);
        self.exact(Op::Pow, &[NAN, 1.0], NAN);

        // fmod: the remainder has the sign of the dividend.
        self.exact(Op::Fmod, &[5.0, 3.0], 2.0);
        self.exact(Op::Fmod, &[-5.0, 3.0], -2.0);
        self.exact(Op::Fmod, &[5.0, -3.0], 2.0);
        self.exact(Op::Fmod, &[-5.0, -3.0], -2.0);
        self.exact(Op::Fmod, &[5.5, 2.0], 1.5);
        self.exact(Op::Fmod, &[-6.0, 3.0], -0.0);
        self.exact(Op::Fmod, &[-0.0, 3.0], -0.0);
        self.exact(Op::Fmod, &[1.0, 0.0], NAN);
        self.exact(Op::Fmod, &[INF, 2.0], NAN);
        self.exact(Op::Fmod, &[2.0, INF], 2.0);
        self.exact(Op::Fmod, &[NAN, 2.0], NAN);

        // NaN-propagating min / max (torch.minimum / torch.maximum).
        self.exact(Op::Min, &[1.0, 2.0], 1.0);
        self.exact(Op::Min, &[2.0, -INF], -INF);
        self.exact(Op::Min, &[NAN, 1.0], NAN);
        self.exact(Op::Min, &[1.0, NAN], NAN);
        self.exact(Op::Max, &[1.0, 2.0], 2.0);
        self.exact(Op::Max, &[-INF, 3.0], 3.0);
        self.exact(Op::Max, &[NAN, INF], NAN);
        self.exact(Op::Max, &[-1.0, NAN], NAN);
        // Signed zeros compare equal: either is a correct answer, but it must be a zero.
        for args in [[0.0, -0.0], [-0.0, 0.0]] {
            assert_eq!(self.eval(Op::Min, &args), 0.0);
            assert_eq!(self.eval(Op::Max, &args), 0.0);
        }
    }

    fn comparisons_and_logic(&mut self) {
        let cases: &[(Op, [f64; 2], f64)] = &[
            (Op::Eq, [1.0, 1.0], 1.0),
            (Op::Eq, [0.0, -0.0], 1.0),
            (Op::Eq, [NAN, NAN], 0.0),
            (Op::Eq, [1.0, 2.0], 0.0),
            (Op::Ne, [NAN, NAN], 1.0),
            (Op::Ne, [0.0, -0.0], 0.0),
            (Op::Ne, [1.0, 2.0], 1.0),
            (Op::Lt, [1.0, 2.0], 1.0),
            (Op::Lt, [2.0, 2.0], 0.0),
            (Op::Lt, [-0.0, 0.0], 0.0),
            (Op::Lt, [NAN, 1.0], 0.0),
            (Op::Le, [2.0, 2.0], 1.0),
            (Op::Le, [-0.0, 0.0], 1.0),
            (Op::Le, [1.0, NAN], 0.0),
            (Op::Gt, [INF, 1e38], 1.0),
            (Op::Gt, [2.0, 2.0], 0.0),
            (Op::Gt, [NAN, -INF], 0.0),
            (Op::Ge, [2.0, 2.0], 1.0),
            (Op::Ge, [1.0, 2.0], 0.0),
            (Op::Ge, [NAN, NAN], 0.0),
            // Logic ops: any non-zero operand (NaN included) is true; results are 0 or 1.
            (Op::And, [2.0, -3.0], 1.0),
            (Op::And, [0.0, 5.0], 0.0),
            (Op::And, [-0.0, 1.0], 0.0),
            (Op::And, [NAN, 1.0], 1.0),
            (Op::And, [INF, 0.5], 1.0),
            (Op::Or, [0.0, 0.0], 0.0),
            (Op::Or, [-0.0, 0.0], 0.0),
            (Op::Or, [-0.0, NAN], 1.0),
            (Op::Or, [0.0, 0.5], 1.0),
        ];
        for &(op, args, want) in cases {
            self.exact(op, &args, want);
        }
        self.exact(Op::Not, &[0.0], 1.0);
        self.exact(Op::Not, &[-0.0], 1.0);
        self.exact(Op::Not, &[2.0], 0.0);
        self.exact(Op::Not, &[NAN], 0.0);
        self.exact(Op::Not, &[-INF], 0.0);
    }

    fn ternary(&mut self) {
        // clamp(x, lo, hi) = min(max(x, lo), hi), NaN-propagating in every operand.
        self.exact(Op::Clamp, &[5.0, 0.0, 1.0], 1.0);
        self.exact(Op::Clamp, &[-5.0, 0.0, 1.0], 0.0);
        self.exact(Op::Clamp, &[0.5, 0.0, 1.0], 0.5);
        self.exact(Op::Clamp, &[-INF, -1.0, 1.0], -1.0);
        self.exact(Op::Clamp, &[NAN, 0.0, 1.0], NAN);
        self.exact(Op::Clamp, &[0.5, NAN, 1.0], NAN);
        self.exact(Op::Clamp, &[0.5, 0.0, NAN], NAN);
        // lo > hi: hi wins, as in torch.clamp.
        self.exact(Op::Clamp, &[0.5, 2.0, 1.0], 1.0);

        self.exact(Op::Select, &[1.0, 2.0, 3.0], 2.0);
        self.exact(Op::Select, &[-3.0, 2.0, 3.0], 2.0);
        self.exact(Op::Select, &[0.0, 2.0, 3.0], 3.0);
        self.exact(Op::Select, &[-0.0, 2.0, 3.0], 3.0);
        self.exact(Op::Select, &[NAN, 2.0, 3.0], 2.0);
        self.exact(Op::Select, &[0.0, NAN, -0.0], -0.0);
        self.exact(Op::Select, &[1.0, NAN, 3.0], NAN);
    }

    fn spike_and_detach(&mut self) {
        for name in Surrogate::NAMES {
            let sg = Surrogate::default_for(name).unwrap();
            if matches!(sg, Surrogate::MultiLevelSpikeCount { .. }) {
                continue;
            }
            let s = Op::Spike(sg);
            // Θ(x) with Θ(0) = 1 (both zeros), NaN gives 0, whatever the surrogate.
            for (x, want) in [
                (0.0, 1.0),
                (-0.0, 1.0),
                (1e-45, 1.0),
                (-1e-45, 0.0),
                (0.3, 1.0),
                (-0.3, 0.0),
                (INF, 1.0),
                (-INF, 0.0),
                (NAN, 0.0),
            ] {
                self.exact(s, &[x], want);
            }
        }
        // MultiLevelSpikeCount (max 4): the count round(clamp(x, 0, 4)), ties to even; NaN stays.
        let count = Op::Spike(Surrogate::default_for("MultiLevelSpikeCount").unwrap());
        for (x, want) in [
            (0.0, 0.0),
            (-0.3, 0.0),
            (-INF, 0.0),
            (0.5, 0.0),
            (0.5000001, 1.0),
            (1.5, 2.0),
            (2.5, 2.0),
            (3.49, 3.0),
            (3.5, 4.0),
            (4.0, 4.0),
            (7.25, 4.0),
            (INF, 4.0),
            (NAN, NAN),
        ] {
            self.exact(count, &[x], want);
        }
        for x in [1.5, -0.0, 0.0, INF, NAN] {
            self.exact(Op::Detach, &[x], x);
        }
    }
}

fn check_type<F: Real>() {
    let mut c = Checker::<F>::new();
    c.run_all();
    let mut missing: Vec<&str> = Op::PLAIN
        .iter()
        .map(|op| op.name())
        .filter(|n| !c.seen.contains(n))
        .collect();
    for leafish in ["const", "spike"] {
        if !c.seen.contains(leafish) {
            missing.push(leafish);
        }
    }
    assert!(missing.is_empty(), "ops without forward tests: {missing:?}");
}

#[test]
fn every_op_forward_f32() {
    check_type::<f32>();
}

#[test]
fn every_op_forward_f64() {
    check_type::<f64>();
}

#[test]
fn f32_evaluation_rounds_like_f32_arithmetic() {
    // The f32 interpreter computes in f32, not in f64 rounded at the end.
    let a = 16_777_216.0f32; // 2^24: a + 1 is not representable
    assert_eq!(eval_op::<f32>(&Op::Add, &[a, 1.0]), a);
    assert_eq!(eval_op::<f64>(&Op::Add, &[a as f64, 1.0]), a as f64 + 1.0);
    let x = 0.1f32;
    assert_eq!(eval_op::<f32>(&Op::Exp, &[x]).to_bits(), x.exp().to_bits());
    assert_eq!(
        eval_op::<f32>(&Op::Erf, &[x]).to_bits(),
        libm::erff(x).to_bits()
    );
}
