/// FlexSN golden core `exotic_exp_tanh_min_max_clamp_where`: exp, tanh, one- and two-sided
/// clamps, max/min against constants and a `where` (select) hard reset.
#[neuron]
fn exotic_exp_tanh_min_max_clamp_where(x: Input, v: State, w: State, v_th: f32) -> (Output, State, State) {
    let dv = 0.1 * (v - 0.5).clamp_max(2.0).exp(); // torch.clamp(.., max=2.0)
    let h = 0.8 * v + x.tanh() + dv - 0.2 * w;
    let h = h.max(-1.0);
    let s = spike(h - v_th, Surrogate::ATan { alpha: 2.0 });
    let v_new = if s > 0.5 { 0.0 } else { h }; // hard reset, no gradient through the condition
    let w_new = (0.9 * w + s).min(3.0);
    let w_new = w_new.clamp(0.0, 2.5);
    (s, v_new, w_new)
}
