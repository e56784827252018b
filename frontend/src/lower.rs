//! Executing a core's [`Program`] on a [`GraphBuilder`]: the one lowering shared by the text
//! frontend (which interprets the program) and the `#[neuron]` macro (whose generated builder
//! code calls the same [`Lowerer`] methods, instruction by instruction).
//!
//! Constant folding: an op whose operands are all constants is evaluated when the graph is
//! built, in `f32`, with exactly the interpreter's semantics ([`flexsn_ir::eval::eval_op`]), so
//! folding never changes what the graph computes. A `select` (or `if`) whose condition is
//! constant picks its branch. Dead code is removed when the graph is finished.

use proc_macro2::Span;

use crate::analyze::{ArgKind, CoreDef, Instr, ParamKindDef, Role};
use flexsn_ir::builder::GraphBuilder;
use flexsn_ir::error::BuildError;
use flexsn_ir::eval::{eval_op, eval_step};
use flexsn_ir::{Op, ParamKind, StateInit, StepGraph, Surrogate, ValueId};

/// A value while lowering: a folded constant or a graph node.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Value {
    /// A constant, folded while building.
    Const(f32),
    /// A node of the graph being built.
    Node(ValueId),
}

impl Value {
    /// The constant, if this value is one.
    pub fn as_const(self) -> Option<f32> {
        match self {
            Value::Const(c) => Some(c),
            Value::Node(_) => None,
        }
    }
}

/// Builds a step graph from [`Value`]s, folding constants. Used by the text frontend and by the
/// code the `#[neuron]` macro generates.
#[derive(Debug)]
pub struct Lowerer {
    b: GraphBuilder,
}

impl Lowerer {
    /// A lowerer for a core called `name`, with an empty graph.
    pub fn new(name: &str) -> Self {
        Lowerer {
            b: GraphBuilder::new(name),
        }
    }

    /// Sets the graph's description.
    pub fn set_description(&mut self, d: &str) {
        self.b.set_description(d);
    }

    /// Checks a hyperparameter's value: it must be finite.
    pub fn hyper(value: f32) -> Result<f32, BuildError> {
        if value.is_finite() {
            Ok(value)
        } else {
            Err(BuildError::NonFiniteConst(value))
        }
    }

    /// Declares input `name`; its value at the current step.
    pub fn input(&mut self, name: &str) -> Result<Value, BuildError> {
        self.b.add_input(name).map(Value::Node)
    }

    /// Declares state `name` with initial value `init`; its value after the previous step.
    pub fn state(&mut self, name: &str, init: StateInit) -> Result<Value, BuildError> {
        self.b.add_state(name, init).map(Value::Node)
    }

    /// Declares param `name`; its value.
    pub fn param(
        &mut self,
        name: &str,
        kind: ParamKind,
        learnable: bool,
    ) -> Result<Value, BuildError> {
        self.b.add_param(name, kind, learnable).map(Value::Node)
    }

    /// The node for `v` (a constant becomes a `Const` node).
    pub fn node(&mut self, v: Value) -> ValueId {
        match v {
            Value::Node(id) => id,
            Value::Const(c) => self.b.constant(c),
        }
    }

    /// Folds a plain op over constants, with the interpreter's `f32` semantics.
    pub fn fold(op: Op, args: &[f32]) -> f32 {
        eval_op::<f32>(&op, args)
    }

    /// `op(args)`: folded when every operand is a constant (and `select` with a constant
    /// condition picks its branch), a node otherwise.
    pub fn apply(&mut self, op: Op, args: &[Value]) -> Result<Value, BuildError> {
        let expected = op.arity().count();
        if args.len() != expected || op.is_leaf() {
            return Err(BuildError::Arity {
                op: op.name(),
                expected,
                got: args.len(),
            });
        }
        let consts: Option<Vec<f32>> = args.iter().map(|a| a.as_const()).collect();
        if let Some(c) = consts {
            return Ok(Value::Const(Lowerer::fold(op, &c)));
        }
        if op == Op::Select
            && let Value::Const(c) = args[0]
        {
            return Ok(if c != 0.0 { args[1] } else { args[2] });
        }
        let ids: Vec<ValueId> = args.iter().map(|&a| self.node(a)).collect();
        self.b.op(op, &ids).map(Value::Node)
    }

    /// A surrogate from its SpikingJelly class name and parameters (others take the defaults).
    pub fn surrogate(name: &str, params: &[(&str, f32)]) -> Result<Surrogate, BuildError> {
        let p: Vec<(&str, f64)> = params.iter().map(|&(n, v)| (n, v as f64)).collect();
        Ok(Surrogate::from_name_and_params(name, &p)?)
    }

    /// `Θ(x)` forward, the surrogate's derivative backward.
    pub fn spike(&mut self, x: Value, s: Surrogate) -> Result<Value, BuildError> {
        self.apply(Op::Spike(s), &[x])
    }

    /// The smooth primitive form of `s` applied to `x`.
    pub fn primitive(&mut self, x: Value, s: Surrogate) -> Result<Value, BuildError> {
        match x {
            Value::Const(c) => Lowerer::fold_primitive(s, c).map(Value::Const),
            Value::Node(id) => self.b.surrogate_primitive(s, id).map(Value::Node),
        }
    }

    /// The primitive form of `s` at a constant, evaluated exactly as the expanded graph would be.
    pub fn fold_primitive(s: Surrogate, x: f32) -> Result<f32, BuildError> {
        let mut b = GraphBuilder::new("primitive");
        let xi = b.add_input("x")?;
        let y = b.surrogate_primitive(s, xi)?;
        b.add_output("y", y)?;
        let g = b.finish()?;
        let mut values = Vec::with_capacity(g.len());
        eval_step::<f32>(&g, &[x], &[], &[], &mut values);
        Ok(values[y.index()])
    }

    /// Names an output.
    pub fn output(&mut self, name: &str, v: Value) -> Result<(), BuildError> {
        let id = self.node(v);
        self.b.add_output(name, id)
    }

    /// Sets the next value of state `index` (declaration order).
    pub fn next_state(&mut self, index: usize, v: Value) -> Result<(), BuildError> {
        let id = self.node(v);
        self.b.set_next_state(index, id)
    }

    /// The verified graph, without dead code (values nothing returned depends on, such as the
    /// branch a constant condition did not pick or unused `let`s).
    pub fn finish(self) -> Result<StepGraph, BuildError> {
        let g = flexsn_ir::dce::dce(&self.b.finish()?);
        flexsn_ir::verify::verify(&g)?;
        Ok(g)
    }
}

/// Why lowering a [`CoreDef`] failed, located at the instruction or argument involved.
#[derive(Debug)]
pub(crate) struct LowerFailure {
    pub span: Span,
    pub message: String,
    pub help: Option<String>,
}

impl LowerFailure {
    fn at(span: Span, e: BuildError) -> Self {
        LowerFailure {
            span,
            message: e.to_string(),
            help: None,
        }
    }
}

/// Builds the graph of `def` with hyperparameter values `hyper` (one per hyperparameter, in
/// signature order) and the kinds of its `Param<Dynamic>` params (`None`: shared).
pub(crate) fn lower_def(
    def: &CoreDef,
    hyper: &[f32],
    dynamic_kinds: &[Option<ParamKind>],
) -> Result<StepGraph, LowerFailure> {
    let mut l = Lowerer::new(&def.name);
    l.set_description(&def.description);
    let hyper_args: Vec<usize> = (0..def.args.len())
        .filter(|&i| def.args[i].kind == ArgKind::Hyper)
        .collect();
    let dyn_args: Vec<usize> = (0..def.args.len())
        .filter(|&i| {
            matches!(
                def.args[i].kind,
                ArgKind::Param {
                    kind: ParamKindDef::Dynamic,
                    ..
                }
            )
        })
        .collect();
    let mut regs: Vec<Value> = Vec::with_capacity(def.program.instrs.len());
    let konst = |regs: &[Value], r: usize, span: Span, what: &str| {
        regs[r].as_const().ok_or_else(|| LowerFailure {
            span,
            message: format!("{what} must be a constant expression"),
            help: Some("use literals and hyperparameters (`f32` arguments) only".into()),
        })
    };
    for step in &def.program.instrs {
        let span = step.span;
        let at = |e: BuildError| LowerFailure::at(span, e);
        let v = match &step.instr {
            Instr::Hyper { arg } => {
                let k = hyper_args
                    .iter()
                    .position(|a| a == arg)
                    .expect("a hyperparameter argument");
                Value::Const(Lowerer::hyper(hyper[k]).map_err(at)?)
            }
            Instr::Lit(c) => Value::Const(*c),
            Instr::Input { arg } => l.input(&def.args[*arg].name).map_err(at)?,
            Instr::State { arg, init } => {
                let init = match init {
                    Some(r) => StateInit::Const(konst(&regs, *r, span, "an initial value")?),
                    None => StateInit::Runtime,
                };
                l.state(&def.args[*arg].name, init).map_err(at)?
            }
            Instr::Param { arg } => {
                let ArgKind::Param { kind, learnable } = def.args[*arg].kind else {
                    unreachable!("Param instructions declare param arguments")
                };
                let kind = match kind {
                    ParamKindDef::Fixed(k) => k,
                    ParamKindDef::Dynamic => {
                        let k = dyn_args
                            .iter()
                            .position(|a| a == arg)
                            .expect("a dynamic param");
                        dynamic_kinds
                            .get(k)
                            .copied()
                            .flatten()
                            .unwrap_or(ParamKind::Shared)
                    }
                };
                l.param(&def.args[*arg].name, kind, learnable).map_err(at)?
            }
            Instr::Apply { op, args } => {
                let a: Vec<Value> = args.iter().map(|&r| regs[r]).collect();
                l.apply(*op, &a).map_err(at)?
            }
            Instr::Spike { x, surrogate } | Instr::Primitive { x, surrogate } => {
                let mut p = Vec::with_capacity(surrogate.params.len());
                for (name, r) in &surrogate.params {
                    p.push((*name, konst(&regs, *r, span, "a surrogate parameter")?));
                }
                let s = Lowerer::surrogate(surrogate.name, &p).map_err(at)?;
                if matches!(step.instr, Instr::Spike { .. }) {
                    l.spike(regs[*x], s).map_err(at)?
                } else {
                    l.primitive(regs[*x], s).map_err(at)?
                }
            }
        };
        regs.push(v);
    }
    for r in &def.results {
        let at = |e: BuildError| LowerFailure::at(r.span, e);
        match &r.role {
            Role::Output(name) => l.output(name, regs[r.value]).map_err(at)?,
            Role::State(j) => l.next_state(*j, regs[r.value]).map_err(at)?,
        }
    }
    l.finish().map_err(|e| LowerFailure::at(def.name_span, e))
}
