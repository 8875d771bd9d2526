//! How a dataset's image files become the model's 8-bit RGB: which three bands, how their
//! values map to 0–255, and which value marks pixels without data. A dataset spec carries it
//! (`imaging: (...)`) and the model card a copy, so `s5 predict` reads images as training did.

use serde::{Deserialize, Serialize};

/// Band choice, value mapping and nodata of a dataset's images. Every field is optional; the
/// default reads 8-bit RGB as it is.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
pub struct Imaging {
    /// The three bands (0-based) the model sees as R, G, B. `None`: bands 0, 1, 2 of an image
    /// with three or more, the one band three times of a gray image.
    #[serde(default)]
    pub bands: Option<[usize; 3]>,
    /// How band values map to 0–255. `None`: 8-bit values as they are; 16-bit images by
    /// [`ValueRange::DEFAULT_16_BIT`], a per-image percentile stretch.
    #[serde(default)]
    pub range: Option<ValueRange>,
    /// The value of pixels without data: a pixel whose three chosen bands all equal it. `None`:
    /// the file's own nodata (the GDAL_NODATA TIFF tag), if it has one.
    #[serde(default)]
    pub nodata: Option<f64>,
}

/// A linear map of band values onto 0–255, clamped outside.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub enum ValueRange {
    /// `low` maps to 0 and `high` to 255 in every band (`Fixed(low: 0, high: 2047)` for 11-bit
    /// data).
    Fixed { low: f64, high: f64 },
    /// Per image and band, the `low` and `high` percentiles (0–100) of its valid pixels map to
    /// 0 and 255.
    Percentile { low: f64, high: f64 },
}

impl ValueRange {
    /// What a 16-bit image gets without a `range`: the 2nd to 98th percentile per band.
    pub const DEFAULT_16_BIT: ValueRange = ValueRange::Percentile {
        low: 2.0,
        high: 98.0,
    };
}

impl Imaging {
    /// Whether every field is unset (today's 8-bit behaviour).
    pub fn is_default(&self) -> bool {
        *self == Self::default()
    }

    /// Consistency of the values on their own (the band count is checked per image).
    pub fn validate(&self) -> Result<(), String> {
        match self.range {
            Some(ValueRange::Fixed { low, high }) if !(low.is_finite() && high.is_finite()) => Err(
                format!("imaging range Fixed(low: {low}, high: {high}) must be finite"),
            ),
            Some(ValueRange::Fixed { low, high }) if high <= low => Err(format!(
                "imaging range Fixed(low: {low}, high: {high}): high must be above low"
            )),
            Some(ValueRange::Percentile { low, high })
                if !(0.0..=100.0).contains(&low)
                    || !(0.0..=100.0).contains(&high)
                    || high <= low =>
            {
                Err(format!(
                    "imaging range Percentile(low: {low}, high: {high}): need 0 ≤ low < high ≤ 100"
                ))
            }
            _ => match self.nodata {
                Some(v) if !v.is_finite() => Err(format!("imaging nodata {v} must be finite")),
                _ => Ok(()),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_from_ron_with_fields_left_out() {
        let imaging: Imaging =
            ron::from_str("(bands: Some((3, 2, 1)), range: Some(Fixed(low: 0, high: 2047)))")
                .unwrap();
        assert_eq!(imaging.bands, Some([3, 2, 1]));
        assert_eq!(
            imaging.range,
            Some(ValueRange::Fixed {
                low: 0.0,
                high: 2047.0
            })
        );
        assert_eq!(imaging.nodata, None);
        assert!(ron::from_str::<Imaging>("()").unwrap().is_default());
    }

    #[test]
    fn refuses_empty_or_reversed_ranges() {
        for range in [
            ValueRange::Fixed {
                low: 5.0,
                high: 5.0,
            },
            ValueRange::Fixed {
                low: 0.0,
                high: f64::NAN,
            },
            ValueRange::Percentile {
                low: 98.0,
                high: 2.0,
            },
            ValueRange::Percentile {
                low: -1.0,
                high: 50.0,
            },
        ] {
            let imaging = Imaging {
                range: Some(range),
                ..Imaging::default()
            };
            assert!(imaging.validate().is_err(), "{range:?} accepted");
        }
        assert!(
            Imaging {
                range: Some(ValueRange::DEFAULT_16_BIT),
                nodata: Some(0.0),
                bands: Some([0, 1, 2])
            }
            .validate()
            .is_ok()
        );
    }
}
