//! Host memory handed over from Python: a tensor's data address and element count.
//!
//! Python passes `(tensor.data_ptr(), tensor.numel())` of contiguous float32 CPU tensors that it
//! keeps alive for the whole call. This module is the one place that turns such a pair into a
//! slice; before it does, it checks everything that can be checked here: the length each
//! argument must have, a non-null and 4-byte-aligned address, a size that fits `isize`, and that
//! no buffer written to overlaps any other buffer of the call.

use pyo3::prelude::*;

use crate::errors::{Kind, raise};

/// `(address, length in f32 elements)` of a caller's buffer.
#[derive(Clone, Copy, Debug)]
pub struct HostBuf {
    pub addr: usize,
    pub len: usize,
}

impl<'a, 'py> FromPyObject<'a, 'py> for HostBuf {
    type Error = PyErr;

    fn extract(ob: Borrowed<'a, 'py, PyAny>) -> PyResult<Self> {
        let (addr, len): (usize, usize) = ob.extract()?;
        Ok(HostBuf { addr, len })
    }
}

impl HostBuf {
    fn end(&self) -> usize {
        self.addr + self.len * 4
    }

    /// Checks `self` as argument `name`, which must hold `expected` floats.
    pub fn check(&self, py: Python<'_>, name: &str, expected: usize) -> PyResult<()> {
        if self.len != expected {
            return Err(raise(
                py,
                Kind::Value,
                format!(
                    "`{name}`: expected {expected} float32 elements, got {}",
                    self.len
                ),
            ));
        }
        if self.len == 0 {
            return Ok(());
        }
        let bytes = self
            .len
            .checked_mul(4)
            .filter(|b| *b <= isize::MAX as usize);
        let fits = bytes.and_then(|b| self.addr.checked_add(b)).is_some();
        if self.addr == 0 || !self.addr.is_multiple_of(4) || !fits {
            return Err(raise(
                py,
                Kind::Value,
                format!(
                    "`{name}`: address {:#x} with {} elements is not a valid float32 buffer",
                    self.addr, self.len
                ),
            ));
        }
        Ok(())
    }
}

/// Slices of one call: the buffers read, then the buffers written.
pub type Slices<'a> = (Vec<&'a [f32]>, Vec<&'a mut [f32]>);

/// The checked buffers of one call: read-only ones, then written ones.
pub struct Call {
    reads: Vec<(String, HostBuf)>,
    writes: Vec<(String, HostBuf)>,
}

impl Call {
    pub fn new() -> Self {
        Call {
            reads: vec![],
            writes: vec![],
        }
    }

    /// Registers a buffer that the kernel reads.
    pub fn read(&mut self, py: Python<'_>, name: &str, b: HostBuf, len: usize) -> PyResult<usize> {
        b.check(py, name, len)?;
        self.reads.push((name.to_string(), b));
        Ok(self.reads.len() - 1)
    }

    /// Registers a buffer that the kernel writes.
    pub fn write(&mut self, py: Python<'_>, name: &str, b: HostBuf, len: usize) -> PyResult<usize> {
        b.check(py, name, len)?;
        self.writes.push((name.to_string(), b));
        Ok(self.writes.len() - 1)
    }

    /// Fails if a written buffer overlaps any other buffer (a `&mut` slice must be unique).
    fn check_disjoint(&self, py: Python<'_>) -> PyResult<()> {
        for (i, (wn, w)) in self.writes.iter().enumerate() {
            let others = self.reads.iter().chain(
                self.writes
                    .iter()
                    .enumerate()
                    .filter(|(j, _)| *j != i)
                    .map(|(_, x)| x),
            );
            for (on, o) in others {
                if w.len > 0 && o.len > 0 && w.addr < o.end() && o.addr < w.end() {
                    return Err(raise(
                        py,
                        Kind::Value,
                        format!("`{wn}` overlaps `{on}`: outputs need their own memory"),
                    ));
                }
            }
        }
        Ok(())
    }

    /// The slices of every registered buffer, read-only ones then written ones. Checks that
    /// written buffers overlap nothing first.
    ///
    /// # Safety
    ///
    /// Every registered address must point to live float32 memory of the registered length that
    /// nothing else reads or writes during `'a` (other than through these slices).
    /// `flexsn.torch` passes the data of tensors it holds for the whole call.
    pub unsafe fn slices<'a>(&self, py: Python<'_>) -> PyResult<Slices<'a>> {
        self.check_disjoint(py)?;
        // SAFETY: lengths, null and alignment were checked by `read`/`write`, sizes fit isize,
        // written buffers are disjoint from every other buffer (just checked), and the caller
        // guarantees the memory is live and unshared for 'a.
        let reads = self
            .reads
            .iter()
            .map(|(_, b)| {
                if b.len == 0 {
                    &[][..]
                } else {
                    unsafe { std::slice::from_raw_parts(b.addr as *const f32, b.len) }
                }
            })
            .collect();
        let writes = self
            .writes
            .iter()
            .map(|(_, b)| {
                if b.len == 0 {
                    &mut [][..]
                } else {
                    unsafe { std::slice::from_raw_parts_mut(b.addr as *mut f32, b.len) }
                }
            })
            .collect();
        Ok((reads, writes))
    }
}
