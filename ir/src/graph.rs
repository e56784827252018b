//! [`StepGraph`]: one time step of a neuron as a dataflow graph.

use std::collections::HashMap;
use std::sync::OnceLock;

use petgraph::graph::{DiGraph, NodeIndex};

use super::op::{Op, ParamKind};

/// A value in a step graph: the index of the node that computes it.
///
/// Node indices are topologically ordered: every node's operands have smaller indices. Builders
/// and passes keep this invariant and the verifier checks it, so a plain index-order walk is a
/// valid evaluation order.
pub type ValueId = NodeIndex<u32>;

/// One node: an op and its operands.
#[derive(Clone, Debug, PartialEq)]
pub struct Node {
    /// What the node computes.
    pub op: Op,
    /// Operands, in the order the op documents; each defined by an earlier node.
    pub args: Vec<ValueId>,
}

/// Whether value `v` is always exactly `+0` or `1`: its op is ([`Op::is_zero_one`]), or it is
/// `detach` of such a value. `node` looks values up (in a graph or a builder).
pub fn is_zero_one<'g>(node: impl Fn(ValueId) -> &'g Node, mut v: ValueId) -> bool {
    while node(v).op == Op::Detach {
        v = node(v).args[0];
    }
    node(v).op.is_zero_one()
}

/// An input sequence, read one time step at a time.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InputDecl {
    /// The input's name, unique among the graph's names.
    pub name: String,
}

/// How a state starts when the caller does not supply an initial value.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum StateInit {
    /// Every neuron starts at this value.
    Const(f32),
    /// The caller must supply the initial value at run time.
    Runtime,
}

/// A state carried from one time step to the next.
#[derive(Clone, Debug, PartialEq)]
pub struct StateDecl {
    /// The state's name, unique among the graph's names.
    pub name: String,
    /// Its value before the first step.
    pub init: StateInit,
}

/// A parameter: shared by all time steps (and neurons, for [`ParamKind::Shared`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParamDecl {
    /// The parameter's name, unique among the graph's names.
    pub name: String,
    /// Its shape: shared scalar, per neuron or per time step.
    pub kind: ParamKind,
    /// Whether backward computes a gradient for it.
    pub learnable: bool,
}

/// A named output of the step, stored as a `[T, N]` sequence by the scan.
#[derive(Clone, Debug, PartialEq)]
pub struct OutputDecl {
    /// The output's name, unique among the graph's names.
    pub name: String,
    /// The node whose value is stored at each step.
    pub value: ValueId,
}

/// One time step of a neuron: `(inputs_t, states_{t-1}, params) -> (outputs_t, states_t)`.
///
/// Build one with the raw [`GraphBuilder`](crate::builder::GraphBuilder) (or the compiler's
/// `CoreBuilder` DSL), from text with [`crate::text::parse`], or from Rust syntax with the
/// frontend.
#[derive(Clone, Debug)]
pub struct StepGraph {
    pub(crate) name: String,
    pub(crate) description: String,
    /// Nodes, with an edge `operand -> user` weighted by operand position.
    pub(crate) graph: DiGraph<Node, u8>,
    pub(crate) inputs: Vec<InputDecl>,
    pub(crate) states: Vec<StateDecl>,
    pub(crate) params: Vec<ParamDecl>,
    pub(crate) outputs: Vec<OutputDecl>,
    /// The next value of each state, in the order of `states`.
    pub(crate) next_states: Vec<ValueId>,
    /// Positions of the declared names, built on the first lookup.
    pub(crate) names: NameIndex,
}

/// Positions of the inputs, states, params and outputs by name, built on first use: graphs may
/// declare hundreds of thousands of names, and callers look each one up. Entries are checked
/// against the declarations at each lookup (a miss scans them), so an index built before a
/// declaration changed still answers right.
#[derive(Clone, Default)]
pub(crate) struct NameIndex(OnceLock<[HashMap<String, usize>; 4]>);

impl std::fmt::Debug for NameIndex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("NameIndex")
    }
}

/// The kinds of declarations [`NameIndex`] holds.
#[derive(Clone, Copy)]
enum DeclKind {
    Input = 0,
    State = 1,
    Param = 2,
    Output = 3,
}

impl StepGraph {
    /// The neuron's name.
    pub fn name(&self) -> &str {
        &self.name
    }
    /// Free-text description of the neuron (may be empty).
    pub fn description(&self) -> &str {
        &self.description
    }
    /// Replaces the description.
    pub fn set_description(&mut self, description: impl Into<String>) {
        self.description = description.into();
    }
    /// Renames the neuron; names inside the graph are unchanged.
    pub fn set_name(&mut self, name: impl Into<String>) {
        self.name = name.into();
    }
    /// Declared inputs; [`Op::Input`] indexes this list.
    pub fn inputs(&self) -> &[InputDecl] {
        &self.inputs
    }
    /// Declared states; [`Op::State`] indexes this list.
    pub fn states(&self) -> &[StateDecl] {
        &self.states
    }
    /// Declared parameters; [`Op::Param`] indexes this list.
    pub fn params(&self) -> &[ParamDecl] {
        &self.params
    }
    /// Declared outputs, in the order the scan stores them.
    pub fn outputs(&self) -> &[OutputDecl] {
        &self.outputs
    }
    /// The value each state takes after the step, parallel to [`StepGraph::states`].
    pub fn next_states(&self) -> &[ValueId] {
        &self.next_states
    }
    /// The petgraph graph, for algorithms (edges run operand -> user, weighted by position).
    pub fn petgraph(&self) -> &DiGraph<Node, u8> {
        &self.graph
    }
    /// Number of nodes.
    pub fn len(&self) -> usize {
        self.graph.node_count()
    }
    /// Whether the graph has no nodes.
    pub fn is_empty(&self) -> bool {
        self.graph.node_count() == 0
    }
    /// The node computing `v`.
    pub fn node(&self, v: ValueId) -> &Node {
        &self.graph[v]
    }
    /// All nodes in evaluation (index) order.
    pub fn nodes(&self) -> impl ExactSizeIterator<Item = (ValueId, &Node)> + '_ {
        self.graph.node_indices().map(move |i| (i, &self.graph[i]))
    }
    /// Index of the input, state, param or output with this name.
    pub fn input_index(&self, name: &str) -> Option<usize> {
        self.index_of(DeclKind::Input, name)
    }
    /// Index of the state called `name`.
    pub fn state_index(&self, name: &str) -> Option<usize> {
        self.index_of(DeclKind::State, name)
    }
    /// Index of the parameter called `name`.
    pub fn param_index(&self, name: &str) -> Option<usize> {
        self.index_of(DeclKind::Param, name)
    }
    /// Index of the output called `name`.
    pub fn output_index(&self, name: &str) -> Option<usize> {
        self.index_of(DeclKind::Output, name)
    }

    /// The names of one kind of declaration, in order.
    fn decl_names(&self, kind: DeclKind) -> Vec<&str> {
        match kind {
            DeclKind::Input => self.inputs.iter().map(|d| d.name.as_str()).collect(),
            DeclKind::State => self.states.iter().map(|d| d.name.as_str()).collect(),
            DeclKind::Param => self.params.iter().map(|d| d.name.as_str()).collect(),
            DeclKind::Output => self.outputs.iter().map(|d| d.name.as_str()).collect(),
        }
    }

    /// The first declaration of `kind` called `name`.
    fn index_of(&self, kind: DeclKind, name: &str) -> Option<usize> {
        let maps = self.names.0.get_or_init(|| {
            [
                DeclKind::Input,
                DeclKind::State,
                DeclKind::Param,
                DeclKind::Output,
            ]
            .map(|k| {
                let mut m = HashMap::new();
                for (i, n) in self.decl_names(k).into_iter().enumerate() {
                    m.entry(n.to_string()).or_insert(i);
                }
                m
            })
        });
        let name_at = |i: usize| match kind {
            DeclKind::Input => self.inputs.get(i).map(|d| d.name.as_str()),
            DeclKind::State => self.states.get(i).map(|d| d.name.as_str()),
            DeclKind::Param => self.params.get(i).map(|d| d.name.as_str()),
            DeclKind::Output => self.outputs.get(i).map(|d| d.name.as_str()),
        };
        match maps[kind as usize].get(name) {
            Some(&i) if name_at(i) == Some(name) => Some(i),
            _ => self.decl_names(kind).iter().position(|n| *n == name),
        }
    }
    /// Every value the step returns: outputs first, then next states.
    pub fn roots(&self) -> impl Iterator<Item = ValueId> + '_ {
        self.outputs
            .iter()
            .map(|o| o.value)
            .chain(self.next_states.iter().copied())
    }
    /// Whether any spike op in the graph is present.
    pub fn has_spikes(&self) -> bool {
        self.nodes().any(|(_, n)| matches!(n.op, Op::Spike(_)))
    }
    /// A stable 256-bit hash of the graph (names, decls, ops, constants' bits). Equal hashes
    /// mean equal graphs; used as the kernel-cache key.
    pub fn stable_hash(&self) -> [u8; 32] {
        // Debug forms of the parts, each length-prefixed so that no two graphs share an
        // encoding; ops through `Op::key`, which holds constants as bits.
        let mut h = blake3::Hasher::new();
        let mut put = |part: String| {
            h.update(&(part.len() as u64).to_le_bytes());
            h.update(part.as_bytes());
        };
        put(format!("{:?}{:?}", self.name, self.description));
        put(format!(
            "{:?}{:?}{:?}",
            self.inputs, self.states, self.params
        ));
        put(format!("{:?}{:?}", self.outputs, self.next_states));
        for (_, node) in self.nodes() {
            put(format!("{:?}{:?}", node.op.key(), node.args));
        }
        *h.finalize().as_bytes()
    }
    /// [`StepGraph::stable_hash`] as lowercase hex.
    pub fn stable_hash_hex(&self) -> String {
        self.stable_hash()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }
}
