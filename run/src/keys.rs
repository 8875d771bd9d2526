//! The names under which numbers appear in `events.jsonl` and sample indexes, defined once
//! for the writers (trainer, recipes) and the readers (viewer, scripts).

/// The optimised loss of a step (`losses`).
pub const LOSS: &str = "loss";
/// FixMatch's supervised cross-entropy (`losses`).
pub const L_S: &str = "L_s";
/// FixMatch's unsupervised cross-entropy over confident pixels (`losses`).
pub const L_U: &str = "L_u";
/// Global gradient norm before clipping (a step's extra field).
pub const GRAD_NORM: &str = "grad_norm";
/// Bytes the main GPU's allocator holds after a step (a step's extra field): its high-water
/// mark, since the allocator keeps every page it took until asked to free them.
pub const DEVICE_MEMORY_BYTES: &str = "device_memory_bytes";
/// Share of valid unlabeled pixels with confidence ≥ τ.
pub const MASK_RATIO: &str = "mask_ratio";
/// The confidence threshold τ a sampled mask was made with (a sample entry's stat).
pub const TAU: &str = "tau";
/// Mean pixel entropy of the unlabeled batch (paper Eq. 1).
pub const MEAN_ENTROPY: &str = "mean_entropy";
/// Pseudo-label accuracy over confident pixels with ground truth.
pub const PSEUDO_LABEL_ACC_CONFIDENT: &str = "pseudo_label_acc_confident";
/// Pseudo-label accuracy over all pixels with ground truth.
pub const PSEUDO_LABEL_ACC_ALL: &str = "pseudo_label_acc_all";

/// The mean over the validated datasets of each one's chosen metric (a validation's
/// `metrics`; the best checkpoint is the one where it was highest).
pub const VAL_MEAN: &str = "val_mean";

/// Suffix of a dataset's validation mIoU (`<dataset>/mIoU`).
pub const MIOU: &str = "mIoU";
/// Suffix of a dataset's validation mean F1.
pub const MF1: &str = "mF1";
/// Suffix of a dataset's validation overall accuracy.
pub const OA: &str = "OA";

/// `<dataset>/<metric>`: a per-dataset key (validation metrics, per-dataset losses).
pub fn per_dataset(dataset: &str, metric: &str) -> String {
    format!("{dataset}/{metric}")
}

/// The per-dataset loss key (`loss/<dataset>`) of multi-dataset runs.
pub fn dataset_loss(dataset: &str) -> String {
    format!("{LOSS}/{dataset}")
}

/// Whether a dataset's loss counted at a step (1) or its `start_step` gated it (0).
pub fn dataset_gate(dataset: &str) -> String {
    format!("gate/{dataset}")
}

/// Passes over a dataset's training split so far (steps × batch / images).
pub fn dataset_passes(dataset: &str) -> String {
    format!("passes/{dataset}")
}
