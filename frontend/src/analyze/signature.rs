//! Signature analysis: the core fn's attributes and modifiers, its arguments (inputs, states and
//! their initial values, params, hyperparameters) and the roles of its returned values; then the
//! body, analysed by [`Analyzer`](super::body::Analyzer).

use std::collections::{HashMap, HashSet};

use flexsn_ir::ParamKind;
use proc_macro2::Span;
use syn::ext::IdentExt;
use syn::spanned::Spanned;

use super::body::Analyzer;
use super::model::{
    AnalysisError, ArgDef, ArgKind, CoreDef, Instr, ParamKindDef, Program, Result, ResultDef, Role,
};
use super::syntax::{ident_name, simple_type};
use crate::funcs;

const ARG_TYPES: &str = "`Input`, `State`, `State<init>`, `Param`, `Param<Shared | PerNeuron | PerTime | Dynamic>`, `FixedParam<..>` or `f32` (a hyperparameter)";

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
