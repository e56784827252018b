use flexsn::neuron;

#[neuron]
fn arity(x: Input) -> Output {
    x.clamp(0.0)
}

fn main() {}
