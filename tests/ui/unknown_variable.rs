use flexsn::neuron;

#[neuron]
fn undefined(x: Input, v: State) -> (Output, State) {
    let h = v + y;
    (h, h)
}

fn main() {}
