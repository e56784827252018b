//! The analysis shared by the `#[neuron]` macro and the text frontend: a `syn::ItemFn` checked
//! and resolved into a [`CoreDef`] — the signature's declarations and the body as a straight-line
//! [`Program`] of instructions with spans.
//!
//! Both entry points execute the same program in the same order through
//! [`Lowerer`](super::Lowerer): the text frontend interprets it, the macro emits one Rust
//! statement per instruction. So the same source gives the same IR either way.

use std::collections::{HashMap, HashSet};

use proc_macro2::Span;
use syn::ext::IdentExt;
use syn::spanned::Spanned;

use super::funcs::{self, FuncKind};
use crate::ir::{Op, ParamKind, Surrogate};

/// A register of the [`Program`]: the value computed by one instruction.
pub type Reg = usize;

/// A resolved, validated neuron core.
#[derive(Clone, Debug)]
pub struct CoreDef {
    /// The fn's name: the graph's name.
    pub name: String,
    pub name_span: Span,
    /// The doc comments, one leading space stripped per line, joined and trimmed.
    pub description: String,
    pub vis: syn::Visibility,
    /// Arguments in signature order.
    pub args: Vec<ArgDef>,
    /// Declarations and body, in evaluation order.
    pub program: Program,
    /// The returned values, in the order of the return tuple.
    pub results: Vec<ResultDef>,
}

/// One argument of the core fn.
#[derive(Clone, Debug)]
pub struct ArgDef {
    pub name: String,
    pub span: Span,
    pub kind: ArgKind,
}

/// What an argument declares.
#[derive(Clone, Debug, PartialEq)]
pub enum ArgKind {
    /// `x: Input`: an input sequence.
    Input,
    /// `v: State`, `v: State<0.5>`, `v: State<Runtime>`, `#[init(expr)] v: State`.
    State,
    /// `w: Param<Kind>` (learnable) or `w: FixedParam<Kind>`.
    Param { kind: ParamKindDef, learnable: bool },
    /// `beta: f32`: a hyperparameter, baked into the graph as a constant.
    Hyper,
}

/// The kind of a parameter as written in the signature.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ParamKindDef {
    Fixed(ParamKind),
    /// `Param<Dynamic>`: the kind is bound when the graph is built (from the shape of the value
    /// the caller will pass); [`ParamKind::Shared`] when nothing is bound.
    Dynamic,
}

/// What a returned value is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Role {
    /// A named output.
    Output(String),
    /// The next value of the state with this index (among the states, in declaration order).
    State(usize),
}

/// One element of the returned tuple.
#[derive(Clone, Debug)]
pub struct ResultDef {
    pub role: Role,
    pub value: Reg,
    pub span: Span,
}

/// The body as straight-line code: instruction `i` writes register `i`.
#[derive(Clone, Debug, Default)]
pub struct Program {
    pub instrs: Vec<Step>,
}

/// One instruction with its source span and whether its value is a constant (it depends only
/// on literals and hyperparameters, so it folds to an `f32` when the graph is built).
#[derive(Clone, Debug)]
pub struct Step {
    pub instr: Instr,
    pub span: Span,
    pub is_const: bool,
}

/// One instruction. Registers hold [`Value`](super::Value)s: constants (folded) or graph nodes.
#[derive(Clone, Debug, PartialEq)]
pub enum Instr {
    /// The value of hyperparameter argument `arg`.
    Hyper { arg: usize },
    /// A literal or named constant.
    Lit(f32),
    /// Declares input argument `arg`.
    Input { arg: usize },
    /// Declares state argument `arg`; `init` is a constant register, or `None` for an initial
    /// value supplied at run time.
    State { arg: usize, init: Option<Reg> },
    /// Declares param argument `arg`.
    Param { arg: usize },
    /// A plain IR op (never `Spike`).
    Apply { op: Op, args: Vec<Reg> },
    /// `Θ(x)` forward, the surrogate's derivative backward.
    Spike { x: Reg, surrogate: SurrogateSpec },
    /// The surrogate's smooth primitive form (`spiking: false`).
    Primitive { x: Reg, surrogate: SurrogateSpec },
}

/// A surrogate as written: class name and parameters (constant registers); omitted parameters
/// take SpikingJelly's defaults.
#[derive(Clone, Debug, PartialEq)]
pub struct SurrogateSpec {
    pub name: &'static str,
    pub params: Vec<(&'static str, Reg)>,
}

/// A located analysis error: what is wrong and what is allowed.
#[derive(Clone, Debug)]
pub struct AnalysisError {
    pub span: Span,
    pub message: String,
    pub help: Option<String>,
}

impl AnalysisError {
    fn new(span: Span, message: impl Into<String>) -> Self {
        AnalysisError {
            span,
            message: message.into(),
            help: None,
        }
    }
    fn help(mut self, help: impl Into<String>) -> Self {
        self.help = Some(help.into());
        self
    }
    /// The error as a `syn::Error` (message and help), for the macro.
    pub fn to_syn_error(&self) -> syn::Error {
        let msg = match &self.help {
            Some(h) => format!("{}\n\nhelp: {h}", self.message),
            None => self.message.clone(),
        };
        syn::Error::new(self.span, msg)
    }
}

type Result<T> = std::result::Result<T, AnalysisError>;

const ARG_TYPES: &str = "`Input`, `State`, `State<init>`, `Param`, `Param<Shared | PerNeuron | PerTime | Dynamic>`, `FixedParam<..>` or `f32` (a hyperparameter)";

const ALLOWED_SYNTAX: &str = "a core body may use `let` bindings, arithmetic (+ - * / %), unary `-` and `!`, comparisons, `&&`, `||`, `if c { a } else { b }`, blocks, float and integer literals, calls of the math functions, `spike(..)`, `surrogate(..)` and `detach(..)`, and end with the returned tuple";

impl CoreDef {
    /// The names of the hyperparameter arguments, in signature order.
    pub fn hyperparameters(&self) -> impl Iterator<Item = &ArgDef> {
        self.args.iter().filter(|a| a.kind == ArgKind::Hyper)
    }
    /// The state arguments, in declaration order.
    pub fn states(&self) -> impl Iterator<Item = &ArgDef> {
        self.args.iter().filter(|a| a.kind == ArgKind::State)
    }
    /// The outputs' names, in tuple order.
    pub fn output_names(&self) -> impl Iterator<Item = &str> {
        self.results.iter().filter_map(|r| match &r.role {
            Role::Output(n) => Some(n.as_str()),
            Role::State(_) => None,
        })
    }
    /// Param arguments whose kind is bound when the graph is built.
    pub fn dynamic_params(&self) -> impl Iterator<Item = &ArgDef> {
        self.args.iter().filter(|a| {
            matches!(
                a.kind,
                ArgKind::Param {
                    kind: ParamKindDef::Dynamic,
                    ..
                }
            )
        })
    }
}

/// Analyzes a core fn. `attrs_ok` lists attribute names to accept and ignore on the fn (besides
/// `doc`, `neuron` and lint attributes).
pub fn analyze_fn(f: &syn::ItemFn) -> Result<CoreDef> {
    let sig = &f.sig;
    for attr in &f.attrs {
        let path = attr.path();
        let ok = ["doc", "neuron", "allow", "warn", "deny", "expect", "forbid"]
            .iter()
            .any(|n| path.is_ident(n))
            || path.segments.last().is_some_and(|s| s.ident == "neuron");
        if !ok {
            return Err(AnalysisError::new(attr.span(), "unsupported attribute on a neuron core")
                .help("only doc comments, `#[neuron]` and lint attributes (`#[allow(..)]`) are allowed here"));
        }
    }
    if let Some(c) = &sig.constness {
        return Err(unsupported_fn_modifier(c.span(), "const"));
    }
    if let Some(a) = &sig.asyncness {
        return Err(unsupported_fn_modifier(a.span(), "async"));
    }
    if let Some(u) = &sig.unsafety {
        return Err(unsupported_fn_modifier(u.span(), "unsafe"));
    }
    if let Some(a) = &sig.abi {
        return Err(unsupported_fn_modifier(a.span(), "extern"));
    }
    if !sig.generics.params.is_empty() || sig.generics.where_clause.is_some() {
        return Err(
            AnalysisError::new(sig.generics.span(), "a neuron core cannot be generic")
                .help("remove the generic parameters; hyperparameters are plain `f32` arguments"),
        );
    }
    if let Some(v) = &sig.variadic {
        return Err(AnalysisError::new(
            v.span(),
            "a neuron core cannot be variadic",
        ));
    }

    let mut args = Vec::new();
    let mut init_attrs: Vec<Option<InitForm>> = Vec::new();
    let mut arg_index = HashMap::new();
    for input in &sig.inputs {
        let (arg, init) = analyze_arg(input)?;
        if arg_index.insert(arg.name.clone(), args.len()).is_some() {
            return Err(AnalysisError::new(
                arg.span,
                format!("argument `{}` is declared twice", arg.name),
            )
            .help("every input, state, param and hyperparameter needs its own name"));
        }
        args.push(arg);
        init_attrs.push(init);
    }

    let mut a = Analyzer {
        args: &args,
        program: Program::default(),
        is_const: vec![],
        arg_regs: vec![None; args.len()],
        arg_index,
        bound: HashMap::new(),
        scopes: vec![],
    };
    // Hyperparameters first: a state's initial value may use any of them.
    for (i, arg) in args.iter().enumerate() {
        if arg.kind == ArgKind::Hyper {
            let r = a.emit(Instr::Hyper { arg: i }, arg.span, true);
            a.arg_regs[i] = Some(r);
        }
    }
    for (i, arg) in args.iter().enumerate() {
        let (instr, is_const) = match &arg.kind {
            ArgKind::Hyper => continue,
            ArgKind::Input => (Instr::Input { arg: i }, false),
            ArgKind::Param { .. } => (Instr::Param { arg: i }, false),
            ArgKind::State => {
                let init = match &init_attrs[i] {
                    None => Some(a.emit(Instr::Lit(0.0), arg.span, true)),
                    Some(InitForm::Runtime) => None,
                    Some(InitForm::Expr(e)) => {
                        let r = a.expr(e)?;
                        if !a.is_const[r] {
                            return Err(AnalysisError::new(
                                e.span(),
                                format!("the initial value of state `{}` must be a constant expression", arg.name),
                            )
                            .help("use literals and hyperparameters (`f32` arguments) only, or `State<Runtime>` for a value supplied at run time"));
                        }
                        Some(r)
                    }
                };
                (Instr::State { arg: i, init }, false)
            }
        };
        let r = a.emit(instr, arg.span, is_const);
        a.arg_regs[i] = Some(r);
    }

    let (ret_types, ret_span) = return_roles(sig, &args)?;
    let values = a.body(&f.block, ret_types.len(), ret_span)?;
    let mut results = Vec::with_capacity(values.len());
    let mut out_index = 0;
    // Names an unnamed output may not take: arguments, named outputs, outputs named so far.
    let mut taken: HashSet<String> = args.iter().map(|a| a.name.clone()).collect();
    for t in &ret_types {
        if let RetType::Output(Some(m)) = t {
            taken.insert(m.clone());
        }
    }
    for (ty, (value, vspan, ident)) in ret_types.iter().zip(values) {
        let role = match ty {
            RetType::State(j) => Role::State(*j),
            RetType::Output(Some(name)) => Role::Output(name.clone()),
            RetType::Output(None) => {
                // Named after the returned variable when that is a fresh name.
                let taken = |n: &str| taken.contains(n);
                let name = match ident {
                    Some(n) if !taken(&n) => n,
                    _ => {
                        let mut i = out_index;
                        loop {
                            let n = format!("out{i}");
                            if !taken(&n) {
                                break n;
                            }
                            i += 1;
                        }
                    }
                };
                Role::Output(name)
            }
        };
        if let Role::Output(n) = &role {
            taken.insert(n.clone());
            out_index += 1;
        }
        results.push(ResultDef {
            role,
            value,
            span: vspan,
        });
    }

    let program = a.program;
    Ok(CoreDef {
        name: sig.ident.unraw().to_string(),
        name_span: sig.ident.span(),
        description: doc_string(&f.attrs),
        vis: f.vis.clone(),
        args,
        program,
        results,
    })
}

fn unsupported_fn_modifier(span: Span, what: &str) -> AnalysisError {
    AnalysisError::new(span, format!("a neuron core cannot be `{what}`"))
        .help("write a plain `fn`: it describes one time step and is compiled, not called")
}

/// The fn's doc comments as a description.
pub fn doc_string(attrs: &[syn::Attribute]) -> String {
    let mut lines = Vec::new();
    for attr in attrs {
        if !attr.path().is_ident("doc") {
            continue;
        }
        if let syn::Meta::NameValue(nv) = &attr.meta
            && let syn::Expr::Lit(syn::ExprLit {
                lit: syn::Lit::Str(s),
                ..
            }) = &nv.value
        {
            let v = s.value();
            for line in v.split('\n') {
                lines.push(
                    line.strip_prefix(' ')
                        .unwrap_or(line)
                        .trim_end_matches('\r')
                        .to_string(),
                );
            }
        }
    }
    lines.join("\n").trim().to_string()
}

enum InitForm {
    Expr(Box<syn::Expr>),
    Runtime,
}

fn ident_name(id: &syn::Ident) -> String {
    id.unraw().to_string()
}

/// The single identifier of a path type (`Input`, `State<..>`), with its generic arguments.
fn simple_type(
    ty: &syn::Type,
) -> Option<(&syn::Ident, Option<&syn::AngleBracketedGenericArguments>)> {
    let syn::Type::Path(tp) = ty else { return None };
    if tp.qself.is_some() {
        return None;
    }
    let seg = tp.path.segments.last()?;
    let args = match &seg.arguments {
        syn::PathArguments::None => None,
        syn::PathArguments::AngleBracketed(a) => Some(a),
        syn::PathArguments::Parenthesized(_) => return None,
    };
    Some((&seg.ident, args))
}

fn analyze_arg(input: &syn::FnArg) -> Result<(ArgDef, Option<InitForm>)> {
    let pt = match input {
        syn::FnArg::Receiver(r) => {
            return Err(
                AnalysisError::new(r.span(), "a neuron core cannot take `self`")
                    .help(format!("declare its arguments with the types {ARG_TYPES}")),
            );
        }
        syn::FnArg::Typed(pt) => pt,
    };
    let name = match &*pt.pat {
        syn::Pat::Ident(pi) => {
            if let Some(m) = &pi.mutability {
                return Err(AnalysisError::new(
                    m.span(),
                    "arguments of a neuron core cannot be `mut`: mutation is not allowed",
                )
                .help(
                    "bind a new value with `let` instead (shadowing is allowed): `let v = v + x;`",
                ));
            }
            if pi.by_ref.is_some() || pi.subpat.is_some() {
                return Err(
                    AnalysisError::new(pi.span(), "unsupported argument pattern")
                        .help("name each argument with a plain identifier"),
                );
            }
            ident_name(&pi.ident)
        }
        other => {
            return Err(
                AnalysisError::new(other.span(), "unsupported argument pattern")
                    .help("name each argument with a plain identifier"),
            );
        }
    };
    let span = pt.pat.span();
    let mut init = None;
    for attr in &pt.attrs {
        if attr.path().is_ident("init") {
            let e: syn::Expr = attr.parse_args().map_err(|e| {
                AnalysisError::new(attr.span(), format!("cannot read `#[init(..)]`: {e}"))
                    .help("write `#[init(0.5)]`, `#[init(-v_th)]` or `#[init(runtime)]`")
            })?;
            init = Some(match &e {
                syn::Expr::Path(p) if p.path.is_ident("runtime") || p.path.is_ident("Runtime") => {
                    InitForm::Runtime
                }
                _ => InitForm::Expr(Box::new(e)),
            });
        } else {
            return Err(
                AnalysisError::new(attr.span(), "unsupported attribute on an argument").help(
                    "only `#[init(value)]` (the initial value of a state) is allowed on arguments",
                ),
            );
        }
    }

    let bad_type = |ty: &syn::Type| {
        let got = quote::ToTokens::to_token_stream(ty).to_string();
        let mut e = AnalysisError::new(
            ty.span(),
            format!("argument `{name}` has unsupported type `{got}`"),
        );
        let cands = ["Input", "State", "Param", "FixedParam", "f32"];
        let hint = simple_type(ty).and_then(|(id, _)| funcs::nearest(&id.to_string(), cands));
        e = e.help(match hint {
            Some(h) => format!("did you mean `{h}`? allowed: {ARG_TYPES}"),
            None => format!("allowed types: {ARG_TYPES}"),
        });
        e
    };
    let ty = &*pt.ty;
    let Some((id, generics)) = simple_type(ty) else {
        return Err(bad_type(ty));
    };
    let tname = id.to_string();
    let generic_list: Vec<&syn::GenericArgument> = generics
        .map(|g| g.args.iter().collect())
        .unwrap_or_default();
    let kind = match tname.as_str() {
        "Input" | "f32" => {
            if let Some(g) = generics {
                return Err(AnalysisError::new(
                    g.span(),
                    format!("`{tname}` takes no generic arguments"),
                )
                .help(format!("write `{name}: {tname}`")));
            }
            if init.is_some() {
                return Err(AnalysisError::new(
                    span,
                    "`#[init(..)]` only applies to states",
                ));
            }
            if tname == "Input" {
                ArgKind::Input
            } else {
                ArgKind::Hyper
            }
        }
        "State" => {
            match generic_list.as_slice() {
                [] => {}
                [g] => {
                    if init.is_some() {
                        return Err(AnalysisError::new(
                            g.span(),
                            format!("state `{name}` has two initial values"),
                        )
                        .help("use either `State<init>` or `#[init(init)]`"));
                    }
                    init = Some(state_init_generic(g)?);
                }
                [_, extra, ..] => {
                    return Err(AnalysisError::new(extra.span(), "`State` takes at most one generic argument, its initial value")
                        .help("write `State`, `State<0.5>`, `State<{ -1.0 }>`, `State<v_reset>` or `State<Runtime>`"));
                }
            }
            ArgKind::State
        }
        "Param" | "FixedParam" => {
            if init.is_some() {
                return Err(AnalysisError::new(
                    span,
                    "`#[init(..)]` only applies to states",
                ));
            }
            let kind = match generic_list.as_slice() {
                [] => ParamKindDef::Fixed(ParamKind::Shared),
                [g] => param_kind_generic(g)?,
                [_, extra, ..] => {
                    return Err(AnalysisError::new(extra.span(), format!("`{tname}` takes at most one generic argument, its kind"))
                        .help("write `Param<Shared>`, `Param<PerNeuron>`, `Param<PerTime>` or `Param<Dynamic>`"));
                }
            };
            ArgKind::Param {
                kind,
                learnable: tname == "Param",
            }
        }
        _ => return Err(bad_type(ty)),
    };
    Ok((ArgDef { name, span, kind }, init))
}

fn state_init_generic(g: &syn::GenericArgument) -> Result<InitForm> {
    Ok(match g {
        syn::GenericArgument::Const(e) => match e {
            syn::Expr::Block(b) if b.block.stmts.len() == 1 => match &b.block.stmts[0] {
                syn::Stmt::Expr(inner, None) => InitForm::Expr(Box::new(inner.clone())),
                _ => InitForm::Expr(Box::new(e.clone())),
            },
            _ => InitForm::Expr(Box::new(e.clone())),
        },
        syn::GenericArgument::Type(syn::Type::Path(p)) if p.qself.is_none() => {
            if p.path.is_ident("Runtime") {
                InitForm::Runtime
            } else {
                InitForm::Expr(Box::new(syn::Expr::Path(syn::ExprPath {
                    attrs: vec![],
                    qself: None,
                    path: p.path.clone(),
                })))
            }
        }
        other => {
            return Err(AnalysisError::new(other.span(), "unsupported initial value for a state")
                .help("write `State<0.5>`, `State<{ -1.0 }>`, `State<v_reset>` (a hyperparameter), `State<Runtime>` or use `#[init(expr)]`"));
        }
    })
}

fn param_kind_generic(g: &syn::GenericArgument) -> Result<ParamKindDef> {
    let kinds = ["Shared", "PerNeuron", "PerTime", "Dynamic"];
    if let syn::GenericArgument::Type(syn::Type::Path(p)) = g
        && let Some(id) = p.path.get_ident()
    {
        let s = id.to_string();
        return Ok(match s.as_str() {
            "Shared" => ParamKindDef::Fixed(ParamKind::Shared),
            "PerNeuron" => ParamKindDef::Fixed(ParamKind::PerNeuron),
            "PerTime" => ParamKindDef::Fixed(ParamKind::PerTime),
            "Dynamic" => ParamKindDef::Dynamic,
            _ => {
                let mut e = AnalysisError::new(id.span(), format!("unknown param kind `{s}`"));
                e = e.help(match funcs::nearest(&s, kinds) {
                    Some(k) => format!("did you mean `{k}`? kinds: Shared (one scalar), PerNeuron ([N]), PerTime ([T]), Dynamic (taken from the value's shape)"),
                    None => "kinds: Shared (one scalar), PerNeuron ([N]), PerTime ([T]), Dynamic (taken from the value's shape)".into(),
                });
                return Err(e);
            }
        });
    }
    Err(AnalysisError::new(g.span(), "unsupported param kind")
        .help("write `Param<Shared>`, `Param<PerNeuron>`, `Param<PerTime>` or `Param<Dynamic>`"))
}

enum RetType {
    Output(Option<String>),
    State(usize),
}

/// The roles of the return type's elements.
fn return_roles(sig: &syn::Signature, args: &[ArgDef]) -> Result<(Vec<RetType>, Span)> {
    let states: Vec<&ArgDef> = args.iter().filter(|a| a.kind == ArgKind::State).collect();
    let ty = match &sig.output {
        syn::ReturnType::Default => {
            return Err(AnalysisError::new(
                sig.paren_token.span.join(),
                "a neuron core needs a return type",
            )
            .help("return the outputs, then the new value of every state: `-> (Output, State)`"));
        }
        syn::ReturnType::Type(_, ty) => &**ty,
    };
    let elems: Vec<&syn::Type> = match ty {
        syn::Type::Tuple(t) => t.elems.iter().collect(),
        syn::Type::Paren(p) => vec![&*p.elem],
        other => vec![other],
    };
    let mut roles = Vec::new();
    let mut named_states = Vec::new();
    let mut is_named = vec![false; states.len()];
    let state_index: HashMap<&str, usize> = states
        .iter()
        .enumerate()
        .map(|(j, s)| (s.name.as_str(), j))
        .collect();
    let mut unnamed_states = 0usize;
    for el in &elems {
        let Some((id, generics)) = simple_type(el) else {
            return Err(bad_return(el));
        };
        let gname = match generics.map(|g| g.args.iter().collect::<Vec<_>>()) {
            None => None,
            Some(list) => match list.as_slice() {
                [syn::GenericArgument::Type(syn::Type::Path(p))]
                    if p.path.get_ident().is_some() =>
                {
                    Some((ident_name(p.path.get_ident().unwrap()), p.span()))
                }
                _ => {
                    return Err(AnalysisError::new(
                        generics.span(),
                        "unsupported generic argument in the return type",
                    )
                    .help("name an output with `Output<name>` or a state with `State<name>`"));
                }
            },
        };
        match id.to_string().as_str() {
            "Output" => roles.push(RetType::Output(gname.map(|(n, _)| n))),
            "State" => match gname {
                Some((n, sp)) => {
                    let Some(&j) = state_index.get(n.as_str()) else {
                        let declared = states
                            .iter()
                            .map(|s| format!("`{}`", s.name))
                            .collect::<Vec<_>>()
                            .join(", ");
                        return Err(
                            AnalysisError::new(sp, format!("no state named `{n}`")).help(format!(
                                "declared states: {}",
                                if declared.is_empty() {
                                    "none".into()
                                } else {
                                    declared
                                }
                            )),
                        );
                    };
                    if std::mem::replace(&mut is_named[j], true) {
                        return Err(AnalysisError::new(
                            sp,
                            format!("state `{n}` is returned twice"),
                        )
                        .help("return the new value of each state once"));
                    }
                    named_states.push(j);
                    roles.push(RetType::State(j));
                }
                None => {
                    roles.push(RetType::State(unnamed_states));
                    unnamed_states += 1;
                }
            },
            _ => return Err(bad_return(el)),
        }
    }
    if !named_states.is_empty() && unnamed_states > 0 {
        return Err(AnalysisError::new(ty.span(), "name either every `State` in the return type or none")
            .help("`State<v>` names the state it updates; plain `State`s update the states in declaration order"));
    }
    let listed = named_states.len() + unnamed_states;
    if listed < states.len() {
        let missing: Vec<&str> = (0..states.len())
            .filter(|j| {
                if named_states.is_empty() {
                    *j >= unnamed_states
                } else {
                    !is_named[*j]
                }
            })
            .map(|j| states[j].name.as_str())
            .collect();
        let which = missing
            .iter()
            .map(|m| format!("`{m}`"))
            .collect::<Vec<_>>()
            .join(", ");
        return Err(AnalysisError::new(
            ty.span(),
            format!(
                "state {which} is never updated: the return type lists {listed} `State` but {} states are declared",
                states.len()
            ),
        )
        .help("return the outputs, then the new value of every state in declaration order, e.g. `-> (Output, State, State)`"));
    }
    if listed > states.len() {
        return Err(AnalysisError::new(
            ty.span(),
            format!(
                "the return type lists {listed} `State` but only {} states are declared",
                states.len()
            ),
        )
        .help(
            "each `State` in the return type is the new value of one declared `State` argument",
        ));
    }
    if roles.is_empty() {
        return Err(
            AnalysisError::new(ty.span(), "a neuron core must return something").help(
                "return the outputs, then the new value of every state: `-> (Output, State)`",
            ),
        );
    }
    Ok((roles, ty.span()))
}

fn bad_return(ty: &syn::Type) -> AnalysisError {
    let got = quote::ToTokens::to_token_stream(ty).to_string();
    AnalysisError::new(ty.span(), format!("unsupported return type `{got}`"))
        .help("the return type is `Output`, `State` or a tuple of them (outputs first, then the new states in declaration order); `Output<name>` names an output")
}

struct Analyzer<'a> {
    args: &'a [ArgDef],
    program: Program,
    is_const: Vec<bool>,
    arg_regs: Vec<Option<Reg>>,
    /// Argument positions by name.
    arg_index: HashMap<String, usize>,
    /// The registers bound to each `let` name, innermost last.
    bound: HashMap<String, Vec<Reg>>,
    /// The names bound in each open scope, innermost scope last (to unbind them on exit).
    scopes: Vec<Vec<String>>,
}

/// The span from `a` to `b` (`a` where they cannot be joined, as in a proc macro on stable).
fn join(a: Span, b: Span) -> Span {
    a.join(b).unwrap_or(a)
}

impl Analyzer<'_> {
    fn emit(&mut self, instr: Instr, span: Span, is_const: bool) -> Reg {
        self.program.instrs.push(Step {
            instr,
            span,
            is_const,
        });
        self.is_const.push(is_const);
        self.program.instrs.len() - 1
    }

    /// The fn body: `let`s then the returned tuple. Returns each returned value with its span
    /// and the variable name when it is a bare identifier.
    fn body(
        &mut self,
        block: &syn::Block,
        count: usize,
        ret_span: Span,
    ) -> Result<Vec<(Reg, Span, Option<String>)>> {
        self.scopes.push(vec![]);
        let n = block.stmts.len();
        let mut result_expr: Option<&syn::Expr> = None;
        for (i, stmt) in block.stmts.iter().enumerate() {
            let last = i + 1 == n;
            match stmt {
                syn::Stmt::Expr(e, None) if last => result_expr = Some(e),
                syn::Stmt::Expr(syn::Expr::Return(r), _) if last => match &r.expr {
                    Some(e) => result_expr = Some(e),
                    None => {
                        return Err(AnalysisError::new(r.span(), "`return` without a value")
                            .help("end the body with the returned tuple, e.g. `(s, v)`"));
                    }
                },
                _ => self.stmt(stmt)?,
            }
        }
        let Some(e) = result_expr else {
            let span = block
                .stmts
                .last()
                .map(|s| s.span())
                .unwrap_or(block.brace_token.span.join());
            return Err(AnalysisError::new(span, "the body does not end with the returned values")
                .help("end the body with the returned tuple (no `;`), outputs first then new states, e.g. `(s, v)`"));
        };
        let elems: Vec<&syn::Expr> = match strip_parens(e) {
            syn::Expr::Tuple(t) => t.elems.iter().collect(),
            other => vec![other],
        };
        if elems.len() != count {
            return Err(AnalysisError::new(
                e.span(),
                format!("the body returns {} value(s) but the return type declares {count}", elems.len()),
            )
            .help(format!(
                "return exactly the values the return type lists, outputs first then new states (the return type is at {})",
                describe_span(ret_span)
            )));
        }
        let mut out = Vec::with_capacity(count);
        for el in elems {
            let ident = match strip_parens(el) {
                syn::Expr::Path(p) if p.qself.is_none() => p.path.get_ident().map(ident_name),
                _ => None,
            };
            if let syn::Expr::Tuple(t) = strip_parens(el) {
                return Err(
                    AnalysisError::new(t.span(), "nested tuples cannot be returned")
                        .help("return one flat tuple: outputs first, then new states"),
                );
            }
            let (r, span) = self.expr_at(el)?;
            out.push((r, span, ident));
        }
        self.close_scope();
        Ok(out)
    }

    fn stmt(&mut self, stmt: &syn::Stmt) -> Result<()> {
        match stmt {
            syn::Stmt::Local(local) => self.local(local),
            syn::Stmt::Item(item) => Err(AnalysisError::new(
                item.span(),
                "items (fn, struct, use, const ..) are not allowed inside a neuron core",
            )
            .help("compute constants with `let` or pass them as `f32` hyperparameters")),
            syn::Stmt::Macro(m) => Err(AnalysisError::new(
                m.span(),
                format!(
                    "macros (`{}!`) are not supported in a neuron core",
                    m.mac
                        .path
                        .segments
                        .last()
                        .map(|s| s.ident.to_string())
                        .unwrap_or_default()
                ),
            )
            .help(ALLOWED_SYNTAX)),
            syn::Stmt::Expr(e, _) => {
                // Reject what is wrong with the expression first (loops, mutation, returns).
                match strip_parens(e) {
                    syn::Expr::Return(r) => Err(early_return(r.span())),
                    syn::Expr::Assign(_)
                    | syn::Expr::Binary(syn::ExprBinary {
                        op:
                            syn::BinOp::AddAssign(_)
                            | syn::BinOp::SubAssign(_)
                            | syn::BinOp::MulAssign(_)
                            | syn::BinOp::DivAssign(_)
                            | syn::BinOp::RemAssign(_)
                            | syn::BinOp::BitAndAssign(_)
                            | syn::BinOp::BitOrAssign(_)
                            | syn::BinOp::BitXorAssign(_)
                            | syn::BinOp::ShlAssign(_)
                            | syn::BinOp::ShrAssign(_),
                        ..
                    }) => Err(mutation(e.span())),
                    syn::Expr::ForLoop(_) | syn::Expr::While(_) | syn::Expr::Loop(_) => {
                        Err(a_loop(e.span()))
                    }
                    _ => {
                        self.expr(e)?;
                        Err(AnalysisError::new(e.span(), "this statement has no effect: only the returned values leave a neuron core")
                            .help("bind the value with `let name = ..;`, or return it"))
                    }
                }
            }
        }
    }

    fn local(&mut self, local: &syn::Local) -> Result<()> {
        let (pat, ty) = match &local.pat {
            syn::Pat::Type(pt) => (&*pt.pat, Some(&*pt.ty)),
            p => (p, None),
        };
        let name = match pat {
            syn::Pat::Ident(pi) => {
                if let Some(m) = &pi.mutability {
                    return Err(AnalysisError::new(m.span(), "`let mut` is not allowed: a neuron core cannot mutate values")
                        .help("remove `mut` and bind each new value with its own `let` (shadowing is allowed): `let v = v * 0.5;`"));
                }
                if pi.by_ref.is_some() || pi.subpat.is_some() {
                    return Err(AnalysisError::new(pi.span(), "unsupported `let` pattern")
                        .help("bind one value to one name: `let h = v + x;`"));
                }
                ident_name(&pi.ident)
            }
            syn::Pat::Tuple(t) => {
                return Err(AnalysisError::new(
                    t.span(),
                    "tuple patterns are not supported in `let`",
                )
                .help("bind one value per `let`: `let a = ..; let b = ..;`"));
            }
            syn::Pat::Wild(w) => {
                return Err(AnalysisError::new(
                    w.span(),
                    "`let _` discards a value: it has no effect in a neuron core",
                )
                .help("remove the statement"));
            }
            other => {
                return Err(
                    AnalysisError::new(other.span(), "unsupported `let` pattern")
                        .help("bind one value to one name: `let h = v + x;`"),
                );
            }
        };
        if let Some(ty) = ty
            && !matches!(simple_type(ty), Some((id, None)) if id == "f32")
        {
            return Err(
                AnalysisError::new(ty.span(), "every value in a neuron core is an `f32`")
                    .help("write `let h: f32 = ..` or leave the type out"),
            );
        }
        let Some(init) = &local.init else {
            return Err(
                AnalysisError::new(local.span(), format!("`let {name}` needs a value")).help(
                    format!("write `let {name} = expr;`: values cannot be assigned later"),
                ),
            );
        };
        if let Some((_, diverge)) = &init.diverge {
            return Err(
                AnalysisError::new(diverge.span(), "`let .. else` is not supported")
                    .help("write `let name = expr;`"),
            );
        }
        let r = self.expr(&init.expr)?;
        self.bound.entry(name.clone()).or_default().push(r);
        self.scopes.last_mut().expect("a scope is open").push(name);
        Ok(())
    }

    fn lookup(&self, name: &str) -> Option<Reg> {
        if let Some(r) = self.bound.get(name).and_then(|regs| regs.last()) {
            return Some(*r);
        }
        self.arg_index.get(name).and_then(|&i| self.arg_regs[i])
    }

    fn visible_names(&self) -> Vec<String> {
        let mut v: Vec<String> = self.args.iter().map(|a| a.name.clone()).collect();
        for s in &self.scopes {
            v.extend(s.iter().cloned());
        }
        v
    }

    fn close_scope(&mut self) {
        for name in self.scopes.pop().expect("a scope is open") {
            if let Some(regs) = self.bound.get_mut(&name) {
                regs.pop();
            }
        }
    }

    fn apply(&mut self, op: Op, args: Vec<Reg>, span: Span) -> Reg {
        let c = args.iter().all(|&a| self.is_const[a]);
        self.emit(Instr::Apply { op, args }, span, c)
    }

    fn expr(&mut self, e: &syn::Expr) -> Result<Reg> {
        Ok(self.expr_at(e)?.0)
    }

    /// An expression's register and span. Spans are joined from the parts' spans as the parts
    /// are analyzed: `Spanned::span` re-prints the whole subtree, quadratic over a tree.
    fn expr_at(&mut self, e: &syn::Expr) -> Result<(Reg, Span)> {
        use syn::Expr as E;
        match e {
            E::Paren(p) => Ok((self.expr(&p.expr)?, p.paren_token.span.join())),
            E::Group(g) => self.expr_at(&g.expr),
            E::Lit(l) => {
                let span = l.lit.span();
                let v = literal(&l.lit)?;
                Ok((self.emit(Instr::Lit(v), span, true), span))
            }
            E::Path(p) => Ok((self.path(p)?, p.span())),
            E::Binary(b) => self.binary(b),
            E::Unary(u) => {
                let op = match u.op {
                    syn::UnOp::Neg(_) => Op::Neg,
                    syn::UnOp::Not(_) => Op::Not,
                    _ => {
                        return Err(AnalysisError::new(u.op.span(), "dereference (`*`) is not supported")
                            .help("values in a neuron core are plain `f32`s: use them directly"));
                    }
                };
                let (x, x_span) = self.expr_at(&u.expr)?;
                let span = join(u.op.span(), x_span);
                Ok((self.apply(op, vec![x], span), span))
            }
            E::If(i) => self.if_expr(i),
            E::Block(b) => {
                if b.label.is_some() {
                    return Err(AnalysisError::new(b.span(), "labelled blocks are not supported").help(ALLOWED_SYNTAX));
                }
                Ok((self.block(&b.block)?, b.block.brace_token.span.join()))
            }
            E::Call(c) => self.call(c),
            E::MethodCall(m) => self.method_call(m),
            E::Cast(c) => {
                if matches!(simple_type(&c.ty), Some((id, None)) if id == "f32") {
                    let (r, span) = self.expr_at(&c.expr)?;
                    Ok((r, join(span, c.ty.span())))
                } else {
                    Err(AnalysisError::new(c.ty.span(), "every value in a neuron core is an `f32`")
                        .help("only `as f32` is allowed (and does nothing)"))
                }
            }
            E::ForLoop(_) | E::While(_) | E::Loop(_) | E::Break(_) | E::Continue(_) => Err(a_loop(e.span())),
            E::Return(_) => Err(early_return(e.span())),
            E::Assign(_) => Err(mutation(e.span())),
            E::Match(m) => Err(AnalysisError::new(m.match_token.span, "`match` is not supported in a neuron core")
                .help("use `if c { a } else { b }` (a select) or `select(c, a, b)`")),
            E::Struct(s) => Err(AnalysisError::new(s.span(), "a struct expression can only appear as the surrogate of `spike` or `surrogate`")
                .help("write `spike(x, Surrogate::ATan { alpha: 2.0 })`")),
            E::Tuple(t) => Err(AnalysisError::new(t.span(), "tuples can only be returned, at the end of the body")
                .help("bind each value with its own `let`")),
            E::Macro(m) => Err(AnalysisError::new(m.span(), format!(
                "macros (`{}!`) are not supported in a neuron core",
                m.mac.path.segments.last().map(|s| s.ident.to_string()).unwrap_or_default()
            ))
            .help(ALLOWED_SYNTAX)),
            E::Closure(_) => Err(AnalysisError::new(e.span(), "closures are not supported in a neuron core").help(ALLOWED_SYNTAX)),
            E::Index(_) => Err(AnalysisError::new(e.span(), "indexing is not supported: a neuron core describes one neuron, every value is a scalar")
                .help("use per-neuron or per-time params (`Param<PerNeuron>`) for values that vary")),
            E::Field(f) => Err(AnalysisError::new(f.span(), "field access is not supported in a neuron core")
                .help("hyperparameters are plain `f32` arguments: use them by name")),
            _ => Err(AnalysisError::new(e.span(), "unsupported syntax in a neuron core").help(ALLOWED_SYNTAX)),
        }
    }

    fn block(&mut self, block: &syn::Block) -> Result<Reg> {
        self.scopes.push(vec![]);
        let n = block.stmts.len();
        let mut value = None;
        for (i, stmt) in block.stmts.iter().enumerate() {
            match stmt {
                syn::Stmt::Expr(e, None) if i + 1 == n => value = Some(self.expr(e)?),
                _ => self.stmt(stmt)?,
            }
        }
        self.close_scope();
        value.ok_or_else(|| {
            AnalysisError::new(block.span(), "this block has no value")
                .help("end the block with an expression (no `;`)")
        })
    }

    fn if_expr(&mut self, i: &syn::ExprIf) -> Result<(Reg, Span)> {
        if let syn::Expr::Let(l) = &*i.cond {
            return Err(
                AnalysisError::new(l.span(), "`if let` is not supported in a neuron core")
                    .help("use a condition such as `if v > 1.0 { a } else { b }`"),
            );
        }
        let Some((_, else_branch)) = &i.else_branch else {
            return Err(
                AnalysisError::new(i.span(), "an `if` without `else` has no value")
                    .help("`if c { a } else { b }` is a select: write both branches"),
            );
        };
        let c = self.expr(&i.cond)?;
        let a = self.block(&i.then_branch)?;
        let (b, else_span) = self.expr_at(else_branch)?;
        let span = join(i.if_token.span, else_span);
        Ok((self.apply(Op::Select, vec![c, a, b], span), span))
    }

    fn binary(&mut self, b: &syn::ExprBinary) -> Result<(Reg, Span)> {
        use syn::BinOp as B;
        let op = match b.op {
            B::Add(_) => Op::Add,
            B::Sub(_) => Op::Sub,
            B::Mul(_) => Op::Mul,
            B::Div(_) => Op::Div,
            B::Rem(_) => Op::Fmod,
            B::Eq(_) => Op::Eq,
            B::Ne(_) => Op::Ne,
            B::Lt(_) => Op::Lt,
            B::Le(_) => Op::Le,
            B::Gt(_) => Op::Gt,
            B::Ge(_) => Op::Ge,
            B::And(_) => Op::And,
            B::Or(_) => Op::Or,
            B::BitAnd(_) | B::BitOr(_) | B::BitXor(_) | B::Shl(_) | B::Shr(_) => {
                return Err(AnalysisError::new(
                    b.op.span(),
                    "bitwise operators are not supported on `f32`",
                )
                .help("combine masks with `&&`, `||` and `!`"));
            }
            _ => return Err(mutation(b.span())),
        };
        let (l, l_span) = self.expr_at(&b.left)?;
        let (r, r_span) = self.expr_at(&b.right)?;
        let span = join(l_span, r_span);
        Ok((self.apply(op, vec![l, r], span), span))
    }

    fn path(&mut self, p: &syn::ExprPath) -> Result<Reg> {
        let span = p.span();
        if p.qself.is_none()
            && let Some(id) = p.path.get_ident()
        {
            let name = ident_name(id);
            if let Some(r) = self.lookup(&name) {
                return Ok(r);
            }
            if let Some(arg) = self.args.iter().find(|a| a.name == name) {
                return Err(AnalysisError::new(span, format!("`{}` is not a constant: an initial value can only use literals and hyperparameters", arg.name))
                    .help("use `State<Runtime>` for an initial value supplied at run time"));
            }
            let names = self.visible_names();
            let mut e = AnalysisError::new(
                span,
                format!("cannot find `{name}`: it is not an argument or a `let` binding in scope"),
            );
            e = e.help(
                match funcs::nearest(&name, names.iter().map(String::as_str)) {
                    Some(n) => format!("did you mean `{n}`?"),
                    None if funcs::find(&name).is_some() => {
                        format!("`{name}` is a function: call it, e.g. `{name}(x)`")
                    }
                    None => "values are the fn's arguments and earlier `let` bindings".into(),
                },
            );
            return Err(e);
        }
        let segs: Vec<String> = p
            .path
            .segments
            .iter()
            .map(|s| s.ident.to_string())
            .collect();
        if let Some(c) = funcs::named_constant(&segs) {
            return Ok(self.emit(Instr::Lit(c), span, true));
        }
        if segs.iter().any(|s| s == "Surrogate") {
            return Err(AnalysisError::new(
                span,
                "a surrogate can only appear as the second argument of `spike` or `surrogate`",
            )
            .help("write `spike(x, Surrogate::ATan { alpha: 2.0 })`"));
        }
        Err(AnalysisError::new(span, format!("unknown path `{}`", segs.join("::")))
            .help("known constants are `f32::INFINITY`, `f32::NEG_INFINITY`, `f32::MAX`, `f32::EPSILON`, .. and `f32::consts::PI`, `E`, `LN_2`, .."))
    }

    fn call(&mut self, c: &syn::ExprCall) -> Result<(Reg, Span)> {
        let syn::Expr::Path(p) = &*c.func else {
            return Err(
                AnalysisError::new(c.func.span(), "only named functions can be called")
                    .help(ALLOWED_SYNTAX),
            );
        };
        let segs: Vec<String> = p
            .path
            .segments
            .iter()
            .map(|s| ident_name(&s.ident))
            .collect();
        // `f32::exp(x)` is the method form written as a path.
        let name = match segs.as_slice() {
            [n] => n.clone(),
            [f, n] if f == "f32" => n.clone(),
            _ => {
                return Err(AnalysisError::new(
                    p.span(),
                    format!("unknown function `{}`", segs.join("::")),
                )
                .help("call the math functions by name, e.g. `exp(x)` or `x.exp()`"));
            }
        };
        let args: Vec<&syn::Expr> = c.args.iter().collect();
        let close = c.paren_token.span.close();
        self.call_named(&name, p.span(), &args, close, false)
    }

    fn method_call(&mut self, m: &syn::ExprMethodCall) -> Result<(Reg, Span)> {
        if let Some(t) = &m.turbofish {
            return Err(
                AnalysisError::new(t.span(), "generic arguments are not supported here")
                    .help("write `x.exp()`"),
            );
        }
        let mut args: Vec<&syn::Expr> = vec![&m.receiver];
        args.extend(m.args.iter());
        self.call_named(
            &ident_name(&m.method),
            m.method.span(),
            &args,
            m.paren_token.span.close(),
            true,
        )
    }

    /// A call of `name` (a function's path, or a method after its receiver `args[0]`) whose
    /// argument list closes at `close`.
    fn call_named(
        &mut self,
        name: &str,
        name_span: Span,
        args: &[&syn::Expr],
        close: Span,
        method: bool,
    ) -> Result<(Reg, Span)> {
        let Some(f) = funcs::find(name) else {
            let mut e = AnalysisError::new(name_span, format!("unknown function `{name}`"));
            let all = funcs::FUNCS.iter().map(|f| f.name);
            e = e.help(match funcs::nearest(name, all) {
                Some(n) => format!(
                    "did you mean `{n}`? ({})",
                    funcs::find(n).map(|f| f.usage).unwrap_or_default()
                ),
                None => {
                    let mut names: Vec<&str> = funcs::FUNCS.iter().map(|f| f.name).collect();
                    names.sort_unstable();
                    format!("known functions: {}", names.join(", "))
                }
            });
            return Err(e);
        };
        let count_ok = args.len() == f.arity || (f.kind == FuncKind::Spike && args.len() == 1);
        if !count_ok {
            let (got, want) = if method {
                (args.len() - 1, f.arity - 1)
            } else {
                (args.len(), f.arity)
            };
            let s = |n: usize| if n == 1 { "" } else { "s" };
            return Err(AnalysisError::new(
                name_span,
                format!(
                    "`{name}` takes {want} argument{}{}, got {got}",
                    s(want),
                    if method { " besides the receiver" } else { "" }
                ),
            )
            .help(format!("write {}", f.usage)));
        }
        // The value arguments, in order (a surrogate is not one); the call's span starts at the
        // function's name, or at the receiver of a method.
        let values = match f.kind {
            FuncKind::Spike | FuncKind::Surrogate => &args[..1],
            _ => args,
        };
        let mut regs = Vec::with_capacity(values.len());
        let mut start = (!method).then_some(name_span);
        for a in values {
            let (r, span) = self.expr_at(a)?;
            start.get_or_insert(span);
            regs.push(r);
        }
        let span = join(start.unwrap_or(name_span), close);
        let reg = match f.kind {
            FuncKind::Op(op) => self.apply(op, regs, span),
            FuncKind::ClampMin | FuncKind::ClampMax => {
                let (x, bound) = (regs[0], regs[1]);
                let (lo, hi) = if f.kind == FuncKind::ClampMin {
                    (bound, self.emit(Instr::Lit(f32::INFINITY), span, true))
                } else {
                    (self.emit(Instr::Lit(f32::NEG_INFINITY), span, true), bound)
                };
                self.apply(Op::Clamp, vec![x, lo, hi], span)
            }
            FuncKind::Spike | FuncKind::Surrogate => {
                let x = regs[0];
                let (surrogate, spiking) = match args.get(1) {
                    Some(s) => self.surrogate(s)?,
                    None => (
                        SurrogateSpec {
                            name: "Sigmoid",
                            params: vec![],
                        },
                        true,
                    ),
                };
                if f.kind == FuncKind::Spike && !spiking {
                    return Err(AnalysisError::new(args[1].span(), "`spike` always spikes: `spiking: false` asks for the smooth primitive")
                        .help("write `surrogate(x, Surrogate::Sigmoid { alpha: 4.0, spiking: false })` for the primitive"));
                }
                let c = self.is_const[x];
                let instr = if spiking {
                    Instr::Spike { x, surrogate }
                } else {
                    Instr::Primitive { x, surrogate }
                };
                self.emit(instr, span, c)
            }
        };
        Ok((reg, span))
    }

    /// `Surrogate::Name`, `Surrogate::Name { field: value, .., spiking: bool }`.
    fn surrogate(&mut self, e: &syn::Expr) -> Result<(SurrogateSpec, bool)> {
        let (path, fields) = match strip_parens(e) {
            syn::Expr::Path(p) if p.qself.is_none() => (&p.path, None),
            syn::Expr::Struct(s) if s.qself.is_none() => {
                if let Some(r) = &s.rest {
                    return Err(AnalysisError::new(
                        r.span(),
                        "`..` is not supported here: omitted fields take SpikingJelly's defaults",
                    )
                    .help("remove `..`"));
                }
                (&s.path, Some(&s.fields))
            }
            other => {
                return Err(AnalysisError::new(
                    other.span(),
                    "expected a surrogate such as `Surrogate::ATan { alpha: 2.0 }`",
                )
                .help(format!("surrogates: {}", Surrogate::NAMES.join(", "))));
            }
        };
        let segs: Vec<String> = path.segments.iter().map(|s| s.ident.to_string()).collect();
        let n = segs.len();
        if n < 2 || segs[n - 2] != "Surrogate" {
            return Err(AnalysisError::new(
                path.span(),
                "expected a surrogate such as `Surrogate::ATan { alpha: 2.0 }`",
            )
            .help(format!(
                "write `Surrogate::Name`; surrogates: {}",
                Surrogate::NAMES.join(", ")
            )));
        }
        let sname = &segs[n - 1];
        let Some(&name) = Surrogate::NAMES.iter().find(|k| *k == sname) else {
            let last = path.segments.last().expect("n >= 2");
            let mut err =
                AnalysisError::new(last.ident.span(), format!("unknown surrogate `{sname}`"));
            err = err.help(
                match funcs::nearest(sname, Surrogate::NAMES.iter().copied()) {
                    Some(k) => format!(
                        "did you mean `{k}`? surrogates: {}",
                        Surrogate::NAMES.join(", ")
                    ),
                    None => format!("surrogates: {}", Surrogate::NAMES.join(", ")),
                },
            );
            return Err(err);
        };
        let defaults = Surrogate::default_for(name).expect("a known name");
        let allowed: Vec<&'static str> = defaults.params().iter().map(|(p, _)| *p).collect();
        let mut params: Vec<(&'static str, Reg)> = Vec::new();
        let mut spiking = true;
        if let Some(fields) = fields {
            for fv in fields {
                let syn::Member::Named(id) = &fv.member else {
                    return Err(AnalysisError::new(
                        fv.member.span(),
                        "surrogate parameters are named",
                    )
                    .help(format!(
                        "`{name}` takes: {}",
                        if allowed.is_empty() {
                            "no parameters".into()
                        } else {
                            allowed.join(", ")
                        }
                    )));
                };
                let field = ident_name(id);
                if field == "spiking" {
                    spiking = match strip_parens(&fv.expr) {
                        syn::Expr::Lit(syn::ExprLit {
                            lit: syn::Lit::Bool(b),
                            ..
                        }) => b.value,
                        other => {
                            return Err(AnalysisError::new(
                                other.span(),
                                "`spiking` must be `true` or `false`",
                            )
                            .help("`spiking: false` selects the smooth primitive form"));
                        }
                    };
                    continue;
                }
                let canonical = if field == "t_period" {
                    "T"
                } else {
                    field.as_str()
                };
                let Some(&pname) = allowed.iter().find(|p| **p == canonical) else {
                    let mut err = AnalysisError::new(
                        id.span(),
                        format!("surrogate `{name}` has no parameter `{field}`"),
                    );
                    let mut takes: Vec<&str> = allowed.clone();
                    takes.push("spiking");
                    err = err.help(match funcs::nearest(&field, takes.iter().copied()) {
                        Some(k) => {
                            format!("did you mean `{k}`? `{name}` takes: {}", takes.join(", "))
                        }
                        None => format!("`{name}` takes: {}", takes.join(", ")),
                    });
                    return Err(err);
                };
                if params.iter().any(|(p, _)| *p == pname) {
                    return Err(AnalysisError::new(
                        id.span(),
                        format!("parameter `{field}` is given twice"),
                    ));
                }
                let r = self.expr(&fv.expr)?;
                if !self.is_const[r] {
                    return Err(AnalysisError::new(
                        fv.expr.span(),
                        format!("surrogate parameter `{field}` must be a constant expression"),
                    )
                    .help("use literals and hyperparameters (`f32` arguments) only"));
                }
                params.push((pname, r));
            }
        }
        // Literal parameters are checked now, so that bad values are compile errors.
        if params
            .iter()
            .all(|(_, r)| matches!(self.program.instrs[*r].instr, Instr::Lit(_)))
        {
            let values: Vec<(&str, f64)> = params
                .iter()
                .map(|(p, r)| match self.program.instrs[*r].instr {
                    Instr::Lit(v) => (*p, v as f64),
                    _ => unreachable!("checked above"),
                })
                .collect();
            let s = Surrogate::from_name_and_params(name, &values)
                .map_err(|err| AnalysisError::new(e.span(), err.to_string()))?;
            if !spiking && !s.has_primitive() {
                return Err(AnalysisError::new(e.span(), format!("surrogate `{name}` has no smooth primitive form (SpikingJelly defines none)"))
                    .help("use it with `spike(x, ..)` (spiking)"));
            }
        }
        Ok((SurrogateSpec { name, params }, spiking))
    }
}

fn strip_parens(e: &syn::Expr) -> &syn::Expr {
    match e {
        syn::Expr::Paren(p) => strip_parens(&p.expr),
        syn::Expr::Group(g) => strip_parens(&g.expr),
        other => other,
    }
}

fn literal(lit: &syn::Lit) -> Result<f32> {
    let bad_suffix = |span: Span, s: &str| {
        AnalysisError::new(
            span,
            format!("literal suffix `{s}` is not supported: every value is an `f32`"),
        )
        .help("write the literal without a suffix, or with `f32`")
    };
    match lit {
        syn::Lit::Float(f) => {
            if !matches!(f.suffix(), "" | "f32") {
                return Err(bad_suffix(f.span(), f.suffix()));
            }
            let v = f
                .base10_digits()
                .parse::<f64>()
                .map_err(|e| AnalysisError::new(f.span(), format!("bad float literal: {e}")))?;
            crate::num::user_f32(v).map_err(|why| AnalysisError::new(f.span(), why))
        }
        syn::Lit::Int(i) => {
            if !matches!(i.suffix(), "" | "f32") {
                return Err(bad_suffix(i.span(), i.suffix()));
            }
            let v = i
                .base10_digits()
                .parse::<f64>()
                .map_err(|e| AnalysisError::new(i.span(), format!("bad integer literal: {e}")))?;
            crate::num::user_f32(v).map_err(|why| AnalysisError::new(i.span(), why))
        }
        syn::Lit::Bool(b) => Ok(if b.value { 1.0 } else { 0.0 }),
        other => Err(AnalysisError::new(
            other.span(),
            "only numeric and boolean literals are supported",
        )
        .help("every value in a neuron core is an `f32`")),
    }
}

fn a_loop(span: Span) -> AnalysisError {
    AnalysisError::new(span, "loops are not allowed in a neuron core: it describes a single time step")
        .help("the scan runs the step over time for you; unroll a fixed number of iterations by hand with `let`")
}

fn early_return(span: Span) -> AnalysisError {
    AnalysisError::new(span, "early `return` is not allowed in a neuron core")
        .help("every path computes all values: use `if c { a } else { b }` (a select) and end the body with the returned tuple")
}

fn mutation(span: Span) -> AnalysisError {
    AnalysisError::new(
        span,
        "assignment and mutation are not allowed in a neuron core",
    )
    .help("bind the new value with `let` instead (shadowing is allowed): `let v = v + x;`")
}

fn describe_span(span: Span) -> String {
    let s = span.start();
    if s.line == 0 {
        "the fn signature".into()
    } else {
        format!("line {}", s.line)
    }
}
