//! Inspection: the CUDA source and PTX that the CUDA backend compiles for a neuron's forward
//! (training: with state sequences) and backward scans.

use flexsn_compiler::autodiff::{self, GradSpec};
use flexsn_compiler::codegen::cuda::{CudaOptions, CudaSource, codegen_scan};
use flexsn_compiler::ir::StepGraph;
use flexsn_compiler::passes;
use flexsn_compiler::scan::ScanKernel;

use super::CudaError;
use super::nvrtc;

/// What the JIT compiles: `passes::optimize_checked(g)` (a compiler bug is an error), or `g`.
pub fn prepare(g: &StepGraph, optimize: bool) -> Result<StepGraph, CudaError> {
    if !optimize {
        return Ok(g.clone());
    }
    Ok(passes::optimize_checked(g)?)
}

/// The training forward scan (with state sequences) and the backward scan for `spec`.
pub fn scan_kernels(
    graph: &StepGraph,
    spec: &GradSpec,
    optimize: bool,
) -> Result<(ScanKernel, ScanKernel), CudaError> {
    let g = prepare(graph, optimize)?;
    let fwd = ScanKernel::forward(g.clone(), true);
    let mut bwd = autodiff::backward(&g, spec)?.kernel;
    bwd.graph = prepare(&bwd.graph, optimize)?;
    Ok((fwd, bwd))
}

/// The generated CUDA sources of the forward and backward scans.
pub fn sources(
    graph: &StepGraph,
    spec: &GradSpec,
    opts: &CudaOptions,
    optimize: bool,
) -> Result<(CudaSource, CudaSource), CudaError> {
    let (f, b) = scan_kernels(graph, spec, optimize)?;
    Ok((codegen_scan(&f, opts)?, codegen_scan(&b, opts)?))
}

/// Forward and backward CUDA source as one printable text.
pub fn cuda_text(
    graph: &StepGraph,
    spec: &GradSpec,
    opts: &CudaOptions,
    optimize: bool,
) -> Result<String, CudaError> {
    let (f, b) = sources(graph, spec, opts, optimize)?;
    Ok(format!(
        "// ===== forward scan: {} =====\n{}\n// ===== backward scan: {} =====\n{}",
        f.entry, f.code, b.entry, b.code
    ))
}

/// The PTX architecture used when none is asked for: device 0's, else `compute_90`.
pub fn default_ptx_arch() -> i32 {
    match super::device::device_count() {
        Ok(c) if c > 0 => super::CudaDevice::new(0)
            .map(|d| {
                let (ma, mi) = d.compute_capability();
                ma * 10 + mi
            })
            .unwrap_or(90),
        _ => 90,
    }
}

/// Forward and backward PTX for `compute_{arch}` (NVRTC needed; a clear error when missing).
pub fn ptx_text(
    graph: &StepGraph,
    spec: &GradSpec,
    opts: &CudaOptions,
    optimize: bool,
    arch: i32,
) -> Result<String, CudaError> {
    let (f, b) = sources(graph, spec, opts, optimize)?;
    let nv = nvrtc::nvrtc()?;
    let fp = nvrtc::ptx(&f, arch)?;
    let bp = nvrtc::ptx(&b, arch)?;
    Ok(format!(
        "// ===== forward scan: {} (NVRTC {}.{}, compute_{arch}) =====\n{fp}\n// ===== backward scan: {} =====\n{bp}",
        f.entry, nv.version.0, nv.version.1, b.entry
    ))
}
