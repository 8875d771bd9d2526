//! Parameter counts from a configuration alone, so ViT-L and ViT-H can be counted without
//! allocating them; a test checks the formulas against models built for real.

use serde::Serialize;

use super::config::{FfnKind, SegmentorConfig};

/// Parameters per part of a segmentor.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ParamCount {
    /// ViT without the dataset experts (patch embedding, cls token, position table, blocks
    /// with their shared FFN part).
    pub backbone: usize,
    /// The dataset experts of every FFN-MoE block.
    pub experts: usize,
    pub neck: usize,
    /// Each dataset's UperNet decoder with its 1×1 head.
    pub decoders: Vec<usize>,
}

impl ParamCount {
    pub fn total(&self) -> usize {
        self.backbone + self.experts + self.neck + self.decoders.iter().sum::<usize>()
    }
}

fn linear(i: usize, o: usize) -> usize {
    i * o + o
}

/// Parameters of one dense ViT block (two LayerNorms, attention, FFN).
pub fn block_params(v: &super::config::VitConfig) -> usize {
    let (d, f) = (v.dim, v.hidden_dim());
    2 * d + linear(d, 3 * d) + linear(d, d) + 2 * d + linear(d, f) + linear(f, d)
}

/// Counts without building: must equal `Module::num_params` of the built model.
pub fn count_params(cfg: &SegmentorConfig) -> ParamCount {
    let v = &cfg.backbone;
    let (d, f) = (v.dim, v.hidden_dim());
    let patch = 3 * v.patch_px * v.patch_px * d + d;
    let tokens = 1 + v.pos_grid() * v.pos_grid();
    let (fc2_shared, experts_per_block) = match v.ffn {
        FfnKind::Dense => (linear(f, d), 0),
        FfnKind::Moe {
            datasets,
            expert_dim,
        } => (linear(f, d - expert_dim), datasets * linear(f, expert_dim)),
    };
    let block = block_params(v) - linear(f, d) + fc2_shared;
    let backbone = patch + d + tokens * d + v.depth * block;
    // Neck: 4x = deconv, LayerNorm, GELU, deconv; 2x = deconv; 1x, 0.5x parameter-free.
    let deconv = d * d * 4 + d;
    let neck = 3 * deconv + 2 * d;
    // UperNet: conv (no bias) + BatchNorm (2 per channel) blocks.
    let c = cfg.decoder_channels;
    let conv_bn = |i: usize, k: usize| i * c * k * k + 2 * c;
    let decoder = cfg.pool_scales.len() * conv_bn(d, 1)
        + conv_bn(d + cfg.pool_scales.len() * c, 3)
        + 3 * conv_bn(d, 1)
        + 3 * conv_bn(c, 3)
        + conv_bn(4 * c, 3);
    ParamCount {
        backbone,
        experts: v.depth * experts_per_block,
        neck,
        decoders: cfg.classes.iter().map(|&k| decoder + c * k + k).collect(),
    }
}
