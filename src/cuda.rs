//! The CUDA backends as conformance-harness backends (`--backend cuda-emulated`, `--backend
//! cuda`), and the CUDA part of `flexsn bench`.

use std::sync::Arc;

use flexsn_compiler::codegen::cuda::CudaOptions;
use flexsn_compiler::scan::{ScanArgs, ScanKernel, ScanResult};
use flexsn_runtime::cuda::{CudaDevice, CudaError, EmulatedCuda};

use crate::conformance::{BackendError, ScanBackend};

/// The generated CUDA source run as host C++ (no GPU needed). Construction never fails; when no
/// C++ compiler exists, [`ScanBackend::unavailable`] and every run say so plainly.
#[derive(Debug)]
pub struct CudaEmulatedBackend {
    inner: Result<EmulatedCuda, String>,
}

impl CudaEmulatedBackend {
    pub fn new(opts: CudaOptions) -> Self {
        CudaEmulatedBackend {
            inner: EmulatedCuda::with_options(opts).map_err(|e| e.to_string()),
        }
    }
}

impl Default for CudaEmulatedBackend {
    fn default() -> Self {
        CudaEmulatedBackend::new(CudaOptions::default())
    }
}

impl ScanBackend for CudaEmulatedBackend {
    fn name(&self) -> &str {
        "cuda-emulated"
    }

    fn unavailable(&self) -> Option<String> {
        self.inner.as_ref().err().cloned()
    }

    fn run_scan(
        &mut self,
        kernel: &ScanKernel,
        args: &ScanArgs<'_, f32>,
    ) -> Result<ScanResult<f32>, BackendError> {
        match &self.inner {
            Ok(e) => Ok(e.run_scan(kernel, args)?),
            Err(why) => Err(why.clone().into()),
        }
    }
}

/// Real CUDA on device 0. Construction never fails; without a driver, device or NVRTC,
/// [`ScanBackend::unavailable`] and every run say which is missing.
#[derive(Debug)]
pub struct CudaBackend {
    inner: Result<(Arc<CudaDevice>, CudaOptions), String>,
}

impl CudaBackend {
    pub fn new(opts: CudaOptions) -> Self {
        CudaBackend {
            inner: CudaDevice::new(0)
                .map(|d| (Arc::new(d), opts))
                .map_err(|e| e.to_string()),
        }
    }
}

impl Default for CudaBackend {
    fn default() -> Self {
        CudaBackend::new(CudaOptions::default())
    }
}

impl ScanBackend for CudaBackend {
    fn name(&self) -> &str {
        "cuda"
    }

    fn unavailable(&self) -> Option<String> {
        self.inner.as_ref().err().cloned()
    }

    fn run_scan(
        &mut self,
        kernel: &ScanKernel,
        args: &ScanArgs<'_, f32>,
    ) -> Result<ScanResult<f32>, BackendError> {
        match &self.inner {
            Ok((d, opts)) => {
                let k = d.compile(kernel, opts)?;
                Ok(k.run_host(args)?)
            }
            Err(why) => Err(why.clone().into()),
        }
    }
}

/// What `flexsn bench --backend cuda` measures.
#[derive(Clone, Debug)]
pub struct CudaBenchPlan {
    /// `(label, graph)` per neuron.
    pub neurons: Vec<(String, flexsn_compiler::ir::StepGraph)>,
    pub dtypes: Vec<flexsn_compiler::codegen::cuda::StorageDtype>,
    pub math: flexsn_compiler::codegen::cuda::MathMode,
    pub t: usize,
    pub n: usize,
    pub reps: usize,
}

/// Runs the plan on device 0: forward, backward and their sum per neuron and dtype.
pub fn run_cuda_bench(
    plan: &CudaBenchPlan,
) -> Result<(String, Vec<flexsn_runtime::cuda::bench::BenchRow>), CudaError> {
    use flexsn_runtime::cuda::bench::{BenchCase, bench_neuron};
    let dev = CudaDevice::new(0)?;
    let header = format!(
        "device {} (sm_{}{}), NVRTC target {:?}",
        dev.name(),
        dev.compute_capability().0,
        dev.compute_capability().1,
        dev.target()
    );
    let mut rows = Vec::new();
    for (label, graph) in &plan.neurons {
        for &dtype in &plan.dtypes {
            let case = BenchCase {
                label: label.clone(),
                graph: graph.clone(),
                opts: CudaOptions::new(dtype, plan.math),
                t: plan.t,
                n: plan.n,
                reps: plan.reps,
            };
            rows.extend(bench_neuron(&dev, &case)?);
        }
    }
    Ok((header, rows))
}
