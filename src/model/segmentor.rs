//! Backbone + neck + one decoder per dataset: the whole S5 segmentation model.

use burn::module::Module;
use burn::tensor::{DType, Device, Int, Tensor};

use super::config::SegmentorConfig;
use super::half::cast_to;
use super::neck::SimpleFpn;
use super::upernet::{UperNet, resize};
use super::vit::Vit;

#[derive(Module, Debug)]
pub struct Segmentor {
    pub backbone: Vit,
    pub neck: SimpleFpn,
    /// One per dataset, in dataset-id order.
    pub decoders: Vec<UperNet>,
    /// Mixed precision: an f32 model computing on f16 activations, its parameters the f32
    /// master weights ([`super::mixed`] has the cast policy). Not part of a checkpoint: who
    /// builds or loads the model sets it ([`Segmentor::with_mixed_precision`]).
    pub mixed_precision: bool,
}

impl Segmentor {
    pub fn new(cfg: &SegmentorConfig, device: &Device) -> Self {
        let d = cfg.backbone.dim;
        Self {
            backbone: Vit::new(&cfg.backbone, device),
            neck: SimpleFpn::new(d, device),
            decoders: cfg
                .classes
                .iter()
                .map(|&k| {
                    UperNet::new(
                        d,
                        cfg.decoder_channels,
                        &cfg.pool_scales,
                        k,
                        cfg.head_dropout,
                        cfg.decoder_activation,
                        device,
                    )
                })
                .collect(),
            mixed_precision: false,
        }
    }

    /// The model computing in mixed precision (`on`) or in its parameters' precision.
    pub fn with_mixed_precision(mut self, on: bool) -> Self {
        self.mixed_precision = on;
        self
    }

    /// The model recomputing each backbone block in the backward pass (`on`), keeping only
    /// the blocks' inputs ([`super::recompute`]), or keeping what autodiff keeps.
    pub fn with_block_recomputation(mut self, on: bool) -> Self {
        self.backbone.recompute_blocks = on;
        self
    }

    /// What the layers compute in: f16 under mixed precision, else the weights' type.
    pub fn compute_dtype(&self) -> DType {
        if self.mixed_precision {
            DType::F16
        } else {
            self.float_dtype()
        }
    }

    /// Trained parameters: `num_params` without BatchNorm running statistics. Equals
    /// [`super::count_params`]'s total.
    pub fn num_trainable_params(&self) -> usize {
        self.num_params()
            - self
                .decoders
                .iter()
                .map(UperNet::running_stats)
                .sum::<usize>()
    }

    /// Logits of one dataset's decoder for a batch whose samples all belong to it.
    ///
    /// # Shapes
    /// images `[B, 3, H, W]` → `[B, K_dataset, H, W]`.
    pub fn forward(&self, images: Tensor<4>, dataset: usize) -> Tensor<4> {
        self.forward_with_features(images, dataset).0
    }

    /// [`Segmentor::forward`] that also returns the backbone's four feature maps (what
    /// curation embeds), from the same pass.
    ///
    /// # Shapes
    /// images `[B, 3, H, W]` → logits `[B, K_dataset, H, W]` and four maps
    /// `[B, D, H/16, W/16]` (the feature blocks, in order).
    pub fn forward_with_features(
        &self,
        images: Tensor<4>,
        dataset: usize,
    ) -> (Tensor<4>, [Tensor<4>; 4]) {
        let [b, _, h, w] = images.dims();
        let device = images.device();
        let (input, compute) = (images.dtype(), self.compute_dtype());
        let ids = Tensor::<1, Int>::full([b], dataset as i64, &device);
        let maps = self.backbone.forward(cast_to(images, compute), ids);
        let features = self.neck.forward(maps.clone());
        (
            cast_to(
                resize(self.decoders[dataset].forward(features), [h, w]),
                input,
            ),
            maps.map(|m| cast_to(m, input)),
        )
    }

    /// The float type of the weights: f32, or f16 after [`super::half::to_f16`]. Inputs are
    /// cast to [`Segmentor::compute_dtype`] and outputs back to the input's type.
    pub fn float_dtype(&self) -> DType {
        self.backbone.pos_embed.val().dtype()
    }

    /// A batch mixing datasets: the backbone runs once (each token routed to its sample's
    /// expert), then each dataset's samples go through its decoder together (one decoder
    /// batch per dataset, so BatchNorm sees them all).
    ///
    /// # Shapes
    /// images `[B, 3, H, W]`, datasets `B` ids → per sample `[1, K_dataset, H, W]`.
    pub fn forward_mixed(&self, images: Tensor<4>, datasets: &[usize]) -> Vec<Tensor<4>> {
        let [b, _, h, w] = images.dims();
        assert_eq!(datasets.len(), b, "one dataset id per sample");
        let device = images.device();
        let ids: Vec<i32> = datasets.iter().map(|&d| d as i32).collect();
        let ids = Tensor::<1, Int>::from_ints(ids.as_slice(), &device);
        let input = images.dtype();
        let images = cast_to(images, self.compute_dtype());
        let features = self.neck.forward(self.backbone.forward(images, ids));
        let mut out: Vec<Option<Tensor<4>>> = vec![None; b];
        for (d, decoder) in self.decoders.iter().enumerate() {
            let members: Vec<usize> = (0..b).filter(|&i| datasets[i] == d).collect();
            if members.is_empty() {
                continue;
            }
            let rows: Vec<i32> = members.iter().map(|&i| i as i32).collect();
            let rows = Tensor::<1, Int>::from_ints(rows.as_slice(), &device);
            let group = features.clone().map(|f| f.select(0, rows.clone()));
            let logits = cast_to(resize(decoder.forward(group), [h, w]), input);
            for (j, &i) in members.iter().enumerate() {
                out[i] = Some(logits.clone().narrow(0, j, 1));
            }
        }
        out.into_iter()
            .enumerate()
            .map(|(i, o)| {
                o.unwrap_or_else(|| {
                    panic!(
                        "sample {i}: dataset {} has no decoder (the model has {})",
                        datasets[i],
                        self.decoders.len()
                    )
                })
            })
            .collect()
    }
}
