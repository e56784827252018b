//! The deterministic text form of a step graph: printed by [`print`], read back by [`parse`].
//!
//! ```text
//! core lif "LIF neuron"
//!   input x
//!   state v = 0.0
//!   param w: shared learnable
//!   %0 = input x
//!   %1 = state v
//!   %2 = sub %0, %1
//!   %3 = spike[Sigmoid { alpha: 4.0 }] %2
//!   output s = %3
//!   next v = %2
//! end
//! ```
//!
//! Constants print in Rust's shortest round-tripping form, so `print(parse(print(g)))` is
//! byte-identical to `print(g)`.

use std::fmt::Write;

use crate::ir::{Op, StateInit, StepGraph};

/// Prints `g` in the text form.
pub fn print(g: &StepGraph) -> String {
    let mut s = String::new();
    let _ = write!(s, "core {}", g.name);
    if !g.description.is_empty() {
        let _ = write!(s, " {:?}", g.description);
    }
    s.push('\n');
    for d in &g.inputs {
        let _ = writeln!(s, "  input {}", d.name);
    }
    for d in &g.states {
        match d.init {
            StateInit::Const(c) => {
                let _ = writeln!(s, "  state {} = {:?}", d.name, c);
            }
            StateInit::Runtime => {
                let _ = writeln!(s, "  state {} = runtime", d.name);
            }
        }
    }
    for d in &g.params {
        let _ = writeln!(
            s,
            "  param {}: {} {}",
            d.name,
            d.kind.name(),
            if d.learnable { "learnable" } else { "fixed" }
        );
    }
    for (v, node) in g.nodes() {
        let _ = write!(s, "  %{} = ", v.index());
        let _ = match node.op {
            Op::Input(i) => write!(s, "input {}", g.inputs[i as usize].name),
            Op::State(i) => write!(s, "state {}", g.states[i as usize].name),
            Op::Param(i) => write!(s, "param {}", g.params[i as usize].name),
            Op::Const(c) => write!(s, "const {c:?}"),
            Op::Spike(sg) => write!(s, "spike[{sg}]"),
            other => write!(s, "{}", other.name()),
        };
        for (i, a) in node.args.iter().enumerate() {
            let _ = write!(s, "{}%{}", if i == 0 { " " } else { ", " }, a.index());
        }
        s.push('\n');
    }
    for o in &g.outputs {
        let _ = writeln!(s, "  output {} = %{}", o.name, o.value.index());
    }
    for (d, v) in g.states.iter().zip(&g.next_states) {
        let _ = writeln!(s, "  next {} = %{}", d.name, v.index());
    }
    s.push_str("end\n");
    s
}

impl std::fmt::Display for StepGraph {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&print(self))
    }
}
