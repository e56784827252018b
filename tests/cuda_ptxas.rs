//! Static GPU checks without a GPU: every generated built-in kernel (scan neurons: inference and
//! training forward, backward; PSN time mixing: forward, backward, weight gradient, reduction)
//! compiled to PTX by NVRTC and assembled by `ptxas` for sm_80 (A100) and sm_90 (H100/H200).
//! Every kernel must assemble with zero bytes of spill stores; the registers per thread are
//! printed (the README's table comes from this output: `cargo test -p flexsn --test cuda_ptxas
//! -- --nocapture`).
//!
//! Needs NVRTC and ptxas (`scripts/ci-nvrtc.sh`, `scripts/ci-ptxas.sh`); skips without them
//! unless `FLEXSN_REQUIRE_NVRTC=1` / `FLEXSN_REQUIRE_PTXAS=1`.

use std::path::Path;

use flexsn::compiler::autodiff::{GradSpec, backward};
use flexsn::compiler::codegen::cuda::mixing::{MixingSpec, codegen_mixing};
use flexsn::compiler::codegen::cuda::{CudaOptions, MathMode, StorageDtype, codegen_scan};
use flexsn::compiler::ir::StepGraph;
use flexsn::compiler::scan::ScanKernel;
use flexsn::neurons::{BUILTINS, Builtin, NeuronError};
use flexsn::runtime::cuda::nvrtc::{self, NvrtcSource};
use flexsn::runtime::cuda::probe::{Tool, present_or_skip};
use flexsn::runtime::cuda::ptxas::{self, SassInfo};

const ARCHS: [i32; 2] = [80, 90];

/// Storage types and math modes checked: every storage type precise, f32 fast.
fn variants() -> Vec<CudaOptions> {
    let mut v: Vec<CudaOptions> = StorageDtype::ALL
        .into_iter()
        .map(|d| CudaOptions::new(d, MathMode::Precise))
        .collect();
    v.push(CudaOptions::new(StorageDtype::F32, MathMode::Fast));
    v
}

fn tools() -> Option<std::path::PathBuf> {
    present_or_skip(Tool::Nvrtc, nvrtc::nvrtc())?;
    present_or_skip(Tool::Ptxas, ptxas::find_ptxas())
}

/// Every built-in scan neuron's name and step graph.
fn scan_builtins() -> Vec<(&'static str, StepGraph)> {
    BUILTINS
        .iter()
        .filter_map(
            |info| match Builtin::from_name(info.cli_name).unwrap().step_graph() {
                Ok(g) => Some((info.cli_name, g)),
                Err(NeuronError::NotAScan { .. }) => None,
                Err(e) => panic!("{}: {e}", info.cli_name),
            },
        )
        .collect()
}

/// Assembles `src` for every arch in [`ARCHS`], checks that nothing spills and keeps the
/// reports in `all`.
fn assemble(ptxas: &Path, src: &impl NvrtcSource, what: &str, all: &mut Vec<SassInfo>) {
    for arch in ARCHS {
        let infos = ptxas::sass_info(ptxas, src, arch)
            .unwrap_or_else(|e| panic!("{}: {e}", src.program_name()));
        check_no_spills(&infos, what);
        all.extend(infos);
    }
}

fn check_no_spills(infos: &[SassInfo], what: &str) {
    assert!(!infos.is_empty(), "{what}: ptxas reported no kernels");
    for i in infos {
        assert_eq!(
            i.spill_stores, 0,
            "{what}: {} spills {} bytes on sm_{} ({} registers)",
            i.entry, i.spill_stores, i.arch, i.registers
        );
    }
}

#[test]
fn every_builtin_scan_kernel_assembles_without_spills() {
    let Some(ptxas) = tools() else { return };
    let mut all = Vec::new();
    for (name, g) in scan_builtins() {
        let kernels = [
            ScanKernel::forward(g.clone(), false),
            ScanKernel::forward(g.clone(), true),
            backward(&g, &GradSpec::all(&g)).unwrap().kernel,
        ];
        for k in &kernels {
            for opts in variants() {
                assemble(&ptxas, &codegen_scan(k, &opts).unwrap(), name, &mut all);
            }
        }
    }
    eprintln!("{}", ptxas::table(&all));
}

#[test]
fn every_builtin_mixing_kernel_assembles_without_spills() {
    let Some(ptxas) = tools() else { return };
    let mut all = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for info in BUILTINS {
        for t in [4, 16, 64, 128] {
            let b = match Builtin::from_settings(info.cli_name, [format!("t={t}")]) {
                Ok(b) => b,
                Err(_) => continue,
            };
            let (rows, surrogate) = match &b {
                Builtin::Psn(c) => (c.t, c.surrogate),
                Builtin::MaskedPsn(c) => (c.t, c.surrogate),
                _ => continue,
            };
            let spec = MixingSpec {
                rows,
                cols: rows,
                surrogate,
            };
            // PSN and MaskedPSN share their mixing kernels.
            if !seen.insert(format!("{spec:?}")) {
                continue;
            }
            for opts in variants() {
                let src = codegen_mixing(&spec, &opts).unwrap();
                let what = format!("{} t={t}", info.cli_name);
                assemble(&ptxas, &src, &what, &mut all);
            }
        }
    }
    eprintln!("{}", ptxas::table(&all));
}

/// The fused `checkpoint:K` kernels of every built-in scan neuron: the training forward and the
/// backward (every upstream gradient present), each storage type and math mode.
#[test]
fn every_builtin_checkpoint_kernel_assembles_without_spills() {
    use flexsn::compiler::codegen::cuda::checkpoint::{
        codegen_checkpoint_backward, codegen_checkpoint_forward,
    };
    let Some(ptxas) = tools() else { return };
    let mut all = Vec::new();
    for (name, g) in scan_builtins() {
        let inference = ScanKernel::forward(g.clone(), false);
        let bwd = backward(&g, &GradSpec::all(&g)).unwrap().kernel;
        for opts in variants() {
            let sources = [
                codegen_checkpoint_forward(&inference, &opts).unwrap(),
                codegen_checkpoint_backward(&g, &bwd, &opts).unwrap(),
            ];
            for src in &sources {
                assemble(&ptxas, src, name, &mut all);
            }
        }
    }
    eprintln!("{}", ptxas::table(&all));
}
