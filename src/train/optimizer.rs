//! AdamW as the S5 fine-tuning recipes use it, on top of burn's `ModuleOptimizer`:
//! parameter groups without weight decay (biases, norms, position table, cls token),
//! optional layer-wise learning-rate decay over the ViT blocks, and global-norm gradient
//! clipping (PyTorch's `clip_grad_norm_`: one norm over every gradient, not one per tensor).

use std::path::Path;

use burn::lr_scheduler::module_lr_scheduler::{ModuleLearningRate, ModuleLrScheduler};
use burn::module::{Module, ModuleVisitor, Param, ParamGroup, ParamId};
use burn::optim::{AdamWConfig, GradientsParams, ModuleOptimizer};
use burn::tensor::Tensor;

use super::config::OptimizerSetup;
use crate::error::{Error, Result};
use crate::model::Segmentor;

/// Where a parameter sits, for grouping.
#[derive(Debug, Clone, PartialEq)]
pub struct ParamInfo {
    pub id: ParamId,
    /// Module path, e.g. `backbone.blocks.3.attn.qkv.weight`.
    pub path: String,
    pub rank: usize,
}

impl ParamInfo {
    /// Biases and norm scales/shifts (every 1-D parameter), the position table and the cls
    /// token: the parameters MAE/BEiT fine-tuning trains without weight decay.
    pub fn exempt_from_decay(&self) -> bool {
        self.rank <= 1 || self.path.contains("pos_embed") || self.path.contains("cls_token")
    }

    /// The layer index for lr decay in a ViT of `depth` blocks: 0 for the embeddings, i + 1
    /// for block i, depth + 1 for everything after the backbone.
    pub fn layer(&self, depth: usize) -> usize {
        let parts: Vec<&str> = self.path.split('.').collect();
        if parts.first() != Some(&"backbone") {
            return depth + 1;
        }
        parts
            .windows(2)
            .find(|w| w[0] == "blocks")
            .and_then(|w| w[1].parse::<usize>().ok())
            .map_or(0, |i| i + 1)
    }
}

/// Every float parameter of a module with its path and rank.
pub fn param_infos<M: Module>(module: &M) -> Vec<ParamInfo> {
    #[derive(Default)]
    struct Collect {
        path: Vec<String>,
        out: Vec<ParamInfo>,
    }
    impl ModuleVisitor for Collect {
        fn enter_module(&mut self, name: &str, _container_type: &str) {
            self.path.push(name.to_string());
        }
        fn exit_module(&mut self, _name: &str, _container_type: &str) {
            self.path.pop();
        }
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
            self.out.push(ParamInfo {
                id: param.id,
                path: self.path.join("."),
                rank: D,
            });
        }
    }
    let mut collect = Collect::default();
    module.visit(&mut collect);
    collect.out
}

/// The optimizer of a training run.
pub struct Optimizer {
    inner: ModuleOptimizer,
    /// (group, lr multiplier) per ViT layer when layer decay is on.
    layer_scales: Vec<(ParamGroup, f64)>,
    clip_grad_norm: Option<f64>,
}

impl Optimizer {
    /// AdamW for `model`'s parameters. Build it after loading weights: groups are keyed by
    /// parameter ids, which checkpoints carry.
    pub fn new(setup: &OptimizerSetup, model: &Segmentor) -> Self {
        let adamw = |weight_decay: f64| {
            AdamWConfig::new()
                .with_beta_1(setup.betas.0 as f32)
                .with_beta_2(setup.betas.1 as f32)
                .with_epsilon(setup.epsilon as f32)
                .with_weight_decay(weight_decay as f32)
                .build()
        };
        let infos = param_infos(model);
        let mut inner = ModuleOptimizer::from(adamw(setup.weight_decay));
        if setup.no_decay_on_norms_and_biases {
            let exempt: Vec<ParamId> = infos
                .iter()
                .filter(|p| p.exempt_from_decay())
                .map(|p| p.id)
                .collect();
            inner = inner.with_group(ParamGroup::from_ids(exempt), adamw(0.0), None);
        }
        let depth = model.backbone.blocks.len();
        let layer_scales = match setup.layer_decay {
            Some(decay) if decay < 1.0 => (0..=depth)
                .map(|layer| {
                    let ids = infos
                        .iter()
                        .filter(|p| p.layer(depth) == layer)
                        .map(|p| p.id)
                        .collect();
                    (
                        ParamGroup::from_ids(ids),
                        decay.powi((depth + 1 - layer) as i32),
                    )
                })
                .collect(),
            _ => Vec::new(),
        };
        Self {
            inner,
            layer_scales,
            clip_grad_norm: setup.clip_grad_norm,
        }
    }

    /// One update at base rate `lr`. Returns the model and the global gradient norm before
    /// clipping (computed only when clipping is on).
    pub fn step(
        &mut self,
        lr: f64,
        model: Segmentor,
        mut grads: GradientsParams,
    ) -> Result<(Segmentor, Option<f64>)> {
        let norm = self
            .clip_grad_norm
            .map(|max| clip_global_norm(&model, &mut grads, max))
            .transpose()?;
        let policy: ModuleLearningRate = if self.layer_scales.is_empty() {
            lr.into()
        } else {
            let mut scheduler = ModuleLrScheduler::new(lr);
            for (group, scale) in &self.layer_scales {
                scheduler = scheduler.with_group(group.clone(), lr * scale);
            }
            scheduler.step()
        };
        Ok((self.inner.step(policy, model, grads), norm))
    }

    /// Saves the moments and step counts (burnpack), atomically.
    pub fn save(&self, path: &Path) -> Result<()> {
        crate::fsutil::write_atomic_via(path, ".bpk", |tmp| {
            self.inner.save(tmp).map_err(|e| Error::Checkpoint {
                path: path.to_path_buf(),
                reason: format!("cannot write the optimizer state: {e}"),
            })
        })
    }

    /// Restores what [`Optimizer::save`] wrote.
    pub fn load(mut self, path: &Path) -> Result<Self> {
        if !path.is_file() {
            return Err(Error::MissingFile {
                path: path.to_path_buf(),
                context: Some("optimizer state of a training checkpoint".into()),
            });
        }
        let bytes =
            std::fs::read(path).map_err(|e| Error::reading(path, e, Some("optimizer state")))?;
        let bytes = burn::tensor::Bytes::from_bytes_vec(bytes);
        self.inner = self
            .inner
            .from_bytes(bytes)
            .map_err(|e| Error::Checkpoint {
                path: path.to_path_buf(),
                reason: format!("optimizer state does not fit: {e}"),
            })?;
        Ok(self)
    }
}

/// Scales every gradient by `max / norm` when the global L2 norm exceeds `max`; returns
/// the norm before scaling. One value comes back from the GPU.
pub fn clip_global_norm<M: Module>(
    model: &M,
    grads: &mut GradientsParams,
    max: f64,
) -> Result<f64> {
    struct SumSquares<'a> {
        grads: &'a GradientsParams,
        parts: Vec<Tensor<1>>,
    }
    impl ModuleVisitor for SumSquares<'_> {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
            if let Some(g) = self.grads.get::<D>(param.id) {
                self.parts.push(crate::reduce::total(g.powi_scalar(2)));
            }
        }
    }
    struct Scale<'a> {
        grads: &'a mut GradientsParams,
        factor: f64,
    }
    impl ModuleVisitor for Scale<'_> {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
            if let Some(g) = self.grads.remove::<D>(param.id) {
                self.grads.register(param.id, g * self.factor);
            }
        }
    }
    let mut sums = SumSquares {
        grads,
        parts: Vec::new(),
    };
    model.visit(&mut sums);
    if sums.parts.is_empty() {
        return Ok(0.0);
    }
    let norm = super::loss::scalar(crate::reduce::total(Tensor::cat(sums.parts, 0)).sqrt())?;
    if norm > max {
        let factor = max / (norm + 1e-6);
        model.visit(&mut Scale { grads, factor });
    }
    Ok(norm)
}
