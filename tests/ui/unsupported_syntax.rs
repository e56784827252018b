use flexsn::neuron;

#[neuron]
fn matching(x: Input) -> Output {
    match x {
        _ => x,
    }
}

fn main() {}
