//! Stateful neuron nodes, as users of SpikingJelly know them.
//!
//! A [`Node`] wraps any single-step core (a built-in neuron, a `#[neuron]` type, a
//! [`StepGraph`]) with what a layer of a network needs:
//!
//! - a step mode: [`StepMode::Single`] (`"s"`, one step `[N]` per call) or [`StepMode::Multi`]
//!   (`"m"`, a sequence `[T, N]` per call); both give the same numbers;
//! - states kept from call to call until [`Node::reset`], starting from each state's rule
//!   ([`StateInit`] of the graph: the built-ins start `v` at `v_reset`, or 0 for soft reset),
//!   overridable with [`Node::set_state_init`] or set directly with [`Node::set_state`];
//! - state sequences on request ([`Node::set_store_state_seqs`], SpikingJelly's `store_v_seq`;
//!   single steps append to them, as SpikingJelly does since PR #747);
//! - the parameter values (PLIF's `w`, ...) and their gradients, accumulated by every backward
//!   until [`Node::zero_grad`];
//! - backward through everything since the last reset, backward or [`Node::detach`]: the node
//!   records each call (single steps and sequences alike) and [`Node::backward`] runs the
//!   reverse scan over the recorded steps. Single steps followed by one backward give what one
//!   multi-step call and its backward give;
//! - the backend, chosen at construction ([`NodeBackend`]).
//!
//! **One deliberate difference from SpikingJelly:** a call whose neuron count differs from the
//! states' (for example a new batch size) without a [`Node::reset`] is an error
//! ([`NodeError::ShapeChanged`]), not a silent re-initialisation of the states, which in
//! SpikingJelly hides a forgotten `reset_net`.
//!
//! ```
//! use flexsn_neurons::node::{Node, NodeBackend, StepMode};
//! use flexsn_neurons::{Builtin, LIFNode};
//!
//! let mut lif = Node::builtin(&Builtin::Lif(LIFNode::new()), NodeBackend::Interpreter)?;
//! lif.set_step_mode(StepMode::Single)?;
//! let n = 3;
//! let mut spikes = vec![];
//! for t in 0..4 {
//!     let x = vec![0.9f32 + t as f32 * 0.1; n];
//!     spikes.push(lif.forward(&[&x], n)?.remove(0));     // [N] per step
//! }
//! // Backward through the four steps: upstream gradients of every step's spikes, [4, N].
//! let grads = lif.backward(&[Some(&vec![1.0f32; 4 * n])])?;
//! assert_eq!(grads.inputs[0].len(), 4 * n);
//! lif.reset();
//! # Ok::<(), flexsn_neurons::node::NodeError>(())
//! ```

use flexsn_compiler::BuildError;
use flexsn_compiler::bptt::{ExecError, Upstream};
use flexsn_compiler::ir::{ParamKind, StateInit, StepGraph};
use flexsn_runtime::memory::Estimate;
use flexsn_runtime::{
    Backend, CheckpointBuffers, GradBuffers, InferenceBuffers, Jit, Kernel, KernelArgs, Neuron,
    RuntimeError, SavePolicy, TrainingBuffers,
};

use crate::Builtin;
use crate::nonspiking::{Decode, DecodeError};
use crate::params::NeuronError;

/// SpikingJelly's `step_mode`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum StepMode {
    /// `"s"`: one time step per call, inputs `[N]`.
    Single,
    /// `"m"`: a sequence per call, inputs `[T, N]`.
    Multi,
}

impl StepMode {
    /// `"s"` or `"m"`.
    pub fn name(self) -> &'static str {
        match self {
            StepMode::Single => "s",
            StepMode::Multi => "m",
        }
    }
    /// Parses `"s"`/`"single"` and `"m"`/`"multi"`.
    pub fn from_name(s: &str) -> Option<StepMode> {
        match s {
            "s" | "single" => Some(StepMode::Single),
            "m" | "multi" => Some(StepMode::Multi),
            _ => None,
        }
    }
}

/// Where a node's scans run: any backend of the runtime ([`Backend::from_name`] parses the
/// names). [`Node::with_jit`] takes any [`Jit`], e.g. the CPU backend with chosen threads.
pub type NodeBackend = Backend;

/// How a state starts after a reset.
#[derive(Clone, Debug, PartialEq)]
pub enum StateInitRule {
    /// Every neuron starts at this value.
    Const(f32),
    /// These values, one per neuron (the node's N must match).
    Values(Vec<f32>),
}

/// Why a node call failed. Each variant names what is wrong.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    #[error(transparent)]
    /// The step graph is invalid.
    Build(#[from] BuildError),
    #[error(transparent)]
    /// A forward/backward driver error.
    Exec(#[from] ExecError),
    #[error(transparent)]
    /// The decode failed.
    Decode(#[from] DecodeError),
    #[error(transparent)]
    /// The neuron's settings are invalid.
    Neuron(#[from] NeuronError),
    #[error(
        "the node holds states for N = {expected} neurons but the call has N = {got}; call reset() first (flexsn does not re-initialise states silently)"
    )]
    /// `N` changed without `reset()`.
    ShapeChanged {
        /// What the call needs.
        expected: usize,
        /// What it got.
        got: usize,
    },
    #[error("expected {expected} input sequence(s) (the core's inputs: {names}), got {got}")]
    /// The wrong number of input sequences.
    InputCount {
        /// What the call needs.
        expected: usize,
        /// What it got.
        got: usize,
        /// The core's input names.
        names: String,
    },
    #[error("input `{name}`: {len} elements is not {what} for N = {n}")]
    /// An input of the wrong length.
    InputLen {
        /// The name given.
        name: String,
        /// Its number of values.
        len: usize,
        /// Neurons.
        n: usize,
        /// What was checked.
        what: &'static str,
    },
    #[error("N = 0: a call needs at least one neuron")]
    /// `N = 0`.
    NoNeurons,
    #[error("`{0}` is multi-step only (step_mode \"m\")")]
    /// A multi-step-only module called single-step.
    MultiStepOnly(String),
    #[error("no state named `{name}`; the core's states: {declared}")]
    /// A state name the core does not have.
    UnknownState {
        /// The name given.
        name: String,
        /// The names the core declares.
        declared: String,
    },
    #[error("no parameter named `{name}`; the core's parameters: {declared}")]
    /// A parameter name the core does not have.
    UnknownParam {
        /// The name given.
        name: String,
        /// The names the core declares.
        declared: String,
    },
    #[error("parameter `{name}` ({kind}): expected {expected} values, got {got}")]
    /// A parameter value of the wrong length.
    ParamLen {
        /// The name given.
        name: String,
        /// Its kind (shared, per neuron, per time).
        kind: &'static str,
        /// What the call needs.
        expected: usize,
        /// What it got.
        got: usize,
    },
    #[error("parameter `{0}` has no value: set it with set_param before the first call")]
    /// A parameter without a value.
    ParamNotSet(String),
    #[error("per-time parameter `{name}` has {len} values but the call reaches time step {needed}")]
    /// A per-time parameter shorter than the steps run.
    PerTimeTooShort {
        /// The name given.
        name: String,
        /// Its number of values.
        len: usize,
        /// The time step the call reaches.
        needed: usize,
    },
    #[error("state `{name}`: expected {expected} values (N), got {got}")]
    /// A state value of the wrong length.
    StateLen {
        /// The name given.
        name: String,
        /// What the call needs.
        expected: usize,
        /// What it got.
        got: usize,
    },
    #[error(
        "parameters cannot change while steps are recorded for backward: call backward(), detach() or reset() first"
    )]
    /// Parameters changed while steps are recorded for backward.
    TapeInProgress,
    #[error(
        "the save policy cannot change while steps are recorded for backward: call backward(), detach() or reset() first"
    )]
    /// The save policy changed while steps are recorded for backward.
    PolicyWhileRecording,
    #[error("the node's save policy: {0}")]
    /// A checkpoint interval of zero ([`SavePolicy::check`]).
    ZeroCheckpointInterval(flexsn_compiler::checkpoint::SavePolicyError),
    #[error("backward: nothing recorded since the last reset/backward/detach (or not training)")]
    /// Backward with nothing recorded.
    NothingRecorded,
    #[error(transparent)]
    /// The runtime failed to compile or run the kernel.
    Runtime(#[from] RuntimeError),
    #[error("backward: {what}: expected {expected} elements, got {got}")]
    /// An upstream gradient of the wrong length.
    GradLen {
        /// What was checked.
        what: String,
        /// What the call needs.
        expected: usize,
        /// What it got.
        got: usize,
    },
}

/// Upstream gradients for [`Node::backward_with`], over the recorded steps (`[steps, N]` each,
/// or `[N]` for final states); `None` = zero.
#[derive(Clone, Debug, Default)]
pub struct NodeUpstream<'a> {
    /// Per output (for a decoding non-spiking node: the decoded output's gradient).
    pub outputs: Vec<Option<&'a [f32]>>,
    /// Per state: gradient of its sequence over the recorded steps.
    pub state_seqs: Vec<Option<&'a [f32]>>,
    /// Per state: gradient of its value after the last recorded step.
    pub final_states: Vec<Option<&'a [f32]>>,
}

/// What [`Node::backward`] returns (parameter gradients are accumulated in the node).
#[derive(Clone, Debug, PartialEq)]
pub struct NodeGrads {
    /// Per input: `[steps, N]`, the recorded steps in order.
    pub inputs: Vec<Vec<f32>>,
    /// Per state: gradient of its value before the first recorded step (`[N]`).
    pub init_states: Vec<Vec<f32>>,
}

/// The calls recorded for backward since the last reset, backward or detach.
#[derive(Clone, Debug, Default)]
struct Tape {
    /// The node's time step at the first recorded step.
    t0: usize,
    steps: usize,
    /// Per input: `[steps, N]`.
    inputs: Vec<Vec<f32>>,
    /// Per state: under `states`, `[steps + 1, N]`, the state before the first recorded step,
    /// then after each (the layout of [`Kernel::backward_host`]'s state buffers); under
    /// `checkpoint:K`, `⌈steps/K⌉` rows of `N`, the state before recorded steps `0, K, 2K, …`
    /// (the checkpoints of [`Kernel::backward_checkpointed_host`]).
    state_bufs: Vec<Vec<f32>>,
    /// The save policy the steps are recorded under.
    policy: SavePolicy,
    /// Non-decoding nodes: empty. Decoding nodes: the last call's output-0 sequence.
    decode_seq: Vec<f32>,
}

/// The params by name, sliced for `t` steps from time step `t0`.
fn param_slices<'a>(
    graph: &'a StepGraph,
    values: &'a [Option<Vec<f32>>],
    t0: usize,
    t: usize,
    n: usize,
) -> Result<Vec<(&'a str, &'a [f32])>, NodeError> {
    graph
        .params()
        .iter()
        .zip(values)
        .map(|(d, v)| {
            let v = v
                .as_deref()
                .ok_or_else(|| NodeError::ParamNotSet(d.name.clone()))?;
            let v = match d.kind {
                ParamKind::Shared => Ok(v),
                ParamKind::PerNeuron => {
                    if v.len() == n {
                        Ok(v)
                    } else {
                        Err(NodeError::ParamLen {
                            name: d.name.clone(),
                            kind: d.kind.name(),
                            expected: n,
                            got: v.len(),
                        })
                    }
                }
                ParamKind::PerTime => {
                    let end = t0 + t;
                    v.get(t0..end).ok_or_else(|| NodeError::PerTimeTooShort {
                        name: d.name.clone(),
                        len: v.len(),
                        needed: end,
                    })
                }
            }?;
            Ok((d.name.as_str(), v))
        })
        .collect()
}

/// A stateful neuron layer over any single-step core; see the [module docs](self).
#[derive(Debug)]
pub struct Node {
    graph: StepGraph,
    kernel: Kernel,
    mode: StepMode,
    training: bool,
    store_state_seqs: bool,
    save_policy: SavePolicy,
    /// Non-spiking nodes: states restart from their rule on every call (multi-step only).
    restart_each_call: bool,
    decode: Option<Decode>,
    params: Vec<Option<Vec<f32>>>,
    param_grads: Vec<Option<Vec<f32>>>,
    init_rules: Vec<Option<StateInitRule>>,
    states: Option<Vec<Vec<f32>>>,
    n: Option<usize>,
    time_step: usize,
    state_seqs: Option<Vec<Vec<f32>>>,
    tape: Tape,
}

fn names<'a>(it: impl Iterator<Item = &'a str>) -> String {
    let v: Vec<&str> = it.collect();
    if v.is_empty() {
        "none".into()
    } else {
        v.join(", ")
    }
}

impl Node {
    /// A node over any neuron core (built-in, `#[neuron]` type, [`StepGraph`]), multi-step,
    /// training, with no parameter values set (set learnable and fixed params with
    /// [`Node::set_param`]; shared params start at 0).
    pub fn new(neuron: &impl Neuron, backend: NodeBackend) -> Result<Node, NodeError> {
        Node::with_jit(neuron, &Jit::new(backend)?)
    }

    /// A node whose scans run on `jit` (any backend and options; kernels are cached in it).
    pub fn with_jit(neuron: &impl Neuron, jit: &Jit) -> Result<Node, NodeError> {
        let graph = neuron.step_graph()?;
        flexsn_compiler::verify::verify(&graph)?;
        let kernel = jit.compile(&graph)?;
        Ok(Node::with_kernel(graph, kernel))
    }

    fn with_kernel(graph: StepGraph, kernel: Kernel) -> Node {
        let params = graph
            .params()
            .iter()
            .map(|d| (d.kind == ParamKind::Shared).then(|| vec![0.0]))
            .collect();
        let param_grads = vec![None; graph.params().len()];
        let init_rules = vec![None; graph.states().len()];
        Node {
            graph,
            kernel,
            mode: StepMode::Multi,
            training: true,
            store_state_seqs: false,
            save_policy: SavePolicy::States,
            restart_each_call: false,
            decode: None,
            params,
            param_grads,
            init_rules,
            states: None,
            n: None,
            time_step: 0,
            state_seqs: None,
            tape: Tape::default(),
        }
    }

    /// A node for a built-in neuron, with its initial parameter values (PLIF's `w`) and, for the
    /// non-spiking neurons, SpikingJelly's behaviour: multi-step only, `v` restarting at 0 on
    /// every call, and the neuron's decoding applied to the voltage sequence. IF/LIF/PLIF start
    /// in single-step mode, SpikingJelly's default; [`Node::set_step_mode`] changes it.
    pub fn builtin(b: &Builtin, backend: NodeBackend) -> Result<Node, NodeError> {
        let node = Node::new(&b.step_graph()?, backend)?;
        node.builtin_rules(b)
    }

    /// [`Node::builtin`] on any [`Jit`].
    pub fn builtin_with_jit(b: &Builtin, jit: &Jit) -> Result<Node, NodeError> {
        let node = Node::with_jit(&b.step_graph()?, jit)?;
        node.builtin_rules(b)
    }

    fn builtin_rules(mut self, b: &Builtin) -> Result<Node, NodeError> {
        let node = &mut self;
        for (name, v) in b.initial_params() {
            node.set_param(&name, &v)?;
        }
        if let Some(d) = b.decode() {
            node.restart_each_call = true;
            node.decode = (d != Decode::Sequence).then_some(d);
        } else {
            node.mode = StepMode::Single;
        }
        Ok(self)
    }

    /// The step graph the node runs.
    pub fn graph(&self) -> &StepGraph {
        &self.graph
    }
    /// The name of the backend the scans run on (with its options, for a `Jit`).
    pub fn backend_name(&self) -> String {
        self.kernel.jit().backend_name()
    }
    /// Single-step (`s`) or multi-step (`m`).
    pub fn step_mode(&self) -> StepMode {
        self.mode
    }
    /// Sets the step mode. States and recorded steps are kept: single steps may follow a
    /// sequence and vice versa.
    pub fn set_step_mode(&mut self, mode: StepMode) -> Result<(), NodeError> {
        if mode == StepMode::Single && self.restart_each_call {
            return Err(NodeError::MultiStepOnly(self.graph.name().to_string()));
        }
        self.mode = mode;
        Ok(())
    }
    /// Whether calls record steps for backward.
    pub fn training(&self) -> bool {
        self.training
    }
    /// Training (default): calls are recorded for backward. Otherwise nothing is recorded.
    pub fn set_training(&mut self, training: bool) {
        self.training = training;
        if !training {
            self.detach();
        }
    }
    /// Whether every call stores the state sequences (SpikingJelly's `store_v_seq`). Setting it
    /// drops the stored sequences.
    pub fn set_store_state_seqs(&mut self, on: bool) {
        self.store_state_seqs = on;
        self.state_seqs = None;
    }
    /// Bytes of states the recorded steps keep for backward (the inputs are kept too): `S` rows
    /// of `N` floats per step under `states`, one row per `K` steps under `checkpoint:K`.
    pub fn saved_bytes(&self) -> usize {
        let floats: usize = self.tape.state_bufs.iter().map(Vec::len).sum();
        floats * std::mem::size_of::<f32>()
    }

    /// What training keeps for backward (default `states`).
    pub fn save_policy(&self) -> SavePolicy {
        self.save_policy
    }

    /// Sets what training keeps for backward: `states` (every state after every step) or
    /// `checkpoint:K` (the state before every `K`-th recorded step; backward recomputes the
    /// rest, with bit-identical results). Refused while steps are recorded.
    pub fn set_save_policy(&mut self, policy: SavePolicy) -> Result<(), NodeError> {
        policy.check().map_err(NodeError::ZeroCheckpointInterval)?;
        if self.tape.steps > 0 {
            return Err(NodeError::PolicyWhileRecording);
        }
        self.save_policy = policy;
        Ok(())
    }

    /// Whether multi-step calls keep every state's sequence.
    pub fn store_state_seqs(&self) -> bool {
        self.store_state_seqs
    }
    /// The number of neurons the states hold, once a call or [`Node::set_state`] fixed it.
    pub fn n(&self) -> Option<usize> {
        self.n
    }
    /// Time steps since the last reset.
    pub fn time_step(&self) -> usize {
        self.time_step
    }
    /// Steps recorded for the next backward.
    pub fn recorded_steps(&self) -> usize {
        self.tape.steps
    }

    /// Back to the start: states return to their initial rule at the next call, stored state
    /// sequences and recorded steps are dropped, the time step is 0. Parameters and their
    /// gradients are kept.
    pub fn reset(&mut self) {
        self.states = None;
        self.n = None;
        self.time_step = 0;
        self.state_seqs = None;
        self.tape = Tape::default();
    }

    /// Keeps the states but stops backward here (truncated BPTT): later backward calls see
    /// only the steps after this point, and the current states as their initial states.
    pub fn detach(&mut self) {
        self.tape = Tape {
            t0: self.time_step,
            ..Tape::default()
        };
    }

    fn state_index(&self, name: &str) -> Result<usize, NodeError> {
        self.graph
            .state_index(name)
            .ok_or_else(|| NodeError::UnknownState {
                name: name.to_string(),
                declared: names(self.graph.states().iter().map(|d| d.name.as_str())),
            })
    }

    fn param_index(&self, name: &str) -> Result<usize, NodeError> {
        self.graph
            .param_index(name)
            .ok_or_else(|| NodeError::UnknownParam {
                name: name.to_string(),
                declared: names(self.graph.params().iter().map(|d| d.name.as_str())),
            })
    }

    /// Overrides the initial value of state `name` after a reset.
    pub fn set_state_init(&mut self, name: &str, rule: StateInitRule) -> Result<(), NodeError> {
        let j = self.state_index(name)?;
        self.init_rules[j] = Some(rule);
        Ok(())
    }

    /// The current value of every state (`None` before the first call after a reset).
    pub fn states(&self) -> Option<&[Vec<f32>]> {
        self.states.as_deref()
    }

    /// The current value of state `name`.
    pub fn state(&self, name: &str) -> Result<Option<&[f32]>, NodeError> {
        let j = self.state_index(name)?;
        Ok(self.states.as_ref().map(|s| s[j].as_slice()))
    }

    /// Sets state `name` now (SpikingJelly's `node.v = ...`), fixing N to its length. The other
    /// states start from their rules if they have no value yet. Recorded steps are dropped:
    /// the next backward's initial-state gradient is the gradient w.r.t. this value.
    pub fn set_state(&mut self, name: &str, values: &[f32]) -> Result<(), NodeError> {
        let j = self.state_index(name)?;
        let n = values.len();
        if n == 0 {
            return Err(NodeError::NoNeurons);
        }
        if let Some(prev) = self.n
            && prev != n
        {
            return Err(NodeError::ShapeChanged {
                expected: prev,
                got: n,
            });
        }
        self.materialize(n)?;
        if let Some(s) = self.states.as_mut() {
            s[j] = values.to_vec();
        }
        self.detach();
        Ok(())
    }

    /// The stored sequence of state `name` (`[T, N]`, the state after each step), when
    /// [`Node::set_store_state_seqs`] is on: the last multi-step call's, or the single steps'
    /// since the last reset.
    pub fn state_seq(&self, name: &str) -> Result<Option<&[f32]>, NodeError> {
        let j = self.state_index(name)?;
        Ok(self.state_seqs.as_ref().map(|s| s[j].as_slice()))
    }

    /// SpikingJelly's `v_seq`: the stored sequence of state `v`.
    pub fn v_seq(&self) -> Result<Option<&[f32]>, NodeError> {
        self.state_seq(crate::V_STATE)
    }

    /// The value of parameter `name` (`None` while unset).
    pub fn param(&self, name: &str) -> Result<Option<&[f32]>, NodeError> {
        let k = self.param_index(name)?;
        Ok(self.params[k].as_deref())
    }

    /// Sets parameter `name`: `[1]` shared, `[N]` per neuron, `[L]` per time step (`L` at least
    /// the number of steps the calls reach). Not allowed while steps are recorded.
    pub fn set_param(&mut self, name: &str, values: &[f32]) -> Result<(), NodeError> {
        let k = self.param_index(name)?;
        if self.tape.steps > 0 {
            return Err(NodeError::TapeInProgress);
        }
        let d = &self.graph.params()[k];
        let expected = match d.kind {
            ParamKind::Shared => Some(1),
            ParamKind::PerNeuron => self.n,
            ParamKind::PerTime => None,
        };
        if let Some(e) = expected
            && e != values.len()
        {
            return Err(NodeError::ParamLen {
                name: name.to_string(),
                kind: d.kind.name(),
                expected: e,
                got: values.len(),
            });
        }
        self.params[k] = Some(values.to_vec());
        if let Some(g) = &self.param_grads[k]
            && g.len() != values.len()
        {
            self.param_grads[k] = None;
        }
        Ok(())
    }

    /// The gradient of learnable parameter `name` accumulated since [`Node::zero_grad`]
    /// (`None` before any backward, and for parameters that are not learnable).
    pub fn param_grad(&self, name: &str) -> Result<Option<&[f32]>, NodeError> {
        let k = self.param_index(name)?;
        Ok(self.param_grads[k].as_deref())
    }

    /// Moves the node onto `graph`, which declares every state and param of the current graph
    /// (same names and kinds) and maybe more, compiled on the node's [`Jit`]. Everything is
    /// carried over by name: states, their rules, stored sequences, recorded steps, params and
    /// gradients. A new state holds its constant initial value now and in every stored or
    /// recorded row, a new param the value `new_param` gives it: the caller guarantees that this
    /// is what the bigger graph would have computed (SlidingPSN's older registers, still 0).
    pub(crate) fn extend_graph(
        &mut self,
        graph: StepGraph,
        new_param: impl Fn(&str) -> Option<Vec<f32>>,
    ) -> Result<(), NodeError> {
        let kernel = self.kernel.jit().compile(&graph)?;
        let old = &self.graph;
        let n = self.n.unwrap_or(0);
        let (steps, policy) = (self.tape.steps, self.tape.policy);
        let rows = match policy {
            SavePolicy::Checkpoint(k) => steps.div_ceil(k.max(1)),
            SavePolicy::States => steps + 1,
        };
        let mut states = self.states.as_ref().map(|_| Vec::new());
        let mut seqs = self.state_seqs.as_ref().map(|_| Vec::new());
        let (mut rules, mut bufs) = (Vec::new(), Vec::new());
        for d in graph.states() {
            let fill = match d.init {
                StateInit::Const(c) => c,
                StateInit::Runtime => {
                    return Err(ExecError::MissingInitialState(d.name.clone()).into());
                }
            };
            let j = old.state_index(&d.name);
            rules.push(j.and_then(|j| self.init_rules[j].clone()));
            if let (Some(acc), Some(cur)) = (&mut states, &self.states) {
                acc.push(j.map_or_else(|| vec![fill; n], |j| cur[j].clone()));
            }
            if let (Some(acc), Some(cur)) = (&mut seqs, &self.state_seqs) {
                let len = cur.first().map_or(0, Vec::len);
                acc.push(j.map_or_else(|| vec![fill; len], |j| cur[j].clone()));
            }
            if steps > 0 {
                let cur = &self.tape.state_bufs;
                let len = cur.first().map_or(rows * n, Vec::len);
                bufs.push(j.map_or_else(|| vec![fill; len], |j| cur[j].clone()));
            }
        }
        let (mut params, mut grads) = (Vec::new(), Vec::new());
        for d in graph.params() {
            match old.param_index(&d.name) {
                Some(k) => {
                    params.push(self.params[k].clone());
                    grads.push(self.param_grads[k].clone());
                }
                None => {
                    params.push(new_param(&d.name));
                    grads.push(None);
                }
            }
        }
        self.graph = graph;
        self.kernel = kernel;
        self.params = params;
        self.param_grads = grads;
        self.init_rules = rules;
        self.states = states;
        self.state_seqs = seqs;
        if steps > 0 {
            self.tape.state_bufs = bufs;
        }
        Ok(())
    }

    /// Clears the accumulated parameter gradients.
    pub fn zero_grad(&mut self) {
        for g in self.param_grads.iter_mut().flatten() {
            g.fill(0.0);
        }
    }

    /// Creates the states for `n` neurons from their rules if there are none.
    fn materialize(&mut self, n: usize) -> Result<(), NodeError> {
        if self.states.is_some() {
            return Ok(());
        }
        let states = self
            .graph
            .states()
            .iter()
            .zip(&self.init_rules)
            .map(|(d, rule)| match (rule, d.init) {
                (Some(StateInitRule::Const(c)), _) => Ok(vec![*c; n]),
                (None, StateInit::Const(c)) => Ok(vec![c; n]),
                (Some(StateInitRule::Values(v)), _) => {
                    if v.len() == n {
                        Ok(v.clone())
                    } else {
                        Err(NodeError::StateLen {
                            name: d.name.clone(),
                            expected: n,
                            got: v.len(),
                        })
                    }
                }
                (None, StateInit::Runtime) => {
                    Err(ExecError::MissingInitialState(d.name.clone()).into())
                }
            })
            .collect::<Result<Vec<_>, NodeError>>()?;
        self.states = Some(states);
        self.n = Some(n);
        self.tape = Tape {
            t0: self.time_step,
            ..Tape::default()
        };
        Ok(())
    }

    /// One call in the node's step mode: inputs `[N]` (single) or `[T, N]` (multi), one slice
    /// per core input; returns one vector per output (`[N]` or `[T, N]`; a decoding
    /// non-spiking node returns its decoded output).
    pub fn forward(&mut self, inputs: &[&[f32]], n: usize) -> Result<Vec<Vec<f32>>, NodeError> {
        match self.mode {
            StepMode::Single => self.single_step(inputs, n),
            StepMode::Multi => self.multi_step(inputs, n),
        }
    }

    /// One time step, whatever the step mode: inputs `[N]`, outputs `[N]`.
    pub fn single_step(&mut self, inputs: &[&[f32]], n: usize) -> Result<Vec<Vec<f32>>, NodeError> {
        if self.restart_each_call {
            return Err(NodeError::MultiStepOnly(self.graph.name().to_string()));
        }
        self.check_inputs(inputs, n, Some(1))?;
        self.run(inputs, 1, n)
    }

    /// A sequence, whatever the step mode: inputs `[T, N]` (T = len / N), outputs `[T, N]`.
    pub fn multi_step(&mut self, inputs: &[&[f32]], n: usize) -> Result<Vec<Vec<f32>>, NodeError> {
        let t = self.check_inputs(inputs, n, None)?;
        self.run(inputs, t, n)
    }

    /// Checks input count and lengths; returns T.
    fn check_inputs(
        &self,
        inputs: &[&[f32]],
        n: usize,
        t: Option<usize>,
    ) -> Result<usize, NodeError> {
        let decls = self.graph.inputs();
        if inputs.len() != decls.len() {
            return Err(NodeError::InputCount {
                expected: decls.len(),
                got: inputs.len(),
                names: names(decls.iter().map(|d| d.name.as_str())),
            });
        }
        if n == 0 {
            return Err(NodeError::NoNeurons);
        }
        let t = match (t, inputs.first()) {
            (Some(t), _) => t,
            (None, Some(x)) => x.len() / n,
            (None, None) => {
                return Err(NodeError::InputCount {
                    expected: 1,
                    got: 0,
                    names: "a multi-step call needs an input to take T from".into(),
                });
            }
        };
        for (d, x) in decls.iter().zip(inputs) {
            if x.len() != t * n || (t == 0 && !x.is_empty()) {
                return Err(NodeError::InputLen {
                    name: d.name.clone(),
                    len: x.len(),
                    n,
                    what: if t == 1 && self.mode == StepMode::Single {
                        "[N]"
                    } else {
                        "[T, N] with the same T as the first input"
                    },
                });
            }
        }
        if let Some(prev) = self.n
            && prev != n
            && !self.restart_each_call
        {
            return Err(NodeError::ShapeChanged {
                expected: prev,
                got: n,
            });
        }
        Ok(t)
    }

    fn run(&mut self, inputs: &[&[f32]], t: usize, n: usize) -> Result<Vec<Vec<f32>>, NodeError> {
        if self.restart_each_call {
            self.reset();
        }
        let record = self.training;
        let want_seqs = record || self.store_state_seqs;
        {
            // States, outputs, final states, the state buffers and what the tape keeps.
            let g = &self.graph;
            let (o, s) = (g.outputs().len(), g.states().len());
            let rows = if want_seqs { t + 1 } else { 0 };
            let taped = if record { inputs.len() + s } else { 0 };
            let e = Estimate::new()
                .add(o + taped, &[t, n], 4)
                .add(s, &[rows, n], 4)
                .add(2 * s, &[n], 4);
            self.kernel.check_memory(e, "this step")?;
        }
        self.materialize(n)?;
        let g = &self.graph;
        let states = self.states.as_ref().expect("materialised above");
        let args = KernelArgs {
            t,
            n,
            inputs: inputs.to_vec(),
            init_states: Some(states.iter().map(Vec::as_slice).collect()),
            params: param_slices(g, &self.params, self.time_step, t, n)?,
        };
        let mut outputs = vec![vec![0.0; t * n]; g.outputs().len()];
        let mut final_states = vec![vec![0.0; n]; g.states().len()];
        let mut bufs = vec![];
        // Under `checkpoint:K`, the rows this call adds to the tape.
        let mut checkpoints: Option<Vec<Vec<f32>>> = None;
        let policy = match self.save_policy {
            SavePolicy::Checkpoint(k) if record && !g.states().is_empty() => Some(k),
            _ => None,
        };
        if let Some(k) =
            policy.filter(|k| !self.store_state_seqs && self.tape.steps.is_multiple_of(*k))
        {
            // The call starts a segment: the kernel writes the checkpoints itself.
            let mut cps = vec![vec![0.0; t.div_ceil(k) * n]; g.states().len()];
            self.kernel.forward_checkpointed_host(
                &args,
                k,
                &mut CheckpointBuffers {
                    outputs: outputs.iter_mut().map(Vec::as_mut_slice).collect(),
                    checkpoints: cps.iter_mut().map(Vec::as_mut_slice).collect(),
                    final_states: final_states.iter_mut().map(Vec::as_mut_slice).collect(),
                },
            )?;
            checkpoints = Some(cps);
        } else if want_seqs {
            bufs = vec![vec![0.0; (t + 1) * n]; g.states().len()];
            self.kernel.forward_host(
                &args,
                &mut TrainingBuffers {
                    outputs: outputs.iter_mut().map(Vec::as_mut_slice).collect(),
                    state_bufs: bufs.iter_mut().map(Vec::as_mut_slice).collect(),
                    final_states: final_states.iter_mut().map(Vec::as_mut_slice).collect(),
                },
            )?;
        } else {
            self.kernel.infer_host(
                &args,
                &mut InferenceBuffers {
                    outputs: outputs.iter_mut().map(Vec::as_mut_slice).collect(),
                    final_states: final_states.iter_mut().map(Vec::as_mut_slice).collect(),
                },
            )?;
        }
        if let (Some(k), None) = (policy, &checkpoints) {
            // Mid-segment (or state sequences wanted): the rows of this call's state buffers
            // that fall on recorded steps `0, K, 2K, …`.
            let s0 = self.tape.steps;
            checkpoints = Some(
                bufs.iter()
                    .map(|b| {
                        (0..t)
                            .filter(|i| (s0 + i).is_multiple_of(k))
                            .flat_map(|i| b[i * n..(i + 1) * n].iter().copied())
                            .collect()
                    })
                    .collect(),
            );
        }
        if record {
            let tape = &mut self.tape;
            if tape.steps == 0 {
                // Row 0 of each buffer is the state before this call.
                tape.t0 = self.time_step;
                tape.inputs = vec![Vec::new(); inputs.len()];
                tape.policy = policy.map_or(SavePolicy::States, SavePolicy::Checkpoint);
                tape.state_bufs = match &checkpoints {
                    Some(c) => c.clone(),
                    None => bufs.clone(),
                };
            } else {
                for (j, acc) in tape.state_bufs.iter_mut().enumerate() {
                    match &checkpoints {
                        Some(c) => acc.extend_from_slice(&c[j]),
                        None => acc.extend_from_slice(&bufs[j][n..]),
                    }
                }
            }
            for (acc, x) in tape.inputs.iter_mut().zip(inputs) {
                acc.extend_from_slice(x);
            }
            tape.steps += t;
        }
        if self.store_state_seqs {
            let seqs = bufs.iter().map(|b| &b[n..]);
            match (&mut self.state_seqs, self.mode) {
                (Some(acc), StepMode::Single) if t == 1 => {
                    for (a, s) in acc.iter_mut().zip(seqs) {
                        a.extend_from_slice(s);
                    }
                }
                (slot, _) => *slot = Some(seqs.map(<[f32]>::to_vec).collect()),
            }
        }
        self.states = Some(final_states);
        self.time_step += t;
        if let Some(d) = self.decode {
            let seq = std::mem::take(&mut outputs[0]);
            outputs[0] = d.forward(&seq, t, n)?;
            if record {
                self.tape.decode_seq = seq;
            }
        }
        Ok(outputs)
    }

    /// Backward over the recorded steps with upstream gradients for the outputs only
    /// (`[steps, N]` per output, the steps in the order they were taken; `None` = zero).
    pub fn backward(&mut self, grad_outputs: &[Option<&[f32]>]) -> Result<NodeGrads, NodeError> {
        let ns = self.graph.states().len();
        self.backward_with(&NodeUpstream {
            outputs: grad_outputs.to_vec(),
            state_seqs: vec![None; ns],
            final_states: vec![None; ns],
        })
    }

    /// Backward over the recorded steps: returns the gradients of the recorded inputs and of the
    /// states before the first recorded step, and adds the parameter gradients to the node's.
    /// The recorded steps are then dropped; the next calls record from the current states.
    pub fn backward_with(&mut self, up: &NodeUpstream<'_>) -> Result<NodeGrads, NodeError> {
        let (steps, n) = match self.n {
            Some(n) if self.tape.steps > 0 => (self.tape.steps, n),
            _ => return Err(NodeError::NothingRecorded),
        };
        let g = &self.graph;
        let count = |what: &str, expected: usize, got: usize| {
            if expected == got {
                Ok(())
            } else {
                Err(NodeError::GradLen {
                    what: format!("number of {what} gradients"),
                    expected,
                    got,
                })
            }
        };
        count("output", g.outputs().len(), up.outputs.len())?;
        count("state-sequence", g.states().len(), up.state_seqs.len())?;
        count("final-state", g.states().len(), up.final_states.len())?;
        // A decoded output's gradient becomes the gradient of the scan's output sequence.
        let decoded: Option<Vec<f32>> = match (self.decode, up.outputs.first()) {
            (Some(d), Some(Some(gd))) => Some(d.backward(&self.tape.decode_seq, gd, steps, n)?),
            _ => None,
        };
        let mut outputs = up.outputs.clone();
        if let Some(gd) = &decoded {
            outputs[0] = Some(gd);
        }
        let upstream = Upstream {
            outputs,
            state_seqs: up.state_seqs.clone(),
            final_states: up.final_states.clone(),
        };
        upstream.check(g, steps, n).map_err(ExecError::from)?;

        let tape = &self.tape;
        let args = KernelArgs {
            t: steps,
            n,
            inputs: tape.inputs.iter().map(Vec::as_slice).collect(),
            // Row 0 of the state buffers.
            init_states: None,
            params: param_slices(g, &self.params, tape.t0, steps, n)?,
        };
        let bufs: Vec<&[f32]> = tape.state_bufs.iter().map(Vec::as_slice).collect();
        let mut inputs = vec![vec![0.0; steps * n]; g.inputs().len()];
        let mut init_states = vec![vec![0.0; n]; g.states().len()];
        let mut grads = GradBuffers {
            inputs: inputs.iter_mut().map(Vec::as_mut_slice).collect(),
            init_states: init_states.iter_mut().map(Vec::as_mut_slice).collect(),
        };
        let param_grads = match tape.policy {
            SavePolicy::Checkpoint(k) => self
                .kernel
                .backward_checkpointed_host(&args, k, &bufs, &upstream, &mut grads)?,
            SavePolicy::States => self
                .kernel
                .backward_host(&args, &bufs, &upstream, &mut grads)?,
        };
        drop(grads);
        let t0 = tape.t0;
        for (k, (gk, d)) in param_grads.iter().zip(g.params()).enumerate() {
            let Some(gk) = gk else { continue };
            let full_len = self.params[k].as_ref().map_or(gk.len(), Vec::len);
            let acc = self.param_grads[k].get_or_insert_with(|| vec![0.0; full_len]);
            let offset = if d.kind == ParamKind::PerTime { t0 } else { 0 };
            for (a, &v) in acc[offset..].iter_mut().zip(gk) {
                *a += v;
            }
        }
        self.detach();
        Ok(NodeGrads {
            inputs,
            init_states,
        })
    }
}
