//! NVRTC: loading the library, compiling generated CUDA source to PTX or CUBIN, and the module
//! cache (in memory and on disk).
//!
//! # Finding NVRTC
//!
//! `cudarc` opens NVRTC by bare name (`libnvrtc.so`, `libnvrtc.so.12`, ...), so the dynamic
//! loader must find it: either its folder is on `LD_LIBRARY_PATH` *before the process starts*
//! (the loader reads the variable once), or — kinder — set [`NVRTC_PATH_ENV`]
//! (`FLEXSN_NVRTC_PATH`) to the library file itself: it is loaded by full path first, and the
//! later load by bare name finds the already loaded library through its soname.
//!
//! NVRTC from the Python wheel: `pip install nvidia-cuda-nvrtc-cu12`, then
//! `FLEXSN_NVRTC_PATH=$(python3 -c 'import nvidia.cuda_nvrtc, os; print(os.path.join(list(nvidia.cuda_nvrtc.__path__)[0], "lib", "libnvrtc.so.12"))')`.
//! No GPU is needed to compile to PTX.

use std::collections::HashMap;
use std::ffi::{CStr, CString, c_char};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock};

use cudarc::nvrtc::sys;
use flexsn_compiler::codegen::cuda::{CudaSource, MathMode};

use super::CudaError;
use super::cache;
use super::error::guard;

/// Environment variable naming the NVRTC library file to preload.
pub const NVRTC_PATH_ENV: &str = "FLEXSN_NVRTC_PATH";

/// The loaded NVRTC library.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Nvrtc {
    /// `(major, minor)` as NVRTC reports it.
    pub version: (i32, i32),
    /// The file named by `FLEXSN_NVRTC_PATH`, when that is how it was found.
    pub preloaded: Option<PathBuf>,
    /// Virtual architectures NVRTC can target (`compute_XY` as `XY`), ascending.
    pub supported_archs: Vec<i32>,
}

/// Preloads `FLEXSN_NVRTC_PATH` (if set) by full path, keeping it loaded for the process.
fn preload_from_env() -> Result<Option<PathBuf>, String> {
    let Some(path) = std::env::var_os(NVRTC_PATH_ENV).filter(|p| !p.is_empty()) else {
        return Ok(None);
    };
    let path = PathBuf::from(path);
    #[cfg(unix)]
    let lib = {
        use libloading::os::unix::{Library, RTLD_GLOBAL, RTLD_NOW};
        // SAFETY: loading NVRTC runs its initialisers, which is what using it requires anyway.
        unsafe { Library::open(Some(&path), RTLD_NOW | RTLD_GLOBAL) }.map(libloading::Library::from)
    };
    #[cfg(not(unix))]
    // SAFETY: as above.
    let lib = unsafe { libloading::Library::new(&path) };
    match lib {
        Ok(lib) => {
            // Keep it loaded for the life of the process: cudarc's handle will refer to it.
            std::mem::forget(lib);
            Ok(Some(path))
        }
        Err(e) => Err(format!(
            "{NVRTC_PATH_ENV}={} could not be loaded: {}",
            path.display(),
            super::error::chain(&e)
        )),
    }
}

/// Loads NVRTC once per process (see the [module docs](self)) and reports its version.
pub fn nvrtc() -> Result<&'static Nvrtc, CudaError> {
    static LOADED: OnceLock<Result<Nvrtc, String>> = OnceLock::new();
    LOADED
        .get_or_init(|| {
            let preloaded = preload_from_env()?;
            // SAFETY: only tries to dlopen candidate names; no symbols are called.
            let present =
                std::panic::catch_unwind(|| unsafe { sys::is_culib_present() }).unwrap_or(false);
            if !present {
                let names = cudarc::get_lib_name_candidates("nvrtc");
                return Err(format!(
                    "no NVRTC library on the loader path (tried {}); {NVRTC_PATH_ENV} is {}",
                    names.join(", "),
                    match &preloaded {
                        Some(p) => format!("{} (loaded, but not found by soname)", p.display()),
                        None => "not set".into(),
                    }
                ));
            }
            let version = guard("nvrtcVersion", || {
                let (mut major, mut minor) = (0, 0);
                // SAFETY: two valid out-pointers.
                let r = unsafe { sys::nvrtcVersion(&mut major, &mut minor) };
                check(r, "nvrtcVersion")?;
                Ok((major, minor))
            })
            .map_err(|e| e.to_string())?;
            let supported_archs = guard("nvrtcGetSupportedArchs", || {
                let mut count = 0;
                // SAFETY: a valid out-pointer.
                check(
                    unsafe { sys::nvrtcGetNumSupportedArchs(&mut count) },
                    "nvrtcGetNumSupportedArchs",
                )?;
                let mut archs = vec![0i32; count.max(0) as usize];
                // SAFETY: `archs` has room for `count` entries.
                check(
                    unsafe { sys::nvrtcGetSupportedArchs(archs.as_mut_ptr()) },
                    "nvrtcGetSupportedArchs",
                )?;
                archs.sort_unstable();
                Ok(archs)
            })
            .unwrap_or_default();
            Ok(Nvrtc {
                version,
                preloaded,
                supported_archs,
            })
        })
        .as_ref()
        .map_err(|detail| CudaError::NoNvrtc {
            detail: detail.clone(),
        })
}

fn check(r: sys::nvrtcResult, call: &'static str) -> Result<(), CudaError> {
    if r == sys::nvrtcResult::NVRTC_SUCCESS {
        return Ok(());
    }
    // SAFETY: nvrtcGetErrorString returns a static NUL-terminated string (or null).
    let msg = unsafe {
        let p = sys::nvrtcGetErrorString(r);
        if p.is_null() {
            format!("{r:?}")
        } else {
            CStr::from_ptr(p).to_string_lossy().into_owned()
        }
    };
    Err(CudaError::Nvrtc { call, message: msg })
}

/// What NVRTC compiles for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Target {
    /// PTX for the virtual architecture `compute_XY` (the driver JIT-compiles it).
    Ptx(i32),
    /// CUBIN for the real architecture `sm_XY`.
    Cubin(i32),
}

impl Target {
    /// The `--gpu-architecture` value.
    pub fn arch_flag(self) -> String {
        match self {
            Target::Ptx(a) => format!("compute_{a}"),
            Target::Cubin(a) => format!("sm_{a}"),
        }
    }
}

/// A compiled module image.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Image {
    Ptx(String),
    Cubin(Vec<u8>),
}

/// The NVRTC options for a source's math mode and target.
pub fn options(src: &CudaSource, target: Target) -> Vec<String> {
    let mut o = vec![
        format!("--gpu-architecture={}", target.arch_flag()),
        "--std=c++17".to_string(),
    ];
    match src.math {
        // No FMA contraction: the kernel rounds every operation like the interpreter.
        MathMode::Precise => o.push("--fmad=false".into()),
        MathMode::Fast => o.extend(
            [
                "--fmad=true",
                "--ftz=true",
                "--prec-div=false",
                "--prec-sqrt=false",
            ]
            .map(String::from),
        ),
    }
    o
}

/// Compiles `src` with NVRTC (no cache). A rejected source gives [`CudaError::Compile`] with
/// NVRTC's log and the numbered source.
pub fn compile_uncached(src: &CudaSource, target: Target) -> Result<Image, CudaError> {
    nvrtc()?;
    let opts = options(src, target);
    guard("NVRTC compile", || {
        let code = CString::new(src.code.as_bytes()).map_err(|_| CudaError::Buffer {
            name: src.entry.clone(),
            message: "generated source contains a NUL byte".into(),
        })?;
        let name = CString::new(format!("{}.cu", src.entry)).unwrap_or_default();
        let mut prog: sys::nvrtcProgram = std::ptr::null_mut();
        // SAFETY: valid NUL-terminated strings that outlive the program; no headers.
        let r = unsafe {
            sys::nvrtcCreateProgram(
                &mut prog,
                code.as_ptr(),
                name.as_ptr(),
                0,
                std::ptr::null(),
                std::ptr::null(),
            )
        };
        check(r, "nvrtcCreateProgram")?;
        let result = compile_program(prog, &opts, src, target);
        // SAFETY: `prog` came from nvrtcCreateProgram and is destroyed once.
        unsafe { sys::nvrtcDestroyProgram(&mut prog) };
        result
    })
}

fn compile_program(
    prog: sys::nvrtcProgram,
    opts: &[String],
    src: &CudaSource,
    target: Target,
) -> Result<Image, CudaError> {
    let c_opts: Vec<CString> = opts
        .iter()
        .map(|o| CString::new(o.as_bytes()).unwrap_or_default())
        .collect();
    let ptrs: Vec<*const c_char> = c_opts.iter().map(|o| o.as_ptr()).collect();
    // SAFETY: `prog` is a live program; `ptrs` holds `ptrs.len()` valid C strings.
    let r = unsafe { sys::nvrtcCompileProgram(prog, ptrs.len() as i32, ptrs.as_ptr()) };
    if r != sys::nvrtcResult::NVRTC_SUCCESS {
        let log = program_log(prog).unwrap_or_else(|e| format!("(no log: {e})"));
        return Err(CudaError::Compile {
            entry: src.entry.clone(),
            options: opts.to_vec(),
            log,
            numbered_source: src.numbered(),
        });
    }
    match target {
        Target::Ptx(_) => {
            let mut size = 0usize;
            // SAFETY: live, compiled program; valid out-pointer.
            check(
                unsafe { sys::nvrtcGetPTXSize(prog, &mut size) },
                "nvrtcGetPTXSize",
            )?;
            let mut buf = vec![0u8; size];
            // SAFETY: `buf` has `size` bytes as NVRTC asked.
            check(
                unsafe { sys::nvrtcGetPTX(prog, buf.as_mut_ptr().cast()) },
                "nvrtcGetPTX",
            )?;
            while buf.last() == Some(&0) {
                buf.pop();
            }
            Ok(Image::Ptx(String::from_utf8_lossy(&buf).into_owned()))
        }
        Target::Cubin(_) => {
            let mut size = 0usize;
            // SAFETY: live, compiled program; valid out-pointer.
            check(
                unsafe { sys::nvrtcGetCUBINSize(prog, &mut size) },
                "nvrtcGetCUBINSize",
            )?;
            let mut buf = vec![0u8; size];
            // SAFETY: `buf` has `size` bytes as NVRTC asked.
            check(
                unsafe { sys::nvrtcGetCUBIN(prog, buf.as_mut_ptr().cast()) },
                "nvrtcGetCUBIN",
            )?;
            Ok(Image::Cubin(buf))
        }
    }
}

fn program_log(prog: sys::nvrtcProgram) -> Result<String, CudaError> {
    let mut size = 0usize;
    // SAFETY: live program; valid out-pointer.
    check(
        unsafe { sys::nvrtcGetProgramLogSize(prog, &mut size) },
        "nvrtcGetProgramLogSize",
    )?;
    let mut buf = vec![0u8; size.max(1)];
    // SAFETY: `buf` has at least `size` bytes.
    check(
        unsafe { sys::nvrtcGetProgramLog(prog, buf.as_mut_ptr().cast()) },
        "nvrtcGetProgramLog",
    )?;
    while buf.last() == Some(&0) {
        buf.pop();
    }
    Ok(String::from_utf8_lossy(&buf).into_owned())
}

/// Hit counters of a [`ModuleCache`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CacheStats {
    pub memory_hits: u64,
    pub disk_hits: u64,
    pub compiles: u64,
}

/// Compiled modules, cached in memory and on disk. Key: hash of the source, the NVRTC options
/// (which include the architecture) and the NVRTC version.
#[derive(Debug)]
pub struct ModuleCache {
    dir: Option<PathBuf>,
    memory: Mutex<HashMap<String, Arc<Image>>>,
    stats: Mutex<CacheStats>,
}

impl ModuleCache {
    /// A cache in the default location (`$FLEXSN_CACHE_DIR/cuda`, see [`super::cache`]).
    pub fn new() -> Self {
        ModuleCache::with_dir(cache::cache_subdir("cuda"))
    }

    /// A cache on disk in `dir` (memory only if `None`).
    pub fn with_dir(dir: Option<PathBuf>) -> Self {
        if let Some(d) = &dir {
            let _ = std::fs::create_dir_all(d);
        }
        ModuleCache {
            dir,
            memory: Mutex::new(HashMap::new()),
            stats: Mutex::new(CacheStats::default()),
        }
    }

    pub fn dir(&self) -> Option<&std::path::Path> {
        self.dir.as_deref()
    }

    pub fn stats(&self) -> CacheStats {
        *self.stats.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn bump(&self, f: impl FnOnce(&mut CacheStats)) {
        f(&mut self.stats.lock().unwrap_or_else(|e| e.into_inner()));
    }

    /// The compiled image of `src` for `target`, compiling only on a miss.
    pub fn get(&self, src: &CudaSource, target: Target) -> Result<Arc<Image>, CudaError> {
        let nv = nvrtc()?;
        let opts = options(src, target);
        let key = cache::key(&[
            src.code.as_bytes(),
            opts.join(" ").as_bytes(),
            format!("nvrtc {}.{}", nv.version.0, nv.version.1).as_bytes(),
        ]);
        if let Some(img) = self
            .memory
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&key)
        {
            self.bump(|s| s.memory_hits += 1);
            return Ok(img.clone());
        }
        let file = match target {
            Target::Ptx(_) => format!("{key}.ptx"),
            Target::Cubin(_) => format!("{key}.cubin"),
        };
        let from_disk = self
            .dir
            .as_ref()
            .and_then(|d| cache::read(d, &file))
            .and_then(|b| match target {
                Target::Ptx(_) => String::from_utf8(b).ok().map(Image::Ptx),
                Target::Cubin(_) => Some(Image::Cubin(b)),
            });
        let img = match from_disk {
            Some(img) => {
                self.bump(|s| s.disk_hits += 1);
                img
            }
            None => {
                let img = compile_uncached(src, target)?;
                self.bump(|s| s.compiles += 1);
                if let Some(d) = &self.dir {
                    let bytes: &[u8] = match &img {
                        Image::Ptx(p) => p.as_bytes(),
                        Image::Cubin(c) => c,
                    };
                    cache::write(d, &file, bytes);
                }
                img
            }
        };
        let img = Arc::new(img);
        self.memory
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(key, img.clone());
        Ok(img)
    }
}

impl Default for ModuleCache {
    fn default() -> Self {
        ModuleCache::new()
    }
}

/// PTX of `src` for `compute_XY` (for inspection and the CI check); compiled without caching.
pub fn ptx(src: &CudaSource, compute_arch: i32) -> Result<String, CudaError> {
    match compile_uncached(src, Target::Ptx(compute_arch))? {
        Image::Ptx(p) => Ok(p),
        Image::Cubin(_) => Err(CudaError::Nvrtc {
            call: "nvrtcGetPTX",
            message: "NVRTC returned a CUBIN for a PTX target".into(),
        }),
    }
}

/// The best target for a device of compute capability `(major, minor)`: CUBIN for `sm_XY` when
/// NVRTC supports it, else PTX for the newest virtual architecture NVRTC knows that the device
/// can run (the driver JIT-compiles it).
pub fn target_for_device(nv: &Nvrtc, cc: (i32, i32)) -> Target {
    let arch = cc.0 * 10 + cc.1;
    if nv.supported_archs.is_empty() || nv.supported_archs.contains(&arch) {
        return Target::Cubin(arch);
    }
    let best = nv
        .supported_archs
        .iter()
        .copied()
        .filter(|&a| a <= arch)
        .max()
        .unwrap_or(arch);
    Target::Ptx(best)
}
