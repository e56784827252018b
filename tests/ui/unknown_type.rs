use flexsn::neuron;

#[neuron]
fn typed(x: Tensor) -> Output {
    x
}

fn main() {}
