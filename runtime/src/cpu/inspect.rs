//! Inspection: the annotated CLIF and the disassembly of CPU scan kernels.

use std::fmt::Write as _;

use flexsn_compiler::codegen::clif::{self, ClifOptions};
use flexsn_compiler::scan::ScanKernel;
use iced_x86::{Decoder, DecoderOptions, Formatter, IntelFormatter};

use super::{CpuOptions, CpuScan, MachineCode, host_isa};
use crate::RuntimeError;

/// The Cranelift IR generated for `kernel` (kernels compile at `opt_level = none`, so this is the
/// instruction order that runs), with a comment line naming the step-graph node or loop part
/// each group of instructions comes from.
pub fn inspect_clif(kernel: &ScanKernel, opts: &CpuOptions) -> Result<String, RuntimeError> {
    let isa = host_isa()?;
    let mut o = ClifOptions::new(isa.frontend_config());
    o.chunk = opts.chunk;
    o.unroll = opts.unroll;
    Ok(clif::codegen_scan(kernel, &o)?.annotated_text())
}

/// The x86-64 disassembly (Intel syntax) of `kernel` compiled for this machine, with the same
/// annotations as [`inspect_clif`] (carried through Cranelift as source locations).
pub fn inspect_asm(kernel: &ScanKernel, opts: &CpuOptions) -> Result<String, RuntimeError> {
    let scan = CpuScan::compile(kernel, opts)?;
    disassemble(scan.machine_code())
}

/// Disassembles `code`, annotated from its source locations.
pub fn disassemble(code: &MachineCode) -> Result<String, RuntimeError> {
    if std::env::consts::ARCH != "x86_64" {
        return Err(RuntimeError::BackendUnavailable {
            backend: "cpu",
            reason: format!(
                "disassembly is implemented for x86-64 only (this is {})",
                std::env::consts::ARCH
            ),
        });
    }
    let mut out = String::new();
    let mut decoder = Decoder::with_ip(64, &code.bytes, 0, DecoderOptions::NONE);
    let mut fmt = IntelFormatter::new();
    let mut last: Option<u32> = None;
    let mut text = String::new();
    let _ = writeln!(out, "; {} bytes of x86-64 code", code.bytes.len());
    for ins in &mut decoder {
        let off = ins.ip() as u32;
        // The ranges are sorted by start: the last one starting at or before `off`.
        let i = code.srclocs.partition_point(|(s, _, _)| *s <= off);
        let loc = i
            .checked_sub(1)
            .map(|i| code.srclocs[i])
            .filter(|(_, e, _)| off < *e)
            .map(|(_, _, l)| l)
            .filter(|l| !l.is_default());
        if let Some(l) = loc
            && last != Some(l.bits())
        {
            last = Some(l.bits());
            if let Some(a) = code.annotations.get(l.bits() as usize) {
                let _ = writeln!(out, "  ; {a}");
            }
        }
        text.clear();
        fmt.format(&ins, &mut text);
        let start = ins.ip() as usize;
        let bytes: String = code.bytes[start..start + ins.len()]
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        let _ = writeln!(out, "  {off:06x}  {bytes:<24} {text}");
    }
    Ok(out)
}

/// What [`inspect_kernel`] lists.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Listing {
    /// Annotated Cranelift IR ([`inspect_clif`]).
    Clif,
    /// Annotated x86-64 disassembly ([`inspect_asm`]).
    Asm,
}

/// The listings of a compiled neuron's three CPU scans: forward inference, forward training
/// (with state sequences) and backward for the upstream gradients `spec`, each under a header.
pub fn inspect_kernel(
    kernel: &crate::Kernel,
    spec: &flexsn_compiler::autodiff::GradSpec,
    what: Listing,
    opts: &CpuOptions,
) -> Result<String, RuntimeError> {
    let scans = [
        (
            "forward, inference (outputs and final states)",
            kernel.inference_scan().kernel().clone(),
        ),
        (
            "forward, training (also the state sequences)",
            kernel.training_scan().kernel().clone(),
        ),
        (
            "backward (reverse scan)",
            kernel.backward_scan_kernel(spec)?,
        ),
    ];
    let mut out = String::new();
    for (title, k) in scans {
        let _ = writeln!(out, "; ===== {title}: {} =====", k.graph.name());
        out += &match what {
            Listing::Clif => inspect_clif(&k, opts)?,
            Listing::Asm => inspect_asm(&k, opts)?,
        };
        out.push('\n');
    }
    Ok(out)
}
