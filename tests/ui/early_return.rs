use flexsn::neuron;

#[neuron]
fn early(x: Input) -> Output {
    let y = if x > 0.0 { return x; } else { x };
    y
}

fn main() {}
