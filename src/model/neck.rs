//! The simple-FPN neck: one ViT map (stride 16) to strides 4, 8, 16, 32.

use burn::module::Module;
use burn::nn::conv::{ConvTranspose2d, ConvTranspose2dConfig};
use burn::nn::pool::{MaxPool2d, MaxPool2dConfig};
use burn::nn::{LayerNorm, LayerNormConfig};
use burn::tensor::activation::gelu;
use burn::tensor::{Device, Tensor};

use super::mixed;

/// The 4× branch's LayerNorm epsilon (burn's default, 1e-5, as mmseg's).
const LN_EPSILON: f64 = 1e-5;

#[derive(Module, Debug)]
pub struct SimpleFpn {
    /// 4× up: deconv, LayerNorm over channels, GELU, deconv.
    pub up4_a: ConvTranspose2d,
    pub up4_norm: LayerNorm,
    pub up4_b: ConvTranspose2d,
    /// 2× up.
    pub up2: ConvTranspose2d,
    /// 2× down.
    pub down2: MaxPool2d,
}

impl SimpleFpn {
    pub fn new(dim: usize, device: &Device) -> Self {
        let deconv = || {
            ConvTranspose2dConfig::new([dim, dim], [2, 2])
                .with_stride([2, 2])
                .init(device)
        };
        Self {
            up4_a: deconv(),
            up4_norm: LayerNormConfig::new(dim)
                .with_epsilon(LN_EPSILON)
                .init(device),
            up4_b: deconv(),
            up2: deconv(),
            down2: MaxPool2dConfig::new([2, 2]).with_strides([2, 2]).init(),
        }
    }

    /// # Shapes
    /// four `[B, D, h, w]` maps → `[B, D, 4h, 4w]`, `[B, D, 2h, 2w]`, `[B, D, h, w]`,
    /// `[B, D, h/2, w/2]`.
    pub fn forward(&self, features: [Tensor<4>; 4]) -> [Tensor<4>; 4] {
        let [f0, f1, f2, f3] = features;
        let x = mixed::conv_transpose2d(&self.up4_a, f0);
        // LayerNorm over channels: move them last and back.
        let x = mixed::layer_norm(&self.up4_norm, x.permute([0, 2, 3, 1]), LN_EPSILON)
            .permute([0, 3, 1, 2]);
        let x = mixed::conv_transpose2d(&self.up4_b, gelu(x));
        [
            x,
            mixed::conv_transpose2d(&self.up2, f1),
            f2,
            self.down2.forward(f3),
        ]
    }
}
