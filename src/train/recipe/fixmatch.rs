//! The FixMatch recipe (`s5 pretrain`, S4P): a labeled batch, an unlabeled batch and its
//! CutMix partner batch per step ([`crate::train::fixmatch`] computes the losses), their
//! statistics, and the pictures of a fixed set of unlabeled images that the viewer shows
//! (`samples/step-<n>/`).

use std::collections::BTreeMap;
use std::sync::Arc;

use burn::module::Module;
use burn::tensor::{Device, Int, Tensor};
use image::{GrayImage, RgbImage};

use super::{Recipe, StepResult};
use crate::data::DatasetSpec;
use crate::data::loader::{
    Keep, LabeledItem, LoaderConfig, Prefetcher, UnlabeledItem, item_rng, keep_indices,
    unlabeled_item, unlabeled_stream,
};
use crate::data::palette::colorize;
use crate::data::source::TiledSource;
use crate::error::{Error, Result};
use crate::model::Segmentor;
use crate::run::keys::{self, MetricKey};
use crate::run::samples::{
    Picture, SampleEntry, SampleKind, SampleRole, SampleWriter, confidence_level,
};
use crate::train::batch::{Dataset, LabeledLoader, UnlabeledBatch, labeled_tensors};
use crate::train::config::{FixMatchSetup, TrainConfig};
use crate::train::fixmatch::{Normalizers, UnlabeledTensors, fixmatch_step, teacher_mix};
use crate::train::loss::{read_floats, scalar};
use crate::train::parallel::{RankSums, Replicas, ShareLoss, step_grads};

/// Seeds of the unlabeled streams and of the fixed sample set, apart from the labeled ones.
const UNLABELED_SEED: u64 = 0x0075_6e6c_6162;
const PARTNER_SEED: u64 = 0x0070_6172_746e;
const SAMPLES_SEED: u64 = 0x0073_616d_706c;

/// What one FixMatch share needs, borrowed from the recipe (shareable across threads).
#[derive(Debug, Clone, Copy)]
struct ShareSettings<'a> {
    setup: &'a FixMatchSetup,
    crop: usize,
    background: Option<usize>,
}

impl ShareSettings<'_> {
    /// The loss of one share of a step (all of it with one device): labeled items, unlabeled
    /// items and their partners, divided by the whole batch's `norms`.
    fn share(
        &self,
        model: &Segmentor,
        labeled: &[LabeledItem],
        u: &[UnlabeledItem],
        partner: &[UnlabeledItem],
        norms: Normalizers,
        device: &Device,
    ) -> Result<ShareLoss> {
        let plain = device.clone().inner();
        let out = fixmatch_step(
            model,
            labeled_tensors(labeled, self.crop, device),
            &UnlabeledTensors::from_items(u, self.crop, &plain),
            &UnlabeledTensors::from_items(partner, self.crop, &plain),
            self.setup,
            self.background,
            norms,
        );
        let mut sums = BTreeMap::from([
            (keys::LOSS.to_string(), scalar(out.loss.clone())?),
            (keys::L_S.to_string(), scalar(out.supervised)?),
            (keys::L_U.to_string(), scalar(out.unsupervised)?),
        ]);
        sums.extend(out.counts.read()?);
        let per_image = read_floats(out.entropy)?
            .into_iter()
            .map(f64::from)
            .collect();
        Ok(ShareLoss {
            loss: out.loss,
            sums,
            per_image,
        })
    }
}

/// A FixMatch step's logged losses (`loss`, `L_s`, `L_u`) and statistics (`mask_ratio`,
/// `mean_entropy`, pseudo-label accuracies where ground truth exists) from the sums and
/// per-image entropies of its shares.
pub fn summarize(
    sums: &BTreeMap<String, f64>,
    entropy: &[f64],
) -> (BTreeMap<MetricKey, f64>, BTreeMap<MetricKey, f64>) {
    let get = |name: &str| sums.get(name).copied().unwrap_or(0.0);
    let losses = [keys::LOSS, keys::L_S, keys::L_U]
        .iter()
        .map(|key| (key.clone(), get(key.as_str())))
        .collect();
    let ratio = |a: &str, b: &str| get(a) / get(b).max(1.0);
    let mut stats = BTreeMap::from([
        (keys::MASK_RATIO, ratio("px/confident", "px/valid")),
        (
            keys::MEAN_ENTROPY,
            entropy.iter().sum::<f64>() / entropy.len().max(1) as f64,
        ),
    ]);
    // Each accuracy only where it is defined: truth is known, and for the confident one,
    // some pixel with truth passed τ (early in a run none does).
    if get("px/with_truth") > 0.0 {
        stats.insert(
            keys::PSEUDO_LABEL_ACC_ALL,
            ratio("px/correct", "px/with_truth"),
        );
    }
    if get("px/confident_with_truth") > 0.0 {
        stats.insert(
            keys::PSEUDO_LABEL_ACC_CONFIDENT,
            ratio("px/correct_confident", "px/confident_with_truth"),
        );
    }
    (losses, stats)
}

/// FixMatch on one labeled dataset and unlabeled images.
pub struct FixMatch {
    setup: FixMatchSetup,
    labeled: LabeledLoader,
    batch: usize,
    crop: usize,
    /// The labeled dataset's background (left out of the entropy) and palette.
    background: Option<usize>,
    palette: Vec<[u8; 3]>,
    dataset: String,
    stream: Prefetcher<UnlabeledItem>,
    partner: Prefetcher<UnlabeledItem>,
    /// What the unlabeled streams decode of each batch (the labeled loader has its own).
    unlabeled_keep: Keep,
    /// The fixed images pictured every `samples.every_steps` (partner: the next one).
    fixed: Vec<(String, UnlabeledItem)>,
}

impl FixMatch {
    /// Opens the unlabeled images and starts the labeled stream and both unlabeled streams
    /// at `start_step`.
    pub fn new(
        setup: &FixMatchSetup,
        config: &TrainConfig,
        dataset: &Dataset,
        start_step: u64,
    ) -> Result<Self> {
        let labeled: &DatasetSpec = &dataset.spec;
        let entry = &setup.unlabeled;
        let mut spec = DatasetSpec::load(&entry.spec)?;
        if let Some(root) = &entry.root {
            spec.root = Some(root.clone());
        }
        let source = match &entry.patches {
            Some(list) => crate::curate::selected::read_selected(list)?,
            None => {
                let images = spec.samples(&entry.split)?;
                if images.is_empty() {
                    return Err(Error::Spec {
                        path: entry.spec.clone(),
                        reason: format!("split `{}` has no images", entry.split),
                    });
                }
                let patch = if entry.patch_px == 0 {
                    u32::MAX
                } else {
                    entry.patch_px
                };
                TiledSource::new(images, patch, patch, config.skip_bad)?
            }
        };
        let source = Arc::new(source);
        let spec = Arc::new(spec);
        let len = source.patches.len();
        let unlabeled_keep = Keep::default();
        let stream = |seed: u64| {
            unlabeled_stream(
                spec.clone(),
                source.clone(),
                config.augment.clone(),
                LoaderConfig {
                    batch: setup.unlabeled_batch,
                    prefetch: config.prefetch,
                    seed: config.seed ^ seed,
                    skip_bad: config.skip_bad,
                    start_step,
                    epoch_len: len,
                },
                unlabeled_keep.clone(),
            )
        };
        let count = setup.samples.images.min(len);
        let fixed = (0..count)
            .map(|i| {
                let mut rng = item_rng(config.seed ^ SAMPLES_SEED, i as u64);
                let item = unlabeled_item(&spec, &source, &config.augment, i, &mut rng)?;
                let p = source.patches[i];
                let name = source.images[p.image]
                    .image
                    .file_stem()
                    .map_or_else(|| format!("{i}"), |s| s.to_string_lossy().into_owned());
                Ok((format!("{name}@{},{}", p.x_px, p.y_px), item))
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Self {
            setup: setup.clone(),
            labeled: LabeledLoader::new(dataset, 0, config, start_step * dataset.batch as u64),
            batch: dataset.batch,
            crop: config.augment.crop_px as usize,
            background: labeled.background.map(usize::from),
            palette: labeled.palette.clone(),
            dataset: labeled.name.clone(),
            stream: stream(UNLABELED_SEED),
            partner: stream(PARTNER_SEED),
            unlabeled_keep,
            fixed,
        })
    }

    /// The next unlabeled batch and its CutMix partner batch.
    fn next_unlabeled(&mut self) -> Result<UnlabeledBatch> {
        let next = |p: &mut Prefetcher<UnlabeledItem>, what: &str| -> Result<Vec<UnlabeledItem>> {
            Ok(p.next()
                .ok_or_else(|| Error::LoaderStopped { what: what.into() })??
                .items)
        };
        Ok(UnlabeledBatch {
            items: next(&mut self.stream, "the unlabeled images")?,
            partner: next(&mut self.partner, "the unlabeled CutMix partners")?,
        })
    }

    /// Whether `step` (completed) is a sample step.
    fn samples_due(&self, step: u64) -> bool {
        let every = self.setup.samples.every_steps;
        every > 0 && step.is_multiple_of(every) && !self.fixed.is_empty()
    }

    /// Adds pictures of the fixed images to a step's samples: weak view, pseudo-label,
    /// confidence, τ-mask, cut-mixed strong view and the student's prediction on it.
    fn pictures(
        &self,
        model: &Segmentor,
        writer: &mut SampleWriter,
        device: &Device,
    ) -> Result<()> {
        let teacher = model.valid();
        let n = self.fixed.len();
        let items: Vec<UnlabeledItem> = self.fixed.iter().map(|(_, i)| i.clone()).collect();
        let partners: Vec<UnlabeledItem> = (0..n).map(|i| items[(i + 1) % n].clone()).collect();
        let u = UnlabeledTensors::from_items(&items, self.crop, device);
        let partner = UnlabeledTensors::from_items(&partners, self.crop, device);
        let mixed = teacher_mix(&teacher, &u, &partner, self.background);
        let student = teacher.forward(mixed.strong.clone(), 0).argmax(1);
        let s = self.crop as u32;
        let labels = bytes(mixed.labels)?;
        let student = bytes(student.reshape([n, self.crop, self.crop]))?;
        let confidence = read_floats(mixed.confidence)?;
        let valid = read_floats(mixed.valid)?;
        let entropy = read_floats(mixed.entropy.reshape([n, 1, 1]))?;
        let tau = self.setup.threshold as f32;
        let plane = self.crop * self.crop;
        for (i, (id, item)) in self.fixed.iter().enumerate() {
            let range = i * plane..(i + 1) * plane;
            let gray = |v: Vec<u8>| GrayImage::from_raw(s, s, v).expect("one value per pixel");
            let pseudo = colorize(&gray(labels[range.clone()].to_vec()), &self.palette);
            // 16-bit levels that keep every pixel on its side of τ (the viewer's τ slider
            // recomputes this very mask from them).
            let conf: image::ImageBuffer<image::Luma<u16>, Vec<u16>> =
                image::ImageBuffer::from_raw(
                    s,
                    s,
                    confidence[range.clone()]
                        .iter()
                        .map(|&c| confidence_level(c, tau))
                        .collect(),
                )
                .expect("one value per pixel");
            let valid_image = gray(
                valid[range.clone()]
                    .iter()
                    .map(|&v| if v > 0.5 { 255 } else { 0 })
                    .collect(),
            );
            let truth = item
                .truth
                .as_ref()
                .map(|t| colorize(&gray(t.clone()), &self.palette));
            let confident: Vec<bool> = confidence[range.clone()]
                .iter()
                .zip(&valid[range.clone()])
                .map(|(&c, &v)| c >= tau && v > 0.5)
                .collect();
            let mask = gray(confident.iter().map(|&c| if c { 255 } else { 0 }).collect());
            let valid_px = valid[range.clone()].iter().filter(|&&v| v > 0.5).count();
            let ratio = confident.iter().filter(|&&c| c).count() as f64 / valid_px.max(1) as f64;
            let mut strong = item.strong_rgb.clone().into_raw();
            if let Some(cut) = item.cutmix {
                cut.paste(&mut strong, partners[i].strong_rgb.as_raw(), s, 3);
            }
            let strong = RgbImage::from_raw(s, s, strong).expect("an RGB crop");
            let student = colorize(&gray(student[range].to_vec()), &self.palette);
            let weak: &RgbImage = &item.weak_rgb;
            let entry = SampleEntry {
                image_id: id.clone(),
                dataset: self.dataset.clone(),
                kind: SampleKind::Unlabeled,
                stats: BTreeMap::from([
                    (keys::MASK_RATIO, ratio),
                    (keys::MEAN_ENTROPY, f64::from(entropy[i])),
                    (keys::TAU, f64::from(tau)),
                ]),
                ..SampleEntry::default()
            };
            let mut pictures = vec![
                (SampleRole::Weak, Picture::Rgb(weak)),
                (SampleRole::PseudoLabel, Picture::Rgb(&pseudo)),
                (SampleRole::Confidence, Picture::Gray16(&conf)),
                (SampleRole::Valid, Picture::Gray(&valid_image)),
                (SampleRole::Mask, Picture::Gray(&mask)),
                (SampleRole::Strong, Picture::Rgb(&strong)),
                (SampleRole::Student, Picture::Rgb(&student)),
            ];
            if let Some(truth) = &truth {
                pictures.push((SampleRole::Truth, Picture::Rgb(truth)));
            }
            writer.add(entry, &pictures)?;
        }
        Ok(())
    }
}

impl Recipe for FixMatch {
    fn splittable_images(&self) -> usize {
        self.batch.min(self.setup.unlabeled_batch)
    }

    fn images_per_step(&self) -> usize {
        self.batch + 2 * self.setup.unlabeled_batch
    }

    fn prepare_shares_only(&mut self, replicas: Replicas<'_>) {
        if replicas.world.size() > 1 {
            self.labeled
                .decode_only(keep_indices(replicas.span(self.batch)));
            self.unlabeled_keep
                .set(replicas.span(self.setup.unlabeled_batch));
        }
    }

    fn step(
        &mut self,
        model: &Segmentor,
        replicas: Replicas<'_>,
        loss_scale: f64,
    ) -> Result<StepResult> {
        let labeled = self.labeled.take(self.batch)?;
        let unlabeled = self.next_unlabeled()?;
        let (labeled, u, partner) = (&labeled.items, &unlabeled.items, &unlabeled.partner);
        let (ls, us) = (replicas.shares(labeled.len()), replicas.shares(u.len()));
        // This rank's crops of the step (the only ones its loaders decode under MPI, see
        // `prepare_shares_only`); the whole batch's counts are summed over the ranks.
        let (mine_l, mine_u) = (replicas.span(labeled.len()), replicas.span(u.len()));
        let norms = Normalizers::of(&labeled[mine_l], &u[mine_u.clone()], &partner[mine_u])
            .over_ranks(replicas.world);
        let settings = ShareSettings {
            setup: &self.setup,
            crop: self.crop,
            background: self.background,
        };
        // The trainer splits no batch over more devices than either part has images.
        let local = ls.len().min(us.len());
        let out = step_grads(model, replicas, local, loss_scale, |i, replica, device| {
            settings.share(
                replica,
                &labeled[ls[i].clone()],
                &u[us[i].clone()],
                &partner[us[i].clone()],
                norms,
                device,
            )
        })?;
        let (losses, mut stats) = summarize(&out.sums, &out.per_image);
        stats.extend(out.rank_sums.into_iter().flat_map(RankSums::stats));
        Ok(StepResult {
            grads: out.grads,
            losses,
            stats,
        })
    }

    fn write_samples(
        &self,
        model: &Segmentor,
        done: u64,
        samples: &mut SampleWriter,
        device: &Device,
    ) -> Result<()> {
        if self.samples_due(done) {
            self.pictures(model, samples, device)?;
        }
        Ok(())
    }

    fn samples_keep(&self) -> usize {
        self.setup.samples.keep
    }
}

/// Labels read from the GPU, as bytes.
fn bytes(t: Tensor<3, Int>) -> Result<Vec<u8>> {
    Ok(read_floats(t.float())?
        .into_iter()
        .map(|v| v.clamp(0.0, 255.0) as u8)
        .collect())
}
