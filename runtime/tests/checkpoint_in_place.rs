//! `Kernel::backward_checkpointed_host` writes the input gradients straight into the caller's
//! buffers, as `backward_host` does: a call allocates far less than one `[T, N]` gradient.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

use flexsn_compiler::codegen::cuda::samples;
use flexsn_runtime::cpu::CpuOptions;
use flexsn_runtime::{CheckpointBuffers, GradBuffers, Jit, KernelArgs, Upstream};

/// The system allocator, counting the bytes every allocation asks for.
struct Counting;

static ALLOCATED: AtomicUsize = AtomicUsize::new(0);

// SAFETY: every call is forwarded unchanged to the system allocator, with the caller's own
// layout and pointer; the counter only reads the sizes.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATED.fetch_add(layout.size(), Ordering::Relaxed);
        // SAFETY: forwarded as received (see the impl).
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: forwarded as received (see the impl).
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATED.fetch_add(new_size, Ordering::Relaxed);
        // SAFETY: forwarded as received (see the impl).
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static COUNTING: Counting = Counting;

#[test]
fn checkpointed_host_backward_allocates_no_input_gradient() {
    let (t, n, k) = (512, 8192, 16);
    let g = samples::lif(2.0, 1.0, 0.0).unwrap();
    let jit = Jit::cpu(CpuOptions {
        threads: 2,
        ..CpuOptions::default()
    })
    .unwrap();
    let kernel = jit.compile(&g).unwrap();
    let x: Vec<f32> = (0..t * n).map(|i| (i % 7) as f32 * 0.4).collect();
    let args = KernelArgs {
        t,
        n,
        inputs: vec![&x],
        init_states: None,
        params: vec![],
    };
    let (mut out, mut cps, mut fin) =
        (vec![0.0; t * n], vec![0.0; t.div_ceil(k) * n], vec![0.0; n]);
    kernel
        .forward_checkpointed_host(
            &args,
            k,
            &mut CheckpointBuffers {
                outputs: vec![&mut out],
                checkpoints: vec![&mut cps],
                final_states: vec![&mut fin],
            },
        )
        .unwrap();
    let ones = vec![1.0f32; t * n];
    let up = Upstream {
        outputs: vec![Some(&ones[..])],
        state_seqs: vec![None],
        final_states: vec![None],
    };
    let (mut gx, mut gs) = (vec![f32::NAN; t * n], vec![f32::NAN; n]);
    let mut run = || {
        let mut grads = GradBuffers {
            inputs: vec![&mut gx],
            init_states: vec![&mut gs],
        };
        kernel
            .backward_checkpointed_host(&args, k, &[&cps], &up, &mut grads)
            .unwrap();
    };
    // The first call compiles the backward scans; the second is measured.
    run();
    let before = ALLOCATED.load(Ordering::Relaxed);
    run();
    let bytes = ALLOCATED.load(Ordering::Relaxed) - before;
    let gradient = t * n * std::mem::size_of::<f32>();
    assert!(
        bytes < gradient / 4,
        "{bytes} bytes allocated; one gradient is {gradient}"
    );
    assert!(gx.iter().chain(&gs).all(|v| v.is_finite()));
    assert!(gx.iter().any(|&v| v != 0.0));
}
