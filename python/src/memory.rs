//! Page-size advice for large result buffers.
//!
//! Fresh buffers of many megabytes come straight from `mmap`, so the first write to each 4 KiB
//! page faults; at `[64, 2^20]` float32 that costs more than the scan itself. Asking for
//! transparent huge pages before the first write cuts those faults 512-fold (what PyTorch's
//! `THP_MEM_ALLOC_ENABLE=1` does for all its allocations). The host buffer cache
//! ([`crate::pool`]) gives this advice once to each buffer it allocates, then reuses the buffer.

/// The huge-page size the advice aligns to.
pub(crate) const HUGE: usize = 2 << 20;

/// Advises the kernel to back the 2 MiB-aligned interior of `[addr, addr + nbytes)` with
/// transparent huge pages (Linux; elsewhere, or when the range holds no aligned 2 MiB block, it
/// does nothing). Returns whether advice was given. Advice never changes the memory's contents.
pub(crate) fn advise_huge_pages(addr: usize, nbytes: usize) -> bool {
    let start = addr.div_ceil(HUGE).saturating_mul(HUGE);
    let end = (addr.saturating_add(nbytes) / HUGE) * HUGE;
    if end <= start {
        return false;
    }
    advise(start, end - start)
}

#[cfg(target_os = "linux")]
fn advise(start: usize, len: usize) -> bool {
    // SAFETY: MADV_HUGEPAGE only changes how the kernel backs the pages of this range (of the
    // caller's own allocation); it reads and writes no memory, and a range that is not mapped
    // makes the call fail (ENOMEM), not crash.
    unsafe { libc::madvise(start as *mut libc::c_void, len, libc::MADV_HUGEPAGE) == 0 }
}

#[cfg(not(target_os = "linux"))]
fn advise(_start: usize, _len: usize) -> bool {
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn advice_keeps_contents_and_needs_an_aligned_block() {
        let x: Vec<f32> = (0..1 << 22).map(|i| i as f32).collect();
        let want = x.clone();
        let addr = x.as_ptr() as usize;
        // 16 MiB hold aligned 2 MiB blocks; whether the kernel takes the advice is its call.
        let _given: bool = advise_huge_pages(addr, x.len() * 4);
        assert!(
            !advise_huge_pages(addr, 4096),
            "no aligned 2 MiB block inside"
        );
        assert_eq!(x, want);
    }
}
