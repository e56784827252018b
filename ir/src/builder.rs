//! The raw step-graph builder: [`GraphBuilder`] adds leaves and ops node by node (values are
//! [`ValueId`]s); passes, autodiff, the text parser and the frontends build with it.

use std::collections::HashMap;

use petgraph::graph::DiGraph;

use crate::error::BuildError;
use crate::graph::{
    InputDecl, Node, OutputDecl, ParamDecl, StateDecl, StateInit, StepGraph, ValueId,
};
use crate::op::{Op, OpKey, ParamKind};
use crate::verify::{check_state_init, valid_name};

/// Builds a [`StepGraph`] node by node. Identical nodes are shared (hash-consing), and node
/// indices stay in topological order.
#[derive(Clone, Debug)]
pub struct GraphBuilder {
    name: String,
    description: String,
    graph: DiGraph<Node, u8>,
    memo: HashMap<(OpKey, [u32; 3]), ValueId>,
    inputs: Vec<InputDecl>,
    states: Vec<StateDecl>,
    params: Vec<ParamDecl>,
    outputs: Vec<OutputDecl>,
    next_states: Vec<Option<ValueId>>,
    /// What each declared name is (one lookup per new name, however many there are).
    kinds: HashMap<String, &'static str>,
    /// Position of each state by name.
    state_positions: HashMap<String, usize>,
}

impl GraphBuilder {
    /// An empty builder for a core called `name`.
    pub fn new(name: impl Into<String>) -> Self {
        GraphBuilder {
            name: name.into(),
            description: String::new(),
            graph: DiGraph::default(),
            memo: HashMap::new(),
            inputs: vec![],
            states: vec![],
            params: vec![],
            outputs: vec![],
            next_states: vec![],
            kinds: HashMap::new(),
            state_positions: HashMap::new(),
        }
    }

    /// A builder with the same name, description, inputs, states and params as `g`, and no
    /// nodes: passes rebuild a graph through it.
    pub fn with_decls_of(g: &StepGraph) -> Self {
        let mut b = GraphBuilder::new(g.name.clone());
        b.description = g.description.clone();
        b.inputs = g.inputs.clone();
        b.states = g.states.clone();
        b.params = g.params.clone();
        b.next_states = vec![None; g.states.len()];
        for (i, d) in g.states.iter().enumerate() {
            b.state_positions.entry(d.name.clone()).or_insert(i);
        }
        let names = [
            (
                g.inputs.iter().map(|d| &d.name).collect::<Vec<_>>(),
                "an input",
            ),
            (g.states.iter().map(|d| &d.name).collect(), "a state"),
            (g.params.iter().map(|d| &d.name).collect(), "a param"),
        ];
        for (list, kind) in names {
            for name in list {
                b.kinds.entry(name.clone()).or_insert(kind);
            }
        }
        b
    }

    /// Sets the description the built graph carries.
    pub fn set_description(&mut self, d: impl Into<String>) {
        self.description = d.into();
    }

    /// Checks that `name` is valid and new, and records it as `second`.
    fn check_new_name(&mut self, name: &str, second: &'static str) -> Result<(), BuildError> {
        if !valid_name(name) {
            return Err(BuildError::InvalidName(name.into()));
        }
        match self.kinds.get(name) {
            Some(&first) => Err(BuildError::DuplicateName {
                name: name.into(),
                first,
                second,
            }),
            None => {
                self.kinds.insert(name.into(), second);
                Ok(())
            }
        }
    }

    /// Declares an input sequence and returns its value at the current step.
    pub fn add_input(&mut self, name: &str) -> Result<ValueId, BuildError> {
        self.check_new_name(name, "an input")?;
        self.inputs.push(InputDecl { name: name.into() });
        self.op(Op::Input(self.inputs.len() as u32 - 1), &[])
    }

    /// Declares a state and returns its value after the previous step.
    pub fn add_state(&mut self, name: &str, init: StateInit) -> Result<ValueId, BuildError> {
        self.check_new_name(name, "a state")?;
        check_state_init(name, init)?;
        self.state_positions.insert(name.into(), self.states.len());
        self.states.push(StateDecl {
            name: name.into(),
            init,
        });
        self.next_states.push(None);
        self.op(Op::State(self.states.len() as u32 - 1), &[])
    }

    /// Declares a parameter and returns its value.
    pub fn add_param(
        &mut self,
        name: &str,
        kind: ParamKind,
        learnable: bool,
    ) -> Result<ValueId, BuildError> {
        self.check_new_name(name, "a param")?;
        self.params.push(ParamDecl {
            name: name.into(),
            kind,
            learnable,
        });
        self.op(Op::Param(self.params.len() as u32 - 1), &[])
    }

    /// A constant.
    pub fn constant(&mut self, c: f32) -> ValueId {
        self.op(Op::Const(c), &[])
            .expect("a constant has no operands to get wrong")
    }

    /// Adds (or finds) the node `op(args)`. Checks arity, that operands exist, and leaf indices.
    pub fn op(&mut self, op: Op, args: &[ValueId]) -> Result<ValueId, BuildError> {
        let expected = op.arity().count();
        if args.len() != expected {
            return Err(BuildError::Arity {
                op: op.name(),
                expected,
                got: args.len(),
            });
        }
        for &a in args {
            if a.index() >= self.graph.node_count() {
                return Err(BuildError::DanglingValue(a.index() as u32));
            }
        }
        let (kind, index, count) = match op {
            Op::Input(i) => ("input", i, self.inputs.len()),
            Op::State(i) => ("state", i, self.states.len()),
            Op::Param(i) => ("param", i, self.params.len()),
            _ => ("", 0, usize::MAX),
        };
        if index as usize >= count {
            return Err(BuildError::LeafOutOfRange { kind, index, count });
        }
        let mut key_args = [u32::MAX; 3];
        for (slot, a) in key_args.iter_mut().zip(args) {
            *slot = a.index() as u32;
        }
        if op.is_commutative() && key_args[1] < key_args[0] {
            key_args.swap(0, 1);
        }
        let key = (op.key(), key_args);
        if let Some(&v) = self.memo.get(&key) {
            return Ok(v);
        }
        let v = self.graph.add_node(Node {
            op,
            args: args.to_vec(),
        });
        for (pos, &a) in args.iter().enumerate() {
            self.graph.add_edge(a, v, pos as u8);
        }
        self.memo.insert(key, v);
        Ok(v)
    }

    /// The node computing `v`.
    pub fn node(&self, v: ValueId) -> &Node {
        &self.graph[v]
    }

    /// Names an output of the step.
    pub fn add_output(&mut self, name: &str, value: ValueId) -> Result<(), BuildError> {
        if value.index() >= self.graph.node_count() {
            return Err(BuildError::DanglingValue(value.index() as u32));
        }
        self.check_new_name(name, "an output")?;
        self.outputs.push(OutputDecl {
            name: name.into(),
            value,
        });
        Ok(())
    }

    /// Sets the next value of state `index`.
    pub fn set_next_state(&mut self, index: usize, value: ValueId) -> Result<(), BuildError> {
        if value.index() >= self.graph.node_count() {
            return Err(BuildError::DanglingValue(value.index() as u32));
        }
        let name = self.states[index].name.clone();
        let slot = &mut self.next_states[index];
        if slot.is_some() {
            return Err(BuildError::StateUpdatedTwice(name));
        }
        *slot = Some(value);
        Ok(())
    }

    /// Index of the state called `name`, or an error listing the declared states.
    pub fn state_index(&self, name: &str) -> Result<usize, BuildError> {
        self.state_positions
            .get(name)
            .copied()
            .ok_or_else(|| BuildError::UnknownState {
                name: name.into(),
                declared: self
                    .states
                    .iter()
                    .map(|s| s.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
            })
    }

    /// Finishes the graph: every state must have a next value. The result is verified.
    pub fn finish(self) -> Result<StepGraph, BuildError> {
        if self.outputs.is_empty() && self.states.is_empty() {
            return Err(BuildError::Empty);
        }
        let mut next_states = Vec::with_capacity(self.states.len());
        for (s, v) in self.states.iter().zip(&self.next_states) {
            next_states.push(v.ok_or_else(|| BuildError::StateNotUpdated(s.name.clone()))?);
        }
        let g = StepGraph {
            name: self.name,
            description: self.description,
            graph: self.graph,
            inputs: self.inputs,
            states: self.states,
            params: self.params,
            outputs: self.outputs,
            next_states,
            names: Default::default(),
        };
        crate::verify::verify(&g)?;
        Ok(g)
    }
}

/// Assembles a graph from its nodes as given (no hash-consing: duplicates stay, e.g. to test a
/// pass that merges them) and its declarations, then verifies it.
pub fn assemble(
    name: &str,
    nodes: Vec<Node>,
    inputs: Vec<InputDecl>,
    states: Vec<StateDecl>,
    params: Vec<ParamDecl>,
    outputs: Vec<OutputDecl>,
    next_states: Vec<ValueId>,
) -> Result<StepGraph, BuildError> {
    let mut graph = DiGraph::<Node, u8>::default();
    for node in nodes {
        let args = node.args.clone();
        let v = graph.add_node(node);
        for (i, a) in args.into_iter().enumerate() {
            if a.index() >= v.index() {
                return Err(BuildError::ForwardReference {
                    node: v.index() as u32,
                    operand: i,
                    arg: a.index() as u32,
                });
            }
            graph.add_edge(a, v, i as u8);
        }
    }
    let g = StepGraph {
        name: name.into(),
        description: String::new(),
        graph,
        inputs,
        states,
        params,
        outputs,
        next_states,
        names: Default::default(),
    };
    crate::verify::verify(&g)?;
    Ok(g)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_declared_nan_initial_value_is_refused() {
        let mut b = GraphBuilder::new("k");
        assert_eq!(
            b.add_state("v", StateInit::Const(f32::NAN)),
            Err(BuildError::NanStateInit("v".into()))
        );
        // Infinities (written with the named constants) and runtime values stay allowed.
        assert!(b.add_state("w", StateInit::Const(f32::INFINITY)).is_ok());
        assert!(b.add_state("u", StateInit::Runtime).is_ok());
        // A graph made some other way is refused by the verifier too.
        let mut b = GraphBuilder::new("k");
        let v = b.add_state("v", StateInit::Const(0.0)).unwrap();
        b.set_next_state(0, v).unwrap();
        let mut g = b.finish().unwrap();
        g.states[0].init = StateInit::Const(f32::NAN);
        assert_eq!(
            crate::verify::verify(&g),
            Err(BuildError::NanStateInit("v".into()))
        );
    }
}
