//! How `s5 eval` and `s5 predict` apply a model to images: the flags of an [`InferMode`].

use s5::eval::InferMode;

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum Mode {
    /// The whole image at once.
    Whole,
    /// Resized so its long side is --resize-px, then resized back.
    Resize,
    /// Sliding windows of --window-px every --stride-px, overlapping logits averaged.
    Slide,
}

#[derive(Debug, clap::Args)]
pub struct InferArgs {
    #[arg(long, value_enum, default_value_t = Mode::Slide)]
    mode: Mode,
    /// Window side (slide mode); best at the training crop.
    #[arg(long, default_value_t = 512)]
    window_px: u32,
    /// Window step (slide mode).
    #[arg(long, default_value_t = 256)]
    stride_px: u32,
    /// Long side to resize to (resize mode).
    #[arg(long, default_value_t = 512)]
    resize_px: u32,
    /// Also predict the mirrored image and average.
    #[arg(long)]
    flip: bool,
    /// Windows per GPU batch (slide mode): GPU memory is bounded by this.
    #[arg(long, default_value_t = s5::eval::infer::DEFAULT_WINDOW_BATCH)]
    pub window_batch: usize,
}

impl InferArgs {
    pub fn mode(&self) -> anyhow::Result<InferMode> {
        let mode = match self.mode {
            Mode::Whole => InferMode::Whole { flip: self.flip },
            Mode::Resize => InferMode::Resize {
                long_side_px: self.resize_px,
                flip: self.flip,
            },
            Mode::Slide => InferMode::Slide {
                window_px: self.window_px,
                stride_px: self.stride_px,
                flip: self.flip,
            },
        };
        mode.validate().map_err(|e| anyhow::anyhow!(e))?;
        Ok(mode)
    }
}

/// The model in f16 when `f16` (`--f16`), after checking that the adapter computes in it.
pub fn precision(
    model: s5::model::Segmentor,
    f16: bool,
    gpu: &s5::device::Gpu,
) -> anyhow::Result<s5::model::Segmentor> {
    Ok(s5::model::half::precision(
        model,
        f16,
        &gpu.device,
        &gpu.adapter.name,
    )?)
}
