//! Unlabeled imagery: any folder tree (or split) of images of any size, cut lazily into
//! patches: only the grid is computed up front (from file headers), pixels are read when a
//! patch is loaded, and no crop is ever written to disk.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use super::SampleRef;
use super::raster::Stretch;
use crate::error::{Error, Result};

/// File extensions read as images.
pub const IMAGE_EXTENSIONS: &[&str] = &["png", "jpg", "jpeg", "tif", "tiff"];

/// One patch of one image.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Patch {
    /// Index into [`TiledSource::images`].
    pub image: usize,
    pub x_px: u32,
    pub y_px: u32,
    pub width_px: u32,
    pub height_px: u32,
}

/// Images cut into a grid of patches.
#[derive(Debug, Clone)]
pub struct TiledSource {
    pub images: Vec<SampleRef>,
    pub patches: Vec<Patch>,
    /// Each image's percentile stretch once measured, so its other patches skip the pass.
    pub stretches: StretchCache,
}

/// Stretches measured per image index, shared by the clones of a source.
#[derive(Debug, Clone, Default)]
pub struct StretchCache(Arc<Mutex<HashMap<usize, Stretch>>>);

/// Offsets of patches of `patch` px every `stride` px along a side of `len` px; the last one
/// is aligned to the end so the whole side is covered. A side shorter than the patch gives
/// one patch at 0 (it is padded when loaded).
pub fn grid_offsets(len: u32, patch: u32, stride: u32) -> Vec<u32> {
    if len <= patch {
        return vec![0];
    }
    let last = len - patch;
    let mut offsets: Vec<u32> = (0..=last).step_by(stride.max(1) as usize).collect();
    if offsets.last() != Some(&last) {
        offsets.push(last);
    }
    offsets
}

/// Every image file under `dir` (recursively), sorted.
pub fn images_in_folder(dir: &Path) -> Result<Vec<PathBuf>> {
    if !dir.is_dir() {
        return Err(Error::MissingFile {
            path: dir.to_path_buf(),
            context: Some("folder of unlabeled images".into()),
        });
    }
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let entries = std::fs::read_dir(&d).map_err(|source| Error::Io {
            path: d.clone(),
            source,
        })?;
        for entry in entries {
            let path = entry
                .map_err(|source| Error::Io {
                    path: d.clone(),
                    source,
                })?
                .path();
            if path.is_dir() {
                stack.push(path);
            } else if path
                .extension()
                .is_some_and(|e| IMAGE_EXTENSIONS.iter().any(|x| e.eq_ignore_ascii_case(x)))
            {
                out.push(path);
            }
        }
    }
    out.sort();
    Ok(out)
}

impl TiledSource {
    /// Cuts `images` into `patch_px` patches every `stride_px`, reading only file headers.
    /// An unreadable header is an error naming the file (or, with `skip_bad`, the image is
    /// reported once on stderr and left out).
    pub fn new(
        images: Vec<SampleRef>,
        patch_px: u32,
        stride_px: u32,
        skip_bad: bool,
    ) -> Result<Self> {
        let sizes: Vec<Result<(u32, u32)>> = images
            .par_iter()
            .map(|s| super::io::image_size(&s.image))
            .collect();
        let mut kept = Vec::new();
        let mut patches = Vec::new();
        for (sample, size) in images.into_iter().zip(sizes) {
            let (w, h) = match size {
                Ok(size) => size,
                Err(e) if skip_bad => {
                    eprintln!("skipping {}: {e}", sample.image.display());
                    continue;
                }
                Err(e) => return Err(e),
            };
            let index = kept.len();
            for y in grid_offsets(h, patch_px, stride_px) {
                for x in grid_offsets(w, patch_px, stride_px) {
                    patches.push(Patch {
                        image: index,
                        x_px: x,
                        y_px: y,
                        width_px: patch_px.min(w),
                        height_px: patch_px.min(h),
                    });
                }
            }
            kept.push(sample);
        }
        Ok(Self {
            images: kept,
            patches,
            stretches: StretchCache::default(),
        })
    }

    /// Every image under a folder tree, unlabeled.
    pub fn from_folder(dir: &Path, patch_px: u32, stride_px: u32, skip_bad: bool) -> Result<Self> {
        let images = images_in_folder(dir)?
            .into_iter()
            .map(|image| SampleRef { image, mask: None })
            .collect();
        Self::new(images, patch_px, stride_px, skip_bad)
    }

    /// Reads one patch (and its labels when the image has a mask): only the patch's window of
    /// a TIFF is decoded; other formats are decoded whole and cropped.
    pub fn load(&self, spec: &super::DatasetSpec, index: usize) -> Result<super::io::Sample> {
        let patch = self.patches[index];
        let sample = &self.images[patch.image];
        let known = self
            .stretches
            .0
            .lock()
            .ok()
            .and_then(|m| m.get(&patch.image).copied());
        let mut raster = super::raster::Raster::open_with(&sample.image, &spec.imaging, known)?;
        if known.is_none()
            && let Ok(mut cache) = self.stretches.0.lock()
        {
            cache.insert(patch.image, raster.stretch());
        }
        let (w, h) = raster.size_px();
        let (pw, ph) = (patch.width_px.min(w), patch.height_px.min(h));
        let (px, py) = (patch.x_px.min(w - pw), patch.y_px.min(h - ph));
        let super::raster::Window { rgb: image, nodata } = raster.read(px, py, pw, ph)?;
        let labels = match &sample.mask {
            None => None,
            Some(mask) => {
                let labels = super::io::read_labels(mask, spec)?;
                if labels.dimensions() != (w, h) {
                    return Err(Error::MaskSize {
                        path: mask.clone(),
                        image: sample.image.clone(),
                        mask_w: labels.width(),
                        mask_h: labels.height(),
                        image_w: w,
                        image_h: h,
                    });
                }
                let mut labels = image::imageops::crop_imm(&labels, px, py, pw, ph).to_image();
                if let Some(nodata) = &nodata {
                    for (label, &missing) in labels.iter_mut().zip(nodata) {
                        if missing {
                            *label = super::IGNORE;
                        }
                    }
                }
                Some(labels)
            }
        };
        Ok(super::io::Sample {
            image,
            labels,
            nodata,
        })
    }
}
