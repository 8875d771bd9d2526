//! The scores of unlabeled patches, one fixed-size record per patch, in per-shard files:
//! what `s5 curate score` writes and `s5 curate select` reads, streaming, in bounded memory.
//!
//! A file is a 16-byte header (`S5PATCH\0`, format version u32, record size u32, all little
//! endian) followed by the records as they lie in memory on a little-endian machine
//! ([`PatchRecord`] is `repr(C)` without padding).

use std::io::{BufReader, BufWriter, Read, Write};
use std::path::Path;

use bytemuck::{Pod, Zeroable};

use crate::error::{Error, Result};
use crate::fsutil::AtomicFile;

/// One scored patch.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Pod, Zeroable)]
pub struct PatchRecord {
    /// The patch's index in the curation plan, which fixes its image, position and size.
    pub patch: u64,
    /// A hash of the patch's pixels and size (the first 8 bytes of their SHA-256): equal
    /// for exact duplicates, which the selection keeps once.
    pub content: u64,
    /// Mean pixel entropy over the non-background classes (paper Eq. 1), in nats.
    pub entropy: f32,
    /// Mean softmax probability of each pixel's predicted class.
    pub confidence: f32,
    /// Share of pixels predicted as a class other than background.
    pub foreground: f32,
    /// Cosine similarity to the nearest prototype.
    pub similarity: f32,
    /// `similarity` minus the similarity to the second-nearest prototype.
    pub margin: f32,
    /// The nearest prototype (cluster index).
    pub cluster: u32,
}

const MAGIC: &[u8; 8] = b"S5PATCH\0";
/// The record format's version: 2 added [`PatchRecord::content`].
pub const VERSION: u32 = 2;
const RECORD_BYTES: usize = std::mem::size_of::<PatchRecord>();
/// Records read or written per block.
const BLOCK: usize = 4096;

/// Writes records one by one into a file that appears whole when finished.
pub struct RecordWriter {
    file: AtomicFile,
    out: BufWriter<std::fs::File>,
}

impl RecordWriter {
    /// Starts the file (its header) at a temporary name beside `path`.
    pub fn create(path: &Path) -> Result<Self> {
        let mut file = AtomicFile::create(path, ".bin")?;
        let handle = file.file().try_clone().map_err(|source| Error::Io {
            path: path.to_path_buf(),
            source,
        })?;
        let mut writer = Self {
            file,
            out: BufWriter::new(handle),
        };
        writer.write(MAGIC)?;
        writer.write(&VERSION.to_le_bytes())?;
        writer.write(&(RECORD_BYTES as u32).to_le_bytes())?;
        Ok(writer)
    }

    fn write(&mut self, bytes: &[u8]) -> Result<()> {
        self.out.write_all(bytes).map_err(|source| Error::Io {
            path: self.file.path().to_path_buf(),
            source,
        })
    }

    pub fn push(&mut self, record: &PatchRecord) -> Result<()> {
        self.write(bytemuck::bytes_of(record))
    }

    /// Flushes and renames the file into place.
    pub fn finish(mut self) -> Result<()> {
        self.out.flush().map_err(|source| Error::Io {
            path: self.file.path().to_path_buf(),
            source,
        })?;
        drop(self.out);
        Ok(self.file.commit()?)
    }
}

/// Writes `records` to `path` atomically: a reader sees the whole file or none.
pub fn write_records(path: &Path, records: &[PatchRecord]) -> Result<()> {
    let mut writer = RecordWriter::create(path)?;
    for record in records {
        writer.push(record)?;
    }
    writer.finish()
}

/// Calls `each` on every record of `path`, in file order, holding one block in memory.
pub fn for_each_record(
    path: &Path,
    mut each: impl FnMut(&PatchRecord) -> Result<()>,
) -> Result<()> {
    let bad = |reason: String| Error::Spec {
        path: path.to_path_buf(),
        reason: format!("not a patch-record file: {reason}"),
    };
    let file =
        std::fs::File::open(path).map_err(|e| Error::reading(path, e, Some("patch records")))?;
    let mut input = BufReader::new(file);
    let mut header = [0u8; 16];
    input
        .read_exact(&mut header)
        .map_err(|_| bad("shorter than its header".into()))?;
    if &header[..8] != MAGIC {
        return Err(bad("wrong magic bytes".into()));
    }
    let version = u32::from_le_bytes(header[8..12].try_into().expect("4 bytes"));
    let size = u32::from_le_bytes(header[12..16].try_into().expect("4 bytes")) as usize;
    if version != VERSION || size != RECORD_BYTES {
        return Err(bad(format!(
            "version {version} with {size}-byte records; this s5 reads version {VERSION} with \
             {RECORD_BYTES}-byte records: score the shards again (`s5 curate score`)"
        )));
    }
    let mut block = vec![PatchRecord::zeroed(); BLOCK];
    let block_bytes = BLOCK * RECORD_BYTES;
    loop {
        let bytes: &mut [u8] = bytemuck::cast_slice_mut(&mut block);
        let mut filled = 0;
        while filled < block_bytes {
            match input.read(&mut bytes[filled..]) {
                Ok(0) => break,
                Ok(n) => filled += n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(source) => {
                    return Err(Error::Io {
                        path: path.to_path_buf(),
                        source,
                    });
                }
            }
        }
        if filled % RECORD_BYTES != 0 {
            return Err(bad("truncated in the middle of a record".into()));
        }
        for record in &block[..filled / RECORD_BYTES] {
            each(record)?;
        }
        if filled < block_bytes {
            return Ok(());
        }
    }
}
