//! The emulated CUDA backend: the generated CUDA source, compiled as host C++ with the shim of
//! [`flexsn_compiler::codegen::cuda::shim`] by the system C++ compiler into a shared library,
//! loaded with `libloading` and run over its grid on the CPU.
//!
//! It checks the numbers of the exact text NVRTC would compile, on machines without a GPU. It is
//! slow (one host thread walks every CUDA thread of the grid) and meant for tests and for
//! `flexsn conformance --backend cuda-emulated`.
//!
//! The C++ compiler is `$CXX` if set, else the first of `c++`, `g++`, `clang++` that answers
//! `--version`. Compiled libraries are cached in memory and on disk (see [`super::cache`]).

use std::collections::HashMap;
use std::ffi::c_void;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock};

use flexsn_compiler::codegen::cuda::{
    CudaOptions, CudaSource, codegen_scan, number_lines, reduce_passes, shim,
};
use flexsn_compiler::scan::{ScanArgs, ScanKernel, ScanResult};

use super::CudaError;
use super::cache;
use super::device::to_i64;
use super::host::{buffer_specs, collect_result, grid_for, input_buffers};

/// The host C++ compiler: program, extra arguments from `$CXX`, first line of `--version`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Cxx {
    pub program: String,
    pub extra_args: Vec<String>,
    pub version: String,
}

/// Flags for compiling emulation libraries: no fast math, no FMA contraction, so that host
/// arithmetic rounds exactly like the interpreter's.
const CXX_FLAGS: &[&str] = &[
    "-O2",
    "-std=c++17",
    "-shared",
    "-fPIC",
    "-ffp-contract=off",
    "-fno-fast-math",
    "-pthread",
    "-w",
];

/// Finds the host C++ compiler (once per process).
pub fn find_cxx() -> Result<Cxx, CudaError> {
    static FOUND: OnceLock<Result<Cxx, String>> = OnceLock::new();
    FOUND
        .get_or_init(|| {
            let mut tried = Vec::new();
            let mut candidates: Vec<Vec<String>> = Vec::new();
            if let Ok(cxx) = std::env::var("CXX") {
                let words: Vec<String> = cxx.split_whitespace().map(String::from).collect();
                if !words.is_empty() {
                    candidates.push(words);
                }
            }
            for c in ["c++", "g++", "clang++"] {
                candidates.push(vec![c.to_string()]);
            }
            for words in candidates {
                tried.push(words.join(" "));
                let out = std::process::Command::new(&words[0])
                    .args(&words[1..])
                    .arg("--version")
                    .output();
                if let Ok(out) = out
                    && out.status.success()
                {
                    let version = String::from_utf8_lossy(&out.stdout)
                        .lines()
                        .next()
                        .unwrap_or("")
                        .to_string();
                    return Ok(Cxx {
                        program: words[0].clone(),
                        extra_args: words[1..].to_vec(),
                        version,
                    });
                }
            }
            Err(tried.join(", "))
        })
        .clone()
        .map_err(|tried| CudaError::NoCxx { tried })
}

/// A loaded emulation library (kept alive while its functions may be called).
#[derive(Debug)]
pub struct HostLibrary {
    lib: libloading::Library,
    path: PathBuf,
}

impl HostLibrary {
    /// Where the library file is.
    pub fn path(&self) -> &std::path::Path {
        &self.path
    }

    /// Looks up a function. `T` must be the exact `extern "C"` function pointer type of `name`.
    ///
    /// # Safety
    /// The caller guarantees that `T` matches the symbol's real signature.
    pub unsafe fn get<T: Copy>(&self, name: &str) -> Result<T, CudaError> {
        // SAFETY: forwarded to the caller (the type must match the symbol).
        let sym =
            unsafe { self.lib.get::<T>(name.as_bytes()) }.map_err(|e| CudaError::EmuLoad {
                path: self.path.display().to_string(),
                message: format!("missing symbol `{name}`: {}", super::error::chain(&e)),
            })?;
        Ok(*sym)
    }
}

/// Compiles a host C++ translation unit into a shared library and loads it, using the memory
/// and disk caches. `tu` must be a complete C++17 file.
pub fn compile_host_library(tu: &str) -> Result<Arc<HostLibrary>, CudaError> {
    static LIBS: OnceLock<Mutex<HashMap<String, Arc<HostLibrary>>>> = OnceLock::new();
    let cxx = find_cxx()?;
    let flags = CXX_FLAGS.join(" ");
    let key = cache::key(&[
        cxx.program.as_bytes(),
        cxx.extra_args.join(" ").as_bytes(),
        cxx.version.as_bytes(),
        flags.as_bytes(),
        tu.as_bytes(),
    ]);
    let libs = LIBS.get_or_init(Default::default);
    if let Some(l) = libs.lock().unwrap_or_else(|e| e.into_inner()).get(&key) {
        return Ok(l.clone());
    }
    let dir = cache::cache_subdir("emulated").unwrap_or_else(std::env::temp_dir);
    let so = dir.join(format!("{key}.so"));
    if !so.exists() {
        let tag = format!("{key}.{}.{}", std::process::id(), cache::unique());
        let cpp = dir.join(format!("{tag}.cpp"));
        let tmp_so = dir.join(format!("{tag}.tmp.so"));
        std::fs::write(&cpp, tu).map_err(|e| CudaError::EmuLoad {
            path: cpp.display().to_string(),
            message: format!("cannot write the C++ source: {e}"),
        })?;
        let out = std::process::Command::new(&cxx.program)
            .args(&cxx.extra_args)
            .args(CXX_FLAGS)
            .arg("-o")
            .arg(&tmp_so)
            .arg(&cpp)
            .output();
        let _ = std::fs::remove_file(&cpp);
        let out = out.map_err(|e| CudaError::CxxCompile {
            compiler: cxx.program.clone(),
            log: format!("could not run the compiler: {e}"),
            numbered_source: String::new(),
        })?;
        if !out.status.success() {
            let _ = std::fs::remove_file(&tmp_so);
            return Err(CudaError::CxxCompile {
                compiler: cxx.program.clone(),
                log: String::from_utf8_lossy(&out.stderr).into_owned(),
                numbered_source: number_lines(tu),
            });
        }
        if std::fs::rename(&tmp_so, &so).is_err() {
            let _ = std::fs::remove_file(&tmp_so);
            if !so.exists() {
                return Err(CudaError::EmuLoad {
                    path: so.display().to_string(),
                    message: "cannot move the compiled library into the cache".into(),
                });
            }
        }
    }
    // SAFETY: the library is one we just compiled from generated code (or an identical cached
    // copy, keyed by the hash of its source and compiler); it has no load-time side effects
    // beyond zero-initialising its globals.
    let lib = unsafe { libloading::Library::new(&so) }.map_err(|e| CudaError::EmuLoad {
        path: so.display().to_string(),
        message: super::error::chain(&e),
    })?;
    let lib = Arc::new(HostLibrary { lib, path: so });
    libs.lock()
        .unwrap_or_else(|e| e.into_inner())
        .insert(key, lib.clone());
    Ok(lib)
}

/// `int flexsn_emu_scan(void* const* args, long long T, long long N, unsigned grid, unsigned block)`
type ScanFn = unsafe extern "C" fn(*const *mut c_void, i64, i64, u32, u32) -> i32;
/// `int flexsn_emu_reduce(const float* in, float* partial, long long len, unsigned grid)`
type ReduceFn = unsafe extern "C" fn(*const f32, *mut f32, i64, u32) -> i32;

/// One compiled emulated kernel.
#[derive(Debug)]
pub struct EmulatedKernel {
    pub source: CudaSource,
    lib: Arc<HostLibrary>,
    scan: ScanFn,
    reduce: ReduceFn,
}

impl EmulatedKernel {
    /// Generates, compiles and loads `kernel`.
    pub fn compile(kernel: &ScanKernel, opts: &CudaOptions) -> Result<Self, CudaError> {
        let source = codegen_scan(kernel, opts)?;
        let lib = compile_host_library(&shim::host_translation_unit(&source))?;
        // SAFETY: the types are the signatures `shim::host_entry_points` writes.
        let scan = unsafe { lib.get::<ScanFn>("flexsn_emu_scan")? };
        let reduce = unsafe { lib.get::<ReduceFn>("flexsn_emu_reduce")? };
        Ok(EmulatedKernel {
            source,
            lib,
            scan,
            reduce,
        })
    }

    /// The loaded library.
    pub fn library(&self) -> &HostLibrary {
        &self.lib
    }

    /// Runs the scan on host data (converted to and from the storage type).
    pub fn run(
        &self,
        kernel: &ScanKernel,
        args: &ScanArgs<'_, f32>,
    ) -> Result<ScanResult<f32>, CudaError> {
        args.check(&kernel.graph)?;
        let src = &self.source;
        let specs = buffer_specs(src, kernel, args.t, args.n)?;
        if specs.len() != src.args.len() {
            return Err(CudaError::Buffer {
                name: kernel.graph.name().to_string(),
                message: "the kernel was generated for a different graph".into(),
            });
        }
        let grid = grid_for(src, args.n)?;
        let (t, n) = (to_i64(args.t, "T")?, to_i64(args.n, "N")?);
        let mut bufs = input_buffers(src, &specs, args);
        let ptrs: Vec<*mut c_void> = bufs.iter_mut().map(|b| b.as_mut_ptr()).collect();
        // SAFETY: `args.check` and `buffer_specs` sized every buffer for this [T, N] run exactly
        // as the kernel indexes it (inputs/outputs T*N, states N, params by kind), `ptrs` holds
        // one pointer per kernel argument in `src.args` order, and the buffers outlive the call.
        let code = unsafe { (self.scan)(ptrs.as_ptr(), t, n, grid, src.block_size) };
        if code != 0 {
            return Err(CudaError::EmuRun {
                entry: src.entry.clone(),
                code,
            });
        }
        Ok(collect_result(src, kernel, &specs, &bufs))
    }

    /// Sums `values` with the deterministic reduction kernel (block tree, fixed order).
    pub fn reduce_sum(&self, values: &[f32]) -> Result<f32, CudaError> {
        let mut cur = values.to_vec();
        let passes = reduce_passes(values.len() as u64);
        for &next_len in &passes[1..] {
            let grid = u32::try_from(next_len)
                .map_err(|_| CudaError::TooLarge(format!("{} values to reduce", values.len())))?;
            let mut partial = vec![0.0f32; next_len as usize];
            let len = to_i64(cur.len(), "len")?;
            // SAFETY: `partial` has one slot per block (`grid`), and every block reads only
            // indices below `len` = `cur.len()`.
            let code = unsafe { (self.reduce)(cur.as_ptr(), partial.as_mut_ptr(), len, grid) };
            if code != 0 {
                return Err(CudaError::EmuRun {
                    entry: self.source.reduce_entry.clone(),
                    code,
                });
            }
            cur = partial;
        }
        Ok(cur.first().copied().unwrap_or(0.0))
    }
}

/// The emulated backend: compiles each kernel once (per options) and runs scans on the CPU.
#[derive(Debug)]
pub struct EmulatedCuda {
    opts: CudaOptions,
    kernels: Mutex<HashMap<String, Arc<EmulatedKernel>>>,
}

impl EmulatedCuda {
    /// The backend with default options (f32 storage, precise math). Fails plainly when no C++
    /// compiler is found.
    pub fn new() -> Result<Self, CudaError> {
        Self::with_options(CudaOptions::default())
    }

    /// The backend with the given storage type and math mode.
    pub fn with_options(opts: CudaOptions) -> Result<Self, CudaError> {
        find_cxx()?;
        Ok(EmulatedCuda {
            opts,
            kernels: Mutex::new(HashMap::new()),
        })
    }

    pub fn options(&self) -> &CudaOptions {
        &self.opts
    }

    /// The compiled kernel for `kernel` (cached by its hash).
    pub fn kernel(&self, kernel: &ScanKernel) -> Result<Arc<EmulatedKernel>, CudaError> {
        let key = kernel.stable_hash_hex();
        if let Some(k) = self
            .kernels
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&key)
        {
            return Ok(k.clone());
        }
        let k = Arc::new(EmulatedKernel::compile(kernel, &self.opts)?);
        self.kernels
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(key, k.clone());
        Ok(k)
    }

    /// Runs one scan: a runner for [`flexsn_compiler::bptt`]'s drivers.
    pub fn run_scan(
        &self,
        kernel: &ScanKernel,
        args: &ScanArgs<'_, f32>,
    ) -> Result<ScanResult<f32>, CudaError> {
        args.check(&kernel.graph)?;
        self.kernel(kernel)?.run(kernel, args)
    }

    /// Sums `values` with the deterministic device reduction kernel.
    pub fn reduce_sum(&self, kernel: &ScanKernel, values: &[f32]) -> Result<f32, CudaError> {
        self.kernel(kernel)?.reduce_sum(values)
    }
}
