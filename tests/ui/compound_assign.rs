use flexsn::neuron;

#[neuron]
fn compound(x: Input, v: State) -> (Output, State) {
    let h = v;
    h += x;
    (h, h)
}

fn main() {}
