//! Compile errors of `#[neuron]`: each file in `tests/ui/` is a core with one mistake; the
//! expected compiler output (with its span) is the `.stderr` file next to it.

#[test]
fn neuron_macro_errors() {
    let t = trybuild::TestCases::new();
    t.compile_fail("tests/ui/*.rs");
}
