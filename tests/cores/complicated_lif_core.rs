/// FlexSN golden core `complicated_lif_core`: two spike outputs (with and without threshold
/// adaptation) and a reset modulated by a second input.
#[neuron]
fn complicated_lif_core(
    x: Input,
    y: Input,
    v: State,
    rho: State,
    beta: f32,
    gamma: f32,
) -> (Output, Output, State, State) {
    let h = beta * v + x;
    let s1 = spike(h - (rho + 1.0), Surrogate::ATan { alpha: 2.0 }); // threshold adaptation
    let s2 = spike(h - 1.0, Surrogate::ATan { alpha: 2.0 }); // no threshold adaptation
    let rho = gamma * rho + s1; // adaptation variable update
    let v1 = h * (1.0 - s1); // hard reset
    let v2 = h - s2; // soft reset
    let yy = sigmoid(y); // modulation factor
    let v = v1 * yy + v2 * (1.0 - yy); // modulated reset
    (s1, s2, v, rho)
}
