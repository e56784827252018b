//! `#[neuron]`: write one time step of a neuron as a Rust function.
//!
//! The attribute runs the analysis of `flexsn_frontend` at compile time (so mistakes
//! are compile errors pointing at the offending code) and replaces the fn with:
//!
//! - a type `<Name>Neuron` (CamelCase of the fn name) whose public fields are the
//!   hyperparameters (the fn's `f32` arguments), implementing `flexsn::runtime::Neuron`;
//! - a constructor with the fn's name taking the hyperparameters: `alif(0.9)`;
//! - `step_graph()`: builder code generated instruction by instruction from the analysed body
//!   (the same program the text frontend interprets, so both give the same IR);
//! - `reference_step(..)`: the body evaluated on plain `f32`s, for comparing compiled kernels;
//! - `SOURCE`, `NAME`, `HYPERPARAMETERS`, `DYNAMIC_PARAMS`, `hyperparameters()` and
//!   `with_param_kind(..)` (binds a `Param<Dynamic>`).
//!
//! Generated code names the facade crate `::flexsn`; `#[neuron(crate = path)]` names another
//! path that has the `compiler` and `runtime` modules.

use proc_macro::TokenStream;
use proc_macro2::{Ident, Span, TokenStream as TokenStream2};
use quote::{format_ident, quote};

use flexsn_frontend::{ArgKind, CoreDef, Instr, ParamKindDef, Role, SurrogateSpec, analyze_fn};
use flexsn_ir::ParamKind;

/// Turns a fn describing one time step of a neuron into a neuron type.
///
/// Arguments are typed `Input` (an input sequence), `State` (carried between steps; `State<0.5>`,
/// `#[init(-v_th)]` or `State<Runtime>` give its initial value, default 0), `Param` (learnable,
/// shared; `Param<PerNeuron>`, `Param<PerTime>`, `Param<Dynamic>`, `FixedParam<..>`) or `f32`
/// (a hyperparameter, baked in as a constant). The return type lists the outputs
/// (`Output` or `Output<name>`), then one `State` per state in declaration order; the body ends
/// with the tuple of their values. See `docs/custom-neurons.md` for the whole syntax.
///
/// ```
/// use flexsn::neuron;
/// use flexsn::runtime::Neuron;
///
/// /// Adaptive LIF with a learnable leak.
/// #[neuron]
/// fn alif(x: Input, v: State, a: State, w: Param, beta: f32) -> (Output, State, State) {
///     let h = v + (x - v) * sigmoid(w);                      // w: learnable
///     let s = spike(h - (1.0 + a), Surrogate::ATan { alpha: 2.0 });
///     (s, h * (1.0 - s), beta * a + s)                       // beta: baked in
/// }
///
/// let n = alif(0.9);                       // an `AlifNeuron { beta: 0.9 }`
/// let g = n.step_graph()?;                 // what `Jit::compile(&n)` compiles
/// assert_eq!(g.outputs()[0].name, "s");
/// assert_eq!(g.description(), "Adaptive LIF with a learnable leak.");
/// // One step on plain f32s: x = 2, v = 0, a = 0, w = 0 (sigmoid(w) = 0.5).
/// assert_eq!(n.reference_step(2.0, 0.0, 0.0, 0.0), (1.0, 0.0, 1.0));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[proc_macro_attribute]
pub fn neuron(attr: TokenStream, item: TokenStream) -> TokenStream {
    let krate = match parse_options(attr.into()) {
        Ok(k) => k,
        Err(e) => return e.to_compile_error().into(),
    };
    let f: syn::ItemFn = match syn::parse(item) {
        Ok(f) => f,
        Err(e) => {
            return syn::Error::new(e.span(), format!("#[neuron] applies to a fn: {e}"))
                .to_compile_error()
                .into();
        }
    };
    match analyze_fn(&f) {
        Ok(def) => expand(&def, &f, &krate).into(),
        Err(e) => e.to_syn_error().to_compile_error().into(),
    }
}

fn parse_options(attr: TokenStream2) -> syn::Result<TokenStream2> {
    let mut krate = quote!(::flexsn);
    if attr.is_empty() {
        return Ok(krate);
    }
    let parser = syn::meta::parser(|meta| {
        if meta.path.is_ident("crate") {
            let p: syn::Path = meta.value()?.parse()?;
            krate = quote!(#p);
            Ok(())
        } else {
            Err(meta
                .error("unknown #[neuron] option; the only option is `crate = path::to::flexsn`"))
        }
    });
    syn::parse::Parser::parse2(parser, attr)?;
    Ok(krate)
}

fn camel(name: &str) -> String {
    let mut out = String::new();
    for part in name.split('_').filter(|p| !p.is_empty()) {
        let mut c = part.chars();
        if let Some(first) = c.next() {
            out.extend(first.to_uppercase());
            out.push_str(c.as_str());
        }
    }
    out
}

/// An identifier for `name`, raw when `name` is a keyword.
fn ident(name: &str, span: Span) -> Ident {
    if syn::parse_str::<Ident>(name).is_ok() {
        Ident::new(name, span)
    } else {
        Ident::new_raw(name, span)
    }
}

fn reg(i: usize) -> Ident {
    format_ident!("__flexsn_r{}", i)
}

fn param_kind_tokens(c: &TokenStream2, k: ParamKind) -> TokenStream2 {
    match k {
        ParamKind::Shared => quote!(#c::ir::ParamKind::Shared),
        ParamKind::PerNeuron => quote!(#c::ir::ParamKind::PerNeuron),
        ParamKind::PerTime => quote!(#c::ir::ParamKind::PerTime),
    }
}

fn expand(def: &CoreDef, f: &syn::ItemFn, krate: &TokenStream2) -> TokenStream2 {
    let c = quote!(#krate::compiler);
    let rt = quote!(#krate::runtime);
    let span = def.name_span;
    let vis = &def.vis;
    let fn_name = ident(&def.name, span);
    let ty = format_ident!("{}Neuron", camel(&def.name), span = span);
    let name = &def.name;
    let source = quote!(#f).to_string();

    let hypers: Vec<&flexsn_frontend::ArgDef> = def.hyperparameters().collect();
    let hyper_idents: Vec<Ident> = hypers.iter().map(|a| ident(&a.name, a.span)).collect();
    let hyper_names: Vec<&str> = hypers.iter().map(|a| a.name.as_str()).collect();
    let dynamic: Vec<&str> = def.dynamic_params().map(|a| a.name.as_str()).collect();
    let n_dyn = dynamic.len();
    let dyn_index = |arg: usize| -> usize {
        def.args[..arg]
            .iter()
            .filter(|a| {
                matches!(
                    a.kind,
                    ArgKind::Param {
                        kind: ParamKindDef::Dynamic,
                        ..
                    }
                )
            })
            .count()
    };
    let field_of = |arg: usize| -> Ident { ident(&def.args[arg].name, def.args[arg].span) };

    // ---- step_graph: the builder twin.
    let instrs = &def.program.instrs;
    let is_const = |r: usize| instrs[r].is_const;
    let val = |r: usize| -> TokenStream2 {
        let id = reg(r);
        if is_const(r) {
            quote!(#c::frontend::Value::Const(#id))
        } else {
            quote!(#id)
        }
    };
    let surrogate = |s: &SurrogateSpec| -> TokenStream2 {
        let sname = s.name;
        let params = s.params.iter().map(|(p, r)| {
            let id = reg(*r);
            quote!((#p, #id))
        });
        quote!(__L::surrogate(#sname, &[#(#params),*])?)
    };
    let mut twin = Vec::new();
    for (i, step) in instrs.iter().enumerate() {
        let r = reg(i);
        let code = match &step.instr {
            Instr::Hyper { arg } => {
                let field = field_of(*arg);
                quote!(let #r: f32 = __L::hyper(self.#field)?;)
            }
            Instr::Lit(v) => {
                let bits = v.to_bits();
                quote!(let #r: f32 = f32::from_bits(#bits);)
            }
            Instr::Input { arg } => {
                let n = &def.args[*arg].name;
                quote!(let #r = __l.input(#n)?;)
            }
            Instr::State { arg, init } => {
                let n = &def.args[*arg].name;
                let init = match init {
                    Some(ir) => {
                        let id = reg(*ir);
                        quote!(#c::ir::StateInit::Const(#id))
                    }
                    None => quote!(#c::ir::StateInit::Runtime),
                };
                quote!(let #r = __l.state(#n, #init)?;)
            }
            Instr::Param { arg } => {
                let n = &def.args[*arg].name;
                let ArgKind::Param { kind, learnable } = def.args[*arg].kind else {
                    unreachable!("Param instructions declare param arguments")
                };
                let kind = match kind {
                    ParamKindDef::Fixed(k) => param_kind_tokens(&c, k),
                    ParamKindDef::Dynamic => {
                        let k = dyn_index(*arg);
                        let shared = param_kind_tokens(&c, ParamKind::Shared);
                        quote!(self.param_kinds[#k].unwrap_or(#shared))
                    }
                };
                quote!(let #r = __l.param(#n, #kind, #learnable)?;)
            }
            Instr::Apply { op, args } => {
                let opv = Ident::new(&format!("{op:?}"), Span::call_site());
                if step.is_const {
                    let a = args.iter().map(|&a| reg(a));
                    quote!(let #r: f32 = __L::fold(#c::ir::Op::#opv, &[#(#a),*]);)
                } else {
                    let a = args.iter().map(|&a| val(a));
                    quote!(let #r = __l.apply(#c::ir::Op::#opv, &[#(#a),*])?;)
                }
            }
            Instr::Spike { x, surrogate: s } => {
                let s = surrogate(s);
                if step.is_const {
                    let x = reg(*x);
                    quote!(let #r: f32 = __L::fold(#c::ir::Op::Spike(#s), &[#x]);)
                } else {
                    let x = val(*x);
                    quote!(let #r = __l.spike(#x, #s)?;)
                }
            }
            Instr::Primitive { x, surrogate: s } => {
                let s = surrogate(s);
                if step.is_const {
                    let x = reg(*x);
                    quote!(let #r: f32 = __L::fold_primitive(#s, #x)?;)
                } else {
                    let x = val(*x);
                    quote!(let #r = __l.primitive(#x, #s)?;)
                }
            }
        };
        twin.push(code);
    }
    let mut finish = Vec::new();
    for res in &def.results {
        let v = val(res.value);
        finish.push(match &res.role {
            Role::Output(n) => quote!(__l.output(#n, #v)?;),
            Role::State(j) => quote!(__l.next_state(#j, #v)?;),
        });
    }
    let description = &def.description;

    // ---- reference_step: the body on plain f32s.
    let mut ref_params = Vec::new();
    let mut ref_arg_names = Vec::new();
    for a in &def.args {
        if a.kind != ArgKind::Hyper {
            let id = ident(&a.name, a.span);
            ref_params.push(quote!(#id: f32));
            ref_arg_names.push(a.name.clone());
        }
    }
    let mut reference = Vec::new();
    for (i, step) in instrs.iter().enumerate() {
        let r = reg(i);
        let e = match &step.instr {
            Instr::Hyper { arg } => {
                let field = field_of(*arg);
                quote!(self.#field)
            }
            Instr::Lit(v) => {
                let bits = v.to_bits();
                quote!(f32::from_bits(#bits))
            }
            Instr::Input { arg } | Instr::State { arg, .. } | Instr::Param { arg } => {
                let id = field_of(*arg);
                quote!(#id)
            }
            Instr::Apply { op, args } => {
                let opv = Ident::new(&format!("{op:?}"), Span::call_site());
                let a = args.iter().map(|&a| reg(a));
                quote!(#c::frontend::reference::op(#c::ir::Op::#opv, &[#(#a),*]))
            }
            Instr::Spike { x, surrogate: s } | Instr::Primitive { x, surrogate: s } => {
                let f = if matches!(step.instr, Instr::Spike { .. }) {
                    quote!(spike)
                } else {
                    quote!(primitive)
                };
                let x = reg(*x);
                let sname = s.name;
                let params = s.params.iter().map(|(p, r)| {
                    let id = reg(*r);
                    quote!((#p, #id))
                });
                quote!(#c::frontend::reference::#f(#sname, &[#(#params),*], #x))
            }
        };
        reference.push(quote!(let #r: f32 = #e;));
    }
    let results: Vec<Ident> = def.results.iter().map(|r| reg(r.value)).collect();
    let (ref_ret_ty, ref_ret) = if results.len() == 1 {
        let r = &results[0];
        (quote!(f32), quote!(#r))
    } else {
        let tys = results.iter().map(|_| quote!(f32));
        (quote!((#(#tys),*)), quote!((#(#results),*)))
    };
    let ret_names: Vec<String> = def
        .results
        .iter()
        .map(|r| match &r.role {
            Role::Output(n) => format!("output `{n}`"),
            Role::State(j) => format!(
                "next `{}`",
                def.states().nth(*j).map(|a| a.name.as_str()).unwrap_or("?")
            ),
        })
        .collect();
    let ref_doc = format!(
        "One step of `{name}` on plain `f32`s, with exactly the interpreter's arithmetic: takes {}, returns {}.",
        if ref_arg_names.is_empty() {
            "nothing".to_string()
        } else {
            ref_arg_names
                .iter()
                .map(|n| format!("`{n}`"))
                .collect::<Vec<_>>()
                .join(", ")
        },
        ret_names.join(", ")
    );

    let struct_doc = if description.is_empty() {
        format!("The neuron `{name}`, generated by `#[neuron]`.")
    } else {
        format!("{description}\n\nThe neuron `{name}`, generated by `#[neuron]`.")
    };
    let ctor_doc = format!(
        "Builds the neuron `{name}`{}.",
        if hyper_names.is_empty() {
            String::new()
        } else {
            format!(" with hyperparameters {}", hyper_names.join(", "))
        }
    );
    let dyn_field = if n_dyn > 0 {
        quote! {
            /// The kinds bound to the `Param<Dynamic>` params, in `DYNAMIC_PARAMS` order
            /// (`None`: shared).
            pub param_kinds: [::core::option::Option<#c::ir::ParamKind>; #n_dyn],
        }
    } else {
        quote!()
    };
    let dyn_init = if n_dyn > 0 {
        quote!(param_kinds: [::core::option::Option::None; #n_dyn],)
    } else {
        quote!()
    };
    let with_kind_body = if n_dyn > 0 {
        quote! {
            match Self::DYNAMIC_PARAMS.iter().position(|p| *p == name) {
                ::core::option::Option::Some(k) => {
                    self.param_kinds[k] = ::core::option::Option::Some(kind);
                    ::core::result::Result::Ok(self)
                }
                ::core::option::Option::None => ::core::result::Result::Err(__unknown()),
            }
        }
    } else {
        quote! {
            let _ = kind;
            ::core::result::Result::Err(__unknown())
        }
    };
    let hyper_fields = hypers.iter().zip(&hyper_idents).map(|(a, id)| {
        let doc = format!("Hyperparameter `{}`.", a.name);
        quote!(#[doc = #doc] pub #id: f32,)
    });
    let dyn_list = if dynamic.is_empty() {
        "none".to_string()
    } else {
        dynamic
            .iter()
            .map(|d| format!("`{d}`"))
            .collect::<Vec<_>>()
            .join(", ")
    };

    quote! {
        #[doc = #struct_doc]
        #[derive(Clone, Copy, Debug, PartialEq)]
        #vis struct #ty {
            #(#hyper_fields)*
            #dyn_field
        }

        #[doc = #ctor_doc]
        #vis fn #fn_name(#(#hyper_idents: f32),*) -> #ty {
            #ty { #(#hyper_idents,)* #dyn_init }
        }

        impl #ty {
            /// The core's name (the fn's name).
            pub const NAME: &'static str = #name;
            /// The fn as written (tokens), readable by `flexsn_frontend::parse_core`.
            pub const SOURCE: &'static str = #source;
            /// The hyperparameters' names, in signature order.
            pub const HYPERPARAMETERS: &'static [&'static str] = &[#(#hyper_names),*];
            /// The `Param<Dynamic>` params' names, in signature order.
            pub const DYNAMIC_PARAMS: &'static [&'static str] = &[#(#dynamic),*];

            /// The hyperparameters by name, as the text frontend binds them.
            pub fn hyperparameters(&self) -> ::std::vec::Vec<(&'static str, f64)> {
                ::std::vec![#((#hyper_names, self.#hyper_idents as f64)),*]
            }

            /// Binds the kind of a `Param<Dynamic>` param (unbound ones are shared).
            #[allow(unused_mut)]
            pub fn with_param_kind(
                mut self,
                name: &str,
                kind: #c::ir::ParamKind,
            ) -> ::core::result::Result<Self, #c::frontend::FrontendError> {
                let __unknown = || #c::frontend::FrontendError::UnknownBinding {
                    core: ::std::string::String::from(#name),
                    name: ::std::string::String::from(name),
                    known: ::std::string::String::from(#dyn_list),
                };
                #with_kind_body
            }

            /// The core's step graph, built with the hyperparameters baked in.
            #[allow(clippy::all, unused_variables)]
            pub fn step_graph(&self) -> ::core::result::Result<#c::ir::StepGraph, #c::BuildError> {
                type __L = #c::frontend::Lowerer;
                let mut __l = __L::new(#name);
                __l.set_description(#description);
                #(#twin)*
                #(#finish)*
                __l.finish()
            }

            #[doc = #ref_doc]
            #[allow(clippy::all, unused_variables)]
            pub fn reference_step(&self, #(#ref_params),*) -> #ref_ret_ty {
                #(#reference)*
                #ref_ret
            }
        }

        impl #rt::Neuron for #ty {
            fn step_graph(&self) -> ::core::result::Result<#c::ir::StepGraph, #c::BuildError> {
                #ty::step_graph(self)
            }
        }
    }
}
