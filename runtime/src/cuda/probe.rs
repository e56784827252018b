//! The optional tools of the CUDA backends — a host C++ compiler (emulation), NVRTC, a GPU — and
//! whether this run requires them.
//!
//! A tool is required when its variable is `1`: `FLEXSN_REQUIRE_CXX` (also whenever `CI` is set:
//! CI must run the emulation), `FLEXSN_REQUIRE_NVRTC`, `FLEXSN_REQUIRE_GPU`, `FLEXSN_REQUIRE_PTXAS`. Tests use
//! [`present_or_skip`] so that a machine without a tool skips those checks with a message, while a
//! machine that must have it fails them.

use std::fmt::Display;

/// An optional tool.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Tool {
    /// A host C++ compiler, for the emulated backend.
    Cxx,
    /// The NVRTC library.
    Nvrtc,
    /// A CUDA driver and device.
    Gpu,
    /// NVIDIA's PTX assembler (`ptxas`), for the static register and spill checks.
    Ptxas,
}

impl Tool {
    /// The variable that makes this tool required.
    pub fn env_var(self) -> &'static str {
        match self {
            Tool::Cxx => "FLEXSN_REQUIRE_CXX",
            Tool::Nvrtc => "FLEXSN_REQUIRE_NVRTC",
            Tool::Gpu => "FLEXSN_REQUIRE_GPU",
            Tool::Ptxas => "FLEXSN_REQUIRE_PTXAS",
        }
    }

    /// Whether this run requires the tool.
    pub fn required(self) -> bool {
        std::env::var(self.env_var()).as_deref() == Ok("1")
            || (self == Tool::Cxx && std::env::var_os("CI").is_some())
    }

    fn name(self) -> &'static str {
        match self {
            Tool::Cxx => "C++ compiler",
            Tool::Nvrtc => "NVRTC",
            Tool::Gpu => "GPU",
            Tool::Ptxas => "ptxas",
        }
    }
}

/// The outcome of probing for a tool.
#[derive(Debug)]
pub enum Probe<T> {
    /// The tool is there.
    Present(T),
    /// Missing and not required: skip, for this reason.
    Skip(String),
    /// Missing but required: fail, for this reason.
    Missing(String),
}

/// Sorts the result of looking for `tool`.
pub fn probe<T, E: Display>(tool: Tool, found: Result<T, E>) -> Probe<T> {
    match found {
        Ok(v) => Probe::Present(v),
        Err(e) if tool.required() => Probe::Missing(format!(
            "{}=1 (or required here) but the {} is missing: {e}",
            tool.env_var(),
            tool.name()
        )),
        Err(e) => Probe::Skip(format!("skipping ({} missing): {e}", tool.name())),
    }
}

/// For tests: the tool, or `None` after printing why the check is skipped.
///
/// # Panics
/// When the tool is missing but required (that fails the test, which is the point).
pub fn present_or_skip<T, E: Display>(tool: Tool, found: Result<T, E>) -> Option<T> {
    match probe(tool, found) {
        Probe::Present(v) => Some(v),
        Probe::Skip(why) => {
            eprintln!("{why}");
            None
        }
        Probe::Missing(why) => panic!("{why}"),
    }
}
