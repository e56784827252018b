//! Comparing a backend's results with the interpreter's: NaN-aware, infinity-aware, with a
//! stated tolerance per storage type.

use flexsn_compiler::codegen::cuda::{MathMode, StorageDtype};
use flexsn_compiler::scan::ScanResult;

/// `|got - want| <= atol + rtol * |want|`; NaN equals NaN; infinities must be equal.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Tolerance {
    /// Absolute tolerance.
    pub atol: f32,
    /// Relative tolerance.
    pub rtol: f32,
}

impl Tolerance {
    /// Tolerance for the emulated backend (host libm, same roundings as the interpreter) with
    /// `dtype` storage: a few ulps of the storage type, so a value the two sides compute 1 ulp
    /// apart in `f32` may round to neighbouring storage values.
    pub fn emulated(dtype: StorageDtype) -> Self {
        match dtype {
            StorageDtype::F32 => Tolerance {
                atol: 1e-6,
                rtol: 1e-5,
            },
            // 2 ulp of f16 (10 stored mantissa bits), absolute: its smallest normal.
            StorageDtype::F16 => Tolerance {
                atol: 6.2e-5,
                rtol: 2.0 * 2f32.powi(-10),
            },
            // 2 ulp of bf16 (7 stored mantissa bits).
            StorageDtype::Bf16 => Tolerance {
                atol: 1e-6,
                rtol: 2.0 * 2f32.powi(-7),
            },
        }
    }

    /// Tolerance for the emulated backend in math mode `math`: fast math emulates the device's
    /// approximations (`__expf` as `exp2(x · log2 e)`, ...), so it gets the device's fast-math
    /// tolerance; precise math is [`Tolerance::emulated`].
    pub fn emulated_math(dtype: StorageDtype, math: MathMode) -> Self {
        match math {
            MathMode::Precise => Tolerance::emulated(dtype),
            MathMode::Fast => Tolerance::device(dtype, math),
        }
    }

    /// Tolerance for real CUDA: device `expf`, `tanhf`, ... are within 1-4 ulp of libm rather
    /// than equal, and fast math is coarser still.
    pub fn device(dtype: StorageDtype, math: MathMode) -> Self {
        let base = Tolerance::emulated(dtype);
        match math {
            MathMode::Precise => Tolerance {
                atol: base.atol.max(1e-5),
                rtol: base.rtol.max(1e-4),
            },
            MathMode::Fast => Tolerance {
                atol: base.atol.max(1e-3),
                rtol: base.rtol.max(1e-2),
            },
        }
    }

    /// Whether `got` is close enough to `want`.
    pub fn accepts(&self, got: f32, want: f32) -> bool {
        if got.is_nan() || want.is_nan() {
            return got.is_nan() && want.is_nan();
        }
        if got.is_infinite() || want.is_infinite() {
            return got == want;
        }
        (got - want).abs() <= self.atol + self.rtol * want.abs()
    }
}

/// The first differences between two buffers.
#[derive(Clone, Debug, PartialEq)]
pub struct Mismatch {
    /// The compared buffer.
    pub name: String,
    /// Total number of elements outside the tolerance (or a length difference).
    pub count: usize,
    /// Values compared.
    pub len: usize,
    /// Up to 8 `(index, got, want)`.
    pub first: Vec<(usize, f32, f32)>,
    /// `(got, expected)` lengths when they differ.
    pub len_differs: Option<(usize, usize)>,
}

impl std::fmt::Display for Mismatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if let Some((g, w)) = self.len_differs {
            return write!(f, "`{}`: length {g}, expected {w}", self.name);
        }
        write!(
            f,
            "`{}`: {} of {} elements differ",
            self.name, self.count, self.len
        )?;
        for (i, g, w) in &self.first {
            write!(f, "; [{i}] got {g:e}, want {w:e}")?;
        }
        Ok(())
    }
}

/// Compares one buffer.
pub fn compare(name: &str, got: &[f32], want: &[f32], tol: Tolerance) -> Result<(), Mismatch> {
    if got.len() != want.len() {
        return Err(Mismatch {
            name: name.into(),
            count: 1,
            len: want.len(),
            first: vec![],
            len_differs: Some((got.len(), want.len())),
        });
    }
    let mut m = Mismatch {
        name: name.into(),
        count: 0,
        len: want.len(),
        first: vec![],
        len_differs: None,
    };
    for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
        if !tol.accepts(g, w) {
            m.count += 1;
            if m.first.len() < 8 {
                m.first.push((i, g, w));
            }
        }
    }
    if m.count == 0 { Ok(()) } else { Err(m) }
}

/// Compares every buffer of two scan results; the names say which buffer differs.
pub fn compare_results(
    got: &ScanResult<f32>,
    want: &ScanResult<f32>,
    tol: Tolerance,
) -> Result<(), Vec<Mismatch>> {
    let mut errs = Vec::new();
    let mut check = |what: &str, g: &[Vec<f32>], w: &[Vec<f32>]| {
        if g.len() != w.len() {
            errs.push(Mismatch {
                name: format!("{what} (count)"),
                count: 1,
                len: w.len(),
                first: vec![],
                len_differs: Some((g.len(), w.len())),
            });
            return;
        }
        for (k, (g, w)) in g.iter().zip(w).enumerate() {
            if let Err(m) = compare(&format!("{what} {k}"), g, w, tol) {
                errs.push(m);
            }
        }
    };
    check("output", &got.outputs, &want.outputs);
    check("state sequence", &got.state_seqs, &want.state_seqs);
    check("final state", &got.final_states, &want.final_states);
    if errs.is_empty() { Ok(()) } else { Err(errs) }
}

/// What a kernel with `dtype` storage should return for `args`: the interpreter run on the
/// sequences rounded to `dtype`, with its sequence results rounded to `dtype` too (params,
/// states and sums over time stay `f32`, as in the kernel).
pub fn interpreter_reference(
    kernel: &flexsn_compiler::scan::ScanKernel,
    args: &flexsn_compiler::scan::ScanArgs<'_, f32>,
    dtype: StorageDtype,
) -> Result<ScanResult<f32>, flexsn_compiler::scan::ShapeError> {
    use super::host::round_to_storage;
    use flexsn_compiler::scan::{OutputMode, ScanArgs};
    if dtype == StorageDtype::F32 {
        return flexsn_compiler::interp::run_scan(kernel, args);
    }
    args.check(&kernel.graph)?;
    let rounded: Vec<Vec<f32>> = args
        .inputs
        .iter()
        .map(|x| round_to_storage(dtype, x))
        .collect();
    let rargs = ScanArgs {
        t: args.t,
        n: args.n,
        inputs: rounded.iter().map(Vec::as_slice).collect(),
        init_states: args.init_states.clone(),
        params: args.params.clone(),
    };
    let mut r = flexsn_compiler::interp::run_scan(kernel, &rargs)?;
    for (o, out) in r.outputs.iter_mut().enumerate() {
        if kernel.output_modes[o] == OutputMode::Sequence {
            *out = round_to_storage(dtype, out);
        }
    }
    for s in &mut r.state_seqs {
        *s = round_to_storage(dtype, s);
    }
    Ok(r)
}
