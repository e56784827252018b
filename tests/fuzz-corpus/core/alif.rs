/// FlexSN golden core `alif`: LIF charge (decay_input, v_reset = 0) with an adaptive threshold
/// and a soft reset by it.
#[neuron]
fn alif(x: Input, v: State, a: State, tau: f32, tau_a: f32, b0: f32, beta: f32) -> (Output, State, State) {
    let decay_a = (-1.0 / tau_a).exp(); // a constant: folded when the graph is built
    let h = v + (x - v) / tau;
    let th = b0 + beta * a; // adaptive threshold
    let s = spike(h - th, Surrogate::Sigmoid { alpha: 4.0 });
    let v = h - s * th;
    let a = decay_a * a + (1.0 - decay_a) * s;
    (s, v, a)
}
