//! Host emulation of generated CUDA source: a small shim header that makes the generated text
//! compile as ordinary host C++, and a host entry point that runs a kernel over its grid.
//!
//! [`host_translation_unit`] returns `shim + generated source + host entry points`, a complete
//! C++17 file. Compiled into a shared library (`c++ -O2 -std=c++17 -shared -fPIC
//! -ffp-contract=off`), it exports:
//!
//! - `int flexsn_emu_scan(void* const* args, const long long* pitches, long long T, long long N,
//!   unsigned grid, unsigned block)`: runs the scan kernel for every `(blockIdx, threadIdx)` of
//!   the grid, one thread after another (the scan kernel has no barriers); `args` holds the
//!   pointer arguments in [`CudaSource::args`] order, `pitches` one row pitch per sequence
//!   argument ([`CudaSource::sequence_args`]).
//! - `int flexsn_emu_reduce(const float* in, float* partial, long long len, unsigned grid)`:
//!   runs the reduction kernel one block at a time, the block's threads as real host threads (pthreads)
//!   that meet at `__syncthreads()`.
//!
//! Both return 0 on success and a non-zero code when the emulation itself failed (a barrier in a
//! kernel run without threads, a thread that could not start). [`mixing_translation_unit`] does
//! the same for the PSN time-mixing kernels of [`super::mixing`]. Launches into one library run
//! one at a time (a lock), since `__shared__` arrays are globals of the library.
//!
//! The shim maps CUDA's built-ins to host equivalents: `__global__`, `__device__`,
//! `__forceinline__`, `__launch_bounds__` vanish, `__shared__` becomes `static` (one block runs at
//! a time), `blockIdx`/`threadIdx`/`blockDim`/`gridDim` are thread-local globals, the fast-math
//! intrinsics (`__expf`, `__fdividef`, `__powf`, ...) are computed the way the device computes
//! them (base-2 exponentials and logarithms, division by a flushed reciprocal), fast-math sources
//! run with subnormals flushed to zero like `--ftz=true`, and the bit casts are `memcpy`s.

use super::mixing::MixingSource;
use super::{ArgType, CudaSource, MathMode};

/// The shim header: CUDA built-ins for host C++.
pub const SHIM_HEADER: &str = r#"// ---- flexsn host shim: CUDA built-ins for host C++ (emulation only) ----
// Only C headers: they keep the host compile fast.
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <pthread.h>

#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __launch_bounds__(...)
#define __shared__ static

struct flexsn_dim3 { unsigned int x, y, z; };
static thread_local flexsn_dim3 threadIdx = {0u, 0u, 0u};
static thread_local flexsn_dim3 blockIdx = {0u, 0u, 0u};
static thread_local flexsn_dim3 blockDim = {1u, 1u, 1u};
static thread_local flexsn_dim3 gridDim = {1u, 1u, 1u};

static inline float __uint_as_float(unsigned int u) { float f; memcpy(&f, &u, 4); return f; }
static inline unsigned int __float_as_uint(float f) { unsigned int u; memcpy(&u, &f, 4); return u; }
static inline float __int_as_float(int u) { float f; memcpy(&f, &u, 4); return f; }
static inline int __float_as_int(float f) { int u; memcpy(&u, &f, 4); return u; }

// The fast-math intrinsics as the device computes them (PTX ISA: `ex2.approx`, `lg2.approx`,
// `div.approx`), so that the emulated tier gets the same result classes (NaN, inf, 0) as the GPU:
// __powf is exp2(y * log2(x)) (NaN for a negative base), __fdividef multiplies by a reciprocal
// that flushes to 0 for |y| > 2^126, __expf and __logf go through base 2.
// glibc declares some of these names itself, so the shim's versions go by other names.
static inline float flexsn_emu_expf(float x) { return exp2f(x * 1.44269504088896341f); }
static inline float flexsn_emu_logf(float x) { return log2f(x) * 0.693147180559945309f; }
static inline float flexsn_emu_log2f(float x) { return log2f(x); }
static inline float flexsn_emu_sinf(float x) { return sinf(x); }
static inline float flexsn_emu_cosf(float x) { return cosf(x); }
static inline float flexsn_emu_powf(float x, float y) { return exp2f(y * log2f(x)); }
static inline float flexsn_emu_fdividef(float x, float y) {
    float r = 1.0f / y;
    if (fabsf(r) < 1.17549435e-38f) r = r * 0.0f; // rcp.approx.ftz: subnormal -> signed zero
    return x * r;
}
static inline float flexsn_emu_rsqrtf(float x) { return 1.0f / sqrtf(x); }
#define __expf flexsn_emu_expf
#define __logf flexsn_emu_logf
#define __log2f flexsn_emu_log2f
#define __sinf flexsn_emu_sinf
#define __cosf flexsn_emu_cosf
#define __powf flexsn_emu_powf
#define __fdividef flexsn_emu_fdividef
#define rsqrtf flexsn_emu_rsqrtf

// Fast math compiles with --ftz=true: the device flushes subnormal inputs and results of float
// arithmetic to zero. For such sources (FLEXSN_EMU_FTZ 1) the emulation sets the SSE flush-to-zero
// and denormals-are-zero bits while a kernel runs, so the host does the same. (Other hosts than
// x86-64 keep subnormals: there the emulated fast tier is not exact about them.)
#ifndef FLEXSN_EMU_FTZ
#define FLEXSN_EMU_FTZ 0
#endif
#if defined(__SSE__) || defined(__x86_64__)
#include <xmmintrin.h>
struct flexsn_ftz_scope {
    unsigned int saved;
    flexsn_ftz_scope() : saved(_mm_getcsr()) { if (FLEXSN_EMU_FTZ) _mm_setcsr(saved | 0x8040u); }
    ~flexsn_ftz_scope() { _mm_setcsr(saved); }
};
#else
struct flexsn_ftz_scope {};
#endif

// A reusable barrier for the threads of one emulated block.
struct flexsn_barrier {
    pthread_mutex_t m;
    pthread_cond_t cv;
    unsigned int count, waiting, generation;
};
static void flexsn_barrier_wait(flexsn_barrier* b) {
    pthread_mutex_lock(&b->m);
    const unsigned int gen = b->generation;
    if (++b->waiting == b->count) {
        b->waiting = 0u;
        ++b->generation;
        pthread_cond_broadcast(&b->cv);
    } else {
        while (gen == b->generation) pthread_cond_wait(&b->cv, &b->m);
    }
    pthread_mutex_unlock(&b->m);
}
static thread_local flexsn_barrier* flexsn_emu_block_barrier = nullptr;
static int flexsn_emu_error = 0;
static inline void __syncthreads(void) {
    if (flexsn_emu_block_barrier) flexsn_barrier_wait(flexsn_emu_block_barrier);
    else flexsn_emu_error = 2; // a barrier in a kernel emulated without threads
}

// Launches run one at a time per library: `__shared__` arrays and the error flag are globals.
static pthread_mutex_t flexsn_emu_launch_lock = PTHREAD_MUTEX_INITIALIZER;
typedef void (*flexsn_emu_body)(void* ctx);

// Runs body(ctx) for every thread of a (gx, gy) grid of `block`-thread blocks, one thread after
// another (for kernels without barriers).
static int flexsn_emu_run_sequential(unsigned gx, unsigned gy, unsigned block, flexsn_emu_body body, void* ctx) {
    flexsn_ftz_scope ftz;
    pthread_mutex_lock(&flexsn_emu_launch_lock);
    flexsn_emu_error = 0;
    for (unsigned by = 0; by < gy && !flexsn_emu_error; ++by)
        for (unsigned bx = 0; bx < gx && !flexsn_emu_error; ++bx)
            for (unsigned th = 0; th < block && !flexsn_emu_error; ++th) {
                gridDim = flexsn_dim3{gx, gy, 1u}; blockDim = flexsn_dim3{block, 1u, 1u};
                blockIdx = flexsn_dim3{bx, by, 0u}; threadIdx = flexsn_dim3{th, 0u, 0u};
                body(ctx);
            }
    const int err = flexsn_emu_error;
    pthread_mutex_unlock(&flexsn_emu_launch_lock);
    return err;
}

// Threads of an emulated block wait at a gate until all have started (go = 1) or one could not
// be started (go = 2: they return without running the kernel).
struct flexsn_gate { pthread_mutex_t m; pthread_cond_t cv; int go; };
struct flexsn_thread_arg {
    unsigned bx, by, th, gx, gy, block;
    flexsn_barrier* bar;
    flexsn_gate* gate;
    flexsn_emu_body body;
    void* ctx;
};
static void* flexsn_emu_thread(void* p) {
    flexsn_thread_arg* a = (flexsn_thread_arg*)p;
    pthread_mutex_lock(&a->gate->m);
    while (a->gate->go == 0) pthread_cond_wait(&a->gate->cv, &a->gate->m);
    const int go = a->gate->go;
    pthread_mutex_unlock(&a->gate->m);
    if (go != 1) return 0;
    gridDim = flexsn_dim3{a->gx, a->gy, 1u}; blockDim = flexsn_dim3{a->block, 1u, 1u};
    blockIdx = flexsn_dim3{a->bx, a->by, 0u}; threadIdx = flexsn_dim3{a->th, 0u, 0u};
    flexsn_emu_block_barrier = a->bar;
    flexsn_ftz_scope ftz;
    a->body(a->ctx);
    flexsn_emu_block_barrier = 0;
    return 0;
}

// Runs body(ctx) over a (gx, gy) grid one block at a time, the block's threads as host threads
// that meet at __syncthreads(). Returns 3 when a thread could not be started.
static int flexsn_emu_run_threaded(unsigned gx, unsigned gy, unsigned block, flexsn_emu_body body, void* ctx) {
    if (block == 0u || block > 1024u) return 4;
    flexsn_thread_arg* args = (flexsn_thread_arg*)malloc(sizeof(flexsn_thread_arg) * block);
    pthread_t* tids = (pthread_t*)malloc(sizeof(pthread_t) * block);
    if (!args || !tids) { free(args); free(tids); return 3; }
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setstacksize(&attr, 1u << 20);
    pthread_mutex_lock(&flexsn_emu_launch_lock);
    flexsn_emu_error = 0;
    int code = 0;
    for (unsigned by = 0; by < gy && code == 0; ++by)
        for (unsigned bx = 0; bx < gx && code == 0; ++bx) {
            flexsn_barrier bar;
            pthread_mutex_init(&bar.m, 0);
            pthread_cond_init(&bar.cv, 0);
            bar.count = block; bar.waiting = 0u; bar.generation = 0u;
            flexsn_gate gate;
            pthread_mutex_init(&gate.m, 0);
            pthread_cond_init(&gate.cv, 0);
            gate.go = 0;
            unsigned started = 0;
            for (unsigned th = 0; th < block; ++th) {
                args[th] = flexsn_thread_arg{bx, by, th, gx, gy, block, &bar, &gate, body, ctx};
                if (pthread_create(&tids[th], &attr, flexsn_emu_thread, &args[th]) != 0) break;
                ++started;
            }
            pthread_mutex_lock(&gate.m);
            gate.go = (started == block) ? 1 : 2;
            pthread_cond_broadcast(&gate.cv);
            pthread_mutex_unlock(&gate.m);
            for (unsigned th = 0; th < started; ++th) pthread_join(tids[th], 0);
            pthread_mutex_destroy(&bar.m); pthread_cond_destroy(&bar.cv);
            pthread_mutex_destroy(&gate.m); pthread_cond_destroy(&gate.cv);
            if (started != block) code = 3;
            else if (flexsn_emu_error) code = flexsn_emu_error;
        }
    pthread_mutex_unlock(&flexsn_emu_launch_lock);
    pthread_attr_destroy(&attr);
    free(args);
    free(tids);
    return code;
}
// ---- end of shim; generated source follows ----
"#;

/// Fast-math sources run with subnormals flushed, like the device under `--ftz=true`.
pub(super) fn ftz_define(math: MathMode) -> &'static str {
    match math {
        MathMode::Precise => "",
        MathMode::Fast => "#define FLEXSN_EMU_FTZ 1\n",
    }
}

/// C++ cast of `args[idx]` to the pointer type of argument `ty` in `src`.
fn arg_cast(src: &CudaSource, ty: ArgType, is_output: bool, idx: usize) -> String {
    let t = match ty {
        ArgType::F32 => "float",
        ArgType::Storage => src.dtype.c_type(),
    };
    if is_output {
        format!("({t}*)args[{idx}]")
    } else {
        format!("(const {t}*)args[{idx}]")
    }
}

/// The host entry points appended after the generated source.
pub fn host_entry_points(src: &CudaSource) -> String {
    let call_args: Vec<String> = src
        .args
        .iter()
        .enumerate()
        .map(|(i, a)| arg_cast(src, a.ty, a.role.is_output(), i))
        .collect();
    let pitches: String = (0..src.sequence_args().count())
        .map(|k| format!(", c->pitches[{k}]"))
        .collect();
    format!(
        r#"
// ---- flexsn host entry points (emulation only) ----
struct flexsn_scan_ctx {{ void* const* args; const long long* pitches; long long T, N; }};
static void flexsn_scan_body(void* p) {{
    flexsn_scan_ctx* c = (flexsn_scan_ctx*)p;
    void* const* args = c->args;
    {entry}({call}{sep}c->T, c->N{pitches});
}}
extern "C" int flexsn_emu_scan(void* const* args, const long long* pitches, long long T, long long N, unsigned grid, unsigned block) {{
    flexsn_scan_ctx c = {{args, pitches, T, N}};
    return flexsn_emu_run_sequential(grid, 1u, block, flexsn_scan_body, &c);
}}

struct flexsn_reduce_ctx {{ const float* in; float* partial; long long len; }};
static void flexsn_reduce_body(void* p) {{
    flexsn_reduce_ctx* c = (flexsn_reduce_ctx*)p;
    {reduce}(c->in, c->partial, c->len);
}}
extern "C" int flexsn_emu_reduce(const float* in, float* partial, long long len, unsigned grid) {{
    flexsn_reduce_ctx c = {{in, partial, len}};
    return flexsn_emu_run_threaded(grid, 1u, {block}u, flexsn_reduce_body, &c);
}}
"#,
        entry = src.entry,
        call = call_args.join(", "),
        sep = if call_args.is_empty() { "" } else { ", " },
        reduce = src.reduce_entry,
        block = super::REDUCE_BLOCK,
    )
}

/// The host entry points of a mixing source (see [`mixing_translation_unit`]).
fn mixing_entry_points(src: &MixingSource) -> String {
    let st = src.dtype.c_type();
    format!(
        r#"
// ---- flexsn host entry points (emulation only) ----
struct flexsn_mix_ctx {{
    const float* W; const float* b; const {st}* x; const {st}* gs; {st}* out; {st}* gx;
    const float* gh_in; float* gh; float* partial; const float* partial_in; long long N;
    long long rows; long long cols; const long long* pitch;
}};
static void flexsn_mix_fwd_body(void* p) {{
    flexsn_mix_ctx* c = (flexsn_mix_ctx*)p;
    {fwd}(c->W, c->b, c->x, c->out, c->N, c->rows, c->cols, c->pitch[0], c->pitch[1]);
}}
static void flexsn_mix_bwd_body(void* p) {{
    flexsn_mix_ctx* c = (flexsn_mix_ctx*)p;
    {bwd}(c->W, c->b, c->x, c->gs, c->gx, c->gh, c->N, c->rows, c->cols, c->pitch[0], c->pitch[1], c->pitch[2], c->pitch[3]);
}}
static void flexsn_mix_wgrad_body(void* p) {{
    flexsn_mix_ctx* c = (flexsn_mix_ctx*)p;
    {wgrad}(c->gh_in, c->x, c->partial, c->N, c->rows, c->cols, c->pitch[0], c->pitch[1]);
}}
static void flexsn_mix_reduce_body(void* p) {{
    flexsn_mix_ctx* c = (flexsn_mix_ctx*)p;
    {reduce}(c->partial_in, c->partial, c->N, c->rows);
}}
extern "C" int flexsn_emu_mix_fwd(const float* W, const float* b, const {st}* x, {st}* spike, long long N, long long rows, long long cols, const long long* pitch, unsigned grid, unsigned block) {{
    flexsn_mix_ctx c = {{W, b, x, 0, spike, 0, 0, 0, 0, 0, N, rows, cols, pitch}};
    return flexsn_emu_run_threaded(grid, 1u, block, flexsn_mix_fwd_body, &c);
}}
extern "C" int flexsn_emu_mix_bwd(const float* W, const float* b, const {st}* x, const {st}* grad_spike, {st}* grad_x, float* grad_h, long long N, long long rows, long long cols, const long long* pitch, unsigned grid, unsigned block) {{
    flexsn_mix_ctx c = {{W, b, x, grad_spike, 0, grad_x, 0, grad_h, 0, 0, N, rows, cols, pitch}};
    return flexsn_emu_run_threaded(grid, 1u, block, flexsn_mix_bwd_body, &c);
}}
extern "C" int flexsn_emu_mix_wgrad(const float* grad_h, const {st}* x, float* partial, long long N, long long rows, long long cols, const long long* pitch, unsigned chunks, unsigned tiles) {{
    flexsn_mix_ctx c = {{0, 0, x, 0, 0, 0, grad_h, 0, partial, 0, N, rows, cols, pitch}};
    return flexsn_emu_run_threaded(chunks, tiles, {wblock}u, flexsn_mix_wgrad_body, &c);
}}
extern "C" int flexsn_emu_mix_reduce(const float* partial, float* out, long long chunks, long long len, unsigned grid) {{
    flexsn_mix_ctx c = {{0, 0, 0, 0, 0, 0, 0, 0, out, partial, chunks, len, 0, 0}};
    return flexsn_emu_run_threaded(grid, 1u, {wblock}u, flexsn_mix_reduce_body, &c);
}}
"#,
        fwd = src.forward_entry,
        bwd = src.backward_entry,
        wgrad = src.wgrad_entry,
        reduce = src.reduce_entry,
        wblock = super::mixing::WGRAD_BLOCK,
    )
}

/// The complete host C++ translation unit for mixing source `src`: shim, generated source and
/// entry points `flexsn_emu_mix_fwd(W, b, x, spike, N, rows, cols, pitch, grid, block)`,
/// `flexsn_emu_mix_bwd(W, b, x, grad_spike, grad_x, grad_h, N, rows, cols, pitch, grid, block)`,
/// `flexsn_emu_mix_wgrad(grad_h, x, partial, N, rows, cols, pitch, chunks, tiles)` (`pitch`: the
/// row pitches of the kernel's `[steps, N]` buffers, in the order of its `_pitch` arguments) and
/// `flexsn_emu_mix_reduce(partial, out, chunks, len, grid)` (every block's threads as host
/// threads that meet at the barriers), each returning 0 on success.
pub fn mixing_translation_unit(src: &MixingSource) -> String {
    let mut s = String::with_capacity(SHIM_HEADER.len() + src.code.len() + 4096);
    s.push_str(ftz_define(src.math));
    s.push_str(SHIM_HEADER);
    s.push_str(&src.code);
    s.push_str(&mixing_entry_points(src));
    s
}

/// The complete host C++ translation unit for `src`: shim, generated source, host entry points.
pub fn host_translation_unit(src: &CudaSource) -> String {
    let mut s = String::with_capacity(SHIM_HEADER.len() + src.code.len() + 2048);
    s.push_str(ftz_define(src.math));
    s.push_str(SHIM_HEADER);
    s.push_str(&src.code);
    s.push_str(&host_entry_points(src));
    s
}
