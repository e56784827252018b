//! Printing a step graph as a core in Rust syntax, which the frontend reads back.

use std::fmt::Write;

use flexsn_ir::{Op, ParamKind, StateInit, StepGraph};

/// Rust keywords, printed as raw identifiers (`r#type`).
const KEYWORDS: &[&str] = &[
    "as", "async", "await", "break", "const", "continue", "dyn", "else", "enum", "extern", "false",
    "fn", "for", "if", "impl", "in", "let", "loop", "match", "mod", "move", "mut", "pub", "ref",
    "return", "static", "struct", "trait", "true", "type", "unsafe", "use", "where", "while",
    "abstract", "become", "box", "do", "final", "gen", "macro", "override", "priv", "try",
    "typeof", "unsized", "virtual", "yield",
];

fn ident(name: &str) -> String {
    if KEYWORDS.contains(&name) {
        format!("r#{name}")
    } else {
        name.to_string()
    }
}

/// A constant as a Rust expression that reads back to the same bits.
fn literal(c: f32) -> String {
    if c.is_nan() {
        "f32::NAN".into()
    } else if c == f32::INFINITY {
        "f32::INFINITY".into()
    } else if c == f32::NEG_INFINITY {
        "f32::NEG_INFINITY".into()
    } else if c.is_sign_negative() {
        format!("({c:?})")
    } else {
        format!("{c:?}")
    }
}

/// Prints `g` as a `#[neuron]` fn in the syntax the frontend reads: one `let` per op node (in
/// node order), constants inline, outputs named with `Output<name>`, states returned in
/// declaration order. The description becomes doc comments.
///
/// Reading the text back with [`parse_core`](super::parse_core) gives `g` up to the frontend's
/// normalisation: leaves are declared first (inputs, states, params), constants are created
/// where first used, and ops over constants only are folded. Names that are not Rust
/// identifiers even in raw form (`self`, `super`, `crate`, `Self`, `_`) do not read back.
pub fn to_rust(g: &StepGraph) -> String {
    let mut s = String::new();
    for line in g.description().lines() {
        if line.is_empty() {
            s.push_str("///\n");
        } else {
            let _ = writeln!(s, "/// {line}");
        }
    }
    s.push_str("#[neuron]\n");
    let mut args = Vec::new();
    for d in g.inputs() {
        args.push(format!("{}: Input", ident(&d.name)));
    }
    for d in g.states() {
        let ty = match d.init {
            StateInit::Const(c) if c == 0.0 && c.is_sign_positive() => "State".to_string(),
            StateInit::Const(c) if c.is_finite() && c.is_sign_positive() => format!("State<{c:?}>"),
            StateInit::Const(c) => format!("State<{{ {} }}>", literal(c)),
            StateInit::Runtime => "State<Runtime>".to_string(),
        };
        args.push(format!("{}: {ty}", ident(&d.name)));
    }
    for d in g.params() {
        let base = if d.learnable { "Param" } else { "FixedParam" };
        let kind = match d.kind {
            ParamKind::Shared => "Shared",
            ParamKind::PerNeuron => "PerNeuron",
            ParamKind::PerTime => "PerTime",
        };
        args.push(format!("{}: {base}<{kind}>", ident(&d.name)));
    }
    let mut rets: Vec<String> = g
        .outputs()
        .iter()
        .map(|o| format!("Output<{}>", ident(&o.name)))
        .collect();
    rets.extend(g.states().iter().map(|_| "State".to_string()));
    let ret = if rets.len() == 1 {
        rets.pop().unwrap_or_default()
    } else {
        format!("({})", rets.join(", "))
    };
    let _ = writeln!(s, "fn {}({}) -> {ret} {{", ident(g.name()), args.join(", "));

    // A prefix for temporaries that no declared name can be confused with.
    let names: Vec<&str> = g
        .inputs()
        .iter()
        .map(|d| d.name.as_str())
        .chain(g.states().iter().map(|d| d.name.as_str()))
        .chain(g.params().iter().map(|d| d.name.as_str()))
        .collect();
    let mut prefix = String::from("n");
    while names.iter().any(|n| {
        n.strip_prefix(prefix.as_str())
            .is_some_and(|rest| !rest.is_empty() && rest.chars().all(|c| c.is_ascii_digit()))
    }) {
        prefix.push('_');
    }
    let atom = |v: flexsn_ir::ValueId| -> String {
        let node = g.node(v);
        match node.op {
            Op::Input(i) => ident(&g.inputs()[i as usize].name),
            Op::State(i) => ident(&g.states()[i as usize].name),
            Op::Param(i) => ident(&g.params()[i as usize].name),
            Op::Const(c) => literal(c),
            _ => format!("{prefix}{}", v.index()),
        }
    };
    for (v, node) in g.nodes() {
        if node.op.is_leaf() {
            continue;
        }
        let a: Vec<String> = node.args.iter().map(|&x| atom(x)).collect();
        let infix = |op: &str| format!("{} {op} {}", a[0], a[1]);
        let e = match node.op {
            Op::Add => infix("+"),
            Op::Sub => infix("-"),
            Op::Mul => infix("*"),
            Op::Div => infix("/"),
            Op::Fmod => infix("%"),
            Op::Eq => infix("=="),
            Op::Ne => infix("!="),
            Op::Lt => infix("<"),
            Op::Le => infix("<="),
            Op::Gt => infix(">"),
            Op::Ge => infix(">="),
            Op::And => infix("&&"),
            Op::Or => infix("||"),
            Op::Neg => format!("-{}", a[0]),
            Op::Not => format!("!{}", a[0]),
            Op::Spike(sg) => format!("spike({}, Surrogate::{sg})", a[0]),
            ref op => format!("{}({})", op.name(), a.join(", ")),
        };
        let _ = writeln!(s, "    let {prefix}{} = {e};", v.index());
    }
    let results: Vec<String> = g.roots().map(atom).collect();
    if results.len() == 1 {
        let _ = writeln!(s, "    {}", results[0]);
    } else {
        let _ = writeln!(s, "    ({})", results.join(", "));
    }
    s.push_str("}\n");
    s
}
