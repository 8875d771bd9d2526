//! `summary.png` of a demo folder: one row per domain (the first validation image of the last
//! validation), columns image, truth, the S4P + MoE-MDF prediction, the baseline's, read from
//! the two fine-tuning runs' sample folders. Each column and each row is labelled.

use std::path::Path;

use anyhow::{Context, Result};
use image::imageops::{self, FilterType};
use image::{Rgb, RgbImage};
use s5::run::RunDir;
use s5::run::samples::{SampleIndex, SampleKind, SampleRole, sample_steps};

/// Side of each picture in the grid.
const CELL_PX: u32 = 160;
/// Gap between pictures.
const GAP_PX: u32 = 4;
/// Height of the column headers and of each row's label.
const LABEL_PX: u32 = 22;
/// The columns, left to right.
const COLUMNS: [&str; 4] = ["image", "truth", "S4P + MoE-MDF", "baseline"];

/// Draws `text` with its top-left corner at (`x`, `y`) in the 8×8 bitmap font, each font
/// pixel `scale` pixels wide; characters the font lacks are left blank.
fn draw_text(image: &mut RgbImage, x: u32, y: u32, text: &str, scale: u32) {
    use font8x8::UnicodeFonts;
    for (i, ch) in text.chars().enumerate() {
        let Some(glyph) = font8x8::BASIC_FONTS.get(ch) else {
            continue;
        };
        for (row, bits) in glyph.iter().enumerate() {
            for col in 0..8u32 {
                if bits & (1 << col) == 0 {
                    continue;
                }
                for dy in 0..scale {
                    for dx in 0..scale {
                        let px = x + (i as u32 * 8 + col) * scale + dx;
                        let py = y + row as u32 * scale + dy;
                        if px < image.width() && py < image.height() {
                            image.put_pixel(px, py, Rgb([20, 20, 20]));
                        }
                    }
                }
            }
        }
    }
}

/// The largest scale (at most 2) at which `text` fits `width_px`.
fn text_scale(text: &str, width_px: u32) -> u32 {
    let chars = text.chars().count().max(1) as u32;
    (width_px / (chars * 8)).clamp(1, 2)
}

/// One sample entry's pictures by role.
type Pictures = Vec<(SampleRole, RgbImage)>;

/// The last validation samples of a run: each dataset's first entry, `(dataset, pictures)`.
fn last_val_pictures(run: &Path) -> Result<Vec<(String, Pictures)>> {
    let run = RunDir::new(run);
    let steps = sample_steps(&run)?;
    // The newest step folder with validation entries.
    for &step in steps.iter().rev() {
        let dir = run.sample_step(step);
        let index = SampleIndex::load(&dir)?;
        let mut out: Vec<(String, Pictures)> = Vec::new();
        for entry in index.entries.iter().filter(|e| e.kind == SampleKind::Val) {
            if out.iter().any(|(d, _)| *d == entry.dataset) {
                continue;
            }
            let mut pictures = Vec::new();
            for role in [SampleRole::Image, SampleRole::Truth, SampleRole::Prediction] {
                let Some(file) = entry.files.get(&role) else {
                    continue;
                };
                let path = dir.join(file);
                let picture = image::open(&path)
                    .with_context(|| format!("reading {}", path.display()))?
                    .to_rgb8();
                pictures.push((role, picture));
            }
            out.push((entry.dataset.clone(), pictures));
        }
        if !out.is_empty() {
            return Ok(out);
        }
    }
    anyhow::bail!(
        "{}: no validation samples (the run validates at its end)",
        run.root().display()
    )
}

/// Writes `<demo>/summary.png`.
pub fn write(demo: &Path) -> Result<()> {
    let ours = last_val_pictures(&demo.join("4-moe-mdf"))?;
    let baseline = last_val_pictures(&demo.join("5-baseline"))?;
    let columns = COLUMNS.len() as u32;
    let rows = ours.len() as u32;
    let row_px = LABEL_PX + CELL_PX + GAP_PX;
    let (w, h) = (
        columns * CELL_PX + (columns + 1) * GAP_PX,
        LABEL_PX + rows * row_px + GAP_PX,
    );
    let mut grid = RgbImage::from_pixel(w, h, Rgb([255, 255, 255]));
    for (c, title) in COLUMNS.iter().enumerate() {
        let x = GAP_PX + c as u32 * (CELL_PX + GAP_PX);
        draw_text(&mut grid, x, 4, title, text_scale(title, CELL_PX));
    }
    let cell = |p: &RgbImage| imageops::resize(p, CELL_PX, CELL_PX, FilterType::Nearest);
    for (r, (dataset, pictures)) in ours.iter().enumerate() {
        let find = |list: &[(SampleRole, RgbImage)], role| {
            list.iter().find(|(r, _)| *r == role).map(|(_, p)| cell(p))
        };
        let theirs = baseline
            .iter()
            .find(|(d, _)| d == dataset)
            .map(|(_, p)| p.as_slice())
            .unwrap_or(&[]);
        let row = [
            find(pictures, SampleRole::Image),
            find(pictures, SampleRole::Truth),
            find(pictures, SampleRole::Prediction),
            find(theirs, SampleRole::Prediction),
        ];
        let top = LABEL_PX + r as u32 * row_px;
        draw_text(&mut grid, GAP_PX, top + 5, dataset, 2);
        for (c, picture) in row.iter().enumerate() {
            if let Some(p) = picture {
                let x = GAP_PX + c as u32 * (CELL_PX + GAP_PX);
                imageops::replace(&mut grid, p, i64::from(x), i64::from(top + LABEL_PX));
            }
        }
    }
    let path = demo.join("summary.png");
    s5::fsutil::write_atomic_via(&path, ".png", |tmp| {
        grid.save(tmp).map_err(|e| s5::run::RunError::Format {
            path: tmp.to_path_buf(),
            what: "summary picture",
            reason: e.to_string(),
        })
    })?;
    Ok(())
}
