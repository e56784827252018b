use flexsn::neuron;

#[neuron]
fn surrogate_typo(x: Input) -> Output {
    spike(x - 1.0, Surrogate::Atan { alpha: 2.0 })
}

fn main() {}
