use flexsn::neuron;

#[neuron]
fn looping(x: Input, v: State) -> (Output, State) {
    for _ in 0..3 {}
    (x, v)
}

fn main() {}
