//! Body analysis: the core fn's statements and expressions, checked and resolved into the
//! instructions of a [`Program`].

use std::collections::HashMap;

use flexsn_ir::Op;
use proc_macro2::Span;
use syn::spanned::Spanned;

use super::model::{AnalysisError, ArgDef, Instr, Program, Reg, Result, Step, SurrogateSpec};
use super::syntax::{describe_span, ident_name, simple_type, strip_parens};
use crate::funcs::{self, FuncKind};

const ALLOWED_SYNTAX: &str = "a core body may use `let` bindings, arithmetic (+ - * / %), unary `-` and `!`, comparisons, `&&`, `||`, `if c { a } else { b }`, blocks, float and integer literals, calls of the math functions, `spike(..)`, `surrogate(..)` and `detach(..)`, and end with the returned tuple";

/// The body analysis: statements and expressions to instructions, with `let` scopes.
pub(super) struct Analyzer<'a> {
    pub(super) args: &'a [ArgDef],
    pub(super) program: Program,
    pub(super) is_const: Vec<bool>,
    pub(super) arg_regs: Vec<Option<Reg>>,
    /// Argument positions by name.
    pub(super) arg_index: HashMap<String, usize>,
    /// The registers bound to each `let` name, innermost last.
    pub(super) bound: HashMap<String, Vec<Reg>>,
    /// The names bound in each open scope, innermost scope last (to unbind them on exit).
    pub(super) scopes: Vec<Vec<String>>,
}

/// The span from `a` to `b` (`a` where they cannot be joined, as in a proc macro on stable).
fn join(a: Span, b: Span) -> Span {
    a.join(b).unwrap_or(a)
}

impl Analyzer<'_> {
    pub(super) fn emit(&mut self, instr: Instr, span: Span, is_const: bool) -> Reg {
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
    pub(super) fn body(
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

    pub(super) fn expr(&mut self, e: &syn::Expr) -> Result<Reg> {
        Ok(self.expr_at(e)?.0)
    }

    /// An expression's register and span. Spans are joined from the parts' spans as the parts
    /// are analyzed: `Spanned::span` re-prints the whole subtree, quadratic over a tree.
    pub(super) fn expr_at(&mut self, e: &syn::Expr) -> Result<(Reg, Span)> {
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
}

pub(super) fn literal(lit: &syn::Lit) -> Result<f32> {
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
            flexsn_ir::num::user_f32(v).map_err(|why| AnalysisError::new(f.span(), why))
        }
        syn::Lit::Int(i) => {
            if !matches!(i.suffix(), "" | "f32") {
                return Err(bad_suffix(i.span(), i.suffix()));
            }
            let v = i
                .base10_digits()
                .parse::<f64>()
                .map_err(|e| AnalysisError::new(i.span(), format!("bad integer literal: {e}")))?;
            flexsn_ir::num::user_f32(v).map_err(|why| AnalysisError::new(i.span(), why))
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
