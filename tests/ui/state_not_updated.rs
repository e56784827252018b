use flexsn::neuron;

#[neuron]
fn forgetful(x: Input, v: State, a: State) -> (Output, State) {
    let h = v + x;
    (h, h)
}

fn main() {}
