/// FlexSN golden core `lif_soft`: LIF (no input decay) with a soft reset by the threshold.
#[neuron]
fn lif_soft(x: Input, v: State, tau: f32, v_th: f32) -> (Output, State) {
    let h = (1.0 - 1.0 / tau) * v + x;
    let s = spike(h - v_th, Surrogate::Sigmoid { alpha: 4.0 });
    let v = h - s * v_th;
    (s, v)
}
