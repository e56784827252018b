use flexsn::neuron;

#[neuron]
fn typo(x: Input, v: State) -> (Output, State) {
    let h = v + sigmod(x);
    (h, h)
}

fn main() {}
