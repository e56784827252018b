use flexsn::neuron;

#[neuron]
fn mutating(x: Input, v: State) -> (Output, State) {
    let h = v + x;
    h = h * 0.5;
    (h, h)
}

fn main() {}
