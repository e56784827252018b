use flexsn::neuron;

#[neuron]
fn let_mut(x: Input) -> Output {
    let mut h = x;
    h
}

fn main() {}
