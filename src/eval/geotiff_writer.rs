//! Single-band tiled GeoTIFFs written row band by row band, as `s5 predict` produces its
//! rows: rows are held until a row of 256 × 256 px tiles is complete, then each tile is
//! deflated and written, so memory holds one tile row whatever the image size. The input's
//! georeferencing and a nodata value go into the directory; BigTIFF when the data could pass
//! 4 GiB.

use std::io::{BufWriter, Seek, Write};
use std::path::Path;

use bytemuck::Pod;
use flate2::Compression;
use flate2::write::ZlibEncoder;
use tiff::encoder::{DirectoryEncoder, TiffEncoder, TiffKind, TiffKindBig, TiffKindStandard};
use tiff::tags::Tag;

use crate::data::geotiff::{GeoTags, write_nodata};
use crate::error::{Error, Result};
use crate::fsutil::AtomicFile;

/// Tile side in pixels.
pub const TILE_PX: u32 = 256;

/// What one output band is.
#[derive(Debug, Clone)]
pub struct BandFormat {
    /// 8 (`u8`, unsigned) or 32 (`f32`, IEEE float).
    pub bits: u16,
    /// A colour map of 256 RGB entries (8-bit bands only): written as a palette image.
    pub palette: Option<Vec<[u8; 3]>>,
    pub nodata: Option<f64>,
}

/// A tiled single-band GeoTIFF being written into an [`AtomicFile`].
pub struct TiledWriter<T: Pod> {
    file: AtomicFile,
    width: u32,
    height: u32,
    format: BandFormat,
    geo: GeoTags,
    /// Up to one tile row of rows, `[rows, width]`.
    pending: Vec<T>,
    /// Rows handed over so far.
    rows_done: u32,
    /// Deflated tiles, in order, while the directory cannot be written yet: kept in a temp
    /// file beside the output so memory stays one tile row.
    spill: BufWriter<std::fs::File>,
    spill_lengths: Vec<u64>,
}

impl<T: Pod + Default> TiledWriter<T> {
    /// Starts `path` (written beside it, renamed by [`Self::commit`]).
    pub fn create(
        path: &Path,
        width: u32,
        height: u32,
        format: BandFormat,
        geo: GeoTags,
    ) -> Result<Self> {
        let file = AtomicFile::create(path, ".tif")?;
        let spill =
            tempfile::tempfile_in(path.parent().unwrap_or(Path::new("."))).map_err(|source| {
                Error::Io {
                    path: path.to_path_buf(),
                    source,
                }
            })?;
        Ok(Self {
            file,
            width,
            height,
            format,
            geo,
            pending: Vec::with_capacity(TILE_PX as usize * width as usize),
            rows_done: 0,
            spill: BufWriter::new(spill),
            spill_lengths: Vec::new(),
        })
    }

    /// Appends finished rows (`[rows, width]`, row-major, top to bottom).
    pub fn write_rows(&mut self, values: &[T]) -> Result<()> {
        let width = self.width as usize;
        debug_assert_eq!(values.len() % width, 0);
        let mut rest = values;
        while !rest.is_empty() {
            let room = TILE_PX as usize * width - self.pending.len();
            let take = room.min(rest.len());
            self.pending.extend_from_slice(&rest[..take]);
            rest = &rest[take..];
            self.rows_done += (take / width) as u32;
            if self.pending.len() == TILE_PX as usize * width || self.rows_done == self.height {
                self.flush_tile_row()?;
            }
        }
        Ok(())
    }

    fn io(&self, source: std::io::Error) -> Error {
        Error::Io {
            path: self.file.path().to_path_buf(),
            source,
        }
    }

    /// Deflates the pending rows as one row of tiles (zero-padded to whole tiles).
    fn flush_tile_row(&mut self) -> Result<()> {
        let (width, tile) = (self.width as usize, TILE_PX as usize);
        let rows = self.pending.len() / width;
        let mut buffer = vec![T::default(); tile * tile];
        for tx in 0..width.div_ceil(tile) {
            buffer.fill(T::default());
            let x0 = tx * tile;
            let cols = tile.min(width - x0);
            for r in 0..rows {
                buffer[r * tile..r * tile + cols]
                    .copy_from_slice(&self.pending[r * width + x0..r * width + x0 + cols]);
            }
            let mut encoder = ZlibEncoder::new(Vec::new(), Compression::new(6));
            encoder
                .write_all(bytemuck::cast_slice(&buffer))
                .map_err(|e| self.io(e))?;
            let bytes = encoder.finish().map_err(|e| self.io(e))?;
            self.spill.write_all(&bytes).map_err(|e| self.io(e))?;
            self.spill_lengths.push(bytes.len() as u64);
        }
        self.pending.clear();
        Ok(())
    }

    /// Writes the file (tiles, then the directory) and renames it into place. Every row must
    /// have been written.
    pub fn commit(mut self) -> Result<()> {
        if self.rows_done != self.height {
            return Err(self.io(std::io::Error::other(format!(
                "{} of {} rows written",
                self.rows_done, self.height
            ))));
        }
        let data: u64 = self.spill_lengths.iter().sum();
        let path = self.file.path().to_path_buf();
        let tiff = |e: tiff::TiffError| Error::Io {
            path: path.clone(),
            source: std::io::Error::other(e),
        };
        let mut spill = self.spill.into_inner().map_err(|e| Error::Io {
            path: path.clone(),
            source: e.into_error(),
        })?;
        spill.rewind().map_err(|source| Error::Io {
            path: path.clone(),
            source,
        })?;
        let handle = self.file.file().try_clone().map_err(|source| Error::Io {
            path: path.clone(),
            source,
        })?;
        let mut out = BufWriter::new(handle);
        let header = Header {
            width: self.width,
            height: self.height,
            format: &self.format,
            geo: &self.geo,
            lengths: &self.spill_lengths,
        };
        // Offsets of a classic TIFF are 32-bit: leave a margin for the directory and tags.
        if data + (1 << 24) < u64::from(u32::MAX) {
            let mut encoder =
                TiffEncoder::<_, TiffKindStandard>::new_generic(&mut out).map_err(tiff)?;
            header.write(&mut encoder, &mut spill).map_err(tiff)?;
        } else {
            let mut encoder = TiffEncoder::<_, TiffKindBig>::new_generic(&mut out).map_err(tiff)?;
            header.write(&mut encoder, &mut spill).map_err(tiff)?;
        }
        out.flush().map_err(|source| Error::Io {
            path: path.clone(),
            source,
        })?;
        drop(out);
        self.file.file().sync_all().map_err(|source| Error::Io {
            path: path.clone(),
            source,
        })?;
        Ok(self.file.commit()?)
    }
}

struct Header<'a> {
    width: u32,
    height: u32,
    format: &'a BandFormat,
    geo: &'a GeoTags,
    lengths: &'a [u64],
}

impl Header<'_> {
    fn write<W: Write + Seek, K: TiffKind>(
        &self,
        encoder: &mut TiffEncoder<W, K>,
        spill: &mut std::fs::File,
    ) -> tiff::TiffResult<()> {
        let mut dir: DirectoryEncoder<'_, W, K> = encoder.image_directory()?;
        let mut offsets = Vec::with_capacity(self.lengths.len());
        let mut chunk = Vec::new();
        for &length in self.lengths {
            chunk.resize(length as usize, 0);
            std::io::Read::read_exact(spill, &mut chunk)?;
            offsets.push(K::convert_offset(dir.write_data(chunk.as_slice())?)?);
        }
        let counts = self
            .lengths
            .iter()
            .map(|&l| K::convert_offset(l))
            .collect::<tiff::TiffResult<Vec<_>>>()?;
        dir.write_tag(Tag::ImageWidth, self.width)?;
        dir.write_tag(Tag::ImageLength, self.height)?;
        dir.write_tag(Tag::BitsPerSample, self.format.bits)?;
        dir.write_tag(Tag::Compression, 8u16)?; // Deflate (Adobe)
        let photometric: u16 = if self.format.palette.is_some() { 3 } else { 1 };
        dir.write_tag(Tag::PhotometricInterpretation, photometric)?;
        dir.write_tag(Tag::SamplesPerPixel, 1u16)?;
        dir.write_tag(Tag::PlanarConfiguration, 1u16)?;
        dir.write_tag(Tag::TileWidth, TILE_PX)?;
        dir.write_tag(Tag::TileLength, TILE_PX)?;
        dir.write_tag(Tag::TileOffsets, K::convert_slice(&offsets))?;
        dir.write_tag(Tag::TileByteCounts, K::convert_slice(&counts))?;
        let format: u16 = if self.format.bits == 32 { 3 } else { 1 };
        dir.write_tag(Tag::SampleFormat, format)?;
        if let Some(palette) = &self.format.palette {
            // Red, then green, then blue ramps, 16 bits per entry.
            let mut map = vec![0u16; 3 * 256];
            for (i, colour) in palette.iter().take(256).enumerate() {
                for c in 0..3 {
                    map[c * 256 + i] = u16::from(colour[c]) * 257;
                }
            }
            dir.write_tag(Tag::ColorMap, map.as_slice())?;
        }
        self.geo.write(&mut dir)?;
        if let Some(nodata) = self.format.nodata {
            write_nodata(&mut dir, nodata)?;
        }
        dir.finish()
    }
}
