//! `#[neuron]`: write one time step of a neuron as a Rust function.
use proc_macro::TokenStream;

/// Placeholder until the frontend lands.
#[proc_macro_attribute]
pub fn neuron(_attr: TokenStream, item: TokenStream) -> TokenStream {
    item
}
