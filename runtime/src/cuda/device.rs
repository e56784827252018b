//! Real CUDA: a device context, NVRTC-compiled scan kernels, launches on device buffers (owned
//! `cudarc` slices, or [`BorrowedBuf`]s of a framework on its [`CallerStream`]) and on host slices
//! (copied in and out).
//!
//! Every entry point first checks that the driver library is present (cudarc panics on a missing
//! library) and runs cudarc calls under a panic guard, so a machine without CUDA gets a typed
//! [`CudaError`], never a panic. Every call pushes the device's context and pops it afterwards
//! ([`ContextScope`]), so the calling thread's current context is left as it was.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use cudarc::driver::{
    CudaContext, CudaFunction, CudaModule, CudaSlice, CudaStream, DevicePtr, LaunchConfig,
    SyncOnDrop,
};
use cudarc::nvrtc::Ptx;
use flexsn_compiler::codegen::cuda::{
    ArgType, CudaOptions, CudaSource, REDUCE_BLOCK, RowLayout, StorageDtype, codegen_scan,
    reduce_passes,
};
use flexsn_compiler::scan::{ScanArgs, ScanKernel, ScanResult};

use super::CudaError;
use super::borrowed::{BorrowedBuf, CallerStream, ContextScope, KeepCurrent};
use super::error::{driver_err, guard};
use super::host::{
    BufferSpec, HostBuf, buffer_specs, collect_result, grid_for, input_buffers, launch_scalars,
    layout_specs, pitched_specs,
};
use super::launch::{SyncMode, launch_raw};
use super::nvrtc::{self, Image, ModuleCache, Target};

/// Whether the CUDA driver library can be loaded (no device needed).
pub fn driver_present() -> bool {
    // SAFETY: only tries to dlopen candidate names.
    std::panic::catch_unwind(|| unsafe { cudarc::driver::sys::is_culib_present() }).unwrap_or(false)
}

/// The CUDA version the driver supports, `(major, minor)` (`cuDriverGetVersion`: 12080 is 12.8).
pub fn driver_version() -> Result<(i32, i32), CudaError> {
    if !driver_present() {
        return Err(CudaError::NoDriver);
    }
    guard("cuDriverGetVersion", || {
        let mut v: std::ffi::c_int = 0;
        // SAFETY: writes one int; needs no cuInit.
        unsafe { cudarc::driver::sys::cuDriverGetVersion(&mut v) }
            .result()
            .map_err(driver_err("cuDriverGetVersion"))?;
        Ok((v / 1000, (v % 1000) / 10))
    })
}

/// Number of CUDA devices: `Err(NoDriver)` without a driver, `Ok(0)` when the driver finds none.
pub fn device_count() -> Result<usize, CudaError> {
    if !driver_present() {
        return Err(CudaError::NoDriver);
    }
    guard("cuDeviceGetCount", || match CudaContext::device_count() {
        Ok(c) => Ok(c.max(0) as usize),
        Err(e) if e.0 == cudarc::driver::sys::cudaError_enum::CUDA_ERROR_NO_DEVICE => Ok(0),
        Err(e) => Err(driver_err("cuDeviceGetCount")(e)),
    })
}

/// A device buffer in the element type a kernel argument expects.
#[derive(Debug)]
pub enum DeviceBuf {
    /// f32 elements.
    F32(CudaSlice<f32>),
    /// f16 or bf16 bits.
    U16(CudaSlice<u16>),
}

impl DeviceBuf {
    /// Number of elements.
    pub fn len(&self) -> usize {
        match self {
            DeviceBuf::F32(s) => s.len(),
            DeviceBuf::U16(s) => s.len(),
        }
    }

    /// Whether the buffer has no elements.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Checks that the buffer holds elements of type `elem` (f32, or u16 bits for f16/bf16) and
    /// at least `len` of them; `name` names it in the error.
    pub fn check(&self, name: &str, elem: StorageDtype, len: usize) -> Result<(), CudaError> {
        let want_u16 = elem != StorageDtype::F32;
        let is_u16 = matches!(self, DeviceBuf::U16(_));
        if want_u16 != is_u16 {
            return Err(CudaError::Buffer {
                name: name.to_string(),
                message: format!(
                    "element type: expected {}, got {}",
                    if want_u16 {
                        "u16 (f16/bf16 bits)"
                    } else {
                        "f32"
                    },
                    if is_u16 { "u16" } else { "f32" }
                ),
            });
        }
        if self.len() < len {
            return Err(CudaError::Buffer {
                name: name.to_string(),
                message: format!("needs {len} elements, has {}", self.len()),
            });
        }
        Ok(())
    }

    /// The device address for a launch on `stream` (the guard orders cudarc's events).
    pub(crate) fn raw<'a>(&'a self, stream: &'a CudaStream) -> (u64, SyncOnDrop<'a>) {
        match self {
            DeviceBuf::F32(x) => x.device_ptr(stream),
            DeviceBuf::U16(x) => x.device_ptr(stream),
        }
    }
}

/// Device addresses of owned buffers for one launch, with the guards that keep cudarc's stream
/// ordering of those buffers.
pub(crate) fn raw_ptrs<'a>(
    bufs: impl IntoIterator<Item = &'a DeviceBuf>,
    stream: &'a CudaStream,
) -> (Vec<u64>, Vec<SyncOnDrop<'a>>) {
    bufs.into_iter().map(|b| b.raw(stream)).unzip()
}

/// Checks borrowed buffers against their kernel arguments (`(name, element type, length)`, in
/// order) and asks the driver that each lives on device `ordinal`; returns their addresses.
pub(crate) fn check_borrowed(
    bufs: &[BorrowedBuf],
    want: &[(&str, StorageDtype, usize)],
    ordinal: usize,
    kernel: &str,
) -> Result<Vec<u64>, CudaError> {
    if bufs.len() != want.len() {
        return Err(CudaError::Buffer {
            name: kernel.to_string(),
            message: format!("expected {} buffers, got {}", want.len(), bufs.len()),
        });
    }
    for (b, (name, elem, len)) in bufs.iter().zip(want) {
        b.check(name, *elem, *len)?;
        b.check_owner(name, ordinal)?;
    }
    Ok(bufs.iter().map(|b| b.ptr()).collect())
}

/// One CUDA device with its stream, module cache and loaded kernels.
#[derive(Debug)]
pub struct CudaDevice {
    ctx: Arc<CudaContext>,
    stream: Arc<CudaStream>,
    name: String,
    cc: (i32, i32),
    target: Target,
    modules: ModuleCache,
    sync: Arc<SyncMode>,
    loaded: Mutex<HashMap<String, Arc<DeviceKernel>>>,
    mixings: Mutex<HashMap<String, Arc<super::mixing::DeviceMixing>>>,
}

impl CudaDevice {
    /// Opens device `ordinal`. Typed errors: no driver, no such device, no NVRTC, an NVRTC the
    /// driver cannot load the output of, an architecture NVRTC cannot target.
    pub fn new(ordinal: usize) -> Result<Self, CudaError> {
        Self::with_cache(ordinal, ModuleCache::new())
    }

    /// Opens device `ordinal` with a given module cache. The calling thread's current context is
    /// the same afterwards.
    pub fn with_cache(ordinal: usize, modules: ModuleCache) -> Result<Self, CudaError> {
        let count = device_count()?;
        if ordinal >= count {
            return Err(CudaError::NoDevice { ordinal, count });
        }
        let driver = driver_version()?;
        let nv = nvrtc::nvrtc()?;
        let _keep = KeepCurrent::new();
        guard("opening the CUDA device", || {
            let ctx = CudaContext::new(ordinal).map_err(driver_err("cuDevicePrimaryCtxRetain"))?;
            // The device's own stream for owned buffers and host-slice calls; calls on a
            // framework's memory use its stream instead (`launch_on`).
            let stream = ctx.default_stream();
            let name = ctx.name().map_err(driver_err("cuDeviceGetName"))?;
            let cc = ctx
                .compute_capability()
                .map_err(driver_err("cuDeviceGetAttribute"))?;
            Ok(CudaDevice {
                target: nvrtc::target_for_device(nv, cc, Some(driver))?,
                ctx,
                stream,
                name,
                cc,
                modules,
                sync: SyncMode::from_env(),
                loaded: Mutex::new(HashMap::new()),
                mixings: Mutex::new(HashMap::new()),
            })
        })
    }

    /// The device's name (e.g. `NVIDIA H200`).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The device ordinal.
    pub fn ordinal(&self) -> usize {
        self.ctx.ordinal()
    }

    /// `(major, minor)` compute capability.
    pub fn compute_capability(&self) -> (i32, i32) {
        self.cc
    }

    /// What NVRTC compiles for on this device.
    pub fn target(&self) -> Target {
        self.target
    }

    /// The device's primary context (shared with frameworks such as PyTorch).
    pub fn context(&self) -> &Arc<CudaContext> {
        &self.ctx
    }

    /// The device's own stream, for owned buffers and host-slice calls.
    pub fn stream(&self) -> &Arc<CudaStream> {
        &self.stream
    }

    /// The compiled-module cache.
    pub fn module_cache(&self) -> &ModuleCache {
        &self.modules
    }

    /// Synchronous mode: every launch on this device (kernels loaded before or after) waits for
    /// the kernel and reports a device fault as that kernel's [`CudaError::KernelFault`]. Off by
    /// default; `FLEXSN_CUDA_SYNC=1` turns it on at open.
    pub fn set_sync(&self, on: bool) {
        self.sync.set(on)
    }

    /// Whether synchronous mode is on.
    pub fn sync(&self) -> bool {
        self.sync.get()
    }

    pub(crate) fn sync_mode(&self) -> &Arc<SyncMode> {
        &self.sync
    }

    /// Pushes this device's context for one call ([`ContextScope`]).
    pub fn scope(&self) -> Result<ContextScope, CudaError> {
        ContextScope::push(&self.ctx)
    }

    /// The PSN mixing kernels loaded on this device, by entry name.
    pub(crate) fn loaded_mixings(
        &self,
    ) -> &Mutex<HashMap<String, Arc<super::mixing::DeviceMixing>>> {
        &self.mixings
    }

    /// Compiles (or fetches from the caches) and loads the kernel for `kernel` with `opts`.
    pub fn compile(
        &self,
        kernel: &ScanKernel,
        opts: &CudaOptions,
    ) -> Result<Arc<DeviceKernel>, CudaError> {
        let src = codegen_scan(kernel, opts)?;
        self.load(kernel, src)
    }

    /// Compiles `src` through the module cache (NVRTC on a miss) and loads the module.
    pub fn load_module(
        &self,
        src: &impl super::nvrtc::NvrtcSource,
    ) -> Result<Arc<CudaModule>, CudaError> {
        let image = self.modules.get(src, self.target)?;
        let _scope = self.scope()?;
        guard("loading the CUDA module", || {
            let ptx = match &*image {
                Image::Ptx(p) => Ptx::from_src(p.clone()),
                Image::Cubin(c) => Ptx::from_binary(c.clone()),
            };
            self.ctx
                .load_module(ptx)
                .map_err(driver_err("cuModuleLoadData"))
        })
    }

    /// Loads generated source (compiled through the module cache).
    pub fn load(
        &self,
        kernel: &ScanKernel,
        src: CudaSource,
    ) -> Result<Arc<DeviceKernel>, CudaError> {
        let key = super::cache::key(&[src.code.as_bytes(), src.entry.as_bytes()]);
        if let Some(k) = self
            .loaded
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&key)
        {
            return Ok(k.clone());
        }
        let module = self.load_module(&src)?;
        let _scope = self.scope()?;
        let k = guard("loading the CUDA module", || {
            let scan = module
                .load_function(&src.entry)
                .map_err(driver_err("cuModuleGetFunction"))?;
            let reduce = module
                .load_function(&src.reduce_entry)
                .map_err(driver_err("cuModuleGetFunction"))?;
            Ok(DeviceKernel {
                kernel: kernel.clone(),
                source: src,
                _module: module,
                scan,
                reduce,
                stream: self.stream.clone(),
                sync: self.sync.clone(),
                host_bufs: Mutex::default(),
                reduce_ws: Mutex::default(),
            })
        })?;
        let k = Arc::new(k);
        self.loaded
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(key, k.clone());
        Ok(k)
    }

    /// Copies `xs` to a new device buffer.
    pub fn upload_f32(&self, xs: &[f32]) -> Result<CudaSlice<f32>, CudaError> {
        let _scope = self.scope()?;
        guard("cuMemcpyHtoD", || {
            if xs.is_empty() {
                return self
                    .stream
                    .alloc_zeros::<f32>(1)
                    .map_err(driver_err("cuMemAlloc"));
            }
            self.stream
                .clone_htod(xs)
                .map_err(driver_err("cuMemcpyHtoD"))
        })
    }

    /// Synchronizes the stream.
    pub fn synchronize(&self) -> Result<(), CudaError> {
        let _scope = self.scope()?;
        guard("cuStreamSynchronize", || {
            self.stream
                .synchronize()
                .map_err(driver_err("cuStreamSynchronize"))
        })
    }
}

/// A loaded scan kernel (and its reduction kernel) on one device.
#[derive(Debug)]
pub struct DeviceKernel {
    kernel: ScanKernel,
    /// The generated source the kernel was compiled from.
    pub source: CudaSource,
    _module: Arc<CudaModule>,
    scan: CudaFunction,
    reduce: CudaFunction,
    stream: Arc<CudaStream>,
    sync: Arc<SyncMode>,
    /// Device buffers of host-slice runs ([`DeviceKernel::run_host`]), one per argument, kept
    /// and reused while large enough (so a repeated call allocates nothing on the device).
    host_bufs: Mutex<Vec<DeviceBuf>>,
    /// The pass outputs of [`DeviceKernel::reduce_sum`], reused while large enough.
    reduce_ws: Mutex<Option<CudaSlice<f32>>>,
}

impl DeviceKernel {
    /// The scan kernel this runs.
    pub fn kernel(&self) -> &ScanKernel {
        &self.kernel
    }

    /// The device ordinal the kernel is loaded on.
    pub fn ordinal(&self) -> usize {
        self.stream.context().ordinal()
    }

    /// The buffers of a dense `[t, n]` run, in argument order.
    pub fn buffer_specs(&self, t: usize, n: usize) -> Result<Vec<BufferSpec>, CudaError> {
        buffer_specs(&self.source, &self.kernel, t, n)
    }

    /// The buffers of a `[t, n]` run with rows laid out as `layout`, in argument order.
    pub fn layout_specs(
        &self,
        t: usize,
        n: usize,
        layout: RowLayout,
    ) -> Result<Vec<BufferSpec>, CudaError> {
        layout_specs(&self.source, &self.kernel, t, n, layout)
    }

    /// The element type of each buffer of a `[t, n]` run with its name and length, in argument
    /// order (what [`DeviceKernel::launch_on`] expects).
    pub fn arguments(
        &self,
        t: usize,
        n: usize,
    ) -> Result<Vec<(String, StorageDtype, usize)>, CudaError> {
        Ok(self
            .buffer_specs(t, n)?
            .into_iter()
            .map(|s| {
                let elem = self.elem(s.ty);
                (s.name, elem, s.len)
            })
            .collect())
    }

    fn elem(&self, ty: ArgType) -> StorageDtype {
        match ty {
            ArgType::Storage => self.source.dtype,
            ArgType::F32 => StorageDtype::F32,
        }
    }

    /// Zeroed device buffers for a dense `[t, n]` run (at least one element each, so that empty
    /// buffers are valid allocations).
    pub fn alloc_buffers(&self, t: usize, n: usize) -> Result<Vec<DeviceBuf>, CudaError> {
        self.alloc_buffers_with(t, n, RowLayout::Dense)
    }

    /// Zeroed device buffers for a `[t, n]` run with rows laid out as `layout`.
    pub fn alloc_buffers_with(
        &self,
        t: usize,
        n: usize,
        layout: RowLayout,
    ) -> Result<Vec<DeviceBuf>, CudaError> {
        let specs = self.layout_specs(t, n, layout)?;
        let _scope = ContextScope::push(self.stream.context())?;
        guard("cuMemAlloc", || {
            specs
                .iter()
                .map(|s| alloc(&self.stream, s.ty, self.source.dtype, s.len))
                .collect()
        })
    }

    /// The specs, launch configuration and scalars (`T`, `N`, the pitches) of a `[t, n]` run
    /// with `count` buffers whose sequences have the row pitches `pitches` (see
    /// [`pitched_specs`]).
    fn plan(
        &self,
        t: usize,
        n: usize,
        count: usize,
        pitches: &[Option<usize>],
    ) -> Result<(Vec<BufferSpec>, LaunchConfig, Vec<i64>), CudaError> {
        if n == 0 {
            return Err(flexsn_compiler::scan::ShapeError::NoNeurons.into());
        }
        let specs = pitched_specs(&self.source, &self.kernel, t, n, pitches)?;
        if count != specs.len() {
            return Err(CudaError::Buffer {
                name: self.source.entry.clone(),
                message: format!("expected {} buffers, got {count}", specs.len()),
            });
        }
        let grid = grid_for(&self.source, n)?;
        let cfg = LaunchConfig {
            grid_dim: (grid, 1, 1),
            block_dim: (self.source.block_size, 1, 1),
            shared_mem_bytes: 0,
        };
        let scalars = launch_scalars(&specs, t, n)?;
        Ok((specs, cfg, scalars))
    }

    /// Launches the scan on `stream` with checked addresses.
    fn launch_checked(
        &self,
        stream: &Arc<CudaStream>,
        ptrs: &[u64],
        cfg: LaunchConfig,
        scalars: &[i64],
    ) -> Result<(), CudaError> {
        // SAFETY: the argument list matches the generated kernel's signature (one device
        // pointer per `source.args` entry, in order, then `long long T, N` and one pitch per
        // sequence, from `launch_scalars`); the callers checked that every buffer has the
        // element type and at least the length the kernel indexes for this [T, N] and these
        // pitches (`T * pitch`, each pitch at least N); the grid covers N with the kernel's
        // block size.
        unsafe {
            launch_raw(
                stream,
                &self.scan,
                &self.source.entry,
                cfg,
                ptrs,
                scalars,
                self.sync.get(),
            )
        }
    }

    /// Launches the scan on dense device buffers (argument order of [`CudaSource::args`]; each
    /// at least as long as its [`BufferSpec`]). Asynchronous on the device's stream.
    pub fn launch(&self, bufs: &mut [DeviceBuf], t: usize, n: usize) -> Result<(), CudaError> {
        self.launch_with(bufs, t, n, RowLayout::Dense)
    }

    /// [`DeviceKernel::launch`] on buffers whose rows are laid out as `layout` (as
    /// [`DeviceKernel::alloc_buffers_with`] makes them).
    pub fn launch_with(
        &self,
        bufs: &mut [DeviceBuf],
        t: usize,
        n: usize,
        layout: RowLayout,
    ) -> Result<(), CudaError> {
        let specs = self.layout_specs(t, n, layout)?;
        let pitches: Vec<_> = specs.iter().map(|s| s.pitch).collect();
        let (specs, cfg, scalars) = self.plan(t, n, bufs.len(), &pitches)?;
        for (s, b) in specs.iter().zip(bufs.iter()) {
            b.check(&s.name, self.elem(s.ty), s.len)?;
        }
        let _scope = ContextScope::push(self.stream.context())?;
        let (ptrs, _order) = raw_ptrs(bufs.iter(), &self.stream);
        self.launch_checked(&self.stream, &ptrs, cfg, &scalars)
    }

    /// Launches the scan on the caller's memory and stream: `bufs` in argument order
    /// ([`DeviceKernel::arguments`]: inputs `[T, N]`, initial states `[N]`, parameters, then the
    /// outputs, state sequences and final states it writes), each of exactly the element type and
    /// at least the length listed. A `[T, N]` buffer's rows are `N` apart unless it carries its
    /// own pitch ([`BorrowedBuf::with_pitch`]: at least `N`, and then `T * pitch` elements).
    /// Shapes, pitches, element types, alignment and the device that owns each address are
    /// checked before anything is queued. Asynchronous on `stream` (synchronous in
    /// [`CudaDevice::set_sync`] mode); the device's context is pushed for the call and popped.
    pub fn launch_on(
        &self,
        stream: &CallerStream,
        bufs: &[BorrowedBuf],
        t: usize,
        n: usize,
    ) -> Result<(), CudaError> {
        let pitches: Vec<_> = bufs.iter().map(|b| b.pitch()).collect();
        let (specs, cfg, scalars) = self.plan(t, n, bufs.len(), &pitches)?;
        let want: Vec<_> = specs
            .iter()
            .map(|s| (s.name.as_str(), self.elem(s.ty), s.len))
            .collect();
        let ctx = self.stream.context();
        let _scope = ContextScope::push(ctx)?;
        let ptrs = check_borrowed(bufs, &want, self.ordinal(), &self.source.entry)?;
        let caller = stream.wrap(ctx)?;
        self.launch_checked(&caller, &ptrs, cfg, &scalars)
    }

    /// Runs the scan on host data: copies in, launches, copies out (and converts f16/bf16). The
    /// device buffers are the kernel's own, kept from the last call while they are large enough:
    /// a repeated call of the same or a smaller shape allocates nothing on the device. Their
    /// rows are padded ([`RowLayout::Padded`]), so every warp access is sector-aligned.
    pub fn run_host(&self, args: &ScanArgs<'_, f32>) -> Result<ScanResult<f32>, CudaError> {
        args.check(&self.kernel.graph)?;
        let layout = RowLayout::Padded;
        let specs = self.layout_specs(args.t, args.n, layout)?;
        let host = input_buffers(&self.source, &specs, args);
        let _scope = ContextScope::push(self.stream.context())?;
        let mut bufs = self.host_bufs.lock().unwrap_or_else(|e| e.into_inner());
        let dtype = self.source.dtype;
        let out = guard("cuMemcpyHtoD", || {
            bufs.truncate(specs.len());
            for (i, s) in specs.iter().enumerate() {
                let elem = self.elem(s.ty);
                let fits = bufs
                    .get(i)
                    .is_some_and(|b| b.check(&s.name, elem, s.len).is_ok());
                if !fits {
                    let fresh = alloc(&self.stream, s.ty, dtype, s.len)?;
                    if i < bufs.len() {
                        bufs[i] = fresh;
                    } else {
                        bufs.push(fresh);
                    }
                }
            }
            for ((h, s), b) in host.iter().zip(&specs).zip(bufs.iter_mut()) {
                if !s.role.is_output() && !h.is_empty() {
                    upload_into(&self.stream, h, b)?;
                }
            }
            Ok(())
        });
        out?;
        self.launch_with(&mut bufs, args.t, args.n, layout)?;
        let out = guard("cuMemcpyDtoH", || {
            bufs.iter()
                .zip(&specs)
                .map(|(b, s)| {
                    if s.role.is_output() {
                        download(&self.stream, b, s.len)
                    } else {
                        Ok(HostBuf::F32(Vec::new()))
                    }
                })
                .collect::<Result<Vec<_>, _>>()
        })?;
        Ok(collect_result(
            &self.source,
            &self.kernel,
            &specs,
            &out,
            args.n,
        ))
    }

    /// Sums a device buffer of `len` floats with the deterministic reduction kernel; returns the
    /// sum (copied to the host). The passes write into a workspace the kernel keeps.
    pub fn reduce_sum(&self, values: &CudaSlice<f32>, len: usize) -> Result<f32, CudaError> {
        if values.len() < len {
            return Err(CudaError::Buffer {
                name: "values".into(),
                message: format!("needs {len} elements, has {}", values.len()),
            });
        }
        let _scope = ContextScope::push(self.stream.context())?;
        let passes = reduce_passes(len as u64);
        if passes.len() == 1 {
            // 0 or 1 element: nothing to add.
            if len == 0 {
                return Ok(0.0);
            }
            let v = guard("cuMemcpyDtoH", || {
                let mut one = [0.0f32];
                self.stream
                    .memcpy_dtoh(&values.slice(0..1), &mut one)
                    .map_err(driver_err("cuMemcpyDtoH"))?;
                Ok(one)
            })?;
            return Ok(v[0]);
        }
        let total: u64 = passes[1..].iter().sum();
        let total = usize::try_from(total)
            .map_err(|_| CudaError::TooLarge(format!("{len} values to reduce")))?;
        let mut ws = self.reduce_ws.lock().unwrap_or_else(|e| e.into_inner());
        guard("flexsn reduce", || {
            if ws.as_ref().is_none_or(|w| w.len() < total) {
                *ws = Some(
                    self.stream
                        .alloc_zeros::<f32>(total)
                        .map_err(driver_err("cuMemAlloc"))?,
                );
            }
            let ws = ws.as_ref().expect("allocated above");
            let (base, _w) = ws.device_ptr(&self.stream);
            let (first, _r) = values.device_ptr(&self.stream);
            // Pass k reads the previous pass's output (the values for the first) and writes its
            // partials after it in the workspace.
            let (mut input, mut cur_len, mut off) = (first, len, 0usize);
            for &next_len in &passes[1..] {
                let grid = u32::try_from(next_len)
                    .map_err(|_| CudaError::TooLarge(format!("{len} values to reduce")))?;
                let out = base + (off * 4) as u64;
                let cfg = LaunchConfig {
                    grid_dim: (grid, 1, 1),
                    block_dim: (REDUCE_BLOCK, 1, 1),
                    shared_mem_bytes: 0,
                };
                // SAFETY: `flexsn_reduce_sum_f32(const float*, float*, long long)`: the input
                // holds at least `cur_len` floats (the values, or the previous pass's partials),
                // `out` one float per block inside the workspace (`off + next_len <= total`),
                // block size fixed.
                unsafe {
                    launch_raw(
                        &self.stream,
                        &self.reduce,
                        &self.source.reduce_entry,
                        cfg,
                        &[input, out],
                        &[to_i64(cur_len, "len")?],
                        self.sync.get(),
                    )
                }?;
                input = out;
                cur_len = next_len as usize;
                off += next_len as usize;
            }
            let mut one = [0.0f32];
            self.stream
                .memcpy_dtoh(&ws.slice(off - 1..off), &mut one)
                .map_err(driver_err("cuMemcpyDtoH"))?;
            Ok(one[0])
        })
    }
}

pub(crate) fn to_i64(x: usize, what: &str) -> Result<i64, CudaError> {
    i64::try_from(x).map_err(|_| CudaError::TooLarge(format!("{what} = {x} exceeds 2^63")))
}

pub(crate) fn alloc(
    stream: &Arc<CudaStream>,
    ty: ArgType,
    dtype: StorageDtype,
    len: usize,
) -> Result<DeviceBuf, CudaError> {
    let len = len.max(1);
    Ok(match (ty, dtype) {
        (ArgType::F32, _) | (ArgType::Storage, StorageDtype::F32) => DeviceBuf::F32(
            stream
                .alloc_zeros::<f32>(len)
                .map_err(driver_err("cuMemAlloc"))?,
        ),
        _ => DeviceBuf::U16(
            stream
                .alloc_zeros::<u16>(len)
                .map_err(driver_err("cuMemAlloc"))?,
        ),
    })
}

/// Copies host data into the start of a (large enough) device buffer of the same element type.
fn upload_into(stream: &Arc<CudaStream>, h: &HostBuf, b: &mut DeviceBuf) -> Result<(), CudaError> {
    let err = driver_err("cuMemcpyHtoD");
    match (h, b) {
        (HostBuf::F32(v), DeviceBuf::F32(d)) => stream
            .memcpy_htod(v, &mut d.slice_mut(0..v.len()))
            .map_err(err),
        (HostBuf::U16(v), DeviceBuf::U16(d)) => stream
            .memcpy_htod(v, &mut d.slice_mut(0..v.len()))
            .map_err(err),
        _ => Err(CudaError::Buffer {
            name: "host data".into(),
            message: "element type differs from the device buffer's".into(),
        }),
    }
}

/// A new device buffer holding `h` (at least one element, so that empty buffers are valid
/// allocations).
pub(crate) fn upload(stream: &Arc<CudaStream>, h: &HostBuf) -> Result<DeviceBuf, CudaError> {
    let err = driver_err("cuMemcpyHtoD");
    Ok(match h {
        HostBuf::F32(v) if !v.is_empty() => DeviceBuf::F32(stream.clone_htod(v).map_err(err)?),
        HostBuf::U16(v) if !v.is_empty() => DeviceBuf::U16(stream.clone_htod(v).map_err(err)?),
        HostBuf::F32(_) => alloc(stream, ArgType::F32, StorageDtype::F32, 1)?,
        HostBuf::U16(_) => alloc(stream, ArgType::Storage, StorageDtype::F16, 1)?,
    })
}

/// The first `len` elements of a device buffer.
pub(crate) fn download(
    stream: &Arc<CudaStream>,
    b: &DeviceBuf,
    len: usize,
) -> Result<HostBuf, CudaError> {
    let err = driver_err("cuMemcpyDtoH");
    if len == 0 {
        return Ok(match b {
            DeviceBuf::F32(_) => HostBuf::F32(vec![]),
            DeviceBuf::U16(_) => HostBuf::U16(vec![]),
        });
    }
    Ok(match b {
        DeviceBuf::F32(x) => {
            let mut v = vec![0.0f32; len];
            stream.memcpy_dtoh(&x.slice(0..len), &mut v).map_err(err)?;
            HostBuf::F32(v)
        }
        DeviceBuf::U16(x) => {
            let mut v = vec![0u16; len];
            stream.memcpy_dtoh(&x.slice(0..len), &mut v).map_err(err)?;
            HostBuf::U16(v)
        }
    })
}
