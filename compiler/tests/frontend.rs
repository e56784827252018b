//! Unit tests of the text frontend: lowering, folding, errors, printing back.

use flexsn_compiler::dsl::CoreBuilder;
use flexsn_compiler::frontend::*;
use flexsn_compiler::ir::{Op, ParamKind, StateInit, Surrogate};
use flexsn_compiler::text::print;

const ALIF: &str = r#"
/// Adaptive LIF with a learnable leak.
/// Second line.
#[neuron]
fn alif(x: Input, v: State, a: State, w: Param, beta: f32) -> (Output, State, State) {
    let h = v + (x - v) * sigmoid(w);                      // w: learnable
    let s = spike(h - (1.0 + a), Surrogate::ATan { alpha: 2.0 });
    (s, h * (1.0 - s), beta * a + s)                       // beta: baked in
}
"#;

fn err(src: &str) -> Diagnostic {
    err_with(src, &[])
}

fn err_with(src: &str, hyper: &[(&str, f64)]) -> Diagnostic {
    match parse_core(src, hyper) {
        Ok(g) => panic!("expected an error, got\n{}", print(&g)),
        Err(FrontendError::Source(d)) => *d,
        Err(e) => panic!("expected a located error, got {e}"),
    }
}

#[test]
fn design_example_matches_the_dsl() {
    let g = parse_core(ALIF, &[("beta", 0.9)]).unwrap();
    let b = CoreBuilder::new("alif");
    b.describe("Adaptive LIF with a learnable leak.\nSecond line.");
    let x = b.input("x");
    let v = b.state("v", StateInit::Const(0.0));
    let a = b.state("a", StateInit::Const(0.0));
    let w = b.param("w", ParamKind::Shared, true);
    let h = v + (x - v) * w.sigmoid();
    let s = (h - (1.0 + a)).spike(Surrogate::ATan { alpha: 2.0 });
    b.output("s", s);
    b.set_state("v", h * (1.0 - s));
    b.set_state("a", 0.9 * a + s);
    let want = b.build().unwrap();
    assert_eq!(print(&g), print(&want));
}

#[test]
fn hyperparameters_fold_in_f32() {
    let src = "fn f(x: Input, v: State, tau_a: f32) -> (Output, State) {
        let d = (-1.0 / tau_a).exp();
        let y = d * v + (1.0 - d) * x;
        (y, y)
    }";
    let g = parse_core(src, &[("tau_a", 5.0)]).unwrap();
    let d = (-1.0f32 / 5.0).exp();
    let consts: Vec<f32> = g
        .nodes()
        .filter_map(|(_, n)| {
            if let Op::Const(c) = n.op {
                Some(c)
            } else {
                None
            }
        })
        .collect();
    assert_eq!(consts, vec![d, 1.0 - d]);
    assert!(!g.nodes().any(|(_, n)| matches!(n.op, Op::Exp | Op::Div)));
}

#[test]
fn syntax_coverage() {
    let src = r#"
    fn every(x: Input, y: Input, v: State<0.5>, r: State<Runtime>, #[init(-v_th)] q: State,
             pn: Param<PerNeuron>, pt: FixedParam<PerTime>, d: Param<Dynamic>, v_th: f32)
        -> (Output<spikes>, Output, State, State, State) {
        let h = v * 0.9 + x;
        let h = h + 1;                                  // integer literal, shadowing
        let m = (h > v_th) && !(y <= 0.0) || x == y;
        let c = if m { h.max(y) } else if x != 0.0 { x.clamp(-1.0, 1.0) } else { -h };
        let e = exp(c) + c.tanh() + sigmoid(c) + relu(c) + c.signum() + c.abs() + c.floor()
            + c.ceil() + c.round() + c.sqrt() + rsqrt(c) + erf(c) + c.atan() + sin(c) + cos(c)
            + c.ln() + log2(c) + c.recip() + c.powf(2.0) + pow(c, y) + c.powi(2) + fmod(c, 3.0)
            + c % 2.0 + min(c, y) + c.clamp_max(2.0) + clamp_min(c, 0.0) + select(m, c, y)
            + detach(c) + c.min(pn) + pt + d + (x < y) / c + (x >= y);
        let s = spike(h - v_th, Surrogate::Sigmoid);
        let p = surrogate(h, Surrogate::Sigmoid { alpha: 4.0, spiking: false });
        let k = x.spike(Surrogate::SquarewaveFourierSeries { n: 3, T: 4.0 });
        let z = { let t = e * 2.0; t + p + k };
        (s, z, h, r + s, q * f32::consts::LN_2 + 1.0 as f32)
    }"#;
    let g = parse_core(src, &[("v_th", 1.0)]).unwrap();
    assert_eq!(g.outputs()[0].name, "spikes");
    assert_eq!(g.outputs()[1].name, "z");
    assert_eq!(g.states()[0].init, StateInit::Const(0.5));
    assert_eq!(g.states()[1].init, StateInit::Runtime);
    assert_eq!(g.states()[2].init, StateInit::Const(-1.0));
    assert_eq!(g.params()[0].kind, ParamKind::PerNeuron);
    assert!(g.params()[0].learnable);
    assert_eq!(g.params()[1].kind, ParamKind::PerTime);
    assert!(!g.params()[1].learnable);
    assert_eq!(g.params()[2].kind, ParamKind::Shared);
    let used: std::collections::HashSet<&str> = g.nodes().map(|(_, n)| n.op.name()).collect();
    for op in Op::PLAIN {
        assert!(used.contains(op.name()), "{} not produced", op.name());
    }
    // `Param<Dynamic>` takes the bound kind.
    let b = Bindings::new()
        .hyper("v_th", 1.0)
        .param_kind("d", ParamKind::PerNeuron);
    let g = parse_core_with(src, &b).unwrap();
    assert_eq!(g.params()[2].kind, ParamKind::PerNeuron);
}

#[test]
fn constant_conditions_pick_a_branch() {
    let src = "fn f(x: Input, hard: f32) -> Output { if hard > 0.5 { x * 2.0 } else { x + 1.0 } }";
    let g = parse_core(src, &[("hard", 1.0)]).unwrap();
    assert!(!g.nodes().any(|(_, n)| matches!(n.op, Op::Select | Op::Add)));
    let g = parse_core(src, &[("hard", 0.0)]).unwrap();
    assert!(!g.nodes().any(|(_, n)| matches!(n.op, Op::Select | Op::Mul)));
}

#[test]
fn primitive_surrogates_expand_and_fold() {
    let src = "fn f(x: Input) -> (Output, Output) {
        (surrogate(x, Surrogate::ATan { spiking: false }), surrogate(0.5, Surrogate::Erf { spiking: false }))
    }";
    let g = parse_core(src, &[]).unwrap();
    assert!(g.nodes().any(|(_, n)| n.op == Op::Atan));
    let c = g.node(g.outputs()[1].value);
    let Op::Const(v) = c.op else {
        panic!("not folded: {c:?}")
    };
    assert_eq!(v, reference::primitive("Erf", &[], 0.5));
    assert!((v - 0.5 * (1.0 + libm::erff(1.0))).abs() < 1e-6);
}

#[test]
fn errors_are_located_and_name_what_is_allowed() {
    let cases: &[(&str, &str, (usize, usize))] = &[
        (
            "fn f(x: Input) -> Output {\n    for i in 0..3 { }\n    x\n}",
            "loops are not allowed",
            (2, 5),
        ),
        (
            "fn f(x: Input) -> Output {\n    let y = if x > 0.0 { return x; } else { x };\n    y\n}",
            "early `return`",
            (2, 26),
        ),
        (
            "fn f(x: Input) -> Output {\n    let y = x;\n    y = y + 1.0;\n    y\n}",
            "mutation",
            (3, 5),
        ),
        (
            "fn f(x: Input) -> Output {\n    let mut y = x;\n    y\n}",
            "`let mut`",
            (2, 9),
        ),
        (
            "fn f(x: Input) -> Output {\n  let y = x;\n  y += 1.0;\n  y\n}",
            "mutation",
            (3, 3),
        ),
        (
            "fn f(x: Input) -> Output {\n    sigmod(x)\n}",
            "did you mean `sigmoid`",
            (2, 5),
        ),
        (
            "fn f(x: Input) -> Output {\n    x.clamp(0.0)\n}",
            "`clamp` takes 2 arguments besides the receiver, got 1",
            (2, 7),
        ),
        (
            "fn f(x: Input) -> Output {\n    exp(x, x)\n}",
            "`exp` takes 1 argument, got 2",
            (2, 5),
        ),
        (
            "fn f(x: Input, v: State, a: State) -> (Output, State) {\n    (x, v)\n}",
            "state `a` is never updated",
            (1, 39),
        ),
        (
            "fn f(x: Input, v: State) -> (Output, State) {\n    (x, v, x)\n}",
            "the body returns 3 value(s) but the return type declares 2",
            (2, 5),
        ),
        (
            "fn f(x: Input) -> Output {\n    match x { _ => x }\n}",
            "`match` is not supported",
            (2, 5),
        ),
        (
            "fn f(x: Input) -> Output {\n    x[0]\n}",
            "indexing is not supported",
            (2, 5),
        ),
        (
            "fn f(x: Input) -> Output {\n    y\n}",
            "cannot find `y`",
            (2, 5),
        ),
        (
            "fn f(x: Tensor) -> Output {\n    x\n}",
            "unsupported type `Tensor`",
            (1, 9),
        ),
        (
            "fn f(x: Param<PerNeuorn>) -> Output {\n    x\n}",
            "did you mean `PerNeuron`",
            (1, 15),
        ),
        (
            "fn f(x: Input) -> Output {\n    spike(x, Surrogate::Atan { alpha: 2.0 })\n}",
            "did you mean `ATan`",
            (2, 25),
        ),
        (
            "fn f(x: Input) -> Output {\n    spike(x, Surrogate::ATan { alfa: 2.0 })\n}",
            "did you mean `alpha`",
            (2, 32),
        ),
        (
            "fn f(x: Input) -> Output {\n    spike(x, Surrogate::SoftSign { alpha: -1.0 })\n}",
            "must be > 0",
            (2, 5),
        ),
        (
            "fn f(x: Input) -> Output {\n    println!(\"{}\", x);\n    x\n}",
            "macros",
            (2, 5),
        ),
        (
            "fn f(x: Input) -> Output {\n    let y = x;\n}",
            "does not end with the returned values",
            (2, 5),
        ),
        ("fn f(x: Input) {\n    x\n}", "needs a return type", (1, 5)),
        (
            "fn f(x: Input, v: State<x>) -> (Output, State) {\n    (x, v)\n}",
            "must be a constant expression",
            (1, 25),
        ),
        (
            "fn f(x: Input) -> Output {\n    x & x\n}",
            "bitwise operators",
            (2, 7),
        ),
        (
            "fn f(x: Input, tau: f32) -> Output {\n    x / tau\n}",
            "hyperparameter `tau` has no value",
            (1, 16),
        ),
        (
            "fn f(x: Input) -> Output { x }\nfn g(x: Input) -> Output { x }",
            "holds one `fn`",
            (2, 4),
        ),
        (
            "fn f(x: Input) -> Output {\n    x +\n}",
            "cannot parse",
            (3, 1),
        ),
    ];
    for (src, msg, (line, col)) in cases {
        let d = err(src);
        let shown = d.to_string();
        assert!(
            shown.contains(msg),
            "{src}\n---\n{shown}\n--- should contain {msg:?}"
        );
        assert_eq!((d.line, d.column), (*line, *col), "{src}\n---\n{shown}");
        assert!(shown.contains('^'), "{shown}");
    }
}

#[test]
fn caret_excerpt_underlines_the_span() {
    let d = err("fn f(x: Input) -> Output {\n    let y = x.expp();\n    y\n}");
    let text = d.to_string();
    assert_eq!(
        text,
        "unknown function `expp`\n --> <core>:2:15\n  |\n2 |     let y = x.expp();\n  |               ^^^^\n  = help: did you mean `exp`? (exp(x) or x.exp())"
    );
}

#[test]
fn bindings_are_checked() {
    let e = parse_core(ALIF, &[("beta", 0.9), ("gamma", 1.0)]).unwrap_err();
    assert!(
        matches!(e, FrontendError::UnknownBinding { ref name, .. } if name == "gamma"),
        "{e}"
    );
    let mut b = Bindings::new();
    b.set("beta=0.5").unwrap();
    b.set("w = per_neuron").unwrap();
    assert_eq!(b.hyper, vec![("beta".to_string(), 0.5)]);
    assert_eq!(b.param_kinds, vec![("w".to_string(), ParamKind::PerNeuron)]);
    assert!(b.set("beta").is_err());
    assert!(b.set("beta=fast").is_err());
    // `w` is not dynamic.
    assert!(parse_core_with(ALIF, &b).is_err());
    assert!(parse_core(ALIF, &[("beta", f64::NAN)]).is_err());
}

#[test]
fn core_info_lists_the_interface() {
    let i = core_info(ALIF).unwrap();
    assert_eq!(i.inputs, vec!["x"]);
    assert_eq!(i.states, vec!["v", "a"]);
    assert_eq!(
        i.params,
        vec![("w".to_string(), Some(ParamKind::Shared), true)]
    );
    assert_eq!(i.hyperparameters, vec!["beta"]);
    assert_eq!(i.outputs, vec!["s"]);
}

#[test]
fn kinds_from_shapes() {
    assert_eq!(param_kind_from_shape(&[], 8, 5), Some(ParamKind::Shared));
    assert_eq!(
        param_kind_from_shape(&[5], 8, 5),
        Some(ParamKind::PerNeuron)
    );
    assert_eq!(param_kind_from_shape(&[8], 8, 5), Some(ParamKind::PerTime));
    assert_eq!(
        param_kind_from_shape(&[8, 1], 8, 8),
        Some(ParamKind::PerTime)
    );
    assert_eq!(param_kind_from_shape(&[3], 8, 5), None);
}

#[test]
fn printed_rust_reads_back() {
    let g = parse_core(ALIF, &[("beta", 0.9)]).unwrap();
    let src = to_rust(&g);
    let back = parse_core(&src, &[]).unwrap();
    assert_eq!(print(&back), print(&g), "{src}");
}

#[test]
fn random_graphs_round_trip_through_rust_syntax() {
    // The frontend folds constant ops (in f32 with the interpreter's semantics, as
    // `passes::const_fold` does) and creates constants where first used, so the graphs are
    // compared after `const_fold` of the original, `passes::optimize` of both (`optimize` alone
    // is not confluent: it may rewrite `neg(c) + x` to `x - c` before folding `neg(c)`) and a
    // canonical renumbering (leaves first, then a post-order walk from the roots).
    use flexsn_compiler::passes::{const_fold, optimize};
    use flexsn_compiler::random::{RandomGraphConfig, random_graph};
    for (cfg, seeds) in [
        (RandomGraphConfig::all(), 0..400),
        (RandomGraphConfig::smooth(), 0..100),
    ] {
        for seed in seeds {
            let g = random_graph(seed, &cfg);
            let src = to_rust(&g);
            let back = parse_core(&src, &[]).unwrap_or_else(|e| panic!("seed {seed}: {e}\n{src}"));
            assert_eq!(
                print(&canonical(&optimize(&back))),
                print(&canonical(&optimize(&const_fold(&g)))),
                "seed {seed}\n{src}\n{}",
                print(&g)
            );
        }
    }
}

/// `g` renumbered canonically: leaves in declaration order, then the other nodes in post-order
/// from the outputs and next states (constants where first used).
fn canonical(g: &flexsn_compiler::ir::StepGraph) -> flexsn_compiler::ir::StepGraph {
    use flexsn_compiler::ir::ValueId;
    use flexsn_compiler::ir::builder::GraphBuilder;
    use std::collections::HashMap;
    fn visit(
        g: &flexsn_compiler::ir::StepGraph,
        b: &mut GraphBuilder,
        map: &mut HashMap<ValueId, ValueId>,
        v: ValueId,
    ) -> ValueId {
        if let Some(&m) = map.get(&v) {
            return m;
        }
        let node = g.node(v).clone();
        let args: Vec<ValueId> = node.args.iter().map(|&a| visit(g, b, map, a)).collect();
        let m = b.op(node.op, &args).unwrap();
        map.insert(v, m);
        m
    }
    let mut b = GraphBuilder::with_decls_of(g);
    let mut map: HashMap<ValueId, ValueId> = HashMap::new();
    let leaves = (0..g.inputs().len())
        .map(|i| Op::Input(i as u32))
        .chain((0..g.states().len()).map(|i| Op::State(i as u32)))
        .chain((0..g.params().len()).map(|i| Op::Param(i as u32)));
    for op in leaves {
        let m = b.op(op, &[]).unwrap();
        if let Some((v, _)) = g.nodes().find(|(_, n)| n.op == op) {
            map.insert(v, m);
        }
    }
    for o in g.outputs() {
        let m = visit(g, &mut b, &mut map, o.value);
        b.add_output(&o.name, m).unwrap();
    }
    for (j, &v) in g.next_states().iter().enumerate() {
        let m = visit(g, &mut b, &mut map, v);
        b.set_next_state(j, m).unwrap();
    }
    b.finish().unwrap()
}

#[test]
fn named_states_and_trailing_return() {
    let src = "fn f(x: Input, v: State, a: State) -> (State<a>, Output<y>, State<v>) {
        let h = v + x;
        return (a * 0.5, h, h - a);
    }";
    let g = parse_core(src, &[]).unwrap();
    assert_eq!(g.outputs()[0].name, "y");
    let next_a = g.node(g.next_states()[1]);
    assert_eq!(next_a.op, Op::Mul);
    let next_v = g.node(g.next_states()[0]);
    assert_eq!(next_v.op, Op::Sub);
    let d = err("fn f(x: Input, v: State) -> (Output, State<w>) {\n    (x, v)\n}");
    assert!(d.message.contains("no state named `w`"), "{d}");
    let d =
        err("fn f(x: Input, v: State, a: State) -> (Output, State<v>, State) {\n    (x, v, a)\n}");
    assert!(d.message.contains("name either every `State`"), "{d}");
    // Dead code (an unused `let`) does not reach the graph.
    let g = parse_core(
        "fn f(x: Input) -> Output { let unused = x.exp(); x * 2.0 }",
        &[],
    )
    .unwrap();
    assert!(!g.nodes().any(|(_, n)| n.op == Op::Exp));
}

/// `MultiLevelSpikeCount` is known to the text frontend: its spike is the count, its gradient
/// window as given; a constant operand folds to the count too.
#[test]
fn multi_level_spike_count_in_a_core() {
    let src = "fn ilif(x: Input, v: State) -> (Output, State) {
        let h = 0.5 * v + x;
        let s = spike(h, Surrogate::MultiLevelSpikeCount { max_spike_count: 3, grad_max: 2.5 });
        let c = spike(2.5, Surrogate::MultiLevelSpikeCount { max_spike_count: 4 });
        (s + c, h - s)
    }";
    let g = parse_core(src, &[]).unwrap();
    let sg = g
        .nodes()
        .find_map(|(_, n)| match n.op {
            Op::Spike(s) => Some(s),
            _ => None,
        })
        .unwrap();
    assert_eq!(
        sg,
        Surrogate::MultiLevelSpikeCount {
            max_spike_count: 3,
            grad_min: 0.0,
            grad_max: 2.5
        }
    );
    let mut values = vec![];
    crate::interp::eval_step::<f32>(&g, &[7.0], &[0.0], &[], &mut values);
    let out = g.outputs()[0].value;
    // count(7.0) = 3 (clamped), plus the folded count(2.5) = 2 (ties to even).
    assert_eq!(values[out.index()], 5.0);
}
