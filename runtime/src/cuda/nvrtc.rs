//! NVRTC: loading the library, compiling generated CUDA source to PTX or CUBIN, and the module
//! cache (in memory and on disk).
//!
//! # Finding NVRTC
//!
//! NVRTC is loaded at run time (the crate builds and runs without it), from the first of:
//!
//! 1. the file named by [`NVRTC_PATH_ENV`] (`FLEXSN_NVRTC_PATH`), e.g. the Python wheel's
//!    `site-packages/nvidia/cuda_nvrtc/lib/libnvrtc.so.12`;
//! 2. the loader path, by name: `libnvrtc.so.13`, `libnvrtc.so.12`, `libnvrtc.so.11.2`, then
//!    `libnvrtc.so` (`LD_LIBRARY_PATH` must hold the folder *before the process starts*: the
//!    loader reads it once);
//! 3. `$CUDA_PATH/lib64`, `$CUDA_HOME/lib64` and `/usr/local/cuda/lib64`.
//!
//! Where a driver is installed, an NVRTC of a newer CUDA major version than the driver
//! (`cuDriverGetVersion`) is passed over for the next candidate: its CUBIN and PTX do not load on
//! that driver. If only such an NVRTC is found it is still loaded (PTX inspection works without a
//! device), and opening a device fails with [`CudaError::NvrtcNewerThanDriver`], naming both
//! versions. A device whose architecture NVRTC cannot target is [`CudaError::UnsupportedArch`].
//!
//! flexsn binds the dozen NVRTC functions it needs itself (with `libloading`) rather than
//! through `cudarc`'s bindings, which only look for CUDA 12 and older file names and panic when a
//! symbol is missing; a missing library or symbol is a [`CudaError::NoNvrtc`] here.
//!
//! NVRTC from the Python wheel: `pip install nvidia-cuda-nvrtc-cu12`, then
//! `export FLEXSN_NVRTC_PATH=$(python3 -c 'import nvidia.cuda_nvrtc, os; print(os.path.join(list(nvidia.cuda_nvrtc.__path__)[0], "lib", "libnvrtc.so.12"))')`
//! (`scripts/ci-nvrtc.sh` does this). No GPU is needed to compile to PTX.

use std::collections::HashMap;
use std::ffi::{CStr, CString, c_char, c_int, c_void};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock};

use flexsn_compiler::codegen::cuda::mixing::MixingSource;
use flexsn_compiler::codegen::cuda::{CudaSource, MathMode, number_lines};

use super::CudaError;
use super::cache;
use super::error::chain;

/// Environment variable naming the NVRTC library file to load.
pub const NVRTC_PATH_ENV: &str = "FLEXSN_NVRTC_PATH";

/// The loaded NVRTC library.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Nvrtc {
    /// `(major, minor)` as NVRTC reports it.
    pub version: (i32, i32),
    /// Where it was loaded from: a file path, or the name the loader resolved.
    pub source: String,
    /// Whether it came from `FLEXSN_NVRTC_PATH`.
    pub from_env: bool,
    /// Real architectures NVRTC can target (`sm_XY` as `XY`), ascending.
    pub supported_archs: Vec<i32>,
}

type Prog = *mut c_void;
type Res = c_int;

/// The NVRTC entry points flexsn uses (C API of NVRTC 11.2 and later).
struct Api {
    _lib: libloading::Library,
    info: Nvrtc,
    create: unsafe extern "C" fn(
        *mut Prog,
        *const c_char,
        *const c_char,
        c_int,
        *const *const c_char,
        *const *const c_char,
    ) -> Res,
    compile: unsafe extern "C" fn(Prog, c_int, *const *const c_char) -> Res,
    destroy: unsafe extern "C" fn(*mut Prog) -> Res,
    ptx_size: unsafe extern "C" fn(Prog, *mut usize) -> Res,
    ptx: unsafe extern "C" fn(Prog, *mut c_char) -> Res,
    cubin_size: unsafe extern "C" fn(Prog, *mut usize) -> Res,
    cubin: unsafe extern "C" fn(Prog, *mut c_char) -> Res,
    log_size: unsafe extern "C" fn(Prog, *mut usize) -> Res,
    log: unsafe extern "C" fn(Prog, *mut c_char) -> Res,
    error_string: unsafe extern "C" fn(Res) -> *const c_char,
}

// SAFETY: the NVRTC API is thread-safe for distinct programs (NVIDIA documents concurrent use of
// separate nvrtcProgram objects); the struct holds only function pointers and the library.
unsafe impl Send for Api {}
unsafe impl Sync for Api {}

/// Candidate files, in search order (see the [module docs](self)).
fn candidates() -> Vec<(String, bool)> {
    let mut c = Vec::new();
    if let Some(p) = std::env::var_os(NVRTC_PATH_ENV).filter(|p| !p.is_empty()) {
        c.push((PathBuf::from(p).display().to_string(), true));
        return c;
    }
    let names: &[&str] = if cfg!(windows) {
        &[
            "nvrtc64_130_0.dll",
            "nvrtc64_120_0.dll",
            "nvrtc64_112_0.dll",
        ]
    } else if cfg!(target_os = "macos") {
        &["libnvrtc.dylib"]
    } else {
        &[
            "libnvrtc.so.13",
            "libnvrtc.so.12",
            "libnvrtc.so.11.2",
            "libnvrtc.so",
        ]
    };
    for n in names {
        c.push((n.to_string(), false));
    }
    let mut dirs: Vec<PathBuf> = ["CUDA_PATH", "CUDA_HOME"]
        .iter()
        .filter_map(|v| std::env::var_os(v).filter(|d| !d.is_empty()))
        .map(|d| PathBuf::from(d).join("lib64"))
        .collect();
    dirs.push(PathBuf::from("/usr/local/cuda/lib64"));
    for d in dirs {
        for n in names {
            let p = d.join(n);
            if p.exists() {
                c.push((p.display().to_string(), false));
            }
        }
    }
    c
}

/// Looks up `name` in `lib` as a function pointer of type `T`.
///
/// # Safety
/// `T` must be the symbol's real signature.
unsafe fn sym<T: Copy>(lib: &libloading::Library, name: &str) -> Result<T, String> {
    // SAFETY: forwarded to the caller.
    unsafe { lib.get::<T>(name.as_bytes()) }
        .map(|s| *s)
        .map_err(|e| format!("symbol `{name}` missing: {}", chain(&e)))
}

/// The CUDA major version of the installed driver, when there is one.
fn driver_major() -> Option<i32> {
    super::device::driver_version().ok().map(|v| v.0)
}

fn load_api() -> Result<Api, String> {
    let driver = driver_major();
    let mut tried = Vec::new();
    // The first NVRTC newer than the driver, used only if nothing else is found.
    let mut too_new = None;
    for (cand, from_env) in candidates() {
        // SAFETY: loading NVRTC runs its initialisers, which is what using it requires.
        let lib = match unsafe { libloading::Library::new(&cand) } {
            Ok(lib) => lib,
            Err(e) if from_env => {
                return Err(format!(
                    "{NVRTC_PATH_ENV}={cand} could not be loaded: {}",
                    chain(&e)
                ));
            }
            Err(_) => {
                tried.push(cand);
                continue;
            }
        };
        let api = bind(lib, cand.clone(), from_env)?;
        match driver {
            Some(d) if !from_env && api.info.version.0 > d => {
                tried.push(format!(
                    "{cand} (NVRTC {}.{}, newer than the driver)",
                    api.info.version.0, api.info.version.1
                ));
                too_new.get_or_insert(api);
            }
            _ => return Ok(api),
        }
    }
    too_new.ok_or_else(|| {
        format!(
            "no NVRTC library found (tried {}; {NVRTC_PATH_ENV} is not set)",
            tried.join(", ")
        )
    })
}

/// Binds the entry points of a loaded NVRTC library.
fn bind(lib: libloading::Library, source: String, from_env: bool) -> Result<Api, String> {
    // SAFETY (all lookups): the types are the NVRTC C API's signatures (nvrtc.h, CUDA 11.2+).
    unsafe {
        let version_fn: unsafe extern "C" fn(*mut c_int, *mut c_int) -> Res =
            sym(&lib, "nvrtcVersion")?;
        let (mut major, mut minor) = (0, 0);
        if version_fn(&mut major, &mut minor) != 0 {
            return Err(format!("{source}: nvrtcVersion failed"));
        }
        let mut supported_archs = Vec::new();
        let num: Result<unsafe extern "C" fn(*mut c_int) -> Res, _> =
            sym(&lib, "nvrtcGetNumSupportedArchs");
        let get: Result<unsafe extern "C" fn(*mut c_int) -> Res, _> =
            sym(&lib, "nvrtcGetSupportedArchs");
        if let (Ok(num), Ok(get)) = (num, get) {
            let mut count = 0;
            if num(&mut count) == 0 && count > 0 {
                let mut archs = vec![0; count as usize];
                if get(archs.as_mut_ptr()) == 0 {
                    archs.sort_unstable();
                    supported_archs = archs;
                }
            }
        }
        Ok(Api {
            create: sym(&lib, "nvrtcCreateProgram")?,
            compile: sym(&lib, "nvrtcCompileProgram")?,
            destroy: sym(&lib, "nvrtcDestroyProgram")?,
            ptx_size: sym(&lib, "nvrtcGetPTXSize")?,
            ptx: sym(&lib, "nvrtcGetPTX")?,
            cubin_size: sym(&lib, "nvrtcGetCUBINSize")?,
            cubin: sym(&lib, "nvrtcGetCUBIN")?,
            log_size: sym(&lib, "nvrtcGetProgramLogSize")?,
            log: sym(&lib, "nvrtcGetProgramLog")?,
            error_string: sym(&lib, "nvrtcGetErrorString")?,
            info: Nvrtc {
                version: (major, minor),
                source,
                from_env,
                supported_archs,
            },
            _lib: lib,
        })
    }
}

fn api() -> Result<&'static Api, CudaError> {
    static API: OnceLock<Result<Api, String>> = OnceLock::new();
    API.get_or_init(load_api)
        .as_ref()
        .map_err(|detail| CudaError::NoNvrtc {
            detail: detail.clone(),
        })
}

/// Loads NVRTC once per process (see the [module docs](self)) and describes it.
pub fn nvrtc() -> Result<&'static Nvrtc, CudaError> {
    api().map(|a| &a.info)
}

impl Api {
    fn check(&self, r: Res, call: &'static str) -> Result<(), CudaError> {
        if r == 0 {
            return Ok(());
        }
        // SAFETY: nvrtcGetErrorString returns a static NUL-terminated string (or null).
        let msg = unsafe {
            let p = (self.error_string)(r);
            if p.is_null() {
                format!("error {r}")
            } else {
                CStr::from_ptr(p).to_string_lossy().into_owned()
            }
        };
        Err(CudaError::Nvrtc { call, message: msg })
    }

    /// Reads a buffer whose size comes from `size_fn` and contents from `get_fn`.
    fn read(
        &self,
        prog: Prog,
        size_fn: unsafe extern "C" fn(Prog, *mut usize) -> Res,
        get_fn: unsafe extern "C" fn(Prog, *mut c_char) -> Res,
        call: &'static str,
    ) -> Result<Vec<u8>, CudaError> {
        let mut size = 0usize;
        // SAFETY: live program; valid out-pointer.
        self.check(unsafe { size_fn(prog, &mut size) }, call)?;
        let mut buf = vec![0u8; size.max(1)];
        // SAFETY: `buf` holds at least the `size` bytes NVRTC asked for.
        self.check(unsafe { get_fn(prog, buf.as_mut_ptr().cast()) }, call)?;
        buf.truncate(size);
        Ok(buf)
    }
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
    /// PTX text.
    Ptx(String),
    /// A CUBIN binary.
    Cubin(Vec<u8>),
}

/// A generated source NVRTC can compile: its text, a program name (for logs and errors) and the
/// math mode, which picks the options.
pub trait NvrtcSource {
    /// The CUDA source.
    fn code(&self) -> &str;
    /// The program's name in NVRTC's messages.
    fn program_name(&self) -> &str;
    /// Precise or fast math (selects the NVRTC options).
    fn math(&self) -> MathMode;
}

impl NvrtcSource for CudaSource {
    fn code(&self) -> &str {
        &self.code
    }
    fn program_name(&self) -> &str {
        &self.entry
    }
    fn math(&self) -> MathMode {
        self.math
    }
}

impl NvrtcSource for MixingSource {
    fn code(&self) -> &str {
        &self.code
    }
    fn program_name(&self) -> &str {
        &self.forward_entry
    }
    fn math(&self) -> MathMode {
        self.math
    }
}

/// The NVRTC options for a source's math mode and target.
pub fn options(src: &impl NvrtcSource, target: Target) -> Vec<String> {
    let mut o = vec![
        format!("--gpu-architecture={}", target.arch_flag()),
        "--std=c++17".to_string(),
    ];
    match src.math() {
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
pub fn compile_uncached(src: &impl NvrtcSource, target: Target) -> Result<Image, CudaError> {
    let api = api()?;
    let opts = options(src, target);
    let code = CString::new(src.code().as_bytes()).map_err(|_| CudaError::Buffer {
        name: src.program_name().to_string(),
        message: "generated source contains a NUL byte".into(),
    })?;
    let name = CString::new(format!("{}.cu", src.program_name())).unwrap_or_default();
    let mut prog: Prog = std::ptr::null_mut();
    // SAFETY: valid NUL-terminated strings that outlive the program; no headers.
    let r = unsafe {
        (api.create)(
            &mut prog,
            code.as_ptr(),
            name.as_ptr(),
            0,
            std::ptr::null(),
            std::ptr::null(),
        )
    };
    api.check(r, "nvrtcCreateProgram")?;
    let result = compile_program(api, prog, &opts, src, target);
    // SAFETY: `prog` came from nvrtcCreateProgram and is destroyed once.
    unsafe { (api.destroy)(&mut prog) };
    result
}

fn compile_program(
    api: &Api,
    prog: Prog,
    opts: &[String],
    src: &impl NvrtcSource,
    target: Target,
) -> Result<Image, CudaError> {
    let c_opts: Vec<CString> = opts
        .iter()
        .map(|o| CString::new(o.as_bytes()).unwrap_or_default())
        .collect();
    let ptrs: Vec<*const c_char> = c_opts.iter().map(|o| o.as_ptr()).collect();
    // SAFETY: `prog` is a live program; `ptrs` holds `ptrs.len()` valid C strings.
    let r = unsafe { (api.compile)(prog, ptrs.len() as c_int, ptrs.as_ptr()) };
    if r != 0 {
        let log = api
            .read(prog, api.log_size, api.log, "nvrtcGetProgramLog")
            .map(|b| {
                String::from_utf8_lossy(&b)
                    .trim_end_matches('\0')
                    .to_string()
            })
            .unwrap_or_else(|e| format!("(no log: {e})"));
        return Err(CudaError::Compile {
            entry: src.program_name().to_string(),
            options: opts.to_vec(),
            log,
            numbered_source: number_lines(src.code()),
        });
    }
    match target {
        Target::Ptx(_) => {
            let mut b = api.read(prog, api.ptx_size, api.ptx, "nvrtcGetPTX")?;
            while b.last() == Some(&0) {
                b.pop();
            }
            Ok(Image::Ptx(String::from_utf8_lossy(&b).into_owned()))
        }
        Target::Cubin(_) => Ok(Image::Cubin(api.read(
            prog,
            api.cubin_size,
            api.cubin,
            "nvrtcGetCUBIN",
        )?)),
    }
}

/// Hit counters of a [`ModuleCache`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CacheStats {
    /// Compilations served from memory.
    pub memory_hits: u64,
    /// Compilations served from the disk cache.
    pub disk_hits: u64,
    /// NVRTC compilations run.
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

    /// The disk cache's folder, if any.
    pub fn dir(&self) -> Option<&std::path::Path> {
        self.dir.as_deref()
    }

    /// Hits and compilations so far.
    pub fn stats(&self) -> CacheStats {
        *self.stats.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn bump(&self, f: impl FnOnce(&mut CacheStats)) {
        f(&mut self.stats.lock().unwrap_or_else(|e| e.into_inner()));
    }

    /// The compiled image of `src` for `target`, compiling only on a miss.
    pub fn get(&self, src: &impl NvrtcSource, target: Target) -> Result<Arc<Image>, CudaError> {
        let nv = nvrtc()?;
        let opts = options(src, target);
        let key = cache::key(&[
            src.code().as_bytes(),
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
pub fn ptx(src: &impl NvrtcSource, compute_arch: i32) -> Result<String, CudaError> {
    match compile_uncached(src, Target::Ptx(compute_arch))? {
        Image::Ptx(p) => Ok(p),
        Image::Cubin(_) => Err(CudaError::Nvrtc {
            call: "nvrtcGetPTX",
            message: "NVRTC returned a CUBIN for a PTX target".into(),
        }),
    }
}

/// The target for a device of compute capability `(major, minor)` under a driver supporting CUDA
/// `driver` (`None`: not known, no check): CUBIN for `sm_XY` when NVRTC supports it; for a device
/// newer than NVRTC knows, PTX for the newest virtual architecture NVRTC has (the driver
/// JIT-compiles it, so NVRTC must not be newer than the driver). An NVRTC of a newer major
/// version than the driver, or a device older than every architecture NVRTC supports, is an
/// error.
pub fn target_for_device(
    nv: &Nvrtc,
    cc: (i32, i32),
    driver: Option<(i32, i32)>,
) -> Result<Target, CudaError> {
    let newer = |detail: String| CudaError::NvrtcNewerThanDriver {
        nvrtc: nv.version,
        nvrtc_source: nv.source.clone(),
        driver: driver.unwrap_or_default(),
        detail,
    };
    if let Some(d) = driver
        && nv.version.0 > d.0
    {
        return Err(newer(
            "the CUBIN and PTX it produces do not load on this driver".into(),
        ));
    }
    let arch = cc.0 * 10 + cc.1;
    if nv.supported_archs.is_empty() || nv.supported_archs.contains(&arch) {
        return Ok(Target::Cubin(arch));
    }
    let Some(best) = nv
        .supported_archs
        .iter()
        .copied()
        .filter(|&a| a <= arch)
        .max()
    else {
        return Err(CudaError::UnsupportedArch {
            arch,
            nvrtc: nv.version,
            supported: nv.supported_archs.clone(),
        });
    };
    if let Some(d) = driver
        && nv.version > d
    {
        return Err(newer(format!(
            "sm_{arch} is newer than NVRTC knows, so it needs PTX, which the driver only JIT-compiles from an NVRTC no newer than itself"
        )));
    }
    Ok(Target::Ptx(best))
}
