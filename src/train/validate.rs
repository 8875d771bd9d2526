//! Validation while training: every validated dataset scored on (the first images of) its
//! validation split in its own mode (whole, slide, resize), a few predictions kept as samples for the viewer.

use std::collections::BTreeMap;
use std::path::Path;

use burn::module::Module;
use burn::tensor::Device;

use super::batch::Dataset;
use super::config::TrainConfig;
use crate::data::palette::colorize;
use crate::error::Result;
use crate::eval::infer::DEFAULT_WINDOW_BATCH;
use crate::eval::{ConfusionMatrix, evaluate_split};
use crate::model::Segmentor;
use crate::run::samples::{SampleEntry, SampleKind, SampleRole, SampleWriter};
use crate::run::{MetricKey, Score};

/// Scores every validated dataset (`<dataset>/mIoU`, `/mF1`, `/OA`); adds the first
/// `config.val.sample_images` predictions of each to the step's samples.
pub fn validate(
    model: &Segmentor,
    datasets: &[Dataset],
    config: &TrainConfig,
    samples: &mut SampleWriter,
    device: &Device,
) -> Result<BTreeMap<MetricKey, f64>> {
    let eval_model = model.valid();
    let mut metrics = BTreeMap::new();
    for (d, dataset) in datasets.iter().enumerate() {
        if dataset.val.is_empty() {
            continue;
        }
        let n = config
            .val
            .max_images
            .unwrap_or(usize::MAX)
            .min(dataset.val.len());
        let spec = &dataset.spec;
        let matrix: ConfusionMatrix = evaluate_split(
            &eval_model,
            d,
            spec,
            &dataset.val[..n],
            dataset.val_mode,
            DEFAULT_WINDOW_BATCH,
            device,
            |scored| {
                if scored.index < config.val.sample_images {
                    let entry = SampleEntry {
                        image_id: stem(&scored.sample.image),
                        dataset: spec.name.clone(),
                        kind: SampleKind::Val,
                        ..SampleEntry::default()
                    };
                    let truth = colorize(scored.truth, &spec.palette);
                    let prediction = colorize(scored.prediction, &spec.palette);
                    samples.add(
                        entry,
                        &[
                            (SampleRole::Image, scored.image.into()),
                            (SampleRole::Truth, (&truth).into()),
                            (SampleRole::Prediction, (&prediction).into()),
                        ],
                    )?;
                }
                Ok(())
            },
        )?;
        let exclude = if config.val.exclude_background {
            spec.background.map(usize::from)
        } else {
            None
        };
        let summary = matrix.summary(exclude);
        let name = &spec.name;
        metrics.insert(MetricKey::score(name, Score::MIoU), summary.miou);
        metrics.insert(MetricKey::score(name, Score::MF1), summary.mf1);
        metrics.insert(MetricKey::score(name, Score::OA), summary.overall_accuracy);
    }
    Ok(metrics)
}

/// A file's name without folder and extension.
fn stem(path: &Path) -> String {
    path.file_stem().map_or_else(
        || path.display().to_string(),
        |s| s.to_string_lossy().into_owned(),
    )
}
