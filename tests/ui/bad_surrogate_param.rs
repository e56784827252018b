use flexsn::neuron;

#[neuron]
fn surrogate_param(x: Input) -> Output {
    spike(x - 1.0, Surrogate::ATan { alfa: 2.0 })
}

fn main() {}
