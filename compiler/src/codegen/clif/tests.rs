//! Codegen tests: the Cranelift verifier on generated functions, annotations.

use cranelift_codegen::settings;

use super::*;
use crate::dsl::CoreBuilder;
use crate::ir::{Op, ParamKind, StateInit, Surrogate};
use crate::scan::{Direction, OutputMode, ScanKernel};

fn verify(scan: &ClifScan) {
    let flags = settings::Flags::new(settings::builder());
    if let Err(e) = cranelift_codegen::verify_function(&scan.func, &flags) {
        panic!("verifier: {e}\n{}", scan.annotated_text());
    }
}

fn lif() -> crate::ir::StepGraph {
    let b = CoreBuilder::new("lif");
    let x = b.input("x");
    let v = b.state("v", StateInit::Const(0.0));
    let h = v + (x - v) / 2.0;
    let s = (h - 1.0).spike(Surrogate::Sigmoid { alpha: 4.0 });
    b.output("s", s);
    b.set_state("v", (1.0 - s) * h);
    b.build().unwrap()
}

/// One graph using every plain op, with all three param kinds.
pub(crate) fn every_op_graph() -> crate::ir::StepGraph {
    let mut gb = crate::ir::builder::GraphBuilder::new("every_op");
    let x = gb.add_input("x").unwrap();
    let y = gb.add_input("y").unwrap();
    let s = gb.add_state("s", StateInit::Const(0.5)).unwrap();
    let ps = gb.add_param("ps", ParamKind::Shared, true).unwrap();
    let pn = gb.add_param("pn", ParamKind::PerNeuron, true).unwrap();
    let pt = gb.add_param("pt", ParamKind::PerTime, false).unwrap();
    let mut outs = vec![];
    let operands = [x, y, s, ps, pn, pt];
    for (i, op) in Op::PLAIN.iter().enumerate() {
        let args: Vec<_> = (0..op.arity().count())
            .map(|k| operands[(i + k) % operands.len()])
            .collect();
        outs.push(gb.op(*op, &args).unwrap());
    }
    outs.push(
        gb.op(Op::Spike(Surrogate::ATan { alpha: 2.0 }), &[x])
            .unwrap(),
    );
    for (i, v) in outs.iter().enumerate() {
        gb.add_output(&format!("o{i}"), *v).unwrap();
    }
    let t = gb.op(Op::Tanh, &[x]).unwrap();
    let n = gb.op(Op::Add, &[s, t]).unwrap();
    gb.set_next_state(0, n).unwrap();
    gb.finish().unwrap()
}

#[test]
fn lif_forward_verifies_and_is_annotated() {
    let k = ScanKernel::forward(lif(), true);
    let scan = codegen_scan(&k, &ClifOptions::host().unwrap()).unwrap();
    verify(&scan);
    let text = scan.annotated_text();
    assert!(text.contains("; %"), "{text}");
    assert!(text.contains("spike[Sigmoid"), "{text}");
    assert!(text.contains("store output `s`"), "{text}");
    assert!(text.contains("neuron tail"), "{text}");
}

#[test]
fn every_op_every_mode_verifies() {
    let g = every_op_graph();
    for dir in [Direction::Forward, Direction::Reverse] {
        for seqs in [false, true] {
            for unroll in [1, 2, 3, 4] {
                let n = g.outputs().len();
                let modes = (0..n)
                    .map(|i| {
                        if i % 3 == 0 {
                            OutputMode::SumOverTime
                        } else {
                            OutputMode::Sequence
                        }
                    })
                    .collect();
                let k = ScanKernel {
                    graph: g.clone(),
                    direction: dir,
                    output_modes: modes,
                    state_seqs: seqs,
                };
                let mut o = ClifOptions::host().unwrap();
                o.unroll = unroll;
                let scan = codegen_scan(&k, &o).unwrap();
                verify(&scan);
            }
        }
    }
}

#[test]
fn bad_options_and_modes_are_errors() {
    let mut o = ClifOptions::host().unwrap();
    o.chunk = 100;
    let k = ScanKernel::forward(lif(), false);
    assert!(matches!(codegen_scan(&k, &o), Err(CodegenError::Option(_))));
    let mut k2 = k.clone();
    k2.output_modes.push(OutputMode::Sequence);
    assert!(matches!(
        codegen_scan(&k2, &ClifOptions::host().unwrap()),
        Err(CodegenError::OutputModes { .. })
    ));
}

#[test]
fn default_chunk_fits_the_buffer_budget() {
    for b in 0..20 {
        let c = default_chunk(b);
        assert_eq!(c % 16, 0);
        assert!((256..=32768).contains(&c));
        assert!(b * c * 4 <= CHUNK_BUFFER_BYTES || c == 256);
    }
}

/// A fixed calling convention (System V), so the snapshots do not depend on the machine's (the
/// CLIF text names it; every other part of the text is target-independent on 64-bit hosts).
fn snapshot_options() -> ClifOptions {
    let mut o = ClifOptions::host().unwrap();
    o.frontend.default_call_conv = cranelift_codegen::isa::CallConv::SystemV;
    o
}

/// SpikingJelly's `LIFNode` with its defaults (tau = 2, hard reset to 0, Sigmoid(4) surrogate),
/// as the runtime compiles it (after the optimisation passes).
fn lif_node() -> crate::ir::StepGraph {
    let b = CoreBuilder::new("LIFNode");
    let x = b.input("x");
    let v = b.state("v", StateInit::Const(0.0));
    let h = v + (x - v) / 2.0;
    let s = (h - 1.0).spike(Surrogate::Sigmoid { alpha: 4.0 });
    b.output("spike", s);
    b.set_state("v", s * 0.0 + (1.0 - s) * h);
    crate::passes::optimize(&b.build().unwrap())
}

/// Review aid: the annotated CLIF of LIF's inference scan. A codegen change shows up here.
#[test]
fn snapshot_lif_forward_inference_clif() {
    let k = ScanKernel::forward(lif_node(), false);
    let scan = codegen_scan(&k, &snapshot_options()).unwrap();
    verify(&scan);
    insta::assert_snapshot!("lif_forward_inference_clif", scan.annotated_text());
}

/// Review aid: the annotated CLIF of LIF's backward scan (upstream gradient of the spikes).
#[test]
fn snapshot_lif_backward_clif() {
    let fwd = lif_node();
    let spec = crate::autodiff::GradSpec::outputs_only(&fwd);
    let bwd = crate::autodiff::backward(&fwd, &spec).unwrap();
    let scan = codegen_scan(&bwd.kernel, &snapshot_options()).unwrap();
    verify(&scan);
    insta::assert_snapshot!("lif_backward_clif", scan.annotated_text());
}

/// With `fused`, the math library's polynomials become `fma` instructions (the sigmoid of LIF's
/// surrogate gradient); the exactly lowered ops (LIF's own arithmetic) stay unfused: the fused
/// function has as many `fmul` fewer as it has `fma`.
#[test]
fn fused_lif_backward_uses_fma_in_the_math_only() {
    let fwd = lif_node();
    let spec = crate::autodiff::GradSpec::outputs_only(&fwd);
    let bwd = crate::autodiff::backward(&fwd, &spec).unwrap();
    let mut opts = snapshot_options();
    let plain = codegen_scan(&bwd.kernel, &opts).unwrap();
    opts.fused = true;
    let fused = codegen_scan(&bwd.kernel, &opts).unwrap();
    verify(&fused);
    let count = |s: &ClifScan, op: &str| {
        s.annotated_text()
            .lines()
            .filter(|l| l.contains(&format!("= {op} ")))
            .count()
    };
    assert_eq!(count(&plain, "fma"), 0);
    let fmas = count(&fused, "fma");
    assert!(fmas > 0);
    assert_eq!(count(&plain, "fmul") - count(&fused, "fmul"), fmas);
    assert_eq!(count(&plain, "fadd") - count(&fused, "fadd"), fmas);
}
