use std::sync::Arc;
use std::time::Instant;

use candle_core::{DType, Device, Tensor, Var};
use candle_nn::{Module, VarBuilder, VarMap};
use flexsn_candle::{ScanLayer, default_jit, nodes};
use flexsn_neurons::Builtin;
use flexsn_neurons::psn::SlidingPSNConfig;

#[test]
fn timing() {
    let k: usize = std::env::var("K").unwrap().parse().unwrap();
    let (t, n) = (16, 4096);
    let x = Var::from_tensor(&Tensor::full(0.7f32, (t, n), &Device::Cpu).unwrap()).unwrap();
    let start = Instant::now();
    let s = if std::env::var("WHICH").unwrap() == "full" {
        let c = SlidingPSNConfig::new(k);
        let kernel = Arc::new(default_jit().unwrap().compile(&c.step_graph().unwrap()).unwrap());
        let init = Builtin::SlidingPsn(c).initial_params();
        let params = kernel.graph().params().iter().map(|d| {
            let v = &init.iter().find(|(name, _)| *name == d.name).unwrap().1;
            Var::new(v.as_slice(), &Device::Cpu).unwrap().as_tensor().clone()
        }).collect();
        ScanLayer::from_kernel(kernel, params).unwrap().forward(x.as_tensor()).unwrap()
    } else {
        let varmap = VarMap::new();
        let vb = VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu);
        let m = nodes::SlidingPSN::new(SlidingPSNConfig::new(k), vb).unwrap();
        m.forward(x.as_tensor()).unwrap()
    };
    s.sum_all().unwrap().backward().unwrap();
    eprintln!("k={k} T={t} N={n} build+forward+backward {:.3} s", start.elapsed().as_secs_f64());
}
