//! GeoTIFF georeferencing and the GDAL nodata tag: read with a TIFF's pixels, copied unchanged
//! into the TIFFs `s5 predict` writes, so its outputs lie exactly over their input.
//!
//! The tags (OGC GeoTIFF 1.1): ModelPixelScale (33550) and ModelTiepoint (33922), or
//! ModelTransformation (34264), place the raster; GeoKeyDirectory (34735) with its double
//! (34736) and ASCII (34737) parameters names the CRS. GDAL_NODATA (42113) is an ASCII number.

use std::io::{Read, Seek, Write};

use tiff::TiffResult;
use tiff::decoder::Decoder;
use tiff::encoder::{DirectoryEncoder, TiffKind};
use tiff::tags::Tag;

/// The georeferencing tags of one TIFF image, as stored.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct GeoTags {
    pub pixel_scale: Option<Vec<f64>>,
    pub tiepoints: Option<Vec<f64>>,
    pub transformation: Option<Vec<f64>>,
    pub geokeys: Option<Vec<u16>>,
    pub double_params: Option<Vec<f64>>,
    pub ascii_params: Option<String>,
}

impl GeoTags {
    /// The tags of the decoder's current image (all absent for a plain TIFF).
    pub fn read<R: Read + Seek>(decoder: &mut Decoder<R>) -> TiffResult<Self> {
        let doubles = |d: &mut Decoder<R>, tag| -> TiffResult<Option<Vec<f64>>> {
            d.find_tag(tag)?.map(|v| v.into_f64_vec()).transpose()
        };
        Ok(Self {
            pixel_scale: doubles(decoder, Tag::ModelPixelScaleTag)?,
            tiepoints: doubles(decoder, Tag::ModelTiepointTag)?,
            transformation: doubles(decoder, Tag::ModelTransformationTag)?,
            geokeys: decoder
                .find_tag(Tag::GeoKeyDirectoryTag)?
                .map(|v| v.into_u16_vec())
                .transpose()?,
            double_params: doubles(decoder, Tag::GeoDoubleParamsTag)?,
            ascii_params: decoder
                .find_tag(Tag::GeoAsciiParamsTag)?
                .map(|v| v.into_string())
                .transpose()?
                .map(|s| s.trim_end_matches('\0').to_string()),
        })
    }

    /// Whether the image is placed on the Earth (a tie point, a transformation or a CRS).
    pub fn is_georeferenced(&self) -> bool {
        self.tiepoints.is_some() || self.transformation.is_some() || self.geokeys.is_some()
    }

    /// Writes every present tag into `dir`.
    pub fn write<W: Write + Seek, K: TiffKind>(
        &self,
        dir: &mut DirectoryEncoder<'_, W, K>,
    ) -> TiffResult<()> {
        for (tag, values) in [
            (Tag::ModelPixelScaleTag, &self.pixel_scale),
            (Tag::ModelTiepointTag, &self.tiepoints),
            (Tag::ModelTransformationTag, &self.transformation),
            (Tag::GeoDoubleParamsTag, &self.double_params),
        ] {
            if let Some(values) = values {
                dir.write_tag(tag, values.as_slice())?;
            }
        }
        if let Some(keys) = &self.geokeys {
            dir.write_tag(Tag::GeoKeyDirectoryTag, keys.as_slice())?;
        }
        if let Some(text) = &self.ascii_params {
            dir.write_tag(Tag::GeoAsciiParamsTag, text.as_str())?;
        }
        Ok(())
    }
}

/// The GDAL_NODATA value of the decoder's current image, if it has a readable one.
pub fn read_nodata<R: Read + Seek>(decoder: &mut Decoder<R>) -> TiffResult<Option<f64>> {
    Ok(decoder
        .find_tag(Tag::GdalNodata)?
        .map(|v| v.into_string())
        .transpose()?
        .and_then(|s| s.trim_end_matches('\0').trim().parse::<f64>().ok())
        .filter(|v| v.is_finite()))
}

/// Writes `value` as the GDAL_NODATA tag (integers without a fraction, as GDAL writes them).
pub fn write_nodata<W: Write + Seek, K: TiffKind>(
    dir: &mut DirectoryEncoder<'_, W, K>,
    value: f64,
) -> TiffResult<()> {
    let text = if value.fract() == 0.0 && value.abs() < 1e15 {
        format!("{}", value as i64)
    } else {
        format!("{value}")
    };
    dir.write_tag(Tag::GdalNodata, text.as_str())
}
