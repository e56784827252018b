//! `text::parse` against `text::print`: round trips, hand-written text, and error reports.

use flexsn_compiler::dsl::GraphBuilder;
use flexsn_compiler::ir::{Op, ParamKind, StateInit, StepGraph, Surrogate, ValueId};
use flexsn_compiler::random::{RandomGraphConfig, SplitMix64, random_graph};
use flexsn_compiler::text::{ParseError, ParseErrorKind, parse, print};
use flexsn_compiler::verify::verify;

#[track_caller]
fn round_trip(g: &StepGraph) -> StepGraph {
    let text = print(g);
    let parsed = parse(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
    verify(&parsed).unwrap();
    assert_eq!(print(&parsed), text);
    assert_eq!(parsed.stable_hash(), g.stable_hash());
    parsed
}

/// Every surrogate, each with parameters that differ from SpikingJelly's defaults.
fn non_default_surrogates() -> Vec<Surrogate> {
    use Surrogate::*;
    vec![
        Sigmoid { alpha: 5.5 },
        ATan { alpha: 3.25 },
        PiecewiseQuadratic { alpha: -0.75 },
        PiecewiseExp { alpha: 1e-3 },
        SoftSign { alpha: 0.1 },
        SuperSpike { alpha: 100.0 },
        NonzeroSignLogAbs { alpha: 2.0 },
        Erf { alpha: 0.3 },
        PiecewiseLeakyReLU { w: 0.5, c: -0.02 },
        SquarewaveFourierSeries {
            n: 7,
            t_period: 3.5,
        },
        S2NN {
            alpha: 2.0,
            beta: 1.5,
        },
        QPseudoSpike { alpha: 1.0001 },
        LeakyKReLU { leak: 0.1, k: 2.0 },
        FakeNumericalGradient { alpha: 0.7 },
        LogTailedReLU { alpha: 0.05 },
        Rect { alpha: 1.5e-7 },
        DeterministicPass,
        MultiLevelSpikeCount {
            max_spike_count: 7,
            grad_min: -0.5,
            grad_max: 3.25,
        },
    ]
}

/// A graph with every op, every surrogate, every param kind, both state inits, awkward
/// constants and a description that needs escapes.
fn everything() -> StepGraph {
    let mut b = GraphBuilder::new("every_op");
    b.set_description(
        "quotes \" and \\ backslash,\ttab\nnewline, nul \0, combining e\u{301}, ünï ✓",
    );
    let x = b.add_input("x").unwrap();
    let y = b.add_input("y_2").unwrap();
    let v = b.add_state("v", StateInit::Const(-0.0)).unwrap();
    let w = b.add_state("w", StateInit::Runtime).unwrap();
    let u = b.add_state("_u", StateInit::Const(1e-45)).unwrap();
    let p = b.add_param("p", ParamKind::Shared, true).unwrap();
    let q = b.add_param("q", ParamKind::PerNeuron, false).unwrap();
    let r = b.add_param("r", ParamKind::PerTime, true).unwrap();
    let consts: Vec<ValueId> = [
        -0.0,
        0.0,
        f32::INFINITY,
        f32::NEG_INFINITY,
        1e-45,
        f32::NAN,
        f32::MAX,
        f32::MIN_POSITIVE,
        0.1,
        -1.0 / 3.0,
        1e20,
        123456.79,
    ]
    .into_iter()
    .map(|c| b.constant(c))
    .collect();
    let leaves = [x, y, v, w, u, p, q, r];
    let mut pool: Vec<ValueId> = leaves.iter().chain(&consts).copied().collect();
    for (i, op) in Op::PLAIN.iter().enumerate() {
        let args: Vec<ValueId> = (0..op.arity().count())
            .map(|k| pool[(i * 7 + k * 3) % pool.len()])
            .collect();
        let n = b.op(*op, &args).unwrap();
        pool.push(n);
    }
    for (i, s) in non_default_surrogates().into_iter().enumerate() {
        let n = b.op(Op::Spike(s), &[pool[pool.len() - 1 - i]]).unwrap();
        pool.push(n);
    }
    for (i, s) in Surrogate::NAMES.iter().enumerate() {
        let s = Surrogate::default_for(s).unwrap();
        let n = b.op(Op::Spike(s), &[pool[i + 8]]).unwrap();
        pool.push(n);
    }
    let last = *pool.last().unwrap();
    b.add_output("out", last).unwrap();
    b.add_output("first_op", pool[20]).unwrap();
    b.set_next_state(0, pool[30]).unwrap();
    b.set_next_state(1, w).unwrap();
    b.set_next_state(2, pool[40]).unwrap();
    b.finish().unwrap()
}

#[test]
fn every_op_surrogate_and_constant_round_trips() {
    let g = everything();
    let text = print(&g);
    for s in non_default_surrogates() {
        assert!(text.contains(&format!("spike[{s}]")), "missing {s}");
    }
    for needle in [
        "const -0.0",
        "const inf",
        "const -inf",
        "const 1e-45",
        "const NaN",
        "state w = runtime",
        "state v = -0.0",
        "param q: per_neuron fixed",
        "param r: per_time learnable",
        r#"\"#,
        r#"\u{301}"#,
    ] {
        assert!(text.contains(needle), "{needle} not in\n{text}");
    }
    let parsed = round_trip(&g);
    assert_eq!(parsed.description(), g.description());
    assert_eq!(parsed.len(), g.len());
    for ((_, a), (_, b)) in parsed.nodes().zip(g.nodes()) {
        assert_eq!(a.args, b.args);
        match (a.op, b.op) {
            (Op::Const(x), Op::Const(y)) => {
                assert!(x.to_bits() == y.to_bits() || (x.is_nan() && y.is_nan()))
            }
            (x, y) => assert_eq!(x, y),
        }
    }
    assert_eq!(parsed.states(), g.states());
    assert_eq!(parsed.params(), g.params());
}

#[test]
fn random_graphs_round_trip() {
    for cfg in [RandomGraphConfig::all(), RandomGraphConfig::smooth()] {
        for seed in 0..300 {
            round_trip(&random_graph(seed, &cfg));
        }
    }
}

#[test]
fn optimized_graphs_round_trip() {
    let cfg = RandomGraphConfig::all();
    for seed in 0..100 {
        round_trip(&flexsn_compiler::passes::optimize(&random_graph(
            seed, &cfg,
        )));
    }
}

#[test]
fn hand_written_text_with_names_comments_and_duplicates() {
    let src = r#"
// a leaky neuron, written by hand
core leaky "hand written"
  input x
  state v = 0.5   // initial value
  param tau: shared learnable

  %x = input x
  %v = state v
  %t = param tau
  %d = sub %x, %v
  %d2 = sub %x, %v      // the same node as %d
  %k = div %d2, %t
  %h = add %v, %k
  %one = const 1.0
  %z = sub %h, %one
  %s = spike[ATan { alpha: 3.0, }] %z
  %s2 = spike[ATan] %z   // default alpha 2.0: a different node
  output s = %s
  output s_default = %s2
  next v = %h
end
"#;
    let g = parse(src).unwrap();
    assert_eq!(g.name(), "leaky");
    assert_eq!(g.description(), "hand written");
    // %d2 merged into %d
    assert_eq!(g.len(), 10);
    let expected = "core leaky \"hand written\"
  input x
  state v = 0.5
  param tau: shared learnable
  %0 = input x
  %1 = state v
  %2 = param tau
  %3 = sub %0, %1
  %4 = div %3, %2
  %5 = add %1, %4
  %6 = const 1.0
  %7 = sub %5, %6
  %8 = spike[ATan { alpha: 3.0 }] %7
  %9 = spike[ATan { alpha: 2.0 }] %7
  output s = %8
  output s_default = %9
  next v = %5
end
";
    assert_eq!(print(&g), expected);
    round_trip(&g);
}

#[test]
fn core_names_may_contain_blanks_and_punctuation() {
    for name in ["nonspiking-if", "my core", "LIFNode(tau=2.0)"] {
        let mut g = random_graph(1, &RandomGraphConfig::all());
        g.set_name(name);
        assert_eq!(round_trip(&g).name(), name);
        g.set_description("");
        assert_eq!(round_trip(&g).name(), name);
    }
}

#[test]
fn labels_map_to_builder_values_not_indices() {
    // Numeric labels that are not node indices, a commutative duplicate, and declarations
    // after nodes and outputs.
    let src = "core k
  %10 = input b
  %20 = input a
  %30 = add %10, %20
  %40 = add %20, %10
  %50 = mul %40, %30
  output y = %50
  input a
  input b
end";
    let g = parse(src).unwrap();
    assert_eq!(g.inputs()[0].name, "a");
    assert_eq!(g.inputs()[1].name, "b");
    assert_eq!(
        print(&g),
        "core k
  input a
  input b
  %0 = input b
  %1 = input a
  %2 = add %0, %1
  %3 = mul %2, %2
  output y = %3
end
"
    );
}

#[test]
fn unused_declarations_and_leafless_graphs_round_trip() {
    // After DCE an input may have no node, and a param may be declared but unread.
    let src = "core dead
  input x
  input unused
  state v = runtime
  param p: per_time fixed
  %0 = state v
  %1 = const 2.0
  %2 = mul %0, %1
  next v = %2
end
";
    let g = parse(src).unwrap();
    assert_eq!(print(&g), src);
    assert_eq!(g.len(), 3);
    assert_eq!(g.inputs().len(), 2);
}

#[track_caller]
fn err(src: &str) -> ParseError {
    match parse(src) {
        Ok(g) => panic!("parsed:\n{}", print(&g)),
        Err(e) => e,
    }
}

#[track_caller]
fn err_at(src: &str, line: usize, column: usize, message: &str) -> ParseError {
    let e = err(src);
    let text = e.to_string();
    assert_eq!((e.line, e.column), (line, column), "{text}");
    assert!(
        text.starts_with(&format!("line {line}, column {column}: ")),
        "{text}"
    );
    assert!(text.contains(message), "`{message}` not in `{text}`");
    e
}

const HEAD: &str = "core t\n  input x\n  state v = 0.0\n  %0 = input x\n";

#[test]
fn unknown_op_names_the_known_ones() {
    let e = err_at(
        &format!("{HEAD}  %1 = frobnicate %0\n  next v = %1\nend\n"),
        5,
        8,
        "unknown op `frobnicate`; known ops: input, state, param, const, spike[SURROGATE], neg,",
    );
    assert!(matches!(e.kind, ParseErrorKind::UnknownOp { .. }));
    assert!(e.to_string().contains("select, detach"));
}

#[test]
fn errors_carry_line_column_and_reason() {
    let cases: &[(&str, usize, usize, &str)] = &[
        ("", 1, 1, "expected `core NAME`, found end of text"),
        ("  input x\n", 1, 3, "expected `core NAME`, found `input`"),
        ("core t\n  input x\n", 3, 1, "the text ends before `end`"),
        ("core t \"unterminated\n", 1, 8, "unterminated string"),
        ("core t \"bad \\q escape\"\n", 1, 13, "invalid escape `\\q`"),
        (
            "core t \"bad \\u{110000}\"\n",
            1,
            13,
            "invalid escape `\\u{110000}`",
        ),
        (
            "core t\n  input 3x\n",
            2,
            9,
            "expected an input name, found `3x`",
        ),
        ("core t\n  widget x\n", 2, 3, "found `widget`"),
        (
            "core t\n  state v = zero\nend\n",
            2,
            13,
            "`zero` is not a number",
        ),
        ("core t\n  state v 0.0\n", 2, 11, "expected `=`, found `0`"),
        (
            "core t\n  param p: global learnable\n",
            2,
            12,
            "unknown param kind `global`",
        ),
        (
            "core t\n  param p: shared maybe\n",
            2,
            19,
            "expected `learnable` or `fixed`, found `maybe`",
        ),
        (
            "core t\n  input x\n  input x\nend\n",
            3,
            9,
            "`x` is declared twice (as an input and as an input)",
        ),
        (
            "core t\n  input x\n  state x = 0.0\nend\n",
            3,
            9,
            "`x` is declared twice",
        ),
        (
            &format!("{HEAD}  %1 = input y\nend\n"),
            5,
            14,
            "no input named `y`; declared inputs: x",
        ),
        (
            &format!("{HEAD}  %1 = param w\nend\n"),
            5,
            14,
            "no param named `w`; declared params: none",
        ),
        (
            &format!("{HEAD}  %1 = add %0, %7\nend\n"),
            5,
            16,
            "label `%7` is not defined before it is used",
        ),
        (
            &format!("{HEAD}  %1 = add %0, %2\n  %2 = neg %0\nend\n"),
            5,
            16,
            "label `%2` is not defined before it is used",
        ),
        (
            &format!("{HEAD}  %0 = neg %0\nend\n"),
            5,
            3,
            "label `%0` is defined twice (first on line 4)",
        ),
        (
            &format!("{HEAD}  %1 = add %0\nend\n"),
            5,
            8,
            "`add` takes 2 operand(s), got 1",
        ),
        (
            &format!("{HEAD}  %1 = neg %0, %0\nend\n"),
            5,
            8,
            "`neg` takes 1 operand(s), got 2",
        ),
        (
            &format!("{HEAD}  %1 = add %0 %0\n"),
            5,
            15,
            "expected end of line, found `%`",
        ),
        (
            &format!("{HEAD}  %1 = add 0, %0\n"),
            5,
            12,
            "expected a label like `%3`, found `0`",
        ),
        (
            &format!("{HEAD}  %1 = const 1.0.0\n"),
            5,
            14,
            "`1.0.0` is not a number",
        ),
        (
            &format!("{HEAD}  %1 = spike %0\n"),
            5,
            14,
            "expected `[` and a surrogate",
        ),
        (
            &format!("{HEAD}  %1 = spike[Arctan] %0\n"),
            5,
            14,
            "unknown surrogate `Arctan` (did you mean `ATan`?); known: Sigmoid, ATan,",
        ),
        (
            &format!("{HEAD}  %1 = spike[ATan {{ beta: 1.0 }}] %0\n"),
            5,
            21,
            "surrogate `ATan` has no parameter `beta`; it takes: alpha",
        ),
        (
            &format!("{HEAD}  %1 = spike[QPseudoSpike {{ alpha: 1.0 }}] %0\n"),
            5,
            14,
            "parameter `alpha` = 1 is invalid: must be > 1",
        ),
        (
            &format!("{HEAD}  %1 = spike[SquarewaveFourierSeries {{ n: 2.5 }}] %0\n"),
            5,
            40,
            "must be an integer",
        ),
        (
            &format!("{HEAD}  %1 = spike[ATan {{ alpha: 1.0, alpha: 2.0 }}] %0\n"),
            5,
            33,
            "surrogate parameter `alpha` is given twice",
        ),
        (
            &format!("{HEAD}  %1 = spike[ATan {{ alpha: inf }}] %0\n"),
            5,
            14,
            "must be finite",
        ),
        (
            &format!("{HEAD}  %1 = spike[ATan {{ alpha 2.0 }}] %0\n"),
            5,
            27,
            "expected `:`",
        ),
        (
            &format!("{HEAD}  %1 = spike[ATan] %0\n"),
            6,
            1,
            "the text ends before `end`",
        ),
        (
            &format!("{HEAD}  next v = %0\nend\nextra\n"),
            7,
            1,
            "text after `end`",
        ),
        (
            &format!("{HEAD}  next w = %0\nend\n"),
            5,
            8,
            "no state named `w`; declared states: v",
        ),
        (
            &format!("{HEAD}  next v = %0\n  next v = %0\nend\n"),
            6,
            8,
            "state `v` is updated twice",
        ),
        (
            &format!("{HEAD}  output y = %9\nend\n"),
            5,
            14,
            "label `%9` is not defined",
        ),
        (
            &format!("{HEAD}  output x = %0\n  next v = %0\nend\n"),
            5,
            10,
            "`x` is declared twice (as an input and as an output)",
        ),
        (
            &format!("{HEAD}  output y = %0\nend\n"),
            3,
            9,
            "state `v` has no `next v = %...` line",
        ),
        (
            &format!("{HEAD}  next v = %0\nend now\n"),
            6,
            5,
            "expected end of line, found `now`",
        ),
        (
            "core t\nend\n",
            2,
            1,
            "the core has no outputs and no states",
        ),
    ];
    for &(src, line, column, message) in cases {
        err_at(src, line, column, message);
    }
}

#[test]
fn columns_count_characters_not_bytes() {
    err_at(
        "core t \"ünï\"\n  input x\n  %0 = input ü\n",
        3,
        14,
        "expected the name of a declared input, found `ü`",
    );
}

#[test]
fn mutated_text_never_panics() {
    // Random edits of valid text: parse must return Ok (then a verified graph) or an error.
    let alphabet: Vec<char> = "%=,:[]{}\"\\ \n.-+0123456789abcdefxyzAT_/"
        .chars()
        .collect();
    let mut rng = SplitMix64::new(99);
    let cfg = RandomGraphConfig::all();
    let mut errors = 0;
    for seed in 0..400u64 {
        let text: Vec<char> = print(&random_graph(seed, &cfg)).chars().collect();
        for _ in 0..5 {
            let mut t = text.clone();
            for _ in 0..1 + rng.below(3) {
                let at = rng.below(t.len() + 1);
                match rng.below(3) {
                    0 if at < t.len() => {
                        t.remove(at);
                    }
                    1 => t.insert(at, *rng.pick(&alphabet)),
                    _ if at < t.len() => t[at] = *rng.pick(&alphabet),
                    _ => {}
                }
            }
            let s: String = t.into_iter().collect();
            match parse(&s) {
                Ok(g) => verify(&g).unwrap(),
                Err(e) => {
                    errors += 1;
                    assert!(e.line >= 1 && e.column >= 1);
                    assert!(e.to_string().starts_with("line "));
                }
            }
        }
    }
    assert!(errors > 500, "{errors}");
}
