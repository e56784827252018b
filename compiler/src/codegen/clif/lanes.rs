//! [`Lanes`]: the arithmetic that the inline math library and the op lowering are written in.
//!
//! Every function of [`super::math`] and [`super::lower::lower_op`] is written once, generically
//! over `Lanes`. Two implementations exist:
//!
//! - [`Scalar`] evaluates in plain Rust `f32`/`i32`/`f64` (one lane). It is the *model* of the
//!   generated code: tests measure its accuracy against libm, and the runtime checks that
//!   generated kernels are bit-identical to it.
//! - `ClifLanes` (in `emit.rs`) emits Cranelift instructions on `f32x4`/`i32x4` vectors (and
//!   pairs of `f64x2` for the `f64` type).
//!
//! Because both run the same sequence of IEEE-754 operations (no approximate reciprocals; a
//! fused multiply-add exactly where [`Lanes::mul_add`] is called on lanes that fuse), they agree
//! bit for bit on every input except for NaN payloads. Only the approximated functions of
//! [`super::math`] call `mul_add`: the exactly lowered ops never fuse, so they keep the
//! interpreter's rounding.

/// A float comparison; every comparison yields a mask (all ones where true, zero where false).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cmp {
    /// Ordered equal.
    Eq,
    /// Unordered or not equal (true when either operand is NaN), like Rust's `!=`.
    Ne,
    /// Ordered less than.
    Lt,
    /// Ordered less than or equal.
    Le,
    /// Ordered greater than.
    Gt,
    /// Ordered greater than or equal.
    Ge,
    /// Unordered: either operand is NaN.
    Uno,
    /// Unordered or greater than.
    Ugt,
}

/// A signed 32-bit integer comparison.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ICmp {
    /// Equal.
    Eq,
    /// Signed less than.
    Slt,
    /// Signed greater than.
    Sgt,
}

/// Lane-wise arithmetic over `f32` (`F`), `i32` (`I`, also used for masks) and `f64` (`D`).
///
/// Masks are `I` values whose lanes are all ones (true) or all zeros (false).
pub trait Lanes {
    /// A lane vector of `f32`.
    type F: Copy;
    /// A lane vector of `i32` (also masks).
    type I: Copy;
    /// A lane vector of `f64`.
    type D: Copy;

    /// The `f32` constant `c` in every lane.
    fn fc(&mut self, c: f32) -> Self::F;
    /// The `i32` constant `c` in every lane.
    fn ic(&mut self, c: i32) -> Self::I;
    /// The `f64` constant `c` in every lane.
    fn dc(&mut self, c: f64) -> Self::D;

    /// `a + b`.
    fn add(&mut self, a: Self::F, b: Self::F) -> Self::F;
    /// `a - b`.
    fn sub(&mut self, a: Self::F, b: Self::F) -> Self::F;
    /// `a * b`.
    fn mul(&mut self, a: Self::F, b: Self::F) -> Self::F;
    /// `a / b`.
    fn div(&mut self, a: Self::F, b: Self::F) -> Self::F;
    /// `a * b + c`: one fused multiply-add (rounded once) where the lanes fuse, else the rounded
    /// product plus `c`.
    fn mul_add(&mut self, a: Self::F, b: Self::F, c: Self::F) -> Self::F;
    /// `-a`.
    fn neg(&mut self, a: Self::F) -> Self::F;
    /// `|a|`.
    fn abs(&mut self, a: Self::F) -> Self::F;
    /// Square root.
    fn sqrt(&mut self, a: Self::F) -> Self::F;
    /// Round down.
    fn floor(&mut self, a: Self::F) -> Self::F;
    /// Round up.
    fn ceil(&mut self, a: Self::F) -> Self::F;
    /// Round half to even.
    fn nearest(&mut self, a: Self::F) -> Self::F;
    /// Round toward zero.
    fn trunc(&mut self, a: Self::F) -> Self::F;
    /// `a cc b` as a mask.
    fn fcmp(&mut self, cc: Cmp, a: Self::F, b: Self::F) -> Self::I;
    /// `m ? a : b`, lane-wise.
    fn fsel(&mut self, m: Self::I, a: Self::F, b: Self::F) -> Self::F;
    /// `m ? 1.0 : 0.0`, lane-wise.
    fn mask01(&mut self, m: Self::I) -> Self::F {
        let (one, zero) = (self.fc(1.0), self.fc(0.0));
        self.fsel(m, one, zero)
    }

    /// Wrapping `a + b`.
    fn iadd(&mut self, a: Self::I, b: Self::I) -> Self::I;
    /// Wrapping `a - b`.
    fn isub(&mut self, a: Self::I, b: Self::I) -> Self::I;
    /// Bitwise and.
    fn iand(&mut self, a: Self::I, b: Self::I) -> Self::I;
    /// Bitwise or.
    fn ior(&mut self, a: Self::I, b: Self::I) -> Self::I;
    /// Bitwise exclusive or.
    fn ixor(&mut self, a: Self::I, b: Self::I) -> Self::I;
    /// Shift left by `k`.
    fn ishl(&mut self, a: Self::I, k: u8) -> Self::I;
    /// Arithmetic shift right.
    fn sshr(&mut self, a: Self::I, k: u8) -> Self::I;
    /// Logical shift right.
    fn ushr(&mut self, a: Self::I, k: u8) -> Self::I;
    /// `a cc b` as a mask.
    fn icmp(&mut self, cc: ICmp, a: Self::I, b: Self::I) -> Self::I;
    /// `m ? a : b`, lane-wise.
    fn isel(&mut self, m: Self::I, a: Self::I, b: Self::I) -> Self::I;
    /// The bits of `a`.
    fn bits(&mut self, a: Self::F) -> Self::I;
    /// The float with bits `a`.
    fn float_of_bits(&mut self, a: Self::I) -> Self::F;
    /// Truncating, saturating conversion (NaN gives 0).
    fn f2i(&mut self, a: Self::F) -> Self::I;
    /// Conversion rounding to nearest.
    fn i2f(&mut self, a: Self::I) -> Self::F;

    /// `a + b` in `f64`.
    fn dadd(&mut self, a: Self::D, b: Self::D) -> Self::D;
    /// `a - b` in `f64`.
    fn dsub(&mut self, a: Self::D, b: Self::D) -> Self::D;
    /// `a * b` in `f64`.
    fn dmul(&mut self, a: Self::D, b: Self::D) -> Self::D;
    /// `a / b` in `f64`.
    fn ddiv(&mut self, a: Self::D, b: Self::D) -> Self::D;
    /// Round down in `f64`.
    fn dfloor(&mut self, a: Self::D) -> Self::D;
    /// Round half to even in `f64`.
    fn dnearest(&mut self, a: Self::D) -> Self::D;
    /// NaN-propagating minimum (used only for clamping; the sign of zero is unspecified).
    fn dmin(&mut self, a: Self::D, b: Self::D) -> Self::D;
    /// NaN-propagating maximum (used only for clamping; the sign of zero is unspecified).
    fn dmax(&mut self, a: Self::D, b: Self::D) -> Self::D;
    /// `m ? a : b`, lane-wise, with an `I` mask.
    fn dsel(&mut self, m: Self::I, a: Self::D, b: Self::D) -> Self::D;
    /// Exact widening.
    fn promote(&mut self, a: Self::F) -> Self::D;
    /// Narrowing, rounding to nearest.
    fn demote(&mut self, a: Self::D) -> Self::F;
    /// The four 24-bit chunks of `2/π` for a float with biased exponent `e` (0..=255) lane-wise:
    /// row `e` of [`super::two_over_pi::TWO_OVER_PI_CHUNKS`].
    fn two_over_pi_chunks(&mut self, e: Self::I) -> [Self::D; 4];
    /// C's `fmodf`, exact.
    fn fmod(&mut self, a: Self::F, b: Self::F) -> Self::F;
}

/// One lane in plain Rust: the bit-exact model of the generated code.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Scalar {
    /// Whether [`Lanes::mul_add`] is fused, as in code generated with
    /// [`super::ClifOptions::fused`].
    pub fused: bool,
}

impl Scalar {
    /// The model of code generated without fused multiply-adds.
    pub const PLAIN: Scalar = Scalar { fused: false };
    /// The model of code generated with fused multiply-adds.
    pub const FUSED: Scalar = Scalar { fused: true };
}

fn mask(b: bool) -> i32 {
    if b { -1 } else { 0 }
}

impl Lanes for Scalar {
    type F = f32;
    type I = i32;
    type D = f64;

    fn fc(&mut self, c: f32) -> f32 {
        c
    }
    fn ic(&mut self, c: i32) -> i32 {
        c
    }
    fn dc(&mut self, c: f64) -> f64 {
        c
    }
    fn add(&mut self, a: f32, b: f32) -> f32 {
        a + b
    }
    fn sub(&mut self, a: f32, b: f32) -> f32 {
        a - b
    }
    fn mul(&mut self, a: f32, b: f32) -> f32 {
        a * b
    }
    fn div(&mut self, a: f32, b: f32) -> f32 {
        a / b
    }
    fn mul_add(&mut self, a: f32, b: f32, c: f32) -> f32 {
        if self.fused {
            a.mul_add(b, c)
        } else {
            a * b + c
        }
    }
    fn neg(&mut self, a: f32) -> f32 {
        -a
    }
    fn abs(&mut self, a: f32) -> f32 {
        a.abs()
    }
    fn sqrt(&mut self, a: f32) -> f32 {
        a.sqrt()
    }
    fn floor(&mut self, a: f32) -> f32 {
        a.floor()
    }
    fn ceil(&mut self, a: f32) -> f32 {
        a.ceil()
    }
    fn nearest(&mut self, a: f32) -> f32 {
        a.round_ties_even()
    }
    fn trunc(&mut self, a: f32) -> f32 {
        a.trunc()
    }
    fn fcmp(&mut self, cc: Cmp, a: f32, b: f32) -> i32 {
        mask(match cc {
            Cmp::Eq => a == b,
            Cmp::Ne => a != b,
            Cmp::Lt => a < b,
            Cmp::Le => a <= b,
            Cmp::Gt => a > b,
            Cmp::Ge => a >= b,
            Cmp::Uno => a.is_nan() || b.is_nan(),
            Cmp::Ugt => a.is_nan() || b.is_nan() || a > b,
        })
    }
    fn fsel(&mut self, m: i32, a: f32, b: f32) -> f32 {
        if m != 0 { a } else { b }
    }
    fn iadd(&mut self, a: i32, b: i32) -> i32 {
        a.wrapping_add(b)
    }
    fn isub(&mut self, a: i32, b: i32) -> i32 {
        a.wrapping_sub(b)
    }
    fn iand(&mut self, a: i32, b: i32) -> i32 {
        a & b
    }
    fn ior(&mut self, a: i32, b: i32) -> i32 {
        a | b
    }
    fn ixor(&mut self, a: i32, b: i32) -> i32 {
        a ^ b
    }
    fn ishl(&mut self, a: i32, k: u8) -> i32 {
        a.wrapping_shl(k as u32)
    }
    fn sshr(&mut self, a: i32, k: u8) -> i32 {
        a >> k
    }
    fn ushr(&mut self, a: i32, k: u8) -> i32 {
        ((a as u32) >> k) as i32
    }
    fn icmp(&mut self, cc: ICmp, a: i32, b: i32) -> i32 {
        mask(match cc {
            ICmp::Eq => a == b,
            ICmp::Slt => a < b,
            ICmp::Sgt => a > b,
        })
    }
    fn isel(&mut self, m: i32, a: i32, b: i32) -> i32 {
        if m != 0 { a } else { b }
    }
    fn bits(&mut self, a: f32) -> i32 {
        a.to_bits() as i32
    }
    fn float_of_bits(&mut self, a: i32) -> f32 {
        f32::from_bits(a as u32)
    }
    fn f2i(&mut self, a: f32) -> i32 {
        a as i32
    }
    fn i2f(&mut self, a: i32) -> f32 {
        a as f32
    }
    fn dadd(&mut self, a: f64, b: f64) -> f64 {
        a + b
    }
    fn dsub(&mut self, a: f64, b: f64) -> f64 {
        a - b
    }
    fn dmul(&mut self, a: f64, b: f64) -> f64 {
        a * b
    }
    fn ddiv(&mut self, a: f64, b: f64) -> f64 {
        a / b
    }
    fn dfloor(&mut self, a: f64) -> f64 {
        a.floor()
    }
    fn dnearest(&mut self, a: f64) -> f64 {
        a.round_ties_even()
    }
    fn dmin(&mut self, a: f64, b: f64) -> f64 {
        if a.is_nan() || b.is_nan() {
            f64::NAN
        } else {
            a.min(b)
        }
    }
    fn dmax(&mut self, a: f64, b: f64) -> f64 {
        if a.is_nan() || b.is_nan() {
            f64::NAN
        } else {
            a.max(b)
        }
    }
    fn dsel(&mut self, m: i32, a: f64, b: f64) -> f64 {
        if m != 0 { a } else { b }
    }
    fn promote(&mut self, a: f32) -> f64 {
        a as f64
    }
    fn demote(&mut self, a: f64) -> f32 {
        a as f32
    }
    fn two_over_pi_chunks(&mut self, e: i32) -> [f64; 4] {
        super::two_over_pi::TWO_OVER_PI_CHUNKS[(e & 0xff) as usize]
    }
    fn fmod(&mut self, a: f32, b: f32) -> f32 {
        libm::fmodf(a, b)
    }
}
