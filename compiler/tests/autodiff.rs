//! Autodiff checks: every op's rule and every surrogate against finite differences or the
//! closed-form surrogate derivative, and whole BPTT scans against finite differences in f64.

use flexsn_compiler::autodiff::surrogate_grad;
use flexsn_compiler::bptt::Upstream;
use flexsn_compiler::dsl::{CoreBuilder, GraphBuilder};
use flexsn_compiler::ir::{Op, ParamKind, StateInit, StepGraph, Surrogate};
use flexsn_compiler::scan::{ScanArgs, ScanKernel};
use flexsn_compiler::{interp, oracle};

/// Deterministic pseudo-random numbers in [lo, hi).
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> f64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((self.0 >> 11) as f64) / ((1u64 << 53) as f64)
    }
    fn range(&mut self, lo: f64, hi: f64) -> f64 {
        lo + (hi - lo) * self.next()
    }
    fn vec(&mut self, len: usize, lo: f64, hi: f64) -> Vec<f64> {
        (0..len).map(|_| self.range(lo, hi)).collect()
    }
}

/// Loss = Σ gy·y + Σ gseq·state_seq + Σ gfin·final, evaluated in f64.
struct Problem {
    g: StepGraph,
    t: usize,
    n: usize,
    inputs: Vec<Vec<f64>>,
    init: Vec<Vec<f64>>,
    params: Vec<Vec<f64>>,
    gy: Vec<Vec<f64>>,
    gseq: Vec<Vec<f64>>,
    gfin: Vec<Vec<f64>>,
}

impl Problem {
    fn new(g: StepGraph, t: usize, n: usize, seed: u64, lo: f64, hi: f64) -> Self {
        let mut r = Rng(seed);
        let inputs = g.inputs().iter().map(|_| r.vec(t * n, lo, hi)).collect();
        let init = g.states().iter().map(|_| r.vec(n, lo, hi)).collect();
        let params = g
            .params()
            .iter()
            .map(|d| {
                let len = match d.kind {
                    ParamKind::Shared => 1,
                    ParamKind::PerNeuron => n,
                    ParamKind::PerTime => t,
                };
                r.vec(len, 0.2, 0.8)
            })
            .collect();
        let gy = g
            .outputs()
            .iter()
            .map(|_| r.vec(t * n, -1.0, 1.0))
            .collect();
        let gseq = g.states().iter().map(|_| r.vec(t * n, -1.0, 1.0)).collect();
        let gfin = g.states().iter().map(|_| r.vec(n, -1.0, 1.0)).collect();
        Problem {
            g,
            t,
            n,
            inputs,
            init,
            params,
            gy,
            gseq,
            gfin,
        }
    }

    fn args(&self) -> ScanArgs<'_, f64> {
        ScanArgs {
            t: self.t,
            n: self.n,
            inputs: self.inputs.iter().map(Vec::as_slice).collect(),
            init_states: self.init.iter().map(Vec::as_slice).collect(),
            params: self.params.iter().map(Vec::as_slice).collect(),
        }
    }

    fn loss(&self) -> f64 {
        let r = oracle::forward(&self.g, &self.args(), true).unwrap();
        let dot = |a: &[f64], b: &[f64]| a.iter().zip(b).map(|(x, y)| x * y).sum::<f64>();
        let mut l = 0.0;
        for (y, g) in r.outputs.iter().zip(&self.gy) {
            l += dot(y, g);
        }
        for (s, g) in r.state_seqs.iter().zip(&self.gseq) {
            l += dot(s, g);
        }
        for (s, g) in r.final_states.iter().zip(&self.gfin) {
            l += dot(s, g);
        }
        l
    }

    /// Compares autodiff with central differences on every element of every argument.
    fn check(&mut self, tol: f64) {
        let r = oracle::forward(&self.g, &self.args(), true).unwrap();
        let seqs: Vec<&[f64]> = r.state_seqs.iter().map(Vec::as_slice).collect();
        let up = Upstream {
            outputs: self.gy.iter().map(|v| Some(v.as_slice())).collect(),
            state_seqs: self.gseq.iter().map(|v| Some(v.as_slice())).collect(),
            final_states: self.gfin.iter().map(|v| Some(v.as_slice())).collect(),
        };
        let grads = oracle::backward(&self.g, &self.args(), &seqs, &up).unwrap();
        let eps = 1e-6;
        let fd = |p: &mut Problem, pick: &dyn Fn(&mut Problem) -> &mut f64| {
            let x0 = *pick(p);
            *pick(p) = x0 + eps;
            let lp = p.loss();
            *pick(p) = x0 - eps;
            let lm = p.loss();
            *pick(p) = x0;
            (lp - lm) / (2.0 * eps)
        };
        let text = flexsn_compiler::text::print(&self.g);
        let close = |what: String, a: f64, b: f64| {
            assert!(
                (a - b).abs() <= tol * (1.0 + b.abs()),
                "{what}: autodiff {a} vs finite difference {b}\n{text}"
            );
        };
        for i in 0..self.inputs.len() {
            for e in 0..self.inputs[i].len() {
                let num = fd(self, &|p| &mut p.inputs[i][e]);
                close(format!("input {i}[{e}]"), grads.inputs[i][e], num);
            }
        }
        for j in 0..self.init.len() {
            for e in 0..self.n {
                let num = fd(self, &|p| &mut p.init[j][e]);
                close(format!("init state {j}[{e}]"), grads.init_states[j][e], num);
            }
        }
        for k in 0..self.params.len() {
            let Some(gp) = &grads.params[k] else {
                assert!(!self.g.params()[k].learnable);
                continue;
            };
            assert_eq!(gp.len(), self.params[k].len(), "param {k} gradient length");
            for (e, &g) in gp.iter().enumerate() {
                let num = fd(self, &|p| &mut p.params[k][e]);
                close(format!("param {k}[{e}]"), g, num);
            }
        }
    }
}

fn single_op(op: Op) -> StepGraph {
    let mut b = GraphBuilder::new("op");
    let args: Vec<_> = (0..op.arity().count())
        .map(|i| b.add_input(&format!("a{i}")).unwrap())
        .collect();
    let y = b.op(op, &args).unwrap();
    b.add_output("y", y).unwrap();
    b.finish().unwrap()
}

#[test]
fn every_differentiable_op_matches_finite_differences() {
    // Domains keep every point away from kinks and poles.
    let cases: &[(Op, f64, f64)] = &[
        (Op::Neg, -2.0, 2.0),
        (Op::Reciprocal, 0.5, 2.0),
        (Op::Exp, -2.0, 2.0),
        (Op::Log, 0.5, 3.0),
        (Op::Log2, 0.5, 3.0),
        (Op::Sqrt, 0.5, 3.0),
        (Op::Rsqrt, 0.5, 3.0),
        (Op::Tanh, -2.0, 2.0),
        (Op::Sin, -3.0, 3.0),
        (Op::Cos, -3.0, 3.0),
        (Op::Erf, -2.0, 2.0),
        (Op::Atan, -3.0, 3.0),
        (Op::Relu, 0.1, 2.0),
        (Op::Sigmoid, -3.0, 3.0),
        (Op::Abs, 0.1, 2.0),
        (Op::Add, -2.0, 2.0),
        (Op::Sub, -2.0, 2.0),
        (Op::Mul, -2.0, 2.0),
        (Op::Div, 0.5, 2.0),
        (Op::Pow, 0.5, 2.0),
        (Op::Fmod, 0.3, 2.9),
        (Op::Min, -2.0, 2.0),
        (Op::Max, -2.0, 2.0),
        (Op::Clamp, -2.0, 2.0),
        (Op::Select, -2.0, 2.0),
    ];
    for (k, &(op, lo, hi)) in cases.iter().enumerate() {
        let mut p = Problem::new(single_op(op), 1, 16, 100 + k as u64, lo, hi);
        p.check(1e-6);
    }
}

#[test]
fn piecewise_constant_ops_have_zero_gradient() {
    for op in [
        Op::Floor,
        Op::Ceil,
        Op::Round,
        Op::Sign,
        Op::Not,
        Op::Eq,
        Op::Ne,
        Op::Lt,
        Op::Le,
        Op::Gt,
        Op::Ge,
        Op::And,
        Op::Or,
        Op::Detach,
        Op::Spike(Surrogate::ATan { alpha: 2.0 }),
    ] {
        let g = single_op(op);
        let p = Problem::new(g.clone(), 1, 8, 7, -2.0, 2.0);
        let r = oracle::forward(&g, &p.args(), true).unwrap();
        let seqs: Vec<&[f64]> = r.state_seqs.iter().map(Vec::as_slice).collect();
        let up = Upstream {
            outputs: p.gy.iter().map(|v| Some(v.as_slice())).collect(),
            state_seqs: vec![],
            final_states: vec![],
        };
        let grads = oracle::backward(&g, &p.args(), &seqs, &up).unwrap();
        let nonzero = grads.inputs.iter().flatten().any(|&v| v != 0.0);
        // Spike is the one op whose gradient is the surrogate's, not zero.
        assert_eq!(nonzero, matches!(op, Op::Spike(_)), "{op:?}");
    }
}

#[test]
fn min_max_split_ties_and_clamp_passes_inside() {
    let g = single_op(Op::Max);
    let args = ScanArgs {
        t: 1,
        n: 1,
        inputs: vec![&[1.0f64][..], &[1.0][..]],
        init_states: vec![],
        params: vec![],
    };
    let up = Upstream {
        outputs: vec![Some(&[2.0f64][..])],
        state_seqs: vec![],
        final_states: vec![],
    };
    let gr = oracle::backward(&g, &args, &[], &up).unwrap();
    assert_eq!((gr.inputs[0][0], gr.inputs[1][0]), (1.0, 1.0));

    let g = single_op(Op::Clamp);
    let args = ScanArgs {
        t: 1,
        n: 1,
        inputs: vec![&[3.0f64][..], &[-1.0][..], &[2.0][..]],
        init_states: vec![],
        params: vec![],
    };
    let gr = oracle::backward(&g, &args, &[], &up).unwrap();
    assert_eq!(
        (gr.inputs[0][0], gr.inputs[1][0], gr.inputs[2][0]),
        (0.0, 0.0, 2.0)
    );
}

fn all_surrogates() -> Vec<Surrogate> {
    let mut v: Vec<Surrogate> = Surrogate::NAMES
        .iter()
        .map(|n| Surrogate::default_for(n).unwrap())
        .collect();
    v.extend([
        Surrogate::Sigmoid { alpha: 2.5 },
        Surrogate::SquarewaveFourierSeries {
            n: 4,
            t_period: 6.0,
        },
        Surrogate::LeakyKReLU { leak: 0.1, k: 0.7 },
        Surrogate::LogTailedReLU { alpha: 0.05 },
        Surrogate::PiecewiseLeakyReLU { w: 0.5, c: 0.02 },
        Surrogate::S2NN {
            alpha: 3.0,
            beta: 0.5,
        },
        Surrogate::QPseudoSpike { alpha: 3.0 },
    ]);
    v
}

#[test]
fn surrogate_grad_as_ir_matches_the_closed_form() {
    for s in all_surrogates() {
        let mut b = GraphBuilder::new("sg");
        let x = b.add_input("x").unwrap();
        let d = surrogate_grad(&mut b, s, x).unwrap();
        b.add_output("d", d).unwrap();
        let g = b.finish().unwrap();
        let xs: Vec<f32> = (-300..=300).map(|i| i as f32 / 97.0).collect();
        let r = interp::run_scan(
            &ScanKernel::forward(g, false),
            &ScanArgs {
                t: 1,
                n: xs.len(),
                inputs: vec![&xs],
                init_states: vec![],
                params: vec![],
            },
        )
        .unwrap();
        for (x, got) in xs.iter().zip(&r.outputs[0]) {
            let want = s.grad(*x);
            assert!(
                (got - want).abs() <= 1e-6 * (1.0 + want.abs()),
                "{s}: at {x}: IR {got} vs closed form {want}"
            );
        }
    }
}

#[test]
fn surrogate_grads_match_finite_differences_of_their_primitives() {
    // SpikingJelly's contract (test_neuron_kernel_surrogate_contract): backward == d primitive.
    for s in all_surrogates().into_iter().filter(|s| s.has_primitive()) {
        let mut b = GraphBuilder::new("prim");
        let x = b.add_input("x").unwrap();
        let y = b.surrogate_primitive(s, x).unwrap();
        b.add_output("y", y).unwrap();
        let g = b.finish().unwrap();
        for &x0 in &[-0.75f64, -0.25, 0.25, 0.75, 1.6, -1.3] {
            let eval = |x: f64| {
                let r = interp::run_scan(
                    &ScanKernel::forward(g.clone(), false),
                    &ScanArgs {
                        t: 1,
                        n: 1,
                        inputs: vec![&[x][..]],
                        init_states: vec![],
                        params: vec![],
                    },
                )
                .unwrap();
                r.outputs[0][0]
            };
            let eps = 1e-6;
            let num = (eval(x0 + eps) - eval(x0 - eps)) / (2.0 * eps);
            let want = s.grad(x0);
            assert!(
                (num - want).abs() <= 1e-4 * (1.0 + want.abs()),
                "{s} at {x0}: d primitive {num} vs grad {want}"
            );
        }
        // And autodiff through the primitive agrees with finite differences.
        let mut p = Problem::new(g, 1, 12, 3, -1.4, 1.4);
        p.check(1e-5);
    }
}

/// A smooth two-state core with every param kind: BPTT through the whole scan vs finite
/// differences.
fn smooth_core() -> StepGraph {
    let b = CoreBuilder::new("smooth");
    let x = b.input("x");
    let y = b.input("y");
    let v = b.state("v", StateInit::Const(0.0));
    let a = b.state("a", StateInit::Runtime);
    let w = b.param("w", ParamKind::Shared, true);
    let k = b.param("k", ParamKind::PerNeuron, true);
    let c = b.param("c", ParamKind::PerTime, true);
    let fixed = b.param("fixed", ParamKind::Shared, false);
    let h = v + (x - v) * w.sigmoid() + c * y.tanh();
    let s = (h - 0.5 - a * k).surrogate_primitive(Surrogate::ATan { alpha: 2.0 });
    b.output("s", s);
    b.output("m", h.max(a) * fixed + (x * y).exp().min(3.0));
    b.set_state("v", h - s * 0.5 + h.clamp(-0.5, 0.5) * 0.1);
    b.set_state("a", a * 0.9 + s * 0.1 + (h * 0.2).sin());
    b.build().unwrap()
}

#[test]
fn bptt_through_a_smooth_scan_matches_finite_differences() {
    for (t, n, seed) in [(1, 3, 1), (5, 4, 2), (12, 2, 3)] {
        let mut p = Problem::new(smooth_core(), t, n, seed, -1.0, 1.0);
        p.check(2e-5);
    }
}

#[test]
fn absent_upstream_gradients_are_zero_and_t0_passes_final_grads_through() {
    let g = smooth_core();
    let p = Problem::new(g.clone(), 0, 3, 9, -1.0, 1.0);
    let gfin: Vec<Vec<f64>> = vec![vec![1.0, 2.0, 3.0], vec![4.0, 5.0, 6.0]];
    let up = Upstream {
        outputs: vec![None, None],
        state_seqs: vec![None, None],
        final_states: gfin.iter().map(|v| Some(v.as_slice())).collect(),
    };
    let gr = oracle::backward(&g, &p.args(), &[&[], &[]], &up).unwrap();
    assert_eq!(gr.init_states, gfin);
    assert!(gr.inputs.iter().all(Vec::is_empty));
    assert_eq!(gr.params[0], Some(vec![0.0]));
    assert_eq!(gr.params[3], None);
}

#[test]
fn bptt_on_random_smooth_graphs_matches_finite_differences() {
    use flexsn_compiler::random::{RandomGraphConfig, random_graph};
    let cfg = RandomGraphConfig::smooth();
    for seed in 0..40 {
        let g = random_graph(seed, &cfg);
        // Random smooth graphs may contain Detach or piecewise-constant masks; finite
        // differences only see the function, so skip graphs whose gradient is cut on purpose.
        if g.nodes().any(|(_, n)| matches!(n.op, Op::Detach)) {
            continue;
        }
        let mut p = Problem::new(g, 4, 3, seed, -0.9, 0.9);
        p.check(1e-4);
    }
}
