//! `Kernel`'s host-memory entry points on every built-in scan neuron: bit-identical to the
//! slice API (CPU and interpreter backends) and to the interpreter's own forward and backward
//! (unoptimised interpreter kernel), and every wrong count or length is an error that names the
//! argument, raised before anything is compiled or run.

use flexsn_compiler::oracle;
use flexsn_compiler::scan::ScanArgs;
use flexsn_neurons::{BUILTINS, Builtin};
use flexsn_runtime::{
    Backend, GradBuffers, InferenceBuffers, Jit, Kernel, KernelArgs, RuntimeError, TrainingBuffers,
    Upstream,
};

/// Every built-in that is a scan, with its initial params.
/// Initial params by name.
type Params = Vec<(String, Vec<f32>)>;

/// Every built-in that is a scan, with its initial params.
fn scan_builtins() -> Vec<(Builtin, Params)> {
    BUILTINS
        .iter()
        .map(|i| Builtin::from_name(i.cli_name).unwrap())
        .filter(|b| b.step_graph().is_ok())
        .map(|b| (b, b.initial_params()))
        .collect()
}

fn seq(len: usize, seed: f32) -> Vec<f32> {
    (0..len)
        .map(|i| (i as f32 * 0.613 + seed).sin() * 1.9 + 0.5)
        .collect()
}

/// What one host-API training call produced.
struct HostRun {
    outputs: Vec<Vec<f32>>,
    state_bufs: Vec<Vec<f32>>,
    final_states: Vec<Vec<f32>>,
    grad_inputs: Vec<Vec<f32>>,
    grad_init: Vec<Vec<f32>>,
    grad_params: Vec<Option<Vec<f32>>>,
}

fn host_run(k: &Kernel, args: &KernelArgs<'_>, up: &Upstream<'_, f32>) -> HostRun {
    let g = k.graph();
    let (t, n) = (args.t, args.n);
    let mut outputs = vec![vec![f32::NAN; t * n]; g.outputs().len()];
    let mut state_bufs = vec![vec![f32::NAN; (t + 1) * n]; g.states().len()];
    let mut final_states = vec![vec![f32::NAN; n]; g.states().len()];
    k.forward_host(
        args,
        &mut TrainingBuffers {
            outputs: outputs.iter_mut().map(Vec::as_mut_slice).collect(),
            state_bufs: state_bufs.iter_mut().map(Vec::as_mut_slice).collect(),
            final_states: final_states.iter_mut().map(Vec::as_mut_slice).collect(),
        },
    )
    .unwrap();
    let mut grad_inputs = vec![vec![f32::NAN; t * n]; g.inputs().len()];
    let mut grad_init = vec![vec![f32::NAN; n]; g.states().len()];
    let bufs: Vec<&[f32]> = state_bufs.iter().map(Vec::as_slice).collect();
    let grad_params = k
        .backward_host(
            args,
            &bufs,
            up,
            &mut GradBuffers {
                inputs: grad_inputs.iter_mut().map(Vec::as_mut_slice).collect(),
                init_states: grad_init.iter_mut().map(Vec::as_mut_slice).collect(),
            },
        )
        .unwrap();
    HostRun {
        outputs,
        state_bufs,
        final_states,
        grad_inputs,
        grad_init,
        grad_params,
    }
}

fn bits(v: &[f32]) -> Vec<u32> {
    v.iter().map(|x| x.to_bits()).collect()
}

fn same(what: &str, a: &[Vec<f32>], b: &[Vec<f32>]) {
    let a: Vec<_> = a.iter().map(|v| bits(v)).collect();
    let b: Vec<_> = b.iter().map(|v| bits(v)).collect();
    assert_eq!(a, b, "{what}");
}

#[test]
fn host_entry_points_match_the_slice_api_bit_for_bit() {
    let (t, n) = (7, 5);
    for backend in [Backend::Interpreter, Backend::Cpu] {
        let jit = Jit::new(backend).unwrap();
        for (b, params) in scan_builtins() {
            let k = jit.compile(&b.step_graph().unwrap()).unwrap();
            let g = k.graph();
            let xs: Vec<Vec<f32>> = (0..g.inputs().len())
                .map(|i| seq(t * n, i as f32))
                .collect();
            let xs: Vec<&[f32]> = xs.iter().map(Vec::as_slice).collect();
            let ps: Vec<(&str, &[f32])> = params
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_slice()))
                .collect();
            let gy: Vec<Vec<f32>> = (0..g.outputs().len())
                .map(|o| seq(t * n, 9.0 + o as f32))
                .collect();
            let gv = seq(n, 3.0);
            let mut up = Upstream::none(g);
            up.outputs = gy.iter().map(|v| Some(v.as_slice())).collect();
            up.final_states[0] = Some(&gv);
            let what = format!("{} on {}", b.class_name(), backend.name());

            let args = KernelArgs {
                t,
                n,
                inputs: xs.clone(),
                init_states: None,
                params: ps.clone(),
            };
            let h = host_run(&k, &args, &up);
            let f = k.forward(t, n, &xs, None, &ps).unwrap();
            same(&format!("{what}: outputs"), &h.outputs, &f.outputs);
            same(
                &format!("{what}: final states"),
                &h.final_states,
                &f.final_states,
            );
            for (j, buf) in h.state_bufs.iter().enumerate() {
                assert_eq!(
                    bits(&buf[n..]),
                    bits(f.state_seq(j)),
                    "{what}: state seq {j}"
                );
            }
            let gr = k.backward(&f, &up).unwrap();
            same(&format!("{what}: input grads"), &h.grad_inputs, &gr.inputs);
            same(
                &format!("{what}: initial-state grads"),
                &h.grad_init,
                &gr.init_states,
            );
            assert_eq!(h.grad_params, gr.params, "{what}: param grads");

            let inf = k.infer(t, n, &xs, None, &ps).unwrap();
            let mut outs = vec![vec![f32::NAN; t * n]; g.outputs().len()];
            let mut fin = vec![vec![f32::NAN; n]; g.states().len()];
            k.infer_host(
                &args,
                &mut InferenceBuffers {
                    outputs: outs.iter_mut().map(Vec::as_mut_slice).collect(),
                    final_states: fin.iter_mut().map(Vec::as_mut_slice).collect(),
                },
            )
            .unwrap();
            same(&format!("{what}: inference outputs"), &outs, &inf.outputs);
            same(
                &format!("{what}: inference final states"),
                &fin,
                &inf.final_states,
            );
            same(&format!("{what}: inference vs training"), &outs, &h.outputs);

            // Explicit initial states: row 0 of each state buffer is that state.
            let s0: Vec<Vec<f32>> = (0..g.states().len())
                .map(|j| seq(n, 5.0 + j as f32))
                .collect();
            let args0 = KernelArgs {
                init_states: Some(s0.iter().map(Vec::as_slice).collect()),
                ..args.clone()
            };
            let h0 = host_run(&k, &args0, &up);
            let s0r: Vec<&[f32]> = s0.iter().map(Vec::as_slice).collect();
            let f0 = k.forward(t, n, &xs, Some(&s0r), &ps).unwrap();
            same(
                &format!("{what}: outputs from s0"),
                &h0.outputs,
                &f0.outputs,
            );
            for (buf, s) in h0.state_bufs.iter().zip(&s0) {
                assert_eq!(bits(&buf[..n]), bits(s), "{what}: row 0");
            }
            let gr0 = k.backward(&f0, &up).unwrap();
            same(
                &format!("{what}: input grads from s0"),
                &h0.grad_inputs,
                &gr0.inputs,
            );
            same(
                &format!("{what}: s0 grads"),
                &h0.grad_init,
                &gr0.init_states,
            );
        }
    }
}

#[test]
fn host_entry_points_match_the_interpreter_oracle_bit_for_bit() {
    let (t, n) = (6, 4);
    let mut jit = Jit::new(Backend::Interpreter).unwrap();
    jit.set_optimize(false);
    for (b, params) in scan_builtins() {
        let k = jit.compile(&b.step_graph().unwrap()).unwrap();
        let g = k.graph();
        let xs: Vec<Vec<f32>> = (0..g.inputs().len())
            .map(|i| seq(t * n, 2.0 + i as f32))
            .collect();
        let s0: Vec<Vec<f32>> = (0..g.states().len())
            .map(|j| seq(n, 7.0 + j as f32))
            .collect();
        let gy = seq(t * n, 4.0);
        let mut up = Upstream::none(g);
        up.outputs[0] = Some(&gy);
        let mut args = KernelArgs::new(t, n);
        for x in &xs {
            args = args.input(x);
        }
        for s in &s0 {
            args = args.init_state(s);
        }
        for (name, v) in &params {
            args = args.param(name.as_str(), v);
        }
        let h = host_run(&k, &args, &up);
        let sargs = ScanArgs {
            t,
            n,
            inputs: args.inputs.clone(),
            init_states: s0.iter().map(Vec::as_slice).collect(),
            params: g
                .params()
                .iter()
                .map(|d| {
                    params
                        .iter()
                        .find(|(k, _)| *k == d.name)
                        .unwrap()
                        .1
                        .as_slice()
                })
                .collect(),
        };
        let want = oracle::forward(g, &sargs, true).unwrap();
        let what = b.class_name();
        same(what, &h.outputs, &want.outputs);
        same(what, &h.final_states, &want.final_states);
        let seqs: Vec<&[f32]> = want.state_seqs.iter().map(Vec::as_slice).collect();
        let wg = oracle::backward(g, &sargs, &seqs, &up).unwrap();
        same(what, &h.grad_inputs, &wg.inputs);
        same(what, &h.grad_init, &wg.init_states);
        assert_eq!(h.grad_params, wg.params, "{what}");
    }
}

/// Asserts `r` is an error whose message contains every one of `needles`.
fn err_names(r: Result<impl std::fmt::Debug, RuntimeError>, needles: &[&str]) {
    let e = r.unwrap_err();
    let msg = e.to_string();
    for w in needles {
        assert!(msg.contains(w), "`{msg}` does not mention {w}");
    }
}

#[test]
fn every_bad_shape_is_an_error_before_anything_runs() {
    let (t, n) = (4, 3);
    let jit = Jit::new(Backend::Cpu).unwrap();
    // PLIF: one input, one state, one shared param.
    let plif = Builtin::from_name("plif").unwrap();
    let k = jit.compile(&plif.step_graph().unwrap()).unwrap();
    let params = plif.initial_params();
    let w = params[0].1.clone();
    let x = seq(t * n, 0.0);
    let args = KernelArgs::new(t, n).input(&x).param(&params[0].0, &w);
    let mut y = vec![0.0; t * n];
    let mut buf = vec![0.0; (t + 1) * n];
    let mut fin = vec![0.0; n];
    let mut fwd = |k: &Kernel, a: &KernelArgs<'_>, ny: usize, nb: usize, nf: usize| {
        let (y, buf, fin) = (&mut y[..ny], &mut buf[..nb], &mut fin[..nf]);
        k.forward_host(
            a,
            &mut TrainingBuffers {
                outputs: vec![y],
                state_bufs: vec![buf],
                final_states: vec![fin],
            },
        )
    };
    let (tn, tb) = (t * n, (t + 1) * n);
    fwd(&k, &args, tn, tb, n).unwrap();
    err_names(
        fwd(&k, &args, tn, tb - 1, n),
        &["state buffer v", "[T+1=5, N=3]"],
    );
    err_names(fwd(&k, &args, tn, tn, n), &["state buffer v"]);
    err_names(fwd(&k, &args, tn - 1, tb, n), &["output buffer spike"]);
    err_names(fwd(&k, &args, tn, tb, n - 1), &["final-state buffer v"]);
    let short = seq(tn - 1, 0.0);
    err_names(
        fwd(
            &k,
            &KernelArgs {
                inputs: vec![&short],
                ..args.clone()
            },
            tn,
            tb,
            n,
        ),
        &["[T=4, N=3]"],
    );
    let s0 = vec![0.0; n - 1];
    err_names(
        fwd(&k, &args.clone().init_state(&s0), tn, tb, n),
        &["`v`", "[N=3]"],
    );
    let zeros = vec![0.0; n];
    err_names(
        fwd(
            &k,
            &args.clone().init_state(&zeros).init_state(&zeros),
            tn,
            tb,
            n,
        ),
        &["initial states"],
    );
    err_names(
        fwd(
            &k,
            &KernelArgs {
                params: vec![],
                ..args.clone()
            },
            tn,
            tb,
            n,
        ),
        &["`w`", "missing"],
    );
    err_names(fwd(&k, &args.clone().param("tau", &w), tn, tb, n), &["tau"]);
    err_names(
        fwd(
            &k,
            &KernelArgs::new(t, 0).input(&[]).param("w", &w),
            0,
            0,
            0,
        ),
        &["N = 0"],
    );
    // Inference.
    let mut yi = vec![0.0; tn];
    let mut fi = vec![0.0; n];
    err_names(
        k.infer_host(
            &args,
            &mut InferenceBuffers {
                outputs: vec![&mut yi[1..]],
                final_states: vec![&mut fi],
            },
        ),
        &["output buffer spike"],
    );
    err_names(
        k.infer_host(
            &args,
            &mut InferenceBuffers {
                outputs: vec![&mut yi],
                final_states: vec![],
            },
        ),
        &["final-state buffers"],
    );

    // Backward: nothing is compiled for a call with a bad shape.
    fwd(&k, &args, tn, tb, n).unwrap();
    let bufs = buf.clone();
    let gy = seq(tn, 1.0);
    let mut up = Upstream::none(k.graph());
    up.outputs[0] = Some(&gy);
    let cached = jit.cached_scans();
    let mut gx = vec![0.0; tn];
    let mut gs = vec![0.0; n];
    let mut bwd =
        |a: &KernelArgs<'_>, sb: &[&[f32]], up: &Upstream<'_, f32>, ngx: usize, ngs: usize| {
            k.backward_host(
                a,
                sb,
                up,
                &mut GradBuffers {
                    inputs: vec![&mut gx[..ngx]],
                    init_states: vec![&mut gs[..ngs]],
                },
            )
        };
    err_names(bwd(&args, &[&bufs[1..]], &up, tn, n), &["state buffer v"]);
    err_names(bwd(&args, &[], &up, tn, n), &["state buffers"]);
    err_names(
        bwd(&args, &[&bufs], &up, tn - 1, n),
        &["input-gradient buffer x"],
    );
    err_names(
        bwd(&args, &[&bufs], &up, tn, 1),
        &["initial-state-gradient buffer v"],
    );
    let mut bad_up = Upstream::none(k.graph());
    bad_up.outputs[0] = Some(&gy[1..]);
    err_names(bwd(&args, &[&bufs], &bad_up, tn, n), &["grad of spike"]);
    err_names(
        bwd(
            &KernelArgs {
                inputs: vec![&gy[2..]],
                ..args.clone()
            },
            &[&bufs],
            &up,
            tn,
            n,
        ),
        &["[T=4, N=3]"],
    );
    assert_eq!(
        jit.cached_scans(),
        cached,
        "a backward scan was compiled for a bad call"
    );
    let pg = bwd(&args, &[&bufs], &up, tn, n).unwrap();
    assert_eq!(pg.len(), 1);
    assert_eq!(pg[0].as_ref().map(Vec::len), Some(1));
    assert_eq!(jit.cached_scans(), cached + 1);
}
