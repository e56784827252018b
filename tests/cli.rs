//! The `flexsn` binary, run as a user runs it.

use std::path::PathBuf;
use std::process::{Command, Output};

fn flexsn(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_flexsn"))
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("the flexsn binary runs")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn golden(file: &str) -> String {
    format!("tests/golden/{file}")
}

/// A scratch directory for this test binary.
fn scratch(name: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("cli-tests");
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(name)
}

#[test]
fn conformance_on_the_builtin_golden_files_passes() {
    let files = [
        golden("ifnode.json"),
        golden("lifnode.json"),
        golden("plif.json"),
        golden("nonspiking.json"),
    ];
    let mut args = vec!["conformance"];
    args.extend(files.iter().map(String::as_str));
    args.extend(["--backend", "interp"]);
    let o = flexsn(&args);
    let out = stdout(&o);
    assert_eq!(o.status.code(), Some(0), "{out}\n{}", stderr(&o));
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 21 + 33 + 16 + 15 + 1, "{out}");
    assert!(
        lines[..lines.len() - 1]
            .iter()
            .all(|l| l.starts_with("PASS "))
    );
    assert_eq!(*lines.last().unwrap(), "85 passed, 0 failed");
    // A line names the case and its worst errors and where they are.
    let l = lines
        .iter()
        .find(|l| l.contains("LIFNode_001_ATan"))
        .unwrap();
    assert!(
        l.contains("max abs") && l.contains(" at grads.x_seq["),
        "{l}"
    );
}

/// The zoo's 60 cases pass through the CLI on the interpreter and the CPU backend (the
/// emulated CUDA backend runs them in `golden_interp.rs`).
#[test]
fn conformance_on_the_zoo_passes_on_interp_and_cpu() {
    for backend in ["interp", "cpu"] {
        let o = flexsn(&["conformance", &golden("zoo.json"), "--backend", backend]);
        let out = stdout(&o);
        assert_eq!(o.status.code(), Some(0), "{backend}: {out}\n{}", stderr(&o));
        assert_eq!(
            out.lines().last(),
            Some("60 passed, 0 failed"),
            "{backend}: {out}"
        );
    }
}

/// Every zoo neuron runs forward and backward from the CLI, by either name, with settings.
#[test]
fn run_drives_the_zoo_neurons() {
    for (name, set) in [
        ("qif", "a0=0.5"),
        ("EIFNode", "delta_T=0.5"),
        ("izhikevich", "b=0.2"),
        ("klif", "scale_reset=true"),
        ("cuba-lif", "c_decay=0.3"),
        ("clif", "tau=3.0"),
        ("ILIFNode", "surrogate.max_spike_count=2"),
        ("half-threshold-if", "v_threshold=0.5"),
        ("ternary-if", "v_reset=none"),
        ("ternary-lif", "decay_input=false"),
    ] {
        let o = flexsn(&[
            "run",
            name,
            "--t",
            "4",
            "--n",
            "16",
            "--backward",
            "--set",
            set,
        ]);
        let out = stdout(&o);
        assert_eq!(o.status.code(), Some(0), "{name}: {}", stderr(&o));
        assert!(
            out.lines().any(|l| l.starts_with("backward")),
            "{name}: {out}"
        );
    }
    let o = flexsn(&["run", "ilif", "--t", "4", "--n", "16"]);
    assert!(stdout(&o).contains("mean spike count"), "{}", stdout(&o));
    let o = flexsn(&["run", "ilif", "--set", "surrogate=ATan"]);
    assert_eq!(o.status.code(), Some(2), "{}", stdout(&o));
    assert!(
        stderr(&o).contains("MultiLevelSpikeCount"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn a_corrupted_case_fails_with_exit_status_1() {
    let text = std::fs::read_to_string(golden("ifnode.json")).unwrap();
    let mut cases: serde_json::Value = serde_json::from_str(&text).unwrap();
    // Flip one spike of the second case's expected output.
    let spikes = cases[1]["outputs"]["spike_seq"].as_array_mut().unwrap();
    let i = spikes.iter().position(|s| s.as_f64() == Some(1.0)).unwrap();
    spikes[i] = serde_json::json!(0.0);
    let path = scratch("corrupted_ifnode.json");
    std::fs::write(&path, serde_json::to_string(&cases).unwrap()).unwrap();
    let o = flexsn(&["conformance", path.to_str().unwrap()]);
    let out = stdout(&o);
    assert_eq!(o.status.code(), Some(1), "{out}");
    let failed: Vec<&str> = out.lines().filter(|l| l.starts_with("FAIL ")).collect();
    assert_eq!(failed.len(), 1, "{out}");
    assert!(
        failed[0].contains("IFNode_001") && failed[0].contains("outputs.spike_seq"),
        "{}",
        failed[0]
    );
    assert!(out.trim_end().ends_with("20 passed, 1 failed"), "{out}");
}

#[test]
fn unknown_kinds_and_unbound_cores_fail_with_reasons() {
    let cases = serde_json::json!([
        {"name": "odd", "neuron": "DSRIFNode", "shape": [1, 1]},
        {"name": "flex", "neuron": "FlexSN:mycore", "shape": [1, 1]}
    ]);
    let path = scratch("odd_kinds.json");
    std::fs::write(&path, cases.to_string()).unwrap();
    let o = flexsn(&["conformance", path.to_str().unwrap()]);
    let out = stdout(&o);
    assert_eq!(o.status.code(), Some(1), "{out}");
    assert!(
        out.contains("FAIL odd  unknown neuron kind `DSRIFNode`"),
        "{out}"
    );
    assert!(
        out.contains("FAIL flex  no core bound for FlexSN core `mycore`"),
        "{out}"
    );
    assert!(out.trim_end().ends_with("0 passed, 2 failed"), "{out}");
}

#[test]
fn flexsn_cases_run_with_cores_from_files() {
    // The FlexSN golden cores as Rust-syntax files (tests/cores), bound with --core.
    let names = [
        "lif_soft",
        "complicated_lif_core",
        "alif",
        "exotic_exp_tanh_min_max_clamp_where",
        "lif_static_inv_tau",
    ];
    let core_args = |names: &[&str]| -> Vec<String> {
        let mut args: Vec<String> = vec!["conformance".into(), golden("flexsn.json")];
        for n in names {
            args.push("--core".into());
            args.push(format!("{n}=tests/cores/{n}.rs"));
        }
        args
    };
    let args = core_args(&names);
    let o = flexsn(&args.iter().map(String::as_str).collect::<Vec<_>>());
    let out = stdout(&o);
    assert_eq!(o.status.code(), Some(0), "{out}\n{}", stderr(&o));
    assert!(out.trim_end().ends_with("10 passed, 0 failed"), "{out}");
    // Without the exotic core, its two cases fail naming it.
    let without: Vec<&str> = names
        .iter()
        .copied()
        .filter(|n| !n.starts_with("exotic"))
        .collect();
    let args = core_args(&without);
    let o = flexsn(&args.iter().map(String::as_str).collect::<Vec<_>>());
    let out = stdout(&o);
    assert_eq!(o.status.code(), Some(1));
    assert!(out.contains("no core bound for FlexSN core `exotic_exp_tanh_min_max_clamp_where`"));
    assert!(out.trim_end().ends_with("8 passed, 2 failed"), "{out}");
}

#[test]
fn the_manifest_is_skipped_with_a_note() {
    let o = flexsn(&[
        "conformance",
        &golden("manifest.json"),
        &golden("nonspiking.json"),
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(stderr(&o).contains("skipping"), "{}", stderr(&o));
    assert!(stdout(&o).trim_end().ends_with("15 passed, 0 failed"));
}

#[test]
fn bad_core_binding_and_missing_file_are_clear_errors() {
    let o = flexsn(&["conformance", &golden("flexsn.json"), "--core", "lif_soft"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("expected NAME=PATH"), "{}", stderr(&o));
    let o = flexsn(&[
        "conformance",
        &golden("flexsn.json"),
        "--core",
        "lif_soft=no/such/file.rs",
    ]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("no/such/file.rs"), "{}", stderr(&o));
    let o = flexsn(&["conformance", "no/such/golden.json"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("no/such/golden.json"), "{}", stderr(&o));
    // The cause is printed once, not again after the message that already holds it.
    assert_eq!(
        stderr(&o).matches("os error 2").count(),
        1,
        "{}",
        stderr(&o)
    );
    let o = flexsn(&["conformance", &golden("ifnode.json"), "--backend", "gpu9"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("interp"), "{}", stderr(&o));
}

#[test]
fn unknown_neuron_is_a_clear_error() {
    let o = flexsn(&["inspect", "lifx"]);
    assert_eq!(o.status.code(), Some(2));
    let err = stderr(&o);
    assert!(
        err.contains("unknown neuron `lifx` (did you mean `lif`?)"),
        "{err}"
    );
    assert!(err.contains("lif (LIFNode)"), "{err}");
    assert!(stdout(&o).is_empty());
    let o = flexsn(&["run", "nope", "--t", "2", "--n", "2"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("unknown neuron `nope`"));
}

#[test]
fn bad_settings_are_clear_errors() {
    let o = flexsn(&["inspect", "lif", "--set", "taux=3"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("no parameter `taux` (did you mean `tau`?)"),
        "{}",
        stderr(&o)
    );
    let o = flexsn(&["inspect", "lif", "--set", "surrogate=Nope"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("unknown surrogate"), "{}", stderr(&o));
    let o = flexsn(&["inspect", "lif", "--set", "surrogate=ATann"]);
    assert!(
        stderr(&o).contains("unknown surrogate (did you mean `ATan`?)"),
        "{}",
        stderr(&o)
    );
    let o = flexsn(&["inspect", "lif", "--set", "tau"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("key=value"), "{}", stderr(&o));
}

#[test]
fn inspect_prints_ir_grad_ir_and_dot() {
    let o = flexsn(&[
        "inspect",
        "LIFNode",
        "--set",
        "tau=3.5",
        "--set",
        "v_reset=none",
        "--set",
        "surrogate=ATan",
        "--set",
        "surrogate.alpha=3",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let ir = stdout(&o);
    assert!(ir.starts_with("core LIFNode"), "{ir}");
    assert!(ir.contains("spike[ATan { alpha: 3.0 }]"), "{ir}");
    assert!(
        ir.contains("const 3.5") && ir.contains("output spike"),
        "{ir}"
    );
    // The text form parses back.
    flexsn::compiler::text::parse(&ir).expect("inspect output parses");

    let o = flexsn(&["inspect", "plif", "--emit", "grad-ir"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let g = stdout(&o);
    assert!(
        g.contains("_grad") && g.contains("output grad_x") && g.contains("output grad_w"),
        "{g}"
    );
    // The backward as compiled: of the optimised step graph, where the reset to 0 no longer
    // multiplies the spike by 0, so no gradient is multiplied by 0 either; `--no-opt` shows it.
    let mul_by_zero = |g: &str| {
        let zero = g
            .lines()
            .find_map(|l| l.trim().strip_suffix(" = const 0.0"))
            .map(str::to_string);
        zero.is_some_and(|z| g.lines().any(|l| l.contains("mul") && l.contains(&z)))
    };
    assert!(!mul_by_zero(&g), "{g}");
    let o = flexsn(&["inspect", "plif", "--emit", "grad-ir", "--no-opt"]);
    assert!(mul_by_zero(&stdout(&o)), "{}", stdout(&o));

    let o = flexsn(&["inspect", "if", "--emit", "dot"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(
        stdout(&o).trim_start().starts_with("digraph"),
        "{}",
        stdout(&o)
    );
}

#[test]
fn inspect_reads_core_files() {
    let o = flexsn(&[
        "inspect",
        "tests/cores/alif.rs",
        "--set",
        "tau=2",
        "--set",
        "tau_a=5",
        "--set",
        "b0=1",
        "--set",
        "beta=0.3",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(stdout(&o).contains("output s"), "{}", stdout(&o));
}

#[test]
fn list_shows_every_builtin_with_defaults() {
    let o = flexsn(&["list"]);
    assert_eq!(o.status.code(), Some(0));
    let out = stdout(&o);
    for name in [
        "if (IFNode)",
        "lif (LIFNode)",
        "plif (ParametricLIFNode)",
        "nonspiking-if (NonSpikingIFNode)",
        "nonspiking-lif (NonSpikingLIFNode)",
        "qif (QIFNode)",
        "eif (EIFNode)",
        "izhikevich (IzhikevichNode)",
        "klif (KLIFNode)",
        "cuba-lif (CUBALIFNode)",
        "clif (ComplementaryLIFNode)",
        "ilif (ILIFNode)",
        "half-threshold-if (HalfThresholdIFNode)",
        "ternary-if (TernaryIFNode)",
        "ternary-lif (TernaryLIFNode)",
    ] {
        assert!(out.contains(name), "{name}\n{out}");
    }
    let lif = out.split("lif (LIFNode)").nth(1).unwrap();
    let lif = lif.split("\n\n").next().unwrap();
    for (key, default) in [
        ("tau", "2.0"),
        ("decay_input", "true"),
        ("v_threshold", "1.0"),
        ("v_reset", "0.0"),
        ("detach_reset", "false"),
        ("surrogate", "Sigmoid"),
        ("surrogate.alpha", "4.0"),
    ] {
        assert!(
            lif.lines().any(|l| {
                let mut w = l.split_whitespace();
                w.next() == Some(key) && w.next() == Some(default)
            }),
            "{key} = {default}\n{lif}"
        );
    }
}

#[test]
fn run_with_a_save_policy_reports_the_bytes_kept_and_the_same_gradients() {
    let run = |policy: &str| {
        let o = flexsn(&[
            "run",
            "lif",
            "--t",
            "10",
            "--n",
            "64",
            "--backward",
            "--backend",
            "cpu",
            "--save-policy",
            policy,
        ]);
        assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
        stdout(&o)
    };
    let (states, ck) = (run("states"), run("checkpoint:4"));
    // One state: (T + 1) rows of N floats, or ⌈10/4⌉ = 3 rows.
    assert!(
        states.contains("kept for backward: 2816 bytes (states)"),
        "{states}"
    );
    assert!(
        ck.contains("kept for backward: 768 bytes (checkpoint:4)"),
        "{ck}"
    );
    let grads = |s: &str| -> Vec<String> {
        s.lines()
            .filter(|l| l.trim_start().starts_with("grad") || l.contains("firing rate"))
            .map(String::from)
            .collect()
    };
    assert!(!grads(&states).is_empty());
    assert_eq!(grads(&states), grads(&ck));
    let o = flexsn(&["run", "lif", "--save-policy", "checkpoint:0"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("with K >= 1"), "{}", stderr(&o));
}

#[test]
fn run_summarises_forward_and_backward() {
    let o = flexsn(&[
        "run",
        "lif",
        "--t",
        "8",
        "--n",
        "64",
        "--backward",
        "--set",
        "tau=3.5",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let out = stdout(&o);
    assert!(out.contains("LIFNode  T=8 N=64  backend interp"), "{out}");
    assert!(out.contains("firing rate"), "{out}");
    assert!(out.lines().any(|l| l.starts_with("forward")), "{out}");
    assert!(out.lines().any(|l| l.starts_with("backward")), "{out}");
    let rate: f64 = out
        .lines()
        .find(|l| l.contains("firing rate"))
        .and_then(|l| l.split_whitespace().last())
        .unwrap()
        .parse()
        .unwrap();
    assert!(rate > 0.0 && rate < 1.0, "{rate}");
    let o = flexsn(&["run", "lif", "--t", "0", "--n", "4"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("at least 1"), "{}", stderr(&o));
}

/// Asserts exit status 2 and that the message mentions `what`.
fn rejected(o: &Output, what: &str) {
    let err = stderr(o);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(err.contains(what), "expected `{what}` in:\n{err}");
}

#[test]
fn deeply_nested_cores_are_errors_not_stack_overflows() {
    let n = 50_000;
    let bodies = [
        ("parens", format!("{}x{}", "(".repeat(n), ")".repeat(n))),
        ("sum", format!("x{}", " + x".repeat(n))),
        ("minus", format!("{}x", "-".repeat(n))),
        ("methods", format!("x{}", ".tanh()".repeat(n))),
    ];
    for (name, body) in bodies {
        let path = scratch(&format!("deep_{name}.rs"));
        std::fs::write(
            &path,
            format!("fn deep(x: Input) -> Output {{\n    {body}\n}}\n"),
        )
        .unwrap();
        let o = flexsn(&["inspect", path.to_str().unwrap()]);
        rejected(&o, "nests too deeply");
        assert!(stderr(&o).contains(":2:"), "{name}: {}", stderr(&o));
    }
}

#[test]
fn huge_sizes_are_refused_before_allocating() {
    let cases: [(&[&str], &str); 4] = [
        (
            &["run", "lif", "--t", "1", "--n", "4611686018427387904"],
            "memory",
        ),
        (
            &["run", "lif", "--t", "100000", "--n", "100000000"],
            "--max-memory",
        ),
        (&["run", "psn", "--t", "100000", "--n", "4"], "--max-memory"),
        (
            &[
                "run",
                "lif",
                "--t",
                "4",
                "--n",
                "1000",
                "--max-memory",
                "1K",
            ],
            "1.0 KiB",
        ),
    ];
    for (args, what) in cases {
        rejected(&flexsn(args), what);
    }
    // `flexsn bench` rows (their tensors and copy baseline): neuron, T, N, what the error says.
    for (neuron, t, n, what) in [
        ("lif", "64", "100000000000", "--max-memory"),
        ("if", "1000000000000", "100000000000", "overflow"),
        ("psn", "64", "100000000000", "--max-memory"),
    ] {
        rejected(
            &flexsn(&["bench", "--neuron", neuron, "--t", t, "--n", n]),
            what,
        );
    }
    let args = "bench --neuron sliding-psn --t 4 --n 4096 --max-memory 1K";
    rejected(&flexsn(&args.split(' ').collect::<Vec<_>>()), "1.0 KiB");
    // Raising the limit lets the same run through.
    let o = flexsn(&[
        "run",
        "lif",
        "--t",
        "4",
        "--n",
        "1000",
        "--max-memory",
        "1G",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
}

#[test]
fn tolerances_must_be_finite_and_not_negative() {
    for bad in ["nan", "-1e-5", "inf"] {
        for flag in ["--rtol", "--atol"] {
            let o = flexsn(&["conformance", "tests/golden/lifnode.json", flag, bad]);
            rejected(&o, "tolerance");
        }
    }
}

#[test]
fn negative_values_and_many_sliding_weights_run() {
    let o = flexsn(&["run", "lif", "--t", "4", "--n", "32", "--std", "-1"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    // More than 64 SlidingPSN weights (no fixed cap).
    let o = flexsn(&[
        "run",
        "sliding-psn",
        "--set",
        "k=100",
        "--t",
        "4",
        "--n",
        "32",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
}

/// `run sliding-psn` with a window far longer than the run: only the last `T` weights can
/// reach an output, so it runs in the time of `k = T` and agrees with the interpreter's `k = T`
/// run (exp-init: the newest weights are the same, `[..., 1/4, 1/2, 1]`).
#[test]
fn a_huge_sliding_window_runs_like_its_reachable_part() {
    let run = |k: &str, backend: &str| {
        let o = flexsn(&[
            "run",
            "sliding-psn",
            "--set",
            k,
            "--t",
            "6",
            "--n",
            "64",
            "--backward",
            "--json",
            "--backend",
            backend,
        ]);
        assert_eq!(o.status.code(), Some(0), "{k} {backend}: {}", stderr(&o));
        serde_json::from_str::<serde_json::Value>(&stdout(&o)).unwrap()
    };
    let small = run("k=6", "interp");
    for backend in ["interp", "cpu"] {
        let big = run("k=100000", backend);
        assert_eq!(big["outputs"], small["outputs"], "{backend}");
        let grads = |r: &serde_json::Value| r["grads"].as_array().unwrap().clone();
        let (gb, gs) = (grads(&big), grads(&small));
        // x, weight_99994..weight_99999 against x, weight_0..weight_5, then bias.
        assert_eq!(gb.len(), gs.len(), "{backend}");
        for (b, s) in gb.iter().zip(&gs) {
            let close = |a: &serde_json::Value, b: &serde_json::Value| {
                let (a, b) = (a.as_f64().unwrap(), b.as_f64().unwrap());
                (a - b).abs() <= 1e-6 * (1.0 + b.abs())
            };
            assert!(
                close(&b["mean_abs"], &s["mean_abs"]),
                "{backend}: {b} vs {s}"
            );
            let (hb, hs) = (b["head"].as_array().unwrap(), s["head"].as_array().unwrap());
            assert!(hb.iter().zip(hs).all(|(x, y)| close(x, y)), "{b} vs {s}");
        }
        assert_eq!(gb[1]["name"], "weight_99994");
        assert_eq!(big["unreached_params"], "weight_0..weight_99993");
        assert!(small["unreached_params"].is_null());
    }
}

#[test]
fn every_command_reads_backend_names_alike() {
    // `interp` and `interpreter` are one backend for run (and its numbers are the same).
    let run = |backend: &str| {
        let o = flexsn(&[
            "run",
            "lif",
            "--t",
            "4",
            "--n",
            "8",
            "--backward",
            "--backend",
            backend,
        ]);
        assert_eq!(o.status.code(), Some(0), "{backend}: {}", stderr(&o));
        stdout(&o)
            .lines()
            .filter(|l| l.contains("firing rate") || l.contains("grad"))
            .map(str::to_string)
            .collect::<Vec<_>>()
    };
    assert_eq!(run("interp"), run("interpreter"));
    // An unknown name is refused with the known ones.
    for cmd in [&["run", "lif"][..], &["bench"]] {
        let o = flexsn(&[cmd, &["--backend", "gpu"]].concat());
        assert_eq!(o.status.code(), Some(2), "{cmd:?}");
        let err = stderr(&o);
        assert!(
            err.contains("interpreter") && err.contains("cuda-emulated"),
            "{cmd:?}: {err}"
        );
    }
}

#[test]
fn simplified_if_and_lif_run_as_if_and_lif() {
    for (simple, full) in [("SimpleIFNode", "IFNode"), ("SimpleLIFNode", "LIFNode")] {
        let a = flexsn(&["inspect", simple, "--set", "v_threshold=0.5"]);
        let b = flexsn(&["inspect", full, "--set", "v_threshold=0.5"]);
        assert_eq!(a.status.code(), Some(0), "{}", stderr(&a));
        assert_eq!(stdout(&a), stdout(&b));
        // Their v starts at 0, not at v_reset: a v_reset that would differ is refused.
        let o = flexsn(&["inspect", simple, "--set", "v_reset=0.5"]);
        assert_eq!(o.status.code(), Some(2));
        assert!(stderr(&o).contains("starts at v = 0"), "{}", stderr(&o));
    }
}

#[test]
fn list_prints_json() {
    let o = flexsn(&["list", "--json"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    let lif = v
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["name"] == "lif")
        .unwrap();
    assert_eq!(lif["class"], "LIFNode");
    assert!(
        lif["params"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["key"] == "tau")
    );
}

#[test]
fn a_declared_nan_initial_state_is_refused_with_its_place() {
    let path = scratch("nan_state.rs");
    std::fs::write(
        &path,
        "fn f(x: Input, v: State<{ f32::NAN }>) -> (Output, State) {\n    let h = v + x;\n    (h, h)\n}\n",
    )
    .unwrap();
    let o = flexsn(&["run", path.to_str().unwrap(), "--t", "2", "--n", "4"]);
    rejected(&o, "NaN initial value");
    assert!(stderr(&o).contains(":1:"), "{}", stderr(&o));
}

#[test]
fn a_zero_step_case_over_ten_billion_neurons_fails_at_once() {
    let text = std::fs::read_to_string(golden("lifnode.json")).unwrap();
    let mut v: serde_json::Value = serde_json::from_str(&text).unwrap();
    let cases = v.as_array_mut().unwrap();
    cases.truncate(1);
    cases[0]["shape"] = serde_json::json!([0, 10_000_000_000u64]);
    let path = scratch("zero_steps.json");
    std::fs::write(&path, v.to_string()).unwrap();
    let start = std::time::Instant::now();
    let o = flexsn(&["conformance", path.to_str().unwrap()]);
    let out = stdout(&o) + &stderr(&o);
    assert!(out.contains("needs about 37.3 GiB"), "{out}");
    assert!(start.elapsed().as_secs() < 20);
    // The limit can be raised past it (and then the case's own data is checked).
    let o = flexsn(&["conformance", path.to_str().unwrap(), "--max-memory", "1T"]);
    assert!(!(stdout(&o) + &stderr(&o)).contains("needs about"));
}

#[test]
fn run_prints_json_with_the_text_figures() {
    let args = [
        "run",
        "plif",
        "--t",
        "8",
        "--n",
        "64",
        "--backward",
        "--seed",
        "3",
    ];
    let text = flexsn(&args);
    assert_eq!(text.status.code(), Some(0), "{}", stderr(&text));
    let o = flexsn(&[&args[..], &["--json"]].concat());
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(v["neuron"], "ParametricLIFNode");
    assert_eq!((v["t"].as_u64(), v["n"].as_u64()), (Some(8), Some(64)));
    assert_eq!(v["input"]["seed"], 3);
    assert!(v["forward"]["ms"].as_f64().unwrap() >= 0.0);
    assert!(v["backward"]["ms"].as_f64().unwrap() >= 0.0);
    assert!(v["saved_bytes"].is_null() && v["decoded"].is_null());
    // The same seed gives the same figures as the text output.
    let out = &v["outputs"][0];
    assert_eq!(out["stat"], "firing rate");
    let rate = format!("firing rate {:.4}", out["value"].as_f64().unwrap());
    assert!(
        stdout(&text).contains(&rate),
        "{rate} in\n{}",
        stdout(&text)
    );
    let grads = v["grads"].as_array().unwrap();
    let x = grads.iter().find(|g| g["name"] == "x").unwrap();
    assert_eq!(x["of"], "input");
    let mean_abs = format!("mean |g| {:.4e}", x["mean_abs"].as_f64().unwrap());
    assert!(stdout(&text).contains(&mean_abs), "{mean_abs}");
    let w = grads.iter().find(|g| g["name"] == "w").unwrap();
    assert_eq!(
        (w["of"].as_str(), w["head"].as_array().unwrap().len()),
        (Some("param"), 1)
    );
}

#[test]
fn run_of_a_psn_prints_json() {
    let o = flexsn(&[
        "run",
        "psn",
        "--t",
        "4",
        "--n",
        "16",
        "--backward",
        "--json",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(v["neuron"], "PSN");
    let names: Vec<&str> = v["grads"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| g["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["x_seq", "weight", "bias"]);
    assert_eq!(v["grads"][1]["head"].as_array().unwrap().len(), 4);
}

#[test]
fn conformance_prints_json() {
    let o = flexsn(&["conformance", &golden("ifnode.json"), "--json"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(v["backend"], "interpreter");
    assert_eq!(v["tolerance"]["rtol"], 1e-5);
    assert_eq!(
        (
            v["summary"]["passed"].as_u64(),
            v["summary"]["failed"].as_u64()
        ),
        (Some(21), Some(0))
    );
    let cases = v["cases"].as_array().unwrap();
    assert_eq!(cases.len(), 21);
    for c in cases {
        assert_eq!(
            (c["passed"].as_bool(), c["neuron"].as_str()),
            (Some(true), Some("IFNode"))
        );
        assert!(c["failure"].is_null());
        let tensors = c["tensors"].as_array().unwrap();
        assert!(
            tensors
                .iter()
                .any(|t| t["label"] == "outputs.spike_seq" && t["exact"] == true)
        );
        assert!(
            tensors
                .iter()
                .all(|t| t["mismatches"] == 0 && t["len"].as_u64() > Some(0))
        );
    }

    // A failed case carries its reason; the exit status is still 1.
    let cases = serde_json::json!([{"name": "odd", "neuron": "DSRIFNode", "shape": [1, 1]}]);
    let path = scratch("odd_kind_json.json");
    std::fs::write(&path, cases.to_string()).unwrap();
    let o = flexsn(&["conformance", path.to_str().unwrap(), "--json"]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    let failure = v["cases"][0]["failure"].as_str().unwrap();
    assert!(
        failure.starts_with("unknown neuron kind `DSRIFNode`"),
        "{failure}"
    );
    assert_eq!(v["summary"]["failed"], 1);
}
