//! MaskedPSN's single steps on the CUDA kernels (emulated: the generated source as host C++):
//! every step's window runs on the one module of the whole `T × T` mixing, with the CPU path's
//! results. Its own test binary, so the count of compiled modules is this test's alone.

use flexsn_compiler::ir::Surrogate;
use flexsn_neurons::node::StepMode;
use flexsn_neurons::psn::MaskedPSNConfig;
use flexsn_neurons::psn::rng::SplitMix64;
use flexsn_runtime::Backend;
use flexsn_runtime::cuda::emulated::find_cxx;
use flexsn_runtime::cuda::emulated_mixing_count;
use flexsn_runtime::cuda::probe::{Tool, present_or_skip};

fn random(seed: u64, len: usize, scale: f32) -> Vec<f32> {
    let mut r = SplitMix64::new(seed);
    (0..len).map(|_| r.uniform_symmetric(scale)).collect()
}

#[test]
fn single_steps_compile_one_module_and_match_the_cpu() {
    if present_or_skip(Tool::Cxx, find_cxx()).is_none() {
        return;
    }
    let (k, t, n) = (3, 7, 45);
    let x = random(1, t * n, 3.0);
    let gs = random(2, t * n, 1.0);
    let run = |backend| {
        let mut m = MaskedPSNConfig::new(k, t)
            .lambda_init(1.0)
            .surrogate(Surrogate::Sigmoid { alpha: 4.0 })
            .step_mode(StepMode::Single)
            .seed(5)
            .build(backend)
            .unwrap();
        let mut s = vec![];
        for step in 0..t {
            s.extend(m.forward(&x[step * n..(step + 1) * n], n).unwrap());
            if step == 3 {
                // Backward mid-sequence: the windows of steps 0..=3, then of 4..7.
                m.backward(&gs[..4 * n]).unwrap();
            }
        }
        let gx = m.backward(&gs[4 * n..]).unwrap();
        (s, gx, m.weight_grad().to_vec(), m.bias_grad().to_vec())
    };
    let cpu = run(Backend::Cpu);
    let emu = run(Backend::CudaEmulated);
    assert_eq!(emu.0, cpu.0, "spikes");
    for (what, a, b) in [
        ("gx", &emu.1, &cpu.1),
        ("gW", &emu.2, &cpu.2),
        ("gb", &emu.3, &cpu.3),
    ] {
        for (i, (x, y)) in a.iter().zip(b.iter()).enumerate() {
            assert!(
                (x - y).abs() <= 1e-5 * (1.0 + y.abs()),
                "{what}[{i}]: {x} vs {y}"
            );
        }
    }
    // Windows of 1..=3 inputs, 1 and 4 and 3 rows: all on the T x T module.
    assert_eq!(emulated_mixing_count(), 1);
}
