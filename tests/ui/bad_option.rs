use flexsn::neuron;

#[neuron(fast)]
fn opt(x: Input) -> Output {
    x
}

fn main() {}
