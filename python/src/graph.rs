//! Step graphs from the node lists that `flexsn.torch` traces out of a Python core.
//!
//! A traced core arrives as declarations (inputs, states with their initial values, params with
//! their kind) and a list of nodes in creation order; node `i`'s operands are earlier node
//! indices. Leaves are `("input"|"state"|"param", [], index)` and `("const", [], value)`; ops use
//! [`Op`]'s text names; `spike` and `primitive` carry a surrogate `(class name, [(param,
//! value)])` (`primitive` is SpikingJelly's `spiking=False`: the surrogate's smooth function).

use flexsn_compiler::BuildError;
use flexsn_compiler::dsl::GraphBuilder;
use flexsn_compiler::ir::{Op, ParamKind, StateInit, StepGraph, Surrogate, ValueId};

/// One traced node: op name, operand node indices, a number (leaf index or constant), and a
/// surrogate for `spike`/`primitive`.
pub type Node = (String, Vec<usize>, f64, Option<SurrogateSpec>);
/// A surrogate's SpikingJelly class name and parameters.
pub type SurrogateSpec = (String, Vec<(String, f64)>);

/// A traced core's declarations and nodes.
pub struct Trace {
    pub name: String,
    pub inputs: Vec<String>,
    /// `(name, initial value)`; `None`: supplied at run time.
    pub states: Vec<(String, Option<f32>)>,
    /// `(name, "shared" | "per_neuron" | "per_time", learnable)`.
    pub params: Vec<(String, String, bool)>,
    pub nodes: Vec<Node>,
    /// `(name, node index)`.
    pub outputs: Vec<(String, usize)>,
    /// Per state: the node index of its next value.
    pub next_states: Vec<usize>,
}

/// Why a trace could not become a graph.
#[derive(Debug, thiserror::Error)]
pub enum TraceError {
    #[error(transparent)]
    Build(#[from] BuildError),
    #[error("node {node}: unknown op `{op}`")]
    UnknownOp { node: usize, op: String },
    #[error("node {node}: operand {arg} is not an earlier node")]
    Operand { node: usize, arg: usize },
    #[error("node {node}: `{op}` needs a surrogate")]
    NoSurrogate { node: usize, op: String },
    #[error("param `{name}`: unknown kind `{kind}` (shared, per_neuron or per_time)")]
    ParamKind { name: String, kind: String },
    #[error("{what} refers to node {node}, but the core has {count} nodes")]
    Dangling {
        what: String,
        node: usize,
        count: usize,
    },
    #[error("{count} next values for {states} states")]
    NextStates { count: usize, states: usize },
}

fn surrogate(spec: &SurrogateSpec) -> Result<Surrogate, BuildError> {
    let params: Vec<(&str, f64)> = spec.1.iter().map(|(k, v)| (k.as_str(), *v)).collect();
    Ok(Surrogate::from_name_and_params(&spec.0, &params)?)
}

/// Builds and verifies the step graph of `t`.
pub fn build(t: &Trace) -> Result<StepGraph, TraceError> {
    let mut b = GraphBuilder::new(t.name.clone());
    // Leaves first, in declaration order, so that graph leaf indices match the trace's.
    let mut leaves = (vec![], vec![], vec![]);
    for name in &t.inputs {
        leaves.0.push(b.add_input(name)?);
    }
    for (name, init) in &t.states {
        let init = init.map_or(StateInit::Runtime, StateInit::Const);
        leaves.1.push(b.add_state(name, init)?);
    }
    for (name, kind, learnable) in &t.params {
        let k = ParamKind::from_name(kind).ok_or_else(|| TraceError::ParamKind {
            name: name.clone(),
            kind: kind.clone(),
        })?;
        leaves.2.push(b.add_param(name, k, *learnable)?);
    }
    let mut ids: Vec<ValueId> = Vec::with_capacity(t.nodes.len());
    for (i, (op, args, num, sg)) in t.nodes.iter().enumerate() {
        let mut operands = Vec::with_capacity(args.len());
        for &a in args {
            operands.push(*ids.get(a).ok_or(TraceError::Operand { node: i, arg: a })?);
        }
        let leaf = |v: &Vec<ValueId>| {
            v.get(*num as usize).copied().ok_or(TraceError::Operand {
                node: i,
                arg: *num as usize,
            })
        };
        let need_sg = || {
            sg.as_ref().ok_or_else(|| TraceError::NoSurrogate {
                node: i,
                op: op.clone(),
            })
        };
        let id = match op.as_str() {
            "input" => leaf(&leaves.0)?,
            "state" => leaf(&leaves.1)?,
            "param" => leaf(&leaves.2)?,
            "const" => {
                let c = *num as f32;
                if !c.is_finite() {
                    return Err(BuildError::NonFiniteConst(c).into());
                }
                b.constant(c)
            }
            "spike" => b.op(Op::Spike(surrogate(need_sg()?)?), &operands)?,
            "primitive" => {
                let s = surrogate(need_sg()?)?;
                let x = *operands.first().ok_or(BuildError::Arity {
                    op: "primitive",
                    expected: 1,
                    got: 0,
                })?;
                b.surrogate_primitive(s, x)?
            }
            name => {
                let op = Op::plain_from_name(name).ok_or_else(|| TraceError::UnknownOp {
                    node: i,
                    op: name.to_string(),
                })?;
                b.op(op, &operands)?
            }
        };
        ids.push(id);
    }
    let node = |what: String, i: usize| {
        ids.get(i).copied().ok_or(TraceError::Dangling {
            what,
            node: i,
            count: ids.len(),
        })
    };
    for (name, i) in &t.outputs {
        b.add_output(name, node(format!("output `{name}`"), *i)?)?;
    }
    if t.next_states.len() != t.states.len() {
        return Err(TraceError::NextStates {
            count: t.next_states.len(),
            states: t.states.len(),
        });
    }
    for (j, &i) in t.next_states.iter().enumerate() {
        b.set_next_state(j, node(format!("next value of `{}`", t.states[j].0), i)?)?;
    }
    Ok(b.finish()?)
}
