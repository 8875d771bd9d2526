//! Dataset specs (`assets/datasets/*.ron`): where a dataset's images and masks are, how its
//! labels are encoded, its classes, palette and background class.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::run::Imaging;

/// One dataset on disk. Paths in `splits` are relative to `root`, and a relative `root` is
/// relative to the spec file's folder.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DatasetSpec {
    pub name: String,
    /// The dataset's folder; `None` means the spec file's folder (override with `--root`).
    #[serde(default)]
    pub root: Option<PathBuf>,
    /// Class names in index order.
    pub classes: Vec<String>,
    /// Display colour per class (and the colours of `LabelEncoding::Palette` masks).
    pub palette: Vec<[u8; 3]>,
    /// How mask pixels map to class indices.
    pub encoding: LabelEncoding,
    /// The background class, left out of the entropy score and of S4P's validation means.
    #[serde(default)]
    pub background: Option<u8>,
    /// Named splits (`train`, `val`, `unlabeled`, ...).
    pub splits: BTreeMap<String, SplitSource>,
    /// Which bands, how values map to 8 bits, the nodata value (GeoTIFFs, 16-bit imagery);
    /// left out, 8-bit RGB is read as it is.
    #[serde(default, skip_serializing_if = "Imaging::is_default")]
    pub imaging: Imaging,
}

/// How a mask file encodes classes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum LabelEncoding {
    /// A single-channel (8- or 16-bit) mask whose value is the class; `ignore` counts in no class.
    Index { ignore: u16 },
    /// An RGB mask coloured with the spec's `palette`; `ignore_colours` count in no class.
    Palette { ignore_colours: Vec<[u8; 3]> },
    /// LoveDA: value 0 is no-data (ignored), value v is class v - 1.
    MinusOne,
}

/// Where a split's images (and masks) are.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum SplitSource {
    /// Images matching a glob relative to the root (`img_dir/train/*.png`,
    /// `*/images/*.tif`); masks found by `masks`, or none for an unlabeled split.
    Glob {
        images: String,
        #[serde(default)]
        masks: Option<MaskRule>,
    },
    /// A text file (relative to the root) with `<image> [<mask>]` per line, both relative to
    /// the root; a line without a mask uses `masks` when given, else is unlabeled.
    List {
        file: PathBuf,
        #[serde(default)]
        masks: Option<MaskRule>,
    },
}

/// Derives a mask path from its image path (relative to the root): the path component
/// `dir.0` becomes `dir.1` and the file-name suffix `suffix.0` becomes `suffix.1`.
/// `img_dir/train/a.tif` with dir `("img_dir", "ann_dir")`, suffix `(".tif", ".png")`
/// → `ann_dir/train/a.png`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MaskRule {
    pub dir: (String, String),
    pub suffix: (String, String),
}

/// One image of a split and its mask, if labeled (absolute paths).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct SampleRef {
    pub image: PathBuf,
    pub mask: Option<PathBuf>,
}

impl MaskRule {
    /// The mask path of an image path relative to the root.
    pub fn mask_for(&self, image: &Path) -> Option<PathBuf> {
        let mut components: Vec<String> = image
            .components()
            .map(|c| c.as_os_str().to_string_lossy().into_owned())
            .collect();
        let file = components.pop()?;
        let mut replaced = false;
        for c in components.iter_mut().rev() {
            if *c == self.dir.0 {
                c.clone_from(&self.dir.1);
                replaced = true;
                break;
            }
        }
        let stem = file.strip_suffix(self.suffix.0.as_str())?;
        if !replaced && self.dir.0 != self.dir.1 {
            return None;
        }
        let mut path: PathBuf = components.iter().collect();
        path.push(format!("{stem}{}", self.suffix.1));
        Some(path)
    }
}

impl DatasetSpec {
    /// Reads a spec; its `root` is resolved against the file's folder.
    pub fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| Error::reading(path, e, Some("dataset spec")))?;
        let mut spec: Self = ron::from_str(&text).map_err(|e| Error::Spec {
            path: path.to_path_buf(),
            reason: e.to_string(),
        })?;
        let folder = path.parent().unwrap_or(Path::new("."));
        spec.root = Some(match spec.root.take() {
            Some(root) if root.is_absolute() => root,
            Some(root) => folder.join(root),
            None => folder.to_path_buf(),
        });
        spec.validate().map_err(|reason| Error::Spec {
            path: path.to_path_buf(),
            reason,
        })?;
        Ok(spec)
    }

    /// Writes the spec as pretty RON, atomically.
    pub fn save(&self, path: &Path) -> Result<()> {
        let text =
            ron::ser::to_string_pretty(self, ron::ser::PrettyConfig::default()).map_err(|e| {
                Error::Spec {
                    path: path.to_path_buf(),
                    reason: e.to_string(),
                }
            })?;
        Ok(crate::fsutil::write_atomic(path, text.as_bytes())?)
    }

    /// Consistency: classes, palette, encoding and background agree.
    pub fn validate(&self) -> std::result::Result<(), String> {
        let k = self.classes.len();
        if k == 0 || k > usize::from(super::IGNORE) {
            return Err(format!("needs 1 to 255 classes, has {k}"));
        }
        if self.palette.len() != k {
            return Err(format!(
                "palette has {} colours for {k} classes: give one colour per class",
                self.palette.len()
            ));
        }
        if let Some(b) = self.background
            && usize::from(b) >= k
        {
            return Err(format!(
                "background class {b} is not one of the {k} classes"
            ));
        }
        if let LabelEncoding::Palette { ignore_colours } = &self.encoding {
            let mut seen = std::collections::HashSet::new();
            for c in self.palette.iter().chain(ignore_colours) {
                if !seen.insert(*c) {
                    return Err(format!(
                        "colour {c:?} appears twice: a palette-encoded mask needs distinct colours"
                    ));
                }
            }
        }
        self.imaging.validate()?;
        if self.splits.is_empty() {
            return Err("no splits: add e.g. `\"train\": Glob(images: \"...\")`".into());
        }
        Ok(())
    }

    /// The dataset folder (after [`Self::load`], always set).
    pub fn root(&self) -> &Path {
        self.root.as_deref().unwrap_or(Path::new("."))
    }

    /// Number of classes.
    pub fn num_classes(&self) -> usize {
        self.classes.len()
    }

    /// The images of a split (sorted, so every run sees the same order) and their masks.
    /// A mask the rule names but that does not exist is an error naming it.
    pub fn samples(&self, split: &str) -> Result<Vec<SampleRef>> {
        let source = self.splits.get(split).ok_or_else(|| Error::Spec {
            path: self.root().to_path_buf(),
            reason: format!(
                "dataset {} has no split `{split}` (it has: {})",
                self.name,
                self.splits.keys().cloned().collect::<Vec<_>>().join(", ")
            ),
        })?;
        let root = self.root();
        let mut samples = match source {
            SplitSource::Glob { images, masks } => {
                let pattern = root.join(images);
                let pattern = pattern.to_string_lossy();
                let paths = glob::glob(&pattern).map_err(|e| Error::Spec {
                    path: root.to_path_buf(),
                    reason: format!("bad glob `{images}`: {e}"),
                })?;
                let mut out = Vec::new();
                for entry in paths {
                    let image = entry.map_err(|e| Error::Io {
                        path: e.path().to_path_buf(),
                        source: std::io::Error::other(e.error().to_string()),
                    })?;
                    if !image.is_file() {
                        continue;
                    }
                    let relative = image.strip_prefix(root).unwrap_or(&image).to_path_buf();
                    let mask = masks
                        .as_ref()
                        .map(|rule| self.rule_mask(rule, &relative))
                        .transpose()?;
                    out.push(SampleRef { image, mask });
                }
                out
            }
            SplitSource::List { file, masks } => {
                let list = root.join(file);
                let text = std::fs::read_to_string(&list).map_err(|_| Error::MissingFile {
                    path: list.clone(),
                    context: Some(format!("split file of `{split}`")),
                })?;
                let mut out = Vec::new();
                for (line_no, line) in text.lines().enumerate() {
                    let mut fields = line.split_whitespace();
                    let Some(image) = fields.next() else { continue };
                    if image.starts_with('#') {
                        continue;
                    }
                    let mask = match (fields.next(), masks) {
                        (Some(mask), _) => Some(root.join(mask)),
                        (None, Some(rule)) => Some(self.rule_mask(rule, Path::new(image))?),
                        (None, None) => None,
                    };
                    if fields.next().is_some() {
                        return Err(Error::Spec {
                            path: list.clone(),
                            reason: format!(
                                "line {}: expected `<image> [<mask>]`, got `{line}`",
                                line_no + 1
                            ),
                        });
                    }
                    out.push(SampleRef {
                        image: root.join(image),
                        mask,
                    });
                }
                out
            }
        };
        samples.sort();
        Ok(samples)
    }

    fn rule_mask(&self, rule: &MaskRule, image: &Path) -> Result<PathBuf> {
        rule.mask_for(image)
            .map(|m| self.root().join(m))
            .ok_or_else(|| Error::Spec {
                path: self.root().join(image),
                reason: format!(
                    "mask rule (dir {:?}, suffix {:?}) does not apply to this image path",
                    rule.dir, rule.suffix
                ),
            })
    }
}
