//! The bit-exact model of generated scan kernels: the interpreter's scan, with every op evaluated
//! by [`lower_op`] on [`Scalar`] lanes (the inline math library instead of libm).
//!
//! Generated code must agree with [`run_scan`] bit for bit (NaNs compare equal whatever their
//! payload); the runtime's tests check this on random graphs, so the only differences between a
//! CPU kernel and the oracle ([`crate::interp::run_scan`]) are the documented errors of
//! [`super::math`].

use super::lanes::Scalar;
use super::lower::lower_op;
use crate::ir::{Op, ParamKind};
use crate::scan::{Direction, OutputMode, ScanArgs, ScanKernel, ScanResult, ShapeError};

/// Runs `kernel` on the model. Arguments are checked first.
pub fn run_scan(
    kernel: &ScanKernel,
    args: &ScanArgs<'_, f32>,
) -> Result<ScanResult<f32>, ShapeError> {
    let g = &kernel.graph;
    args.check(g)?;
    let (t_len, n_len) = (args.t, args.n);
    let mut outputs: Vec<Vec<f32>> = (0..g.outputs().len())
        .map(|o| vec![0.0; kernel.output_len(o, t_len, n_len)])
        .collect();
    let mut state_seqs = if kernel.state_seqs {
        vec![vec![0.0; t_len * n_len]; g.states().len()]
    } else {
        vec![]
    };
    let mut final_states = vec![vec![0.0; n_len]; g.states().len()];
    let mut values = vec![0.0f32; g.len()];
    let mut a = Vec::with_capacity(3);
    for n in 0..n_len {
        let mut s: Vec<f32> = args.init_states.iter().map(|s0| s0[n]).collect();
        for step in 0..t_len {
            let t = match kernel.direction {
                Direction::Forward => step,
                Direction::Reverse => t_len - 1 - step,
            };
            for (v, node) in g.nodes() {
                values[v.index()] = match node.op {
                    Op::Input(i) => args.inputs[i as usize][t * n_len + n],
                    Op::State(j) => s[j as usize],
                    Op::Param(k) => {
                        let p = args.params[k as usize];
                        match g.params()[k as usize].kind {
                            ParamKind::Shared => p[0],
                            ParamKind::PerNeuron => p[n],
                            ParamKind::PerTime => p[t],
                        }
                    }
                    ref op => {
                        a.clear();
                        a.extend(node.args.iter().map(|x| values[x.index()]));
                        lower_op(&mut Scalar, op, &a)
                    }
                };
            }
            for (o, decl) in g.outputs().iter().enumerate() {
                let v = values[decl.value.index()];
                match kernel.output_modes[o] {
                    OutputMode::Sequence => outputs[o][t * n_len + n] = v,
                    OutputMode::SumOverTime => outputs[o][n] += v,
                }
            }
            for (j, next) in g.next_states().iter().enumerate() {
                s[j] = values[next.index()];
                if kernel.state_seqs {
                    state_seqs[j][t * n_len + n] = s[j];
                }
            }
        }
        for (j, sj) in s.into_iter().enumerate() {
            final_states[j][n] = sj;
        }
    }
    Ok(ScanResult {
        outputs,
        state_seqs,
        final_states,
    })
}
