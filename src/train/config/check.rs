//! Every field of a [`TrainConfig`] checked before anything is written: ranges, sizes ≥ 1,
//! dropouts in [0, 1), finite numbers, and what one section asks of another (P below the
//! backbone's width, crops that are multiples of the model's coarsest stride). Only what
//! needs the data (class counts, dataset names) is left to when the datasets are read.

use super::{
    Backbone, DatasetEntry, FinetuneMode, FixMatchSetup, LossScaling, ModelSetup, OptimizerSetup,
    RecipeSetup, Sampling, TrainConfig, ValSetup,
};
use crate::check::{
    Checked, ConfigError, at_least_one, dropout, ensure, multiple_of, non_negative, positive,
    probability, range, within,
};
use crate::data::augment::AugmentConfig;
use crate::model::{FfnKind, VitConfig};

/// The model's coarsest stride: crops and windows are multiples of it.
const STRIDE_PX: u64 = 32;

impl TrainConfig {
    /// Checks every field that can be checked without touching the data; the error names
    /// the first wrong field, what it allows and what it holds.
    pub fn validate(&self) -> Checked {
        ensure(!self.datasets.is_empty(), "datasets", || {
            "is empty: name at least one dataset spec".into()
        })?;
        at_least_one("steps", self.steps)?;
        at_least_one("batch", self.batch as u64)?;
        at_least_one("checkpoint_every", self.checkpoint_every)?;
        at_least_one("prefetch", self.prefetch as u64)?;
        ensure(
            self.datasets.iter().any(|d| d.start_step == 0),
            "datasets[..].start_step",
            || {
                "is above 0 for every dataset: the first steps would train on nothing; give \
                 one dataset start_step 0"
                    .into()
            },
        )?;
        for (i, d) in self.datasets.iter().enumerate() {
            check_dataset(&format!("datasets[{i}]"), d)?;
        }
        let backbone = check_model(&self.model)?;
        check_sampling(&self.sampling, self.datasets.len())?;
        check_optimizer(&self.optimizer)?;
        check_augment(&self.augment)?;
        check_val(&self.val)?;
        check_loss_scaling(&self.loss_scaling)?;
        match &self.recipe {
            RecipeSetup::Supervised => Ok(()),
            RecipeSetup::FixMatch(semi) => self.check_fixmatch(semi),
            RecipeSetup::Finetune(setup) => check_finetune(&setup.mode, &self.model, &backbone),
        }
    }

    fn check_fixmatch(&self, semi: &FixMatchSetup) -> Checked {
        ensure(self.datasets.len() == 1, "datasets", || {
            format!(
                "has {} entries, but the FixMatch recipe takes exactly one labeled dataset",
                self.datasets.len()
            )
        })?;
        ensure(
            self.datasets[0]
                .crop_px
                .is_none_or(|c| c == self.augment.crop_px),
            "datasets[0].crop_px",
            || {
                "must be left out: the FixMatch recipe crops labeled and unlabeled images \
                 alike, so set augment.crop_px"
                    .into()
            },
        )?;
        let at = "recipe.FixMatch";
        at_least_one(
            &format!("{at}.unlabeled_batch"),
            semi.unlabeled_batch as u64,
        )?;
        probability(&format!("{at}.threshold"), semi.threshold)?;
        non_negative(&format!("{at}.lambda"), semi.lambda)?;
        ensure(
            !semi.unlabeled.spec.as_os_str().is_empty(),
            &format!("{at}.unlabeled.spec"),
            || "is empty: name the spec of the unlabeled images".into(),
        )?;
        if semi.unlabeled.patch_px != 0 {
            multiple_of(
                &format!("{at}.unlabeled.patch_px"),
                semi.unlabeled.patch_px.into(),
                STRIDE_PX,
                "0 takes whole images; patches are multiples of the model's coarsest stride",
            )?;
        }
        Ok(())
    }
}

fn check_dataset(at: &str, d: &DatasetEntry) -> Checked {
    ensure(
        !d.spec.as_os_str().is_empty(),
        &format!("{at}.spec"),
        || "is empty: name the dataset's spec file".into(),
    )?;
    non_negative(&format!("{at}.loss_weight"), d.loss_weight)?;
    if let Some(batch) = d.batch {
        at_least_one(&format!("{at}.batch"), batch as u64)?;
    }
    if let Some(crop) = d.crop_px {
        multiple_of(
            &format!("{at}.crop_px"),
            crop.into(),
            STRIDE_PX,
            "the model's coarsest stride",
        )?;
    }
    if let Some(mode) = &d.val_mode {
        mode.validate()
            .map_err(|e| ConfigError::new(format!("{at}.val_mode"), e))?;
    }
    Ok(())
}

/// The backbone the setup builds, checked whole.
pub(super) fn check_model(m: &ModelSetup) -> Result<VitConfig, ConfigError> {
    let backbone = match &m.backbone {
        Backbone::Preset(name) => VitConfig::by_name(name).ok_or_else(|| {
            ConfigError::new(
                "model.backbone",
                format!(
                    "names no preset (`{name}`): use Preset(\"tiny\"), \"small\", \"base\", \
                     \"large\" or \"huge\", or Custom((dim: .., depth: .., ...))"
                ),
            )
        })?,
        Backbone::Custom(cfg) => {
            check_vit("model.backbone.Custom", cfg)?;
            cfg.clone()
        }
    };
    if let Some(p) = m.moe_expert_dim {
        expert_dim("model.moe_expert_dim", p, &backbone)?;
    }
    at_least_one("model.decoder_channels", m.decoder_channels as u64)?;
    dropout("model.head_dropout", m.head_dropout)?;
    dropout("model.drop_path", m.drop_path)?;
    Ok(backbone)
}

/// A custom ViT: sizes ≥ 1, heads dividing the width, patches dividing the stride and the
/// position grid, feature blocks that exist.
pub fn check_vit(at: &str, b: &VitConfig) -> Checked {
    for (field, value) in [
        ("dim", b.dim),
        ("depth", b.depth),
        ("heads", b.heads),
        ("patch_px", b.patch_px),
        ("mlp_ratio", b.mlp_ratio),
        ("pos_grid_px", b.pos_grid_px),
    ] {
        at_least_one(&format!("{at}.{field}"), value as u64)?;
    }
    ensure(
        b.dim.is_multiple_of(b.heads),
        &format!("{at}.heads"),
        || format!("must divide dim {} (got {})", b.dim, b.heads),
    )?;
    ensure(
        32usize.is_multiple_of(b.patch_px) && b.pos_grid_px.is_multiple_of(b.patch_px),
        &format!("{at}.patch_px"),
        || {
            format!(
                "must divide 32 and pos_grid_px {} (got {})",
                b.pos_grid_px, b.patch_px
            )
        },
    )?;
    if let Some(&block) = b.feature_blocks.iter().find(|&&i| i >= b.depth) {
        return Err(ConfigError::new(
            format!("{at}.feature_blocks"),
            format!(
                "must be 0-based block indices below depth {} (got {block})",
                b.depth
            ),
        ));
    }
    ensure(b.ffn == FfnKind::Dense, &format!("{at}.ffn"), || {
        "must be Dense: FFN-MoE is set by model.moe_expert_dim or recipe Finetune((mode: \
         MoeMdf(P)))"
            .into()
    })?;
    dropout(&format!("{at}.drop_path"), b.drop_path)
}

/// P of FFN-MoE: between 1 and the block width D − 1 (the shared expert keeps D − P ≥ 1
/// columns).
fn expert_dim(field: &str, p: usize, backbone: &VitConfig) -> Checked {
    ensure(p >= 1 && p < backbone.dim, field, || {
        format!(
            "must be in 1..={} (P, a dataset expert's share of the backbone's {} FFN output \
             columns) (got {p})",
            backbone.dim.saturating_sub(1),
            backbone.dim
        )
    })
}

fn check_finetune(mode: &FinetuneMode, m: &ModelSetup, backbone: &VitConfig) -> Checked {
    let expert = match mode {
        FinetuneMode::Sdf(name) => {
            ensure(!name.is_empty(), "recipe.Finetune.mode.Sdf", || {
                "is empty: name the dataset to fine-tune on".into()
            })?;
            None
        }
        FinetuneMode::Mdf => None,
        FinetuneMode::MoeMdf(p) => {
            expert_dim("recipe.Finetune.mode.MoeMdf", *p, backbone)?;
            Some(*p)
        }
    };
    ensure(
        m.moe_expert_dim.is_none() || m.moe_expert_dim == expert,
        "model.moe_expert_dim",
        || {
            format!(
                "must be left out with recipe Finetune (the mode {mode:?} sets the experts) \
                 (got {:?})",
                m.moe_expert_dim
            )
        },
    )
}

fn check_sampling(sampling: &Sampling, datasets: usize) -> Checked {
    match sampling {
        Sampling::Zip => Ok(()),
        Sampling::Ratios(r) => {
            ensure(r.len() == datasets, "sampling.Ratios", || {
                format!(
                    "has {} ratios for {datasets} datasets: give one per dataset, in the order \
                     of `datasets`",
                    r.len()
                )
            })?;
            ensure(
                r.iter().all(|&x| x.is_finite() && x >= 0.0) && r.iter().sum::<f64>() > 0.0,
                "sampling.Ratios",
                || format!("must be finite numbers ≥ 0 with a positive sum (got {r:?})"),
            )
        }
        Sampling::Temperature(t) => positive("sampling.Temperature", *t),
    }
}

fn check_optimizer(o: &OptimizerSetup) -> Checked {
    positive("optimizer.lr", o.lr)?;
    non_negative("optimizer.final_lr", o.final_lr)?;
    non_negative("optimizer.weight_decay", o.weight_decay)?;
    for (field, beta) in [
        ("optimizer.betas.0", o.betas.0),
        ("optimizer.betas.1", o.betas.1),
    ] {
        ensure(
            beta.is_finite() && (0.0..1.0).contains(&beta),
            field,
            || format!("must be a number in [0, 1) (got {beta})"),
        )?;
    }
    positive("optimizer.epsilon", o.epsilon)?;
    if let Some(d) = o.layer_decay {
        ensure(
            d.is_finite() && d > 0.0 && d <= 1.0,
            "optimizer.layer_decay",
            || format!("must be a number in (0, 1] (got {d})"),
        )?;
    }
    if let Some(c) = o.clip_grad_norm {
        positive("optimizer.clip_grad_norm", c)?;
    }
    Ok(())
}

fn check_loss_scaling(l: &LossScaling) -> Checked {
    positive("loss_scaling.min_scale", l.min_scale)?;
    ensure(
        l.initial.is_finite() && l.initial >= l.min_scale && l.initial <= 1e30,
        "loss_scaling.initial",
        || {
            format!(
                "must be a number from loss_scaling.min_scale ({}) to 1e30 (got {})",
                l.min_scale, l.initial
            )
        },
    )?;
    at_least_one("loss_scaling.growth_interval", l.growth_interval)
}

fn check_augment(a: &AugmentConfig) -> Checked {
    multiple_of(
        "augment.crop_px",
        a.crop_px.into(),
        STRIDE_PX,
        "the model's coarsest stride",
    )?;
    let pair = |(lo, hi): (f32, f32)| (f64::from(lo), f64::from(hi));
    range("augment.scale_range", pair(a.scale_range), 0.0, None)?;
    for (field, p) in [
        ("augment.hflip_p", a.hflip_p),
        ("augment.vflip_p", a.vflip_p),
        ("augment.rot90_p", a.rot90_p),
        ("augment.rotate_p", a.rotate_p),
        ("augment.jitter_p", a.jitter_p),
        ("augment.grayscale_p", a.grayscale_p),
        ("augment.blur_p", a.blur_p),
        ("augment.cutmix_p", a.cutmix_p),
    ] {
        probability(field, p.into())?;
    }
    within(
        "augment.rotate_max_deg",
        a.rotate_max_deg.into(),
        0.0,
        180.0,
    )?;
    for (field, s) in [
        ("augment.brightness", a.brightness),
        ("augment.contrast", a.contrast),
        ("augment.saturation", a.saturation),
    ] {
        within(field, s.into(), 0.0, 1.0)?;
    }
    within("augment.hue", a.hue.into(), 0.0, 0.5)?;
    range("augment.blur_sigma", pair(a.blur_sigma), 0.0, None)?;
    range("augment.cutmix_area", pair(a.cutmix_area), 0.0, Some(1.0))?;
    range("augment.cutmix_aspect", pair(a.cutmix_aspect), 0.0, None)
}

fn check_val(v: &ValSetup) -> Checked {
    v.mode
        .validate()
        .map_err(|e| ConfigError::new("val.mode", e))?;
    if let Some(n) = v.max_images {
        at_least_one("val.max_images", n as u64)?;
    }
    Ok(())
}
