//! `summary.md`: per stage its time and key numbers, the comparison with the baseline, where
//! to look next.

use std::path::Path;

use super::preset::Preset;
use crate::data::synth::FEW_LABELED;
use crate::run::demo::{DemoStage, DemoState, StageResult, TrainResult};
use crate::run::keys::{self, MetricKey, Score};

/// `1 min 5 s`, `12.0 s`.
pub fn duration(seconds: f64) -> String {
    let s = seconds.round() as u64;
    if s >= 60 {
        format!("{} min {} s", s / 60, s % 60)
    } else {
        format!("{seconds:.1} s")
    }
}

/// A share as a percentage with one decimal, `–` where it is not a number.
fn pct(v: f64) -> String {
    if v.is_finite() {
        format!("{:.1}", 100.0 * v)
    } else {
        "–".to_string()
    }
}

/// The summary of the demo in `shown` (the folder as the user wrote it).
pub fn summary(preset: &Preset, state: &DemoState, shown: &Path) -> String {
    let trained = |stage: DemoStage, key: &MetricKey| -> f64 {
        state.trained(stage).map_or(f64::NAN, |t| t.val_or_nan(key))
    };
    let urban = |score: Score| MetricKey::score("synth-urban", score);
    let total: f64 = state.stages.values().map(|s| s.seconds).sum();
    let mut lines = vec![
        format!(
            "# s5 demo (preset `{}`{}), {} in all",
            state.preset,
            state.training.describe(),
            duration(total)
        ),
        String::new(),
        "| stage | time | result |".into(),
        "|---|---|---|".into(),
    ];
    for stage in DemoStage::ALL {
        let seconds = state.stages.get(&stage).map_or(0.0, |s| s.seconds);
        let result = match state.result(stage) {
            None => String::new(),
            Some(StageResult::Data(d)) => format!(
                "3 labeled domains of {} + {} tiles ({} px; urban: its `{}` split labeled), pool \
                 of {} images",
                d.train_tiles_per_domain,
                d.val_tiles_per_domain,
                d.tile_px,
                FEW_LABELED,
                d.pool_images
            ),
            Some(StageResult::Curation(c)) => format!(
                "kept {} of {} patches; out-of-distribution share {} % in the pool, **{} %** \
                 kept ({} patches below a similarity floor)",
                c.selected_patches,
                c.pool_patches,
                pct(c.pool_ood_share),
                pct(c.selected_ood_share),
                c.below_floor
            ),
            Some(StageResult::Train(t)) => train_result(stage, t),
        };
        lines.push(format!(
            "| {} | {} | {result} |",
            stage.title(),
            duration(seconds)
        ));
    }
    let (s5_urban, base_urban) = (
        trained(DemoStage::MoeMdf, &urban(Score::MIoU)),
        trained(DemoStage::Baseline, &urban(Score::MIoU)),
    );
    lines.push(String::new());
    lines.push(format!(
        "Labeled domain (urban, trained on its `{}` split; validation mIoU) after {} fine-tuning \
         steps: **S4P + MoE-MDF {}** against {} for the supervised-only baseline (the same \
         fine-tuning without pre-training), {:+.1} points. The S4P chain trained longer in all: \
         the seed model (the same labels, {} supervised steps) scores {} before S4P and {} \
         after it.",
        FEW_LABELED,
        preset.finetune_steps,
        pct(s5_urban),
        pct(base_urban),
        100.0 * (s5_urban - base_urban),
        preset.seed_steps,
        pct(trained(DemoStage::Seed, &urban(Score::MIoU))),
        pct(trained(DemoStage::S4p, &urban(Score::MIoU))),
    ));
    lines.push(String::new());
    lines.push(format!(
        "Runs in `{}`: `1-seed`, `2-curation`, `3-s4p`, `4-moe-mdf`, `5-baseline`; pictures in \
         `summary.png` (rows: domains; columns: image, truth, S4P + MoE-MDF, baseline). Watch \
         them: `cargo run --release -p s5-viewer -- {}`. One dataset of the MoE-MDF model as a \
         plain model: `s5 finetune export --model {}/4-moe-mdf/checkpoints/best --dataset \
         synth-urban --out urban-model`.",
        shown.display(),
        shown.display(),
        shown.display(),
    ));
    lines.join("\n")
}

/// A training stage's line; a mixed-precision stage's ends with its skipped steps.
fn train_result(stage: DemoStage, t: &TrainResult) -> String {
    let scores = stage_scores(stage, t);
    match t.skipped_steps {
        Some(skipped) => format!(
            "{scores}; {skipped} of {} steps skipped (loss scale)",
            t.steps
        ),
        None => scores,
    }
}

/// A training stage's scores.
fn stage_scores(stage: DemoStage, t: &TrainResult) -> String {
    let metric = |dataset: &str, score: Score| pct(t.val_or_nan(&MetricKey::score(dataset, score)));
    match stage {
        DemoStage::S4p => {
            let mut text = format!(
                "urban mIoU {}; τ-mask {} % of the unlabeled pixels at the end",
                metric("synth-urban", Score::MIoU),
                pct(t.mask_ratio.unwrap_or(f64::NAN)),
            );
            if let Some(right) = t.pseudo_label_acc_confident {
                text += &format!(", pseudo-labels right on {} % of them", pct(right));
            }
            text
        }
        DemoStage::MoeMdf | DemoStage::Baseline => format!(
            "urban mF1 {}, rural mIoU {}, suburb mIoU {} (mean {})",
            metric("synth-urban", Score::MF1),
            metric("synth-rural", Score::MIoU),
            metric("synth-suburb", Score::MIoU),
            pct(t.val_or_nan(&keys::VAL_MEAN)),
        ),
        _ => format!("urban mIoU {}", metric("synth-urban", Score::MIoU)),
    }
}
