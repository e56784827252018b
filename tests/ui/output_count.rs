use flexsn::neuron;

#[neuron]
fn counting(x: Input, v: State) -> (Output, State) {
    let h = v + x;
    (h, h, x)
}

fn main() {}
