//! The UperNet decoder (pyramid pooling + FPN fusion) with its 1×1 classification head.

use burn::module::Module;
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::{BatchNorm, BatchNormConfig, Dropout, DropoutConfig, PaddingConfig2d};
use burn::tensor::activation::{gelu, relu};
use burn::tensor::module::adaptive_avg_pool2d;
use burn::tensor::{Device, Tensor};

use super::config::Activation;
use super::mixed;

/// Conv (no bias) + BatchNorm + ReLU (GELU when `relu` is false).
#[derive(Module, Debug)]
pub struct ConvBnRelu {
    pub conv: Conv2d,
    pub bn: BatchNorm,
    pub relu: bool,
}

impl ConvBnRelu {
    pub fn new(
        input: usize,
        output: usize,
        kernel: usize,
        activation: Activation,
        device: &Device,
    ) -> Self {
        Self {
            conv: Conv2dConfig::new([input, output], [kernel, kernel])
                .with_padding(PaddingConfig2d::Explicit(
                    kernel / 2,
                    kernel / 2,
                    kernel / 2,
                    kernel / 2,
                ))
                .with_bias(false)
                .init(device),
            bn: BatchNormConfig::new(output).init(device),
            relu: activation == Activation::Relu,
        }
    }

    pub fn forward(&self, x: Tensor<4>) -> Tensor<4> {
        let x = mixed::batch_norm(&self.bn, mixed::conv2d(&self.conv, x));
        if self.relu { relu(x) } else { gelu(x) }
    }
}

/// Bilinear resize (differentiable on every backend).
pub(crate) fn resize(x: Tensor<4>, size: [usize; 2]) -> Tensor<4> {
    super::resize::resize(x, size, super::resize::Resample::Bilinear)
}

#[derive(Module, Debug)]
pub struct UperNet {
    pub pool_scales: Vec<usize>,
    pub ppm: Vec<ConvBnRelu>,
    pub bottleneck: ConvBnRelu,
    pub laterals: Vec<ConvBnRelu>,
    pub fpn_convs: Vec<ConvBnRelu>,
    pub fpn_bottleneck: ConvBnRelu,
    pub dropout: Dropout,
    pub classifier: Conv2d,
}

impl UperNet {
    pub fn new(
        input: usize,
        channels: usize,
        pool_scales: &[usize],
        classes: usize,
        dropout: f64,
        activation: Activation,
        device: &Device,
    ) -> Self {
        let block =
            |input, output, kernel| ConvBnRelu::new(input, output, kernel, activation, device);
        Self {
            pool_scales: pool_scales.to_vec(),
            ppm: pool_scales
                .iter()
                .map(|_| block(input, channels, 1))
                .collect(),
            bottleneck: block(input + pool_scales.len() * channels, channels, 3),
            laterals: (0..3).map(|_| block(input, channels, 1)).collect(),
            fpn_convs: (0..3).map(|_| block(channels, channels, 3)).collect(),
            fpn_bottleneck: block(4 * channels, channels, 3),
            dropout: DropoutConfig::new(dropout).init(),
            classifier: Conv2dConfig::new([channels, classes], [1, 1]).init(device),
        }
    }

    /// The number of classes the head predicts.
    pub fn classes(&self) -> usize {
        self.classifier.weight.lazy_shape().dims::<4>()[0]
    }

    /// BatchNorm running means and variances: buffers that `num_params` counts but that
    /// are not trained (the paper's counts leave them out).
    pub fn running_stats(&self) -> usize {
        self.ppm
            .iter()
            .chain([&self.bottleneck, &self.fpn_bottleneck])
            .chain(&self.laterals)
            .chain(&self.fpn_convs)
            .map(|c| 2 * c.bn.gamma.lazy_shape().num_elements())
            .sum()
    }

    /// # Shapes
    /// the neck's four maps (strides 4, 8, 16, 32) → logits `[B, K, H/4, W/4]`.
    pub fn forward(&self, features: [Tensor<4>; 4]) -> Tensor<4> {
        let [f0, f1, f2, f3] = features;
        // Pyramid pooling on the coarsest map.
        let size3: [usize; 2] = [f3.dims()[2], f3.dims()[3]];
        let mut pooled = vec![f3.clone()];
        for (scale, conv) in self.pool_scales.iter().zip(&self.ppm) {
            let p = conv.forward(adaptive_avg_pool2d(f3.clone(), [*scale, *scale]));
            pooled.push(resize(p, size3));
        }
        let top = self.bottleneck.forward(Tensor::cat(pooled, 1));
        // Top-down fusion.
        let mut levels: Vec<Tensor<4>> = [f0, f1, f2]
            .into_iter()
            .zip(&self.laterals)
            .map(|(f, conv)| conv.forward(f))
            .collect();
        levels.push(top);
        for i in (0..3).rev() {
            let size = [levels[i].dims()[2], levels[i].dims()[3]];
            let up = resize(levels[i + 1].clone(), size);
            levels[i] = levels[i].clone() + up;
        }
        let size0 = [levels[0].dims()[2], levels[0].dims()[3]];
        let mut outs: Vec<Tensor<4>> = Vec::with_capacity(4);
        for (i, level) in levels.into_iter().enumerate() {
            let out = if i < 3 {
                self.fpn_convs[i].forward(level)
            } else {
                level
            };
            outs.push(resize(out, size0));
        }
        let fused = self.fpn_bottleneck.forward(Tensor::cat(outs, 1));
        mixed::conv2d(&self.classifier, self.dropout.forward(fused))
    }
}
