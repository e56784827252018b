//! The fixed helper functions at the top of every generated CUDA source: storage conversions
//! (hardware `cvt` instructions through inline PTX on the device; the same conversions written
//! out bit by bit, with the same rounding, for the host shim, so the source needs no
//! `cuda_fp16.h`) and NaN-aware float helpers.
//!
//! Everything here is plain C++ that uses only CUDA's built-in bit-cast intrinsics
//! (`__float_as_uint`, `__uint_as_float`), which the host shim also defines, so the same text
//! compiles with NVRTC and with a host C++ compiler.

use super::StorageDtype;

/// NaN-aware helpers used by the op lowering (`min`, `max`, `sign`, `relu` follow the
/// interpreter's semantics exactly: NaN in, NaN out; `fminf`/`fmaxf` would drop the NaN).
pub(super) const FLOAT_HELPERS: &str = r#"// ---- flexsn helpers: NaN-propagating min/max, sign, relu (torch semantics) ----
static __device__ __forceinline__ float flexsn_nan(void) { return __uint_as_float(0x7fc00000u); }
static __device__ __forceinline__ float flexsn_min(float a, float b) {
    return (a != a || b != b) ? flexsn_nan() : (b < a ? b : a);
}
static __device__ __forceinline__ float flexsn_max(float a, float b) {
    return (a != a || b != b) ? flexsn_nan() : (b > a ? b : a);
}
static __device__ __forceinline__ float flexsn_sign(float a) {
    return (a != a) ? a : (a > 0.0f ? 1.0f : (a < 0.0f ? -1.0f : 0.0f));
}
static __device__ __forceinline__ float flexsn_relu(float a) {
    return (a > 0.0f || a != a) ? a : 0.0f;
}
"#;

/// Fast-math wrappers that keep every result class (NaN, infinity, number) of the precise
/// functions: `__powf` is `exp2(y * log2(x))`, NaN for a negative base even with an integer
/// exponent, so it is used only where that formula is right (finite positive base, finite
/// exponent); `__fdividef` returns 0 for divisors of magnitude in (2^126, 2^128), so larger
/// divisors take the full-range division.
const FAST_HELPERS: &str = r#"// ---- flexsn fast math: approximations only where they keep the result class ----
static __device__ __forceinline__ float flexsn_fast_powf(float x, float y) {
    const float inf = __uint_as_float(0x7f800000u);
    return (x > 0.0f && x < inf && y > -inf && y < inf) ? __powf(x, y) : powf(x, y);
}
static __device__ __forceinline__ float flexsn_fast_div(float x, float y) {
    return (fabsf(y) <= __uint_as_float(0x7e800000u) /* 2^126 */) ? __fdividef(x, y) : x / y;
}
"#;

/// The math-mode helpers (the fast-math wrappers; none in precise mode).
pub(super) fn math_helpers(math: super::MathMode) -> &'static str {
    match math {
        super::MathMode::Precise => "",
        super::MathMode::Fast => FAST_HELPERS,
    }
}

/// IEEE binary16 <-> binary32, round to nearest even, NaN kept quiet.
const F16_HELPERS: &str = r#"// ---- flexsn storage: IEEE half (binary16) <-> float, round to nearest even ----
static __device__ __forceinline__ float flexsn_load_f16(unsigned short h) {
#ifdef __CUDA_ARCH__
    /* the device converts in hardware (exact) */
    float f;
    asm("cvt.f32.f16 %0, %1;" : "=f"(f) : "h"(h));
    return f;
#else
    const unsigned int sign = ((unsigned int)h & 0x8000u) << 16;
    const unsigned int ex = ((unsigned int)h >> 10) & 0x1fu;
    const unsigned int man = (unsigned int)h & 0x3ffu;
    if (ex == 0x1fu) return __uint_as_float(sign | 0x7f800000u | (man << 13));
    if (ex == 0u) {
        /* zero or subnormal: man * 2^-24 is exact in float */
        const float mag = (float)man * 5.9604644775390625e-8f;
        return sign ? -mag : mag;
    }
    return __uint_as_float(sign | ((ex + 112u) << 23) | (man << 13));
#endif
}
static __device__ __forceinline__ unsigned short flexsn_store_f16(float f) {
#ifdef __CUDA_ARCH__
    /* the device rounds to nearest even in hardware, like the C version below */
    unsigned short h;
    asm("cvt.rn.f16.f32 %0, %1;" : "=h"(h) : "f"(f));
    return h;
#else
    const unsigned int u = __float_as_uint(f);
    const unsigned int sign = (u >> 16) & 0x8000u;
    const unsigned int a = u & 0x7fffffffu;
    if (a > 0x7f800000u) return (unsigned short)(sign | 0x7e00u | ((a >> 13) & 0x3ffu));
    if (a >= 0x477ff000u) return (unsigned short)(sign | 0x7c00u); /* >= 65520 rounds to inf */
    if (a >= 0x38800000u) {
        /* normal half */
        unsigned int h = (((a >> 23) - 112u) << 10) | ((a >> 13) & 0x3ffu);
        const unsigned int rest = a & 0x1fffu;
        if (rest > 0x1000u || (rest == 0x1000u && (h & 1u))) h += 1u;
        return (unsigned short)(sign | h);
    }
    if (a <= 0x33000000u) return (unsigned short)sign; /* <= 2^-25 rounds to zero */
    {
        /* subnormal half: round (significand >> shift) to nearest even */
        const unsigned int m = (a & 0x7fffffu) | 0x800000u;
        const unsigned int shift = 126u - (a >> 23);
        unsigned int h = m >> shift;
        const unsigned int rest = m & ((1u << shift) - 1u);
        const unsigned int half = 1u << (shift - 1u);
        if (rest > half || (rest == half && (h & 1u))) h += 1u;
        return (unsigned short)(sign | h);
    }
#endif
}
"#;

/// bfloat16 <-> binary32, round to nearest even, NaN kept quiet.
const BF16_HELPERS: &str = r#"// ---- flexsn storage: bfloat16 <-> float, round to nearest even ----
static __device__ __forceinline__ float flexsn_load_bf16(unsigned short h) {
    return __uint_as_float(((unsigned int)h) << 16);
}
static __device__ __forceinline__ unsigned short flexsn_store_bf16(float f) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 800
    /* sm_80+ rounds to nearest even in hardware, like the C version below */
    unsigned short h;
    asm("cvt.rn.bf16.f32 %0, %1;" : "=h"(h) : "f"(f));
    return h;
#else
    const unsigned int u = __float_as_uint(f);
    if ((u & 0x7fffffffu) > 0x7f800000u) return (unsigned short)((u >> 16) | 0x0040u);
    return (unsigned short)((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);
#endif
}
"#;

/// The storage conversion helpers for `dtype` (none for f32).
pub(super) fn storage_helpers(dtype: StorageDtype) -> &'static str {
    match dtype {
        StorageDtype::F32 => "",
        StorageDtype::F16 => F16_HELPERS,
        StorageDtype::Bf16 => BF16_HELPERS,
    }
}

/// The deterministic block reduction kernel. `{NAME}`, `{BLOCK}`, `{ITEMS}` are substituted.
pub(super) const REDUCE_TEMPLATE: &str = r#"// Deterministic sum: block b adds elements [b * {CHUNK}, (b + 1) * {CHUNK}) of `in`, each thread
// a fixed strided subset in index order, then a fixed shared-memory tree; partial[b] = that sum.
// The order of additions depends only on `len`, never on scheduling. Launch with blockDim.x =
// {BLOCK} and gridDim.x = ceil(len / {CHUNK}); repeat on the partials until one value remains.
extern "C" __global__ void __launch_bounds__({BLOCK}) {NAME}(
    const float* __restrict__ in,
    float* __restrict__ partial,
    const long long len)
{
    __shared__ float buf[{BLOCK}];
    const unsigned int tid = threadIdx.x;
    const long long base = (long long)blockIdx.x * {CHUNK}LL;
    float acc = 0.0f;
    for (int k = 0; k < {ITEMS}; ++k) {
        const long long i = base + (long long)k * {BLOCK}LL + (long long)tid;
        if (i < len) acc += in[i];
    }
    buf[tid] = acc;
    __syncthreads();
    for (unsigned int s = {HALF}u; s > 0u; s >>= 1) {
        if (tid < s) buf[tid] += buf[tid + s];
        __syncthreads();
    }
    if (tid == 0u) partial[blockIdx.x] = buf[0];
}
"#;
