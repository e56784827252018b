//! [`ClifLanes`]: [`Lanes`] as Cranelift instructions on `f32x4` / `i32x4` vectors, with the
//! `f64` type as a pair of `f64x2` (lanes 0–1, lanes 2–3).

use cranelift_codegen::entity::EntityRef;
use cranelift_codegen::ir::condcodes::{FloatCC, IntCC};
use cranelift_codegen::ir::immediates::Offset32;
use cranelift_codegen::ir::types::{F32, F32X4, F64, F64X2, I8X16, I32X4, I64, I64X2};
use cranelift_codegen::ir::{
    BlockArg, ConstantData, Endianness, InstBuilder, MemFlagsData, Type, Value,
};
use cranelift_frontend::FunctionBuilder;

use super::lanes::{Cmp, ICmp, Lanes};

/// Emits [`Lanes`] operations into a function being built.
pub(crate) struct ClifLanes<'a, 'f> {
    pub b: &'a mut FunctionBuilder<'f>,
    /// Address of [`super::math::TWO_OVER_PI_CHUNKS`] (an `i64`).
    pub tables: Value,
    /// Whether [`Lanes::mul_add`] emits one `fma` ([`super::ClifOptions::fused`]).
    pub fused: bool,
}

fn vflags() -> MemFlagsData {
    MemFlagsData::new().with_endianness(Endianness::Little)
}

fn float_cc(cc: Cmp) -> FloatCC {
    match cc {
        Cmp::Eq => FloatCC::Equal,
        Cmp::Ne => FloatCC::NotEqual,
        Cmp::Lt => FloatCC::LessThan,
        Cmp::Le => FloatCC::LessThanOrEqual,
        Cmp::Gt => FloatCC::GreaterThan,
        Cmp::Ge => FloatCC::GreaterThanOrEqual,
        Cmp::Uno => FloatCC::Unordered,
        Cmp::Ugt => FloatCC::UnorderedOrGreaterThan,
    }
}

impl ClifLanes<'_, '_> {
    /// `m ? 1.0 : 0.0` given the constant `one`.
    fn mask01_with(&mut self, m: Value, one: Value) -> Value {
        let m = self.cast(F32X4, m);
        self.b.ins().band(m, one)
    }

    /// A vector constant (from the constant pool; Cranelift shares equal ones).
    fn vconst(&mut self, ty: Type, bytes: &[u8]) -> Value {
        let c = self.b.func.dfg.constants.insert(ConstantData::from(bytes));
        self.b.ins().vconst(ty, c)
    }

    fn cast(&mut self, ty: Type, v: Value) -> Value {
        if self.b.func.dfg.value_type(v) == ty {
            v
        } else {
            self.b.ins().bitcast(ty, vflags(), v)
        }
    }

    /// A byte shuffle of two `f32x4`-sized vectors of type `ty`.
    fn shuffle(&mut self, ty: Type, a: Value, b: Value, mask: [u8; 16]) -> Value {
        let a = self.cast(I8X16, a);
        let b2 = self.cast(I8X16, b);
        let imm = self
            .b
            .func
            .dfg
            .immediates
            .push(ConstantData::from(mask.as_slice()));
        let r = self.b.ins().shuffle(a, b2, imm);
        self.cast(ty, r)
    }

    fn d2<T>(&mut self, a: (Value, Value), f: T) -> (Value, Value)
    where
        T: Fn(&mut FunctionBuilder<'_>, Value) -> Value,
    {
        (f(self.b, a.0), f(self.b, a.1))
    }

    fn d2b<T>(&mut self, a: (Value, Value), c: (Value, Value), f: T) -> (Value, Value)
    where
        T: Fn(&mut FunctionBuilder<'_>, Value, Value) -> Value,
    {
        (f(self.b, a.0, c.0), f(self.b, a.1, c.1))
    }
}

const HIGH_TO_LOW: [u8; 16] = [8, 9, 10, 11, 12, 13, 14, 15, 0, 1, 2, 3, 4, 5, 6, 7];
const LOW_HALVES: [u8; 16] = [0, 1, 2, 3, 4, 5, 6, 7, 16, 17, 18, 19, 20, 21, 22, 23];

impl Lanes for ClifLanes<'_, '_> {
    type F = Value;
    type I = Value;
    type D = (Value, Value);

    fn fc(&mut self, c: f32) -> Value {
        self.vconst(F32X4, &c.to_le_bytes().repeat(4))
    }
    fn ic(&mut self, c: i32) -> Value {
        self.vconst(I32X4, &c.to_le_bytes().repeat(4))
    }
    fn dc(&mut self, c: f64) -> (Value, Value) {
        let v = self.vconst(F64X2, &c.to_le_bytes().repeat(2));
        (v, v)
    }
    fn add(&mut self, a: Value, b: Value) -> Value {
        self.b.ins().fadd(a, b)
    }
    fn sub(&mut self, a: Value, b: Value) -> Value {
        self.b.ins().fsub(a, b)
    }
    fn mul(&mut self, a: Value, b: Value) -> Value {
        self.b.ins().fmul(a, b)
    }
    fn div(&mut self, a: Value, b: Value) -> Value {
        self.b.ins().fdiv(a, b)
    }
    fn mul_add(&mut self, a: Value, b: Value, c: Value) -> Value {
        if self.fused {
            self.b.ins().fma(a, b, c)
        } else {
            let m = self.b.ins().fmul(a, b);
            self.b.ins().fadd(m, c)
        }
    }
    fn neg(&mut self, a: Value) -> Value {
        self.b.ins().fneg(a)
    }
    fn abs(&mut self, a: Value) -> Value {
        self.b.ins().fabs(a)
    }
    fn sqrt(&mut self, a: Value) -> Value {
        self.b.ins().sqrt(a)
    }
    fn floor(&mut self, a: Value) -> Value {
        self.b.ins().floor(a)
    }
    fn ceil(&mut self, a: Value) -> Value {
        self.b.ins().ceil(a)
    }
    fn nearest(&mut self, a: Value) -> Value {
        self.b.ins().nearest(a)
    }
    fn trunc(&mut self, a: Value) -> Value {
        self.b.ins().trunc(a)
    }
    fn fcmp(&mut self, cc: Cmp, a: Value, b: Value) -> Value {
        self.b.ins().fcmp(float_cc(cc), a, b)
    }
    fn fsel(&mut self, m: Value, a: Value, b: Value) -> Value {
        let m = self.cast(F32X4, m);
        self.b.ins().bitselect(m, a, b)
    }
    fn mask01(&mut self, m: Value) -> Value {
        let one = self.fc(1.0);
        self.mask01_with(m, one)
    }
    fn iadd(&mut self, a: Value, b: Value) -> Value {
        self.b.ins().iadd(a, b)
    }
    fn isub(&mut self, a: Value, b: Value) -> Value {
        self.b.ins().isub(a, b)
    }
    fn iand(&mut self, a: Value, b: Value) -> Value {
        self.b.ins().band(a, b)
    }
    fn ior(&mut self, a: Value, b: Value) -> Value {
        self.b.ins().bor(a, b)
    }
    fn ixor(&mut self, a: Value, b: Value) -> Value {
        self.b.ins().bxor(a, b)
    }
    fn ishl(&mut self, a: Value, k: u8) -> Value {
        self.b.ins().ishl_imm_u(a, k as i64)
    }
    fn sshr(&mut self, a: Value, k: u8) -> Value {
        self.b.ins().sshr_imm_u(a, k as i64)
    }
    fn ushr(&mut self, a: Value, k: u8) -> Value {
        self.b.ins().ushr_imm_u(a, k as i64)
    }
    fn icmp(&mut self, cc: ICmp, a: Value, b: Value) -> Value {
        let cc = match cc {
            ICmp::Eq => IntCC::Equal,
            ICmp::Slt => IntCC::SignedLessThan,
            ICmp::Sgt => IntCC::SignedGreaterThan,
        };
        self.b.ins().icmp(cc, a, b)
    }
    fn isel(&mut self, m: Value, a: Value, b: Value) -> Value {
        self.b.ins().bitselect(m, a, b)
    }
    fn bits(&mut self, a: Value) -> Value {
        self.cast(I32X4, a)
    }
    fn float_of_bits(&mut self, a: Value) -> Value {
        self.cast(F32X4, a)
    }
    fn f2i(&mut self, a: Value) -> Value {
        self.b.ins().fcvt_to_sint_sat(I32X4, a)
    }
    fn i2f(&mut self, a: Value) -> Value {
        self.b.ins().fcvt_from_sint(F32X4, a)
    }
    fn dadd(&mut self, a: (Value, Value), b: (Value, Value)) -> (Value, Value) {
        self.d2b(a, b, |b, x, y| b.ins().fadd(x, y))
    }
    fn dsub(&mut self, a: (Value, Value), b: (Value, Value)) -> (Value, Value) {
        self.d2b(a, b, |b, x, y| b.ins().fsub(x, y))
    }
    fn dmul(&mut self, a: (Value, Value), b: (Value, Value)) -> (Value, Value) {
        self.d2b(a, b, |b, x, y| b.ins().fmul(x, y))
    }
    fn ddiv(&mut self, a: (Value, Value), b: (Value, Value)) -> (Value, Value) {
        self.d2b(a, b, |b, x, y| b.ins().fdiv(x, y))
    }
    fn dfloor(&mut self, a: (Value, Value)) -> (Value, Value) {
        self.d2(a, |b, x| b.ins().floor(x))
    }
    fn dnearest(&mut self, a: (Value, Value)) -> (Value, Value) {
        self.d2(a, |b, x| b.ins().nearest(x))
    }
    fn dmin(&mut self, a: (Value, Value), b: (Value, Value)) -> (Value, Value) {
        self.d2b(a, b, |b, x, y| b.ins().fmin(x, y))
    }
    fn dmax(&mut self, a: (Value, Value), b: (Value, Value)) -> (Value, Value) {
        self.d2b(a, b, |b, x, y| b.ins().fmax(x, y))
    }
    fn dsel(&mut self, m: Value, a: (Value, Value), c: (Value, Value)) -> (Value, Value) {
        let lo = self.b.ins().swiden_low(m);
        let hi = self.b.ins().swiden_high(m);
        debug_assert_eq!(self.b.func.dfg.value_type(lo), I64X2);
        let lo = self.cast(F64X2, lo);
        let hi = self.cast(F64X2, hi);
        (
            self.b.ins().bitselect(lo, a.0, c.0),
            self.b.ins().bitselect(hi, a.1, c.1),
        )
    }
    fn promote(&mut self, a: Value) -> (Value, Value) {
        let lo = self.b.ins().fvpromote_low(a);
        let h = self.shuffle(F32X4, a, a, HIGH_TO_LOW);
        let hi = self.b.ins().fvpromote_low(h);
        (lo, hi)
    }
    fn demote(&mut self, a: (Value, Value)) -> Value {
        let lo = self.b.ins().fvdemote(a.0);
        let hi = self.b.ins().fvdemote(a.1);
        self.shuffle(F32X4, lo, hi, LOW_HALVES)
    }
    fn two_over_pi_chunks(&mut self, e: Value) -> [(Value, Value); 4] {
        let flags = MemFlagsData::trusted().with_readonly();
        let ff = self.ic(0xff);
        let e = self.b.ins().band(e, ff);
        let mut rows = [[Value::new(0); 4]; 4]; // [lane][chunk]
        for (lane, row) in rows.iter_mut().enumerate() {
            let idx = self.b.ins().extractlane(e, lane as u8);
            let idx = self.b.ins().uextend(I64, idx);
            let off = self.b.ins().imul_imm_s(idx, 32);
            let addr = self.b.ins().iadd(self.tables, off);
            for (j, slot) in row.iter_mut().enumerate() {
                *slot = self
                    .b
                    .ins()
                    .load(F64, flags, addr, Offset32::new(8 * j as i32));
            }
        }
        let mut out = [(Value::new(0), Value::new(0)); 4];
        for (j, o) in out.iter_mut().enumerate() {
            let mut pair = [Value::new(0); 2];
            for (h, p) in pair.iter_mut().enumerate() {
                let v = self.b.ins().scalar_to_vector(F64X2, rows[2 * h][j]);
                *p = self.b.ins().insertlane(v, rows[2 * h + 1][j], 1);
            }
            *o = (pair[0], pair[1]);
        }
        out
    }

    /// Exact `fmodf` by integer long division over the aligned mantissas: one loop iteration per
    /// bit of exponent difference (at most 276), run until no lane has any left.
    fn fmod(&mut self, x: Value, y: Value) -> Value {
        let l = self;
        let hx = l.bits(x);
        let hy = l.bits(y);
        let sign = l.ic(i32::MIN);
        let sx = l.iand(hx, sign);
        let absm = l.ic(i32::MAX);
        let ax = l.iand(hx, absm);
        let ay = l.iand(hy, absm);
        let zero = l.ic(0);
        let inf = l.ic(0x7f80_0000);
        let max_fin = l.ic(0x7f7f_ffff);
        let y_zero = l.icmp(ICmp::Eq, ay, zero);
        let x_nonfin = l.icmp(ICmp::Sgt, ax, max_fin);
        let y_nan = l.icmp(ICmp::Sgt, ay, inf);
        let nan_res = l.ior(y_zero, x_nonfin);
        let nan_res = l.ior(nan_res, y_nan);
        let ret_x = l.icmp(ICmp::Slt, ax, ay);
        // mantissa and exponent with subnormals normalised through a float multiply by 2^23.
        let decompose = |l: &mut Self, a: Value| {
            let min_norm = l.ic(0x80_0000);
            let sub = l.icmp(ICmp::Slt, a, min_norm);
            let af = l.float_of_bits(a);
            let s = l.fc(8_388_608.0);
            let sf = l.mul(af, s);
            let sb = l.bits(sf);
            let eb = l.ushr(sb, 23);
            let m23 = l.ic(23);
            let es = l.isub(eb, m23);
            let en = l.ushr(a, 23);
            let e = l.isel(sub, es, en);
            let bits = l.isel(sub, sb, a);
            let mant = l.ic(0x7f_ffff);
            let hidden = l.ic(0x80_0000);
            let m = l.iand(bits, mant);
            let m = l.ior(m, hidden);
            (m, e)
        };
        let (mx, ex) = decompose(l, ax);
        let (my, ey) = decompose(l, ay);
        let done = l.ior(nan_res, ret_x);
        let ex = l.isel(done, ey, ex);

        let header = l.b.create_block();
        let body = l.b.create_block();
        let exit = l.b.create_block();
        let pm = l.b.append_block_param(header, I32X4);
        let pe = l.b.append_block_param(header, I32X4);
        let xm = l.b.append_block_param(exit, I32X4);
        l.b.ins()
            .jump(header, &[BlockArg::Value(mx), BlockArg::Value(ex)]);

        l.b.switch_to_block(header);
        let more = l.icmp(ICmp::Sgt, pe, ey);
        let any = l.b.ins().vany_true(more);
        l.b.ins().brif(any, body, &[], exit, &[BlockArg::Value(pm)]);

        l.b.switch_to_block(body);
        let i = l.isub(pm, my);
        let m1 = l.ic(-1);
        let ge = l.icmp(ICmp::Sgt, i, m1);
        let m2 = l.isel(ge, i, pm);
        let m2 = l.ishl(m2, 1);
        let nm = l.isel(more, m2, pm);
        let ne = l.iadd(pe, more);
        l.b.ins()
            .jump(header, &[BlockArg::Value(nm), BlockArg::Value(ne)]);

        l.b.switch_to_block(exit);
        let i = l.isub(xm, my);
        let m1 = l.ic(-1);
        let ge = l.icmp(ICmp::Sgt, i, m1);
        let m = l.isel(ge, i, xm);
        // |result| = m * 2^(ey - 150), scaled in two exact steps.
        let fm = l.i2f(m);
        let c150 = l.ic(150);
        let e = l.isub(ey, c150);
        let e1 = l.sshr(e, 1);
        let e2 = l.isub(e, e1);
        let bias = l.ic(127);
        let p1 = l.iadd(e1, bias);
        let p1 = l.ishl(p1, 23);
        let p1 = l.float_of_bits(p1);
        let p2 = l.iadd(e2, bias);
        let p2 = l.ishl(p2, 23);
        let p2 = l.float_of_bits(p2);
        let r = l.mul(fm, p1);
        let r = l.mul(r, p2);
        let rb = l.bits(r);
        let rb = l.ior(rb, sx);
        let r = l.float_of_bits(rb);
        let r = l.fsel(ret_x, x, r);
        let nan = l.fc(f32::NAN);
        l.fsel(nan_res, nan, r)
    }
}

/// Loads one `f32` and splats it to all lanes (for the scalar tail and per-time params).
pub(crate) fn load_splat(b: &mut FunctionBuilder<'_>, addr: Value, flags: MemFlagsData) -> Value {
    let s = b.ins().load(F32, flags, addr, 0);
    b.ins().splat(F32X4, s)
}

/// [`Lanes`] over `G` independent groups of lanes at once: every operation emits its `G`
/// instructions next to each other, so the independent copies of an unrolled loop body
/// interleave instruction by instruction (their dependency chains overlap in the CPU even when
/// each copy alone is longer than the out-of-order window).
pub(crate) struct Wide<'a, 'f, const G: usize> {
    pub l: ClifLanes<'a, 'f>,
}

macro_rules! wide_map {
    ($self:ident, |$i:ident| $e:expr) => {{
        let mut out = [Value::new(0); G];
        for ($i, o) in out.iter_mut().enumerate() {
            *o = $e;
        }
        out
    }};
}

macro_rules! wide_d {
    ($self:ident, |$i:ident| $e:expr) => {{
        let mut out = [(Value::new(0), Value::new(0)); G];
        for ($i, o) in out.iter_mut().enumerate() {
            *o = $e;
        }
        out
    }};
}

macro_rules! wide_unary {
    ($($name:ident),*) => {$(
        fn $name(&mut self, a: [Value; G]) -> [Value; G] {
            wide_map!(self, |i| self.l.$name(a[i]))
        }
    )*};
}

macro_rules! wide_binary {
    ($($name:ident),*) => {$(
        fn $name(&mut self, a: [Value; G], b: [Value; G]) -> [Value; G] {
            wide_map!(self, |i| self.l.$name(a[i], b[i]))
        }
    )*};
}

macro_rules! wide_shift {
    ($($name:ident),*) => {$(
        fn $name(&mut self, a: [Value; G], k: u8) -> [Value; G] {
            wide_map!(self, |i| self.l.$name(a[i], k))
        }
    )*};
}

macro_rules! wide_dunary {
    ($($name:ident),*) => {$(
        fn $name(&mut self, a: Self::D) -> Self::D {
            wide_d!(self, |i| self.l.$name(a[i]))
        }
    )*};
}

macro_rules! wide_dbinary {
    ($($name:ident),*) => {$(
        fn $name(&mut self, a: Self::D, b: Self::D) -> Self::D {
            wide_d!(self, |i| self.l.$name(a[i], b[i]))
        }
    )*};
}

impl<const G: usize> Lanes for Wide<'_, '_, G> {
    type F = [Value; G];
    type I = [Value; G];
    type D = [(Value, Value); G];

    // One constant serves every copy.
    fn fc(&mut self, c: f32) -> [Value; G] {
        [self.l.fc(c); G]
    }
    fn ic(&mut self, c: i32) -> [Value; G] {
        [self.l.ic(c); G]
    }
    fn dc(&mut self, c: f64) -> Self::D {
        [self.l.dc(c); G]
    }
    wide_unary!(
        neg,
        abs,
        sqrt,
        floor,
        ceil,
        nearest,
        trunc,
        bits,
        float_of_bits,
        f2i,
        i2f
    );
    wide_binary!(add, sub, mul, div, iadd, isub, iand, ior, ixor, fmod);
    wide_shift!(ishl, sshr, ushr);
    wide_dunary!(dfloor, dnearest);
    wide_dbinary!(dadd, dsub, dmul, ddiv, dmin, dmax);
    fn mask01(&mut self, m: [Value; G]) -> [Value; G] {
        let one = self.l.fc(1.0);
        wide_map!(self, |i| self.l.mask01_with(m[i], one))
    }
    fn fcmp(&mut self, cc: Cmp, a: [Value; G], b: [Value; G]) -> [Value; G] {
        wide_map!(self, |i| self.l.fcmp(cc, a[i], b[i]))
    }
    fn icmp(&mut self, cc: ICmp, a: [Value; G], b: [Value; G]) -> [Value; G] {
        wide_map!(self, |i| self.l.icmp(cc, a[i], b[i]))
    }
    fn fsel(&mut self, m: [Value; G], a: [Value; G], b: [Value; G]) -> [Value; G] {
        wide_map!(self, |i| self.l.fsel(m[i], a[i], b[i]))
    }
    fn mul_add(&mut self, a: [Value; G], b: [Value; G], c: [Value; G]) -> [Value; G] {
        if self.l.fused {
            wide_map!(self, |i| self.l.mul_add(a[i], b[i], c[i]))
        } else {
            // Every copy's product, then every copy's sum (as `mul` then `add`).
            let m = self.mul(a, b);
            self.add(m, c)
        }
    }
    fn isel(&mut self, m: [Value; G], a: [Value; G], b: [Value; G]) -> [Value; G] {
        wide_map!(self, |i| self.l.isel(m[i], a[i], b[i]))
    }
    fn dsel(&mut self, m: [Value; G], a: Self::D, b: Self::D) -> Self::D {
        wide_d!(self, |i| self.l.dsel(m[i], a[i], b[i]))
    }
    fn promote(&mut self, a: [Value; G]) -> Self::D {
        wide_d!(self, |i| self.l.promote(a[i]))
    }
    fn demote(&mut self, a: Self::D) -> [Value; G] {
        wide_map!(self, |i| self.l.demote(a[i]))
    }
    fn two_over_pi_chunks(&mut self, e: [Value; G]) -> [Self::D; 4] {
        let mut out = [[(Value::new(0), Value::new(0)); G]; 4];
        for (i, ei) in e.iter().enumerate() {
            let c = self.l.two_over_pi_chunks(*ei);
            for (j, cj) in c.into_iter().enumerate() {
                out[j][i] = cj;
            }
        }
        out
    }
}
