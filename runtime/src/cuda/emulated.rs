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
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};

use flexsn_compiler::codegen::cuda::{
    CudaOptions, CudaSource, RowLayout, codegen_scan, number_lines, reduce_passes, shim,
};
use flexsn_compiler::scan::{ScanArgs, ScanKernel, ScanResult};

use super::CudaError;
use super::cache;
use super::device::to_i64;
use super::host::{
    BufferSpec, collect_result, grid_for, input_buffers, launch_scalars, layout_specs,
};

/// The host C++ compiler: program, extra arguments from `$CXX`, first line of `--version`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Cxx {
    /// The compiler executable.
    pub program: String,
    /// Arguments it always gets.
    pub extra_args: Vec<String>,
    /// Its `--version` line (part of the cache key).
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
    let dir = cache::cache_subdir("emulated");
    let lib = Arc::new(load_or_build(dir.as_deref(), &key, tu, &cxx)?);
    libs.lock()
        .unwrap_or_else(|e| e.into_inner())
        .insert(key, lib.clone());
    Ok(lib)
}

/// The library for `tu` (cache key `key`): from the disk cache `dir` when an intact entry is
/// there, else compiled (and cached). It is loaded from a copy in a private temporary folder
/// of bytes whose hash was just checked, so no file that another user could have written, and
/// no corrupt entry, is ever loaded.
fn load_or_build(
    dir: Option<&Path>,
    key: &str,
    tu: &str,
    cxx: &Cxx,
) -> Result<HostLibrary, CudaError> {
    let file = format!("{key}.so");
    let work = tempfile::Builder::new()
        .prefix("flexsn-emu")
        .tempdir()
        .map_err(|e| CudaError::EmuLoad {
            path: std::env::temp_dir().display().to_string(),
            message: format!("cannot create a private temporary folder: {e}"),
        })?;
    let so = work.path().join(&file);
    match dir.and_then(|d| cache::read(d, &file)) {
        Some(bytes) => std::fs::write(&so, bytes).map_err(|e| CudaError::EmuLoad {
            path: so.display().to_string(),
            message: format!("cannot copy the cached library: {e}"),
        })?,
        None => {
            compile_library(cxx, tu, work.path(), &so)?;
            if let (Some(d), Ok(bytes)) = (dir, std::fs::read(&so)) {
                cache::write(d, &file, &bytes);
            }
        }
    }
    // SAFETY: the library was compiled from generated code, now or earlier (a cache entry
    // whose content hash was checked, keyed by the hash of its source and compiler), and sits
    // in a folder only this user can write; it has no load-time side effects beyond
    // zero-initialising its globals.
    let lib = unsafe { libloading::Library::new(&so) }.map_err(|e| CudaError::EmuLoad {
        path: so.display().to_string(),
        message: super::error::chain(&e),
    })?;
    // The temporary folder goes now; the loaded library stays mapped.
    Ok(HostLibrary {
        lib,
        path: dir.map_or(so, |d| d.join(&file)),
    })
}

/// Compiles `tu` into the shared library `so`, with scratch files in `work`.
fn compile_library(cxx: &Cxx, tu: &str, work: &Path, so: &Path) -> Result<(), CudaError> {
    let cpp = work.join("kernel.cpp");
    std::fs::write(&cpp, tu).map_err(|e| CudaError::EmuLoad {
        path: cpp.display().to_string(),
        message: format!("cannot write the C++ source: {e}"),
    })?;
    let out = std::process::Command::new(&cxx.program)
        .args(&cxx.extra_args)
        .args(CXX_FLAGS)
        .arg("-o")
        .arg(so)
        .arg(&cpp)
        .output()
        .map_err(|e| CudaError::CxxCompile {
            compiler: cxx.program.clone(),
            log: format!("could not run the compiler: {e}"),
            numbered_source: String::new(),
        })?;
    if !out.status.success() {
        return Err(CudaError::CxxCompile {
            compiler: cxx.program.clone(),
            log: String::from_utf8_lossy(&out.stderr).into_owned(),
            numbered_source: number_lines(tu),
        });
    }
    Ok(())
}

/// `int flexsn_emu_scan(void* const* args, const long long* pitches, long long T, long long N,
/// unsigned grid, unsigned block)`
type ScanFn = unsafe extern "C" fn(*const *mut c_void, *const i64, i64, i64, u32, u32) -> i32;
/// `int flexsn_emu_reduce(const float* in, float* partial, long long len, unsigned grid)`
type ReduceFn = unsafe extern "C" fn(*const f32, *mut f32, i64, u32) -> i32;

/// One compiled emulated kernel.
#[derive(Debug)]
pub struct EmulatedKernel {
    /// The generated CUDA source.
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

    /// Runs the scan on host data (converted to and from the storage type), in buffers whose
    /// rows are padded like the CUDA backend's own ([`super::DeviceKernel::run_host`]).
    pub fn run(
        &self,
        kernel: &ScanKernel,
        args: &ScanArgs<'_, f32>,
    ) -> Result<ScanResult<f32>, CudaError> {
        self.run_with(kernel, args, RowLayout::Padded)
    }

    /// [`EmulatedKernel::run`] with the rows of every `[T, N]` buffer laid out as `layout`.
    pub fn run_with(
        &self,
        kernel: &ScanKernel,
        args: &ScanArgs<'_, f32>,
        layout: RowLayout,
    ) -> Result<ScanResult<f32>, CudaError> {
        args.check(&kernel.graph)?;
        let src = &self.source;
        let specs = layout_specs(src, kernel, args.t, args.n, layout)?;
        if specs.len() != src.args.len() {
            return Err(CudaError::Buffer {
                name: kernel.graph.name().to_string(),
                message: "the kernel was generated for a different graph".into(),
            });
        }
        let mut bufs = input_buffers(src, &specs, args);
        let ptrs: Vec<*mut c_void> = bufs.iter_mut().map(|b| b.as_mut_ptr()).collect();
        // SAFETY: `args.check` and `layout_specs` sized every buffer for this [T, N] run exactly
        // as the kernel indexes it (sequences T * pitch, states N, params by kind), and
        // `input_buffers` made each that long; the buffers outlive the call.
        unsafe { self.launch(&specs, &ptrs, args.t, args.n) }?;
        Ok(collect_result(src, kernel, &specs, &bufs, args.n))
    }

    /// Runs the scan over `[t, n]` on host buffers at `ptrs`, one per entry of `specs` (from
    /// [`super::host::pitched_specs`] for this kernel and shape), with the specs' row pitches.
    ///
    /// # Safety
    /// Each pointer must address at least its spec's `len` elements of the spec's type (`f32`,
    /// or `u16` bits for 16-bit storage), alive and not aliasing a written buffer for the call.
    pub unsafe fn launch(
        &self,
        specs: &[BufferSpec],
        ptrs: &[*mut c_void],
        t: usize,
        n: usize,
    ) -> Result<(), CudaError> {
        let src = &self.source;
        if specs.len() != src.args.len() || ptrs.len() != specs.len() {
            return Err(CudaError::Buffer {
                name: src.entry.clone(),
                message: format!(
                    "expected {} buffers, got {} specs and {} pointers",
                    src.args.len(),
                    specs.len(),
                    ptrs.len()
                ),
            });
        }
        let grid = grid_for(src, n)?;
        let scalars = launch_scalars(specs, t, n)?;
        // SAFETY: one pointer per kernel argument in `src.args` order, each as long as the
        // kernel indexes it (this function's contract); `scalars` is `T`, `N`, then one pitch
        // per sequence argument, as the entry point reads them.
        let code = unsafe {
            (self.scan)(
                ptrs.as_ptr(),
                scalars[2..].as_ptr(),
                scalars[0],
                scalars[1],
                grid,
                src.block_size,
            )
        };
        if code != 0 {
            return Err(CudaError::EmuRun {
                entry: src.entry.clone(),
                code,
            });
        }
        Ok(())
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

    /// The storage type and math mode kernels are generated with.
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

#[cfg(test)]
mod tests {
    use super::*;

    /// A tiny library whose one function returns `value`.
    fn tu(value: i32) -> String {
        format!("extern \"C\" int flexsn_test_value() {{ return {value}; }}\n")
    }

    fn value_of(lib: &HostLibrary) -> i32 {
        // SAFETY: `flexsn_test_value` is `int(void)` in `tu`.
        let f: unsafe extern "C" fn() -> i32 = unsafe { lib.get("flexsn_test_value") }.unwrap();
        // SAFETY: a plain function without arguments.
        unsafe { f() }
    }

    #[test]
    fn corrupt_or_planted_cache_entries_are_rebuilt_not_loaded() {
        let Ok(cxx) = find_cxx() else {
            eprintln!("skipped: no C++ compiler");
            return;
        };
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let key = cache::key(&[b"cache test"]);
        let entry = d.join(format!("{key}.so"));
        assert_eq!(
            value_of(&load_or_build(Some(d), &key, &tu(7), &cxx).unwrap()),
            7
        );
        assert!(cache::read(d, &format!("{key}.so")).is_some());
        // A planted library (a different one, as a raw file) and a truncated entry: neither
        // is loaded; the library is rebuilt from its source and the entry rewritten.
        let other = d.join("other");
        std::fs::create_dir(&other).unwrap();
        compile_library(&cxx, &tu(13), &other, &other.join("planted.so")).unwrap();
        let planted = std::fs::read(other.join("planted.so")).unwrap();
        let truncated = std::fs::read(&entry).unwrap()[..100].to_vec();
        for bad in [planted, truncated] {
            std::fs::write(&entry, &bad).unwrap();
            assert_eq!(
                value_of(&load_or_build(Some(d), &key, &tu(7), &cxx).unwrap()),
                7
            );
            assert!(cache::read(d, &format!("{key}.so")).is_some());
        }
        // An intact entry is used as is (without the compiler: the source is not even valid).
        assert_eq!(
            value_of(&load_or_build(Some(d), &key, "not C++", &cxx).unwrap()),
            7
        );
    }
}
