//! What the reader thread hands the UI: sample steps and curation reports decoded off the
//! UI thread, ready to become textures.

use std::collections::BTreeMap;
use std::path::Path;

use egui::ColorImage;
use s5_run::curation::CurationReport;
use s5_run::{DatasetCard, SampleEntry, SampleIndex, SampleRole};

use crate::colormap::viridis;
use crate::tau::Confidence;

/// One sampled image: its pictures, and what the τ slider and hover need.
#[derive(Debug, Clone)]
pub struct DecodedEntry {
    pub entry: SampleEntry,
    /// Every picture as shown (the confidence as a heatmap, validity as grey).
    pub images: BTreeMap<SampleRole, ColorImage>,
    /// The stored confidence levels and validity (unlabeled entries).
    pub confidence: Option<Confidence>,
    /// Class per pixel of the label pictures (pseudo-label, prediction, student, truth),
    /// read back through the dataset's palette; `None` where the colour is no class's.
    pub classes: BTreeMap<SampleRole, Vec<Option<u8>>>,
    /// Pictures that could not be read, named.
    pub errors: Vec<String>,
}

/// A step folder, decoded.
#[derive(Debug, Clone)]
pub struct StepSamples {
    pub step: u64,
    pub entries: Vec<DecodedEntry>,
    pub datasets: Vec<DatasetCard>,
}

/// Roles whose pictures are class colours.
pub const LABEL_ROLES: [SampleRole; 4] = [
    SampleRole::PseudoLabel,
    SampleRole::Prediction,
    SampleRole::Student,
    SampleRole::Truth,
];

impl StepSamples {
    /// Reads and decodes the step folder `dir` (its `index.ron` and every picture).
    pub fn read(dir: &Path) -> Result<Self, String> {
        let index = SampleIndex::load(dir).map_err(|e| e.to_string())?;
        let entries = index
            .entries
            .iter()
            .map(|entry| decode_entry(dir, entry, &index.datasets))
            .collect();
        Ok(Self {
            step: index.step,
            entries,
            datasets: index.datasets,
        })
    }

    /// The legend of a dataset, if the index names it.
    pub fn dataset(&self, name: &str) -> Option<&DatasetCard> {
        self.datasets.iter().find(|d| d.name == name)
    }
}

fn decode_entry(dir: &Path, entry: &SampleEntry, datasets: &[DatasetCard]) -> DecodedEntry {
    let mut decoded = DecodedEntry {
        entry: entry.clone(),
        images: BTreeMap::new(),
        confidence: None,
        classes: BTreeMap::new(),
        errors: Vec::new(),
    };
    let palette = datasets
        .iter()
        .find(|d| d.name == entry.dataset)
        .map(|d| d.palette.clone());
    let mut levels = None;
    let mut valid = None;
    // Every picture of an entry shows the same pixels: the image (the weak view of an
    // unlabeled entry) sets the size, else the first picture read, and one of another size is
    // reported and left out (the τ mask, the overlays and the hover readout index one picture
    // by another's pixels).
    let mut size: Option<((u32, u32), &str)> = [SampleRole::Weak, SampleRole::Image]
        .iter()
        .find_map(|role| entry.files.get(role))
        .and_then(|file| {
            image::image_dimensions(dir.join(file))
                .ok()
                .map(|dims| (dims, file.as_str()))
        });
    for (role, file) in &entry.files {
        let path = dir.join(file);
        let image = match image::open(&path) {
            Ok(image) => image,
            Err(e) => {
                decoded.errors.push(format!("{}: {e}", path.display()));
                continue;
            }
        };
        let dims = (image.width(), image.height());
        match size {
            None => size = Some((dims, file)),
            Some((want, first)) if want != dims => {
                decoded.errors.push(format!(
                    "{}: is {}x{} px but {first} of the same sample is {}x{} px: left out",
                    path.display(),
                    dims.0,
                    dims.1,
                    want.0,
                    want.1
                ));
                continue;
            }
            Some(_) => {}
        }
        match role {
            SampleRole::Confidence => {
                let luma = image.into_luma16();
                let (w, h) = luma.dimensions();
                let values = luma.into_raw();
                let pixels = values
                    .iter()
                    .map(|&l| viridis(f32::from(l) / 65_535.0))
                    .collect();
                decoded
                    .images
                    .insert(*role, ColorImage::new([w as usize, h as usize], pixels));
                levels = Some((w, h, values));
            }
            SampleRole::Valid | SampleRole::Mask => {
                let luma = image.into_luma8();
                if *role == SampleRole::Valid {
                    valid = Some(luma.pixels().map(|p| p[0] > 127).collect::<Vec<bool>>());
                }
                let rgb = image::DynamicImage::ImageLuma8(luma).into_rgba8();
                decoded.images.insert(*role, color_image(&rgb));
            }
            _ => {
                let rgba = image.into_rgba8();
                if LABEL_ROLES.contains(role)
                    && let Some(palette) = &palette
                {
                    let classes = rgba
                        .pixels()
                        .map(|p| {
                            palette
                                .iter()
                                .position(|c| c[..] == p.0[..3])
                                .map(|i| i as u8)
                        })
                        .collect();
                    decoded.classes.insert(*role, classes);
                }
                decoded.images.insert(*role, color_image(&rgba));
            }
        }
    }
    if let Some((width, height, levels)) = levels {
        let n = levels.len();
        // No validity picture: every pixel counts (samples of format 1 have none). One of
        // another size was reported and left out above, and then nothing is assumed valid.
        let valid = match (valid, entry.files.contains_key(&SampleRole::Valid)) {
            (Some(v), _) => v,
            (None, false) => vec![true; n],
            (None, true) => vec![false; n],
        };
        decoded.confidence = Some(Confidence {
            width,
            height,
            levels,
            valid,
        });
    }
    decoded
}

/// An RGBA image as egui's.
pub fn color_image(rgba: &image::RgbaImage) -> ColorImage {
    ColorImage::from_rgba_unmultiplied(
        [rgba.width() as usize, rgba.height() as usize],
        rgba.as_raw(),
    )
}

/// A curation report and its thumbnails, decoded.
#[derive(Debug, Clone)]
pub struct DecodedReport {
    pub report: CurationReport,
    /// Patch → thumbnail.
    pub thumbnails: BTreeMap<u64, ColorImage>,
}

impl DecodedReport {
    /// Reads `<run>/curation/report.json` and its thumbnails (a missing thumbnail is left
    /// out).
    pub fn read(run: &s5_run::RunDir) -> Result<Self, String> {
        let report = CurationReport::load(run).map_err(|e| e.to_string())?;
        let mut thumbnails = BTreeMap::new();
        for t in &report.thumbnails {
            if let Ok(image) = image::open(run.curation().join(&t.file)) {
                thumbnails.insert(t.patch, color_image(&image.into_rgba8()));
            }
        }
        Ok(Self { report, thumbnails })
    }
}
