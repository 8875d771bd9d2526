//! The library's error type: one enum, grouped by area. Messages say what went wrong, then
//! what to do about it.

use std::path::PathBuf;

/// Everything the `s5` library reports instead of panicking.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    // ---- device ----
    /// wgpu found no adapter at all (or none for the requested backend).
    #[error(
        "no GPU adapter found{backend}. {hint}",
        backend = .backend.as_deref().map(|b| format!(" for backend {b}")).unwrap_or_default()
    )]
    NoAdapter {
        backend: Option<String>,
        hint: &'static str,
    },
    /// The adapter exists but the device could not be created.
    #[error("could not initialise the GPU device: {0}")]
    DeviceInit(String),
    /// Work on the GPU failed after the device was up.
    #[error("GPU execution failed: {0}")]
    Execution(String),
    /// An unknown name in `--backend` or `S5_BACKEND`.
    #[error("unknown GPU backend `{0}`: use one of vulkan, metal, dx12, gl")]
    UnknownBackend(String),
    /// The process already initialised its GPU with another backend.
    #[error(
        "the GPU was already initialised with backend {current}; cannot switch to {requested} in the same process"
    )]
    BackendConflict { current: String, requested: String },

    // ---- files ----
    /// Reading or writing a file failed.
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// Shorthand used across the crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;
