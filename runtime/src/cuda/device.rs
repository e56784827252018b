//! Real CUDA: a device context, NVRTC-compiled scan kernels, launches on device buffers
//! (`cudarc` slices) and on host slices (copied in and out).
//!
//! Every entry point first checks that the driver library is present (cudarc panics on a missing
//! library) and runs cudarc calls under a panic guard, so a machine without CUDA gets a typed
//! [`CudaError`], never a panic.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use cudarc::driver::{
    CudaContext, CudaFunction, CudaModule, CudaSlice, CudaStream, LaunchConfig, PushKernelArg,
};
use cudarc::nvrtc::Ptx;
use flexsn_compiler::codegen::cuda::{
    ArgType, CudaOptions, CudaSource, REDUCE_BLOCK, StorageDtype, codegen_scan, reduce_passes,
};
use flexsn_compiler::scan::{ScanArgs, ScanKernel, ScanResult};

use super::CudaError;
use super::error::{driver_err, guard};
use super::host::{BufferSpec, HostBuf, buffer_specs, collect_result, grid_for, input_buffers};
use super::nvrtc::{self, Image, ModuleCache, Target};

/// Whether the CUDA driver library can be loaded (no device needed).
pub fn driver_present() -> bool {
    // SAFETY: only tries to dlopen candidate names.
    std::panic::catch_unwind(|| unsafe { cudarc::driver::sys::is_culib_present() }).unwrap_or(false)
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
    F32(CudaSlice<f32>),
    /// f16 or bf16 bits.
    U16(CudaSlice<u16>),
}

impl DeviceBuf {
    pub fn len(&self) -> usize {
        match self {
            DeviceBuf::F32(s) => s.len(),
            DeviceBuf::U16(s) => s.len(),
        }
    }

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
    loaded: Mutex<HashMap<String, Arc<DeviceKernel>>>,
    mixings: Mutex<HashMap<String, Arc<super::mixing::DeviceMixing>>>,
}

impl CudaDevice {
    /// Opens device `ordinal`. Typed errors: no driver, no such device, no NVRTC.
    pub fn new(ordinal: usize) -> Result<Self, CudaError> {
        Self::with_cache(ordinal, ModuleCache::new())
    }

    /// Opens device `ordinal` with a given module cache.
    pub fn with_cache(ordinal: usize, modules: ModuleCache) -> Result<Self, CudaError> {
        let count = device_count()?;
        if ordinal >= count {
            return Err(CudaError::NoDevice { ordinal, count });
        }
        let nv = nvrtc::nvrtc()?;
        guard("opening the CUDA device", || {
            let ctx = CudaContext::new(ordinal).map_err(driver_err("cuCtxCreate"))?;
            let stream = ctx.default_stream();
            let name = ctx.name().map_err(driver_err("cuDeviceGetName"))?;
            let cc = ctx
                .compute_capability()
                .map_err(driver_err("cuDeviceGetAttribute"))?;
            Ok(CudaDevice {
                target: nvrtc::target_for_device(nv, cc),
                ctx,
                stream,
                name,
                cc,
                modules,
                loaded: Mutex::new(HashMap::new()),
                mixings: Mutex::new(HashMap::new()),
            })
        })
    }

    /// The device's name (e.g. `NVIDIA H200`).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// `(major, minor)` compute capability.
    pub fn compute_capability(&self) -> (i32, i32) {
        self.cc
    }

    /// What NVRTC compiles for on this device.
    pub fn target(&self) -> Target {
        self.target
    }

    pub fn context(&self) -> &Arc<CudaContext> {
        &self.ctx
    }

    pub fn stream(&self) -> &Arc<CudaStream> {
        &self.stream
    }

    pub fn module_cache(&self) -> &ModuleCache {
        &self.modules
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
    pub source: CudaSource,
    _module: Arc<CudaModule>,
    scan: CudaFunction,
    reduce: CudaFunction,
    stream: Arc<CudaStream>,
}

impl DeviceKernel {
    /// The scan kernel this runs.
    pub fn kernel(&self) -> &ScanKernel {
        &self.kernel
    }

    /// The buffers of a `[t, n]` run, in argument order.
    pub fn buffer_specs(&self, t: usize, n: usize) -> Result<Vec<BufferSpec>, CudaError> {
        buffer_specs(&self.source, &self.kernel, t, n)
    }

    /// Zeroed device buffers for a `[t, n]` run (at least one element each, so that empty
    /// buffers are valid allocations).
    pub fn alloc_buffers(&self, t: usize, n: usize) -> Result<Vec<DeviceBuf>, CudaError> {
        let specs = self.buffer_specs(t, n)?;
        guard("cuMemAlloc", || {
            specs
                .iter()
                .map(|s| alloc(&self.stream, s.ty, self.source.dtype, s.len))
                .collect()
        })
    }

    /// Launches the scan on device buffers (argument order of [`CudaSource::args`]; each at least
    /// as long as its [`BufferSpec`]). Asynchronous on the device's stream.
    pub fn launch(&self, bufs: &mut [DeviceBuf], t: usize, n: usize) -> Result<(), CudaError> {
        if n == 0 {
            return Err(flexsn_compiler::scan::ShapeError::NoNeurons.into());
        }
        let specs = self.buffer_specs(t, n)?;
        if bufs.len() != specs.len() {
            return Err(CudaError::Buffer {
                name: self.source.entry.clone(),
                message: format!("expected {} buffers, got {}", specs.len(), bufs.len()),
            });
        }
        for (s, b) in specs.iter().zip(bufs.iter()) {
            let elem = match s.ty {
                ArgType::Storage => self.source.dtype,
                ArgType::F32 => StorageDtype::F32,
            };
            b.check(&s.name, elem, s.len)?;
        }
        let grid = grid_for(&self.source, n)?;
        let (ti, ni) = (to_i64(t, "T")?, to_i64(n, "N")?);
        let cfg = LaunchConfig {
            grid_dim: (grid, 1, 1),
            block_dim: (self.source.block_size, 1, 1),
            shared_mem_bytes: 0,
        };
        guard("cuLaunchKernel", || {
            let mut b = self.stream.launch_builder(&self.scan);
            for (buf, s) in bufs.iter_mut().zip(&specs) {
                match (buf, s.role.is_output()) {
                    (DeviceBuf::F32(x), true) => b.arg(x),
                    (DeviceBuf::F32(x), false) => b.arg(&*x),
                    (DeviceBuf::U16(x), true) => b.arg(x),
                    (DeviceBuf::U16(x), false) => b.arg(&*x),
                };
            }
            b.arg(&ti).arg(&ni);
            // SAFETY: the argument list matches the generated kernel's signature (one device
            // pointer per `source.args` entry, in order, then `long long T, N`), every buffer has
            // the element type and at least the length the kernel indexes for this [T, N], and
            // the grid covers N with the kernel's block size.
            unsafe { b.launch(cfg) }.map_err(driver_err("cuLaunchKernel"))?;
            Ok(())
        })
    }

    /// Runs the scan on host data: copies in, launches, copies out (and converts f16/bf16).
    pub fn run_host(&self, args: &ScanArgs<'_, f32>) -> Result<ScanResult<f32>, CudaError> {
        args.check(&self.kernel.graph)?;
        let specs = self.buffer_specs(args.t, args.n)?;
        let host = input_buffers(&self.source, &specs, args);
        let mut bufs = guard("cuMemcpyHtoD", || {
            host.iter()
                .zip(&specs)
                .map(|(h, s)| upload(&self.stream, h, s, self.source.dtype))
                .collect::<Result<Vec<_>, _>>()
        })?;
        self.launch(&mut bufs, args.t, args.n)?;
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
        Ok(collect_result(&self.source, &self.kernel, &specs, &out))
    }

    /// Sums a device buffer of `len` floats with the deterministic reduction kernel; returns the
    /// sum (copied to the host).
    pub fn reduce_sum(&self, values: &CudaSlice<f32>, len: usize) -> Result<f32, CudaError> {
        if values.len() < len {
            return Err(CudaError::Buffer {
                name: "values".into(),
                message: format!("needs {len} elements, has {}", values.len()),
            });
        }
        let passes = reduce_passes(len as u64);
        if passes.len() == 1 {
            // 0 or 1 element: nothing to add.
            if len == 0 {
                return Ok(0.0);
            }
            let v = guard("cuMemcpyDtoH", || {
                self.stream
                    .clone_dtoh(values)
                    .map_err(driver_err("cuMemcpyDtoH"))
            })?;
            return Ok(v[0]);
        }
        guard("flexsn reduce", || {
            let mut cur: Option<CudaSlice<f32>> = None;
            let mut cur_len = len;
            for &next_len in &passes[1..] {
                let grid = u32::try_from(next_len)
                    .map_err(|_| CudaError::TooLarge(format!("{len} values to reduce")))?;
                let mut partial = self
                    .stream
                    .alloc_zeros::<f32>(next_len as usize)
                    .map_err(driver_err("cuMemAlloc"))?;
                let l = to_i64(cur_len, "len")?;
                let cfg = LaunchConfig {
                    grid_dim: (grid, 1, 1),
                    block_dim: (REDUCE_BLOCK, 1, 1),
                    shared_mem_bytes: 0,
                };
                let mut b = self.stream.launch_builder(&self.reduce);
                match &cur {
                    Some(c) => b.arg(c),
                    None => b.arg(values),
                };
                b.arg(&mut partial).arg(&l);
                // SAFETY: `flexsn_reduce_sum_f32(const float*, float*, long long)`: the input
                // holds at least `cur_len` floats, `partial` one per block, block size fixed.
                unsafe { b.launch(cfg) }.map_err(driver_err("cuLaunchKernel"))?;
                cur = Some(partial);
                cur_len = next_len as usize;
            }
            let last = cur.ok_or_else(|| CudaError::TooLarge("empty reduction".into()))?;
            let v = self
                .stream
                .clone_dtoh(&last)
                .map_err(driver_err("cuMemcpyDtoH"))?;
            Ok(v.first().copied().unwrap_or(0.0))
        })
    }
}

pub(crate) fn to_i64(x: usize, what: &str) -> Result<i64, CudaError> {
    i64::try_from(x).map_err(|_| CudaError::TooLarge(format!("{what} = {x} exceeds 2^63")))
}

fn alloc(
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

fn upload(
    stream: &Arc<CudaStream>,
    h: &HostBuf,
    s: &BufferSpec,
    dtype: StorageDtype,
) -> Result<DeviceBuf, CudaError> {
    if h.is_empty() || s.role.is_output() {
        return alloc(stream, s.ty, dtype, s.len);
    }
    Ok(match h {
        HostBuf::F32(v) => {
            DeviceBuf::F32(stream.clone_htod(v).map_err(driver_err("cuMemcpyHtoD"))?)
        }
        HostBuf::U16(v) => {
            DeviceBuf::U16(stream.clone_htod(v).map_err(driver_err("cuMemcpyHtoD"))?)
        }
    })
}

fn download(stream: &Arc<CudaStream>, b: &DeviceBuf, len: usize) -> Result<HostBuf, CudaError> {
    Ok(match b {
        DeviceBuf::F32(x) => {
            let mut v = stream.clone_dtoh(x).map_err(driver_err("cuMemcpyDtoH"))?;
            v.truncate(len);
            HostBuf::F32(v)
        }
        DeviceBuf::U16(x) => {
            let mut v = stream.clone_dtoh(x).map_err(driver_err("cuMemcpyDtoH"))?;
            v.truncate(len);
            HostBuf::U16(v)
        }
    })
}
