//! The `Layer` trait over `Node` and the PSN family gives what their own methods give, and
//! every built-in config converts into its `Builtin`.

use flexsn_neurons::layer::Layer;
use flexsn_neurons::node::{Node, StepMode};
use flexsn_neurons::psn::{MaskedPSN, PsnError, SlidingPSN};
use flexsn_neurons::{BUILTINS, Builtin, IFNode, LIFNode};
use flexsn_runtime::Backend;

fn seq(len: usize) -> Vec<f32> {
    (0..len)
        .map(|i| (i as f32 * 0.37).sin() * 2.0 + 0.4)
        .collect()
}

#[test]
fn every_builtin_config_converts_into_its_builtin() {
    for info in BUILTINS {
        let b = Builtin::from_name(info.cli_name).unwrap();
        // Each variant's config, converted back, is the same Builtin.
        let back: Builtin = match b {
            Builtin::If(c) => c.into(),
            Builtin::Lif(c) => c.into(),
            Builtin::Plif(c) => c.into(),
            Builtin::NonSpikingIf(c) => c.into(),
            Builtin::NonSpikingLif(c) => c.into(),
            Builtin::Psn(c) => c.into(),
            Builtin::MaskedPsn(c) => c.into(),
            Builtin::SlidingPsn(c) => c.into(),
            Builtin::Qif(c) => c.into(),
            Builtin::Eif(c) => c.into(),
            Builtin::Izhikevich(c) => c.into(),
            Builtin::Klif(c) => c.into(),
            Builtin::CubaLif(c) => c.into(),
            Builtin::Clif(c) => c.into(),
            Builtin::Ilif(c) => c.into(),
            Builtin::HalfThresholdIf(c) => c.into(),
            Builtin::TernaryIf(c) => c.into(),
            Builtin::TernaryLif(c) => c.into(),
        };
        assert_eq!(back, b, "{}", info.cli_name);
    }
    assert_eq!(
        Builtin::from(LIFNode::new().tau(3.0)),
        Builtin::Lif(LIFNode::new().tau(3.0))
    );
    assert_eq!(Builtin::from(IFNode::new()).class_name(), "IFNode");
}

#[test]
fn layer_calls_match_the_inherent_methods() {
    let (t, n) = (5, 4);
    let x = seq(t * n);
    let gy = seq(t * n).iter().map(|v| v * 0.5).collect::<Vec<_>>();

    let mk = || {
        let mut node = Node::builtin(&LIFNode::new().into(), Backend::Cpu).unwrap();
        node.set_step_mode(StepMode::Multi).unwrap();
        node
    };
    let (mut a, mut b) = (mk(), mk());
    assert_eq!(
        Layer::forward(&mut a, &[&x], n).unwrap(),
        b.forward(&[&x], n).unwrap()
    );
    assert_eq!(
        Layer::backward(&mut a, &[Some(&gy)]).unwrap(),
        b.backward(&[Some(&gy)]).unwrap().inputs
    );
    Layer::reset(&mut a);
    assert_eq!(a.time_step(), 0);

    let mut m = MaskedPSN::new(2, t).unwrap();
    let mut m2 = MaskedPSN::new(2, t).unwrap();
    assert_eq!(
        Layer::forward(&mut m, &[&x], n).unwrap(),
        vec![m2.forward(&x, n).unwrap()]
    );
    assert_eq!(
        Layer::backward(&mut m, &[Some(&gy)]).unwrap(),
        vec![m2.backward(&gy).unwrap()]
    );

    let mut s = SlidingPSN::new(3).unwrap();
    assert!(matches!(
        Layer::forward(&mut s, &[&x, &x], n),
        Err(PsnError::Len { got: 2, .. })
    ));
    Layer::forward(&mut s, &[&x[..n]], n).unwrap();
    assert!(matches!(
        Layer::backward(&mut s, &[None]),
        Err(PsnError::Len { got: 0, .. })
    ));
}
