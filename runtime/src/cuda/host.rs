//! Host-side buffers of a scan launch: which buffer each kernel argument is, how long it is,
//! and the conversions between `f32` and the storage type of sequences (f16/bf16 are rounded to
//! nearest even, like the generated device code).

use flexsn_compiler::codegen::cuda::{ArgRole, ArgType, CudaSource, StorageDtype};
use flexsn_compiler::scan::{ScanArgs, ScanKernel, ScanResult, param_len};

use super::CudaError;

/// One kernel buffer: its argument, element type and length for a `[T, N]` run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BufferSpec {
    /// The argument's name.
    pub name: String,
    /// What the argument is (input, state, param, output, ...).
    pub role: ArgRole,
    /// Its element type on the device.
    pub ty: ArgType,
    /// Its length in elements.
    pub len: usize,
}

/// The buffers of `src`'s kernel for a `[t, n]` run, in argument order.
pub fn buffer_specs(
    src: &CudaSource,
    kernel: &ScanKernel,
    t: usize,
    n: usize,
) -> Result<Vec<BufferSpec>, CudaError> {
    let g = &kernel.graph;
    let tn = t.checked_mul(n).ok_or_else(|| {
        CudaError::TooLarge(format!("T * N = {t} * {n} overflows the address space"))
    })?;
    Ok(src
        .args
        .iter()
        .map(|a| {
            let len = match a.role {
                // Scan kernels take no checkpoints (`checkpoint::specs` sizes them); at most
                // T rows.
                ArgRole::Input(_) | ArgRole::StateSeq(_) | ArgRole::Checkpoint(_) => tn,
                ArgRole::InitState(_) | ArgRole::FinalState(_) => n,
                ArgRole::Param(k) => param_len(g.params()[k].kind, t, n),
                ArgRole::Output(o) => kernel.output_len(o, t, n),
            };
            BufferSpec {
                name: a.name.clone(),
                role: a.role,
                ty: a.ty,
                len,
            }
        })
        .collect())
}

/// A host buffer in the element type the kernel expects.
#[derive(Clone, Debug, PartialEq)]
pub enum HostBuf {
    /// `f32` values.
    F32(Vec<f32>),
    /// f16 or bf16 bits.
    U16(Vec<u16>),
}

impl HostBuf {
    /// Number of elements.
    pub fn len(&self) -> usize {
        match self {
            HostBuf::F32(v) => v.len(),
            HostBuf::U16(v) => v.len(),
        }
    }

    /// Whether there are no elements.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Raw pointer to the first element, for an FFI call.
    pub fn as_mut_ptr(&mut self) -> *mut std::ffi::c_void {
        match self {
            HostBuf::F32(v) => v.as_mut_ptr().cast(),
            HostBuf::U16(v) => v.as_mut_ptr().cast(),
        }
    }

    /// Zeros of `ty` (in `dtype` storage for [`ArgType::Storage`]).
    pub fn zeros(ty: ArgType, dtype: StorageDtype, len: usize) -> Self {
        match (ty, dtype) {
            (ArgType::F32, _) | (ArgType::Storage, StorageDtype::F32) => {
                HostBuf::F32(vec![0.0; len])
            }
            _ => HostBuf::U16(vec![0; len]),
        }
    }

    /// Encodes `xs` as `ty` in `dtype` storage.
    pub fn encode(ty: ArgType, dtype: StorageDtype, xs: &[f32]) -> Self {
        match (ty, dtype) {
            (ArgType::F32, _) | (ArgType::Storage, StorageDtype::F32) => HostBuf::F32(xs.to_vec()),
            (ArgType::Storage, StorageDtype::F16) => HostBuf::U16(
                xs.iter()
                    .map(|&x| half::f16::from_f32(x).to_bits())
                    .collect(),
            ),
            (ArgType::Storage, StorageDtype::Bf16) => HostBuf::U16(
                xs.iter()
                    .map(|&x| half::bf16::from_f32(x).to_bits())
                    .collect(),
            ),
        }
    }

    /// Decodes to `f32` (`dtype` says what `U16` bits mean).
    pub fn decode(&self, dtype: StorageDtype) -> Vec<f32> {
        match self {
            HostBuf::F32(v) => v.clone(),
            HostBuf::U16(v) => match dtype {
                StorageDtype::Bf16 => v
                    .iter()
                    .map(|&b| half::bf16::from_bits(b).to_f32())
                    .collect(),
                _ => v
                    .iter()
                    .map(|&b| half::f16::from_bits(b).to_f32())
                    .collect(),
            },
        }
    }
}

/// `xs` rounded to `dtype` (nearest even) and back to `f32`: what a kernel with that storage
/// sees of an `f32` sequence.
pub fn round_to_storage(dtype: StorageDtype, xs: &[f32]) -> Vec<f32> {
    HostBuf::encode(ArgType::Storage, dtype, xs).decode(dtype)
}

/// Host buffers for a launch: inputs encoded from `args`, outputs zeroed. `args` must be checked.
pub fn input_buffers(
    src: &CudaSource,
    specs: &[BufferSpec],
    args: &ScanArgs<'_, f32>,
) -> Vec<HostBuf> {
    specs
        .iter()
        .map(|s| match s.role {
            ArgRole::Input(i) => HostBuf::encode(s.ty, src.dtype, args.inputs[i]),
            ArgRole::InitState(j) => HostBuf::encode(s.ty, src.dtype, args.init_states[j]),
            ArgRole::Param(k) => HostBuf::encode(s.ty, src.dtype, args.params[k]),
            _ => HostBuf::zeros(s.ty, src.dtype, s.len),
        })
        .collect()
}

/// Collects the written buffers into a [`ScanResult`] (decoded to `f32`).
pub fn collect_result(
    src: &CudaSource,
    kernel: &ScanKernel,
    specs: &[BufferSpec],
    bufs: &[HostBuf],
) -> ScanResult<f32> {
    let g = &kernel.graph;
    let mut outputs = vec![Vec::new(); g.outputs().len()];
    let mut state_seqs = if kernel.state_seqs {
        vec![Vec::new(); g.states().len()]
    } else {
        Vec::new()
    };
    let mut final_states = vec![Vec::new(); g.states().len()];
    for (s, b) in specs.iter().zip(bufs) {
        match s.role {
            ArgRole::Output(o) => outputs[o] = b.decode(src.dtype),
            ArgRole::StateSeq(j) => state_seqs[j] = b.decode(src.dtype),
            ArgRole::FinalState(j) => final_states[j] = b.decode(src.dtype),
            _ => {}
        }
    }
    ScanResult {
        outputs,
        state_seqs,
        final_states,
    }
}

/// The grid size (blocks) for `n` neurons, checked against CUDA's limit on `gridDim.x`.
pub fn grid_for(src: &CudaSource, n: usize) -> Result<u32, CudaError> {
    let blocks = src.grid_size(n as u64);
    u32::try_from(blocks)
        .ok()
        .filter(|&b| b <= i32::MAX as u32)
        .ok_or_else(|| {
            CudaError::TooLarge(format!(
                "N = {n} needs {blocks} blocks of {} threads, more than one launch allows (2^31 - 1)",
                src.block_size
            ))
        })
}
