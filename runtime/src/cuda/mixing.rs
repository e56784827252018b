//! The PSN time-mixing kernels ([`flexsn_compiler::codegen::cuda::mixing`]) on the CUDA
//! backends: emulated (host C++) and real (NVRTC + driver).
//!
//! Both take host slices: `weight` `[R, C]`, `bias` `[R]`, `x` `[C, N]` (and backward `grad_spike`
//! `[R, N]`), and give spikes `[R, N]` or [`MixGradients`]. [`DeviceMixing`] also runs on device
//! buffers, for training loops that keep data on the GPU and for benchmarks. Shapes are checked
//! before any kernel runs.

use std::collections::HashMap;
use std::ffi::c_void;
use std::sync::{Arc, Mutex, OnceLock};

use cudarc::driver::{
    CudaFunction, CudaModule, CudaSlice, CudaStream, DevicePtr, LaunchConfig, result,
};
use flexsn_compiler::codegen::cuda::mixing::{
    MixingSource, MixingSpec, WGRAD_BLOCK, codegen_mixing, mixing_key,
};
use flexsn_compiler::codegen::cuda::{ArgType, CudaOptions, StorageDtype, shim};
use flexsn_compiler::scan::ShapeError;

use super::borrowed::{BorrowedBuf, CallerStream, ContextScope};
use super::device::check_borrowed;
use super::emulated::{HostLibrary, compile_host_library};
use super::error::{driver_err, guard};
use super::host::HostBuf;
use super::launch::{SyncMode, launch_raw};
use super::{CudaDevice, CudaError, DeviceBuf, EmulatedCuda};

/// Gradients of a mixing: `x` `[C, N]`, `weight` `[R, C]`, `bias` `[R]`.
#[derive(Clone, Debug, PartialEq)]
pub struct MixGradients {
    /// Gradient of the input `[cols, N]`.
    pub x: Vec<f32>,
    /// Gradient of the weight `[rows, cols]`.
    pub weight: Vec<f32>,
    /// Gradient of the bias `[rows]`.
    pub bias: Vec<f32>,
}

/// A mixing's kernels on one of the CUDA backends, on host slices: `weight` `[R, C]`, `bias`
/// `[R]`, `x` `[C, N]`, `grad_spike` `[R, N]`. Shapes are checked before anything runs.
pub trait MixingKernels {
    /// The generated source the kernels come from.
    fn source(&self) -> &MixingSource;

    /// Spikes `[R, N]` of `x`, rounded through the storage type.
    fn forward(
        &self,
        weight: &[f32],
        bias: &[f32],
        x: &[f32],
        n: usize,
    ) -> Result<Vec<f32>, CudaError>;

    /// Gradients of `sum(grad_spike · S)` with respect to `x`, the weight and the bias.
    fn backward(
        &self,
        weight: &[f32],
        bias: &[f32],
        x: &[f32],
        grad_spike: &[f32],
        n: usize,
    ) -> Result<MixGradients, CudaError>;
}

fn buffer_err(name: &str, expected: usize, got: usize) -> CudaError {
    CudaError::Buffer {
        name: name.to_string(),
        message: format!("expected {expected} elements, got {got}"),
    }
}

fn check_len(name: &str, expected: usize, got: usize) -> Result<(), CudaError> {
    if expected == got {
        Ok(())
    } else {
        Err(buffer_err(name, expected, got))
    }
}

/// `(R·N, C·N)`, checked for overflow (`n > 0`).
fn mix_sizes(spec: &MixingSpec, n: usize) -> Result<(usize, usize), CudaError> {
    if n == 0 {
        return Err(ShapeError::NoNeurons.into());
    }
    let too_large = || CudaError::TooLarge(format!("{} steps of N = {n} neurons", spec.rows));
    let rn = spec.rows.checked_mul(n).ok_or_else(too_large)?;
    let cn = spec.cols.checked_mul(n).ok_or_else(too_large)?;
    i64::try_from(rn.max(cn)).map_err(|_| too_large())?;
    Ok((rn, cn))
}

/// Checks the parameters and an `[steps, N]` buffer; returns `(R·N, C·N)`.
fn check_shapes(
    spec: &MixingSpec,
    weight: &[f32],
    bias: &[f32],
    x_len: usize,
    n: usize,
) -> Result<(usize, usize), CudaError> {
    let (rn, cn) = mix_sizes(spec, n)?;
    check_len("weight", spec.rows * spec.cols, weight.len())?;
    check_len("bias", spec.rows, bias.len())?;
    check_len("x", cn, x_len)?;
    Ok((rn, cn))
}

fn grid_u32(blocks: u64, what: &str) -> Result<u32, CudaError> {
    u32::try_from(blocks).map_err(|_| CudaError::TooLarge(format!("{blocks} blocks for {what}")))
}

// =============================================================================================
// Emulated

/// `int (W, b, x, spike, N, grid, block)`; storage pointers are `void*` (f32 or u16 bits).
type FwdFn =
    unsafe extern "C" fn(*const f32, *const f32, *const c_void, *mut c_void, i64, u32, u32) -> i32;
/// `int (W, b, x, grad_spike, grad_x, grad_h, N, grid, block)`.
type BwdFn = unsafe extern "C" fn(
    *const f32,
    *const f32,
    *const c_void,
    *const c_void,
    *mut c_void,
    *mut f32,
    i64,
    u32,
    u32,
) -> i32;
/// `int (grad_h, x, partial, N, chunks, groups)`.
type WgradFn = unsafe extern "C" fn(*const f32, *const c_void, *mut f32, i64, u32, u32) -> i32;
/// `int (partial, out, chunks, grid)`.
type ReduceFn = unsafe extern "C" fn(*const f32, *mut f32, i64, u32) -> i32;

/// One mixing compiled for the emulated backend.
#[derive(Debug)]
pub struct EmulatedMixing {
    /// The generated mixing kernels.
    pub source: MixingSource,
    _lib: Arc<HostLibrary>,
    fwd: FwdFn,
    bwd: BwdFn,
    wgrad: WgradFn,
    reduce: ReduceFn,
}

impl EmulatedMixing {
    /// Generates, compiles (host C++) and loads the kernels of `spec`.
    pub fn compile(spec: &MixingSpec, opts: &CudaOptions) -> Result<Self, CudaError> {
        let source = codegen_mixing(spec, opts)?;
        let lib = compile_host_library(&shim::mixing_translation_unit(&source))?;
        // SAFETY: the types are the signatures `shim::mixing_translation_unit` writes, with the
        // storage pointers (`const S*` / `S*`) passed as `void*`.
        let (fwd, bwd, wgrad, reduce) = unsafe {
            (
                lib.get::<FwdFn>("flexsn_emu_mix_fwd")?,
                lib.get::<BwdFn>("flexsn_emu_mix_bwd")?,
                lib.get::<WgradFn>("flexsn_emu_mix_wgrad")?,
                lib.get::<ReduceFn>("flexsn_emu_mix_reduce")?,
            )
        };
        Ok(EmulatedMixing {
            source,
            _lib: lib,
            fwd,
            bwd,
            wgrad,
            reduce,
        })
    }

    fn dtype(&self) -> StorageDtype {
        self.source.dtype
    }

    fn status(&self, entry: &str, code: i32) -> Result<(), CudaError> {
        if code == 0 {
            Ok(())
        } else {
            Err(CudaError::EmuRun {
                entry: entry.to_string(),
                code,
            })
        }
    }
}

impl MixingKernels for EmulatedMixing {
    fn source(&self) -> &MixingSource {
        &self.source
    }

    fn forward(
        &self,
        weight: &[f32],
        bias: &[f32],
        x: &[f32],
        n: usize,
    ) -> Result<Vec<f32>, CudaError> {
        let spec = &self.source.spec;
        let (rn, _) = check_shapes(spec, weight, bias, x.len(), n)?;
        let mut xs = HostBuf::encode(ArgType::Storage, self.dtype(), x);
        let mut s = HostBuf::zeros(ArgType::Storage, self.dtype(), rn);
        let grid = grid_u32(self.source.grid_size(n as u64), "the mixing forward")?;
        // SAFETY: `check_shapes` sized W ([R, C]), b ([R]) and x ([C, N]); `s` holds R·N
        // elements of the storage type; the grid covers N with the source's block size, and the
        // kernel indexes only below those sizes.
        let code = unsafe {
            (self.fwd)(
                weight.as_ptr(),
                bias.as_ptr(),
                xs.as_mut_ptr(),
                s.as_mut_ptr(),
                n as i64,
                grid,
                self.source.block_size,
            )
        };
        self.status(&self.source.forward_entry, code)?;
        Ok(s.decode(self.dtype()))
    }

    fn backward(
        &self,
        weight: &[f32],
        bias: &[f32],
        x: &[f32],
        grad_spike: &[f32],
        n: usize,
    ) -> Result<MixGradients, CudaError> {
        let src = &self.source;
        let (rn, cn) = check_shapes(&src.spec, weight, bias, x.len(), n)?;
        check_len("grad_spike", rn, grad_spike.len())?;
        let mut xs = HostBuf::encode(ArgType::Storage, self.dtype(), x);
        let mut gs = HostBuf::encode(ArgType::Storage, self.dtype(), grad_spike);
        let mut gx = HostBuf::zeros(ArgType::Storage, self.dtype(), cn);
        let mut gh = vec![0.0f32; rn];
        let grid = grid_u32(src.grid_size(n as u64), "the mixing backward")?;
        // SAFETY: as in `forward`, plus grad_spike ([R, N], storage), grad_x ([C, N], storage)
        // and grad_h ([R, N], f32) sized here.
        let code = unsafe {
            (self.bwd)(
                weight.as_ptr(),
                bias.as_ptr(),
                xs.as_mut_ptr(),
                gs.as_mut_ptr(),
                gx.as_mut_ptr(),
                gh.as_mut_ptr(),
                n as i64,
                grid,
                src.block_size,
            )
        };
        self.status(&src.backward_entry, code)?;
        let (chunks, groups) = src.wgrad_grid(n as u64);
        let len = src.grad_len();
        let mut partial = vec![0.0f32; chunks as usize * len];
        // SAFETY: grad_h is [R, N] f32, x [C, N] storage, `partial` holds `chunks` rows of
        // `grad_len` floats: exactly what blocks (chunk, group) write.
        let code = unsafe {
            (self.wgrad)(
                gh.as_ptr(),
                xs.as_mut_ptr(),
                partial.as_mut_ptr(),
                n as i64,
                grid_u32(chunks, "the weight gradient")?,
                grid_u32(groups, "the weight gradient")?,
            )
        };
        self.status(&src.wgrad_entry, code)?;
        let mut out = vec![0.0f32; len];
        // SAFETY: `partial` holds `chunks · len` floats, `out` `len`; the grid covers `len`.
        let code = unsafe {
            (self.reduce)(
                partial.as_ptr(),
                out.as_mut_ptr(),
                chunks as i64,
                grid_u32(src.reduce_grid(), "the gradient reduction")?,
            )
        };
        self.status(&src.reduce_entry, code)?;
        let bias_grad = out.split_off(src.spec.rows * src.spec.cols);
        Ok(MixGradients {
            x: gx.decode(self.dtype()),
            weight: out,
            bias: bias_grad,
        })
    }
}

impl EmulatedCuda {
    /// The compiled mixing kernels for `spec` with this backend's storage type and math mode
    /// (cached per process).
    pub fn mixing(&self, spec: &MixingSpec) -> Result<Arc<EmulatedMixing>, CudaError> {
        static CACHE: OnceLock<Mutex<HashMap<String, Arc<EmulatedMixing>>>> = OnceLock::new();
        let key = mixing_key(spec, self.options());
        let cache = CACHE.get_or_init(Default::default);
        if let Some(m) = cache.lock().unwrap_or_else(|e| e.into_inner()).get(&key) {
            return Ok(m.clone());
        }
        let m = Arc::new(EmulatedMixing::compile(spec, self.options())?);
        cache
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(key, m.clone());
        Ok(m)
    }
}

/// The process-wide emulated backend with default options (f32, precise), created on first use.
pub fn shared_emulated() -> Result<&'static EmulatedCuda, CudaError> {
    static SHARED: OnceLock<EmulatedCuda> = OnceLock::new();
    if let Some(e) = SHARED.get() {
        return Ok(e);
    }
    let e = EmulatedCuda::new()?;
    Ok(SHARED.get_or_init(|| e))
}

// =============================================================================================
// Device

/// Scratch device buffers of a backward run, kept between calls of the same `N`.
#[derive(Debug)]
pub struct MixScratch {
    n: usize,
    grad_h: CudaSlice<f32>,
    partial: CudaSlice<f32>,
    grads: CudaSlice<f32>,
}

/// One mixing's kernels loaded on a device.
#[derive(Debug)]
pub struct DeviceMixing {
    /// The generated mixing kernels.
    pub source: MixingSource,
    _module: Arc<CudaModule>,
    fwd: CudaFunction,
    bwd: CudaFunction,
    wgrad: CudaFunction,
    reduce: CudaFunction,
    stream: Arc<CudaStream>,
    sync: Arc<SyncMode>,
}

/// Device addresses of one backward run (see [`DeviceMixing::backward_device`]).
struct BackwardPtrs {
    weight: u64,
    bias: u64,
    x: u64,
    grad_spike: u64,
    grad_x: u64,
    grad_h: u64,
    partial: u64,
    grads: u64,
}

impl DeviceMixing {
    fn dtype(&self) -> StorageDtype {
        self.source.dtype
    }

    fn config(&self, grid: (u32, u32), block: u32) -> LaunchConfig {
        LaunchConfig {
            grid_dim: (grid.0, grid.1, 1),
            block_dim: (block, 1, 1),
            shared_mem_bytes: 0,
        }
    }

    fn check_params(
        &self,
        weight: &CudaSlice<f32>,
        bias: &CudaSlice<f32>,
    ) -> Result<(), CudaError> {
        let spec = &self.source.spec;
        if weight.len() < spec.rows * spec.cols {
            return Err(buffer_err("weight", spec.rows * spec.cols, weight.len()));
        }
        if bias.len() < spec.rows {
            return Err(buffer_err("bias", spec.rows, bias.len()));
        }
        Ok(())
    }

    /// The forward grid for `n` neurons (`n > 0`).
    fn forward_grid(&self, n: usize) -> Result<u32, CudaError> {
        if n == 0 {
            return Err(ShapeError::NoNeurons.into());
        }
        grid_u32(self.source.grid_size(n as u64), "the mixing forward")
    }

    /// Launches the forward kernel on `[W, b, x, spike]`.
    ///
    /// # Safety
    /// The addresses hold `R·C` and `R` floats and `C·N` and `R·N` storage elements on the
    /// stream's device, alive until the kernel finishes.
    unsafe fn forward_raw(
        &self,
        stream: &Arc<CudaStream>,
        ptrs: [u64; 4],
        grid: u32,
        n: usize,
    ) -> Result<(), CudaError> {
        let cfg = self.config((grid, 1), self.source.block_size);
        // SAFETY: `(const float* W, const float* b, const S* x, S* spike, long long N)`, sized
        // by the caller.
        unsafe {
            launch_raw(
                stream,
                &self.fwd,
                &self.source.forward_entry,
                cfg,
                &ptrs,
                &[n as i64],
                self.sync.get(),
            )
        }
    }

    /// Forward on device buffers: `x` `[C, N]` and `spike` `[R, N]` in the storage type.
    /// Asynchronous on the device's stream.
    pub fn forward_device(
        &self,
        weight: &CudaSlice<f32>,
        bias: &CudaSlice<f32>,
        x: &DeviceBuf,
        spike: &mut DeviceBuf,
        n: usize,
    ) -> Result<(), CudaError> {
        let spec = &self.source.spec;
        let grid = self.forward_grid(n)?;
        self.check_params(weight, bias)?;
        x.check("x", self.dtype(), spec.cols * n)?;
        spike.check("spike", self.dtype(), spec.rows * n)?;
        let _scope = ContextScope::push(self.stream.context())?;
        let st = &self.stream;
        let ((w, _w), (b, _b)) = (weight.device_ptr(st), bias.device_ptr(st));
        let ((xp, _x), (sp, _s)) = (x.raw(st), spike.raw(st));
        // SAFETY: every buffer was checked above for this N and the storage type.
        unsafe { self.forward_raw(st, [w, b, xp, sp], grid, n) }
    }

    /// Forward on the caller's memory and stream: `weight` `[R, C]` and `bias` `[R]` f32, `x`
    /// `[C, N]` and `spike` `[R, N]` in the storage type. Everything is checked before the launch
    /// (see [`super::DeviceKernel::launch_on`]).
    pub fn forward_on(
        &self,
        stream: &CallerStream,
        weight: &BorrowedBuf,
        bias: &BorrowedBuf,
        x: &BorrowedBuf,
        spike: &BorrowedBuf,
        n: usize,
    ) -> Result<(), CudaError> {
        let spec = &self.source.spec;
        let grid = self.forward_grid(n)?;
        let (rn, cn) = mix_sizes(spec, n)?;
        let f32_ = StorageDtype::F32;
        let want = [
            ("weight", f32_, spec.rows * spec.cols),
            ("bias", f32_, spec.rows),
            ("x", self.dtype(), cn),
            ("spike", self.dtype(), rn),
        ];
        let ctx = self.stream.context();
        let _scope = ContextScope::push(ctx)?;
        let p = check_borrowed(
            &[*weight, *bias, *x, *spike],
            &want,
            ctx.ordinal(),
            &self.source.forward_entry,
        )?;
        let caller = stream.wrap(ctx)?;
        // SAFETY: checked above (element types, lengths, device).
        unsafe { self.forward_raw(&caller, [p[0], p[1], p[2], p[3]], grid, n) }
    }

    /// Scratch buffers for backward runs of `n` neurons.
    pub fn scratch(&self, n: usize) -> Result<MixScratch, CudaError> {
        let src = &self.source;
        let (chunks, _) = src.wgrad_grid(n as u64);
        let _scope = ContextScope::push(self.stream.context())?;
        guard("cuMemAlloc", || {
            let alloc = |len: usize| {
                self.stream
                    .alloc_zeros::<f32>(len.max(1))
                    .map_err(driver_err("cuMemAlloc"))
            };
            Ok(MixScratch {
                n,
                grad_h: alloc(src.spec.rows * n)?,
                partial: alloc(chunks as usize * src.grad_len())?,
                grads: alloc(src.grad_len())?,
            })
        })
    }

    /// Floats of the f32 workspace a backward on the caller's memory needs for `n` neurons
    /// ([`DeviceMixing::backward_on`]): `grad_h` `[R, N]`, the chunk partials and the summed
    /// gradients.
    pub fn workspace_len(&self, n: usize) -> Result<usize, CudaError> {
        let src = &self.source;
        let (chunks, _) = src.wgrad_grid(n as u64);
        let (rn, _) = mix_sizes(&src.spec, n)?;
        (chunks as usize)
            .checked_mul(src.grad_len())
            .and_then(|p| p.checked_add(rn))
            .and_then(|p| p.checked_add(src.grad_len()))
            .ok_or_else(|| CudaError::TooLarge(format!("workspace for N = {n}")))
    }

    /// The backward launch grids: `(per-neuron grid, weight-gradient grid, reduce grid, chunks)`.
    fn backward_grids(&self, n: usize) -> Result<(u32, (u32, u32), u32, i64), CudaError> {
        let src = &self.source;
        let grid = self.forward_grid(n)?;
        let (chunks, groups) = src.wgrad_grid(n as u64);
        let wgrid = (
            grid_u32(chunks, "the weight gradient")?,
            grid_u32(groups, "the weight gradient")?,
        );
        let rgrid = grid_u32(src.reduce_grid(), "the gradient reduction")?;
        Ok((grid, wgrid, rgrid, chunks as i64))
    }

    /// Launches the three backward kernels.
    ///
    /// # Safety
    /// The addresses hold what [`DeviceMixing::backward_device`] lists for `n` neurons (`partial`
    /// `chunks · grad_len`, `grads` `grad_len` floats) on the stream's device, alive until the
    /// kernels finish.
    unsafe fn backward_raw(
        &self,
        stream: &Arc<CudaStream>,
        p: &BackwardPtrs,
        n: usize,
    ) -> Result<(), CudaError> {
        let src = &self.source;
        let (grid, wgrid, rgrid, chunks) = self.backward_grids(n)?;
        let sync = self.sync.get();
        let ni = n as i64;
        // SAFETY (all three): the argument lists are the generated signatures
        // `(W, b, x, grad_spike, grad_x, float* grad_h, long long N)`,
        // `(const float* grad_h, const S* x, float* partial, long long N)` and
        // `(const float* partial, float* out, long long chunks)`; sizes from the caller.
        unsafe {
            launch_raw(
                stream,
                &self.bwd,
                &src.backward_entry,
                self.config((grid, 1), src.block_size),
                &[p.weight, p.bias, p.x, p.grad_spike, p.grad_x, p.grad_h],
                &[ni],
                sync,
            )?;
            launch_raw(
                stream,
                &self.wgrad,
                &src.wgrad_entry,
                self.config(wgrid, WGRAD_BLOCK),
                &[p.grad_h, p.x, p.partial],
                &[ni],
                sync,
            )?;
            launch_raw(
                stream,
                &self.reduce,
                &src.reduce_entry,
                self.config((rgrid, 1), WGRAD_BLOCK),
                &[p.partial, p.grads],
                &[chunks],
                sync,
            )
        }
    }

    /// Backward on device buffers: writes `grad_x` and leaves the weight and bias gradients in
    /// `scratch` ([`DeviceMixing::download_param_grads`]). Asynchronous on the device's stream.
    #[allow(clippy::too_many_arguments)]
    pub fn backward_device(
        &self,
        weight: &CudaSlice<f32>,
        bias: &CudaSlice<f32>,
        x: &DeviceBuf,
        grad_spike: &DeviceBuf,
        grad_x: &mut DeviceBuf,
        scratch: &mut MixScratch,
        n: usize,
    ) -> Result<(), CudaError> {
        let spec = &self.source.spec;
        self.forward_grid(n)?;
        if scratch.n != n {
            return Err(CudaError::Buffer {
                name: "scratch".into(),
                message: format!("made for N = {}, used with N = {n}", scratch.n),
            });
        }
        self.check_params(weight, bias)?;
        x.check("x", self.dtype(), spec.cols * n)?;
        grad_spike.check("grad_spike", self.dtype(), spec.rows * n)?;
        grad_x.check("grad_x", self.dtype(), spec.cols * n)?;
        let _scope = ContextScope::push(self.stream.context())?;
        let st = &self.stream;
        let ((w, _w), (b, _b)) = (weight.device_ptr(st), bias.device_ptr(st));
        let ((xp, _x), (gs, _gs), (gx, _gx)) = (x.raw(st), grad_spike.raw(st), grad_x.raw(st));
        let (gh, _gh) = scratch.grad_h.device_ptr(st);
        let (partial, _p) = scratch.partial.device_ptr(st);
        let (grads, _g) = scratch.grads.device_ptr(st);
        let p = BackwardPtrs {
            weight: w,
            bias: b,
            x: xp,
            grad_spike: gs,
            grad_x: gx,
            grad_h: gh,
            partial,
            grads,
        };
        // SAFETY: checked above; `scratch` was allocated by `scratch(n)` for this N.
        unsafe { self.backward_raw(st, &p, n) }
    }

    /// Backward on the caller's memory and stream: reads `weight` `[R, C]`, `bias` `[R]` (f32),
    /// `x` `[C, N]` and `grad_spike` `[R, N]` (storage type); writes `grad_x` `[C, N]` (storage
    /// type), `grad_weight` `[R, C]` and `grad_bias` `[R]` (f32, overwritten, not accumulated);
    /// uses `workspace`, [`DeviceMixing::workspace_len`] floats of f32 device memory the caller
    /// provides (so nothing is allocated per call). Everything is checked before the launches.
    #[allow(clippy::too_many_arguments)]
    pub fn backward_on(
        &self,
        stream: &CallerStream,
        weight: &BorrowedBuf,
        bias: &BorrowedBuf,
        x: &BorrowedBuf,
        grad_spike: &BorrowedBuf,
        grad_x: &BorrowedBuf,
        grad_weight: &BorrowedBuf,
        grad_bias: &BorrowedBuf,
        workspace: &BorrowedBuf,
        n: usize,
    ) -> Result<(), CudaError> {
        let src = &self.source;
        let spec = &src.spec;
        self.forward_grid(n)?;
        let (rn, cn) = mix_sizes(spec, n)?;
        let ws = self.workspace_len(n)?;
        let (f32_, st) = (StorageDtype::F32, self.dtype());
        let rc = spec.rows * spec.cols;
        let want = [
            ("weight", f32_, rc),
            ("bias", f32_, spec.rows),
            ("x", st, cn),
            ("grad_spike", st, rn),
            ("grad_x", st, cn),
            ("grad_weight", f32_, rc),
            ("grad_bias", f32_, spec.rows),
            ("workspace", f32_, ws),
        ];
        let ctx = self.stream.context();
        let _scope = ContextScope::push(ctx)?;
        let bufs = [
            *weight,
            *bias,
            *x,
            *grad_spike,
            *grad_x,
            *grad_weight,
            *grad_bias,
            *workspace,
        ];
        let a = check_borrowed(&bufs, &want, ctx.ordinal(), &src.backward_entry)?;
        let caller = stream.wrap(ctx)?;
        // Workspace layout: grad_h [R, N], then the chunk partials, then the summed gradients.
        let grads = a[7] + ((ws - src.grad_len()) * 4) as u64;
        let p = BackwardPtrs {
            weight: a[0],
            bias: a[1],
            x: a[2],
            grad_spike: a[3],
            grad_x: a[4],
            grad_h: a[7],
            partial: a[7] + (rn * 4) as u64,
            grads,
        };
        // SAFETY: checked above; the workspace holds `workspace_len(n)` floats laid out as
        // `backward_raw` needs.
        unsafe { self.backward_raw(&caller, &p, n) }?;
        guard("cuMemcpyDtoDAsync", || {
            // SAFETY: `grads` holds R·C + R floats (the summed gradients); `grad_weight` and
            // `grad_bias` were checked for R·C and R floats; the copies are queued on the
            // caller's stream after the kernels that write `grads`.
            unsafe {
                result::memcpy_dtod_async(a[5], grads, rc * 4, caller.cu_stream())
                    .map_err(driver_err("cuMemcpyDtoDAsync"))?;
                result::memcpy_dtod_async(
                    a[6],
                    grads + (rc * 4) as u64,
                    spec.rows * 4,
                    caller.cu_stream(),
                )
                .map_err(driver_err("cuMemcpyDtoDAsync"))
            }
        })
    }

    /// The weight `[R, C]` and bias `[R]` gradients of the last backward into `scratch`.
    pub fn download_param_grads(
        &self,
        scratch: &MixScratch,
    ) -> Result<(Vec<f32>, Vec<f32>), CudaError> {
        let mut w = guard("cuMemcpyDtoH", || {
            self.stream
                .clone_dtoh(&scratch.grads)
                .map_err(driver_err("cuMemcpyDtoH"))
        })?;
        let spec = &self.source.spec;
        w.truncate(self.source.grad_len());
        let b = w.split_off(spec.rows * spec.cols);
        Ok((w, b))
    }

    /// Uploads `xs` as a device buffer of the storage type.
    pub fn upload_storage(&self, xs: &[f32]) -> Result<DeviceBuf, CudaError> {
        guard("cuMemcpyHtoD", || {
            Ok(match HostBuf::encode(ArgType::Storage, self.dtype(), xs) {
                HostBuf::F32(v) => DeviceBuf::F32(
                    self.stream
                        .clone_htod(&v)
                        .map_err(driver_err("cuMemcpyHtoD"))?,
                ),
                HostBuf::U16(v) => DeviceBuf::U16(
                    self.stream
                        .clone_htod(&v)
                        .map_err(driver_err("cuMemcpyHtoD"))?,
                ),
            })
        })
    }

    /// A zeroed device buffer of `len` elements of the storage type.
    pub fn alloc_storage(&self, len: usize) -> Result<DeviceBuf, CudaError> {
        guard("cuMemAlloc", || {
            Ok(match self.dtype() {
                StorageDtype::F32 => DeviceBuf::F32(
                    self.stream
                        .alloc_zeros::<f32>(len)
                        .map_err(driver_err("cuMemAlloc"))?,
                ),
                _ => DeviceBuf::U16(
                    self.stream
                        .alloc_zeros::<u16>(len)
                        .map_err(driver_err("cuMemAlloc"))?,
                ),
            })
        })
    }

    fn download_storage(&self, b: &DeviceBuf) -> Result<Vec<f32>, CudaError> {
        guard("cuMemcpyDtoH", || {
            let host = match b {
                DeviceBuf::F32(x) => HostBuf::F32(
                    self.stream
                        .clone_dtoh(x)
                        .map_err(driver_err("cuMemcpyDtoH"))?,
                ),
                DeviceBuf::U16(x) => HostBuf::U16(
                    self.stream
                        .clone_dtoh(x)
                        .map_err(driver_err("cuMemcpyDtoH"))?,
                ),
            };
            Ok(host.decode(self.dtype()))
        })
    }

    /// Uploads `xs` (parameters) as `f32`.
    pub fn upload_f32(&self, xs: &[f32]) -> Result<CudaSlice<f32>, CudaError> {
        guard("cuMemcpyHtoD", || {
            self.stream
                .clone_htod(xs)
                .map_err(driver_err("cuMemcpyHtoD"))
        })
    }
}

/// Host slices are copied in and out per call.
impl MixingKernels for DeviceMixing {
    fn source(&self) -> &MixingSource {
        &self.source
    }

    fn forward(
        &self,
        weight: &[f32],
        bias: &[f32],
        x: &[f32],
        n: usize,
    ) -> Result<Vec<f32>, CudaError> {
        let (rn, _) = check_shapes(&self.source.spec, weight, bias, x.len(), n)?;
        let (w, b) = (self.upload_f32(weight)?, self.upload_f32(bias)?);
        let xd = self.upload_storage(x)?;
        let mut s = self.alloc_storage(rn)?;
        self.forward_device(&w, &b, &xd, &mut s, n)?;
        self.download_storage(&s)
    }

    fn backward(
        &self,
        weight: &[f32],
        bias: &[f32],
        x: &[f32],
        grad_spike: &[f32],
        n: usize,
    ) -> Result<MixGradients, CudaError> {
        let (rn, cn) = check_shapes(&self.source.spec, weight, bias, x.len(), n)?;
        check_len("grad_spike", rn, grad_spike.len())?;
        let (w, b) = (self.upload_f32(weight)?, self.upload_f32(bias)?);
        let xd = self.upload_storage(x)?;
        let gs = self.upload_storage(grad_spike)?;
        let mut gx = self.alloc_storage(cn)?;
        let mut scratch = self.scratch(n)?;
        self.backward_device(&w, &b, &xd, &gs, &mut gx, &mut scratch, n)?;
        let (weight_grad, bias_grad) = self.download_param_grads(&scratch)?;
        Ok(MixGradients {
            x: self.download_storage(&gx)?,
            weight: weight_grad,
            bias: bias_grad,
        })
    }
}

impl CudaDevice {
    /// Compiles (or fetches from the caches) and loads the mixing kernels of `spec` with `opts`.
    pub fn mixing(
        &self,
        spec: &MixingSpec,
        opts: &CudaOptions,
    ) -> Result<Arc<DeviceMixing>, CudaError> {
        let key = mixing_key(spec, opts);
        let loaded = self.loaded_mixings();
        if let Some(m) = loaded.lock().unwrap_or_else(|e| e.into_inner()).get(&key) {
            return Ok(m.clone());
        }
        let src = codegen_mixing(spec, opts)?;
        let module = self.load_module(&src)?;
        let m = guard("loading the CUDA module", || {
            let f = |name: &str| {
                module
                    .load_function(name)
                    .map_err(driver_err("cuModuleGetFunction"))
            };
            Ok(DeviceMixing {
                fwd: f(&src.forward_entry)?,
                bwd: f(&src.backward_entry)?,
                wgrad: f(&src.wgrad_entry)?,
                reduce: f(&src.reduce_entry)?,
                _module: module,
                stream: self.stream().clone(),
                sync: self.sync_mode().clone(),
                source: src,
            })
        })?;
        let m = Arc::new(m);
        loaded
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(key, m.clone());
        Ok(m)
    }
}

/// Device 0, opened once per process and shared (by the PSN modules' CUDA backend).
pub fn shared_device() -> Result<Arc<CudaDevice>, CudaError> {
    shared_device_on(0)
}

/// Device `ordinal`, opened once per process and shared (what a framework bridge uses for the
/// device of its tensors).
pub fn shared_device_on(ordinal: usize) -> Result<Arc<CudaDevice>, CudaError> {
    static SHARED: OnceLock<Mutex<HashMap<usize, Arc<CudaDevice>>>> = OnceLock::new();
    let slot = SHARED.get_or_init(Default::default);
    let mut slot = slot.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(d) = slot.get(&ordinal) {
        return Ok(d.clone());
    }
    let d = Arc::new(CudaDevice::new(ordinal)?);
    slot.insert(ordinal, d.clone());
    Ok(d)
}
