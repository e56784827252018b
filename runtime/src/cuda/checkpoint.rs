//! The fused `checkpoint:K` kernels ([`flexsn_compiler::codegen::cuda::checkpoint`]) on the
//! CUDA backends: the training forward and the backward each in one launch, on host slices
//! (copied to the device and back; the emulated backend runs on them directly) or on a
//! framework's device memory ([`Kernel::launch_checkpointed`]).

use std::collections::HashMap;
use std::ffi::c_void;
use std::sync::{Arc, Mutex, OnceLock};

use cudarc::driver::{CudaFunction, LaunchConfig};
use flexsn_compiler::autodiff::GradSpec;
use flexsn_compiler::bptt::Upstream;
use flexsn_compiler::codegen::cuda::checkpoint::{
    CHECKPOINT_SHARED_BYTES, CheckpointSource, codegen_checkpoint_backward,
    codegen_checkpoint_forward, host_translation_unit,
};
use flexsn_compiler::codegen::cuda::{ArgRole, ArgType, CudaOptions, MathMode, StorageDtype};
use flexsn_compiler::ir::StepGraph;
use flexsn_compiler::scan::{ScanArgs, ScanKernel, ScanResult, param_len};

use super::backend::{CudaScan, EmulatedScan};
use super::borrowed::{BorrowedBuf, CallerStream, ContextScope};
use super::device::{check_borrowed, raw_ptrs, to_i64};
use super::emulated::compile_host_library;
use super::error::guard;
use super::host::{BufferSpec, HostBuf};
use super::kernel_device::DeviceArgument;
use super::launch::launch_raw;
use super::nvrtc::NvrtcSource;
use super::{CudaDevice, CudaError, EmulatedCuda, shared_device_on};
use crate::{Kernel, RuntimeError, ScanExecutor};

impl NvrtcSource for CheckpointSource {
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

/// Where the fused kernels of a CUDA kernel's scans run.
#[derive(Clone, Debug)]
pub(crate) enum Fused {
    /// A device, with the options its scans were generated with.
    Device(Arc<CudaDevice>, CudaOptions),
    /// The emulated backend.
    Emulated(Arc<EmulatedCuda>),
}

/// `int flexsn_emu_checkpoint(args, T, N, K, grid, block, shared_bytes)`.
type EmuFn = unsafe extern "C" fn(*const *mut c_void, i64, i64, i64, u32, u32, u64) -> i32;

/// A checkpoint kernel ready to launch.
enum Loaded {
    Device(CudaFunction, Arc<CudaDevice>),
    Emulated(EmuFn),
}

/// `src`'s kernel loaded on `device` (compiled through its module cache; loaded once per device
/// and source).
pub(crate) fn device_function(
    device: &CudaDevice,
    src: &CheckpointSource,
) -> Result<CudaFunction, CudaError> {
    type Map = Mutex<HashMap<String, CudaFunction>>;
    static FUNCS: OnceLock<Map> = OnceLock::new();
    let key = format!(
        "{}:{}",
        device.ordinal(),
        super::cache::key(&[src.code.as_bytes()])
    );
    let funcs = FUNCS.get_or_init(Default::default);
    if let Some(f) = funcs.lock().unwrap_or_else(|e| e.into_inner()).get(&key) {
        return Ok(f.clone());
    }
    let module = device.load_module(src)?;
    let _scope = device.scope()?;
    let f = guard("loading the CUDA module", || {
        module
            .load_function(&src.entry)
            .map_err(super::error::driver_err("cuModuleGetFunction"))
    })?;
    funcs
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .insert(key, f.clone());
    Ok(f)
}

/// Which kernel of the policy a call runs.
#[derive(Clone, Copy, Debug)]
pub enum CheckpointPhase<'a> {
    /// The training forward: outputs, checkpoints (`⌈T/K⌉` rows of `N` per state, `f32`) and
    /// final states.
    Forward,
    /// The backward for upstream gradients `spec`: reads the checkpoints in place of the states
    /// before each step; writes what the backward scan writes (per-neuron param contributions
    /// that the caller sums, as for [`super::DeviceScan::Backward`]).
    Backward(&'a GradSpec),
}

impl Fused {
    /// The fused kernels' backend of a scan compiled by a CUDA or emulated CUDA `Jit`.
    pub(crate) fn of(exec: &dyn ScanExecutor) -> Option<Fused> {
        let any = exec.as_any();
        if let Some(c) = any.downcast_ref::<CudaScan>() {
            return Some(Fused::Device(c.device().clone(), *c.options()));
        }
        any.downcast_ref::<EmulatedScan>()
            .map(|e| Fused::Emulated(e.backend().clone()))
    }

    fn opts(&self) -> CudaOptions {
        match self {
            Fused::Device(_, o) => *o,
            Fused::Emulated(e) => *e.options(),
        }
    }

    /// Loads `src` (generated, compiled and loaded once per device or library).
    fn load(&self, src: &CheckpointSource) -> Result<Loaded, CudaError> {
        match self {
            Fused::Device(device, _) => Ok(Loaded::Device(
                device_function(device, src)?,
                device.clone(),
            )),
            Fused::Emulated(_) => {
                let lib = compile_host_library(&host_translation_unit(src))?;
                // SAFETY: the type is the signature `host_translation_unit` writes.
                let f = unsafe { lib.get::<EmuFn>("flexsn_emu_checkpoint")? };
                // The library stays loaded: `compile_host_library` keeps it for the process.
                Ok(Loaded::Emulated(f))
            }
        }
    }

    fn source(&self, fwd: &StepGraph, phase: Phase<'_>) -> Result<CheckpointSource, CudaError> {
        let opts = self.opts();
        Ok(match phase {
            Phase::Forward(inference) => codegen_checkpoint_forward(inference, &opts)?,
            Phase::Backward(bwd) => codegen_checkpoint_backward(fwd, bwd, &opts)?,
        })
    }

    /// Training forward of `inference` (checked `args`) into `outputs`, `checkpoints`,
    /// `final_states`.
    pub(crate) fn forward(
        &self,
        inference: &ScanKernel,
        args: &ScanArgs<'_, f32>,
        k: usize,
        saved: crate::checkpoint::Saved<'_, '_>,
    ) -> Result<(), RuntimeError> {
        let src = self.source(&inference.graph, Phase::Forward(inference))?;
        let specs = specs(&src, inference, args.t, args.n, k)?;
        let read = |role: ArgRole| match role {
            ArgRole::Input(i) => args.inputs[i],
            ArgRole::InitState(j) => args.init_states[j],
            ArgRole::Param(p) => args.params[p],
            _ => &[],
        };
        let written = self.run_host(&src, &specs, &read, args.t, args.n, k)?;
        for (s, w) in specs.iter().zip(written) {
            let dst: &mut [f32] = match s.role {
                ArgRole::Output(o) => saved.outputs[o],
                ArgRole::Checkpoint(j) => saved.checkpoints[j],
                ArgRole::FinalState(j) => saved.final_states[j],
                _ => continue,
            };
            dst.copy_from_slice(&w);
        }
        Ok(())
    }

    /// Backward of `bwd` (the backward scan of `fwd`) from `checkpoints`: the scan's results as
    /// one reverse scan over all `T` steps would return them, or `None` when `K · S` is too
    /// large for the kernel's shared memory.
    pub(crate) fn backward(
        &self,
        fwd: &StepGraph,
        bwd: &ScanKernel,
        args: &ScanArgs<'_, f32>,
        k: usize,
        checkpoints: &[&[f32]],
        upstream: &Upstream<'_, f32>,
    ) -> Result<Option<ScanResult<f32>>, RuntimeError> {
        let src = self.source(fwd, Phase::Backward(bwd))?;
        if src.launch_shape(args.t, k).is_none() {
            return Ok(None);
        }
        let (t, n) = (args.t, args.n);
        let (ni, ns) = (fwd.inputs().len(), fwd.states().len());
        let present: Vec<&[f32]> = upstream
            .outputs
            .iter()
            .chain(&upstream.state_seqs)
            .flatten()
            .copied()
            .collect();
        let zeros = vec![0.0f32; n];
        let specs = specs(&src, bwd, t, n, k)?;
        let read = |role: ArgRole| -> &[f32] {
            match role {
                ArgRole::Input(i) if i < ni => args.inputs[i],
                ArgRole::Input(i) => present[i - ni - ns],
                ArgRole::Checkpoint(j) => checkpoints[j],
                ArgRole::InitState(j) => match upstream.final_states.get(j) {
                    Some(Some(g)) => g,
                    _ => &zeros,
                },
                ArgRole::Param(p) => args.params[p],
                _ => &[],
            }
        };
        let written = self.run_host(&src, &specs, &read, t, n, k)?;
        let mut r = ScanResult {
            outputs: vec![vec![]; bwd.graph.outputs().len()],
            state_seqs: vec![],
            final_states: vec![vec![]; ns],
        };
        for (s, w) in specs.iter().zip(written) {
            match s.role {
                ArgRole::Output(o) => r.outputs[o] = w,
                ArgRole::FinalState(j) => r.final_states[j] = w,
                _ => {}
            }
        }
        Ok(Some(r))
    }

    /// Runs `src` on host data: `read` gives each read buffer (`f32`, converted to the storage
    /// type); returns each buffer the kernel writes, decoded to `f32` (empty for the others).
    fn run_host<'a>(
        &self,
        src: &CheckpointSource,
        specs: &[BufferSpec],
        read: &dyn Fn(ArgRole) -> &'a [f32],
        t: usize,
        n: usize,
        k: usize,
    ) -> Result<Vec<Vec<f32>>, RuntimeError> {
        if n == 0 {
            // As the scans' launches: a grid of no blocks is not a launch.
            return Err(flexsn_compiler::scan::ShapeError::NoNeurons.into());
        }
        let dtype = src.dtype;
        let mut host: Vec<HostBuf> = specs
            .iter()
            .map(|s| {
                if src.writes(s.role) {
                    HostBuf::zeros(s.ty, dtype, s.len)
                } else {
                    HostBuf::encode(s.ty, dtype, read(s.role))
                }
            })
            .collect();
        let shape = Shape::new(src, t, n, k)?;
        match self.load(src)? {
            Loaded::Emulated(f) => {
                let ptrs: Vec<*mut c_void> = host.iter_mut().map(|b| b.as_mut_ptr()).collect();
                // SAFETY: one buffer per kernel argument in order, each of the length `specs`
                // gives for this [T, N, K] (what the kernel indexes), alive for the call.
                unsafe { shape.emulated(f, &ptrs, &src.entry) }?;
            }
            Loaded::Device(f, device) => {
                let _scope = device.scope()?;
                let stream = device.stream().clone();
                host = guard("flexsn checkpoint kernel", || {
                    let bufs = host
                        .iter()
                        .map(|h| super::device::upload(&stream, h))
                        .collect::<Result<Vec<_>, _>>()?;
                    {
                        let (ptrs, _order) = raw_ptrs(bufs.iter(), &stream);
                        // SAFETY: one device buffer per kernel argument in order, each at least
                        // as long as the kernel indexes for [T, N, K].
                        unsafe { shape.launch(&stream, &f, &src.entry, &ptrs, device.sync()) }?;
                    }
                    bufs.iter()
                        .zip(specs)
                        .map(|(b, s)| {
                            if src.writes(s.role) {
                                super::device::download(&stream, b, s.len)
                            } else {
                                Ok(HostBuf::F32(vec![]))
                            }
                        })
                        .collect()
                })?;
            }
        }
        Ok(specs
            .iter()
            .zip(host)
            .map(|(s, h)| {
                if src.writes(s.role) {
                    h.decode(dtype)
                } else {
                    vec![]
                }
            })
            .collect())
    }
}

/// The kernel a source is generated from.
#[derive(Clone, Copy)]
enum Phase<'a> {
    Forward(&'a ScanKernel),
    Backward(&'a ScanKernel),
}

/// Block size and shared memory of a launch with interval `k`, or the error that `K · S` is
/// too large.
pub(crate) fn launch_shape(
    src: &CheckpointSource,
    t: usize,
    k: usize,
) -> Result<(u32, usize), CudaError> {
    src.launch_shape(t, k).ok_or_else(|| {
        CudaError::TooLarge(format!(
            "checkpoint:{k} with {} state(s) needs {} bytes of shared memory per 32 threads, \
             more than {CHECKPOINT_SHARED_BYTES}: use a smaller K",
            src.states,
            k.min(t)
                .saturating_mul(src.states)
                .saturating_mul(32 * src.dtype.size_bytes())
        ))
    })
}

/// Grid, block, shared memory and scalars `T, N, K` of one launch of a checkpoint kernel.
pub(crate) struct Shape {
    grid: u32,
    block: u32,
    shared: usize,
    pub(crate) scalars: [i64; 3],
}

impl Shape {
    /// The launch of `src` over `[t, n]` with interval `k` (errors: `K · S` too large for shared
    /// memory, too many blocks, sizes past `i64`).
    pub(crate) fn new(
        src: &CheckpointSource,
        t: usize,
        n: usize,
        k: usize,
    ) -> Result<Self, CudaError> {
        let (block, shared) = launch_shape(src, t, k)?;
        let grid = u32::try_from(n.div_ceil(block as usize))
            .ok()
            .filter(|&b| b <= i32::MAX as u32)
            .ok_or_else(|| {
                CudaError::TooLarge(format!("N = {n} needs more blocks than one launch allows"))
            })?;
        Ok(Shape {
            grid,
            block,
            shared,
            scalars: [to_i64(t, "T")?, to_i64(n, "N")?, to_i64(k, "K")?],
        })
    }

    /// The driver's launch configuration.
    pub(crate) fn config(&self) -> LaunchConfig {
        LaunchConfig {
            grid_dim: (self.grid, 1, 1),
            block_dim: (self.block, 1, 1),
            shared_mem_bytes: self.shared as u32,
        }
    }

    /// Queues `f` (named `entry` in errors) on `stream` with the device addresses `ptrs`.
    ///
    /// # Safety
    /// `ptrs` holds one device buffer of the stream's device per kernel argument in order,
    /// each at least as long as the kernel indexes for this launch's `[T, N, K]`, alive until
    /// the kernel has run.
    pub(crate) unsafe fn launch(
        &self,
        stream: &Arc<cudarc::driver::CudaStream>,
        f: &CudaFunction,
        entry: &str,
        ptrs: &[u64],
        sync: bool,
    ) -> Result<(), CudaError> {
        // SAFETY: forwarded to the caller; the configuration gives the block the shared memory
        // its size needs.
        unsafe { launch_raw(stream, f, entry, self.config(), ptrs, &self.scalars, sync) }
    }

    /// Runs the emulated kernel `f` (named `entry` in errors) on `ptrs`.
    ///
    /// # Safety
    /// `ptrs` holds one host buffer per kernel argument in order, each at least as long as the
    /// kernel indexes for this launch's `[T, N, K]`, valid for the call.
    unsafe fn emulated(
        &self,
        f: EmuFn,
        ptrs: &[*mut c_void],
        entry: &str,
    ) -> Result<(), CudaError> {
        let [t, n, k] = self.scalars;
        // SAFETY: forwarded to the caller.
        let code = unsafe {
            f(
                ptrs.as_ptr(),
                t,
                n,
                k,
                self.grid,
                self.block,
                self.shared as u64,
            )
        };
        if code != 0 {
            return Err(CudaError::EmuRun {
                entry: entry.to_string(),
                code,
            });
        }
        Ok(())
    }
}

/// The buffers of a `[t, n]` run with interval `k` of `src`, generated from `kernel` (the
/// inference scan for the forward, the backward scan for the backward), in argument order.
pub fn specs(
    src: &CheckpointSource,
    kernel: &ScanKernel,
    t: usize,
    n: usize,
    k: usize,
) -> Result<Vec<BufferSpec>, CudaError> {
    if k == 0 {
        return Err(CudaError::Buffer {
            name: src.entry.clone(),
            message: "the checkpoint interval K must be at least 1".into(),
        });
    }
    let too_large =
        || CudaError::TooLarge(format!("T * N = {t} * {n} overflows the address space"));
    let tn = t.checked_mul(n).ok_or_else(too_large)?;
    let rows = t.div_ceil(k).checked_mul(n).ok_or_else(too_large)?;
    let g = &kernel.graph;
    Ok(src
        .args
        .iter()
        .map(|a| BufferSpec {
            name: a.name.clone(),
            role: a.role,
            ty: a.ty,
            len: match a.role {
                ArgRole::Input(_) | ArgRole::StateSeq(_) => tn,
                ArgRole::InitState(_) | ArgRole::FinalState(_) => n,
                ArgRole::Param(p) => param_len(g.params()[p].kind, t, n),
                ArgRole::Output(o) => kernel.output_len(o, t, n),
                ArgRole::Checkpoint(_) => rows,
            },
            // Dense rows: the checkpoint kernels take no pitches.
            pitch: None,
        })
        .collect())
}

impl Kernel {
    /// The fused backend and the source of `phase`, with the scan kernel it was made from.
    fn checkpoint_source(
        &self,
        phase: CheckpointPhase<'_>,
    ) -> Result<(Fused, CheckpointSource, ScanKernel), RuntimeError> {
        let fused = Fused::of(self.inference_scan().as_ref()).ok_or_else(|| {
            RuntimeError::BackendUnavailable {
                backend: "cuda",
                reason: format!(
                    "fused checkpoint kernels need a kernel compiled by a CUDA or emulated CUDA \
                     Jit; this one runs on {}",
                    self.jit().backend_name()
                ),
            }
        })?;
        let (kernel, phase) = match phase {
            CheckpointPhase::Forward => (self.inference_scan().kernel().clone(), true),
            CheckpointPhase::Backward(spec) => (self.backward_scan_kernel(spec)?, false),
        };
        let src = fused.source(
            self.graph(),
            if phase {
                Phase::Forward(&kernel)
            } else {
                Phase::Backward(&kernel)
            },
        )?;
        Ok((fused, src, kernel))
    }

    /// The buffers of a [`Kernel::launch_checkpointed`] call of `phase` for `[t, n]` and
    /// interval `k`, in order: reads (inputs, or for the backward its inputs with the
    /// checkpoints in place of the states before each step; initial states; params), then what
    /// the kernel writes. An error when `k` is 0 or when the backward of `checkpoint:K` would
    /// need more shared memory than a block has (checked for both phases, so that a forward
    /// never saves what its backward cannot use).
    pub fn checkpoint_arguments(
        &self,
        phase: CheckpointPhase<'_>,
        t: usize,
        n: usize,
        k: usize,
    ) -> Result<Vec<DeviceArgument>, RuntimeError> {
        let (_, src, kernel) = self.checkpoint_source(phase)?;
        self.check_checkpoint_fits(src.dtype, t, k)?;
        Ok(specs(&src, &kernel, t, n, k)?
            .into_iter()
            .map(|s| DeviceArgument::of(s, src.dtype))
            .collect())
    }

    fn check_checkpoint_fits(
        &self,
        dtype: StorageDtype,
        t: usize,
        k: usize,
    ) -> Result<(), RuntimeError> {
        let ns = self.graph().states().len();
        if flexsn_compiler::codegen::cuda::checkpoint::checkpoint_block(k.min(t), ns, dtype)
            .is_none()
        {
            let probe = CheckpointSource {
                code: String::new(),
                entry: String::new(),
                args: vec![],
                dtype,
                math: MathMode::Precise,
                states: ns,
                block_size: 32,
                backward: true,
            };
            launch_shape(&probe, t, k)?;
        }
        Ok(())
    }

    /// Runs `phase` of `checkpoint:K` for `[t, n]` on `buffers` (one `(address, elements)` per
    /// [`Kernel::checkpoint_arguments`] entry, in order). On a CUDA kernel: device memory of
    /// device `ordinal`, queued on `stream` (a `CUstream`; 0 the legacy default stream), with
    /// everything checked as [`Kernel::launch_device`] checks it. On an emulated CUDA kernel:
    /// host memory, run now (`ordinal` and `stream` unused).
    ///
    /// # Safety
    /// As [`Kernel::launch_device`]; on the emulated backend, each address must be the start of
    /// that many elements of the listed type in host memory, valid for the call.
    #[allow(clippy::too_many_arguments)]
    pub unsafe fn launch_checkpointed(
        &self,
        phase: CheckpointPhase<'_>,
        ordinal: usize,
        stream: u64,
        t: usize,
        n: usize,
        k: usize,
        buffers: &[(u64, usize)],
    ) -> Result<(), RuntimeError> {
        if n == 0 {
            return Err(flexsn_compiler::scan::ShapeError::NoNeurons.into());
        }
        let (fused, src, kernel) = self.checkpoint_source(phase)?;
        self.check_checkpoint_fits(src.dtype, t, k)?;
        let specs = specs(&src, &kernel, t, n, k)?;
        let want: Vec<(&str, StorageDtype, usize)> = specs
            .iter()
            .map(|s| {
                let d = match s.ty {
                    ArgType::Storage => src.dtype,
                    ArgType::F32 => StorageDtype::F32,
                };
                (s.name.as_str(), d, s.len)
            })
            .collect();
        if want.len() != buffers.len() {
            return Err(CudaError::Buffer {
                name: src.entry.clone(),
                message: format!("expected {} buffers, got {}", want.len(), buffers.len()),
            }
            .into());
        }
        let shape = Shape::new(&src, t, n, k)?;
        let fused = match fused {
            Fused::Device(d, o) if d.ordinal() != ordinal => {
                Fused::Device(shared_device_on(ordinal)?, o)
            }
            f => f,
        };
        match fused.load(&src)? {
            Loaded::Emulated(f) => {
                for (&(ptr, len), (name, _, need)) in buffers.iter().zip(&want) {
                    if len < *need || (ptr == 0 && *need > 0) {
                        return Err(CudaError::Buffer {
                            name: name.to_string(),
                            message: format!("needs {need} elements, has {len} at {ptr:#x}"),
                        }
                        .into());
                    }
                }
                let ptrs: Vec<*mut c_void> = buffers
                    .iter()
                    .map(|&(p, _)| p as usize as *mut c_void)
                    .collect();
                // SAFETY: the caller vouches for the host memory (this function's contract);
                // each buffer holds at least what the kernel indexes (checked above).
                unsafe { shape.emulated(f, &ptrs, &src.entry) }?;
                Ok(())
            }
            Loaded::Device(f, device) => {
                // SAFETY: forwarded to the caller (addresses and stream).
                let (bufs, caller): (Vec<BorrowedBuf>, CallerStream) = unsafe {
                    (
                        buffers
                            .iter()
                            .zip(&want)
                            .map(|(&(p, l), (_, d, _))| BorrowedBuf::from_raw(p, l, *d))
                            .collect(),
                        CallerStream::from_raw(ordinal, stream),
                    )
                };
                let ctx = device.context();
                let _scope = ContextScope::push(ctx)?;
                let ptrs = check_borrowed(&bufs, &want, device.ordinal(), &src.entry)?;
                let s = caller.wrap(ctx)?;
                // SAFETY: one checked device buffer per kernel argument in order, each at least
                // as long as the kernel indexes for [T, N, K].
                unsafe { shape.launch(&s, &f, &src.entry, &ptrs, device.sync()) }?;
                Ok(())
            }
        }
    }
}
