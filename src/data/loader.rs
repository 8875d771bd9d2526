//! Batches built ahead of training on the rayon pool, at most `prefetch` of them waiting, so
//! the GPU never waits on the CPU when the CPU keeps up, and memory is bounded by the
//! prefetch depth, not the dataset size.
//!
//! Order and randomness depend only on (seed, position in the stream): position `p` is
//! sample `order(epoch)[p % len]` of epoch `p / len`, augmented with an RNG seeded by
//! (seed, p). A stream restarted at step `s` ([`LoaderConfig::start_step`]) therefore
//! continues with exactly the batches an uninterrupted run would have seen.
//!
//! A stream can decode part of each batch only ([`Keep`]): the ranks of an MPI job each
//! decode their own share of the global batch.

use std::collections::HashSet;
use std::ops::Range;
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;

use crate::error::Result;

/// How a stream is cut into batches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LoaderConfig {
    pub batch: usize,
    /// Batches built ahead and waiting (≥ 1).
    pub prefetch: usize,
    pub seed: u64,
    /// Report a sample that fails to load once on stderr and use the next one instead of
    /// stopping.
    pub skip_bad: bool,
    /// The first step to produce (resuming).
    pub start_step: u64,
    /// Samples per epoch: the source's length, or more to repeat a small labeled set up to
    /// the unlabeled pool's length as the paper does.
    pub epoch_len: usize,
}

/// The RNG of stream position `position` (independent of threads and batch size).
pub fn item_rng(seed: u64, position: u64) -> ChaCha8Rng {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    rng.set_stream(position);
    rng
}

/// Sample order of one epoch: `epoch_len` indices into a source of `len` samples, made of
/// shuffled passes over all of them (the last pass cut short).
pub fn epoch_order(len: usize, epoch_len: usize, seed: u64, epoch: u64) -> Vec<usize> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0x005e_ed0f_0de5);
    rng.set_stream(epoch);
    let mut order = Vec::with_capacity(epoch_len);
    while order.len() < epoch_len && len > 0 {
        let mut pass: Vec<usize> = (0..len).collect();
        pass.shuffle(&mut rng);
        order.extend(pass.into_iter().take(epoch_len - order.len()));
    }
    order
}

/// Which items of its batches a stream decodes; the others are left as `T::default()`
/// (another rank's share of the batch). Shared with the producer: set a rule once the shares
/// are known, and batches made from then on are decoded in part; until then, whole.
#[derive(Clone, Default)]
pub struct Keep(Arc<Mutex<Option<KeepRule>>>);

/// Whether the item at a stream position (and its index within its batch) is decoded; asked
/// once per item, in stream order.
pub type KeepRule = Box<dyn FnMut(u64, usize) -> bool + Send>;

/// The rule that keeps the items at `range` of each batch (indices within the batch).
pub fn keep_indices(range: Range<usize>) -> KeepRule {
    Box::new(move |_, index| range.contains(&index))
}

impl std::fmt::Debug for Keep {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Keep")
    }
}

impl Keep {
    /// Decode the items at `range` of each batch (indices within the batch) from now on.
    pub fn set(&self, range: Range<usize>) {
        self.set_rule(keep_indices(range));
    }

    /// Decode the items `rule` keeps from now on.
    pub fn set_rule(&self, rule: KeepRule) {
        *self.0.lock().unwrap_or_else(|p| p.into_inner()) = Some(rule);
    }

    /// Which of `positions` (a batch, in stream order) to decode.
    fn flags(&self, positions: impl Iterator<Item = u64>) -> Vec<bool> {
        let mut rule = self.0.lock().unwrap_or_else(|p| p.into_inner());
        match rule.as_mut() {
            Some(rule) => positions
                .enumerate()
                .map(|(index, position)| rule(position, index))
                .collect(),
            None => positions.map(|_| true).collect(),
        }
    }
}

/// One batch: its step and items in stream order.
#[derive(Debug)]
pub struct Batch<T> {
    pub step: u64,
    pub items: Vec<T>,
}

/// A background producer of batches; iterate to receive them.
pub struct Prefetcher<T> {
    rx: Receiver<Result<Batch<T>>>,
    _producer: JoinHandle<()>,
}

impl<T: Send + Default + 'static> Prefetcher<T> {
    /// Starts producing batches of `make(sample_index, rng)` over a source of `len` samples.
    /// With `skip_bad`, a failing sample is reported once and the next sample of the source
    /// is tried; otherwise the error ends the stream.
    pub fn spawn<F>(len: usize, config: LoaderConfig, make: F) -> Self
    where
        F: Fn(usize, &mut ChaCha8Rng) -> Result<T> + Send + Sync + 'static,
    {
        Self::spawn_keeping(len, config, Keep::default(), make)
    }

    /// [`Prefetcher::spawn`], decoding the positions of each batch that `keep` keeps (the
    /// others: `T::default()`, `make` not called). What a kept position holds does not
    /// depend on what is kept.
    pub fn spawn_keeping<F>(len: usize, config: LoaderConfig, keep: Keep, make: F) -> Self
    where
        F: Fn(usize, &mut ChaCha8Rng) -> Result<T> + Send + Sync + 'static,
    {
        let (tx, rx) = sync_channel(config.prefetch.max(1));
        let producer = std::thread::spawn(move || produce(len, config, &keep, make, tx));
        Self {
            rx,
            _producer: producer,
        }
    }
}

impl<T> Iterator for Prefetcher<T> {
    type Item = Result<Batch<T>>;

    fn next(&mut self) -> Option<Self::Item> {
        self.rx.recv().ok()
    }
}

fn produce<T, F>(
    len: usize,
    config: LoaderConfig,
    keep: &Keep,
    make: F,
    tx: SyncSender<Result<Batch<T>>>,
) where
    T: Send + Default,
    F: Fn(usize, &mut ChaCha8Rng) -> Result<T> + Sync,
{
    let epoch_len = config.epoch_len.max(1);
    let reported = Arc::new(Mutex::new(HashSet::new()));
    let mut cached_epoch: Option<(u64, Vec<usize>)> = None;
    if len == 0 {
        return;
    }
    for step in config.start_step.. {
        let first = step * config.batch as u64;
        let positions: Vec<u64> = (first..first + config.batch as u64).collect();
        let picks: Vec<(u64, usize)> = positions
            .iter()
            .map(|&p| {
                let epoch = p / epoch_len as u64;
                if cached_epoch.as_ref().is_none_or(|(e, _)| *e != epoch) {
                    cached_epoch = Some((epoch, epoch_order(len, epoch_len, config.seed, epoch)));
                }
                let order = &cached_epoch.as_ref().expect("just set").1;
                (p, order[(p % epoch_len as u64) as usize])
            })
            .collect();
        let kept = keep.flags(picks.iter().map(|&(position, _)| position));
        let items: Result<Vec<T>> = picks
            .par_iter()
            .zip(&kept)
            .map(|(&(position, sample), &kept)| {
                if !kept {
                    return Ok(T::default());
                }
                let mut attempt = 0;
                loop {
                    let mut rng = item_rng(config.seed, position);
                    match make((sample + attempt) % len, &mut rng) {
                        Ok(item) => return Ok(item),
                        Err(e) if config.skip_bad && attempt + 1 < len => {
                            let message = e.to_string();
                            let mut seen = reported.lock().unwrap_or_else(|p| p.into_inner());
                            if seen.insert(message.clone()) {
                                eprintln!("skipping a bad sample: {message}");
                            }
                            attempt += 1;
                        }
                        Err(e) => return Err(e),
                    }
                }
            })
            .collect();
        let failed = items.is_err();
        if tx.send(items.map(|items| Batch { step, items })).is_err() || failed {
            return;
        }
    }
}

/// A labeled training sample after the weak augmentation.
///
/// # Shapes
/// image `[3, S, S]` (ImageNet-normalised), labels and valid `[S, S]`, S = crop side.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct LabeledItem {
    pub image: Vec<f32>,
    pub labels: Vec<u8>,
    pub valid: Vec<u8>,
}

/// An unlabeled sample: its weak view, the strong view of it and the CutMix box drawn for
/// it (pasted from the batch's partner later, when pseudo-labels exist).
///
/// # Shapes
/// weak, strong `[3, S, S]` (normalised); valid, truth `[S, S]`; the RGB views `S × S`.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct UnlabeledItem {
    pub weak: Vec<f32>,
    pub strong: Vec<f32>,
    pub valid: Vec<u8>,
    pub cutmix: Option<super::augment::CutMixBox>,
    /// Ground truth when the pool has it (synthetic pools), for pseudo-label accuracy only.
    pub truth: Option<Vec<u8>>,
    pub weak_rgb: image::RgbImage,
    pub strong_rgb: image::RgbImage,
}

/// The labeled stream of a split: weak views, repeated and reshuffled up to
/// `config.epoch_len` samples per epoch.
pub fn labeled_stream(
    spec: Arc<super::DatasetSpec>,
    samples: Arc<Vec<super::SampleRef>>,
    augment: super::augment::AugmentConfig,
    config: LoaderConfig,
    keep: Keep,
) -> Prefetcher<LabeledItem> {
    let len = samples.len();
    Prefetcher::spawn_keeping(len, config, keep, move |i, rng| {
        let super::io::Sample { image, labels, .. } = super::io::read_sample(&spec, &samples[i])?;
        let view = super::augment::weak(&image, labels.as_ref(), &augment, rng);
        let image = if augment.labeled_strong {
            super::augment::strong(&view.image, &augment, rng)
        } else {
            view.image
        };
        Ok(LabeledItem {
            image: super::augment::normalize(&image),
            labels: view.labels.into_raw(),
            valid: view.valid.into_raw(),
        })
    })
}

/// The unlabeled stream of a tiled source: weak view, strong view and CutMix box per patch.
pub fn unlabeled_stream(
    spec: Arc<super::DatasetSpec>,
    source: Arc<super::source::TiledSource>,
    augment: super::augment::AugmentConfig,
    config: LoaderConfig,
    keep: Keep,
) -> Prefetcher<UnlabeledItem> {
    let len = source.patches.len();
    Prefetcher::spawn_keeping(len, config, keep, move |i, rng| {
        unlabeled_item(&spec, &source, &augment, i, rng)
    })
}

/// Patch `index` of `source` as an unlabeled sample: weak view, strong view, CutMix box.
pub fn unlabeled_item(
    spec: &super::DatasetSpec,
    source: &super::source::TiledSource,
    augment: &super::augment::AugmentConfig,
    index: usize,
    rng: &mut ChaCha8Rng,
) -> Result<UnlabeledItem> {
    let super::io::Sample {
        image,
        labels: truth,
        nodata,
    } = source.load(spec, index)?;
    let has_truth = truth.is_some();
    // Pixels without data travel through the weak view as IGNORE labels (over zeros when the
    // pool has no truth) and leave `valid` there: no pseudo-label is kept on them.
    let carried = match (truth, &nodata) {
        (truth, None) => truth,
        (truth, Some(nodata)) => {
            let mut labels =
                truth.unwrap_or_else(|| image::GrayImage::new(image.width(), image.height()));
            for (label, &missing) in labels.iter_mut().zip(nodata) {
                if missing {
                    *label = super::IGNORE;
                }
            }
            Some(labels)
        }
    };
    let view = super::augment::weak(&image, carried.as_ref(), augment, rng);
    let strong = super::augment::strong(&view.image, augment, rng);
    let cutmix = super::augment::CutMixBox::sample(augment.crop_px, augment, rng);
    let mut valid = view.valid.into_raw();
    if nodata.is_some() {
        for (v, &l) in valid.iter_mut().zip(view.labels.as_raw()) {
            if l == super::IGNORE {
                *v = 0;
            }
        }
    }
    Ok(UnlabeledItem {
        weak: super::augment::normalize(&view.image),
        strong: super::augment::normalize(&strong),
        valid,
        cutmix,
        truth: has_truth.then(|| view.labels.into_raw()),
        weak_rgb: view.image,
        strong_rgb: strong,
    })
}
