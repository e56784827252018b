//! A process-wide cache of large host buffers, handed to torch zero-copy through DLPack.
//!
//! Every training call makes fresh `[T, N]` float32 tensors (outputs, the state buffers kept
//! for backward, input gradients). Taken from `malloc`, buffers of many megabytes are new `mmap`s
//! each time: the kernel zeroes every page and the first write to each faults, which at
//! `[64, 2^20]` costs as much as the scan itself. This cache keeps such buffers after torch is
//! done with them, so the next call of the same shape writes into pages already mapped.
//!
//! A buffer is lent to torch as a DLPack capsule whose context owns it: torch calls the
//! deleter when the last reference to the storage goes (views, autograd's saved tensors and
//! `.grad` included), from any thread, with or without the GIL. Only then does the buffer come
//! back to the free list, so a buffer is never handed out twice while torch can still read it.
//!
//! Sizes are rounded up to whole 2 MiB huge pages, and a request takes a free buffer of exactly
//! that rounded size (the most recently freed one). Training repeats the same shapes on every
//! step, so exact classes hit; coarser classes would keep larger buffers alive for smaller
//! requests and waste the difference. The free bytes are capped ([`set_host_cache_limit`];
//! by default the smaller of 4 GiB and a quarter of physical memory): past the cap the least
//! recently freed buffers go back to the system.

use std::alloc::{self, Layout};
use std::collections::{BTreeMap, VecDeque};
use std::ptr::NonNull;
use std::sync::{LazyLock, Mutex, MutexGuard, PoisonError};

use dlpark::ffi::{DLDataType, DLDevice, DLManagedTensor};
use dlpark::metadata::Dynamic;
use pyo3::prelude::*;
use pyo3::types::PyDict;

use crate::errors::{Kind, raise};
use crate::memory::{HUGE, advise_huge_pages};

/// One 2 MiB-aligned allocation of a whole number of huge pages.
struct Block {
    ptr: NonNull<u8>,
    bytes: usize,
}

// SAFETY: a block is plain memory that only its current owner (the free list, or the lease
// torch holds) touches; moving that ownership between threads is what the deleter does.
unsafe impl Send for Block {}

impl Block {
    fn layout(bytes: usize) -> Option<Layout> {
        Layout::from_size_align(bytes, HUGE).ok()
    }

    /// A fresh block of `bytes` (a positive multiple of [`HUGE`]) with huge-page advice, or
    /// `None` when the system has no memory for it.
    fn alloc(bytes: usize) -> Option<Block> {
        let layout = Block::layout(bytes)?;
        // SAFETY: the layout's size is positive (callers round up to at least one huge page).
        let ptr = NonNull::new(unsafe { alloc::alloc(layout) })?;
        advise_huge_pages(ptr.as_ptr() as usize, bytes);
        Some(Block { ptr, bytes })
    }
}

impl Drop for Block {
    fn drop(&mut self) {
        if let Some(layout) = Block::layout(self.bytes) {
            // SAFETY: `ptr` came from `alloc::alloc` with this same layout and is freed once.
            unsafe { alloc::dealloc(self.ptr.as_ptr(), layout) }
        }
    }
}

/// The free list and its counters.
struct Cache {
    /// Free bytes kept at most.
    limit: usize,
    /// Free bytes kept now.
    cached: usize,
    /// Bytes lent to torch now.
    in_use: usize,
    hits: u64,
    misses: u64,
    /// Release counter: orders the free blocks from least to most recently freed.
    clock: u64,
    /// Free blocks by release stamp (the first is the least recently freed).
    free: BTreeMap<u64, Block>,
    /// Release stamps of the free blocks of each size, oldest first.
    by_size: BTreeMap<usize, VecDeque<u64>>,
}

static CACHE: LazyLock<Mutex<Cache>> = LazyLock::new(|| {
    Mutex::new(Cache {
        limit: default_limit(),
        cached: 0,
        in_use: 0,
        hits: 0,
        misses: 0,
        clock: 0,
        free: BTreeMap::new(),
        by_size: BTreeMap::new(),
    })
});

/// The cache, also after a panic elsewhere left the lock poisoned (its counters stay
/// consistent: no method panics half-way).
fn cache() -> MutexGuard<'static, Cache> {
    CACHE.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The smaller of 4 GiB and a quarter of physical memory.
fn default_limit() -> usize {
    const CAP: usize = 4 << 30;
    physical_memory().map_or(CAP, |m| CAP.min(m / 4))
}

#[cfg(unix)]
fn physical_memory() -> Option<usize> {
    // SAFETY: sysconf only reads system configuration.
    let (pages, size) = unsafe {
        (
            libc::sysconf(libc::_SC_PHYS_PAGES),
            libc::sysconf(libc::_SC_PAGESIZE),
        )
    };
    let pages = usize::try_from(pages).ok()?;
    let size = usize::try_from(size).ok()?;
    pages.checked_mul(size)
}

#[cfg(not(unix))]
fn physical_memory() -> Option<usize> {
    None
}

impl Cache {
    /// Takes a free block of exactly `bytes` (the most recently freed one), if any.
    fn take(&mut self, bytes: usize) -> Option<Block> {
        let stamps = self.by_size.get_mut(&bytes)?;
        let stamp = stamps.pop_back()?;
        if stamps.is_empty() {
            self.by_size.remove(&bytes);
        }
        let block = self.free.remove(&stamp)?;
        self.cached = self.cached.saturating_sub(block.bytes);
        Some(block)
    }

    /// Removes the least recently freed block.
    fn evict_oldest(&mut self) -> Option<Block> {
        let (_, block) = self.free.pop_first()?;
        if let Some(stamps) = self.by_size.get_mut(&block.bytes) {
            stamps.pop_front();
            if stamps.is_empty() {
                self.by_size.remove(&block.bytes);
            }
        }
        self.cached = self.cached.saturating_sub(block.bytes);
        Some(block)
    }

    /// Blocks to free so that at most `limit` bytes stay cached (freed by the caller, after
    /// the lock is released: unmapping hundreds of megabytes takes a while).
    fn trim(&mut self) -> Vec<Block> {
        let mut out = vec![];
        while self.cached > self.limit {
            match self.evict_oldest() {
                Some(b) => out.push(b),
                None => break,
            }
        }
        out
    }

    /// Takes back a block torch has released; returns what must be freed.
    fn give_back(&mut self, block: Block) -> Vec<Block> {
        // Saturating: this runs in torch's deleter, where a panic would abort the process.
        self.in_use = self.in_use.saturating_sub(block.bytes);
        if block.bytes > self.limit {
            return vec![block];
        }
        self.clock += 1;
        self.by_size
            .entry(block.bytes)
            .or_default()
            .push_back(self.clock);
        self.cached += block.bytes;
        self.free.insert(self.clock, block);
        self.trim()
    }

    fn drain(&mut self) -> Vec<Block> {
        self.by_size.clear();
        self.cached = 0;
        std::mem::take(&mut self.free).into_values().collect()
    }
}

/// A block lent to torch: the DLPack context. Dropping it (torch's deleter) returns the block.
struct Lease(Option<Block>);

impl Drop for Lease {
    fn drop(&mut self) {
        if let Some(block) = self.0.take() {
            let evicted = cache().give_back(block);
            drop(evicted); // after the lock is released
        }
    }
}

/// A block of `bytes` from the cache, or a fresh one. A failed allocation empties the cache
/// and tries once more.
fn lend(bytes: usize) -> Option<Block> {
    let reused = {
        let mut c = cache();
        let block = c.take(bytes);
        match block {
            Some(_) => c.hits += 1,
            None => c.misses += 1,
        }
        block
    };
    let block = reused.or_else(|| Block::alloc(bytes)).or_else(|| {
        let freed = cache().drain();
        drop(freed); // after the lock is released
        Block::alloc(bytes)
    })?;
    cache().in_use += block.bytes;
    Some(block)
}

/// An uninitialised float32 CPU buffer of `shape` from the cache, as a DLPack capsule (legacy
/// ABI) for `torch.from_dlpack`. The buffer returns to the cache when torch frees the tensor.
#[pyfunction]
pub fn host_empty(py: Python<'_>, shape: Vec<usize>) -> PyResult<Bound<'_, PyAny>> {
    let too_big = || {
        raise(
            py,
            Kind::Value,
            format!("shape {shape:?}: too many float32 elements for host memory"),
        )
    };
    let numel = shape
        .iter()
        .try_fold(1usize, |acc, &d| acc.checked_mul(d))
        .ok_or_else(too_big)?;
    let bytes = numel
        .checked_mul(4)
        .and_then(|b| b.max(1).checked_next_multiple_of(HUGE))
        .filter(|b| *b <= isize::MAX as usize)
        .ok_or_else(too_big)?;
    let dims: Vec<i64> = shape
        .iter()
        .map(|&d| i64::try_from(d))
        .collect::<Result<_, _>>()
        .map_err(|_| too_big())?;
    let block = lend(bytes).ok_or_else(|| {
        raise(
            py,
            Kind::Memory,
            format!("could not allocate {bytes} bytes of host memory for shape {shape:?}"),
        )
    })?;
    let data = block.ptr.as_ptr().cast();
    let mut tensor = Dynamic::compact(dims)
        .initialize_as::<DLManagedTensor>(Box::new(Lease(Some(block))))
        .map_err(|e| raise(py, Kind::Value, format!("shape {shape:?}: {e}")))?;
    tensor
        .set_data(data)
        .set_dtype(DLDataType::F32)
        .set_device(DLDevice::CPU);
    // SAFETY: `data` points to a live, 2 MiB-aligned allocation of at least `numel` float32
    // elements owned by the context (the lease), which lives until the deleter runs; shape and
    // compact strides were written by `Dynamic::compact`; the tensor is CPU float32 with no
    // byte offset and no flags.
    let managed = unsafe { tensor.finish() };
    managed.into_pyobject(py)
}

/// The cache's state: `cached_bytes` (free, kept for reuse), `in_use_bytes` (lent to torch
/// now), `limit_bytes`, `cached_buffers`, `hits` and `misses` (requests served from the cache
/// or by a fresh allocation).
#[pyfunction]
pub fn host_cache_info(py: Python<'_>) -> PyResult<Bound<'_, PyDict>> {
    let (cached, in_use, limit, buffers, hits, misses) = {
        let c = cache();
        (c.cached, c.in_use, c.limit, c.free.len(), c.hits, c.misses)
    };
    let d = PyDict::new(py);
    d.set_item("cached_bytes", cached)?;
    d.set_item("in_use_bytes", in_use)?;
    d.set_item("limit_bytes", limit)?;
    d.set_item("cached_buffers", buffers)?;
    d.set_item("hits", hits)?;
    d.set_item("misses", misses)?;
    Ok(d)
}

/// Frees every cached buffer (buffers torch still holds are unaffected).
#[pyfunction]
pub fn empty_host_cache(py: Python<'_>) {
    let freed = cache().drain();
    py.detach(|| drop(freed));
}

/// Sets how many free bytes the cache keeps (0: none, every buffer is freed when torch releases
/// it); frees the least recently freed buffers past the new limit. Returns the previous limit.
#[pyfunction]
pub fn set_host_cache_limit(py: Python<'_>, limit_bytes: usize) -> usize {
    let (previous, freed) = {
        let mut c = cache();
        let previous = std::mem::replace(&mut c.limit, limit_bytes);
        (previous, c.trim())
    };
    py.detach(|| drop(freed));
    previous
}
