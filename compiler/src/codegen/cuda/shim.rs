//! Host emulation of generated CUDA source: a small shim header that makes the generated text
//! compile as ordinary host C++, and a host entry point that runs a kernel over its grid.
//!
//! [`host_translation_unit`] returns `shim + generated source + host entry points`, a complete
//! C++17 file. Compiled into a shared library (`c++ -O2 -std=c++17 -shared -fPIC
//! -ffp-contract=off`), it exports:
//!
//! - `int flexsn_emu_scan(void* const* args, long long T, long long N, unsigned grid,
//!   unsigned block)`: runs the scan kernel for every `(blockIdx, threadIdx)` of the grid, one
//!   thread after another (the scan kernel has no barriers); `args` holds the pointer arguments
//!   in [`CudaSource::args`] order.
//! - `int flexsn_emu_reduce(const float* in, float* partial, long long len, unsigned grid)`:
//!   runs the reduction kernel one block at a time, the block's threads as real host threads (pthreads)
//!   that meet at `__syncthreads()`.
//!
//! Both return 0 on success and a non-zero code when the emulation itself failed (a barrier in a
//! kernel run without threads, a thread that could not start).
//!
//! The shim maps CUDA's built-ins to host equivalents: `__global__`, `__device__`,
//! `__forceinline__`, `__launch_bounds__` vanish, `__shared__` becomes `static` (one block runs at
//! a time), `blockIdx`/`threadIdx`/`blockDim`/`gridDim` are thread-local globals, the fast-math
//! intrinsics (`__expf`, `__fdividef`, ...) are the precise host functions, and the bit casts are
//! `memcpy`s.

use super::{ArgType, CudaSource};

/// The shim header: CUDA built-ins for host C++.
pub const SHIM_HEADER: &str = r#"// ---- flexsn host shim: CUDA built-ins for host C++ (emulation only) ----
// Only C headers: they keep the host compile fast.
#include <math.h>
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

// glibc declares some of these names itself, so the shim's versions go by other names.
static inline float flexsn_emu_expf(float x) { return expf(x); }
static inline float flexsn_emu_logf(float x) { return logf(x); }
static inline float flexsn_emu_log2f(float x) { return log2f(x); }
static inline float flexsn_emu_sinf(float x) { return sinf(x); }
static inline float flexsn_emu_cosf(float x) { return cosf(x); }
static inline float flexsn_emu_powf(float x, float y) { return powf(x, y); }
static inline float flexsn_emu_fdividef(float x, float y) { return x / y; }
static inline float flexsn_emu_rsqrtf(float x) { return 1.0f / sqrtf(x); }
#define __expf flexsn_emu_expf
#define __logf flexsn_emu_logf
#define __log2f flexsn_emu_log2f
#define __sinf flexsn_emu_sinf
#define __cosf flexsn_emu_cosf
#define __powf flexsn_emu_powf
#define __fdividef flexsn_emu_fdividef
#define rsqrtf flexsn_emu_rsqrtf

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
// ---- end of shim; generated source follows ----
"#;

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
    let mut s = String::new();
    s.push_str("\n// ---- flexsn host entry points (emulation only) ----\n");
    s.push_str(
        "extern \"C\" int flexsn_emu_scan(void* const* args, long long T, long long N, unsigned grid, unsigned block) {\n",
    );
    s.push_str("    flexsn_emu_error = 0;\n");
    s.push_str("    for (unsigned b = 0; b < grid; ++b) {\n");
    s.push_str("        for (unsigned th = 0; th < block; ++th) {\n");
    s.push_str(
        "            gridDim = flexsn_dim3{grid, 1u, 1u}; blockDim = flexsn_dim3{block, 1u, 1u};\n",
    );
    s.push_str(
        "            blockIdx = flexsn_dim3{b, 0u, 0u}; threadIdx = flexsn_dim3{th, 0u, 0u};\n",
    );
    s.push_str(&format!(
        "            {}({}{}T, N);\n",
        src.entry,
        call_args.join(", "),
        if call_args.is_empty() { "" } else { ", " }
    ));
    s.push_str("            if (flexsn_emu_error) return flexsn_emu_error;\n");
    s.push_str("        }\n    }\n    return 0;\n}\n\n");
    s.push_str(&format!(
        r#"// Threads of an emulated block wait at a gate until all have started (go = 1) or one
// could not be started (go = 2, they return without running the kernel).
struct flexsn_gate {{ pthread_mutex_t m; pthread_cond_t cv; int go; }};
struct flexsn_reduce_arg {{
    unsigned b, th, grid, block;
    flexsn_barrier* bar;
    flexsn_gate* gate;
    const float* in;
    float* partial;
    long long len;
}};
static void* flexsn_emu_reduce_thread(void* p) {{
    flexsn_reduce_arg* a = (flexsn_reduce_arg*)p;
    pthread_mutex_lock(&a->gate->m);
    while (a->gate->go == 0) pthread_cond_wait(&a->gate->cv, &a->gate->m);
    const int go = a->gate->go;
    pthread_mutex_unlock(&a->gate->m);
    if (go != 1) return 0;
    gridDim = flexsn_dim3{{a->grid, 1u, 1u}}; blockDim = flexsn_dim3{{a->block, 1u, 1u}};
    blockIdx = flexsn_dim3{{a->b, 0u, 0u}}; threadIdx = flexsn_dim3{{a->th, 0u, 0u}};
    flexsn_emu_block_barrier = a->bar;
    {name}(a->in, a->partial, a->len);
    flexsn_emu_block_barrier = 0;
    return 0;
}}
extern "C" int flexsn_emu_reduce(const float* in, float* partial, long long len, unsigned grid) {{
    const unsigned block = {block}u;
    flexsn_reduce_arg args[{block}];
    pthread_t tids[{block}];
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setstacksize(&attr, 1u << 20);
    flexsn_emu_error = 0;
    for (unsigned b = 0; b < grid; ++b) {{
        flexsn_barrier bar;
        pthread_mutex_init(&bar.m, 0);
        pthread_cond_init(&bar.cv, 0);
        bar.count = block; bar.waiting = 0u; bar.generation = 0u;
        flexsn_gate gate;
        pthread_mutex_init(&gate.m, 0);
        pthread_cond_init(&gate.cv, 0);
        gate.go = 0;
        unsigned started = 0;
        for (unsigned th = 0; th < block; ++th) {{
            args[th] = flexsn_reduce_arg{{b, th, grid, block, &bar, &gate, in, partial, len}};
            if (pthread_create(&tids[th], &attr, flexsn_emu_reduce_thread, &args[th]) != 0) break;
            ++started;
        }}
        pthread_mutex_lock(&gate.m);
        gate.go = (started == block) ? 1 : 2;
        pthread_cond_broadcast(&gate.cv);
        pthread_mutex_unlock(&gate.m);
        for (unsigned th = 0; th < started; ++th) pthread_join(tids[th], 0);
        pthread_mutex_destroy(&bar.m); pthread_cond_destroy(&bar.cv);
        pthread_mutex_destroy(&gate.m); pthread_cond_destroy(&gate.cv);
        if (started != block) {{ pthread_attr_destroy(&attr); return 3; }}
        if (flexsn_emu_error) {{ pthread_attr_destroy(&attr); return flexsn_emu_error; }}
    }}
    pthread_attr_destroy(&attr);
    return 0;
}}
"#,
        block = super::REDUCE_BLOCK,
        name = src.reduce_entry
    ));
    s
}

/// The complete host C++ translation unit for `src`: shim, generated source, host entry points.
pub fn host_translation_unit(src: &CudaSource) -> String {
    let mut s = String::with_capacity(SHIM_HEADER.len() + src.code.len() + 2048);
    s.push_str(SHIM_HEADER);
    s.push_str(&src.code);
    s.push_str(&host_entry_points(src));
    s
}
