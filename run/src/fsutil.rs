//! Files written so that a reader never sees half of one: temp file in the same folder,
//! flushed, then renamed over the target.

use std::io::Write;
use std::path::{Path, PathBuf};

use crate::error::{Result, RunError};

/// Writes `bytes` to `path` atomically, creating the parent folder if needed.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    write_atomic_via(path, "", |tmp| {
        let io = |source| RunError::Io {
            path: tmp.to_path_buf(),
            source,
        };
        let mut file = std::fs::File::create(tmp).map_err(io)?;
        file.write_all(bytes).map_err(io)?;
        file.sync_all().map_err(io)
    })
}

/// The one atomic-write mechanism: `write` fills a temporary file (named with `suffix`, for
/// writers that insist on an extension) in `path`'s folder, which is made readable and then
/// renamed over `path`. Creates the folder if needed; on error the temporary file is removed.
/// Generic in the error so that writers with errors of their own (burn records) keep them.
pub fn write_atomic_via<E: From<RunError>>(
    path: &Path,
    suffix: &str,
    write: impl FnOnce(&Path) -> std::result::Result<(), E>,
) -> std::result::Result<(), E> {
    let file = AtomicFile::create(path, suffix)?;
    write(file.tmp_path())?;
    Ok(file.commit()?)
}

/// A file being written in place of `path`: a temporary file beside it until
/// [`AtomicFile::commit`] renames it over `path`. Dropped without commit, it disappears.
#[derive(Debug)]
pub struct AtomicFile {
    tmp: tempfile::NamedTempFile,
    path: PathBuf,
}

impl AtomicFile {
    /// Creates the temporary file (and `path`'s folder if needed).
    pub fn create(path: &Path, suffix: &str) -> Result<Self> {
        let dir = match path.parent() {
            Some(d) if !d.as_os_str().is_empty() => d,
            _ => Path::new("."),
        };
        let dir_io = |source| RunError::Io {
            path: dir.to_path_buf(),
            source,
        };
        std::fs::create_dir_all(dir).map_err(dir_io)?;
        let tmp = tempfile::Builder::new()
            .prefix(".s5-")
            .suffix(suffix)
            .tempfile_in(dir)
            .map_err(dir_io)?;
        Ok(Self {
            tmp,
            path: path.to_path_buf(),
        })
    }

    pub fn tmp_path(&self) -> &Path {
        self.tmp.path()
    }

    /// The open temporary file, for streaming writers.
    pub fn file(&mut self) -> &mut std::fs::File {
        self.tmp.as_file_mut()
    }

    /// The final path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Renames the temporary file over the final path, readable by others.
    pub fn commit(self) -> Result<()> {
        let io = |source| RunError::Io {
            path: self.path.clone(),
            source,
        };
        make_readable(self.tmp.path()).map_err(io)?;
        self.tmp.persist(&self.path).map_err(|e| io(e.error))?;
        Ok(())
    }
}

/// Temporary files are created private (0600); what s5 writes is ordinary data (0644, then
/// the umask applies as for any file the user creates).
pub fn make_readable(path: &Path) -> std::io::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o644))?;
    }
    #[cfg(not(unix))]
    let _ = path;
    Ok(())
}

/// Encodes `image` as PNG and writes it atomically.
pub fn save_png_atomic<P, C>(path: &Path, image: &image::ImageBuffer<P, C>) -> Result<()>
where
    P: image::PixelWithColorType,
    [P::Subpixel]: image::EncodableLayout,
    C: std::ops::Deref<Target = [P::Subpixel]>,
{
    let mut bytes = std::io::Cursor::new(Vec::new());
    image
        .write_to(&mut bytes, image::ImageFormat::Png)
        .map_err(|e| RunError::Io {
            path: path.to_path_buf(),
            source: std::io::Error::other(format!("cannot encode PNG: {e}")),
        })?;
    write_atomic(path, bytes.get_ref())
}
