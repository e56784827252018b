//! The PSN time-mixing kernels ([`flexsn_compiler::codegen::cuda::mixing`]) on the CUDA
//! backends: emulated (host C++) and real (NVRTC + driver).
//!
//! Both take host slices: `weight` `[rows, cols]`, `bias` `[rows]`, `x` `[cols, N]` (and backward
//! `grad_spike` `[rows, N]`), and give spikes `[rows, N]` or [`MixGradients`]. `rows` (the bias
//! length) and `cols` may be anything up to the compiled `R × C`: one module serves every window. [`DeviceMixing`] also runs on device
//! buffers, for training loops that keep data on the GPU and for benchmarks. Shapes are checked
//! before any kernel runs.

use std::collections::HashMap;
use std::ffi::c_void;
use std::sync::{Arc, Mutex, OnceLock};

use cudarc::driver::{
    CudaFunction, CudaModule, CudaSlice, CudaStream, DevicePtr, LaunchConfig, result,
};
use flexsn_compiler::codegen::cuda::mixing::{
    MixingSource, MixingSpec, WGRAD_BLOCK, codegen_mixing, grad_len, mixing_key,
};
use flexsn_compiler::codegen::cuda::{ArgType, CudaOptions, StorageDtype, padded_pitch, shim};
use flexsn_compiler::scan::ShapeError;

use super::borrowed::{BorrowedBuf, CallerStream, ContextScope};
use super::device::check_borrowed;
use super::emulated::{HostLibrary, compile_host_library};
use super::error::{driver_err, guard};
use super::host::HostBuf;
use super::launch::{SyncMode, launch_raw};
use super::{CudaDevice, CudaError, DeviceBuf, EmulatedCuda};

/// Gradients of a mixing: `x` `[cols, N]`, `weight` `[rows, cols]`, `bias` `[rows]`.
#[derive(Clone, Debug, PartialEq)]
pub struct MixGradients {
    /// `d loss / d x`, `[cols, N]`.
    pub x: Vec<f32>,
    /// `d loss / d W`, `[rows, cols]`.
    pub weight: Vec<f32>,
    /// `d loss / d b`, `[rows]`.
    pub bias: Vec<f32>,
}

/// A mixing's kernels on one of the CUDA backends, on host slices: `weight` `[rows, cols]`,
/// `bias` `[rows]`, `x` `[cols, N]`, `grad_spike` `[rows, N]`, with `rows ≤ R` and `cols ≤ C`
/// of the compiled spec (`rows` is the bias length). Shapes are checked before anything runs.
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

/// `(rows·N, cols·N)` of a launch of `dims = (rows, cols)`, checked for overflow (`n > 0`).
fn mix_sizes(dims: (usize, usize), n: usize) -> Result<(usize, usize), CudaError> {
    if n == 0 {
        return Err(ShapeError::NoNeurons.into());
    }
    let too_large = || CudaError::TooLarge(format!("{} steps of N = {n} neurons", dims.0));
    let rn = dims.0.checked_mul(n).ok_or_else(too_large)?;
    let cn = dims.1.checked_mul(n).ok_or_else(too_large)?;
    i64::try_from(rn.max(cn)).map_err(|_| too_large())?;
    Ok((rn, cn))
}

/// The `(rows, cols)` of host parameters: `rows` the bias length, `cols` the weight's row
/// length; both within the compiled spec.
fn dims_of(src: &MixingSource, weight: &[f32], bias: &[f32]) -> Result<(usize, usize), CudaError> {
    let rows = bias.len();
    let cols = weight.len().checked_div(rows).unwrap_or(0);
    if !src.fits((rows, cols)) || rows * cols != weight.len() {
        return Err(CudaError::Buffer {
            name: "weight".into(),
            message: format!(
                "{} weights and {rows} biases are not a [rows, cols] mixing with rows <= {}, \
                 cols <= {} (the compiled maximum)",
                weight.len(),
                src.spec.rows,
                src.spec.cols
            ),
        });
    }
    Ok((rows, cols))
}

/// Checks the parameters and an `[cols, N]` buffer; returns `(dims, rows·N, cols·N)`.
fn check_shapes(
    src: &MixingSource,
    weight: &[f32],
    bias: &[f32],
    x_len: usize,
    n: usize,
) -> Result<((usize, usize), usize, usize), CudaError> {
    let dims = dims_of(src, weight, bias)?;
    let (rn, cn) = mix_sizes(dims, n)?;
    check_len("x", cn, x_len)?;
    Ok((dims, rn, cn))
}

/// The padded row pitch (128-byte rows) of `[steps, N]` buffers of `dtype` that flexsn allocates
/// itself: `grad_h` always, and every sequence of the host-slice paths.
fn own_pitch(n: usize, dtype: StorageDtype) -> Result<usize, CudaError> {
    padded_pitch(n, dtype)
        .filter(|p| i64::try_from(*p).is_ok())
        .ok_or_else(|| CudaError::TooLarge(format!("N = {n} padded to 128-byte rows")))
}

/// `rows` rows of `pitch` elements, checked for overflow.
fn rows_len(rows: usize, pitch: usize) -> Result<usize, CudaError> {
    rows.checked_mul(pitch)
        .filter(|l| i64::try_from(*l).is_ok())
        .ok_or_else(|| CudaError::TooLarge(format!("{rows} rows of {pitch} elements")))
}

/// Floats of the chunk partials of a launch of `dims` on `n` neurons.
fn partial_len(src: &MixingSource, dims: (usize, usize), n: usize) -> usize {
    src.wgrad_grid(dims, n as u64).0 as usize * grad_len(dims)
}

fn grid_u32(blocks: u64, what: &str) -> Result<u32, CudaError> {
    u32::try_from(blocks).map_err(|_| CudaError::TooLarge(format!("{blocks} blocks for {what}")))
}

// =============================================================================================
// Emulated

/// `int (W, b, x, spike, N, rows, cols, pitch, grid, block)`; storage pointers are `void*` (f32
/// or u16 bits); `pitch` the row pitches of `x` and `spike`.
type FwdFn = unsafe extern "C" fn(
    *const f32,
    *const f32,
    *const c_void,
    *mut c_void,
    i64,
    i64,
    i64,
    *const i64,
    u32,
    u32,
) -> i32;
/// `int (W, b, x, grad_spike, grad_x, grad_h, N, rows, cols, pitch, grid, block)`; `pitch` the
/// row pitches of `x`, `grad_spike`, `grad_x` and `grad_h`.
type BwdFn = unsafe extern "C" fn(
    *const f32,
    *const f32,
    *const c_void,
    *const c_void,
    *mut c_void,
    *mut f32,
    i64,
    i64,
    i64,
    *const i64,
    u32,
    u32,
) -> i32;
/// `int (grad_h, x, partial, N, rows, cols, pitch, chunks, tiles)`; `pitch` those of `grad_h`
/// and `x`.
type WgradFn = unsafe extern "C" fn(
    *const f32,
    *const c_void,
    *mut f32,
    i64,
    i64,
    i64,
    *const i64,
    u32,
    u32,
) -> i32;
/// `int (partial, out, chunks, len, grid)`.
type ReduceFn = unsafe extern "C" fn(*const f32, *mut f32, i64, i64, u32) -> i32;

/// One mixing compiled for the emulated backend.
#[derive(Debug)]
pub struct EmulatedMixing {
    /// The generated source (its `partial_floats` may be lowered to test the bound).
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
        let (dims, _, _) = check_shapes(&self.source, weight, bias, x.len(), n)?;
        // The buffers are this call's own: padded rows, as on the device.
        let p = own_pitch(n, self.dtype())?;
        let mut xs = HostBuf::encode(ArgType::Storage, self.dtype(), x).spread(n, p);
        let mut s = HostBuf::zeros(ArgType::Storage, self.dtype(), rows_len(dims.0, p)?);
        let grid = grid_u32(self.source.grid_size(n as u64), "the mixing forward")?;
        let pitch = [p as i64; 2];
        // SAFETY: `check_shapes` sized W ([rows, cols]) and b ([rows]) within the compiled
        // maximum; x holds cols rows and `s` rows rows of `p` >= N elements of the storage type
        // (the pitches passed); the grid covers N with the source's block size, and the kernel
        // indexes only below those sizes.
        let code = unsafe {
            (self.fwd)(
                weight.as_ptr(),
                bias.as_ptr(),
                xs.as_mut_ptr(),
                s.as_mut_ptr(),
                n as i64,
                dims.0 as i64,
                dims.1 as i64,
                pitch.as_ptr(),
                grid,
                self.source.block_size,
            )
        };
        self.status(&self.source.forward_entry, code)?;
        Ok(s.gather(n, p).decode(self.dtype()))
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
        let (dims, rn, _) = check_shapes(src, weight, bias, x.len(), n)?;
        check_len("grad_spike", rn, grad_spike.len())?;
        let (ri, ci) = (dims.0 as i64, dims.1 as i64);
        let (p, ph) = (
            own_pitch(n, self.dtype())?,
            own_pitch(n, StorageDtype::F32)?,
        );
        let enc = |v: &[f32]| HostBuf::encode(ArgType::Storage, self.dtype(), v).spread(n, p);
        let (mut xs, mut gs) = (enc(x), enc(grad_spike));
        let mut gx = HostBuf::zeros(ArgType::Storage, self.dtype(), rows_len(dims.1, p)?);
        let mut gh = vec![0.0f32; rows_len(dims.0, ph)?];
        let grid = grid_u32(src.grid_size(n as u64), "the mixing backward")?;
        let pitch = [p as i64, p as i64, p as i64, ph as i64];
        let wpitch = [ph as i64, p as i64];
        // SAFETY: as in `forward`, plus grad_spike ([R, p], storage), grad_x ([C, p], storage)
        // and grad_h ([R, ph], f32) sized here, the pitches passed with them.
        let code = unsafe {
            (self.bwd)(
                weight.as_ptr(),
                bias.as_ptr(),
                xs.as_mut_ptr(),
                gs.as_mut_ptr(),
                gx.as_mut_ptr(),
                gh.as_mut_ptr(),
                n as i64,
                ri,
                ci,
                pitch.as_ptr(),
                grid,
                src.block_size,
            )
        };
        self.status(&src.backward_entry, code)?;
        let (chunks, tiles) = src.wgrad_grid(dims, n as u64);
        let len = grad_len(dims);
        let mut partial = vec![0.0f32; chunks as usize * len];
        // SAFETY: grad_h is [rows, ph] f32, x [cols, p] storage, `partial` holds `chunks` rows of
        // `grad_len(dims)` floats: exactly what blocks (chunk, tile) write.
        let code = unsafe {
            (self.wgrad)(
                gh.as_ptr(),
                xs.as_mut_ptr(),
                partial.as_mut_ptr(),
                n as i64,
                ri,
                ci,
                wpitch.as_ptr(),
                grid_u32(chunks, "the weight gradient")?,
                grid_u32(tiles, "the weight gradient")?,
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
                len as i64,
                grid_u32(src.reduce_grid(dims), "the gradient reduction")?,
            )
        };
        self.status(&src.reduce_entry, code)?;
        let bias_grad = out.split_off(dims.0 * dims.1);
        Ok(MixGradients {
            x: gx.gather(n, p).decode(self.dtype()),
            weight: out,
            bias: bias_grad,
        })
    }
}

impl EmulatedCuda {
    /// The compiled mixing kernels for `spec` with this backend's storage type and math mode
    /// (cached per process).
    pub fn mixing(&self, spec: &MixingSpec) -> Result<Arc<EmulatedMixing>, CudaError> {
        let key = mixing_key(spec, self.options());
        let cache = emulated_mixings();
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

/// The emulated mixing modules compiled in this process, by [`mixing_key`].
fn emulated_mixings() -> &'static Mutex<HashMap<String, Arc<EmulatedMixing>>> {
    static CACHE: OnceLock<Mutex<HashMap<String, Arc<EmulatedMixing>>>> = OnceLock::new();
    CACHE.get_or_init(Default::default)
}

/// How many emulated mixing modules this process has compiled (each shape, surrogate and
/// storage type once).
pub fn emulated_mixing_count() -> usize {
    emulated_mixings()
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .len()
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

/// Scratch device buffers of a backward run, kept between calls of the same `N` and shape
/// (`grad_h` with rows padded to 128 bytes).
#[derive(Debug)]
pub struct MixScratch {
    n: usize,
    dims: (usize, usize),
    grad_h: CudaSlice<f32>,
    partial: CudaSlice<f32>,
    grads: CudaSlice<f32>,
}

/// One mixing's kernels loaded on a device.
#[derive(Debug)]
pub struct DeviceMixing {
    /// The generated source.
    pub source: MixingSource,
    _module: Arc<CudaModule>,
    fwd: CudaFunction,
    bwd: CudaFunction,
    wgrad: CudaFunction,
    reduce: CudaFunction,
    stream: Arc<CudaStream>,
    sync: Arc<SyncMode>,
}

/// Device addresses of one backward run (see [`DeviceMixing::backward_device`]), with the row
/// pitches of `x`, `grad_spike`, `grad_x` and `grad_h`.
struct BackwardPtrs {
    pitch: [i64; 4],
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

    /// The compiled maximum `(R, C)`: the shape of the device-buffer entry points.
    fn full(&self) -> (usize, usize) {
        (self.source.spec.rows, self.source.spec.cols)
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
        dims: (usize, usize),
        pitch: [i64; 2],
    ) -> Result<(), CudaError> {
        let cfg = self.config((grid, 1), self.source.block_size);
        // SAFETY: `(const float* W, const float* b, const S* x, S* spike, long long N,
        // long long rows, long long cols, long long x_pitch, long long spike_pitch)`, sized by
        // the caller for those pitches.
        unsafe {
            launch_raw(
                stream,
                &self.fwd,
                &self.source.forward_entry,
                cfg,
                &ptrs,
                &[n as i64, dims.0 as i64, dims.1 as i64, pitch[0], pitch[1]],
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
        unsafe { self.forward_raw(st, [w, b, xp, sp], grid, n, self.full(), [n as i64; 2]) }
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
        let (rn, cn) = mix_sizes(self.full(), n)?;
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
        let dense = [n as i64; 2];
        unsafe {
            self.forward_raw(
                &caller,
                [p[0], p[1], p[2], p[3]],
                grid,
                n,
                self.full(),
                dense,
            )
        }
    }

    /// Scratch buffers for backward runs of `n` neurons at the compiled shape.
    pub fn scratch(&self, n: usize) -> Result<MixScratch, CudaError> {
        self.scratch_for(self.full(), n)
    }

    fn scratch_for(&self, dims: (usize, usize), n: usize) -> Result<MixScratch, CudaError> {
        let src = &self.source;
        mix_sizes(dims, n)?;
        let gh_len = rows_len(dims.0, own_pitch(n, StorageDtype::F32)?)?;
        let _scope = ContextScope::push(self.stream.context())?;
        guard("cuMemAlloc", || {
            let alloc = |len: usize| {
                self.stream
                    .alloc_zeros::<f32>(len.max(1))
                    .map_err(driver_err("cuMemAlloc"))
            };
            Ok(MixScratch {
                n,
                dims,
                grad_h: alloc(gh_len)?,
                partial: alloc(partial_len(src, dims, n))?,
                grads: alloc(grad_len(dims))?,
            })
        })
    }

    /// Floats of the f32 workspace a backward on the caller's memory needs for `n` neurons
    /// ([`DeviceMixing::backward_on`]): `grad_h` `[R, N]` with rows padded to 128 bytes, the
    /// chunk partials and the summed gradients.
    pub fn workspace_len(&self, n: usize) -> Result<usize, CudaError> {
        let dims = self.full();
        mix_sizes(dims, n)?;
        let gh = rows_len(dims.0, own_pitch(n, StorageDtype::F32)?)?;
        partial_len(&self.source, dims, n)
            .checked_add(gh)
            .and_then(|p| p.checked_add(grad_len(dims)))
            .ok_or_else(|| CudaError::TooLarge(format!("workspace for N = {n}")))
    }

    /// The backward launch grids: `(per-neuron grid, weight-gradient grid, reduce grid, chunks)`.
    fn backward_grids(
        &self,
        n: usize,
        dims: (usize, usize),
    ) -> Result<(u32, (u32, u32), u32, i64), CudaError> {
        let src = &self.source;
        let grid = self.forward_grid(n)?;
        let (chunks, tiles) = src.wgrad_grid(dims, n as u64);
        let wgrid = (
            grid_u32(chunks, "the weight gradient")?,
            grid_u32(tiles, "the weight gradient")?,
        );
        let rgrid = grid_u32(src.reduce_grid(dims), "the gradient reduction")?;
        Ok((grid, wgrid, rgrid, chunks as i64))
    }

    /// Launches the three backward kernels.
    ///
    /// # Safety
    /// The addresses hold what [`DeviceMixing::backward_device`] lists for `n` neurons and a
    /// launch of `dims` (`partial` `chunks · grad_len(dims)`, `grads` `grad_len(dims)` floats)
    /// on the stream's device, alive until the kernels finish.
    unsafe fn backward_raw(
        &self,
        stream: &Arc<CudaStream>,
        p: &BackwardPtrs,
        n: usize,
        dims: (usize, usize),
    ) -> Result<(), CudaError> {
        let src = &self.source;
        let (grid, wgrid, rgrid, chunks) = self.backward_grids(n, dims)?;
        let sync = self.sync.get();
        let shape = [n as i64, dims.0 as i64, dims.1 as i64];
        let [px, pgs, pgx, pgh] = p.pitch;
        // SAFETY (all three): the argument lists are the generated signatures
        // `(W, b, x, grad_spike, grad_x, float* grad_h, N, rows, cols, x_pitch,
        // grad_spike_pitch, grad_x_pitch, grad_h_pitch)`, `(const float* grad_h, const S* x,
        // float* partial, N, rows, cols, grad_h_pitch, x_pitch)` and
        // `(const float* partial, float* out, chunks, len)`; sizes from the caller.
        unsafe {
            launch_raw(
                stream,
                &self.bwd,
                &src.backward_entry,
                self.config((grid, 1), src.block_size),
                &[p.weight, p.bias, p.x, p.grad_spike, p.grad_x, p.grad_h],
                &[shape[0], shape[1], shape[2], px, pgs, pgx, pgh],
                sync,
            )?;
            launch_raw(
                stream,
                &self.wgrad,
                &src.wgrad_entry,
                self.config(wgrid, WGRAD_BLOCK),
                &[p.grad_h, p.x, p.partial],
                &[shape[0], shape[1], shape[2], pgh, px],
                sync,
            )?;
            launch_raw(
                stream,
                &self.reduce,
                &src.reduce_entry,
                self.config((rgrid, 1), WGRAD_BLOCK),
                &[p.partial, p.grads],
                &[chunks, grad_len(dims) as i64],
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
        self.forward_grid(n)?;
        let dims = scratch.dims;
        if scratch.n != n || !self.source.fits(dims) {
            return Err(CudaError::Buffer {
                name: "scratch".into(),
                message: format!(
                    "made for N = {} and shape {dims:?}, used with N = {n} (compiled {:?})",
                    scratch.n,
                    self.full()
                ),
            });
        }
        self.check_params(weight, bias)?;
        let (rn, cn) = mix_sizes(dims, n)?;
        x.check("x", self.dtype(), cn)?;
        grad_spike.check("grad_spike", self.dtype(), rn)?;
        grad_x.check("grad_x", self.dtype(), cn)?;
        let _scope = ContextScope::push(self.stream.context())?;
        let st = &self.stream;
        let ((w, _w), (b, _b)) = (weight.device_ptr(st), bias.device_ptr(st));
        let ((xp, _x), (gs, _gs), (gx, _gx)) = (x.raw(st), grad_spike.raw(st), grad_x.raw(st));
        let (gh, _gh) = scratch.grad_h.device_ptr(st);
        let (partial, _p) = scratch.partial.device_ptr(st);
        let (grads, _g) = scratch.grads.device_ptr(st);
        let dense = n as i64;
        let p = BackwardPtrs {
            pitch: [dense, dense, dense, own_pitch(n, StorageDtype::F32)? as i64],
            weight: w,
            bias: b,
            x: xp,
            grad_spike: gs,
            grad_x: gx,
            grad_h: gh,
            partial,
            grads,
        };
        // SAFETY: checked above; `scratch` was allocated by `scratch_for(dims, n)`.
        unsafe { self.backward_raw(st, &p, n, dims) }
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
        let (rn, cn) = mix_sizes(self.full(), n)?;
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
        // Workspace layout: grad_h [R, pitch], then the chunk partials, then the summed
        // gradients.
        let grads = a[7] + ((ws - grad_len(self.full())) * 4) as u64;
        let ph = own_pitch(n, StorageDtype::F32)?;
        let dense = n as i64;
        let p = BackwardPtrs {
            pitch: [dense, dense, dense, ph as i64],
            weight: a[0],
            bias: a[1],
            x: a[2],
            grad_spike: a[3],
            grad_x: a[4],
            grad_h: a[7],
            partial: a[7] + (rows_len(spec.rows, ph)? * 4) as u64,
            grads,
        };
        // SAFETY: checked above; the workspace holds `workspace_len(n)` floats laid out as
        // `backward_raw` needs.
        unsafe { self.backward_raw(&caller, &p, n, self.full()) }?;
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
        let (rows, cols) = scratch.dims;
        w.truncate(grad_len(scratch.dims));
        let b = w.split_off(rows * cols);
        Ok((w, b))
    }

    /// Uploads `xs` as a device buffer of the storage type.
    pub fn upload_storage(&self, xs: &[f32]) -> Result<DeviceBuf, CudaError> {
        self.upload_rows(xs, 1, 1)
    }

    /// Uploads the rows of `n` of `xs` as a device buffer of the storage type whose rows are
    /// `pitch` apart.
    fn upload_rows(&self, xs: &[f32], n: usize, pitch: usize) -> Result<DeviceBuf, CudaError> {
        guard("cuMemcpyHtoD", || {
            Ok(
                match HostBuf::encode(ArgType::Storage, self.dtype(), xs).spread(n, pitch) {
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
                },
            )
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
        self.download_rows(b, 1, 1)
    }

    /// The rows of `n` of a device buffer whose rows are `pitch` apart, dense and decoded.
    fn download_rows(&self, b: &DeviceBuf, n: usize, pitch: usize) -> Result<Vec<f32>, CudaError> {
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
            Ok(host.gather(n, pitch).decode(self.dtype()))
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
        let (dims, _, _) = check_shapes(&self.source, weight, bias, x.len(), n)?;
        let grid = self.forward_grid(n)?;
        // The device copies are this call's own: padded rows.
        let p = own_pitch(n, self.dtype())?;
        let (w, b) = (self.upload_f32(weight)?, self.upload_f32(bias)?);
        let xd = self.upload_rows(x, n, p)?;
        let s = self.alloc_storage(rows_len(dims.0, p)?)?;
        let _scope = ContextScope::push(self.stream.context())?;
        let st = &self.stream;
        let ((wp, _w), (bp, _b)) = (w.device_ptr(st), b.device_ptr(st));
        let ((xp, _x), (sp, _s)) = (xd.raw(st), s.raw(st));
        // SAFETY: uploaded and allocated above at exactly the checked sizes for `dims` with rows
        // of `p` >= N elements, the pitch passed.
        unsafe { self.forward_raw(st, [wp, bp, xp, sp], grid, n, dims, [p as i64; 2]) }?;
        self.download_rows(&s, n, p)
    }

    fn backward(
        &self,
        weight: &[f32],
        bias: &[f32],
        x: &[f32],
        grad_spike: &[f32],
        n: usize,
    ) -> Result<MixGradients, CudaError> {
        let (dims, rn, cn) = check_shapes(&self.source, weight, bias, x.len(), n)?;
        check_len("grad_spike", rn, grad_spike.len())?;
        let (w, b) = (self.upload_f32(weight)?, self.upload_f32(bias)?);
        let xd = self.upload_storage(x)?;
        let gs = self.upload_storage(grad_spike)?;
        let mut gx = self.alloc_storage(cn)?;
        let mut scratch = self.scratch_for(dims, n)?;
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
