//! Bad tensors are candle errors that say what is wrong, never panics.

use std::sync::Arc;

use candle_core::{DType, Device, Tensor, Var};
use candle_nn::{Module, VarBuilder, VarMap};
use flexsn_candle::nodes::{LIFNode, ParametricLIFNode};
use flexsn_candle::psn::PSN;
use flexsn_candle::{ParamDims, ScanLayer, default_jit, scan};
use flexsn_compiler::dsl::CoreBuilder;
use flexsn_compiler::ir::{ParamKind, StateInit};

fn vb(varmap: &VarMap) -> VarBuilder<'static> {
    VarBuilder::from_varmap(varmap, DType::F32, &Device::Cpu)
}

fn err_text<T: std::fmt::Debug>(r: candle_core::Result<T>) -> String {
    r.expect_err("an error").to_string()
}

#[test]
fn wrong_dtype_is_an_error() {
    let lif = LIFNode::new(Default::default(), vb(&VarMap::new())).unwrap();
    for dt in [DType::F64, DType::F16, DType::U32] {
        let x = Tensor::zeros((4, 3), dt, &Device::Cpu).unwrap();
        let e = err_text(lif.forward(&x));
        assert!(e.contains("float32"), "{dt:?}: {e}");
    }
}

#[test]
fn bad_shapes_are_errors() {
    let lif = LIFNode::new(Default::default(), vb(&VarMap::new())).unwrap();
    let dev = Device::Cpu;
    // A scalar has no time dimension; T = 0 and N = 0 have nothing to run.
    let e = err_text(lif.forward(&Tensor::new(1f32, &dev).unwrap()));
    assert!(e.contains("T >= 1"), "{e}");
    let e = err_text(lif.forward(&Tensor::zeros((0, 3), DType::F32, &dev).unwrap()));
    assert!(e.contains("T >= 1"), "{e}");
    let e = err_text(lif.forward(&Tensor::zeros((4, 0), DType::F32, &dev).unwrap()));
    assert!(e.contains("at least one neuron"), "{e}");
    // A wrong initial state.
    let x = Tensor::zeros((4, 3), DType::F32, &dev).unwrap();
    let v0 = Tensor::zeros(5, DType::F32, &dev).unwrap();
    let e = err_text(lif.layer().forward_all(&[&x], Some(&[&v0])));
    assert!(e.contains("initial v"), "{e}");
    let e = err_text(lif.layer().forward_all(&[&x, &x], None));
    assert!(e.contains("inputs: expected 1, got 2"), "{e}");
    // PSN is built for T = 4.
    let psn = PSN::new(flexsn_neurons::psn::PSNConfig::new(4), vb(&VarMap::new())).unwrap();
    let e = err_text(psn.forward(&Tensor::zeros((5, 3), DType::F32, &dev).unwrap()));
    assert!(e.contains("T = 4"), "{e}");
}

#[test]
fn non_contiguous_inputs_are_made_contiguous() {
    let lif = LIFNode::new(Default::default(), vb(&VarMap::new())).unwrap();
    let dev = Device::Cpu;
    let x = Tensor::arange(0f32, 12.0, &dev)
        .unwrap()
        .affine(0.2, 0.0)
        .unwrap()
        .reshape((3, 4))
        .unwrap();
    let xt = x.t().unwrap(); // [4, 3], not contiguous
    assert!(!xt.is_contiguous());
    let a = lif.forward(&xt).unwrap();
    let b = lif.forward(&xt.contiguous().unwrap()).unwrap();
    assert_eq!(
        a.flatten_all().unwrap().to_vec1::<f32>().unwrap(),
        b.flatten_all().unwrap().to_vec1::<f32>().unwrap()
    );
}

#[test]
fn params_are_checked() {
    let b = CoreBuilder::new("p");
    let x = b.input("x");
    let v = b.state("v", StateInit::Const(0.0));
    let k = b.param("k", ParamKind::PerNeuron, true);
    let c = b.param("c", ParamKind::Shared, false);
    b.output("y", v + x * k + c);
    b.set_state("v", v * 0.5 + x);
    let g = b.build().unwrap();
    let jit = default_jit().unwrap();
    let dev = Device::Cpu;
    let varmap = VarMap::new();
    let c0 = ("c", candle_nn::Init::Const(0.0));
    let k0 = ("k", candle_nn::Init::Const(1.0));
    // Missing and unknown initial values; a per-neuron param without N.
    let e = err_text(ScanLayer::new(
        &jit,
        &g,
        vb(&varmap),
        &[c0],
        ParamDims::default(),
    ));
    assert!(e.contains("param `k` has no initial value"), "{e}");
    let e = err_text(ScanLayer::new(
        &jit,
        &g,
        vb(&varmap),
        &[c0, k0, ("nope", candle_nn::Init::Const(0.0))],
        ParamDims::default(),
    ));
    assert!(e.contains("no param `nope`"), "{e}");
    let e = err_text(ScanLayer::new(
        &jit,
        &g,
        vb(&varmap),
        &[c0, k0],
        ParamDims::default(),
    ));
    assert!(e.contains("ParamDims"), "{e}");
    // Built for N = 3, called with N = 4.
    let layer = ScanLayer::new(
        &jit,
        &g,
        vb(&varmap),
        &[c0, k0],
        ParamDims {
            n: Some(3),
            t: None,
        },
    )
    .unwrap();
    assert_eq!(
        varmap.all_vars().len(),
        1,
        "only the learnable `k` is a Var"
    );
    let e = err_text(layer.forward(&Tensor::zeros((2, 4), DType::F32, &dev).unwrap()));
    assert!(e.contains("`k`: expected shape 4 elements"), "{e}");
    // A Var for the constant param.
    let kernel = Arc::new(jit.compile(&g).unwrap());
    let x = Tensor::zeros((2, 3), DType::F32, &dev).unwrap();
    let kv = Tensor::ones(3, DType::F32, &dev).unwrap();
    let cv = Var::zeros(1, DType::F32, &dev).unwrap();
    let e = err_text(scan(&kernel, &[&x], None, &[&kv, cv.as_tensor()]));
    assert!(e.contains("not learnable"), "{e}");
    let e = err_text(scan(&kernel, &[&x], None, &[&kv]));
    assert!(e.contains("params: expected 2, got 1"), "{e}");
}

#[test]
fn plif_var_is_named_and_initialised() {
    let varmap = VarMap::new();
    let cfg = flexsn_neurons::ParametricLIFNode::new().init_tau(2.0);
    ParametricLIFNode::new(cfg, vb(&varmap).pp("plif1")).unwrap();
    let data = varmap.data().lock().unwrap();
    let w = data.get("plif1.w").expect("plif1.w in the map");
    assert_eq!(
        w.as_tensor().to_vec1::<f32>().unwrap(),
        vec![cfg.initial_w()]
    );
}
