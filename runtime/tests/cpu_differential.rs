//! The CPU backend against the oracle.
//!
//! Three levels, each sharp enough to fail on a real bug:
//!
//! 1. **Bit-exact against the interpreter** on graphs whose ops are all exactly lowered (every op
//!    but `exp log log2 tanh sigmoid atan erf sin cos pow`): random graphs of the whole
//!    catalogue minus those, every surrogate, all param kinds, both directions, sum-over-time
//!    outputs, `T` in {0, 1, random}, `N` not a multiple of 4, 16 or the chunk.
//! 2. **Bit-exact against the model** (`codegen::clif::model`, the interpreter's scan with the
//!    inline math library) on random graphs of every op: this proves the generated code computes
//!    exactly the documented approximations, whose error against libm is tested over the whole
//!    float range in `codegen::clif::math`.
//! 3. **Within the approximation bound of the interpreter**: each approximated op alone within
//!    its stated ulp bound; smooth random graphs (no discontinuities) within `1e-4` relative, the
//!    growth of a few-ulp per-op error over at most 16 nodes and 12 steps of Lipschitz-bounded
//!    ops (measured worst: well under that).
//!
//! Plus: every thread count gives bit-identical results.

use flexsn_compiler::codegen::clif::lower::is_approximated;
use flexsn_compiler::codegen::clif::model;
use flexsn_compiler::dsl::GraphBuilder;
use flexsn_compiler::interp;
use flexsn_compiler::ir::{Op, ParamKind, StateInit, StepGraph, Surrogate};
use flexsn_compiler::random::{
    RandomGraphConfig, SplitMix64, graph_strategy, random_graph, random_inputs, scan_args,
};
use flexsn_compiler::scan::{Direction, OutputMode, ScanArgs, ScanKernel, ScanResult};
use flexsn_runtime::cpu::{CpuOptions, CpuScan};
use proptest::prelude::*;

const NS: &[usize] = &[1, 3, 5, 7, 9, 17, 33, 257, 4099];

fn same(a: f32, b: f32) -> bool {
    a.to_bits() == b.to_bits() || (a.is_nan() && b.is_nan())
}

/// Bit-identical results (NaN equals NaN).
fn identical(got: &ScanResult<f32>, want: &ScanResult<f32>) -> Result<(), String> {
    let groups = [
        ("output", &got.outputs, &want.outputs),
        ("state sequence", &got.state_seqs, &want.state_seqs),
        ("final state", &got.final_states, &want.final_states),
    ];
    for (what, g, w) in groups {
        if g.len() != w.len() {
            return Err(format!("{what}s: {} vs {}", g.len(), w.len()));
        }
        for (k, (gv, wv)) in g.iter().zip(w.iter()).enumerate() {
            if gv.len() != wv.len() {
                return Err(format!("{what} {k}: length {} vs {}", gv.len(), wv.len()));
            }
            if let Some(i) = (0..gv.len()).find(|&i| !same(gv[i], wv[i])) {
                return Err(format!(
                    "{what} {k}[{i}]: got {:e} ({:#x}), want {:e} ({:#x})",
                    gv[i],
                    gv[i].to_bits(),
                    wv[i],
                    wv[i].to_bits()
                ));
            }
        }
    }
    Ok(())
}

fn kernel(g: StepGraph, dir: Direction, sum_every: usize, state_seqs: bool) -> ScanKernel {
    let modes = (0..g.outputs().len())
        .map(|o| {
            if sum_every > 0 && o % sum_every == 0 {
                OutputMode::SumOverTime
            } else {
                OutputMode::Sequence
            }
        })
        .collect();
    ScanKernel {
        graph: g,
        direction: dir,
        output_modes: modes,
        state_seqs,
    }
}

fn opts(unroll: usize, chunk: usize) -> CpuOptions {
    CpuOptions {
        threads: 1,
        chunk,
        unroll,
    }
}

/// Every op once (approximated ones included), all param kinds, operands cycling over the leaves,
/// and an exactly lowered state update.
fn every_op_graph() -> StepGraph {
    let mut gb = GraphBuilder::new("every_op");
    let x = gb.add_input("x").unwrap();
    let y = gb.add_input("y").unwrap();
    let s = gb.add_state("s", StateInit::Runtime).unwrap();
    let ps = gb.add_param("ps", ParamKind::Shared, true).unwrap();
    let pn = gb.add_param("pn", ParamKind::PerNeuron, true).unwrap();
    let pt = gb.add_param("pt", ParamKind::PerTime, false).unwrap();
    let leaves = [x, y, s, ps, pn, pt];
    let mut outs = vec![];
    for (i, op) in Op::PLAIN.iter().enumerate() {
        for shift in 0..leaves.len() {
            let args: Vec<_> = (0..op.arity().count())
                .map(|k| leaves[(i + k + shift) % leaves.len()])
                .collect();
            outs.push(gb.op(*op, &args).unwrap());
        }
    }
    let spike = gb
        .op(Op::Spike(Surrogate::ATan { alpha: 2.0 }), &[x])
        .unwrap();
    outs.push(spike);
    // `1 - m` for values that are always +0 or 1, lowered as an `xor` with the bits of 1.0.
    let one = gb.constant(1.0);
    let detached = gb.op(Op::Detach, &[spike]).unwrap();
    let lt = gb.op(Op::Lt, &[y, s]).unwrap();
    let not = gb.op(Op::Not, &[pn]).unwrap();
    let and = gb.op(Op::And, &[x, pt]).unwrap();
    for m in [spike, detached, lt, not, and] {
        outs.push(gb.op(Op::Sub, &[one, m]).unwrap());
    }
    for (i, v) in outs.iter().enumerate() {
        gb.add_output(&format!("o{i}"), *v).unwrap();
    }
    // s' = clamp(s / 2 + x, -4, 4): exact ops only.
    let half = gb.constant(0.5);
    let lo = gb.constant(-4.0);
    let hi = gb.constant(4.0);
    let a = gb.op(Op::Mul, &[s, half]).unwrap();
    let a = gb.op(Op::Add, &[a, x]).unwrap();
    let n = gb.op(Op::Clamp, &[a, lo, hi]).unwrap();
    gb.set_next_state(0, n).unwrap();
    gb.finish().unwrap()
}

/// Puts NaN, infinities, signed zeros, subnormals and huge values into every fifth element.
fn with_specials(inputs: &mut [Vec<f32>]) {
    let sp = [
        f32::NAN,
        f32::INFINITY,
        f32::NEG_INFINITY,
        -0.0,
        0.0,
        1e-40,
        -3e38,
        2.5,
        -0.5,
        1e7,
    ];
    for (k, x) in inputs.iter_mut().enumerate() {
        for (i, v) in x.iter_mut().enumerate() {
            if (i + k) % 5 == 0 {
                *v = sp[(i / 5 + 3 * k) % sp.len()];
            }
        }
    }
}

/// ulp distance between two floats (0 for equal bits, equal NaNs or equal infinities).
fn ulps(a: f32, b: f32) -> f64 {
    if same(a, b) || a == b {
        return 0.0;
    }
    if a.is_nan() || b.is_nan() || a.is_infinite() || b.is_infinite() {
        return f64::INFINITY;
    }
    let ulp = |x: f32| {
        let e = (x.abs().max(f32::MIN_POSITIVE) as f64).log2().floor() as i32;
        2f64.powi(e - 23)
    };
    (a as f64 - b as f64).abs() / ulp(b)
}

#[test]
fn every_op_every_layout_matches_model_and_interpreter() {
    let g = every_op_graph();
    let approx: Vec<bool> = g
        .outputs()
        .iter()
        .map(|o| is_approximated(&g.node(o.value).op))
        .collect();
    for dir in [Direction::Forward, Direction::Reverse] {
        for (sum_every, seqs) in [(0, true), (3, false), (1, true)] {
            let k = kernel(g.clone(), dir, sum_every, seqs);
            for unroll in [1, 2, 4] {
                let cpu = CpuScan::compile(&k, &opts(unroll, 64)).unwrap();
                for (i, &n) in NS.iter().enumerate() {
                    for t in [0, 1, 3] {
                        let mut data = random_inputs(i as u64 * 31 + t as u64, &g, t, n);
                        with_specials(&mut data.0);
                        with_specials(&mut data.1);
                        with_specials(&mut data.2);
                        let args = scan_args(t, n, &data);
                        let got = cpu.run(&args).unwrap();
                        let want = model::run_scan(&k, &args).unwrap();
                        identical(&got, &want).unwrap_or_else(|e| {
                            panic!("{dir:?} sum_every={sum_every} unroll={unroll} T={t} N={n}: {e}")
                        });
                        // Against the interpreter: exact ops bit for bit, approximated ones within
                        // 3 ulp (the worst bound of the math library) or 1e-37 absolute (results
                        // the interpreter flushes to 0, e.g. sigmoid(-100) = 4e-44).
                        let oracle = interp::run_scan(&k, &args).unwrap();
                        for (o, (gv, wv)) in got.outputs.iter().zip(&oracle.outputs).enumerate() {
                            for (e, (a, b)) in gv.iter().zip(wv).enumerate() {
                                let ok = if approx[o] && k.output_modes[o] == OutputMode::Sequence {
                                    ulps(*a, *b) <= 3.0 || (a - b).abs() <= 1e-37
                                } else if approx[o] {
                                    // Sums of T approximated values.
                                    (a - b).abs() <= 1e-6 * (1.0 + b.abs()) || same(*a, *b)
                                } else {
                                    same(*a, *b)
                                };
                                assert!(
                                    ok,
                                    "output o{o} ({}) [{e}] {dir:?} T={t} N={n}: cpu {a:e}, interpreter {b:e}",
                                    g.node(g.outputs()[o].value).op.name()
                                );
                            }
                        }
                        identical(
                            &ScanResult {
                                outputs: vec![],
                                ..got.clone()
                            },
                            &ScanResult {
                                outputs: vec![],
                                ..oracle
                            },
                        )
                        .unwrap();
                    }
                }
            }
        }
    }
}

/// Dense samples of each approximated function (and fmod, which loops) through generated code,
/// bit-identical to the model.
#[test]
fn math_library_in_generated_code_is_the_model() {
    let mut rng = SplitMix64::new(5);
    let n = 1 << 16;
    let xs: Vec<f32> = (0..n)
        .map(|i| match i % 4 {
            0 => f32::from_bits(rng.next_u64() as u32),
            1 => rng.uniform(-100.0, 100.0),
            2 => rng.uniform(-4.0, 4.0),
            _ => f32::from_bits((i as u32).wrapping_mul(0x9E37_79B9)),
        })
        .collect();
    let ys: Vec<f32> = (0..n)
        .map(|i| match i % 3 {
            0 => f32::from_bits(rng.next_u64() as u32),
            1 => rng.uniform(-8.0, 8.0),
            _ => (rng.below(7) as f32) - 3.0,
        })
        .collect();
    let ops = [
        Op::Exp,
        Op::Log,
        Op::Log2,
        Op::Tanh,
        Op::Sigmoid,
        Op::Atan,
        Op::Erf,
        Op::Sin,
        Op::Cos,
        Op::Pow,
        Op::Fmod,
    ];
    for op in ops {
        let mut gb = GraphBuilder::new("f");
        let x = gb.add_input("x").unwrap();
        let y = gb.add_input("y").unwrap();
        let args = if op.arity().count() == 2 {
            vec![x, y]
        } else {
            vec![x]
        };
        let v = gb.op(op, &args).unwrap();
        gb.add_output("r", v).unwrap();
        let g = gb.finish().unwrap();
        let k = ScanKernel::forward(g, false);
        let cpu = CpuScan::compile(&k, &CpuOptions::default()).unwrap();
        let a = ScanArgs {
            t: 1,
            n,
            inputs: vec![&xs, &ys],
            init_states: vec![],
            params: vec![],
        };
        identical(&cpu.run(&a).unwrap(), &model::run_scan(&k, &a).unwrap())
            .unwrap_or_else(|e| panic!("{}: {e}", op.name()));
        if op == Op::Fmod {
            // fmod is exact: the interpreter (libm) agrees bit for bit.
            identical(&cpu.run(&a).unwrap(), &interp::run_scan(&k, &a).unwrap()).unwrap();
        }
    }
}

fn exact_config() -> RandomGraphConfig {
    RandomGraphConfig {
        ops: Op::PLAIN
            .iter()
            .copied()
            .filter(|op| !is_approximated(op))
            .collect(),
        ..RandomGraphConfig::all()
    }
}

/// `g` as a kernel and its CPU compilation, with direction, output modes and CPU options drawn
/// from `seed`.
fn run_case(g: StepGraph, seed: u64) -> (ScanKernel, CpuScan) {
    let dir = if seed.is_multiple_of(2) {
        Direction::Forward
    } else {
        Direction::Reverse
    };
    let k = kernel(g, dir, (seed % 3) as usize, !seed.is_multiple_of(5));
    let unroll = [0, 1, 2, 4][(seed % 4) as usize];
    let chunk = [0, 16, 48, 256][(seed / 4 % 4) as usize];
    let cpu = CpuScan::compile(&k, &opts(unroll, chunk)).unwrap();
    (k, cpu)
}

fn t_of(seed: u64) -> usize {
    match seed % 7 {
        0 => 0,
        1 => 1,
        _ => 2 + (seed / 7 % 11) as usize,
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, .. ProptestConfig::default() })]

    /// Random graphs of exactly lowered ops: the CPU equals the interpreter bit for bit.
    #[test]
    fn exact_random_graphs_equal_the_interpreter(
        g in graph_strategy(exact_config()), seed in any::<u64>(), ni in 0..NS.len()
    ) {
        let (t, n) = (t_of(seed), NS[ni].min(300));
        let (k, cpu) = run_case(g, seed);
        let data = random_inputs(seed, &k.graph, t, n);
        let args = scan_args(t, n, &data);
        let got = cpu.run(&args).unwrap();
        let want = interp::run_scan(&k, &args).unwrap();
        prop_assert!(identical(&got, &want).is_ok(), "seed {seed} T={t} N={n}: {}\n{}",
            identical(&got, &want).unwrap_err(), k.graph);
    }

    /// Random graphs of every op: the CPU equals the model bit for bit.
    #[test]
    fn random_graphs_equal_the_model(
        g in graph_strategy(RandomGraphConfig::all()), seed in any::<u64>(), ni in 0..NS.len()
    ) {
        let (t, n) = (t_of(seed), NS[ni].min(300));
        let (k, cpu) = run_case(g, seed);
        let data = random_inputs(seed, &k.graph, t, n);
        let args = scan_args(t, n, &data);
        let got = cpu.run(&args).unwrap();
        let want = model::run_scan(&k, &args).unwrap();
        prop_assert!(identical(&got, &want).is_ok(), "seed {seed} T={t} N={n}: {}\n{}",
            identical(&got, &want).unwrap_err(), k.graph);
    }

    /// Smooth random graphs: within 1e-4 relative of the interpreter.
    #[test]
    fn smooth_random_graphs_are_close_to_the_interpreter(
        g in graph_strategy(RandomGraphConfig::smooth()), seed in any::<u64>(), ni in 0..NS.len()
    ) {
        let (t, n) = (t_of(seed), NS[ni].min(300));
        let (k, cpu) = run_case(g, seed);
        let data = random_inputs(seed, &k.graph, t, n);
        let args = scan_args(t, n, &data);
        let got = cpu.run(&args).unwrap();
        let want = interp::run_scan(&k, &args).unwrap();
        let all = |r: &ScanResult<f32>| -> Vec<f32> {
            r.outputs.iter().chain(&r.state_seqs).chain(&r.final_states).flatten().copied().collect()
        };
        for (a, b) in all(&got).iter().zip(all(&want)) {
            prop_assert!((a - b).abs() <= 1e-4 * (1.0 + b.abs()), "seed {seed}: cpu {a}, interpreter {b}\n{}", k.graph);
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 12, .. ProptestConfig::default() })]

    /// Different thread counts split the neurons differently (and put different neurons in the
    /// scalar tail); results are bit-identical.
    #[test]
    fn thread_counts_give_identical_results(
        g in graph_strategy(RandomGraphConfig::all()), seed in any::<u64>()
    ) {
        let k = kernel(g, Direction::Forward, 2, true);
        let cpu = CpuScan::compile(&k, &CpuOptions::default()).unwrap();
        for (t, n) in [(3, 4099), (1, 1), (5, 17), (2, 40_000)] {
            let data = random_inputs(seed, &k.graph, t, n);
            let args = scan_args(t, n, &data);
            let one = cpu.run_with_threads(&args, 1).unwrap();
            for threads in [2, 3, 5] {
                let r = cpu.run_with_threads(&args, threads).unwrap();
                let same = identical(&r, &one);
                prop_assert!(same.is_ok(), "T={t} N={n} threads={threads}: {}\n{}",
                    same.unwrap_err(), k.graph);
            }
        }
    }
}

#[test]
fn shape_errors_name_the_argument() {
    let g = every_op_graph();
    let k = ScanKernel::forward(g.clone(), false);
    let cpu = CpuScan::compile(&k, &CpuOptions::default()).unwrap();
    let (t, n) = (4, 10);
    let data = random_inputs(1, &g, t, n);
    let mut args = scan_args(t, n, &data);
    let short = vec![0.0f32; t * n - 1];
    args.inputs[1] = &short;
    let e = cpu.run(&args).unwrap_err().to_string();
    assert!(
        e.contains("`y`") && e.contains("40") && e.contains("39"),
        "{e}"
    );
    let mut args = scan_args(t, n, &data);
    let pt = vec![0.0f32; 3];
    args.params[2] = &pt;
    let e = cpu.run(&args).unwrap_err().to_string();
    assert!(e.contains("`pt`") && e.contains("per time"), "{e}");
    let mut args = scan_args(t, n, &data);
    args.n = 0;
    assert!(cpu.run(&args).is_err());
}

#[test]
fn long_reverse_scan_with_many_chunks() {
    // More neurons than one chunk and one thread range, T large, reverse.
    let g = random_graph(99, &exact_config());
    let k = kernel(g, Direction::Reverse, 2, true);
    let cpu = CpuScan::compile(&k, &opts(0, 32)).unwrap();
    let (t, n) = (40, 1001);
    let data = random_inputs(99, &k.graph, t, n);
    let args = scan_args(t, n, &data);
    identical(
        &cpu.run_with_threads(&args, 3).unwrap(),
        &interp::run_scan(&k, &args).unwrap(),
    )
    .unwrap();
}
