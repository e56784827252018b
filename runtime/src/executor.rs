//! How backends plug in: a [`BackendCompiler`] turns a [`ScanKernel`] into a [`ScanExecutor`].

use std::any::Any;
use std::sync::Arc;

use flexsn_compiler::interp;
use flexsn_compiler::scan::{ScanArgs, ScanKernel, ScanResult, ShapeError};

use crate::RuntimeError;

/// Caller-provided result buffers of a scan (same shapes as [`ScanResult`]'s): lets a caller
/// reuse allocations and lay buffers out as it likes (e.g. a state sequence inside a larger
/// buffer).
#[derive(Debug)]
pub struct ScanOutputs<'a> {
    /// Per output: its sequence.
    pub outputs: Vec<&'a mut [f32]>,
    /// Empty unless the kernel stores state sequences.
    pub state_seqs: Vec<&'a mut [f32]>,
    /// Per state: its final value `[N]`.
    pub final_states: Vec<&'a mut [f32]>,
}

impl ScanOutputs<'_> {
    /// Checks counts and lengths against `kernel` for a `[t, n]` run.
    pub fn check(&self, kernel: &ScanKernel, t: usize, n: usize) -> Result<(), ShapeError> {
        let g = &kernel.graph;
        let nseq = if kernel.state_seqs {
            g.states().len()
        } else {
            0
        };
        let count = ShapeError::check_count;
        count("output buffers", g.outputs().len(), self.outputs.len())?;
        count("state-sequence buffers", nseq, self.state_seqs.len())?;
        count(
            "final-state buffers",
            g.states().len(),
            self.final_states.len(),
        )?;
        let len = |name, expected: usize, got| {
            ShapeError::check_len(name, format!("[{expected}]"), expected, got)
        };
        for (o, (d, b)) in g.outputs().iter().zip(&self.outputs).enumerate() {
            len(
                format!("output buffer {}", d.name),
                kernel.output_len(o, t, n),
                b.len(),
            )?;
        }
        for (d, b) in g.states().iter().zip(&self.state_seqs) {
            len(format!("state-sequence buffer {}", d.name), t * n, b.len())?;
        }
        for (d, b) in g.states().iter().zip(&self.final_states) {
            len(format!("final-state buffer {}", d.name), n, b.len())?;
        }
        Ok(())
    }
}

/// A compiled scan kernel: runs the kernel ABI of [`flexsn_compiler::scan`] for any `T`, `N`.
/// Implementations check `args` against the kernel before running generated code.
pub trait ScanExecutor: Send + Sync {
    /// Runs the scan and returns fresh buffers (checks `args` first).
    fn run(&self, args: &ScanArgs<'_, f32>) -> Result<ScanResult<f32>, RuntimeError>;
    /// Runs into caller-provided buffers (checked first). The default runs [`ScanExecutor::run`]
    /// and copies; backends override it to write in place.
    fn run_into(
        &self,
        args: &ScanArgs<'_, f32>,
        out: &mut ScanOutputs<'_>,
    ) -> Result<(), RuntimeError> {
        out.check(self.kernel(), args.t, args.n)?;
        let r = self.run(args)?;
        let pairs = out
            .outputs
            .iter_mut()
            .zip(&r.outputs)
            .chain(out.state_seqs.iter_mut().zip(&r.state_seqs))
            .chain(out.final_states.iter_mut().zip(&r.final_states));
        for (dst, src) in pairs {
            dst.copy_from_slice(src);
        }
        Ok(())
    }
    /// The kernel this executor runs.
    fn kernel(&self) -> &ScanKernel;
    /// For downcasting to the backend's type (e.g. `CpuScan` for its machine code).
    fn as_any(&self) -> &dyn Any;
}

/// A backend: compiles scan kernels.
pub trait BackendCompiler: Send + Sync {
    /// Identifies the backend and its options; part of the kernel-cache key.
    fn name(&self) -> String;
    /// Compiles one scan kernel.
    fn compile_scan(&self, kernel: &ScanKernel) -> Result<Arc<dyn ScanExecutor>, RuntimeError>;
}

/// The interpreter as an executor (the oracle; slow).
#[derive(Clone, Debug)]
pub struct InterpreterScan {
    kernel: ScanKernel,
}

impl ScanExecutor for InterpreterScan {
    fn run(&self, args: &ScanArgs<'_, f32>) -> Result<ScanResult<f32>, RuntimeError> {
        Ok(interp::run_scan(&self.kernel, args)?)
    }
    fn kernel(&self) -> &ScanKernel {
        &self.kernel
    }
    fn as_any(&self) -> &dyn Any {
        self
    }
}

/// The interpreter backend.
#[derive(Clone, Copy, Debug, Default)]
pub struct InterpreterCompiler;

impl BackendCompiler for InterpreterCompiler {
    fn name(&self) -> String {
        "interpreter".into()
    }
    fn compile_scan(&self, kernel: &ScanKernel) -> Result<Arc<dyn ScanExecutor>, RuntimeError> {
        flexsn_compiler::verify::verify(&kernel.graph)?;
        Ok(Arc::new(InterpreterScan {
            kernel: kernel.clone(),
        }))
    }
}
