//! Helpers shared by the save-policy tests.

use flexsn_runtime::Gradients;

/// `a` and `b` hold the same floats, bit for bit (NaNs of any payload are equal).
pub fn same(what: &str, a: &[f32], b: &[f32]) {
    assert_eq!(a.len(), b.len(), "{what}: length");
    for (i, (x, y)) in a.iter().zip(b).enumerate() {
        assert!(
            x.to_bits() == y.to_bits() || (x.is_nan() && y.is_nan()),
            "{what}[{i}]: checkpoint {x}, states {y}"
        );
    }
}

/// Every gradient of `a` and `b` is [`same`].
pub fn same_grads(what: &str, a: &Gradients<f32>, b: &Gradients<f32>) {
    for (i, (x, y)) in a.inputs.iter().zip(&b.inputs).enumerate() {
        same(&format!("{what}: grad input {i}"), x, y);
    }
    for (j, (x, y)) in a.init_states.iter().zip(&b.init_states).enumerate() {
        same(&format!("{what}: grad init state {j}"), x, y);
    }
    assert_eq!(a.params.len(), b.params.len());
    for (k, (x, y)) in a.params.iter().zip(&b.params).enumerate() {
        match (x, y) {
            (Some(x), Some(y)) => same(&format!("{what}: grad param {k}"), x, y),
            (None, None) => {}
            _ => panic!("{what}: grad param {k} present in one only"),
        }
    }
}
