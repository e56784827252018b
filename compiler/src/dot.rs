//! Graphviz (DOT) form of a step graph, for looking at a neuron.
//!
//! Leaves are boxes coloured by kind and labelled with their names (inputs blue, states orange,
//! params green, constants grey); ops are ellipses labelled with their name (spikes also with
//! their surrogate, in red; `detach` dashed); edges run from operand to user and, when the user
//! is not commutative, carry the operand position. Outputs and next states are separate sink
//! nodes (`out_k`, `next_j`). The text is deterministic: nodes in index order.
//!
//! ```
//! use flexsn_compiler::dsl::CoreBuilder;
//! use flexsn_compiler::ir::StateInit;
//!
//! let b = CoreBuilder::new("leaky");
//! let (x, v) = (b.input("x"), b.state("v", StateInit::Const(0.0)));
//! b.set_state("v", v * 0.5 + x);
//! let dot = flexsn_compiler::dot::to_dot(&b.build()?);
//! assert!(dot.starts_with("digraph \"leaky\" {"));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::fmt::Write;

use crate::ir::{Op, StateInit, StepGraph};

/// Quotes `s` as a DOT string.
fn quote(s: &str) -> String {
    let mut q = String::with_capacity(s.len() + 2);
    q.push('"');
    for c in s.chars() {
        match c {
            '"' => q.push_str("\\\""),
            '\\' => q.push_str("\\\\"),
            '\n' => q.push_str("\\n"),
            '\r' => {}
            c => q.push(c),
        }
    }
    q.push('"');
    q
}

const INPUT: &str = "shape=box, style=\"rounded,filled\", fillcolor=\"#cfe2ff\"";
const STATE: &str = "shape=box, style=\"rounded,filled\", fillcolor=\"#ffe0b2\"";
const PARAM: &str = "shape=box, style=\"rounded,filled\", fillcolor=\"#d3f2d9\"";
const CONST: &str = "shape=box, style=filled, fillcolor=\"#eeeeee\"";
const OP: &str = "shape=ellipse";
const SPIKE: &str = "shape=ellipse, style=filled, fillcolor=\"#ffcdd2\"";
const DETACH: &str = "shape=ellipse, style=dashed";
const OUTPUT: &str = "shape=house, style=filled, fillcolor=\"#e1d5f5\"";
const NEXT: &str = "shape=invhouse, style=filled, fillcolor=\"#ffe0b2\"";

/// `g` as a Graphviz digraph.
pub fn to_dot(g: &StepGraph) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "digraph {} {{", quote(g.name()));
    let title = if g.description().is_empty() {
        g.name().to_string()
    } else {
        format!("{}\n{}", g.name(), g.description())
    };
    let _ = writeln!(s, "  label={};", quote(&title));
    s.push_str("  labelloc=t;\n");
    s.push_str("  rankdir=TB;\n");
    s.push_str("  node [fontname=\"Helvetica\", fontsize=11];\n");
    s.push_str("  edge [fontname=\"Helvetica\", fontsize=9];\n");
    for (v, node) in g.nodes() {
        let (label, style) = match node.op {
            Op::Input(i) => (format!("input {}", g.inputs()[i as usize].name), INPUT),
            Op::State(i) => {
                let d = &g.states()[i as usize];
                let init = match d.init {
                    StateInit::Const(c) => format!("{c:?}"),
                    StateInit::Runtime => "runtime".into(),
                };
                (format!("state {}\ninit {init}", d.name), STATE)
            }
            Op::Param(i) => {
                let d = &g.params()[i as usize];
                let learn = if d.learnable { "learnable" } else { "fixed" };
                (
                    format!("param {}\n{} {learn}", d.name, d.kind.name()),
                    PARAM,
                )
            }
            Op::Const(c) => (format!("{c:?}"), CONST),
            Op::Spike(sg) => (format!("spike\n{sg}"), SPIKE),
            Op::Detach => ("detach".into(), DETACH),
            op => (op.name().into(), OP),
        };
        let _ = writeln!(
            s,
            "  n{} [label={}, {style}];",
            v.index(),
            quote(&format!("%{}: {label}", v.index()))
        );
    }
    for (v, node) in g.nodes() {
        let positional = node.args.len() > 1 && !node.op.is_commutative();
        for (pos, a) in node.args.iter().enumerate() {
            if positional {
                let _ = writeln!(s, "  n{} -> n{} [label=\"{pos}\"];", a.index(), v.index());
            } else {
                let _ = writeln!(s, "  n{} -> n{};", a.index(), v.index());
            }
        }
    }
    for (k, o) in g.outputs().iter().enumerate() {
        let _ = writeln!(
            s,
            "  out_{k} [label={}, {OUTPUT}];",
            quote(&format!("output {}", o.name))
        );
        let _ = writeln!(s, "  n{} -> out_{k};", o.value.index());
    }
    for (j, (d, v)) in g.states().iter().zip(g.next_states()).enumerate() {
        let _ = writeln!(
            s,
            "  next_{j} [label={}, {NEXT}];",
            quote(&format!("next {}", d.name))
        );
        let _ = writeln!(s, "  n{} -> next_{j} [style=bold];", v.index());
    }
    if !g.outputs().is_empty() || !g.states().is_empty() {
        s.push_str("  { rank=sink;");
        for k in 0..g.outputs().len() {
            let _ = write!(s, " out_{k};");
        }
        for j in 0..g.states().len() {
            let _ = write!(s, " next_{j};");
        }
        s.push_str(" }\n");
    }
    s.push_str("}\n");
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dsl::CoreBuilder;
    use crate::ir::{ParamKind, Surrogate};

    fn alif() -> StepGraph {
        let b = CoreBuilder::new("alif");
        b.describe("adaptive LIF, \"soft\" reset\\test");
        let x = b.input("x");
        let v = b.state("v", StateInit::Const(0.0));
        let a = b.state("a", StateInit::Runtime);
        let w = b.param("w", ParamKind::PerNeuron, true);
        let beta = b.param("beta", ParamKind::Shared, false);
        let h = v + (x - v) * w.sigmoid();
        let s = (h - (a + 1.0)).spike(Surrogate::ATan { alpha: 2.0 });
        b.output("s", s);
        b.output("h", h);
        b.set_state("v", h - s.detach() * h);
        b.set_state("a", beta * a + s);
        b.build().unwrap()
    }

    #[test]
    fn snapshot() {
        insta::assert_snapshot!(to_dot(&alif()));
    }

    #[test]
    fn deterministic_and_complete() {
        let g = alif();
        let d = to_dot(&g);
        assert_eq!(d, to_dot(&alif()));
        for (v, _) in g.nodes() {
            assert!(d.contains(&format!("  n{} [label=", v.index())));
        }
        // one edge line per operand, plus one per output and next state
        let edges = d.lines().filter(|l| l.contains(" -> ")).count();
        let operands: usize = g.nodes().map(|(_, n)| n.args.len()).sum();
        assert_eq!(edges, operands + g.outputs().len() + g.states().len());
        // quotes and backslashes in the description are escaped
        assert!(d.contains(r#"\"soft\" reset\\test"#));
        // sub is not commutative: positions; mul is: none
        assert!(d.contains("[label=\"1\"]"));
    }
}
