use crate::{Builtin, NeuronError};

#[test]
fn placeholder_compiles() {
    let _ = Builtin::from_name("qif");
    let _: Option<NeuronError> = None;
}
