//! The inline math library of the Cranelift backend, written once over [`Lanes`].
//!
//! Cranelift has no `exp`, `log`, `tanh`, …; these functions are expanded inline into every
//! kernel as straight-line vector code (no calls, no tables except the `2/π` bits of the sine and
//! cosine argument reduction). Polynomial coefficients were fitted with `fit_coeffs.py` (beside
//! this file); the sine, cosine and power paths use `f64` arithmetic and Taylor coefficients.
//!
//! Polynomial steps `a * b + c` go through [`Lanes::mul_add`]: one fused multiply-add where the
//! code is generated with `fused` (hosts with FMA), a product and a sum otherwise. Both forms
//! are tested. Worst error against the correctly rounded result, measured by the tests at the
//! bottom of this file over the whole `f32` range (every 61st bit pattern of each sign, plus
//! edge cases; the reference is libm in `f64`), unfused / fused:
//!
//! | function | bound | measured | notes |
//! |---|---|---|---|
//! | `exp` | 1 ulp | 0.93 / 0.97 ulp | subnormal results in units of 2⁻¹⁴⁹ |
//! | `log` | 1 ulp | 0.89 / 0.89 ulp | `ln m = f - s (f - 2R)` keeps the error on a small correction |
//! | `log2` | 2 ulp | 1.74 / 1.74 ulp | |
//! | `sigmoid` | 3 ulp | 2.33 / 2.33 ulp | `e/(1+e)` for `x < 0`, so tiny results stay accurate; `e` scaled by `2^32` (never subnormal), degree-4 polynomial by Horner's scheme |
//! | `tanh` | 2 ulp | 1.41 / 1.41 ulp | |
//! | `atan` | 2 ulp | 1.84 / 1.84 ulp | |
//! | `erf` | 2 ulp | 1.39 / 1.14 ulp | |
//! | `sin`, `cos` | 1 ulp | 0.50 ulp | full Payne–Hanek reduction in `f64` |
//! | `pow` | 1 ulp | 0.50 ulp | `exp2(y · log2 x)` in `f64`; C99 special cases |
//! | `fmod` | exact | exact | integer long division |
//!
//! The tests assert these bounds (see `ULP_BOUNDS`), so the table cannot drift from the code.
//! Special values follow C: NaN in gives NaN out, `exp(-inf) = 0`, `log(0) = -inf`,
//! `log(x < 0) = NaN`, `tanh(±inf) = ±1`, `sin(inf) = NaN`, and the signs of zeros are kept by
//! the odd functions.

// Coefficients are written as the fitting script prints them (the f32 value's shortest f64
// round-trip digits), which is more digits than an f32 needs.
#![allow(clippy::excessive_precision)]

use super::lanes::{Cmp, ICmp, Lanes};

type F<L> = <L as Lanes>::F;

/// `c[0] + x (c[1] + x (c[2] + …))`, each step one [`Lanes::mul_add`].
fn horner<L: Lanes>(l: &mut L, x: F<L>, c: &[f32]) -> F<L> {
    let mut acc = l.fc(c[c.len() - 1]);
    for &ci in c[..c.len() - 1].iter().rev() {
        let k = l.fc(ci);
        acc = l.mul_add(acc, x, k);
    }
    acc
}

/// The `f64` version of [`horner`].
fn dhorner<L: Lanes>(l: &mut L, x: L::D, c: &[f64]) -> L::D {
    let mut acc = l.dc(c[c.len() - 1]);
    for &ci in c[..c.len() - 1].iter().rev() {
        let m = l.dmul(acc, x);
        let k = l.dc(ci);
        acc = l.dadd(m, k);
    }
    acc
}

/// `2^k` for integer lanes `k` in `-126..=127`, built from bits.
fn pow2i<L: Lanes>(l: &mut L, k: L::I) -> F<L> {
    let bias = l.ic(127);
    let e = l.iadd(k, bias);
    let b = l.ishl(e, 23);
    l.float_of_bits(b)
}

/// `m ? NaN : v`.
fn nan_where<L: Lanes>(l: &mut L, m: L::I, v: F<L>) -> F<L> {
    let nan = l.fc(f32::NAN);
    l.fsel(m, nan, v)
}

/// `x` where `x` is NaN, else `v` (NaN in gives the same NaN out).
fn keep_nan<L: Lanes>(l: &mut L, x: F<L>, v: F<L>) -> F<L> {
    let m = l.fcmp(Cmp::Uno, x, x);
    l.fsel(m, x, v)
}

/// `|r|` with the sign bit of `x` (for odd functions; `r >= 0`).
fn with_sign_of<L: Lanes>(l: &mut L, r: F<L>, x: F<L>) -> F<L> {
    let xb = l.bits(x);
    let sign = l.ic(i32::MIN);
    let s = l.iand(xb, sign);
    let rb = l.bits(r);
    let b = l.ior(rb, s);
    l.float_of_bits(b)
}

/// `min(a, b)` as `b < a ? b : a` (keeps a NaN in `a`).
fn min_sel<L: Lanes>(l: &mut L, a: F<L>, b: F<L>) -> F<L> {
    let m = l.fcmp(Cmp::Lt, b, a);
    l.fsel(m, b, a)
}

/// `max(a, b)` as `b > a ? b : a` (keeps a NaN in `a`), written `a < b ? b : a`: the form
/// Cranelift lowers to one `maxps` (as `min_sel`'s to one `minps`).
fn max_sel<L: Lanes>(l: &mut L, a: F<L>, b: F<L>) -> F<L> {
    let m = l.fcmp(Cmp::Lt, a, b);
    l.fsel(m, b, a)
}

const LOG2E: f32 = std::f32::consts::LOG2_E;
/// `ln 2` split so that `k * LN2_HI` is exact for `|k| < 2^8`.
const LN2_HI: f32 = 0.693_145_751_953_125;
const LN2_LO: f32 = 1.428_606_765_330_187_e-6;

/// `(e^r - 1 - r) / r^2` on `|r| <= ln2/2`, degree 5 (fitted).
const EXP_Q: [f32; 6] = [
    0.5,
    0.166_666_67,
    0.041_666_467,
    0.008_333_361,
    0.001_393_360_4,
    0.000_198_577_98,
];

/// The same on the same interval, degree 4 (fitted): for [`sigmoid`], whose 3 ulp bound leaves
/// room for its `~0.07` ulp more.
const EXP_Q4: [f32; 5] = [
    0.5,
    0.166_665_78,
    0.041_666_854,
    0.008_363_144_5,
    0.001_390_128_3,
];

/// `1.5 * 2^23`: adding it to `|t| < 2^22` rounds `t` to an integer (ties to even) held in the
/// low mantissa bits.
const ROUND_MAGIC: f32 = 12_582_912.0;

/// `x = k ln2 + r` with `k = nearest(x log2 e)` and `|r|` about `ln2/2`, for `|x| < 2^21`.
/// Returns `k + ROUND_MAGIC` (the integer `k` in its low mantissa bits) and `r`. Three
/// [`Lanes::mul_add`]s: unfused, they round as `x log2e + magic`, `x - k LN2_HI` and
/// `r - k LN2_LO` written out. Fused, `k` rounds the exact product (it may differ by one at a
/// tie, which moves `r` by `ln2` within the polynomials' interval); `k LN2_HI` is exact either
/// way (`LN2_HI` has 15 significant bits and `|k| < 2^8`), and `r - k LN2_LO` rounds once.
fn reduce_ln2<L: Lanes>(l: &mut L, x: F<L>) -> (F<L>, F<L>) {
    let (log2e, magic) = (l.fc(LOG2E), l.fc(ROUND_MAGIC));
    let km = l.mul_add(x, log2e, magic);
    let k = l.sub(km, magic);
    let (c_hi, c_lo) = (l.fc(-LN2_HI), l.fc(-LN2_LO));
    let r = l.mul_add(k, c_hi, x);
    let r = l.mul_add(k, c_lo, r);
    (km, r)
}

/// `e^x`.
pub fn exp<L: Lanes>(l: &mut L, x: F<L>) -> F<L> {
    let hi = l.fc(89.0);
    let xc = min_sel(l, x, hi);
    exp_le_89(l, xc)
}

/// `e^x` for `x <= 89` or NaN (NaN gives NaN).
fn exp_le_89<L: Lanes>(l: &mut L, x: F<L>) -> F<L> {
    let lo = l.fc(-104.0);
    let xc = max_sel(l, x, lo);
    let (km, r) = reduce_ln2(l, xc);
    let kmb = l.bits(km);
    let magic_bits = l.ic(ROUND_MAGIC.to_bits() as i32);
    let ki = l.isub(kmb, magic_bits);
    let q = horner(l, r, &EXP_Q);
    let r2 = l.mul(r, r);
    let s = l.mul_add(r2, q, r);
    let one = l.fc(1.0);
    let p = l.add(s, one);
    // k in [-150, 128]: scale by 2^(k/2) * 2^(k - k/2), both in the normal range.
    let k1 = l.sshr(ki, 1);
    let k2 = l.isub(ki, k1);
    let s1 = pow2i(l, k1);
    let s2 = pow2i(l, k2);
    let y = l.mul(p, s1);
    l.mul(y, s2)
}

/// Splits positive finite `x` into `m * 2^e` with `m` in `[sqrt(1/2), sqrt(2)]`; handles
/// subnormals. Returns `(m, e)`.
fn frexp_sqrt2<L: Lanes>(l: &mut L, x: F<L>) -> (F<L>, L::I) {
    let min_normal = l.fc(f32::MIN_POSITIVE);
    let tiny = l.fcmp(Cmp::Lt, x, min_normal);
    let scale = l.fc(8_388_608.0); // 2^23
    let xs_big = l.mul(x, scale);
    let xs = l.fsel(tiny, xs_big, x);
    let (m23, z) = (l.ic(-23), l.ic(0));
    let eadj = l.isel(tiny, m23, z);
    let b = l.bits(xs);
    let eb = l.ushr(b, 23);
    let ff = l.ic(0xff);
    let eb = l.iand(eb, ff);
    let bias = l.ic(127);
    let e = l.isub(eb, bias);
    let e = l.iadd(e, eadj);
    let mant = l.ic(0x7f_ffff);
    let one_bits = l.ic(0x3f80_0000);
    let mb = l.iand(b, mant);
    let mb = l.ior(mb, one_bits);
    let m = l.float_of_bits(mb);
    let sqrt2 = l.fc(std::f32::consts::SQRT_2);
    let big = l.fcmp(Cmp::Gt, m, sqrt2);
    let half = l.fc(0.5);
    let mh = l.mul(m, half);
    let m = l.fsel(big, mh, m);
    let e = l.isub(e, big); // big is -1 where true
    (m, e)
}

/// `ln(m)` for `m` in `[sqrt(1/2), sqrt(2)]`: with `f = m - 1` (exact) and `s = f / (2 + f)`,
/// `ln m = 2 atanh(s) = 2s + 2sR = f - s (f - 2R)`, `R = s^2/3 + s^4/5 + …` (Taylor to `s^8`).
/// The rounding errors fall on the correction `s (f - 2R)`, at most a fifth of the result.
fn log_reduced<L: Lanes>(l: &mut L, m: F<L>) -> F<L> {
    let one = l.fc(1.0);
    let two = l.fc(2.0);
    let f = l.sub(m, one);
    let d = l.add(f, two);
    let s = l.div(f, d);
    let w = l.mul(s, s);
    let p = horner(l, w, &[1.0 / 3.0, 1.0 / 5.0, 1.0 / 7.0, 1.0 / 9.0]);
    let r = l.mul(w, p);
    let r2 = l.add(r, r);
    let c = l.sub(f, r2);
    let c = l.mul(s, c);
    l.sub(f, c)
}

/// Applies C's special cases of `log`: `+inf -> +inf`, `±0 -> -inf`, `x < 0` or NaN `-> NaN`.
fn log_specials<L: Lanes>(l: &mut L, x: F<L>, r: F<L>) -> F<L> {
    let inf = l.fc(f32::INFINITY);
    let ninf = l.fc(f32::NEG_INFINITY);
    let zero = l.fc(0.0);
    let is_inf = l.fcmp(Cmp::Eq, x, inf);
    let r = l.fsel(is_inf, inf, r);
    let is_zero = l.fcmp(Cmp::Eq, x, zero);
    let r = l.fsel(is_zero, ninf, r);
    let neg = l.fcmp(Cmp::Lt, x, zero);
    let r = nan_where(l, neg, r);
    keep_nan(l, x, r)
}

/// Natural logarithm.
pub fn log<L: Lanes>(l: &mut L, x: F<L>) -> F<L> {
    let (m, e) = frexp_sqrt2(l, x);
    let lm = log_reduced(l, m);
    let ef = l.i2f(e);
    let (c_hi, c_lo) = (l.fc(LN2_HI), l.fc(LN2_LO));
    let a = l.mul(ef, c_hi);
    let b = l.mul(ef, c_lo);
    let b = l.add(lm, b);
    let r = l.add(a, b);
    log_specials(l, x, r)
}

/// Base-2 logarithm.
pub fn log2<L: Lanes>(l: &mut L, x: F<L>) -> F<L> {
    let (m, e) = frexp_sqrt2(l, x);
    let lm = log_reduced(l, m);
    let ef = l.i2f(e);
    let c = l.fc(LOG2E);
    let t = l.mul(lm, c);
    let r = l.add(ef, t);
    log_specials(l, x, r)
}

/// `e^x * 2^32` for `x <= 0` (also `-inf` and NaN), always a normal float (or NaN):
/// `p * 2^(k + 32)` from [`exp_le_89`]'s reduction, one exact product: multiplying by `2^-32`
/// would round into the subnormals for `x < -87.3`; [`sigmoid`] divides instead, which rounds
/// its tiny results only once. The biased exponent `k + 127 + 32` comes straight from the bits
/// of the rounding sum (one integer subtraction). The polynomial is evaluated by Horner's scheme:
/// in a kernel's interleaved copies Estrin's shorter chain bought nothing and its extra live
/// values spilled (measured: 23 fewer instructions per 16 neurons in LIF's backward, 3 % faster).
fn exp_nonpos_scaled<L: Lanes>(l: &mut L, x: F<L>) -> F<L> {
    let lo = l.fc(-104.0);
    let xc = max_sel(l, x, lo);
    let (km, r) = reduce_ln2(l, xc);
    let q = horner(l, r, &EXP_Q4);
    let r2 = l.mul(r, r);
    let s = l.mul_add(r2, q, r);
    let kmb = l.bits(km);
    let off = l.ic(ROUND_MAGIC.to_bits() as i32 - (127 + 32));
    let e = l.isub(kmb, off);
    let sb = l.ishl(e, 23);
    let scale = l.float_of_bits(sb);
    // (s + 1) * scale, bit for bit: scaling by a power of two commutes with rounding while the
    // result is normal, so both forms round s + 1 once (`s * scale` is exact when unfused).
    l.mul_add(s, scale, scale)
}

/// `-|x|` (the sign bit set; NaN stays NaN).
fn neg_abs<L: Lanes>(l: &mut L, x: F<L>) -> F<L> {
    let b = l.bits(x);
    let sign = l.ic(i32::MIN);
    let b = l.ior(b, sign);
    l.float_of_bits(b)
}

/// `1 / (1 + e^-x)`, as `e/(1+e)` with `e = e^x` for `x < 0`; both scaled by `2^32`
/// (`E = e 2^32`, `2^32 / (2^32 + E)` and `E / (2^32 + E)`), so `e` never underflows and a
/// subnormal result is rounded once, by the division.
pub fn sigmoid<L: Lanes>(l: &mut L, x: F<L>) -> F<L> {
    let na = neg_abs(l, x);
    let e = exp_nonpos_scaled(l, na);
    let big = l.fc(4_294_967_296.0); // 2^32
    let d = l.add(big, e);
    let zero = l.fc(0.0);
    let pos = l.fcmp(Cmp::Ge, x, zero);
    let num = l.fsel(pos, big, e);
    l.div(num, d)
}

/// `(tanh(x)/x - 1) / x^2` in `w = x^2` on `|x| <= 0.55` (fitted).
const TANH_P: [f32; 5] = [
    -0.333_333_31,
    0.133_331_13,
    -0.053_909_447,
    0.021_309_478,
    -0.006_610_375_8,
];

/// Hyperbolic tangent.
pub fn tanh<L: Lanes>(l: &mut L, x: F<L>) -> F<L> {
    let a = l.abs(x);
    let w = l.mul(a, a);
    let p = horner(l, w, &TANH_P);
    let aw = l.mul(a, w);
    let small = l.mul_add(aw, p, a);
    let ten = l.fc(10.0);
    let ac = min_sel(l, a, ten);
    let a2 = l.add(ac, ac);
    let e = exp(l, a2);
    let one = l.fc(1.0);
    let two = l.fc(2.0);
    let d = l.add(e, one);
    let q = l.div(two, d);
    let large = l.sub(one, q);
    let lim = l.fc(0.55);
    let is_small = l.fcmp(Cmp::Lt, a, lim);
    let r = l.fsel(is_small, small, large);
    let r = with_sign_of(l, r, x);
    keep_nan(l, x, r)
}

/// `(atan(t)/t - 1) / t^2` in `w = t^2` on `|t| <= tan(π/8)` (fitted).
const ATAN_P: [f32; 5] = [
    -0.333_333_31,
    0.199_995_46,
    -0.142_641_22,
    0.107_452_7,
    -0.064_563_856,
];

/// Arctangent.
pub fn atan<L: Lanes>(l: &mut L, x: F<L>) -> F<L> {
    let a = l.abs(x);
    let one = l.fc(1.0);
    let (t3, t1) = (l.fc(2.414_213_5), l.fc(0.414_213_57));
    let big = l.fcmp(Cmp::Gt, a, t3);
    let mid = l.fcmp(Cmp::Gt, a, t1);
    let nrec = l.fc(-1.0);
    let inv = l.div(nrec, a);
    let am = l.sub(a, one);
    let ap = l.add(a, one);
    let red = l.div(am, ap);
    let t = l.fsel(mid, red, a);
    let t = l.fsel(big, inv, t);
    // π/2 and π/4 as f32 plus the rest, added to the small part first.
    let (p2, p4, zero) = (
        l.fc(std::f32::consts::FRAC_PI_2),
        l.fc(std::f32::consts::FRAC_PI_4),
        l.fc(0.0),
    );
    let (p2_lo, p4_lo) = (l.fc(-4.371_139e-8), l.fc(-2.185_569_5e-8));
    let y0 = l.fsel(mid, p4, zero);
    let y0 = l.fsel(big, p2, y0);
    let y0_lo = l.fsel(mid, p4_lo, zero);
    let y0_lo = l.fsel(big, p2_lo, y0_lo);
    let w = l.mul(t, t);
    let p = horner(l, w, &ATAN_P);
    let tw = l.mul(t, w);
    let s = l.mul_add(tw, p, y0_lo);
    let s = l.add(t, s);
    let r = l.add(y0, s);
    let r = with_sign_of(l, r, x);
    keep_nan(l, x, r)
}

/// `erf(x)/x - 1` in `w = x^2` on `|x| <= 1` (fitted, absolute error).
const ERF_SMALL_Q: [f32; 7] = [
    0.128_379_17,
    -0.376_126_26,
    0.112_836,
    -0.026_854_444,
    0.005_189_535_2,
    -0.000_802_084_1,
    0.000_078_891_19,
];
/// `erfc(a) e^(a^2)` in `u = 1/a - 0.625` on `1 <= a <= 4` (fitted).
const ERF_LARGE_G: [f32; 10] = [
    0.305_953,
    0.382_283_84,
    -0.172_393_6,
    0.043_760_803,
    0.023_261_98,
    -0.046_786_06,
    0.044_619_95,
    -0.028_408_168,
    -0.006_946_697_4,
    0.030_712_852,
];

/// The error function.
pub fn erf<L: Lanes>(l: &mut L, x: F<L>) -> F<L> {
    let a = l.abs(x);
    let w = l.mul(a, a);
    let q = horner(l, w, &ERF_SMALL_Q);
    let small = l.mul_add(a, q, a);
    let one = l.fc(1.0);
    let four = l.fc(4.0);
    let ac = min_sel(l, a, four);
    let ac = max_sel(l, ac, one);
    let t = l.div(one, ac);
    let off = l.fc(0.625);
    let u = l.sub(t, off);
    let g = horner(l, u, &ERF_LARGE_G);
    let wc = l.mul(ac, ac);
    let nw = l.neg(wc);
    let e = exp(l, nw);
    let eg = l.mul(e, g);
    let large = l.sub(one, eg);
    let is_small = l.fcmp(Cmp::Lt, a, one);
    let r = l.fsel(is_small, small, large);
    let sat = l.fcmp(Cmp::Ge, a, four);
    let r = l.fsel(sat, one, r);
    let r = with_sign_of(l, r, x);
    keep_nan(l, x, r)
}

pub use super::two_over_pi::TWO_OVER_PI_CHUNKS;

/// `|x|` reduced modulo `π/2`: `(y, q)` with `|x| = y + q π/2 (mod 2π)`, `|y| <= π/4` (a hair
/// more at the rounding edge), `q` in `0..4`.
fn reduce_pi_2<L: Lanes>(l: &mut L, x: F<L>) -> (L::D, L::I) {
    let a = l.abs(x);
    let b = l.bits(a);
    let be = l.ushr(b, 23);
    let mant = l.ic(0x7f_ffff);
    let hidden = l.ic(0x80_0000);
    let mi = l.iand(b, mant);
    let mi = l.ior(mi, hidden);
    let mf = l.i2f(mi);
    let md = l.promote(mf);
    let c = l.two_over_pi_chunks(be);
    let prod = |l: &mut L, c: L::D, scale: f64| {
        let p = l.dmul(md, c);
        let s = l.dc(scale);
        l.dmul(p, s)
    };
    let t1 = prod(l, c[0], 2f64.powi(-22));
    let t2 = prod(l, c[1], 2f64.powi(-46));
    let t3 = prod(l, c[2], 2f64.powi(-70));
    let t4 = prod(l, c[3], 2f64.powi(-94));
    // t1 mod 4 (exact), then k = nearest and the remainder, low parts added last.
    let quarter = l.dc(0.25);
    let four = l.dc(4.0);
    let t1q = l.dmul(t1, quarter);
    let t1f = l.dfloor(t1q);
    let t1f = l.dmul(t1f, four);
    let t1m = l.dsub(t1, t1f);
    let s = l.dadd(t1m, t2);
    let k = l.dnearest(s);
    let r = l.dsub(s, k);
    let r = l.dadd(r, t3);
    let r = l.dadd(r, t4);
    let pi_2 = l.dc(std::f64::consts::FRAC_PI_2);
    let y = l.dmul(r, pi_2);
    let kq = l.dmul(k, quarter);
    let kf = l.dfloor(kq);
    let kf = l.dmul(kf, four);
    let q = l.dsub(k, kf);
    let qf = l.demote(q);
    let qi = l.f2i(qf);
    // |x| < π/4: no reduction.
    let p4 = l.fc(std::f32::consts::FRAC_PI_4);
    let small = l.fcmp(Cmp::Lt, a, p4);
    let ad = l.promote(a);
    let y = l.dsel(small, ad, y);
    let zero = l.ic(0);
    let q = l.isel(small, zero, qi);
    (y, q)
}

/// `(sin y - y) / y^3` in `y^2`: Taylor coefficients `(-1)^i / (2i+1)!`.
const SIN_P: [f64; 5] = [
    -1.0 / 6.0,
    1.0 / 120.0,
    -1.0 / 5040.0,
    1.0 / 362_880.0,
    -1.0 / 39_916_800.0,
];
/// `(cos y - 1) / y^2` in `y^2`: Taylor coefficients `(-1)^i / (2i)!`.
const COS_P: [f64; 6] = [
    -1.0 / 2.0,
    1.0 / 24.0,
    -1.0 / 720.0,
    1.0 / 40_320.0,
    -1.0 / 3_628_800.0,
    1.0 / 479_001_600.0,
];
/// `atanh(z) / z` in `z^2`: `1 / (2i+1)`.
const ATANH_SERIES: [f64; 8] = [
    1.0,
    1.0 / 3.0,
    1.0 / 5.0,
    1.0 / 7.0,
    1.0 / 9.0,
    1.0 / 11.0,
    1.0 / 13.0,
    1.0 / 15.0,
];
/// `e^g`: `1 / n!`, `n = 0..=12`.
const EXP_TAYLOR: [f64; 13] = [
    1.0,
    1.0,
    1.0 / 2.0,
    1.0 / 6.0,
    1.0 / 24.0,
    1.0 / 120.0,
    1.0 / 720.0,
    1.0 / 5040.0,
    1.0 / 40_320.0,
    1.0 / 362_880.0,
    1.0 / 3_628_800.0,
    1.0 / 39_916_800.0,
    1.0 / 479_001_600.0,
];

/// `(sin y, cos y)` rounded to `f32`, for `|y| <= π/4` (Taylor to degree 11 and 12).
fn sincos_reduced<L: Lanes>(l: &mut L, y: L::D) -> (F<L>, F<L>) {
    let y2 = l.dmul(y, y);
    let ps = dhorner(l, y2, &SIN_P);
    let yy = l.dmul(y, y2);
    let ps = l.dmul(yy, ps);
    let s = l.dadd(y, ps);
    let pc = dhorner(l, y2, &COS_P);
    let pc = l.dmul(y2, pc);
    let one = l.dc(1.0);
    let c = l.dadd(one, pc);
    (l.demote(s), l.demote(c))
}

/// Picks `[v0, v1, v2, v3][q]` lane-wise.
fn pick4<L: Lanes>(l: &mut L, q: L::I, v: [F<L>; 4]) -> F<L> {
    let (one, two, three) = (l.ic(1), l.ic(2), l.ic(3));
    let m1 = l.icmp(ICmp::Eq, q, one);
    let m2 = l.icmp(ICmp::Eq, q, two);
    let m3 = l.icmp(ICmp::Eq, q, three);
    let r = l.fsel(m1, v[1], v[0]);
    let r = l.fsel(m2, v[2], r);
    l.fsel(m3, v[3], r)
}

/// NaN for NaN and infinite `x`, else `r`.
fn trig_specials<L: Lanes>(l: &mut L, x: F<L>, r: F<L>) -> F<L> {
    let a = l.abs(x);
    let inf = l.fc(f32::INFINITY);
    let m = l.fcmp(Cmp::Eq, a, inf);
    let r = nan_where(l, m, r);
    keep_nan(l, x, r)
}

/// Sine.
pub fn sin<L: Lanes>(l: &mut L, x: F<L>) -> F<L> {
    let (y, q) = reduce_pi_2(l, x);
    let (s, c) = sincos_reduced(l, y);
    let (ns, nc) = (l.neg(s), l.neg(c));
    let r = pick4(l, q, [s, c, ns, nc]);
    // sin is odd: flip the sign for negative x.
    let xb = l.bits(x);
    let sign = l.ic(i32::MIN);
    let sb = l.iand(xb, sign);
    let rb = l.bits(r);
    let rb = l.ixor(rb, sb);
    let r = l.float_of_bits(rb);
    trig_specials(l, x, r)
}

/// Cosine.
pub fn cos<L: Lanes>(l: &mut L, x: F<L>) -> F<L> {
    let (y, q) = reduce_pi_2(l, x);
    let (s, c) = sincos_reduced(l, y);
    let (ns, nc) = (l.neg(s), l.neg(c));
    let r = pick4(l, q, [c, ns, nc, s]);
    trig_specials(l, x, r)
}

/// `x^y` with C99 `powf` special cases, computed as `exp2(y log2 |x|)` in `f64`.
pub fn pow<L: Lanes>(l: &mut L, x: F<L>, y: F<L>) -> F<L> {
    let ax = l.abs(x);
    // log2 |x| in f64: |x| = m 2^e, ln m = 2 atanh(z), Taylor to z^15.
    let (m, e) = frexp_sqrt2(l, ax);
    let md = l.promote(m);
    let one_d = l.dc(1.0);
    let two_d = l.dc(2.0);
    let f = l.dsub(md, one_d);
    let d = l.dadd(f, two_d);
    let z = l.ddiv(f, d);
    let w = l.dmul(z, z);
    let p = dhorner(l, w, &ATANH_SERIES);
    let hz = l.dadd(z, z);
    let lnm = l.dmul(hz, p);
    let log2e = l.dc(std::f64::consts::LOG2_E);
    let l2m = l.dmul(lnm, log2e);
    let ef = l.i2f(e);
    let ed = l.promote(ef);
    let lg = l.dadd(ed, l2m);
    let yd = l.promote(y);
    let t = l.dmul(yd, lg);
    let (lo, hi) = (l.dc(-200.0), l.dc(200.0));
    let t = l.dmax(t, lo);
    let t = l.dmin(t, hi);
    // exp2(t) = 2^k * e^(f ln 2), |f| <= 1/2, Taylor to degree 12.
    let k = l.dnearest(t);
    let fr = l.dsub(t, k);
    let ln2 = l.dc(std::f64::consts::LN_2);
    let g = l.dmul(fr, ln2);
    let pe = dhorner(l, g, &EXP_TAYLOR);
    let kf = l.demote(k);
    let ki = l.f2i(kf);
    let k1 = l.sshr(ki, 1);
    let k2 = l.isub(ki, k1);
    let s1 = pow2i(l, k1);
    let s2 = pow2i(l, k2);
    let s1 = l.promote(s1);
    let s2 = l.promote(s2);
    let r = l.dmul(pe, s1);
    let r = l.dmul(r, s2);
    let r0 = l.demote(r);

    let zero = l.fc(0.0);
    let one = l.fc(1.0);
    let inf = l.fc(f32::INFINITY);
    let half = l.fc(0.5);
    let y_neg = l.fcmp(Cmp::Lt, y, zero);
    let zero_or_inf = l.fsel(y_neg, inf, zero);
    let inf_or_zero = l.fsel(y_neg, zero, inf);
    let ax_zero = l.fcmp(Cmp::Eq, ax, zero);
    let r1 = l.fsel(ax_zero, zero_or_inf, r0);
    let ax_inf = l.fcmp(Cmp::Eq, ax, inf);
    let r2 = l.fsel(ax_inf, inf_or_zero, r1);
    // y an odd integer: trunc(y) == y, finite, and y/2 not an integer.
    let ay = l.abs(y);
    let y_fin = l.fcmp(Cmp::Lt, ay, inf);
    let ty = l.trunc(y);
    let y_int = l.fcmp(Cmp::Eq, ty, y);
    let y_int = l.iand(y_int, y_fin);
    let yh = l.mul(y, half);
    let tyh = l.trunc(yh);
    let h_int = l.fcmp(Cmp::Eq, tyh, yh);
    let y_odd = l.iand(y_int, h_int);
    let y_odd = l.ixor(y_odd, y_int); // y_int && !h_int
    let xb = l.bits(x);
    let zi = l.ic(0);
    let x_sign = l.icmp(ICmp::Slt, xb, zi);
    let flip = l.iand(x_sign, y_odd);
    let nr2 = l.neg(r2);
    let r3 = l.fsel(flip, nr2, r2);
    // finite x < 0 with finite non-integer y: NaN.
    let x_neg = l.fcmp(Cmp::Lt, x, zero);
    let x_fin = l.fcmp(Cmp::Lt, ax, inf);
    let not_int = l.ixor(y_int, y_fin); // finite and not an integer
    let bad = l.iand(x_neg, x_fin);
    let bad = l.iand(bad, not_int);
    let r4 = nan_where(l, bad, r3);
    let any_nan = l.fcmp(Cmp::Uno, x, y);
    let r5 = nan_where(l, any_nan, r4);
    // y == 0, x == 1, or x == -1 with y = ±inf: exactly 1.
    let y0 = l.fcmp(Cmp::Eq, y, zero);
    let x1 = l.fcmp(Cmp::Eq, x, one);
    let mone = l.fc(-1.0);
    let xm1 = l.fcmp(Cmp::Eq, x, mone);
    let y_inf = l.fcmp(Cmp::Eq, ay, inf);
    let xm1 = l.iand(xm1, y_inf);
    let unit = l.ior(y0, x1);
    let unit = l.ior(unit, xm1);
    l.fsel(unit, one, r5)
}

#[cfg(test)]
mod tests {
    use super::super::lanes::Scalar;
    use super::*;

    /// Distance in ulp between `got` (f32) and the exact value `want` (f64), measured in units of
    /// the f32 spacing at `want` (2^-149 for subnormals).
    fn ulp_err(got: f32, want: f64) -> f64 {
        if want.is_nan() {
            return if got.is_nan() { 0.0 } else { f64::INFINITY };
        }
        if got.is_nan() {
            return f64::INFINITY;
        }
        if want.is_infinite() || (want.abs() >= f32::MAX as f64 * (1.0 + 2f64.powi(-25))) {
            // Rounds to infinity in f32.
            let inf = if want > 0.0 {
                f32::INFINITY
            } else {
                f32::NEG_INFINITY
            };
            return if got == inf { 0.0 } else { f64::INFINITY };
        }
        if got.is_infinite() {
            return f64::INFINITY;
        }
        let a = want.abs().max(f32::MIN_POSITIVE as f64);
        let e = a.log2().floor() as i32;
        let ulp = 2f64.powi(e - 23);
        (got as f64 - want).abs() / ulp
    }

    /// Samples: every `stride`-th bit pattern of each sign, plus edge cases.
    fn samples(stride: u32) -> Vec<f32> {
        let mut v: Vec<f32> = (0..0x7f80_0000u32)
            .step_by(stride as usize)
            .flat_map(|b| [f32::from_bits(b), -f32::from_bits(b)])
            .collect();
        v.extend([
            0.0,
            -0.0,
            1.0,
            -1.0,
            0.5,
            2.0,
            f32::MIN_POSITIVE,
            f32::MAX,
            f32::MIN,
            f32::EPSILON,
            1e-45,
            -1e-45,
            88.72283,
            88.72284,
            -87.33654,
            -103.97,
            -103.28,
            -104.0,
            0.55,
            0.549_999_95,
            0.414_213_57,
            2.414_213_5,
            0.999_999_94,
            4.0,
            3.999_999_8,
            std::f32::consts::FRAC_PI_4,
            std::f32::consts::FRAC_PI_2,
            std::f32::consts::PI,
            1e10,
            f32::INFINITY,
            f32::NEG_INFINITY,
            f32::NAN,
        ]);
        v
    }

    /// Both models: code generated without and with fused multiply-adds.
    const MODELS: [Scalar; 2] = [Scalar::PLAIN, Scalar::FUSED];

    /// The worst error of `f` on each model; asserts `bound` on both.
    fn check(
        name: &str,
        f: impl Fn(&mut Scalar, f32) -> f32,
        want: impl Fn(f64) -> f64,
        bound: f64,
    ) {
        for mut m in MODELS {
            let mut worst = (0.0f64, 0.0f32);
            for x in samples(61) {
                let e = ulp_err(f(&mut m, x), want(x as f64));
                if e > worst.0 {
                    worst = (e, x);
                }
            }
            eprintln!(
                "{name} (fused: {}): worst {:.3} ulp at x = {:e}",
                m.fused, worst.0, worst.1
            );
            let mut probe = m;
            assert!(
                worst.0 <= bound,
                "{name} (fused: {}): {} ulp at x = {:e} (bits {:#x}): got {:e}, want {:e}",
                m.fused,
                worst.0,
                worst.1,
                worst.1.to_bits(),
                f(&mut probe, worst.1),
                want(worst.1 as f64)
            );
        }
    }

    /// The bounds stated in the module docs.
    const ULP_BOUNDS: &[(&str, f64)] = &[
        ("exp", 1.0),
        ("log", 1.0),
        ("log2", 2.0),
        ("sigmoid", 3.0),
        ("tanh", 2.0),
        ("atan", 2.0),
        ("erf", 2.0),
        ("sin", 1.0),
        ("cos", 1.0),
        ("pow", 1.0),
    ];

    fn bound(name: &str) -> f64 {
        ULP_BOUNDS.iter().find(|(n, _)| *n == name).unwrap().1
    }

    #[test]
    fn exp_vs_libm() {
        check("exp", exp, libm::exp, bound("exp"));
    }
    #[test]
    fn log_vs_libm() {
        check("log", log, libm::log, bound("log"));
    }
    #[test]
    fn log2_vs_libm() {
        check("log2", log2, libm::log2, bound("log2"));
    }
    #[test]
    fn sigmoid_vs_libm() {
        let want = |x: f64| {
            if x >= 0.0 {
                1.0 / (1.0 + libm::exp(-x))
            } else {
                let e = libm::exp(x);
                e / (1.0 + e)
            }
        };
        check("sigmoid", sigmoid, want, bound("sigmoid"));
    }
    #[test]
    fn tanh_vs_libm() {
        check("tanh", tanh, libm::tanh, bound("tanh"));
    }
    #[test]
    fn atan_vs_libm() {
        check("atan", atan, libm::atan, bound("atan"));
    }
    #[test]
    fn erf_vs_libm() {
        check("erf", erf, libm::erf, bound("erf"));
    }
    #[test]
    fn sin_vs_libm() {
        check("sin", sin, libm::sin, bound("sin"));
    }
    #[test]
    fn cos_vs_libm() {
        check("cos", cos, libm::cos, bound("cos"));
    }

    #[test]
    fn pow_vs_libm() {
        let ys = [
            0.0f32,
            -0.0,
            1.0,
            -1.0,
            2.0,
            -2.0,
            3.0,
            -3.0,
            0.5,
            -0.5,
            1.5,
            2.5,
            10.0,
            -7.0,
            0.1,
            1e-3,
            100.0,
            -100.0,
            1e7,
            16777217.0,
            33.3,
            f32::INFINITY,
            f32::NEG_INFINITY,
            f32::NAN,
            1e-40,
        ];
        for mut m in MODELS {
            pow_on(&mut m, &ys);
        }
    }

    fn pow_on(m: &mut Scalar, ys: &[f32]) {
        let mut worst = 0.0f64;
        for &y in ys {
            for x in samples(1021) {
                let got = pow(m, x, y);
                let want = libm::pow(x as f64, y as f64);
                let e = ulp_err(got, want);
                assert!(
                    e <= bound("pow"),
                    "pow({x:e}, {y:e}): got {got:e}, want {want:e} ({e} ulp)"
                );
                worst = worst.max(e);
            }
        }
        // Random exponents too.
        let mut s = 0x1234_5678u32;
        for _ in 0..200_000 {
            s ^= s << 13;
            s ^= s >> 17;
            s ^= s << 5;
            let x = f32::from_bits(s & 0x7fff_ffff) % 64.0;
            s ^= s << 13;
            s ^= s >> 17;
            s ^= s << 5;
            let y = (s as f32 / u32::MAX as f32 - 0.5) * 60.0;
            let got = pow(m, x, y);
            let want = libm::pow(x as f64, y as f64);
            let e = ulp_err(got, want);
            assert!(
                e <= bound("pow"),
                "pow({x:e}, {y:e}): got {got:e}, want {want:e}"
            );
            worst = worst.max(e);
        }
        eprintln!("pow (fused: {}): worst {worst:.3} ulp", m.fused);
    }

    /// The sigmoid's scaled exponential: within 1.1 ulp of `e^x 2^32` wherever `x <= 0` (its
    /// result is never subnormal), `-inf` and NaN included.
    #[test]
    fn exp_nonpos_scaled_vs_libm() {
        // The fused model on fewer samples (this test is the longest).
        for (mut m, stride) in [(Scalar::PLAIN, 7), (Scalar::FUSED, 31)] {
            exp_nonpos_scaled_on(&mut m, stride);
        }
    }

    fn exp_nonpos_scaled_on(s: &mut Scalar, stride: u32) {
        let mut worst = 0.0f64;
        for x in samples(stride) {
            let x = -x.abs();
            let got = exp_nonpos_scaled(s, x);
            // Below -104 the argument is clamped (the sigmoid's result is 0 there anyway).
            let xc = if x < -104.0 { -104.0 } else { x };
            let want = libm::exp(xc as f64) * 2f64.powi(32);
            let e = ulp_err(got, want);
            assert!(
                e <= 1.1,
                "exp({x:e}) 2^32: got {got:e}, want {want:e} ({e} ulp)"
            );
            worst = worst.max(e);
        }
        eprintln!(
            "exp_nonpos_scaled (fused: {}): worst {worst:.3} ulp",
            s.fused
        );
        assert!(exp_nonpos_scaled(s, f32::NAN).is_nan());
        assert_eq!(neg_abs(s, 2.5), -2.5);
        assert_eq!(neg_abs(s, -0.0).to_bits(), (-0.0f32).to_bits());
        assert_eq!(neg_abs(s, 0.0).to_bits(), (-0.0f32).to_bits());
    }

    #[test]
    fn special_values_follow_c() {
        for mut m in MODELS {
            special_values_on(&mut m);
        }
    }

    fn special_values_on(s: &mut Scalar) {
        assert_eq!(exp(s, f32::NEG_INFINITY), 0.0);
        assert_eq!(exp(s, f32::INFINITY), f32::INFINITY);
        assert_eq!(exp(s, 0.0), 1.0);
        assert_eq!(log(s, 1.0), 0.0);
        assert_eq!(log(s, 0.0), f32::NEG_INFINITY);
        assert_eq!(log(s, -0.0), f32::NEG_INFINITY);
        assert!(log(s, -1.0).is_nan());
        assert_eq!(log2(s, 8.0), 3.0);
        assert_eq!(tanh(s, f32::INFINITY), 1.0);
        assert_eq!(tanh(s, -0.0).to_bits(), (-0.0f32).to_bits());
        assert_eq!(atan(s, f32::NEG_INFINITY), -std::f32::consts::FRAC_PI_2);
        assert_eq!(erf(s, -0.0).to_bits(), (-0.0f32).to_bits());
        assert_eq!(sin(s, -0.0).to_bits(), (-0.0f32).to_bits());
        assert!(sin(s, f32::INFINITY).is_nan());
        assert_eq!(cos(s, 0.0), 1.0);
        assert_eq!(sigmoid(s, f32::NEG_INFINITY), 0.0);
        assert_eq!(sigmoid(s, f32::INFINITY), 1.0);
        assert_eq!(pow(s, 2.0, 10.0), 1024.0);
        assert_eq!(pow(s, -2.0, 3.0), -8.0);
        assert_eq!(pow(s, f32::NAN, 0.0), 1.0);
        assert_eq!(pow(s, 1.0, f32::NAN), 1.0);
        assert_eq!(pow(s, -0.0, -1.0), f32::NEG_INFINITY);
        assert!(pow(s, -8.0, 1.0 / 3.0).is_nan());
        for f in [exp, log, log2, sigmoid, tanh, atan, erf, sin, cos] {
            assert!(f(s, f32::NAN).is_nan());
        }
    }

    #[test]
    fn fmod_model_is_libm() {
        assert_eq!(Scalar::default().fmod(5.5, 2.0), 1.5);
        assert_eq!(Scalar::default().fmod(-5.5, 2.0), -1.5);
    }
}
