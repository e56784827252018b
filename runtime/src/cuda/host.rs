//! Host-side buffers of a scan launch: which buffer each kernel argument is, how long it is,
//! and the conversions between `f32` and the storage type of sequences (f16/bf16 are rounded to
//! nearest even, like the generated device code).

use flexsn_compiler::codegen::cuda::{ArgRole, ArgType, CudaSource, RowLayout, StorageDtype};
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
    /// Its length in elements (`T * pitch` for a sequence).
    pub len: usize,
    /// The row pitch in elements of a `[T, N]` sequence (at least `N`); `None` for the others.
    pub pitch: Option<usize>,
}

impl BufferSpec {
    /// The pitch of a sequence, `n` for the others (so dense and padded code read alike).
    pub fn pitch_or(&self, n: usize) -> usize {
        self.pitch.unwrap_or(n)
    }
}

/// The buffers of `src`'s kernel for a dense `[t, n]` run (every row pitch `n`), in argument
/// order.
pub fn buffer_specs(
    src: &CudaSource,
    kernel: &ScanKernel,
    t: usize,
    n: usize,
) -> Result<Vec<BufferSpec>, CudaError> {
    pitched_specs(src, kernel, t, n, &[])
}

/// The buffers of a `[t, n]` run whose sequences are laid out as `layout`.
pub fn layout_specs(
    src: &CudaSource,
    kernel: &ScanKernel,
    t: usize,
    n: usize,
    layout: RowLayout,
) -> Result<Vec<BufferSpec>, CudaError> {
    let pitch = layout
        .pitch(n, src.dtype)
        .ok_or_else(|| CudaError::TooLarge(format!("N = {n} padded to whole rows overflows")))?;
    let pitches: Vec<_> = src
        .args
        .iter()
        .map(|a| a.is_sequence().then_some(pitch))
        .collect();
    pitched_specs(src, kernel, t, n, &pitches)
}

/// The buffers of a `[t, n]` run with a row pitch per argument (`pitches[i]` for argument `i`;
/// `None`, or an empty `pitches`, means `n`). A pitch below `n`, a pitch given for a buffer that
/// is not a `[T, N]` sequence, and sizes that overflow are errors naming the buffer.
pub fn pitched_specs(
    src: &CudaSource,
    kernel: &ScanKernel,
    t: usize,
    n: usize,
    pitches: &[Option<usize>],
) -> Result<Vec<BufferSpec>, CudaError> {
    let g = &kernel.graph;
    if !pitches.is_empty() && pitches.len() != src.args.len() {
        return Err(CudaError::Buffer {
            name: src.entry.clone(),
            message: format!(
                "expected {} row pitches (one per buffer), got {}",
                src.args.len(),
                pitches.len()
            ),
        });
    }
    let bad = |name: &str, message: String| CudaError::Buffer {
        name: name.to_string(),
        message,
    };
    src.args
        .iter()
        .enumerate()
        .map(|(i, a)| {
            let given = pitches.get(i).copied().flatten();
            let pitch = match (a.is_sequence(), given) {
                (false, None) => None,
                (false, Some(p)) => {
                    return Err(bad(
                        &a.name,
                        format!("row pitch {p} given for a buffer that is not [T, N]"),
                    ));
                }
                (true, None) => Some(n),
                (true, Some(p)) if p < n => {
                    return Err(bad(&a.name, format!("row pitch {p} is less than N = {n}")));
                }
                (true, Some(p)) => Some(p),
            };
            let len = match a.role {
                ArgRole::InitState(_) | ArgRole::FinalState(_) => n,
                ArgRole::Param(k) => param_len(g.params()[k].kind, t, n),
                ArgRole::Output(o) if pitch.is_none() => kernel.output_len(o, t, n),
                // Scan kernels take no checkpoints (`checkpoint::specs` sizes those).
                ArgRole::Input(_)
                | ArgRole::StateSeq(_)
                | ArgRole::Output(_)
                | ArgRole::Checkpoint(_) => {
                    let p = pitch.unwrap_or(n);
                    t.checked_mul(p).ok_or_else(|| {
                        CudaError::TooLarge(format!(
                            "`{}`: T * pitch = {t} * {p} overflows the address space",
                            a.name
                        ))
                    })?
                }
            };
            Ok(BufferSpec {
                name: a.name.clone(),
                role: a.role,
                ty: a.ty,
                len,
                pitch,
            })
        })
        .collect()
}

/// The `long long` scalars of a scan launch: `T`, `N`, then the pitch of each sequence buffer
/// of `specs` in order (the generated kernel's trailing parameters).
pub fn launch_scalars(specs: &[BufferSpec], t: usize, n: usize) -> Result<Vec<i64>, CudaError> {
    let to_i64 = |x: usize, what: &str| {
        i64::try_from(x).map_err(|_| CudaError::TooLarge(format!("{what} = {x} exceeds 2^63")))
    };
    let mut v = vec![to_i64(t, "T")?, to_i64(n, "N")?];
    for s in specs {
        if let Some(p) = s.pitch {
            v.push(to_i64(p, "a row pitch")?);
        }
    }
    Ok(v)
}

/// `rows` rows of `n` values, dense in `xs`, spread to rows `pitch` apart (the gaps zero).
fn spread_rows<E: Copy + Default>(xs: &[E], n: usize, pitch: usize) -> Vec<E> {
    if pitch == n || n == 0 {
        return xs.to_vec();
    }
    let mut v = vec![E::default(); xs.len() / n * pitch];
    for (dst, src) in v.chunks_exact_mut(pitch).zip(xs.chunks_exact(n)) {
        dst[..n].copy_from_slice(src);
    }
    v
}

/// The first `n` values of each row of `xs` (rows `pitch` apart), dense.
fn gather_rows<E: Copy>(xs: &[E], n: usize, pitch: usize) -> Vec<E> {
    if pitch == n || n == 0 {
        return xs.to_vec();
    }
    xs.chunks_exact(pitch)
        .flat_map(|r| &r[..n])
        .copied()
        .collect()
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

    /// `self` as rows of `n` spread `pitch` apart (see [`BufferSpec::pitch`]).
    pub fn spread(self, n: usize, pitch: usize) -> Self {
        match self {
            HostBuf::F32(v) => HostBuf::F32(spread_rows(&v, n, pitch)),
            HostBuf::U16(v) => HostBuf::U16(spread_rows(&v, n, pitch)),
        }
    }

    /// The dense rows of `n` of a buffer whose rows are `pitch` apart.
    pub fn gather(&self, n: usize, pitch: usize) -> Self {
        match self {
            HostBuf::F32(v) => HostBuf::F32(gather_rows(v, n, pitch)),
            HostBuf::U16(v) => HostBuf::U16(gather_rows(v, n, pitch)),
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

/// Host buffers for a launch: inputs encoded from `args` (rows spread to their pitch), outputs
/// zeroed. `args` must be checked.
pub fn input_buffers(
    src: &CudaSource,
    specs: &[BufferSpec],
    args: &ScanArgs<'_, f32>,
) -> Vec<HostBuf> {
    specs
        .iter()
        .map(|s| match s.role {
            ArgRole::Input(i) => {
                HostBuf::encode(s.ty, src.dtype, args.inputs[i]).spread(args.n, s.pitch_or(args.n))
            }
            ArgRole::InitState(j) => HostBuf::encode(s.ty, src.dtype, args.init_states[j]),
            ArgRole::Param(k) => HostBuf::encode(s.ty, src.dtype, args.params[k]),
            _ => HostBuf::zeros(s.ty, src.dtype, s.len),
        })
        .collect()
}

/// Collects the written buffers of an `n`-neuron run into a [`ScanResult`] (rows gathered from
/// their pitch, decoded to `f32`).
pub fn collect_result(
    src: &CudaSource,
    kernel: &ScanKernel,
    specs: &[BufferSpec],
    bufs: &[HostBuf],
    n: usize,
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
        let dense = || b.gather(n, s.pitch_or(n)).decode(src.dtype);
        match s.role {
            ArgRole::Output(o) => outputs[o] = dense(),
            ArgRole::StateSeq(j) => state_seqs[j] = dense(),
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
