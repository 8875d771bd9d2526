//! Label maps as pictures: each class in its dataset's palette colour.

use image::{GrayImage, Rgb, RgbImage};

/// Colours a label map with a palette; a label without a colour (e.g. [`super::IGNORE`]) is
/// black.
pub fn colorize(labels: &GrayImage, palette: &[[u8; 3]]) -> RgbImage {
    RgbImage::from_fn(labels.width(), labels.height(), |x, y| {
        let l = usize::from(labels.get_pixel(x, y)[0]);
        Rgb(palette.get(l).copied().unwrap_or([0, 0, 0]))
    })
}
