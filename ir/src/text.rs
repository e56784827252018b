//! The deterministic text form of a step graph: printed by [`print()`], read back by [`parse`].
//!
//! ```text
//! core lif "LIF neuron"
//!   input x
//!   state v = 0.0
//!   param w: shared learnable
//!   %0 = input x
//!   %1 = state v
//!   %2 = sub %0, %1
//!   %3 = spike[Sigmoid { alpha: 4.0 }] %2
//!   output s = %3
//!   next v = %2
//! end
//! ```
//!
//! Constants print in Rust's shortest round-tripping form (`-0.0`, `1e-45`, `inf`, `-inf`,
//! `NaN`), the description as a Rust string literal, and surrogates in Rust struct syntax, so
//! `print(parse(print(g)))` is byte-identical to `print(g)`. (NaN constants lose their sign and
//! payload, which no op can observe.)
//!
//! [`parse`] reads this form line by line:
//!
//! | line | meaning |
//! |---|---|
//! | `core NAME ["description"]` | header, first |
//! | `input NAME` | declares the next input |
//! | `state NAME = NUMBER` / `state NAME = runtime` | declares the next state and its initial value |
//! | `param NAME: shared\|per_neuron\|per_time learnable\|fixed` | declares the next param |
//! | `%L = input NAME` (`state`, `param`) | reads a declared leaf |
//! | `%L = const NUMBER` | a constant |
//! | `%L = OP %A, %B, ...` | an op of [`Op::PLAIN`] on earlier labels |
//! | `%L = spike[SURROGATE] %A` | `spike`, e.g. `spike[ATan { alpha: 2.0 }]`; omitted parameters take SpikingJelly's defaults |
//! | `output NAME = %L` | the next output |
//! | `next NAME = %L` | the next value of state `NAME` (one per state) |
//! | `end` | last |
//!
//! Errors ([`ParseError`]) give the line and column (counting characters from 1) and say what
//! was expected, e.g. ``line 5, column 8: unknown op `foo`; known ops: input, state, ...``.

use std::collections::HashMap;
use std::fmt::Write;

use crate::builder::GraphBuilder;
use crate::error::BuildError;
use crate::graph::{InputDecl, ParamDecl, StateDecl, StateInit, StepGraph, ValueId};
use crate::op::{Op, ParamKind};
use crate::surrogate::{Surrogate, SurrogateError};

/// Prints `g` in the text form.
pub fn print(g: &StepGraph) -> String {
    let mut s = String::new();
    let _ = write!(s, "core {}", g.name);
    if !g.description.is_empty() {
        let _ = write!(s, " {:?}", g.description);
    }
    s.push('\n');
    for d in &g.inputs {
        let _ = writeln!(s, "  input {}", d.name);
    }
    for d in &g.states {
        match d.init {
            StateInit::Const(c) => {
                let _ = writeln!(s, "  state {} = {:?}", d.name, c);
            }
            StateInit::Runtime => {
                let _ = writeln!(s, "  state {} = runtime", d.name);
            }
        }
    }
    for d in &g.params {
        let _ = writeln!(
            s,
            "  param {}: {} {}",
            d.name,
            d.kind.name(),
            if d.learnable { "learnable" } else { "fixed" }
        );
    }
    for (v, node) in g.nodes() {
        let _ = write!(s, "  %{} = ", v.index());
        let _ = match node.op {
            Op::Input(i) => write!(s, "input {}", g.inputs[i as usize].name),
            Op::State(i) => write!(s, "state {}", g.states[i as usize].name),
            Op::Param(i) => write!(s, "param {}", g.params[i as usize].name),
            Op::Const(c) => write!(s, "const {c:?}"),
            Op::Spike(sg) => write!(s, "spike[{sg}]"),
            other => write!(s, "{}", other.name()),
        };
        for (i, a) in node.args.iter().enumerate() {
            let _ = write!(s, "{}%{}", if i == 0 { " " } else { ", " }, a.index());
        }
        s.push('\n');
    }
    for o in &g.outputs {
        let _ = writeln!(s, "  output {} = %{}", o.name, o.value.index());
    }
    for (d, v) in g.states.iter().zip(&g.next_states) {
        let _ = writeln!(s, "  next {} = %{}", d.name, v.index());
    }
    s.push_str("end\n");
    s
}

impl std::fmt::Display for StepGraph {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&print(self))
    }
}

/// Where and why [`parse`] failed. Lines and columns count from 1; columns count characters.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
#[error("line {line}, column {column}: {kind}")]
pub struct ParseError {
    /// Line of the error, from 1.
    pub line: usize,
    /// Column of the error, in characters from 1.
    pub column: usize,
    /// What went wrong there.
    pub kind: ParseErrorKind,
}

/// What [`parse`] found wrong.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum ParseErrorKind {
    /// A token other than the one the grammar needs.
    #[error("expected {expected}, found {found}")]
    Expected {
        /// What the grammar needed there, e.g. `` `=` `` or `a name`.
        expected: String,
        /// What the text has instead (quoted), or the end of the line or text.
        found: String,
    },
    /// A node line names an op that does not exist.
    #[error("unknown op `{name}`; known ops: {known}")]
    UnknownOp {
        /// The op name as written.
        name: String,
        /// Every op name, joined with `, `.
        known: String,
    },
    /// A leaf or `next` line names an undeclared input, state or param.
    #[error("no {kind} named `{name}`; declared {kind}s: {declared}")]
    UnknownName {
        /// `"input"`, `"state"` or `"param"`.
        kind: &'static str,
        /// The name as written.
        name: String,
        /// The names declared of that kind, joined with `, ` (or `none`).
        declared: String,
    },
    /// A number (given here) that does not parse as `f32`.
    #[error("`{0}` is not a number")]
    BadNumber(String),
    /// A param kind (given here) other than `shared`, `per_neuron` or `per_time`.
    #[error("unknown param kind `{0}`; expected `shared`, `per_neuron` or `per_time`")]
    UnknownParamKind(String),
    /// A label is defined on two lines.
    #[error("label `%{label}` is defined twice (first on line {first_line})")]
    DuplicateLabel {
        /// The label, without `%`.
        label: String,
        /// The line of its first definition, from 1.
        first_line: usize,
    },
    /// A label (without `%`) is used before, or without, its definition.
    #[error("label `%{0}` is not defined before it is used")]
    UndefinedLabel(String),
    /// A backslash escape (given here) that Rust string literals do not allow.
    #[error("invalid escape `{0}` in string")]
    BadEscape(String),
    /// A string literal with no closing `"` on its line.
    #[error("unterminated string")]
    UnterminatedString,
    /// A surrogate parameter (named here) is given twice in `spike[...]`.
    #[error("surrogate parameter `{0}` is given twice")]
    DuplicateSurrogateParam(String),
    /// A state (named here) has no `next` line.
    #[error("state `{0}` has no `next {0} = %...` line")]
    MissingNext(String),
    /// Text other than blank lines and comments follows `end`.
    #[error("text after `end`")]
    TrailingText,
    /// The text stops before the `end` line.
    #[error("the text ends before `end`")]
    MissingEnd,
    /// The lines parse but the graph they describe is invalid.
    #[error(transparent)]
    Build(#[from] BuildError),
    /// A `spike[...]` surrogate name or parameter is invalid.
    #[error(transparent)]
    Surrogate(#[from] SurrogateError),
}

/// Parses the text form written by [`print()`].
///
/// Beyond what [`print()`] writes, hand-written text may use blank lines, `//` comments, labels
/// that are names (`%h`) rather than numbers, and declarations, node lines and `output`/`next`
/// lines in any order, as long as every label is defined before a node line uses it. Nodes are
/// added through [`GraphBuilder`], so duplicate lines are shared (hash-consed) and labels map
/// to whatever value the builder returns; the result is verified. Syntax errors anywhere in the
/// text are reported before errors of meaning (unknown names, labels, arity).
///
/// ```
/// use flexsn_ir::text::{parse, print};
///
/// let src = "core k\n  input x\n  %0 = input x\n  %1 = exp %0\n  output y = %1\nend\n";
/// assert_eq!(print(&parse(src)?), src);
///
/// let bad = "core k\n  input x\n  %0 = input x\n  %1 = foo %0\n  output y = %1\nend\n";
/// let e = parse(bad).unwrap_err();
/// assert_eq!((e.line, e.column), (4, 8));
/// assert!(e.to_string().starts_with("line 4, column 8: unknown op `foo`; known ops: input,"));
/// # Ok::<(), flexsn_ir::text::ParseError>(())
/// ```
pub fn parse(src: &str) -> Result<StepGraph, ParseError> {
    let stmts = parse_lines(src)?;
    build(stmts)
}

/// A position in the source, for errors.
#[derive(Clone, Copy, Debug)]
struct Pos {
    line: usize,
    column: usize,
}

impl Pos {
    fn err(self, kind: impl Into<ParseErrorKind>) -> ParseError {
        ParseError {
            line: self.line,
            column: self.column,
            kind: kind.into(),
        }
    }
}

/// A name with where it was written.
#[derive(Clone, Debug)]
struct Spanned<T> {
    value: T,
    pos: Pos,
}

/// What a node line computes, before labels are resolved.
#[derive(Clone, Debug)]
enum NodeOp {
    Leaf {
        kind: &'static str,
        name: Spanned<String>,
    },
    Const(f32),
    Op(Op),
}

#[derive(Clone, Debug)]
enum Stmt {
    Input(Spanned<String>),
    State(Spanned<String>, StateInit),
    Param(Spanned<String>, ParamKind, bool),
    Node {
        label: Spanned<String>,
        op: NodeOp,
        op_pos: Pos,
        args: Vec<Spanned<String>>,
    },
    Output(Spanned<String>, Spanned<String>),
    Next(Spanned<String>, Spanned<String>),
}

struct Header {
    name: String,
    description: String,
}

struct Parsed {
    header: Header,
    stmts: Vec<Stmt>,
    end: Pos,
}

/// A cursor over one line.
struct Cursor {
    chars: Vec<char>,
    at: usize,
    line: usize,
}

fn is_ident_start(c: char) -> bool {
    c.is_ascii_alphabetic() || c == '_'
}

fn is_ident_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

impl Cursor {
    fn new(text: &str, line: usize) -> Cursor {
        Cursor {
            chars: text.chars().collect(),
            at: 0,
            line,
        }
    }

    fn pos(&self) -> Pos {
        Pos {
            line: self.line,
            column: self.at + 1,
        }
    }

    fn peek(&self) -> Option<char> {
        self.chars.get(self.at).copied()
    }

    /// Skips blanks and a trailing `//` comment.
    fn skip_ws(&mut self) {
        while let Some(c) = self.peek() {
            if c == ' ' || c == '\t' || c == '\r' {
                self.at += 1;
            } else if c == '/' && self.chars.get(self.at + 1) == Some(&'/') {
                self.at = self.chars.len();
            } else {
                break;
            }
        }
    }

    fn at_end(&mut self) -> bool {
        self.skip_ws();
        self.at >= self.chars.len()
    }

    /// A description of what is at the cursor, for "found ..." messages.
    fn found(&mut self) -> String {
        self.skip_ws();
        if self.at >= self.chars.len() {
            return "end of line".into();
        }
        let mut end = self.at;
        if is_ident_char(self.chars[end]) {
            while end < self.chars.len() && is_ident_char(self.chars[end]) {
                end += 1;
            }
        } else {
            end += 1;
        }
        let text: String = self.chars[self.at..end].iter().collect();
        format!("`{text}`")
    }

    fn expected(&mut self, what: &str) -> ParseError {
        let found = self.found();
        self.pos().err(ParseErrorKind::Expected {
            expected: what.into(),
            found,
        })
    }

    /// An identifier: letters, digits and `_`, not starting with a digit.
    fn ident(&mut self, what: &str) -> Result<Spanned<String>, ParseError> {
        self.skip_ws();
        let pos = self.pos();
        match self.peek() {
            Some(c) if is_ident_start(c) => {}
            _ => return Err(self.expected(what)),
        }
        let start = self.at;
        while self.peek().is_some_and(is_ident_char) {
            self.at += 1;
        }
        Ok(Spanned {
            value: self.chars[start..self.at].iter().collect(),
            pos,
        })
    }

    /// Consumes `c` if it is next.
    fn eat(&mut self, c: char) -> bool {
        self.skip_ws();
        if self.peek() == Some(c) {
            self.at += 1;
            true
        } else {
            false
        }
    }

    fn expect(&mut self, c: char) -> Result<(), ParseError> {
        if self.eat(c) {
            Ok(())
        } else {
            Err(self.expected(&format!("`{c}`")))
        }
    }

    fn end_of_line(&mut self) -> Result<(), ParseError> {
        if self.at_end() {
            Ok(())
        } else {
            Err(self.expected("end of line"))
        }
    }

    /// `%label`, where the label is a number or a name.
    fn label(&mut self) -> Result<Spanned<String>, ParseError> {
        self.skip_ws();
        let pos = self.pos();
        if self.peek() != Some('%') {
            return Err(self.expected("a label like `%3`"));
        }
        self.at += 1;
        let start = self.at;
        while self.peek().is_some_and(is_ident_char) {
            self.at += 1;
        }
        if start == self.at {
            self.at -= 1;
            return Err(self.expected("a label like `%3`"));
        }
        Ok(Spanned {
            value: self.chars[start..self.at].iter().collect(),
            pos,
        })
    }

    /// A float in Rust syntax, including `inf`, `-inf` and `NaN`.
    fn number(&mut self) -> Result<(f32, Pos), ParseError> {
        self.skip_ws();
        let pos = self.pos();
        let start = self.at;
        if matches!(self.peek(), Some('-' | '+')) {
            self.at += 1;
        }
        while let Some(c) = self.peek() {
            let prev = if self.at > start {
                Some(self.chars[self.at - 1])
            } else {
                None
            };
            let exp_sign = matches!(c, '-' | '+')
                && matches!(prev, Some('e' | 'E'))
                && self.chars[start..self.at - 1]
                    .iter()
                    .any(|d| d.is_ascii_digit());
            if is_ident_char(c) || c == '.' || exp_sign {
                self.at += 1;
            } else {
                break;
            }
        }
        let text: String = self.chars[start..self.at].iter().collect();
        if text.is_empty() {
            return Err(self.expected("a number"));
        }
        text.parse::<f32>()
            .map(|v| (v, pos))
            .map_err(|_| pos.err(ParseErrorKind::BadNumber(text)))
    }

    /// A string literal in Rust syntax (as `{:?}` writes it).
    fn string(&mut self) -> Result<String, ParseError> {
        self.skip_ws();
        if self.peek() != Some('"') {
            return Err(self.expected("a string"));
        }
        let open = self.pos();
        self.at += 1;
        let mut s = String::new();
        loop {
            let Some(c) = self.peek() else {
                return Err(open.err(ParseErrorKind::UnterminatedString));
            };
            let esc_pos = self.pos();
            self.at += 1;
            match c {
                '"' => return Ok(s),
                '\\' => {
                    let Some(e) = self.peek() else {
                        return Err(open.err(ParseErrorKind::UnterminatedString));
                    };
                    self.at += 1;
                    match e {
                        'n' => s.push('\n'),
                        'r' => s.push('\r'),
                        't' => s.push('\t'),
                        '0' => s.push('\0'),
                        '\\' => s.push('\\'),
                        '"' => s.push('"'),
                        '\'' => s.push('\''),
                        'u' => {
                            let bad = |cur: &Self| {
                                let text: String =
                                    cur.chars[esc_pos.column - 1..cur.at].iter().collect();
                                esc_pos.err(ParseErrorKind::BadEscape(text))
                            };
                            if self.peek() != Some('{') {
                                return Err(bad(self));
                            }
                            self.at += 1;
                            let start = self.at;
                            while self.peek().is_some_and(|c| c.is_ascii_hexdigit()) {
                                self.at += 1;
                            }
                            let hex: String = self.chars[start..self.at].iter().collect();
                            if self.peek() != Some('}') {
                                return Err(bad(self));
                            }
                            self.at += 1;
                            match u32::from_str_radix(&hex, 16).ok().and_then(char::from_u32) {
                                Some(ch) => s.push(ch),
                                None => return Err(bad(self)),
                            }
                        }
                        other => {
                            return Err(
                                esc_pos.err(ParseErrorKind::BadEscape(format!("\\{other}")))
                            );
                        }
                    }
                }
                c => s.push(c),
            }
        }
    }

    /// The rest of a core name: any run of characters other than blanks and `"`.
    /// Names may contain blanks: the name runs to the description's `"`, a `//` comment or the
    /// end of the line, without surrounding blanks.
    fn core_name(&mut self) -> Result<String, ParseError> {
        self.skip_ws();
        let start = self.at;
        while let Some(c) = self.peek() {
            if c == '"' || (c == '/' && self.chars.get(self.at + 1) == Some(&'/')) {
                break;
            }
            self.at += 1;
        }
        let name: String = self.chars[start..self.at].iter().collect();
        let name = name.trim_end();
        if name.is_empty() {
            return Err(self.expected("the core's name"));
        }
        Ok(name.to_string())
    }

    /// `Name` or `Name { p: v, ... }` (surrogate syntax), up to and not including `]`.
    fn surrogate(&mut self) -> Result<Surrogate, ParseError> {
        let name = self.ident("a surrogate name like `ATan`")?;
        let mut params: Vec<(String, f64)> = vec![];
        let mut param_pos: Vec<Pos> = vec![];
        if self.eat('{') {
            loop {
                if self.eat('}') {
                    break;
                }
                let p = self.ident("a surrogate parameter name or `}`")?;
                self.expect(':')?;
                let (v, _) = self.number()?;
                if params.iter().any(|(n, _)| *n == p.value) {
                    return Err(p.pos.err(ParseErrorKind::DuplicateSurrogateParam(p.value)));
                }
                params.push((p.value, v as f64));
                param_pos.push(p.pos);
                if !self.eat(',') {
                    self.expect('}')?;
                    break;
                }
            }
        }
        let mut s = Surrogate::default_for(&name.value)
            .ok_or_else(|| name.pos.err(SurrogateError::Unknown(name.value.clone())))?;
        for ((p, v), pos) in params.iter().zip(&param_pos) {
            s.set_param(p, *v).map_err(|e| pos.err(e))?;
        }
        s.validate().map_err(|e| name.pos.err(e))?;
        Ok(s)
    }
}

fn known_ops() -> String {
    let mut names = vec!["input", "state", "param", "const", "spike[SURROGATE]"];
    names.extend(Op::PLAIN.iter().map(|op| op.name()));
    names.join(", ")
}

/// Pass 1: syntax, line by line.
fn parse_lines(src: &str) -> Result<Parsed, ParseError> {
    let mut header: Option<Header> = None;
    let mut stmts = vec![];
    let mut end: Option<Pos> = None;
    let mut last_line = 0;
    for (i, text) in src.lines().enumerate() {
        let line = i + 1;
        last_line = line;
        let mut c = Cursor::new(text, line);
        if c.at_end() {
            continue;
        }
        if end.is_some() {
            return Err(c.pos().err(ParseErrorKind::TrailingText));
        }
        if header.is_none() {
            let kw = c.ident("`core NAME`")?;
            if kw.value != "core" {
                return Err(kw.pos.err(ParseErrorKind::Expected {
                    expected: "`core NAME`".into(),
                    found: format!("`{}`", kw.value),
                }));
            }
            let name = c.core_name()?;
            let description = if c.at_end() {
                String::new()
            } else {
                c.string()?
            };
            c.end_of_line()?;
            header = Some(Header { name, description });
            continue;
        }
        if c.peek() == Some('%') {
            stmts.push(node_line(&mut c)?);
            continue;
        }
        let kw = c.ident("`input`, `state`, `param`, `%N = ...`, `output`, `next` or `end`")?;
        let stmt = match kw.value.as_str() {
            "input" => Stmt::Input(c.ident("an input name")?),
            "state" => {
                let name = c.ident("a state name")?;
                c.expect('=')?;
                c.skip_ws();
                let start = c.at;
                let init = match c.ident("`runtime` or a number") {
                    Ok(w) if w.value == "runtime" => StateInit::Runtime,
                    _ => {
                        c.at = start;
                        StateInit::Const(c.number()?.0)
                    }
                };
                Stmt::State(name, init)
            }
            "param" => {
                let name = c.ident("a param name")?;
                c.expect(':')?;
                let kind = c.ident("a param kind (`shared`, `per_neuron` or `per_time`)")?;
                let kind = ParamKind::from_name(&kind.value)
                    .ok_or_else(|| kind.pos.err(ParseErrorKind::UnknownParamKind(kind.value)))?;
                let l = c.ident("`learnable` or `fixed`")?;
                let learnable = match l.value.as_str() {
                    "learnable" => true,
                    "fixed" => false,
                    other => {
                        return Err(l.pos.err(ParseErrorKind::Expected {
                            expected: "`learnable` or `fixed`".into(),
                            found: format!("`{other}`"),
                        }));
                    }
                };
                Stmt::Param(name, kind, learnable)
            }
            "output" | "next" => {
                let name = c.ident(if kw.value == "output" {
                    "an output name"
                } else {
                    "a state name"
                })?;
                c.expect('=')?;
                let v = c.label()?;
                if kw.value == "output" {
                    Stmt::Output(name, v)
                } else {
                    Stmt::Next(name, v)
                }
            }
            "end" => {
                c.end_of_line()?;
                end = Some(kw.pos);
                continue;
            }
            other => {
                return Err(kw.pos.err(ParseErrorKind::Expected {
                    expected: "`input`, `state`, `param`, `%N = ...`, `output`, `next` or `end`"
                        .into(),
                    found: format!("`{other}`"),
                }));
            }
        };
        c.end_of_line()?;
        stmts.push(stmt);
    }
    let at_eof = Pos {
        line: last_line + 1,
        column: 1,
    };
    let Some(header) = header else {
        return Err(at_eof.err(ParseErrorKind::Expected {
            expected: "`core NAME`".into(),
            found: "end of text".into(),
        }));
    };
    let end = end.ok_or_else(|| at_eof.err(ParseErrorKind::MissingEnd))?;
    Ok(Parsed { header, stmts, end })
}

/// `%L = op ...`.
fn node_line(c: &mut Cursor) -> Result<Stmt, ParseError> {
    let label = c.label()?;
    c.expect('=')?;
    let opname = c.ident("an op name")?;
    let op_pos = opname.pos;
    let leaf = |kind: &'static str, c: &mut Cursor| -> Result<NodeOp, ParseError> {
        Ok(NodeOp::Leaf {
            kind,
            name: c.ident(&format!("the name of a declared {kind}"))?,
        })
    };
    let op = match opname.value.as_str() {
        "input" => leaf("input", c)?,
        "state" => leaf("state", c)?,
        "param" => leaf("param", c)?,
        "const" => NodeOp::Const(c.number()?.0),
        "spike" => {
            if !c.eat('[') {
                return Err(c.expected("`[` and a surrogate, as in `spike[ATan { alpha: 2.0 }]`"));
            }
            let s = c.surrogate()?;
            c.expect(']')?;
            NodeOp::Op(Op::Spike(s))
        }
        name => match Op::plain_from_name(name) {
            Some(op) => NodeOp::Op(op),
            None => {
                return Err(op_pos.err(ParseErrorKind::UnknownOp {
                    name: name.into(),
                    known: known_ops(),
                }));
            }
        },
    };
    let mut args = vec![];
    if let NodeOp::Op(_) = op
        && !c.at_end()
    {
        args.push(c.label()?);
        while c.eat(',') {
            args.push(c.label()?);
        }
    }
    c.end_of_line()?;
    Ok(Stmt::Node {
        label,
        op,
        op_pos,
        args,
    })
}

fn names_of<'a>(names: impl Iterator<Item = &'a str>) -> String {
    let v: Vec<&str> = names.collect();
    if v.is_empty() {
        "none".into()
    } else {
        v.join(", ")
    }
}

/// Pass 2: declarations, then nodes through the builder, then outputs and next states.
fn build(parsed: Parsed) -> Result<StepGraph, ParseError> {
    let Parsed { header, stmts, end } = parsed;
    let mut decls = StepGraph {
        name: header.name,
        description: header.description,
        graph: Default::default(),
        inputs: vec![],
        states: vec![],
        params: vec![],
        outputs: vec![],
        next_states: vec![],
        names: Default::default(),
    };
    let mut declared: HashMap<String, &'static str> = HashMap::new();
    let mut state_pos: Vec<Pos> = vec![];
    for stmt in &stmts {
        let (name, kind) = match stmt {
            Stmt::Input(n) => (n, "an input"),
            Stmt::State(n, _) => (n, "a state"),
            Stmt::Param(n, _, _) => (n, "a param"),
            _ => continue,
        };
        if let Some(&first) = declared.get(&name.value) {
            return Err(name.pos.err(BuildError::DuplicateName {
                name: name.value.clone(),
                first,
                second: kind,
            }));
        }
        declared.insert(name.value.clone(), kind);
        match stmt {
            Stmt::Input(n) => decls.inputs.push(InputDecl {
                name: n.value.clone(),
            }),
            Stmt::State(n, init) => {
                decls.states.push(StateDecl {
                    name: n.value.clone(),
                    init: *init,
                });
                state_pos.push(n.pos);
            }
            Stmt::Param(n, kind, learnable) => decls.params.push(ParamDecl {
                name: n.value.clone(),
                kind: *kind,
                learnable: *learnable,
            }),
            _ => {}
        }
    }

    let mut b = GraphBuilder::with_decls_of(&decls);
    let mut labels: HashMap<String, (ValueId, usize)> = HashMap::new();
    for stmt in &stmts {
        let Stmt::Node {
            label,
            op,
            op_pos,
            args,
        } = stmt
        else {
            continue;
        };
        let mut ids = Vec::with_capacity(args.len());
        for a in args {
            match labels.get(&a.value) {
                Some(&(v, _)) => ids.push(v),
                None => return Err(a.pos.err(ParseErrorKind::UndefinedLabel(a.value.clone()))),
            }
        }
        let op = match op {
            NodeOp::Leaf { kind, name } => {
                let (found, all): (Option<usize>, Vec<&str>) = match *kind {
                    "input" => (
                        decls.input_index(&name.value),
                        decls.inputs.iter().map(|d| d.name.as_str()).collect(),
                    ),
                    "state" => (
                        decls.state_index(&name.value),
                        decls.states.iter().map(|d| d.name.as_str()).collect(),
                    ),
                    _ => (
                        decls.param_index(&name.value),
                        decls.params.iter().map(|d| d.name.as_str()).collect(),
                    ),
                };
                let Some(i) = found else {
                    return Err(name.pos.err(ParseErrorKind::UnknownName {
                        kind,
                        name: name.value.clone(),
                        declared: names_of(all.into_iter()),
                    }));
                };
                match *kind {
                    "input" => Op::Input(i as u32),
                    "state" => Op::State(i as u32),
                    _ => Op::Param(i as u32),
                }
            }
            NodeOp::Const(c) => Op::Const(*c),
            NodeOp::Op(op) => *op,
        };
        if let Some(&(_, first_line)) = labels.get(&label.value) {
            return Err(label.pos.err(ParseErrorKind::DuplicateLabel {
                label: label.value.clone(),
                first_line,
            }));
        }
        let v = b.op(op, &ids).map_err(|e| op_pos.err(e))?;
        labels.insert(label.value.clone(), (v, label.pos.line));
    }

    let resolve = |l: &Spanned<String>| {
        labels
            .get(&l.value)
            .map(|&(v, _)| v)
            .ok_or_else(|| l.pos.err(ParseErrorKind::UndefinedLabel(l.value.clone())))
    };
    for stmt in &stmts {
        match stmt {
            Stmt::Output(name, l) => {
                let v = resolve(l)?;
                b.add_output(&name.value, v).map_err(|e| name.pos.err(e))?;
            }
            Stmt::Next(name, l) => {
                let v = resolve(l)?;
                let Some(j) = decls.state_index(&name.value) else {
                    return Err(name.pos.err(ParseErrorKind::UnknownName {
                        kind: "state",
                        name: name.value.clone(),
                        declared: names_of(decls.states.iter().map(|d| d.name.as_str())),
                    }));
                };
                b.set_next_state(j, v).map_err(|e| name.pos.err(e))?;
            }
            _ => {}
        }
    }
    for (d, pos) in decls.states.iter().zip(&state_pos) {
        let updated = stmts
            .iter()
            .any(|s| matches!(s, Stmt::Next(n, _) if n.value == d.name));
        if !updated {
            return Err(pos.err(ParseErrorKind::MissingNext(d.name.clone())));
        }
    }
    b.finish().map_err(|e| end.err(e))
}
