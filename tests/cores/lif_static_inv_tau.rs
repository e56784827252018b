/// FlexSN golden core `lif_static_inv_tau`: LIF whose leak `inv_tau` is a static input (a
/// learnable param, per neuron or shared depending on the value bound) with a hard reset.
#[neuron]
fn lif_static_inv_tau(x: Input, v: State, inv_tau: Param<Dynamic>) -> (Output, State) {
    let h = v + (x - v) * inv_tau;
    let s = spike(h - 1.0, Surrogate::Sigmoid { alpha: 4.0 });
    let v = h * (1.0 - s);
    (s, v)
}
