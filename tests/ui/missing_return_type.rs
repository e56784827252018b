use flexsn::neuron;

#[neuron]
fn nothing(x: Input) {
    let _h = x;
}

fn main() {}
