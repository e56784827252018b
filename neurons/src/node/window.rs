//! SlidingPSN's growing window in a [`Node`] built by [`Node::builtin`]: the node runs the
//! newest taps that the steps since the reset (or a state set by hand) can reach, and grows its
//! graph as the steps add up, so the work per step is bounded by the steps run, not by `k`.
//! The registers beyond the window hold 0 and the weights beyond it multiply only those zeros:
//! the results and the parameter gradients are those of the full `k`-tap graph.

use super::{Node, NodeError};
use crate::psn::{SlidingPSNConfig, sliding_weight_name};

/// The gradient of a weight no recorded step reached.
static ZERO: [f32; 1] = [0.0];

/// The taps a SlidingPSN node starts with (all of them when `k` is at most this): short runs
/// never compile another graph.
pub(crate) const INITIAL_TAPS: usize = 64;

/// The window of a SlidingPSN node.
#[derive(Clone, Debug)]
pub(super) struct Window {
    config: SlidingPSNConfig,
    /// The node's graph is `config.window_graph(taps)`.
    taps: usize,
    /// Registers `x_prev{j}` with `j > reach` hold 0 (nothing was shifted or set that far).
    reach: usize,
    /// Every weight `[k]`: the value of those older than the window (the node holds the others).
    weights: Vec<f32>,
    /// Zeros that the registers beyond the window read as (states and stored sequences).
    zeros: Vec<f32>,
}

impl Window {
    pub(super) fn new(config: SlidingPSNConfig, taps: usize) -> Window {
        let k = config.k.max(1);
        Window {
            config,
            taps,
            reach: 0,
            weights: vec![0.0; k],
            zeros: vec![],
        }
    }

    fn k(&self) -> usize {
        self.config.k.max(1)
    }

    /// `j` when `name` is register `x_prev{j}` beyond the window.
    fn outside_register(&self, name: &str) -> Option<usize> {
        let j: usize = name.strip_prefix("x_prev")?.parse().ok()?;
        (j >= self.taps && j < self.k() && format!("x_prev{j}") == name).then_some(j)
    }

    /// `i` when `name` is weight `i` older than the window.
    fn outside_weight(&self, name: &str) -> Option<usize> {
        let i: usize = name.strip_prefix("weight_")?.parse().ok()?;
        (i < self.k() - self.taps && sliding_weight_name(i) == name).then_some(i)
    }
}

impl Node {
    /// Grows the window (at least doubling, so single steps compile `O(log k)` graphs) to
    /// `taps` (clamped to `k`), carrying everything over by name.
    fn grow_window(&mut self, taps: usize) -> Result<(), NodeError> {
        let Some(win) = self.window.take() else {
            return Ok(());
        };
        let k = win.k();
        if taps <= win.taps {
            self.window = Some(win);
            return Ok(());
        }
        let w = taps.max(win.taps.saturating_mul(2)).min(k);
        let grown = win
            .config
            .window_graph(w)
            .map_err(NodeError::from)
            .and_then(|graph| {
                self.extend_graph(graph, |name| {
                    win.outside_weight(name).map(|i| vec![win.weights[i]])
                })
            });
        self.window = Some(Window { taps: w, ..win });
        grown
    }

    /// Before a call of `t` steps: the window covers every register those steps can fill.
    pub(super) fn fit_window(&mut self, t: usize) -> Result<(), NodeError> {
        if let Some(win) = &self.window {
            let needed = win.reach.saturating_add(t).saturating_add(1);
            self.grow_window(needed)?;
        }
        Ok(())
    }

    /// After a call of `t` steps: the registers shifted `t` places, and the zeros cover the
    /// states and stored sequences.
    pub(super) fn window_ran(&mut self, t: usize) {
        let n = self.n.unwrap_or(0);
        let seq = self
            .state_seqs
            .as_ref()
            .and_then(|s| s.first())
            .map_or(0, Vec::len);
        if let Some(win) = &mut self.window {
            win.reach = win.reach.saturating_add(t);
            let len = n.max(seq);
            if win.zeros.len() < len {
                win.zeros.resize(len, 0.0);
            }
        }
    }

    /// After a reset: every register is 0 again (unless a rule says otherwise: see
    /// [`Node::window_for_state`]).
    pub(super) fn window_reset(&mut self) {
        if let Some(win) = &mut self.window {
            win.reach = 0;
        }
    }

    /// Before state `name` is set to `values` now (`init: false`) or given an initial rule
    /// (`init: true`): the window grows to hold it (to all `k` taps for a rule, which holds
    /// after every reset).
    pub(super) fn window_for_state(&mut self, name: &str, init: bool) -> Result<(), NodeError> {
        let Some(win) = &self.window else {
            return Ok(());
        };
        let Some(j) = name
            .strip_prefix("x_prev")
            .and_then(|j| j.parse::<usize>().ok())
            .filter(|&j| j < win.k() && format!("x_prev{j}") == name)
        else {
            return Ok(());
        };
        let taps = if init { win.k() } else { j + 1 };
        self.grow_window(taps)?;
        if let Some(win) = &mut self.window {
            win.reach = win.reach.max(j);
        }
        Ok(())
    }

    /// The value of a register beyond the window (0): `Some(None)` before the states exist.
    pub(super) fn window_state(&self, name: &str) -> Option<Option<&[f32]>> {
        let win = self.window.as_ref()?;
        win.outside_register(name)?;
        Some(self.n.map(|n| &win.zeros[..n]))
    }

    /// The stored sequence of a register beyond the window (zeros).
    pub(super) fn window_state_seq(&self, name: &str) -> Option<Option<&[f32]>> {
        let win = self.window.as_ref()?;
        win.outside_register(name)?;
        let seqs = self.state_seqs.as_ref();
        Some(seqs.map(|s| &win.zeros[..s.first().map_or(0, Vec::len)]))
    }

    /// The value of a weight older than the window.
    pub(super) fn window_param(&self, name: &str) -> Option<&[f32]> {
        let win = self.window.as_ref()?;
        let i = win.outside_weight(name)?;
        Some(&win.weights[i..=i])
    }

    /// Sets a weight older than the window; `None` when `name` is not one.
    pub(super) fn set_window_param(
        &mut self,
        name: &str,
        values: &[f32],
    ) -> Option<Result<(), NodeError>> {
        let i = self.window.as_ref()?.outside_weight(name)?;
        if self.tape.steps > 0 {
            return Some(Err(NodeError::TapeInProgress));
        }
        if values.len() != 1 {
            return Some(Err(NodeError::ParamLen {
                name: name.to_string(),
                kind: flexsn_compiler::ir::ParamKind::Shared.name(),
                expected: 1,
                got: values.len(),
            }));
        }
        let win = self.window.as_mut()?;
        win.weights[i] = values[0];
        Some(Ok(()))
    }

    /// The gradient of a weight older than the window: 0 once a backward ran (no recorded step
    /// reached it), `None` before, as for the others.
    pub(super) fn window_param_grad(&self, name: &str) -> Option<Option<&[f32]>> {
        self.window.as_ref()?.outside_weight(name)?;
        let any = self.param_grads.iter().any(Option::is_some);
        Some(any.then_some(&ZERO[..]))
    }

    /// The taps the node runs now (`None` for a node that is not a SlidingPSN).
    pub fn window_taps(&self) -> Option<usize> {
        self.window.as_ref().map(|w| w.taps)
    }
}
