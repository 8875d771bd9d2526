//! ImageNet normalisation into the planar floats the model reads.

use image::RgbImage;

/// ImageNet mean and standard deviation (RGB, on [0, 1]).
pub const IMAGENET_MEAN: [f32; 3] = [0.485, 0.456, 0.406];
pub const IMAGENET_STD: [f32; 3] = [0.229, 0.224, 0.225];

/// The image as normalised planar floats, `(v / 255 - mean) / std` per channel: a 256-entry
/// table per channel holds exactly those values, so the output equals the formula's bit for bit.
///
/// # Shapes
/// `[H, W, 3]` u8 → `[3, H, W]` f32.
pub fn normalize(image: &RgbImage) -> Vec<f32> {
    let table: [[f32; 256]; 3] = std::array::from_fn(|c| {
        std::array::from_fn(|v| (v as f32 / 255.0 - IMAGENET_MEAN[c]) / IMAGENET_STD[c])
    });
    let (pixels, _) = image.as_raw().as_chunks::<3>();
    // Written plane by plane into spare capacity: no zero-fill pass before the real one.
    let mut out = Vec::with_capacity(3 * pixels.len());
    for (c, table) in table.iter().enumerate() {
        out.extend(pixels.iter().map(|p| table[usize::from(p[c])]));
    }
    out
}
