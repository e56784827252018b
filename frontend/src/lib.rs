//! # flexsn-frontend
//!
//! The Rust-syntax frontend: a neuron's time step written as a Rust `fn`, lowered to a
//! [`StepGraph`]. It depends on `syn` and the IR only (no code generator), so the `#[neuron]`
//! macro builds quickly; `flexsn_compiler::frontend` re-exports it.
//!
//! The same analysis serves two entry points: the `#[neuron]` attribute macro (at compile time,
//! errors are compile errors with exact spans) and [`parse_core`] / [`load_core_file`] (at run
//! time, errors carry line, column and a caret excerpt). Both execute the same checked
//! [`Program`] through the same [`Lowerer`], so the same source gives the same IR either way.
//!
//! ```
//! use flexsn_frontend::parse_core;
//!
//! let src = r#"
//!     /// Adaptive LIF.
//!     #[neuron]
//!     fn alif(x: Input, v: State, a: State, w: Param, beta: f32) -> (Output, State, State) {
//!         let h = v + (x - v) * sigmoid(w);
//!         let s = spike(h - (1.0 + a), Surrogate::ATan { alpha: 2.0 });
//!         (s, h * (1.0 - s), beta * a + s)
//!     }
//! "#;
//! let g = parse_core(src, &[("beta", 0.9)])?;
//! assert_eq!(g.name(), "alif");
//! assert_eq!(g.description(), "Adaptive LIF.");
//! assert_eq!(g.outputs()[0].name, "s");
//! assert_eq!(g.states().len(), 2);
//!
//! // Errors point at the source.
//! let err = parse_core("fn f(x: Input) -> Output { let y = x.expp(); y }", &[]).unwrap_err();
//! let d = err.diagnostic().unwrap();
//! assert_eq!((d.line, d.column), (1, 38));
//! assert!(err.to_string().contains("did you mean `exp`"));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! The syntax (types, statements, expressions, functions, surrogates) is described in
//! `docs/custom-neurons.md`.

mod analyze;
mod error;
mod funcs;
pub mod limits;
mod lower;
mod print;
pub mod reference;

use std::path::Path;

pub use analyze::{
    AnalysisError, ArgDef, ArgKind, CoreDef, Instr, ParamKindDef, Program, Reg, ResultDef, Role,
    Step, SurrogateSpec, analyze_fn, doc_string,
};
pub use error::{Diagnostic, FrontendError};
pub use lower::{Lowerer, Value};
pub use print::to_rust;

use flexsn_ir::{ParamKind, StepGraph};

/// Values bound when a core is built: hyperparameters by name, and the kinds of its
/// `Param<Dynamic>` params (unbound ones are shared).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Bindings {
    /// Hyperparameter values by name, in the order bound.
    pub hyper: Vec<(String, f64)>,
    /// Kinds of `Param<Dynamic>` params by name, in the order bound.
    pub param_kinds: Vec<(String, ParamKind)>,
}

impl Bindings {
    /// Empty bindings; add some with [`Bindings::hyper`] and [`Bindings::param_kind`].
    pub fn new() -> Self {
        Bindings::default()
    }

    /// Binds hyperparameter `name`.
    pub fn hyper(mut self, name: &str, value: f64) -> Self {
        self.hyper.push((name.into(), value));
        self
    }

    /// Binds the kind of the `Param<Dynamic>` param `name`.
    pub fn param_kind(mut self, name: &str, kind: ParamKind) -> Self {
        self.param_kinds.push((name.into(), kind));
        self
    }

    /// Parses `name=value`: a number binds a hyperparameter; `shared`, `per_neuron` or
    /// `per_time` binds the kind of a `Param<Dynamic>` param.
    pub fn set(&mut self, assignment: &str) -> Result<(), FrontendError> {
        let Some((name, value)) = assignment.split_once('=') else {
            return Err(FrontendError::BadBinding {
                name: assignment.into(),
                value: String::new(),
                why: "expected `name=value`".into(),
            });
        };
        let (name, value) = (name.trim(), value.trim());
        if let Some(kind) = ParamKind::from_name(value) {
            self.param_kinds.push((name.into(), kind));
        } else {
            let v: f64 = value.parse().map_err(|_| FrontendError::BadBinding {
                name: name.into(),
                value: value.into(),
                why: "expected a number (a hyperparameter) or shared | per_neuron | per_time (a dynamic param's kind)".into(),
            })?;
            self.hyper.push((name.into(), v));
        }
        Ok(())
    }
}

/// The kind a `Param<Dynamic>` takes from the shape of its value in a `[T, N]` run: `[]` or
/// `[1]` is shared, `[N]` per neuron, `[T, 1]` (or `[T]` when `T != N`) per time step.
pub fn param_kind_from_shape(shape: &[usize], t: usize, n: usize) -> Option<ParamKind> {
    match *shape {
        [] | [1] => Some(ParamKind::Shared),
        [len] if len == n => Some(ParamKind::PerNeuron),
        [len] if len == t => Some(ParamKind::PerTime),
        [len, 1] if len == t => Some(ParamKind::PerTime),
        _ => None,
    }
}

/// The interface of a core, read from its source without building it.
#[derive(Clone, Debug, PartialEq)]
pub struct CoreInfo {
    /// The core's (fn's) name.
    pub name: String,
    /// Its doc comments, joined and trimmed.
    pub description: String,
    /// Input names, in signature order.
    pub inputs: Vec<String>,
    /// State names, in signature order.
    pub states: Vec<String>,
    /// Name, kind (`None` for `Param<Dynamic>`) and whether it is learnable.
    pub params: Vec<(String, Option<ParamKind>, bool)>,
    /// Hyperparameter names, in signature order.
    pub hyperparameters: Vec<String>,
    /// Output names, in the order of the return tuple.
    pub outputs: Vec<String>,
}

/// Parses a source holding one `fn` (optionally with `#[neuron]`, doc comments and `use` items).
///
/// Syntax nested deeper than [`limits::MAX_NESTING`] is an error. The tree is parsed and
/// returned on the caller's stack: sources near that limit need a large stack (see
/// [`limits::FRONTEND_STACK`]); the other entry points of this module provide one themselves.
pub fn parse_fn_source(src: &str) -> Result<syn::ItemFn, FrontendError> {
    parse_fn_item(src, None)
}

fn parse_fn_item(src: &str, file: Option<&str>) -> Result<syn::ItemFn, FrontendError> {
    let located = |span, message: String, help: Option<String>| {
        FrontendError::Source(Box::new(Diagnostic::new(src, file, span, message, help)))
    };
    if let Some(span) = limits::check_nesting(src) {
        return Err(located(
            span,
            format!(
                "the core nests too deeply: more than {} tokens of nested syntax",
                limits::MAX_NESTING
            ),
            Some("split long expressions and deep nesting into `let` bindings".into()),
        ));
    }
    let parsed = syn::parse_file(src).map_err(|e| {
        located(
            e.span(),
            format!("cannot parse the core as Rust: {e}"),
            Some("a core file holds one `fn`, e.g. `fn lif(x: Input, v: State) -> (Output, State) { .. }`".into()),
        )
    })?;
    let mut found: Option<syn::ItemFn> = None;
    for item in parsed.items {
        match item {
            syn::Item::Fn(f) => {
                if let Some(first) = &found {
                    return Err(located(
                        f.sig.ident.span(),
                        format!(
                            "a core source holds one `fn`, but `{}` follows `{}`",
                            f.sig.ident, first.sig.ident
                        ),
                        Some("put each core in its own file or string".into()),
                    ));
                }
                found = Some(f);
            }
            syn::Item::Use(_) => {}
            other => {
                return Err(located(
                    syn::spanned::Spanned::span(&other),
                    "only one `fn` (and `use` items) may appear in a core source".into(),
                    Some("hyperparameters are `f32` arguments of the fn; bind them when building the core".into()),
                ));
            }
        }
    }
    found.ok_or_else(|| {
        located(
            proc_macro2::Span::call_site(),
            "no `fn` found in the core source".into(),
            Some(
                "write the core as `fn name(x: Input, v: State) -> (Output, State) { .. }`".into(),
            ),
        )
    })
}

fn analyze_src(src: &str, file: Option<&str>) -> Result<CoreDef, FrontendError> {
    let f = parse_fn_item(src, file)?;
    analyze_fn(&f).map_err(|e| {
        FrontendError::Source(Box::new(Diagnostic::new(
            src, file, e.span, e.message, e.help,
        )))
    })
}

/// Runs the frontend on its own stack (syntax trees are deep; see [`limits`]).
fn on_stack<T: Send>(
    f: impl FnOnce() -> Result<T, FrontendError> + Send,
) -> Result<T, FrontendError> {
    limits::on_frontend_stack(f).map_err(|e| FrontendError::Thread(e.to_string()))?
}

/// Reads the interface of a core (names of inputs, states, params, hyperparameters, outputs).
pub fn core_info(src: &str) -> Result<CoreInfo, FrontendError> {
    on_stack(|| analyze_src(src, None).map(|def| info_of(&def)))
}

fn info_of(def: &CoreDef) -> CoreInfo {
    let names = |k: &dyn Fn(&ArgKind) -> bool| -> Vec<String> {
        def.args
            .iter()
            .filter(|a| k(&a.kind))
            .map(|a| a.name.clone())
            .collect()
    };
    CoreInfo {
        name: def.name.clone(),
        description: def.description.clone(),
        inputs: names(&|k| *k == ArgKind::Input),
        states: names(&|k| *k == ArgKind::State),
        params: def
            .args
            .iter()
            .filter_map(|a| match a.kind {
                ArgKind::Param { kind, learnable } => Some((
                    a.name.clone(),
                    match kind {
                        ParamKindDef::Fixed(k) => Some(k),
                        ParamKindDef::Dynamic => None,
                    },
                    learnable,
                )),
                _ => None,
            })
            .collect(),
        hyperparameters: names(&|k| *k == ArgKind::Hyper),
        outputs: def.output_names().map(str::to_string).collect(),
    }
}

/// Parses a core written in Rust syntax and builds its graph, binding hyperparameters by name.
pub fn parse_core(src: &str, hyper: &[(&str, f64)]) -> Result<StepGraph, FrontendError> {
    let b = Bindings {
        hyper: hyper.iter().map(|&(n, v)| (n.to_string(), v)).collect(),
        param_kinds: vec![],
    };
    build(src, None, &b)
}

/// [`parse_core`] with hyperparameters and the kinds of `Param<Dynamic>` params.
pub fn parse_core_with(src: &str, bindings: &Bindings) -> Result<StepGraph, FrontendError> {
    build(src, None, bindings)
}

/// Reads a core file (one `fn` in Rust syntax) and builds its graph.
pub fn load_core_file(
    path: impl AsRef<Path>,
    hyper: &[(&str, f64)],
) -> Result<StepGraph, FrontendError> {
    let b = Bindings {
        hyper: hyper.iter().map(|&(n, v)| (n.to_string(), v)).collect(),
        param_kinds: vec![],
    };
    load_core_file_with(path, &b)
}

/// [`load_core_file`] with hyperparameters and the kinds of `Param<Dynamic>` params.
pub fn load_core_file_with(
    path: impl AsRef<Path>,
    bindings: &Bindings,
) -> Result<StepGraph, FrontendError> {
    let path = path.as_ref();
    let src = std::fs::read_to_string(path).map_err(|e| FrontendError::Io {
        path: path.display().to_string(),
        message: e.to_string(),
    })?;
    build(&src, Some(&path.display().to_string()), bindings)
}

/// Reads the interface of a core file.
pub fn core_file_info(path: impl AsRef<Path>) -> Result<CoreInfo, FrontendError> {
    let path = path.as_ref();
    let src = std::fs::read_to_string(path).map_err(|e| FrontendError::Io {
        path: path.display().to_string(),
        message: e.to_string(),
    })?;
    let file = path.display().to_string();
    on_stack(|| analyze_src(&src, Some(&file)).map(|def| info_of(&def)))
}

fn build(src: &str, file: Option<&str>, b: &Bindings) -> Result<StepGraph, FrontendError> {
    on_stack(|| build_here(src, file, b))
}

fn build_here(src: &str, file: Option<&str>, b: &Bindings) -> Result<StepGraph, FrontendError> {
    let def = analyze_src(src, file)?;
    let located = |span, message: String, help: Option<String>| {
        FrontendError::Source(Box::new(Diagnostic::new(src, file, span, message, help)))
    };
    let known = || {
        let v: Vec<String> = def
            .hyperparameters()
            .chain(def.dynamic_params())
            .map(|a| format!("`{}`", a.name))
            .collect();
        if v.is_empty() {
            "no hyperparameters".to_string()
        } else {
            v.join(", ")
        }
    };
    for (name, _) in &b.hyper {
        if !def.hyperparameters().any(|a| &a.name == name) {
            return Err(FrontendError::UnknownBinding {
                core: def.name.clone(),
                name: name.clone(),
                known: known(),
            });
        }
    }
    for (name, _) in &b.param_kinds {
        if !def.dynamic_params().any(|a| &a.name == name) {
            return Err(FrontendError::UnknownBinding {
                core: def.name.clone(),
                name: name.clone(),
                known: known(),
            });
        }
    }
    let mut hyper = Vec::new();
    for arg in def.hyperparameters() {
        let Some((_, v)) = b.hyper.iter().rev().find(|(n, _)| *n == arg.name) else {
            return Err(located(
                arg.span,
                format!("hyperparameter `{}` has no value", arg.name),
                Some(format!(
                    "bind it by name, e.g. `--set {}=1.0` on the command line or `(\"{}\", 1.0)` in the hyperparameters",
                    arg.name, arg.name
                )),
            ));
        };
        hyper.push(
            flexsn_ir::num::user_f32(*v).map_err(|why| FrontendError::BadBinding {
                name: arg.name.clone(),
                value: v.to_string(),
                why,
            })?,
        );
    }
    let kinds: Vec<Option<ParamKind>> = def
        .dynamic_params()
        .map(|a| {
            b.param_kinds
                .iter()
                .rev()
                .find(|(n, _)| *n == a.name)
                .map(|(_, k)| *k)
        })
        .collect();
    lower::lower_def(&def, &hyper, &kinds).map_err(|f| located(f.span, f.message, f.help))
}
