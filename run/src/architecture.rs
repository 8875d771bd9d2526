//! The segmentor's architecture as plain data, with the paper's named models: what a
//! checkpoint card records (so it belongs to the run contract), what `s5::model` builds.
//!
//! References: Lv et al., "S5: Scalable Semi-Supervised Semantic Segmentation in Remote
//! Sensing", Table 1 (parameter counts of ViT-B/L/H, single-dataset and MoE-MDF).

use serde::{Deserialize, Serialize};

/// The FFN activation: the paper says ReLU, the authors' code uses GELU (the default).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub enum Activation {
    #[default]
    Gelu,
    Relu,
}

/// The base of the paper's α = P / 1024: its Table 3's parameter counts fit P = 128, 256,
/// 512 on ViT-B for α = 1/8, 1/4, 1/2 (not P / D, with D = 768).
pub const ALPHA_BASE: usize = 1024;

/// Dense FFN, or FFN-MoE with `expert_dim` (P) of the block's `dim` output columns per
/// dataset expert and the rest shared.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum FfnKind {
    Dense,
    Moe { datasets: usize, expert_dim: usize },
}

/// A plain ViT (patch 16, MLP ratio 4, qkv bias, cls token kept in the sequence but not in
/// the outputs, no final norm).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VitConfig {
    pub dim: usize,
    pub depth: usize,
    pub heads: usize,
    pub patch_px: usize,
    pub mlp_ratio: usize,
    /// Side the position table is stored for (resized to every input).
    pub pos_grid_px: usize,
    pub drop_path: f64,
    /// Blocks (0-based) whose outputs feed the neck.
    pub feature_blocks: [usize; 4],
    pub ffn: FfnKind,
    pub activation: Activation,
}

impl VitConfig {
    fn preset(dim: usize, depth: usize, heads: usize, feature_blocks: [usize; 4]) -> Self {
        Self {
            dim,
            depth,
            heads,
            patch_px: 16,
            mlp_ratio: 4,
            pos_grid_px: 512,
            drop_path: 0.1,
            feature_blocks,
            ffn: FfnKind::Dense,
            activation: Activation::Gelu,
        }
    }

    /// 192 / 12 / 3, for tests and small machines.
    pub fn vit_tiny() -> Self {
        Self::preset(192, 12, 3, [3, 5, 7, 11])
    }

    /// 384 / 12 / 6.
    pub fn vit_small() -> Self {
        Self::preset(384, 12, 6, [3, 5, 7, 11])
    }

    /// 768 / 12 / 12 (paper).
    pub fn vit_base() -> Self {
        Self::preset(768, 12, 12, [3, 5, 7, 11])
    }

    /// 1024 / 24 / 16 (paper).
    pub fn vit_large() -> Self {
        Self::preset(1024, 24, 16, [7, 11, 15, 23])
    }

    /// 1280 / 32 / 16 (paper).
    pub fn vit_huge() -> Self {
        Self::preset(1280, 32, 16, [15, 23, 27, 31])
    }

    /// A preset by name: `vit-t`, `vit-s`, `vit-b`, `vit-l`, `vit-h` (or `tiny` ... `huge`).
    pub fn by_name(name: &str) -> Option<Self> {
        Some(match name.to_ascii_lowercase().as_str() {
            "vit-t" | "tiny" | "vit-tiny" => Self::vit_tiny(),
            "vit-s" | "small" | "vit-small" => Self::vit_small(),
            "vit-b" | "base" | "vit-base" => Self::vit_base(),
            "vit-l" | "large" | "vit-large" => Self::vit_large(),
            "vit-h" | "huge" | "vit-huge" => Self::vit_huge(),
            _ => return None,
        })
    }

    /// The same backbone with FFN-MoE blocks for `datasets` datasets, P = `expert_dim`.
    pub fn with_moe(mut self, datasets: usize, expert_dim: usize) -> Self {
        self.ffn = FfnKind::Moe {
            datasets,
            expert_dim,
        };
        self
    }

    /// P from the paper's α (Table 3): α = P / [`ALPHA_BASE`], whatever the backbone, so
    /// α = 1/8, 1/4, 1/2 are P = 128, 256, 512, the widths whose parameter counts Table 3
    /// prints for ViT-B (146.2, 160.4, 188.7 M). Rounded to a multiple of 4 when possible.
    /// The result may not fit a narrow backbone (P must stay below `dim`): callers check.
    pub fn expert_dim_for_alpha(alpha: f64) -> usize {
        let p = (ALPHA_BASE as f64 * alpha).round() as usize;
        if p >= 4 { p / 4 * 4 } else { p.max(1) }
    }

    pub fn hidden_dim(&self) -> usize {
        self.dim * self.mlp_ratio
    }

    /// Patches per side of the stored position table.
    pub fn pos_grid(&self) -> usize {
        self.pos_grid_px / self.patch_px
    }
}

/// Backbone + neck + one decoder per dataset.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SegmentorConfig {
    pub backbone: VitConfig,
    /// Classes per dataset, in dataset-id order: one UperNet decoder and head each.
    pub classes: Vec<usize>,
    /// UperNet channels (256 in the paper).
    pub decoder_channels: usize,
    pub pool_scales: [usize; 4],
    pub head_dropout: f64,
    /// The activation after each of the decoder's BatchNorms: ReLU, as UperNet (mmseg's
    /// `act_cfg`); GELU gives a decoder whose gradient is continuous in its inputs.
    #[serde(default = "relu")]
    pub decoder_activation: Activation,
}

fn relu() -> Activation {
    Activation::Relu
}

impl SegmentorConfig {
    pub fn new(backbone: VitConfig, classes: Vec<usize>) -> Self {
        Self {
            backbone,
            classes,
            decoder_channels: 256,
            pool_scales: [1, 2, 3, 6],
            head_dropout: 0.1,
            decoder_activation: Activation::Relu,
        }
    }
}

/// A model of the paper's Table 1 and its published parameter count.
#[derive(Debug, Clone, PartialEq)]
pub struct PaperModel {
    pub name: &'static str,
    pub config: SegmentorConfig,
    /// Table 1's count, in millions.
    pub paper_params_m: f64,
}

/// Classes of the single-dataset models in Table 1: iSAID's 16.
pub const PAPER_SINGLE_CLASSES: usize = 16;
/// Classes of the four MoE-MDF datasets in Table 1: Vaihingen, Potsdam, LoveDA, OpenEarthMap.
pub const PAPER_MDF_CLASSES: [usize; 4] = [5, 5, 7, 9];
/// The width P of each dataset expert in the paper's MoE-MDF models.
pub const PAPER_EXPERT_DIM: usize = 256;

impl SegmentorConfig {
    /// A single-dataset model as in Table 1 (iSAID's 16 classes).
    fn paper_single(backbone: VitConfig) -> Self {
        Self::new(backbone, vec![PAPER_SINGLE_CLASSES])
    }

    /// An MoE-MDF model as in Table 1: four datasets, P = 256.
    fn paper_mdf(backbone: VitConfig) -> Self {
        let classes = PAPER_MDF_CLASSES.to_vec();
        Self::new(backbone.with_moe(classes.len(), PAPER_EXPERT_DIM), classes)
    }

    /// ViT-B + UperNet, one dataset (Table 1: 103.2 M).
    pub fn vit_b() -> Self {
        Self::paper_single(VitConfig::vit_base())
    }

    /// ViT-B MoE-MDF, four datasets (Table 1: 160.4 M).
    pub fn vit_b_moe_mdf() -> Self {
        Self::paper_mdf(VitConfig::vit_base())
    }

    /// ViT-L + UperNet, one dataset (Table 1: 327.4 M).
    pub fn vit_l() -> Self {
        Self::paper_single(VitConfig::vit_large())
    }

    /// ViT-L MoE-MDF, four datasets (Table 1: 435.0 M).
    pub fn vit_l_moe_mdf() -> Self {
        Self::paper_mdf(VitConfig::vit_large())
    }

    /// ViT-H + UperNet, one dataset (Table 1: 663.4 M).
    pub fn vit_h() -> Self {
        Self::paper_single(VitConfig::vit_huge())
    }

    /// ViT-H MoE-MDF, four datasets (Table 1: 824.5 M).
    pub fn vit_h_moe_mdf() -> Self {
        Self::paper_mdf(VitConfig::vit_huge())
    }
}

/// The six models of Table 1 with the paper's counts.
pub fn paper_models() -> Vec<PaperModel> {
    let model = |name, config, paper_params_m| PaperModel {
        name,
        config,
        paper_params_m,
    };
    vec![
        model("ViT-B", SegmentorConfig::vit_b(), 103.2),
        model("ViT-B MoE-MDF", SegmentorConfig::vit_b_moe_mdf(), 160.4),
        model("ViT-L", SegmentorConfig::vit_l(), 327.4),
        model("ViT-L MoE-MDF", SegmentorConfig::vit_l_moe_mdf(), 435.0),
        model("ViT-H", SegmentorConfig::vit_h(), 663.4),
        model("ViT-H MoE-MDF", SegmentorConfig::vit_h_moe_mdf(), 824.5),
    ]
}
