//! The projection sample: a deterministic, bounded set of patches whose embeddings scoring
//! keeps, for the report's 2-D projection.
//!
//! A patch is in the sample when its [`tiebreak`] hash is below a threshold fixed by the
//! plan's size, so the sample does not depend on the sharding; the report keeps at most
//! [`PROJECTION_MAX_POINTS`] of them (the lowest hashes).
//!
//! Each shard writes its sampled patches to `shard-<i>-of-<n>.sample.bin`: a 24-byte header
//! (`S5SAMPL\0`, format version u32, embedding length D u32, count u64, little endian), then
//! per patch its [`PatchRecord`] and D f32.

use std::io::{BufReader, BufWriter, Read, Write};
use std::path::Path;

use bytemuck::Zeroable;

use super::record::PatchRecord;
use super::select::tiebreak;
use crate::error::{Error, Result};
use crate::fsutil::AtomicFile;
pub use crate::run::curation::report::PROJECTION_MAX_POINTS;

const MAGIC: &[u8; 8] = b"S5SAMPL\0";
const VERSION: u32 = 1;

/// The hash threshold of [`crate::curate::score::ScoreSetup::sample_below`] for a plan of
/// `patches`: about 98 % of [`PROJECTION_MAX_POINTS`] patches expected below it (so the cap
/// rarely cuts), all of them when the plan is smaller.
pub fn sample_threshold(patches: u64) -> u64 {
    let target = PROJECTION_MAX_POINTS as f64 * 0.98;
    if patches as f64 <= target {
        return u64::MAX;
    }
    (u64::MAX as f64 * (target / patches as f64)) as u64
}

/// Whether `patch` is sampled under `threshold`.
pub fn sampled(patch: u64, threshold: u64) -> bool {
    tiebreak(patch) < threshold
}

/// Writes the sampled `(record, embedding)` pairs to `path` atomically.
pub fn write_samples(path: &Path, samples: &[(PatchRecord, Vec<f32>)]) -> Result<()> {
    let dim = samples.first().map_or(0, |(_, e)| e.len());
    let io = |source| Error::Io {
        path: path.to_path_buf(),
        source,
    };
    let mut file = AtomicFile::create(path, ".bin")?;
    {
        let mut out = BufWriter::new(file.file().try_clone().map_err(io)?);
        out.write_all(MAGIC).map_err(io)?;
        out.write_all(&VERSION.to_le_bytes()).map_err(io)?;
        out.write_all(&(dim as u32).to_le_bytes()).map_err(io)?;
        out.write_all(&(samples.len() as u64).to_le_bytes())
            .map_err(io)?;
        for (record, embedding) in samples {
            debug_assert_eq!(embedding.len(), dim);
            out.write_all(bytemuck::bytes_of(record)).map_err(io)?;
            out.write_all(bytemuck::cast_slice(embedding)).map_err(io)?;
        }
        out.flush().map_err(io)?;
    }
    Ok(file.commit()?)
}

/// The sampled pairs in `path`.
pub fn read_samples(path: &Path) -> Result<Vec<(PatchRecord, Vec<f32>)>> {
    let bad = |reason: &str| Error::Spec {
        path: path.to_path_buf(),
        reason: format!("not a projection-sample file: {reason}"),
    };
    let file = std::fs::File::open(path)
        .map_err(|e| Error::reading(path, e, Some("projection sample")))?;
    let mut input = BufReader::new(file);
    let mut header = [0u8; 24];
    input
        .read_exact(&mut header)
        .map_err(|_| bad("shorter than its header"))?;
    if &header[..8] != MAGIC {
        return Err(bad("wrong magic bytes"));
    }
    let word = |i: usize| u32::from_le_bytes(header[i..i + 4].try_into().expect("4 bytes"));
    if word(8) != VERSION {
        return Err(bad("another format version: score the shards again"));
    }
    let dim = word(12) as usize;
    let count = u64::from_le_bytes(header[16..24].try_into().expect("8 bytes"));
    if count > PROJECTION_MAX_POINTS as u64 * 4 {
        return Err(bad("more samples than a plan can have"));
    }
    let mut samples = Vec::with_capacity(count as usize);
    for _ in 0..count {
        let mut record = PatchRecord::zeroed();
        let mut embedding = vec![0f32; dim];
        input
            .read_exact(bytemuck::bytes_of_mut(&mut record))
            .and_then(|()| input.read_exact(bytemuck::cast_slice_mut(&mut embedding)))
            .map_err(|_| bad("truncated"))?;
        samples.push((record, embedding));
    }
    Ok(samples)
}
