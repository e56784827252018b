//! The passes preserve f32 semantics bit for bit (NaN-aware) on random graphs and inputs, keep
//! graphs verified, and do real work.

use flexsn_compiler::interp::run_scan;
use flexsn_compiler::ir::{Op, StepGraph};
use flexsn_compiler::oracle;
use flexsn_compiler::passes::{const_fold, cse, dce, optimize, simplify};
use flexsn_compiler::random::{
    RandomGraphConfig, RandomInputs, SplitMix64, random_graph, random_inputs, scan_args,
};
use flexsn_compiler::scan::{ScanKernel, ScanResult};
use flexsn_compiler::text::print;
use flexsn_compiler::verify::verify;

const T: usize = 6;
const N: usize = 4;

fn same(a: f32, b: f32) -> bool {
    a.to_bits() == b.to_bits() || (a.is_nan() && b.is_nan())
}

fn run(g: &StepGraph, data: &RandomInputs) -> ScanResult<f32> {
    run_scan(
        &ScanKernel::forward(g.clone(), true),
        &scan_args(T, N, data),
    )
    .unwrap()
}

#[track_caller]
fn assert_same(a: &ScanResult<f32>, b: &ScanResult<f32>, what: &str) {
    let seqs = |r: &ScanResult<f32>| -> Vec<Vec<f32>> {
        r.outputs
            .iter()
            .chain(&r.state_seqs)
            .chain(&r.final_states)
            .cloned()
            .collect()
    };
    let (sa, sb) = (seqs(a), seqs(b));
    assert_eq!(sa.len(), sb.len(), "{what}");
    for (k, (x, y)) in sa.iter().zip(&sb).enumerate() {
        for (i, (p, q)) in x.iter().zip(y).enumerate() {
            assert!(same(*p, *q), "{what}: buffer {k}[{i}]: {p:?} vs {q:?}");
        }
    }
}

/// Random data plus a variant with edge values sprinkled in (signed zeros, infinities, NaN).
fn data_sets(seed: u64, g: &StepGraph) -> Vec<RandomInputs> {
    let plain = random_inputs(seed, g, T, N);
    let mut edgy = plain.clone();
    let mut rng = SplitMix64::new(seed.wrapping_mul(31) + 7);
    let edges = [
        0.0f32,
        -0.0,
        f32::INFINITY,
        f32::NEG_INFINITY,
        f32::NAN,
        1.0,
        -1.0,
        0.5,
    ];
    for buf in edgy.0.iter_mut().chain(&mut edgy.1).chain(&mut edgy.2) {
        for v in buf.iter_mut() {
            if rng.chance(0.3) {
                *v = *rng.pick(&edges);
            }
        }
    }
    // Only edge values: every signed zero, infinity and NaN case gets exercised.
    let mut extreme = plain.clone();
    for buf in extreme
        .0
        .iter_mut()
        .chain(&mut extreme.1)
        .chain(&mut extreme.2)
    {
        for v in buf.iter_mut() {
            *v = *rng.pick(&edges);
        }
    }
    vec![plain, edgy, extreme]
}

type Pass = (&'static str, fn(&StepGraph) -> StepGraph);

const PASSES: [Pass; 5] = [
    ("const_fold", const_fold),
    ("cse", cse),
    ("dce", dce),
    ("simplify", simplify),
    ("optimize", optimize),
];

/// Ops and constants chosen so that simplification and folding fire often.
fn rewrite_heavy() -> RandomGraphConfig {
    RandomGraphConfig {
        ops: vec![
            Op::Add,
            Op::Sub,
            Op::Mul,
            Op::Div,
            Op::Neg,
            Op::Pow,
            Op::Select,
            Op::Detach,
            Op::Abs,
            Op::Relu,
            Op::Sign,
            Op::Floor,
            Op::Ceil,
            Op::Round,
            Op::Not,
            Op::And,
            Op::Or,
            Op::Ne,
            Op::Gt,
            Op::Exp,
        ],
        special_consts: vec![1.0, -1.0, 0.0, -0.0],
        max_nodes: 30,
        ..RandomGraphConfig::all()
    }
}

fn check_config(cfg: &RandomGraphConfig, seeds: std::ops::Range<u64>) -> [usize; 5] {
    let mut changed = [0usize; 5];
    for seed in seeds {
        let g = random_graph(seed, cfg);
        let datas = data_sets(seed, &g);
        let before: Vec<_> = datas.iter().map(|d| run(&g, d)).collect();
        for (p, (name, pass)) in PASSES.iter().enumerate() {
            let h = pass(&g);
            verify(&h).unwrap_or_else(|e| panic!("{name}, seed {seed}: {e}"));
            assert_eq!(h.inputs(), g.inputs());
            assert_eq!(h.states(), g.states());
            assert_eq!(h.params(), g.params());
            assert_eq!(
                h.outputs().iter().map(|o| &o.name).collect::<Vec<_>>(),
                g.outputs().iter().map(|o| &o.name).collect::<Vec<_>>()
            );
            if print(&h) != print(&g) {
                changed[p] += 1;
            }
            for (d, want) in datas.iter().zip(&before) {
                assert_same(want, &run(&h, d), &format!("{name}, seed {seed}\n{g}\n{h}"));
            }
        }
        // Chained one pass at a time, verifying after each.
        let mut h = g.clone();
        for (name, pass) in &PASSES[..4] {
            h = pass(&h);
            verify(&h).unwrap_or_else(|e| panic!("chain {name}, seed {seed}: {e}"));
        }
        for (d, want) in datas.iter().zip(&before) {
            assert_same(want, &run(&h, d), &format!("chain, seed {seed}"));
        }
    }
    changed
}

#[test]
fn passes_preserve_semantics_on_all_ops() {
    let changed = check_config(&RandomGraphConfig::all(), 0..300);
    // const_fold, dce, simplify and optimize must have changed a good share of the graphs.
    assert!(changed[0] > 20, "const_fold changed {}", changed[0]);
    assert!(changed[2] > 50, "dce changed {}", changed[2]);
    assert!(changed[3] > 20, "simplify changed {}", changed[3]);
    assert!(changed[4] > 100, "optimize changed {}", changed[4]);
}

#[test]
fn passes_preserve_semantics_on_rewrite_heavy_graphs() {
    let changed = check_config(&rewrite_heavy(), 1000..1300);
    assert!(changed[3] > 100, "simplify changed {}", changed[3]);
    assert!(changed[0] > 50, "const_fold changed {}", changed[0]);
}

/// Small graphs of sign-sensitive ops over signed zeros and ones: a rewrite that is wrong for
/// `-0.0` (such as `x + 0 -> x`) shows up here.
#[test]
fn passes_preserve_semantics_on_signed_zero_graphs() {
    let cfg = RandomGraphConfig {
        inputs: 1..=2,
        states: 0..=1,
        params: 0..=0,
        ops: vec![
            Op::Add,
            Op::Sub,
            Op::Mul,
            Op::Div,
            Op::Neg,
            Op::Select,
            Op::Abs,
            Op::Round,
        ],
        surrogates: false,
        max_nodes: 8,
        special_consts: vec![0.0, -0.0, 1.0, -1.0],
        const_range: (0.0, 0.0),
        squash: flexsn_compiler::random::Squash::None,
        ..RandomGraphConfig::all()
    };
    let changed = check_config(&cfg, 5000..6000);
    assert!(changed[3] > 100, "simplify changed {}", changed[3]);
}

#[test]
fn passes_preserve_semantics_on_smooth_graphs() {
    check_config(&RandomGraphConfig::smooth(), 2000..2100);
}

#[test]
fn optimize_reaches_a_fixed_point() {
    for cfg in [RandomGraphConfig::all(), rewrite_heavy()] {
        for seed in 0..150 {
            let g = random_graph(seed, &cfg);
            let o = optimize(&g);
            assert!(o.len() <= g.len());
            let text = print(&o);
            for (name, pass) in PASSES {
                assert_eq!(print(&pass(&o)), text, "{name} changed an optimized graph");
            }
        }
    }
}

#[test]
fn optimize_shrinks_graphs() {
    let cfg = rewrite_heavy();
    let (mut before, mut after) = (0, 0);
    for seed in 0..200 {
        let g = random_graph(seed, &cfg);
        before += g.len();
        after += optimize(&g).len();
    }
    assert!(after * 10 < before * 8, "{before} -> {after} nodes");
}

#[test]
fn detach_and_spike_survive_optimization() {
    use flexsn_compiler::dsl::CoreBuilder;
    use flexsn_compiler::ir::{StateInit, Surrogate};
    let b = CoreBuilder::new("keep");
    let x = b.input("x");
    let v = b.state("v", StateInit::Const(0.0));
    let s = (x * 1.0 - v).spike(Surrogate::Sigmoid { alpha: 4.0 });
    let folded = b.constant(-0.5).spike(Surrogate::Sigmoid { alpha: 4.0 });
    b.output("s", s + folded);
    b.set_state("v", (v - s.detach().detach() * v).detach() + x * 0.0);
    let o = optimize(&b.build().unwrap());
    let ops: Vec<&str> = o.nodes().map(|(_, n)| n.op.name()).collect();
    assert_eq!(ops.iter().filter(|n| **n == "spike").count(), 1, "{o}");
    assert_eq!(ops.iter().filter(|n| **n == "detach").count(), 2, "{o}");
    // x * 0 stays (NaN and infinities), the spike of a constant folds to 0, `+ 0` stays.
    assert!(ops.contains(&"mul"), "{o}");
    assert!(o.to_string().contains("const 0.0"), "{o}");
}

/// Gradients (f32 interpreter, BPTT) before and after `optimize`. Forward values are equal bit
/// for bit, so every spike, comparison and rounding decides alike; gradients may differ only by
/// the order in which contributions are summed. Where the original gradient is not finite the
/// optimized one may legitimately be finite (a removed branch no longer contributes `0 * inf`).
#[test]
fn optimize_preserves_gradients() {
    use flexsn_compiler::bptt::Upstream;
    let mut compared = 0usize;
    for (cfg, seeds) in [
        (RandomGraphConfig::smooth(), 0..150u64),
        (rewrite_heavy(), 0..150u64),
        (RandomGraphConfig::all(), 0..150u64),
    ] {
        for seed in seeds {
            let g = random_graph(seed, &cfg);
            let o = optimize(&g);
            let data = random_inputs(seed, &g, T, N);
            let args = scan_args(T, N, &data);
            let mut rng = SplitMix64::new(seed + 17);
            let mut ups =
                |len: usize| -> Vec<f32> { (0..len).map(|_| rng.uniform(-1.0, 1.0)).collect() };
            let gy: Vec<Vec<f32>> = g.outputs().iter().map(|_| ups(T * N)).collect();
            let gs: Vec<Vec<f32>> = g.states().iter().map(|_| ups(N)).collect();
            let upstream = Upstream {
                outputs: gy.iter().map(|v| Some(v.as_slice())).collect(),
                state_seqs: vec![None; g.states().len()],
                final_states: gs.iter().map(|v| Some(v.as_slice())).collect(),
            };
            let grads = |h: &StepGraph| {
                let fwd = oracle::forward(h, &args, true).unwrap();
                let seqs: Vec<&[f32]> = fwd.state_seqs.iter().map(Vec::as_slice).collect();
                oracle::backward(h, &args, &seqs, &upstream).unwrap()
            };
            let (a, b) = (grads(&g), grads(&o));
            let flat = |gr: &flexsn_compiler::bptt::Gradients<f32>| -> Vec<Vec<f32>> {
                gr.inputs
                    .iter()
                    .chain(&gr.init_states)
                    .cloned()
                    .chain(gr.params.iter().map(|p| p.clone().unwrap_or_default()))
                    .collect()
            };
            for (x, y) in flat(&a).iter().zip(&flat(&b)) {
                assert_eq!(x.len(), y.len());
                for (p, q) in x.iter().zip(y) {
                    if p.is_finite() {
                        compared += 1;
                        assert!(
                            (p - q).abs() <= 1e-4 * (1.0 + p.abs()),
                            "seed {seed}: gradient {p} became {q}\n{g}\n{o}"
                        );
                    }
                }
            }
        }
    }
    assert!(compared > 10_000, "{compared}");
}
