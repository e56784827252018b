//! Criterion benchmarks of the CPU backend: forward inference and forward + backward of the
//! benchmark neurons (`flexsn::bench`), and JIT compile time. Throughput is reported in bytes
//! moved, counted as `flexsn bench` counts them.
//!
//! `cargo bench --bench cpu_scan` (set `FLEXSN_BENCH_FULL=1` for N = 1048576 as well).

use std::hint::black_box;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use flexsn::bench::{Phase, bytes_moved, neuron_graph};
use flexsn::runtime::cpu::CpuOptions;
use flexsn::runtime::{Forward, Gradients, Inference, Jit, Upstream};

fn sizes() -> Vec<(usize, usize)> {
    let mut v = vec![(16, 4096), (64, 65536)];
    if std::env::var_os("FLEXSN_BENCH_FULL").is_some() {
        v.push((64, 1_048_576));
    }
    v
}

fn scans(c: &mut Criterion) {
    let jit = Jit::cpu(CpuOptions::default()).expect("CPU backend");
    for name in ["if", "lif", "plif", "alif"] {
        let g = neuron_graph(name).expect("benchmark neuron");
        let k = jit.compile(&g).expect("compile");
        let mut group = c.benchmark_group(format!("cpu_scan/{name}"));
        group.sample_size(10);
        for (t, n) in sizes() {
            let x: Vec<f32> = (0..t * n).map(|i| (i % 97) as f32 / 40.0).collect();
            let params: Vec<(String, Vec<f32>)> = g
                .params()
                .iter()
                .map(|d| {
                    let len = flexsn::compiler::scan::param_len(d.kind, t, n);
                    (d.name.clone(), vec![0.0; len])
                })
                .collect();
            let ps: Vec<(&str, &[f32])> = params
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_slice()))
                .collect();
            let id = format!("T{t}_N{n}");
            group.throughput(Throughput::Bytes(bytes_moved(&g, Phase::Forward, t, n)));
            let mut inf = Inference::default();
            group.bench_function(BenchmarkId::new("forward", &id), |b| {
                b.iter(|| {
                    k.infer_into(t, n, &[&x], None, &ps, &mut inf).unwrap();
                    black_box(&inf);
                })
            });
            group.throughput(Throughput::Bytes(bytes_moved(
                &g,
                Phase::ForwardBackward,
                t,
                n,
            )));
            let gy = vec![1.0f32; t * n];
            let up = Upstream {
                outputs: vec![Some(gy.as_slice())],
                ..Upstream::none(k.graph())
            };
            let mut f = Forward::default();
            let mut gr = Gradients {
                inputs: vec![],
                init_states: vec![],
                params: vec![],
            };
            group.bench_function(BenchmarkId::new("forward_backward", &id), |b| {
                b.iter(|| {
                    k.forward_into(t, n, &[&x], None, &ps, &mut f).unwrap();
                    k.backward_into(&f, &up, &mut gr).unwrap();
                    black_box(&gr);
                })
            });
        }
        group.finish();
    }
}

fn compile(c: &mut Criterion) {
    let g = neuron_graph("lif").expect("lif");
    c.bench_function("cpu_compile/lif_forward_backward", |b| {
        b.iter(|| {
            // A fresh JIT each time: no cache hits.
            let jit = Jit::cpu(CpuOptions::default()).unwrap();
            let k = jit.compile(&g).unwrap();
            let spec = flexsn::runtime::GradSpec::outputs_only(k.graph());
            black_box(k.prepare_backward(&spec).unwrap());
        })
    });
}

criterion_group!(benches, scans, compile);
criterion_main!(benches);
