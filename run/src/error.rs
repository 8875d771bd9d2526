//! The run contract's error type. `s5::Error` wraps it; the viewer shows it as it is.

use std::path::PathBuf;

/// What can go wrong reading or writing a run directory. Every message names the file.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// Reading or writing a file failed.
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A file the run needs is not there.
    #[error("{path}: missing file ({context})")]
    Missing { path: PathBuf, context: String },
    /// A file that does not parse as what it should be.
    #[error("{path}: not a valid {what}: {reason}")]
    Format {
        path: PathBuf,
        what: &'static str,
        reason: String,
    },
    /// A run written in a format this build does not read (see [`crate::FORMAT_VERSION`]).
    #[error(
        "{path}: run format version {found}, but this build of s5 reads versions {oldest} to \
         {newest}; use an s5 release that writes version {found}"
    )]
    Version {
        path: PathBuf,
        found: u32,
        oldest: u32,
        newest: u32,
    },
    /// Another process holds the run's lock.
    #[error(
        "{path}: this run is being written by process {pid} on {host} (for {running_s} s). \
         Wait for it to finish or stop it; if that process is gone and the run lives on a \
         shared disk, delete the lock file by hand"
    )]
    Locked {
        path: PathBuf,
        pid: u32,
        host: String,
        running_s: u64,
    },
    /// A checkpoint file whose bytes are not those recorded when it was written.
    #[error("{path}: {reason}; the checkpoint is damaged (truncated or altered)")]
    Checksum { path: PathBuf, reason: String },
}

impl RunError {
    /// A failed read of `path`: [`RunError::Missing`] (saying what the file is) when it does
    /// not exist, [`RunError::Io`] otherwise.
    pub fn reading(path: &std::path::Path, source: std::io::Error, what: &str) -> Self {
        match source.kind() {
            std::io::ErrorKind::NotFound => RunError::Missing {
                path: path.to_path_buf(),
                context: what.to_string(),
            },
            _ => RunError::Io {
                path: path.to_path_buf(),
                source,
            },
        }
    }

    /// An I/O failure on `path`, for `map_err`.
    pub fn io(path: &std::path::Path) -> impl FnOnce(std::io::Error) -> Self + '_ {
        move |source| RunError::Io {
            path: path.to_path_buf(),
            source,
        }
    }
}

/// Shorthand for the crate's results.
pub type Result<T, E = RunError> = std::result::Result<T, E>;
