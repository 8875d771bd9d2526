//! The demo's presets: how large each stage is, one RON file each in `assets/demo/`
//! (built into s5, so a clone needs nothing else).

use serde::{Deserialize, Serialize};

use crate::check::{at_least_one, positive, probability};
use crate::data::synth::SynthConfig;
use crate::error::{Error, Result};
use crate::model::VitConfig;

/// A preset by name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PresetName {
    /// A few steps per stage on a few 64 px tiles: for tests.
    Micro,
    /// About 10 minutes on two CPU cores with lavapipe.
    Tiny,
    /// ViT-S at 256 px, for a real GPU.
    Small,
    /// ViT-B at 256 px, for a real GPU.
    Base,
}

impl PresetName {
    pub const ALL: [PresetName; 4] = [
        PresetName::Micro,
        PresetName::Tiny,
        PresetName::Small,
        PresetName::Base,
    ];

    /// The preset's RON text, as shipped in `assets/demo/`.
    pub fn source(self) -> &'static str {
        match self {
            PresetName::Micro => include_str!("../../assets/demo/micro.ron"),
            PresetName::Tiny => include_str!("../../assets/demo/tiny.ron"),
            PresetName::Small => include_str!("../../assets/demo/small.ron"),
            PresetName::Base => include_str!("../../assets/demo/base.ron"),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            PresetName::Micro => "micro",
            PresetName::Tiny => "tiny",
            PresetName::Small => "small",
            PresetName::Base => "base",
        }
    }

    /// The preset, parsed and checked.
    pub fn load(self) -> Result<Preset> {
        let file = format!("assets/demo/{}.ron", self.as_str());
        let preset: Preset = ron::from_str(self.source()).map_err(|e| Error::ConfigFile {
            path: file.clone().into(),
            reason: e.to_string(),
        })?;
        preset.check().map_err(|e| match e {
            Error::InvalidConfig { error, .. } => Error::InvalidConfig {
                path: Some(file.clone().into()),
                error,
            },
            other => other,
        })?;
        if preset.name != self.as_str() {
            return Err(Error::ConfigFile {
                path: file.into(),
                reason: format!("names itself `{}`", preset.name),
            });
        }
        Ok(preset)
    }
}

/// Everything a preset decides.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Preset {
    pub name: String,
    /// The synthetic data (`s5 synth`'s settings).
    pub synth: SynthConfig,
    pub backbone: VitConfig,
    pub decoder_channels: usize,
    /// Training crops and their scale range.
    pub crop_px: u32,
    pub scale_range: (f32, f32),
    /// Labeled and (S4P) unlabeled images per step.
    pub batch: usize,
    pub unlabeled_batch: usize,
    /// Steps of the seed, S4P and fine-tuning stages.
    pub seed_steps: u64,
    pub s4p_steps: u64,
    pub finetune_steps: u64,
    /// Validate every this many steps (0: at the end only).
    pub val_every: u64,
    pub lr: f64,
    pub finetune_lr: f64,
    /// Curation: patch side, prototypes, share of the pool's patches kept.
    pub patch_px: u32,
    pub clusters: usize,
    pub keep_share: f64,
    /// P of MoE-MDF.
    pub expert_dim: usize,
}

impl Preset {
    /// Checks what the stages' own checks would find only later.
    pub fn check(&self) -> Result<()> {
        self.synth.validate()?;
        at_least_one("decoder_channels", self.decoder_channels as u64)?;
        at_least_one("crop_px", self.crop_px)?;
        at_least_one("batch", self.batch as u64)?;
        at_least_one("unlabeled_batch", self.unlabeled_batch as u64)?;
        for (field, steps) in [
            ("seed_steps", self.seed_steps),
            ("s4p_steps", self.s4p_steps),
            ("finetune_steps", self.finetune_steps),
        ] {
            at_least_one(field, steps)?;
        }
        positive("lr", self.lr)?;
        positive("finetune_lr", self.finetune_lr)?;
        at_least_one("patch_px", self.patch_px)?;
        at_least_one("clusters", self.clusters as u64)?;
        probability("keep_share", self.keep_share)?;
        at_least_one("expert_dim", self.expert_dim as u64)?;
        Ok(())
    }

    /// B_u: the share `keep_share` of the pool's patches (at least 1).
    pub fn budget(&self) -> u64 {
        let s = &self.synth;
        let per_image = (s.pool_width_px / self.patch_px) * (s.tile_px / self.patch_px);
        let images = s.pool_total() as f64;
        ((images * f64::from(per_image) * self.keep_share).round() as u64).max(1)
    }
}
