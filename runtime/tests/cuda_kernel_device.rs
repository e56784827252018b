//! The device entry of `Kernel` ([`Kernel::launch_device`]): plain numbers in (ordinal, stream
//! handle, addresses and lengths), every check before the launch.
//!
//! The argument listing and the refusals run everywhere (the listing on the emulated backend,
//! same generated source); the launch needs a GPU (skipped without one, failed when
//! `FLEXSN_REQUIRE_GPU=1`, as `scripts/gpu-check.sh` sets).

use cudarc::driver::{CudaSlice, DevicePtr};
use flexsn_compiler::codegen::cuda::{ArgRole, StorageDtype, samples};
use flexsn_compiler::random::random_inputs;
use flexsn_runtime::cuda::emulated::find_cxx;
use flexsn_runtime::cuda::probe::{Tool, present_or_skip};
use flexsn_runtime::cuda::{CudaDevice, DeviceScan};
use flexsn_runtime::{Backend, GradSpec, Jit, KernelArgs, RuntimeError, TrainingBuffers};

#[test]
fn arguments_are_listed_in_launch_order_without_a_gpu() {
    if present_or_skip(Tool::Cxx, find_cxx()).is_none() {
        return;
    }
    let g = samples::plif(1.0, 0.0).unwrap();
    let k = Jit::new(Backend::CudaEmulated)
        .unwrap()
        .compile(&g)
        .unwrap();
    let (t, n) = (5, 7);
    let inf = k.device_arguments(DeviceScan::Inference, t, n).unwrap();
    let roles: Vec<ArgRole> = inf.iter().map(|a| a.role).collect();
    assert_eq!(
        roles,
        [
            ArgRole::Input(0),
            ArgRole::InitState(0),
            ArgRole::Param(0),
            ArgRole::Output(0),
            ArgRole::FinalState(0)
        ]
    );
    assert_eq!((inf[0].dtype, inf[0].len), (StorageDtype::F32, t * n));
    assert_eq!(
        (inf[1].len, inf[2].len),
        (n, 1),
        "state [N], shared param [1]"
    );
    let train = k.device_arguments(DeviceScan::Training, t, n).unwrap();
    assert!(
        train.len() > inf.len(),
        "training also writes state sequences"
    );
    let spec = GradSpec::all(&g);
    let bwd = k
        .device_arguments(DeviceScan::Backward(&spec), t, n)
        .unwrap();
    assert!(!bwd.is_empty());
    // The emulated backend lists but cannot launch on a device.
    // SAFETY: refused before any address is used.
    let r = unsafe { k.launch_device(DeviceScan::Inference, 0, 0, t, n, &[]) };
    assert!(
        matches!(r, Err(RuntimeError::BackendUnavailable { .. })),
        "{r:?}"
    );
}

#[test]
fn a_cpu_kernel_refuses_device_calls() {
    let g = samples::lif(2.0, 1.0, 0.0).unwrap();
    let k = Jit::new(Backend::Cpu).unwrap().compile(&g).unwrap();
    assert!(matches!(
        k.device_arguments(DeviceScan::Inference, 2, 2),
        Err(RuntimeError::BackendUnavailable { .. })
    ));
    // SAFETY: refused before any address is used.
    let r = unsafe { k.launch_device(DeviceScan::Training, 0, 0, 2, 2, &[(0, 4)]) };
    assert!(matches!(r, Err(RuntimeError::BackendUnavailable { .. })));
}

fn addr(s: &CudaSlice<f32>, d: &CudaDevice) -> (u64, usize) {
    let (p, _sync) = s.device_ptr(d.stream());
    (p, s.len())
}

#[test]
fn training_forward_on_device_matches_the_interpreter() {
    let Some(d) = present_or_skip(Tool::Gpu, CudaDevice::new(0)) else {
        return;
    };
    let g = samples::plif(1.0, 0.0).unwrap();
    let k = Jit::new(Backend::Cuda).unwrap().compile(&g).unwrap();
    let oracle = Jit::new(Backend::Interpreter).unwrap().compile(&g).unwrap();
    let (t, n) = (6, 1001);
    let data = random_inputs(5, &g, t, n);
    let specs = k.device_arguments(DeviceScan::Training, t, n).unwrap();
    // Host values per argument: inputs, initial states, params; zeros for what the scan writes.
    let (inputs, states0, params) = (&data.0, &data.1, &data.2);
    let host: Vec<Vec<f32>> = specs
        .iter()
        .map(|a| match a.role {
            ArgRole::Input(i) => inputs[i].clone(),
            ArgRole::InitState(j) => states0[j].clone(),
            ArgRole::Param(p) => params[p].clone(),
            _ => vec![0.0; a.len],
        })
        .collect();
    let bufs: Vec<CudaSlice<f32>> = host
        .iter()
        .map(|h| d.stream().clone_htod(h).unwrap())
        .collect();
    let raw: Vec<(u64, usize)> = bufs.iter().map(|b| addr(b, &d)).collect();
    let stream = d.stream().cu_stream() as usize as u64;
    // SAFETY: the buffers live on device 0 and on `stream` until the synchronize below.
    unsafe { k.launch_device(DeviceScan::Training, 0, stream, t, n, &raw) }.unwrap();
    d.synchronize().unwrap();
    // The interpreter on the same data.
    let named: Vec<(&str, &[f32])> = g
        .params()
        .iter()
        .zip(params)
        .map(|(p, v)| (p.name.as_str(), v.as_slice()))
        .collect();
    let mut args = KernelArgs::new(t, n);
    args.inputs = inputs.iter().map(Vec::as_slice).collect();
    args.init_states = Some(states0.iter().map(Vec::as_slice).collect());
    args.params = named;
    let mut out = vec![0.0f32; t * n];
    let mut states: Vec<Vec<f32>> = g.states().iter().map(|_| vec![0.0; (t + 1) * n]).collect();
    let mut finals: Vec<Vec<f32>> = g.states().iter().map(|_| vec![0.0; n]).collect();
    let mut tb = TrainingBuffers {
        outputs: vec![&mut out],
        state_bufs: states.iter_mut().map(Vec::as_mut_slice).collect(),
        final_states: finals.iter_mut().map(Vec::as_mut_slice).collect(),
    };
    oracle.forward_host(&args, &mut tb).unwrap();
    let pos = specs
        .iter()
        .position(|a| a.role == ArgRole::Output(0))
        .unwrap();
    let got = d.stream().clone_dtoh(&bufs[pos]).unwrap();
    assert_eq!(got, out, "spikes");
    // Wrong count and wrong ordinal: typed errors before any launch.
    // SAFETY: refused before the addresses are used.
    let r = unsafe { k.launch_device(DeviceScan::Training, 0, stream, t, n, &raw[1..]) };
    assert!(r.is_err());
}
