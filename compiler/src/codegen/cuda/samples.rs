//! Sample cores for checking code generators: LIF-, IF- and PLIF-like neurons written with the
//! DSL, and a graph that uses every op. Used by the CUDA snapshot, emulation and NVRTC tests and by
//! other backends' tests; the production built-ins live in `flexsn-neurons`.

use crate::dsl::{CoreBuilder, GraphBuilder};
use crate::error::BuildError;
use crate::ir::{Op, ParamKind, StateInit, StepGraph, Surrogate, ValueId};

/// LIF with decay_input and hard reset (SpikingJelly's `LIFNode` defaults: tau = 2,
/// v_threshold = 1, v_reset = 0, Sigmoid surrogate).
pub fn lif(tau: f32, v_threshold: f32, v_reset: f32) -> Result<StepGraph, BuildError> {
    let b = CoreBuilder::new("lif");
    b.describe("LIF, decay_input, hard reset");
    let x = b.input("x");
    let v = b.state("v", StateInit::Const(v_reset));
    let h = v + (x - (v - v_reset)) / tau;
    let s = (h - v_threshold).spike(Surrogate::Sigmoid { alpha: 4.0 });
    b.output("spike", s);
    b.set_state("v", s * v_reset + (1.0 - s) * h);
    b.build()
}

/// IF with soft reset (v_reset = None), ATan surrogate.
pub fn if_soft(v_threshold: f32) -> Result<StepGraph, BuildError> {
    let b = CoreBuilder::new("if_soft");
    let x = b.input("x");
    let v = b.state("v", StateInit::Const(0.0));
    let h = v + x;
    let s = (h - v_threshold).spike(Surrogate::ATan { alpha: 2.0 });
    b.output("spike", s);
    b.set_state("v", h - s * v_threshold);
    b.build()
}

/// Parametric LIF: `h = v + (x - (v - v_reset)) * sigmoid(w)`, `w` a learnable shared param,
/// hard reset with a detached reset (SpikingJelly's `detach_reset = True`).
pub fn plif(v_threshold: f32, v_reset: f32) -> Result<StepGraph, BuildError> {
    let b = CoreBuilder::new("plif");
    let x = b.input("x");
    let v = b.state("v", StateInit::Const(v_reset));
    let w = b.param("w", ParamKind::Shared, true);
    let h = v + (x - (v - v_reset)) * w.sigmoid();
    let s = (h - v_threshold).spike(Surrogate::ATan { alpha: 2.0 });
    let sd = s.detach();
    b.output("spike", s);
    b.set_state("v", sd * v_reset + (1.0 - sd) * h);
    b.build()
}

/// A core with two inputs, two states, one param of each kind, and every op of the IR
/// (every plain op, constants, and spikes with several surrogates).
pub fn all_ops() -> Result<StepGraph, BuildError> {
    let mut b = GraphBuilder::new("all_ops");
    b.set_description("every op of the IR, for code generators");
    let x = b.add_input("x")?;
    let y = b.add_input("y")?;
    let a = b.add_state("a", StateInit::Const(0.5))?;
    let c = b.add_state("c", StateInit::Runtime)?;
    let p = b.add_param("p", ParamKind::Shared, true)?;
    let q = b.add_param("q", ParamKind::PerNeuron, true)?;
    let r = b.add_param("r", ParamKind::PerTime, false)?;
    let half = b.constant(0.5);
    let xa = b.op(Op::Add, &[x, a])?;
    let yc = b.op(Op::Mul, &[y, c])?;
    let xq = b.op(Op::Sub, &[x, q])?;
    let mut terms: Vec<ValueId> = Vec::new();
    for op in Op::PLAIN {
        let args: Vec<ValueId> = match op.arity().count() {
            1 => vec![xa],
            2 => vec![xa, yc],
            _ => {
                if *op == Op::Clamp {
                    let lo = b.op(Op::Neg, &[half])?;
                    vec![xq, lo, p]
                } else {
                    vec![yc, xa, r]
                }
            }
        };
        terms.push(b.op(*op, &args)?);
    }
    let mut spike = half;
    for s in [
        Surrogate::Sigmoid { alpha: 4.0 },
        Surrogate::ATan { alpha: 2.0 },
        Surrogate::PiecewiseLeakyReLU { w: 1.0, c: 0.01 },
    ] {
        let d = b.op(Op::Sub, &[xa, half])?;
        spike = b.op(Op::Spike(s), &[d])?;
        terms.push(spike);
    }
    // Every term is its own output, so a NaN in one (log of a negative) spoils no other; the
    // states mix a few bounded terms so that the recurrence stays finite.
    for (k, &t) in terms.iter().enumerate() {
        let name = match b.node(t).op {
            Op::Spike(_) => format!("o{k}_spike"),
            op => format!("o{k}_{}", op.name()),
        };
        b.add_output(&name, t)?;
    }
    let t = b.op(Op::Mul, &[xa, half])?;
    let t = b.op(Op::Add, &[t, spike])?;
    let na = b.op(Op::Tanh, &[t])?;
    let sig = b.op(Op::Sigmoid, &[xa])?;
    let t = b.op(Op::Mul, &[yc, half])?;
    let t = b.op(Op::Add, &[t, sig])?;
    let lo = b.constant(-3.0);
    let hi = b.constant(3.0);
    let nc = b.op(Op::Clamp, &[t, lo, hi])?;
    b.set_next_state(0, na)?;
    b.set_next_state(1, nc)?;
    b.finish()
}
