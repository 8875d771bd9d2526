//! The ViT backbone: patch embedding, cls token, a position table resized (bicubic) to
//! every input, pre-norm blocks with dense or FFN-MoE FFNs, and four feature maps.

use burn::module::{Module, Param};
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::{Initializer, LayerNorm, LayerNormConfig, Linear, LinearConfig};
use burn::tensor::{DType, Device, Int, Tensor};

use super::config::VitConfig;
use super::drop_path::DropPath;
use super::ffn::Ffn;
use super::half::cast_to;
use super::mixed;
use super::resize::{Resample, resize};

/// The blocks' LayerNorm epsilon (timm's ViT).
const LN_EPSILON: f64 = 1e-6;

/// Multi-head self-attention with a fused qkv projection (timm's layout).
#[derive(Module, Debug)]
pub struct Attention {
    pub qkv: Linear,
    pub proj: Linear,
    pub heads: usize,
}

impl Attention {
    /// # Shapes
    /// `[B, N, D]` → `[B, N, D]`.
    pub fn forward(&self, x: Tensor<3>) -> Tensor<3> {
        let [b, n, d] = x.dims();
        let hd = d / self.heads;
        let qkv = mixed::linear(&self.qkv, x)
            .reshape([b, n, 3, self.heads, hd])
            .permute([2, 0, 3, 1, 4]); // [3, B, heads, N, hd]
        let part = |i: usize| qkv.clone().narrow(0, i, 1).reshape([b, self.heads, n, hd]);
        let (q, k, v) = (part(0), part(1), part(2));
        let attn = mixed::softmax(q.matmul(k.swap_dims(2, 3)) / (hd as f64).sqrt(), 3);
        let out = attn.matmul(v).swap_dims(1, 2).reshape([b, n, d]);
        mixed::linear(&self.proj, out)
    }
}

#[derive(Module, Debug)]
pub struct Block {
    pub norm1: LayerNorm,
    pub attn: Attention,
    pub norm2: LayerNorm,
    pub ffn: Ffn,
    pub drop_path: DropPath,
}

impl Block {
    /// # Shapes
    /// x `[B, N, D]`, token_ids `[B·N]` → `[B, N, D]`.
    pub fn forward(&self, x: Tensor<3>, token_ids: &Tensor<1, Int>) -> Tensor<3> {
        let masks = self.drop_masks(x.dims()[0], x.dtype(), &x.device());
        self.forward_masked(x, token_ids, &masks)
    }

    /// The drop-path masks of one pass: the attention branch's, then the FFN's.
    ///
    /// # Shapes
    /// → two `[B]`.
    pub fn drop_masks(
        &self,
        batch: usize,
        dtype: DType,
        device: &Device,
    ) -> [Option<Tensor<1>>; 2] {
        [
            self.drop_path.draw(batch, dtype, device),
            self.drop_path.draw(batch, dtype, device),
        ]
    }

    /// [`Block::forward`] dropping the branches `masks` drop (see [`Block::drop_masks`]).
    ///
    /// # Shapes
    /// x `[B, N, D]`, token_ids `[B·N]`, masks two `[B]` → `[B, N, D]`.
    pub fn forward_masked(
        &self,
        x: Tensor<3>,
        token_ids: &Tensor<1, Int>,
        masks: &[Option<Tensor<1>>; 2],
    ) -> Tensor<3> {
        let attn = self
            .attn
            .forward(mixed::layer_norm(&self.norm1, x.clone(), LN_EPSILON));
        let x = x + self.drop_path.apply(attn, masks[0].as_ref());
        let ffn = self.ffn.forward(
            mixed::layer_norm(&self.norm2, x.clone(), LN_EPSILON),
            token_ids,
        );
        x + self.drop_path.apply(ffn, masks[1].as_ref())
    }
}

#[derive(Module, Debug)]
pub struct Vit {
    pub patch_embed: Conv2d,
    /// `[1, 1, D]`
    pub cls_token: Param<Tensor<3>>,
    /// `[1, 1 + G·G, D]`, G = pos_grid_px / patch_px.
    pub pos_embed: Param<Tensor<3>>,
    pub blocks: Vec<Block>,
    pub feature_blocks: [usize; 4],
    pub patch_px: usize,
    /// Recompute each block in the backward pass, keeping only its input (the authors'
    /// `with_cp=True`; [`super::recompute`]). Not part of a checkpoint: who builds or loads the
    /// model sets it ([`super::Segmentor::with_block_recomputation`]).
    pub recompute_blocks: bool,
}

impl Vit {
    pub fn new(cfg: &VitConfig, device: &Device) -> Self {
        let d = cfg.dim;
        assert!(
            d.is_multiple_of(cfg.heads),
            "dim {d} must divide into {} heads",
            cfg.heads
        );
        assert!(
            cfg.feature_blocks.iter().all(|&i| i < cfg.depth),
            "feature blocks {:?} must be < depth {}",
            cfg.feature_blocks,
            cfg.depth
        );
        let normal = Initializer::Normal {
            mean: 0.0,
            std: 0.02,
        };
        let g = cfg.pos_grid();
        let blocks = (0..cfg.depth)
            .map(|i| Block {
                norm1: LayerNormConfig::new(d)
                    .with_epsilon(LN_EPSILON)
                    .init(device),
                attn: Attention {
                    qkv: LinearConfig::new(d, 3 * d).init(device),
                    proj: LinearConfig::new(d, d).init(device),
                    heads: cfg.heads,
                },
                norm2: LayerNormConfig::new(d)
                    .with_epsilon(LN_EPSILON)
                    .init(device),
                ffn: Ffn::new(cfg, device),
                // Stochastic depth rising linearly to `drop_path` at the last block.
                drop_path: DropPath::new(cfg.drop_path * i as f64 / (cfg.depth.max(2) - 1) as f64),
            })
            .collect();
        Self {
            patch_embed: Conv2dConfig::new([3, d], [cfg.patch_px, cfg.patch_px])
                .with_stride([cfg.patch_px, cfg.patch_px])
                .init(device),
            cls_token: normal.init([1, 1, d], device),
            pos_embed: normal.init([1, 1 + g * g, d], device),
            blocks,
            feature_blocks: cfg.feature_blocks,
            patch_px: cfg.patch_px,
            recompute_blocks: false,
        }
    }

    /// The position table for a `gh × gw` patch grid: the cls entry, then the stored grid
    /// resized bicubically.
    ///
    /// # Shapes
    /// → `[1, 1 + gh·gw, D]`.
    pub fn pos_embed_for(&self, gh: usize, gw: usize) -> Tensor<3> {
        let table = self.pos_embed.val();
        let [_, tokens, d] = table.dims();
        let g = ((tokens - 1) as f64).sqrt().round() as usize;
        let cls = table.clone().narrow(1, 0, 1);
        if (gh, gw) == (g, g) {
            return table;
        }
        let grid = table
            .narrow(1, 1, tokens - 1)
            .reshape([1, g, g, d])
            .permute([0, 3, 1, 2]);
        let grid = resize(grid, [gh, gw], Resample::Bicubic);
        let grid = grid.permute([0, 2, 3, 1]).reshape([1, gh * gw, d]);
        Tensor::cat(vec![cls, grid], 1)
    }

    /// # Shapes
    /// images `[B, 3, H, W]` (H, W multiples of the patch), dataset_ids `[B]` →
    /// four maps `[B, D, H/16, W/16]` from the feature blocks.
    pub fn forward(&self, images: Tensor<4>, dataset_ids: Tensor<1, Int>) -> [Tensor<4>; 4] {
        let [b, _, h, w] = images.dims();
        assert!(
            h % self.patch_px == 0 && w % self.patch_px == 0,
            "input {h}x{w} px must be a multiple of the patch size {}",
            self.patch_px
        );
        let (gh, gw) = (h / self.patch_px, w / self.patch_px);
        let x = mixed::patch_embed(&self.patch_embed, images, self.patch_px); // [B, G, D]
        let (d, dtype) = (x.dims()[2], x.dtype());
        let cls = cast_to(self.cls_token.val(), dtype).expand([b, 1, d]);
        let mut x = Tensor::cat(vec![cls, x], 1) + cast_to(self.pos_embed_for(gh, gw), dtype);
        let n = 1 + gh * gw;
        let token_ids = dataset_ids.reshape([b, 1]).expand([b, n]).reshape([b * n]);
        let mut outputs: Vec<Option<Tensor<4>>> = vec![None; self.blocks.len()];
        for (i, block) in self.blocks.iter().enumerate() {
            x = if self.recompute_blocks && x.is_autodiff() {
                let masks = block.drop_masks(b, dtype, &x.device());
                super::recompute::block(i, block, x, &token_ids, masks)
            } else {
                block.forward(x, &token_ids)
            };
            if self.feature_blocks.contains(&i) {
                let map = x
                    .clone()
                    .narrow(1, 1, gh * gw)
                    .swap_dims(1, 2)
                    .reshape([b, d, gh, gw]);
                outputs[i] = Some(map);
            }
        }
        // A block may feed several levels (shallow test models).
        self.feature_blocks.map(|i| {
            outputs
                .get(i)
                .cloned()
                .flatten()
                .unwrap_or_else(|| panic!("feature block {i} of a {}-block ViT", self.blocks.len()))
        })
    }
}
