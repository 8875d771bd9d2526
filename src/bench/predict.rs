//! `s5 bench all`'s inference row: `s5 predict`'s sliding-window path (windows of the crop,
//! half-overlapping, in GPU batches) over a synthetic scene, in megapixels per second, in f32
//! and, where the adapter has `shader-f16`, in f16.

use std::time::Instant;

use burn::module::Module;
use burn::tensor::Device;
use serde::Serialize;

use crate::error::{Error, Result};
use crate::eval::infer::{DEFAULT_WINDOW_BATCH, InferMode, predict_bands};
use crate::model::half::{supports_f16, to_f16};
use crate::model::{Segmentor, SegmentorConfig};

/// Prediction speed at one precision.
#[derive(Debug, Clone, Serialize)]
pub struct PredictTiming {
    pub precision: &'static str,
    pub image_px: u32,
    pub window_px: u32,
    pub seconds: f64,
    pub mpx_per_s: f64,
}

/// Predicts a `image_px` square scene with windows of `window_px` every `window_px / 2`, once
/// untimed and once timed, per precision.
pub fn bench_predict(
    device: &Device,
    model: &SegmentorConfig,
    image_px: u32,
    window_px: u32,
) -> Result<Vec<PredictTiming>> {
    let (scene, _) = crate::data::synth::urban_tile(image_px, image_px, 3);
    let mode = InferMode::Slide {
        window_px,
        stride_px: (window_px / 2).max(1),
        flip: false,
    };
    let mut precisions = vec!["f32"];
    if supports_f16(device) {
        precisions.push("f16");
    }
    let mut out = Vec::new();
    for precision in precisions {
        let built = Segmentor::new(model, device).valid();
        let segmentor = if precision == "f16" {
            to_f16(built)
        } else {
            built
        };
        let run = || {
            predict_bands(
                &segmentor,
                0,
                &scene,
                mode,
                DEFAULT_WINDOW_BATCH,
                device,
                |_| Ok(()),
            )
        };
        run()?;
        let started = Instant::now();
        run()?;
        device
            .sync()
            .map_err(|e| Error::Execution(format!("device sync: {e}")))?;
        let seconds = started.elapsed().as_secs_f64();
        out.push(PredictTiming {
            precision,
            image_px,
            window_px,
            seconds,
            mpx_per_s: f64::from(image_px).powi(2) / 1e6 / seconds,
        });
    }
    Ok(out)
}
