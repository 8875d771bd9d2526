//! One FixMatch step of S4P (paper §3, "Semi-Supervised Pre-Training"), as the authors'
//! training code does it:
//!
//! 1. an eval-mode, no-grad forward on the weak views of the unlabeled batch and of its
//!    CutMix partner batch gives pseudo-labels, confidence and entropy (`pixel_stats`);
//! 2. each strong view gets its box pasted from the partner's strong view, and its
//!    pseudo-label, confidence and validity are mixed with the same box;
//! 3. the student (train mode) sees the labeled crops and the mixed strong views in one batch;
//! 4. `L_s` = cross-entropy over the labeled valid pixels; `L_u` = cross-entropy summed over
//!    mixed pixels with confidence ≥ τ, divided by the number of *valid* mixed pixels (not
//!    the confident ones); loss `(L_s + λ·L_u) / 2` (code) or `L_s + λ·L_u` (paper).

use burn::module::Module;
use burn::tensor::{Bool, Device, Int, Tensor, TensorData};

use super::config::{FixMatchSetup, LossForm};
use super::loss::cross_entropy_over;
use crate::data::IGNORE;
use crate::data::augment::CutMixBox;
use crate::data::loader::{LabeledItem, UnlabeledItem};
use crate::kernels::pixel_stats;
use crate::model::Segmentor;
use crate::reduce::total;

/// An unlabeled batch on the device the teacher runs on.
///
/// # Shapes
/// weak, strong `[B, 3, S, S]`; valid `[B, S, S]` (1 = real pixel, 0 = padding); boxes
/// `[B, S, S]` (1 inside the item's CutMix box, taken from the partner); truth `[B, S, S]`
/// with truth_valid `[B, S, S]` (1 where a ground truth exists).
#[derive(Debug, Clone)]
pub struct UnlabeledTensors {
    pub weak: Tensor<4>,
    pub strong: Tensor<4>,
    pub valid: Tensor<3>,
    pub boxes: Tensor<3>,
    pub truth: Tensor<3, Int>,
    pub truth_valid: Tensor<3>,
}

impl UnlabeledTensors {
    /// Uploads a batch of loader items of side `crop`.
    pub fn from_items(items: &[UnlabeledItem], crop: usize, device: &Device) -> Self {
        let b = items.len();
        let n = crop * crop;
        let mut weak = Vec::with_capacity(b * 3 * n);
        let mut strong = Vec::with_capacity(b * 3 * n);
        let mut valid = Vec::with_capacity(b * n);
        let mut boxes = vec![0.0f32; b * n];
        let mut truth = vec![0i32; b * n];
        let mut truth_valid = vec![0.0f32; b * n];
        for (i, item) in items.iter().enumerate() {
            weak.extend_from_slice(&item.weak);
            strong.extend_from_slice(&item.strong);
            valid.extend(item.valid.iter().map(|&v| f32::from(u8::from(v != 0))));
            if let Some(cut) = item.cutmix {
                fill_box(&mut boxes[i * n..(i + 1) * n], cut, crop);
            }
            if let Some(t) = &item.truth {
                for (p, &l) in t.iter().enumerate() {
                    if l != IGNORE {
                        truth[i * n + p] = i32::from(l);
                        truth_valid[i * n + p] = 1.0;
                    }
                }
            }
        }
        let f4 =
            |v: Vec<f32>| Tensor::<4>::from_data(TensorData::new(v, [b, 3, crop, crop]), device);
        let f3 = |v: Vec<f32>| Tensor::<3>::from_data(TensorData::new(v, [b, crop, crop]), device);
        Self {
            weak: f4(weak),
            strong: f4(strong),
            valid: f3(valid),
            boxes: f3(boxes),
            truth: Tensor::from_data(TensorData::new(truth, [b, crop, crop]), device),
            truth_valid: f3(truth_valid),
        }
    }
}

/// Sets the pixels of `cut` in a `crop × crop` plane to 1.
pub fn fill_box(plane: &mut [f32], cut: CutMixBox, crop: usize) {
    for y in cut.y_px as usize..(cut.y_px + cut.height_px) as usize {
        let row = y * crop;
        plane[row + cut.x_px as usize..row + (cut.x_px + cut.width_px) as usize].fill(1.0);
    }
}

/// The denominators of a step's losses, counted on the CPU over the *whole* batch: a share
/// of the batch (data parallelism) divides by these, so the shares' losses add up to the
/// batch's.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Normalizers {
    /// Valid labeled pixels (`L_s`).
    pub labeled_px: f64,
    /// Valid pixels of the cut-mixed unlabeled views (`L_u`).
    pub mixed_px: f64,
}

impl Normalizers {
    /// Counts a batch: labeled items, unlabeled items and their CutMix partners (pair i is
    /// `u[i]`, `partner[i]`).
    pub fn of(labeled: &[LabeledItem], u: &[UnlabeledItem], partner: &[UnlabeledItem]) -> Self {
        Self {
            labeled_px: super::batch::labeled_valid_px(labeled),
            mixed_px: mixed_valid_px(u, partner),
        }
    }

    /// Each rank's counts (of its own crops of the batch) summed over the ranks, in rank
    /// order: the whole batch's. Counts are whole numbers, exact in f64.
    pub fn over_ranks(self, world: &crate::distributed::World) -> Self {
        let mut counts = [self.labeled_px, self.mixed_px];
        world.sum_f64(&mut counts);
        Self {
            labeled_px: counts[0],
            mixed_px: counts[1],
        }
    }
}

/// Valid pixels after CutMix: the partner's validity inside each item's box, the item's own
/// outside it.
pub fn mixed_valid_px(u: &[UnlabeledItem], partner: &[UnlabeledItem]) -> f64 {
    u.iter()
        .zip(partner)
        .map(|(item, other)| {
            let mut valid = item.valid.clone();
            if let Some(cut) = item.cutmix {
                let side = (valid.len() as f64).sqrt() as u32;
                cut.paste(&mut valid, &other.valid, side, 1);
            }
            valid.iter().filter(|&&v| v != 0).count()
        })
        .sum::<usize>() as f64
}

/// Pixel counts of one step (or share) on the teacher's device, for the logged ratios.
///
/// # Shapes
/// every field `[1]`.
#[derive(Debug, Clone)]
pub struct PseudoLabelCounts {
    /// Valid mixed pixels.
    pub valid: Tensor<1>,
    /// ... of which confidence ≥ τ.
    pub confident: Tensor<1>,
    /// ... of which have a ground truth (synthetic pools).
    pub with_truth: Tensor<1>,
    /// ... of which the pseudo-label is right.
    pub correct: Tensor<1>,
    /// Confident pixels with a ground truth, and of those the right ones.
    pub confident_with_truth: Tensor<1>,
    pub correct_confident: Tensor<1>,
}

impl PseudoLabelCounts {
    /// The names under which [`PseudoLabelCounts::read`] returns the counts.
    pub const NAMES: [&'static str; 6] = [
        "px/valid",
        "px/confident",
        "px/with_truth",
        "px/correct",
        "px/confident_with_truth",
        "px/correct_confident",
    ];

    /// All six counts in one read from the GPU, named by [`PseudoLabelCounts::NAMES`].
    pub fn read(self) -> crate::error::Result<Vec<(String, f64)>> {
        let values = super::loss::read_floats(Tensor::cat(
            vec![
                self.valid,
                self.confident,
                self.with_truth,
                self.correct,
                self.confident_with_truth,
                self.correct_confident,
            ],
            0,
        ))?;
        Ok(Self::NAMES
            .iter()
            .zip(values)
            .map(|(name, v)| (name.to_string(), f64::from(v)))
            .collect())
    }
}

/// What one step computed. Losses live on the student's (autodiff) device; the counts and
/// entropy on the teacher's.
#[derive(Debug, Clone)]
pub struct FixMatchOutput {
    pub loss: Tensor<1>,
    pub supervised: Tensor<1>,
    pub unsupervised: Tensor<1>,
    /// Pixel counts for the mask ratio (confident / valid) and pseudo-label accuracies.
    pub counts: PseudoLabelCounts,
    /// Per-image mean entropy of the unlabeled weak views `[B]`.
    pub entropy: Tensor<1>,
}

/// `from_partner` where `mask` is set, `own` elsewhere.
fn mix<const D: usize>(
    mask: Tensor<D, Bool>,
    from_partner: Tensor<D>,
    own: Tensor<D>,
) -> Tensor<D> {
    own.mask_where(mask, from_partner)
}

/// One FixMatch step's losses (or one share's, see [`super::parallel`]). The teacher is the
/// eval-mode snapshot of `student` (`student.valid()`, as in the authors' code); `u` and
/// `partner` live on its plain device; labeled tensors on the student's (autodiff) device;
/// `norms` count the whole batch.
///
/// # Shapes
/// labeled images `[Bl, 3, S, S]`, labels `[Bl, S, S]`, valid `[Bl, S, S]`; `u`, `partner`
/// of equal batch size Bu.
pub fn fixmatch_step(
    student: &Segmentor,
    labeled: (Tensor<4>, Tensor<3, Int>, Tensor<3>),
    u: &UnlabeledTensors,
    partner: &UnlabeledTensors,
    setup: &FixMatchSetup,
    background: Option<usize>,
    norms: Normalizers,
) -> FixMatchOutput {
    let (images_l, labels_l, valid_l) = labeled;
    let student_device = images_l.device();
    let bu = u.weak.dims()[0];
    let Mixed {
        labels: labels_mix,
        confidence: conf_mix,
        valid: valid_mix,
        strong: strong_mix,
        truth: truth_mix,
        truth_valid: truth_valid_mix,
        entropy,
    } = teacher_mix(&student.valid(), u, partner, background);

    // Statistics (teacher device).
    let confident = conf_mix.clone().greater_equal_elem(setup.threshold).float();
    let weight = confident.clone() * valid_mix.clone();
    let correct = labels_mix.clone().equal(truth_mix).float() * truth_valid_mix.clone();
    let with_truth = valid_mix.clone() * truth_valid_mix;
    let counts = PseudoLabelCounts {
        valid: total(valid_mix.clone()),
        confident: total(weight.clone()),
        with_truth: total(with_truth.clone()),
        correct: total(correct.clone() * valid_mix),
        confident_with_truth: total(with_truth * confident),
        correct_confident: total(correct * weight.clone()),
    };

    // 3. The student on labeled + mixed strong views, in one batch.
    let bl = images_l.dims()[0];
    let input = Tensor::cat(vec![images_l, strong_mix.to_device(&student_device)], 0);
    let logits = student.forward(input, 0);
    let logits_l = logits.clone().narrow(0, 0, bl);
    let logits_u = logits.narrow(0, bl, bu);

    // 4. Losses.
    let supervised = cross_entropy_over(logits_l, labels_l, valid_l, norms.labeled_px);
    let unsupervised = cross_entropy_over(
        logits_u,
        labels_mix.to_device(&student_device),
        weight.to_device(&student_device),
        norms.mixed_px,
    );
    let lambda = setup.lambda;
    let loss = match setup.loss_form {
        LossForm::Code => (supervised.clone() + unsupervised.clone() * lambda) / 2.0,
        LossForm::Paper => supervised.clone() + unsupervised.clone() * lambda,
    };
    FixMatchOutput {
        loss,
        supervised,
        unsupervised,
        counts,
        entropy,
    }
}

/// The teacher's view of an unlabeled batch after CutMix: pseudo-labels, confidence,
/// validity, strong views and ground truth, each mixed with the items' boxes.
///
/// # Shapes
/// labels, confidence, valid, truth, truth_valid `[B, S, S]`; strong `[B, 3, S, S]`;
/// entropy `[B]` (of the unmixed weak views).
#[derive(Debug, Clone)]
pub struct Mixed {
    pub labels: Tensor<3, Int>,
    pub confidence: Tensor<3>,
    pub valid: Tensor<3>,
    pub strong: Tensor<4>,
    pub truth: Tensor<3, Int>,
    pub truth_valid: Tensor<3>,
    pub entropy: Tensor<1>,
}

/// Steps 1 and 2: pseudo-labels from an eval-mode forward on both weak batches, then
/// everything mixed with the boxes of `u`'s items.
pub fn teacher_mix(
    teacher: &Segmentor,
    u: &UnlabeledTensors,
    partner: &UnlabeledTensors,
    background: Option<usize>,
) -> Mixed {
    let bu = u.weak.dims()[0];
    let weak = Tensor::cat(vec![u.weak.clone(), partner.weak.clone()], 0);
    let valid = Tensor::cat(vec![u.valid.clone(), partner.valid.clone()], 0);
    let stats = pixel_stats(
        teacher.forward(weak, 0),
        Some(valid.greater_elem(0.5)),
        background,
    );
    let in_box = u.boxes.clone().greater_elem(0.5);
    let labels = stats
        .labels
        .clone()
        .narrow(0, 0, bu)
        .mask_where(in_box.clone(), stats.labels.narrow(0, bu, bu));
    let confidence = mix(
        in_box.clone(),
        stats.confidence.clone().narrow(0, bu, bu),
        stats.confidence.narrow(0, 0, bu),
    );
    let valid = mix(in_box.clone(), partner.valid.clone(), u.valid.clone());
    let [_, c, h, w] = u.strong.dims();
    let in_box4 = in_box.clone().reshape([bu, 1, h, w]).expand([bu, c, h, w]);
    let strong = mix(in_box4, partner.strong.clone(), u.strong.clone());
    let truth = u
        .truth
        .clone()
        .mask_where(in_box.clone(), partner.truth.clone());
    let truth_valid = mix(in_box, partner.truth_valid.clone(), u.truth_valid.clone());
    Mixed {
        labels,
        confidence,
        valid,
        strong,
        truth,
        truth_valid,
        entropy: stats.entropy.narrow(0, 0, bu),
    }
}
