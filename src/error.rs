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
    /// f16 asked for (`asked`: `--f16`, `precision: Mixed`) on an adapter that does not
    /// compute in it.
    #[error("{asked}: {adapter} has no `shader-f16` (16-bit floats in shaders): {instead}")]
    NoShaderF16 {
        adapter: String,
        asked: String,
        instead: String,
    },
    /// `--gpus N` asked for more adapters than the API shows.
    #[error(
        "--gpus {asked}: {api} shows only these adapters: {found}. Use --gpus auto (or a \
         smaller number); `s5 info` lists every adapter"
    )]
    NotEnoughGpus {
        asked: usize,
        api: String,
        found: String,
    },

    // ---- data ----
    /// A dataset spec (RON) that does not parse or is inconsistent.
    #[error("{path}: bad dataset spec: {reason}")]
    Spec { path: PathBuf, reason: String },
    /// A file the dataset lists is not there.
    #[error("{path}: missing file{context}", context = .context.as_deref().map(|c| format!(" ({c})")).unwrap_or_default())]
    MissingFile {
        path: PathBuf,
        context: Option<String>,
    },
    /// An image or mask that cannot be decoded (corrupt, truncated, unsupported format).
    #[error("{path}: cannot read image: {reason}")]
    ImageRead { path: PathBuf, reason: String },
    /// A mask whose size differs from its image.
    #[error(
        "{path}: mask is {mask_w}x{mask_h} px but its image {image} is {image_w}x{image_h} px",
        image = .image.display()
    )]
    MaskSize {
        path: PathBuf,
        image: PathBuf,
        mask_w: u32,
        mask_h: u32,
        image_w: u32,
        image_h: u32,
    },
    /// A label value outside the dataset's classes that is not its ignore value.
    #[error("{path}: label {value} at pixel ({x}, {y}) is outside the {classes} classes {hint}")]
    LabelOutOfRange {
        path: PathBuf,
        value: String,
        x: u32,
        y: u32,
        classes: usize,
        hint: &'static str,
    },

    /// Two inputs whose outputs would be the same file: the second would replace the first.
    #[error(
        "{first} and {second} would both be written to {output} (outputs are named by the \
         input's file stem); predict them into different --out folders, or rename one"
    )]
    SameOutput {
        first: PathBuf,
        second: PathBuf,
        output: PathBuf,
    },

    // ---- checkpoints ----
    /// A checkpoint that cannot be read or does not fit the model.
    #[error("{path}: {reason}")]
    Checkpoint { path: PathBuf, reason: String },

    // ---- configuration and runs ----
    /// The ranks of an MPI job that cannot train together: found alike by every rank (rank 0
    /// reports it).
    #[error("MPI job: {reason}")]
    Ranks { reason: String },

    /// A configuration value that cannot work.
    #[error("bad configuration: {reason}")]
    Config { reason: String },

    /// A configuration value out of range (checked before anything is written), in the
    /// file `path` where it came from one.
    #[error(
        "{where_}{error}",
        where_ = .path.as_ref().map(|p| format!("{}: ", p.display())).unwrap_or_default()
    )]
    InvalidConfig {
        path: Option<PathBuf>,
        error: crate::check::ConfigError,
    },

    /// A configuration file that cannot be read as one.
    #[error("{path}: bad configuration: {reason}")]
    ConfigFile { path: PathBuf, reason: String },

    /// A run directory that cannot be used as asked (e.g. a new run over an old one).
    #[error("{path}: {reason}")]
    RunDir { path: PathBuf, reason: String },

    /// A data loader ended although training needed more batches.
    #[error(
        "the loader of {what} stopped: no batch came although the stream repeats its images; \
         check that its split lists readable images (`s5 data check`)"
    )]
    LoaderStopped { what: String },

    /// The run directory: its files, format, lock and checkpoints.
    #[error(transparent)]
    Run(#[from] s5_run::RunError),

    /// Training stopped because the loss stopped being a number.
    #[error(
        "training stopped at step {step}: the loss is {loss}. {kept} Lower `optimizer.lr`, set \
         `optimizer.clip_grad_norm`, or check the data, then `--resume`."
    )]
    Diverged { step: u64, loss: f64, kept: String },

    // ---- files ----
    /// Reading or writing a file failed.
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

impl From<crate::check::ConfigError> for Error {
    fn from(error: crate::check::ConfigError) -> Self {
        Error::InvalidConfig { path: None, error }
    }
}

impl Error {
    /// A failed read of what the GPU computed for `what`: the root cause (the last line of
    /// cubecl's report, which walks every kernel the failure skipped), then `advice`.
    pub fn gpu_failed(what: &str, report: impl std::fmt::Display, advice: &str) -> Self {
        let report = report.to_string();
        let cause = report
            .lines()
            .map(str::trim)
            .rfind(|l| {
                !l.is_empty()
                    && !matches!(*l, "Caused by:" | "Asked at:" | "No backtrace available")
                    && !l.starts_with("skipped ")
            })
            .unwrap_or("no reason given");
        Error::Execution(format!(
            "the GPU could not compute {what} ({cause}). {advice}"
        ))
    }

    /// A failed read of `path`: [`Error::MissingFile`] (with what the file is for) when it
    /// does not exist, [`Error::Io`] otherwise.
    pub fn reading(path: &std::path::Path, source: std::io::Error, context: Option<&str>) -> Self {
        match source.kind() {
            std::io::ErrorKind::NotFound => Error::MissingFile {
                path: path.to_path_buf(),
                context: context.map(str::to_string),
            },
            _ => Error::Io {
                path: path.to_path_buf(),
                source,
            },
        }
    }
}

/// Shorthand used across the crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;
