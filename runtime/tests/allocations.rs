//! What calls allocate, counted by a wrapper of the system allocator: the checkpointed host
//! backward writes the input gradients straight into the caller's buffers (as `backward_host`
//! does), and a big CPU kernel keeps its scratch memory from call to call.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use flexsn_compiler::codegen::cuda::samples;
use flexsn_compiler::dsl::CoreBuilder;
use flexsn_compiler::ir::{StateInit, StepGraph};
use flexsn_compiler::scan::{ScanArgs, ScanKernel};
use flexsn_runtime::cpu::{CpuOptions, CpuScan};
use flexsn_runtime::{CheckpointBuffers, GradBuffers, Jit, KernelArgs, ScanOutputs, Upstream};

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

/// One test at a time (each holds it throughout): the count is process-wide.
static MEASURING: Mutex<()> = Mutex::new(());

/// Bytes allocated while `f` runs.
fn allocated_by(f: impl FnOnce()) -> usize {
    let before = ALLOCATED.load(Ordering::Relaxed);
    f();
    ALLOCATED.load(Ordering::Relaxed) - before
}

#[test]
fn checkpointed_host_backward_allocates_no_input_gradient() {
    let _one = MEASURING.lock().unwrap_or_else(|e| e.into_inner());
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
    let bytes = allocated_by(run);
    let gradient = t * n * std::mem::size_of::<f32>();
    assert!(
        bytes < gradient / 4,
        "{bytes} bytes allocated; one gradient is {gradient}"
    );
    assert!(gx.iter().chain(&gs).all(|v| v.is_finite()));
    assert!(gx.iter().any(|&v| v != 0.0));
}

/// A shift register of `m` states (`s0' = x`, `s_j' = s_{j-1}`), output `Σ_j s_j / (j + 1)`:
/// its state buffers are too big for a worker thread's stack frame.
fn shift_register(m: usize) -> StepGraph {
    let b = CoreBuilder::new("shift_register");
    let x = b.input("x");
    let states: Vec<_> = (0..m)
        .map(|j| b.state(&format!("s{j}"), StateInit::Const(0.0)))
        .collect();
    let mut y = x;
    for (j, s) in states.iter().enumerate() {
        y = y + *s * (1.0 / (j + 1) as f32);
    }
    b.output("y", y);
    for j in 0..m {
        let prev = if j == 0 { x } else { states[j - 1] };
        b.set_state(&format!("s{j}"), prev);
    }
    b.build().unwrap()
}

#[test]
fn a_big_kernel_keeps_its_scratch_across_calls() {
    let _one = MEASURING.lock().unwrap_or_else(|e| e.into_inner());
    let (m, t, n) = (2000, 8, 256);
    let kernel = ScanKernel::forward(shift_register(m), false);
    let opts = CpuOptions {
        threads: 2,
        ..CpuOptions::default()
    };
    let scan = CpuScan::compile(&kernel, &opts).unwrap();
    assert!(
        scan.scratch_bytes() > 0,
        "the kernel must use scratch memory"
    );
    let zeros = vec![0.0f32; n];
    let run = |scan: &CpuScan, x: &[f32], y: &mut [f32], finals: &mut [Vec<f32>], threads| {
        let args = ScanArgs {
            t,
            n,
            inputs: vec![x],
            init_states: vec![&zeros[..]; m],
            params: vec![],
        };
        let mut out = ScanOutputs {
            outputs: vec![y],
            state_seqs: vec![],
            final_states: finals.iter_mut().map(Vec::as_mut_slice).collect(),
        };
        scan.run_into_with_threads(&args, &mut out, threads)
            .unwrap();
    };
    let x1: Vec<f32> = (0..t * n).map(|i| (i % 5) as f32).collect();
    let x2: Vec<f32> = (0..t * n).map(|i| (i % 3) as f32 - 1.0).collect();
    // The first call fills the pool; a fresh kernel gives the reference for x2. One thread
    // for the measured call: a call on two threads may hold two buffers at once where the
    // first call, its threads not overlapping, kept one.
    let (mut y, mut want) = (vec![0.0; t * n], vec![0.0; t * n]);
    let mut finals = vec![vec![0.0f32; n]; m];
    run(&scan, &x1, &mut y, &mut finals, 2);
    let fresh = CpuScan::compile(&kernel, &opts).unwrap();
    run(&fresh, &x2, &mut want, &mut finals, 2);
    let bytes = allocated_by(|| run(&scan, &x2, &mut y, &mut finals, 1));
    assert!(
        bytes < scan.scratch_bytes(),
        "{bytes} bytes allocated; the scratch of one thread is {}",
        scan.scratch_bytes()
    );
    // What the first call left in the kept scratch does not change the second call's result.
    assert_eq!(y, want);
}
