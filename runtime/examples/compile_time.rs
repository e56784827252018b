//! Where the JIT compile time of a LIF neuron goes (forward inference + training, backward):
//! minimum and median milliseconds per stage over many repetitions after warm-up, then Cranelift's own pass
//! timings, then the whole `Jit::compile` + `prepare_backward` path.
//!
//! `cargo run --release -p flexsn-runtime --example compile_time [REPS]`

use std::time::Instant;

use cranelift_codegen::settings::{self, Configurable};
use cranelift_jit::{JITBuilder, JITModule};
use cranelift_module::{Linkage, Module, default_libcall_names};
use flexsn_compiler::autodiff::{self, GradSpec};
use flexsn_compiler::codegen::clif::{self, ClifOptions};
use flexsn_compiler::codegen::cuda::samples;
use flexsn_compiler::passes;
use flexsn_compiler::scan::ScanKernel;
use flexsn_runtime::cpu::{CpuOptions, CpuScan};
use flexsn_runtime::{Backend, Jit};

/// `(minimum, median)` in milliseconds. On a loaded machine the median includes waits for a
/// core; the minimum is the time of an uncontended run.
fn min_median_ms(mut v: Vec<f64>) -> (f64, f64) {
    v.sort_by(f64::total_cmp);
    (v[0] * 1e3, v[v.len() / 2] * 1e3)
}

fn main() {
    let reps: usize = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(200);
    let g = samples::lif(2.0, 1.0, 0.0).expect("lif");
    // The CPU backend's flags in a release build (no verifier).
    let mut flags = settings::builder();
    for (k, v) in [
        ("opt_level", "none"),
        ("enable_verifier", "false"),
        ("is_pic", "false"),
        ("use_colocated_libcalls", "false"),
        ("enable_probestack", "true"),
        ("probestack_strategy", "inline"),
    ] {
        flags.set(k, v).expect("flag");
    }
    let isa = cranelift_native::builder()
        .expect("host")
        .finish(settings::Flags::new(flags))
        .expect("isa");
    let stages = [
        "optimize forward graph",
        "autodiff (+ optimize)",
        "emit CLIF (3 scans)",
        "Cranelift codegen (3 scans)",
        "module + finalize (3 scans)",
        "CpuScan::compile (3 scans)",
        "Jit::compile (forward)",
        "Kernel::prepare_backward",
        "dropping 3 CpuScans",
    ];
    let mut t = vec![vec![]; stages.len()];
    for r in 0..reps + 10 {
        let mut d = [0.0f64; 9];
        let s = Instant::now();
        let opt = passes::optimize(&g);
        d[0] = s.elapsed().as_secs_f64();
        let s = Instant::now();
        let b = autodiff::backward(&opt, &GradSpec::outputs_only(&opt)).expect("autodiff");
        d[1] = s.elapsed().as_secs_f64();
        let kernels = [
            ScanKernel::forward(opt.clone(), false),
            ScanKernel::forward(opt.clone(), true),
            b.kernel,
        ];
        let kernels = kernels;
        for k in &kernels {
            let s = Instant::now();
            let scan =
                clif::codegen_scan(k, &ClifOptions::new(isa.frontend_config())).expect("emit");
            d[2] += s.elapsed().as_secs_f64();
            let s = Instant::now();
            let mut module =
                JITModule::new(JITBuilder::with_isa(isa.clone(), default_libcall_names()));
            let mut ctx = module.make_context();
            ctx.func = scan.func;
            let id = module
                .declare_function("scan", Linkage::Export, &ctx.func.signature)
                .expect("declare");
            d[4] += s.elapsed().as_secs_f64();
            let s = Instant::now();
            module.define_function(id, &mut ctx).expect("define");
            d[3] += s.elapsed().as_secs_f64();
            let s = Instant::now();
            module.clear_context(&mut ctx);
            module.finalize_definitions().expect("finalize");
            d[4] += s.elapsed().as_secs_f64();
            // SAFETY: nothing from this module is called or kept.
            unsafe { module.free_memory() };
        }
        for k in &kernels {
            let s = Instant::now();
            let c = CpuScan::compile(k, &CpuOptions::default()).expect("compile");
            d[5] += s.elapsed().as_secs_f64();
            let s = Instant::now();
            drop(c);
            d[8] += s.elapsed().as_secs_f64();
        }
        let jit = Jit::new(Backend::Cpu).expect("cpu backend");
        let s = Instant::now();
        let k = jit.compile(&g).expect("compile");
        d[6] = s.elapsed().as_secs_f64();
        let s = Instant::now();
        k.prepare_backward(&GradSpec::outputs_only(k.graph()))
            .expect("backward");
        d[7] = s.elapsed().as_secs_f64();
        if r >= 10 {
            for (v, x) in t.iter_mut().zip(d) {
                v.push(x);
            }
        }
        if r == 9 {
            let _ = cranelift_codegen::timing::take_current();
        }
    }
    println!("{:<34} {:>9} {:>9}", "stage", "min_ms", "median_ms");
    for (name, v) in stages.iter().zip(t) {
        let (min, med) = min_median_ms(v);
        println!("{name:<34} {min:>9.3} {med:>9.3}");
    }
    println!("\nCranelift passes on this thread, all {reps} repetitions:");
    println!("{}", cranelift_codegen::timing::take_current());
}
