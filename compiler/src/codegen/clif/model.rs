//! The bit-exact model of generated scan kernels: the interpreter's scan loop
//! ([`crate::scan::drive`]), with every op evaluated by [`lower_op`] on [`Scalar`] lanes (the
//! inline math library instead of libm), fused or not as the code was generated
//! ([`super::ClifOptions::fused`]).
//!
//! Generated code must agree with [`run_scan`] bit for bit (NaNs compare equal whatever their
//! payload); the runtime's tests check this on random graphs, so the only differences between a
//! CPU kernel and the oracle ([`crate::interp::run_scan`]) are the documented errors of
//! [`super::math`].

use super::host_fma;
use super::lanes::Scalar;
use super::lower::lower_op;
use crate::scan::{ScanArgs, ScanKernel, ScanResult, ShapeError, drive};

/// Runs `kernel` on the model of the code the CPU backend generates on this machine (fused
/// where [`host_fma`]). Arguments are checked first.
pub fn run_scan(
    kernel: &ScanKernel,
    args: &ScanArgs<'_, f32>,
) -> Result<ScanResult<f32>, ShapeError> {
    run_scan_on(Scalar { fused: host_fma() }, kernel, args)
}

/// Runs `kernel` on the model `lanes`. Arguments are checked first.
pub fn run_scan_on(
    lanes: Scalar,
    kernel: &ScanKernel,
    args: &ScanArgs<'_, f32>,
) -> Result<ScanResult<f32>, ShapeError> {
    drive(kernel, args, |op, a| lower_op(&mut { lanes }, op, a))
}
