//! Smooth primitive forms of the surrogates (SpikingJelly's `spiking=False`), expanded into IR
//! ops so that autodiff differentiates them like any other expression. Masks such as
//! `Θ(x)` inside a primitive are comparisons: they carry no gradient, as in torch.

use crate::builder::GraphBuilder;
use crate::error::BuildError;
use crate::graph::ValueId;
use crate::op::Op;
use crate::surrogate::Surrogate;

impl GraphBuilder {
    /// Expands the smooth primitive form of `s` (SpikingJelly's `spiking=False`) applied to `x`.
    pub fn surrogate_primitive(&mut self, s: Surrogate, x: ValueId) -> Result<ValueId, BuildError> {
        expand(self, s, x)
    }
}

/// A tiny expression helper over a [`GraphBuilder`].
struct E<'a> {
    b: &'a mut GraphBuilder,
}

impl E<'_> {
    fn c(&mut self, v: f64) -> ValueId {
        self.b.constant(v as f32)
    }
    fn op(&mut self, op: Op, args: &[ValueId]) -> Result<ValueId, BuildError> {
        self.b.op(op, args)
    }
    fn bin(&mut self, op: Op, a: ValueId, b: ValueId) -> Result<ValueId, BuildError> {
        self.b.op(op, &[a, b])
    }
    fn mul_c(&mut self, a: ValueId, c: f64) -> Result<ValueId, BuildError> {
        let c = self.c(c);
        self.bin(Op::Mul, a, c)
    }
    fn add_c(&mut self, a: ValueId, c: f64) -> Result<ValueId, BuildError> {
        let c = self.c(c);
        self.bin(Op::Add, a, c)
    }
    /// `(x >= 0)` as 0/1, no gradient.
    fn heaviside(&mut self, x: ValueId) -> Result<ValueId, BuildError> {
        let z = self.c(0.0);
        self.bin(Op::Ge, x, z)
    }
    /// `2 * mask - 1`.
    fn sign_of_mask(&mut self, m: ValueId) -> Result<ValueId, BuildError> {
        let two_m = self.mul_c(m, 2.0)?;
        self.add_c(two_m, -1.0)
    }
}

/// Expands `s`'s primitive applied to `x`.
fn expand(b: &mut GraphBuilder, s: Surrogate, x: ValueId) -> Result<ValueId, BuildError> {
    use Surrogate::*;
    let e = &mut E { b };
    let alpha_of = |a: f32| a as f64;
    match s {
        PiecewiseQuadratic { alpha } => {
            // mask0 + mask1 * (-(a^2)/2 * x^2 * sign(x) + a*x + 0.5)
            let a = alpha_of(alpha);
            let inv = e.c(1.0 / a);
            let mask0 = e.bin(Op::Gt, x, inv)?;
            let ax = e.op(Op::Abs, &[x])?;
            let mask1 = e.bin(Op::Le, ax, inv)?;
            let x2 = e.bin(Op::Mul, x, x)?;
            let t = e.mul_c(x2, -(a * a) / 2.0)?;
            let sg = e.op(Op::Sign, &[x])?;
            let t = e.bin(Op::Mul, t, sg)?;
            let lin = e.mul_c(x, a)?;
            let t = e.bin(Op::Add, t, lin)?;
            let t = e.add_c(t, 0.5)?;
            let t = e.bin(Op::Mul, mask1, t)?;
            e.bin(Op::Add, mask0, t)
        }
        PiecewiseExp { alpha } => {
            // m - exp(s * x * (-a)) / 2 * s, m = Θ(x), s = 2m - 1
            let m = e.heaviside(x)?;
            let sgn = e.sign_of_mask(m)?;
            let t = e.bin(Op::Mul, sgn, x)?;
            let t = e.mul_c(t, -alpha_of(alpha))?;
            let t = e.op(Op::Exp, &[t])?;
            let t = e.mul_c(t, 0.5)?;
            let t = e.bin(Op::Mul, t, sgn)?;
            e.bin(Op::Sub, m, t)
        }
        Sigmoid { alpha } => {
            let t = e.mul_c(x, alpha_of(alpha))?;
            e.op(Op::Sigmoid, &[t])
        }
        SoftSign { alpha } => {
            // (softsign(a x) + 1) / 2, softsign(z) = z / (1 + |z|)
            let z = e.mul_c(x, alpha_of(alpha))?;
            let az = e.op(Op::Abs, &[z])?;
            let d = e.add_c(az, 1.0)?;
            let ss = e.bin(Op::Div, z, d)?;
            let t = e.add_c(ss, 1.0)?;
            e.mul_c(t, 0.5)
        }
        ATan { alpha } => {
            // atan(pi/2 * a * x) / pi + 0.5
            let t = e.mul_c(x, std::f64::consts::FRAC_PI_2 * alpha_of(alpha))?;
            let t = e.op(Op::Atan, &[t])?;
            let t = e.mul_c(t, 1.0 / std::f64::consts::PI)?;
            e.add_c(t, 0.5)
        }
        NonzeroSignLogAbs { alpha } => {
            // m * log(a * m * x + 1), m = 2Θ(x) - 1
            let h = e.heaviside(x)?;
            let m = e.sign_of_mask(h)?;
            let t = e.bin(Op::Mul, m, x)?;
            let t = e.mul_c(t, alpha_of(alpha))?;
            let t = e.add_c(t, 1.0)?;
            let t = e.op(Op::Log, &[t])?;
            e.bin(Op::Mul, m, t)
        }
        Erf { alpha } => {
            // erfc(-a x) / 2 = (1 + erf(a x)) / 2
            let t = e.mul_c(x, alpha_of(alpha))?;
            let t = e.op(Op::Erf, &[t])?;
            let t = e.add_c(t, 1.0)?;
            e.mul_c(t, 0.5)
        }
        PiecewiseLeakyReLU { w, c } => {
            // x < -w: c x + c w; x > w: c x + (1 - c w); else x / (2w) + 1/2
            let (w, c) = (w as f64, c as f64);
            let cx = e.mul_c(x, c)?;
            let left = e.add_c(cx, c * w)?;
            let right = e.add_c(cx, -c * w + 1.0)?;
            let mid = e.mul_c(x, 1.0 / (2.0 * w))?;
            let mid = e.add_c(mid, 0.5)?;
            let neg_w = e.c(-w);
            let pos_w = e.c(w);
            let is_left = e.bin(Op::Lt, x, neg_w)?;
            let is_right = e.bin(Op::Gt, x, pos_w)?;
            let t = e.op(Op::Select, &[is_right, right, mid])?;
            e.op(Op::Select, &[is_left, left, t])
        }
        SquarewaveFourierSeries { n, t_period } => {
            // 0.5 + 2/pi * sum_{i=1}^{n-1} sin((2i-1) w x) / (2i-1), w = 2 pi / T
            let w = 2.0 * std::f64::consts::PI / t_period as f64;
            let mut acc = e.c(0.0);
            for i in 1..n {
                let k = (2 * i - 1) as f64;
                let t = e.mul_c(x, k * w)?;
                let t = e.op(Op::Sin, &[t])?;
                let t = e.mul_c(t, 1.0 / k)?;
                acc = e.bin(Op::Add, acc, t)?;
            }
            let t = e.mul_c(acc, 2.0 / std::f64::consts::PI)?;
            e.add_c(t, 0.5)
        }
        S2NN { alpha, beta } => {
            // where(x < 0, sigmoid(a x), beta * log(|x + 1| + 1e-5) + 0.5)
            let z = e.c(0.0);
            let neg = e.bin(Op::Lt, x, z)?;
            let ax = e.mul_c(x, alpha_of(alpha))?;
            let sig = e.op(Op::Sigmoid, &[ax])?;
            let t = e.add_c(x, 1.0)?;
            let t = e.op(Op::Abs, &[t])?;
            let t = e.add_c(t, 1e-5)?;
            let t = e.op(Op::Log, &[t])?;
            let t = e.mul_c(t, beta as f64)?;
            let t = e.add_c(t, 0.5)?;
            e.op(Op::Select, &[neg, sig, t])
        }
        QPseudoSpike { alpha } => {
            // m - s * 0.5 * (1 + 2/(a-1) * x * s)^(1-a), m = Θ(x), s = 2m - 1
            let a = alpha_of(alpha);
            let m = e.heaviside(x)?;
            let sgn = e.sign_of_mask(m)?;
            let t = e.bin(Op::Mul, x, sgn)?;
            let t = e.mul_c(t, 2.0 / (a - 1.0))?;
            let t = e.add_c(t, 1.0)?;
            let p = e.c(1.0 - a);
            let t = e.bin(Op::Pow, t, p)?;
            let t = e.mul_c(t, 0.5)?;
            let t = e.bin(Op::Mul, sgn, t)?;
            e.bin(Op::Sub, m, t)
        }
        LeakyKReLU { leak, k } => {
            // (leak * (1 - m) + k * m) * x, m = (x >= 0)
            let m = e.heaviside(x)?;
            let kk = e.c(k as f64);
            let ll = e.c(leak as f64);
            let factor = e.op(Op::Select, &[m, kk, ll])?;
            e.bin(Op::Mul, factor, x)
        }
        LogTailedReLU { alpha } => {
            // where(x > 1, log(max(x, 1)) + 1, leaky_relu(x, a))
            let one = e.c(1.0);
            let gt1 = e.bin(Op::Gt, x, one)?;
            let t = e.bin(Op::Max, x, one)?;
            let t = e.op(Op::Log, &[t])?;
            let tail = e.add_c(t, 1.0)?;
            let z = e.c(0.0);
            let pos = e.bin(Op::Gt, x, z)?;
            let ax = e.mul_c(x, alpha_of(alpha))?;
            let leaky = e.op(Op::Select, &[pos, x, ax])?;
            e.op(Op::Select, &[gt1, tail, leaky])
        }
        Rect { alpha } => {
            // clamp(a x + 0.5, 0, 1)
            let t = e.mul_c(x, alpha_of(alpha))?;
            let t = e.add_c(t, 0.5)?;
            let lo = e.c(0.0);
            let hi = e.c(1.0);
            e.op(Op::Clamp, &[t, lo, hi])
        }
        DeterministicPass => Ok(x),
        MultiLevelSpikeCount {
            max_spike_count, ..
        } => {
            // clamp(x, 0, max_spike_count)
            let lo = e.c(0.0);
            let hi = e.c(max_spike_count as f64);
            e.op(Op::Clamp, &[x, lo, hi])
        }
        SuperSpike { .. } | FakeNumericalGradient { .. } => Err(BuildError::NoPrimitive(s.name())),
    }
}
