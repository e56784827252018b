//! Static checks of generated kernels without a GPU: NVIDIA's PTX assembler (`ptxas`, from the
//! `nvidia-cuda-nvcc-cu12` wheel; `scripts/ci-ptxas.sh`) assembles NVRTC's PTX for a real
//! architecture and reports, per kernel, the registers per thread and the bytes spilled to local
//! memory.
//!
//! `ptxas` is found from [`PTXAS_ENV`] (`FLEXSN_PTXAS`, a file), else `ptxas` on `PATH`, else
//! `$CUDA_PATH/bin`, `$CUDA_HOME/bin` and `/usr/local/cuda/bin`.

use std::path::{Path, PathBuf};
use std::process::Command;

use super::CudaError;
use super::nvrtc::{self, NvrtcSource};

/// Environment variable naming the `ptxas` executable.
pub const PTXAS_ENV: &str = "FLEXSN_PTXAS";

/// What `ptxas -v` reports for one kernel.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SassInfo {
    /// The kernel's entry name.
    pub entry: String,
    /// `sm_XY` as `XY`.
    pub arch: i32,
    /// Registers per thread.
    pub registers: u32,
    /// Bytes of spill stores per thread (0 means the kernel keeps everything in registers).
    pub spill_stores: u32,
    /// Bytes of spill loads per thread.
    pub spill_loads: u32,
    /// Bytes of stack frame per thread.
    pub stack: u32,
    /// Bytes of static shared memory per block.
    pub shared: u32,
}

/// The `ptxas` executable, or why none was found.
pub fn find_ptxas() -> Result<PathBuf, CudaError> {
    let missing = |detail: String| CudaError::NoPtxas { detail };
    if let Some(p) = std::env::var_os(PTXAS_ENV).filter(|p| !p.is_empty()) {
        let p = PathBuf::from(p);
        return if p.is_file() {
            Ok(p)
        } else {
            Err(missing(format!(
                "{PTXAS_ENV}={} is not a file",
                p.display()
            )))
        };
    }
    let mut dirs: Vec<PathBuf> = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect())
        .unwrap_or_default();
    dirs.extend(
        ["CUDA_PATH", "CUDA_HOME"]
            .iter()
            .filter_map(|v| std::env::var_os(v).filter(|d| !d.is_empty()))
            .map(|d| PathBuf::from(d).join("bin")),
    );
    dirs.push(PathBuf::from("/usr/local/cuda/bin"));
    dirs.iter()
        .map(|d| d.join("ptxas"))
        .find(|p| p.is_file())
        .ok_or_else(|| {
            missing(format!(
                "no ptxas on PATH or in the CUDA folders and {PTXAS_ENV} is not set"
            ))
        })
}

/// Assembles `ptx` for `sm_{arch}` with `ptxas -v` and returns what it reports per kernel.
pub fn assemble(ptxas: &Path, ptx: &str, arch: i32) -> Result<Vec<SassInfo>, CudaError> {
    let dir = std::env::temp_dir().join(format!("flexsn-ptxas-{}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|e| CudaError::Ptxas {
        message: format!("creating {}: {e}", dir.display()),
    })?;
    let key = super::cache::key(&[ptx.as_bytes(), &arch.to_le_bytes()]);
    let input = dir.join(format!("{key}.ptx"));
    let output = dir.join(format!("{key}.cubin"));
    std::fs::write(&input, ptx).map_err(|e| CudaError::Ptxas {
        message: format!("writing {}: {e}", input.display()),
    })?;
    let run = Command::new(ptxas)
        .arg(format!("-arch=sm_{arch}"))
        .arg("-v")
        .arg("-o")
        .arg(&output)
        .arg(&input)
        .output();
    let _ = std::fs::remove_file(&input);
    let _ = std::fs::remove_file(&output);
    let run = run.map_err(|e| CudaError::Ptxas {
        message: format!("running {}: {e}", ptxas.display()),
    })?;
    let log = format!(
        "{}{}",
        String::from_utf8_lossy(&run.stdout),
        String::from_utf8_lossy(&run.stderr)
    );
    if !run.status.success() {
        return Err(CudaError::Ptxas {
            message: format!("sm_{arch}: {}\n{log}", run.status),
        });
    }
    Ok(parse(&log, arch))
}

/// The number before `unit` in `line` (`"12 bytes spill stores"` with `"bytes spill stores"`).
fn number_before(line: &str, unit: &str) -> Option<u32> {
    let head = &line[..line.find(unit)?];
    head.split(|c: char| !c.is_ascii_digit())
        .rfind(|w| !w.is_empty())?
        .parse()
        .ok()
}

/// Parses `ptxas -v` output: `Compiling entry function 'E' for 'sm_XY'`, then `Function
/// properties for E` / `N bytes stack frame, N bytes spill stores, N bytes spill loads`, then
/// `Used N registers, ... N bytes smem ...`.
pub fn parse(log: &str, arch: i32) -> Vec<SassInfo> {
    let mut out: Vec<SassInfo> = Vec::new();
    for line in log.lines() {
        if let Some(rest) = line.split("Compiling entry function '").nth(1) {
            let entry = rest.split('\'').next().unwrap_or_default().to_string();
            out.push(SassInfo {
                entry,
                arch,
                registers: 0,
                spill_stores: 0,
                spill_loads: 0,
                stack: 0,
                shared: 0,
            });
            continue;
        }
        let Some(cur) = out.last_mut() else { continue };
        if line.contains("spill stores") {
            cur.stack = number_before(line, "bytes stack frame").unwrap_or(0);
            cur.spill_stores = number_before(line, "bytes spill stores").unwrap_or(0);
            cur.spill_loads = number_before(line, "bytes spill loads").unwrap_or(0);
        } else if line.contains("Used") && line.contains("registers") {
            cur.registers = number_before(line, "registers").unwrap_or(0);
            cur.shared = number_before(line, "bytes smem").unwrap_or(0);
        }
    }
    out
}

/// NVRTC's PTX of `src` for `compute_{arch}`, assembled for `sm_{arch}`.
pub fn sass_info(
    ptxas: &Path,
    src: &impl NvrtcSource,
    arch: i32,
) -> Result<Vec<SassInfo>, CudaError> {
    assemble(ptxas, &nvrtc::ptx(src, arch)?, arch)
}

/// One line per kernel: `sm_XY  registers  spill stores/loads  stack  shared  entry`.
pub fn table(infos: &[SassInfo]) -> String {
    let mut s = String::from("arch   regs  spill-st  spill-ld  stack  smem  kernel\n");
    for i in infos {
        s.push_str(&format!(
            "sm_{:<3} {:>5} {:>9} {:>9} {:>6} {:>5}  {}\n",
            i.arch, i.registers, i.spill_stores, i.spill_loads, i.stack, i.shared, i.entry
        ));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_ptxas_verbose_output() {
        let log = "ptxas info    : 0 bytes gmem\n\
ptxas info    : Compiling entry function 'flexsn_a' for 'sm_90'\n\
ptxas info    : Function properties for flexsn_a\n\
    8 bytes stack frame, 4 bytes spill stores, 12 bytes spill loads\n\
ptxas info    : Used 40 registers, used 1 barriers, 1024 bytes smem, 400 bytes cmem[0]\n\
ptxas info    : Compiling entry function 'flexsn_b' for 'sm_90'\n\
ptxas info    : Function properties for flexsn_b\n\
    0 bytes stack frame, 0 bytes spill stores, 0 bytes spill loads\n\
ptxas info    : Used 18 registers, used 0 barriers, 380 bytes cmem[0]\n";
        let got = parse(log, 90);
        assert_eq!(got.len(), 2);
        assert_eq!(
            got[0],
            SassInfo {
                entry: "flexsn_a".into(),
                arch: 90,
                registers: 40,
                spill_stores: 4,
                spill_loads: 12,
                stack: 8,
                shared: 1024,
            }
        );
        assert_eq!(
            (got[1].registers, got[1].spill_stores, got[1].shared),
            (18, 0, 0)
        );
    }
}
