//! Differentiable resizing of `[B, C, H, W]` maps as two matrix products with interpolation
//! matrices (`out = A_h · x · A_wᵀ`): bilinear and bicubic with PyTorch's half-pixel
//! sampling (`align_corners = False`). burn's cubecl backend has no backward for bilinear or
//! bicubic `interpolate`, and training needs one (decoder upsampling, the resized position
//! table); matmuls have it on every backend.

use burn::tensor::{Device, Tensor, TensorData};

use super::half::cast_to;

/// Interpolation kernels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resample {
    Bilinear,
    Bicubic,
}

/// The `[len_out, len_in]` matrix resampling one axis.
pub fn interpolation_matrix(len_in: usize, len_out: usize, mode: Resample) -> Vec<f32> {
    let mut m = vec![0.0f32; len_out * len_in];
    let scale = len_in as f64 / len_out as f64;
    for o in 0..len_out {
        let src = (o as f64 + 0.5) * scale - 0.5;
        let row = &mut m[o * len_in..(o + 1) * len_in];
        let clamp = |i: i64| i.clamp(0, len_in as i64 - 1) as usize;
        match mode {
            Resample::Bilinear => {
                let src = src.max(0.0);
                let i0 = src.floor() as i64;
                let t = (src - i0 as f64) as f32;
                row[clamp(i0)] += 1.0 - t;
                row[clamp(i0 + 1)] += t;
            }
            Resample::Bicubic => {
                // Cubic convolution, A = -0.75 (PyTorch).
                let a = -0.75;
                let i0 = src.floor() as i64;
                let t = src - i0 as f64;
                let near = |x: f64| ((a + 2.0) * x - (a + 3.0)) * x * x + 1.0;
                let far = |x: f64| ((a * x - 5.0 * a) * x + 8.0 * a) * x - 4.0 * a;
                let w = [far(t + 1.0), near(t), near(1.0 - t), far(2.0 - t)];
                for (k, wk) in w.iter().enumerate() {
                    row[clamp(i0 - 1 + k as i64)] += *wk as f32;
                }
            }
        }
    }
    m
}

fn matrix_t(len_in: usize, len_out: usize, mode: Resample, device: &Device) -> Tensor<2> {
    // Transposed: [len_in, len_out], to right-multiply.
    let m = interpolation_matrix(len_in, len_out, mode);
    let mut t = vec![0.0f32; m.len()];
    for o in 0..len_out {
        for i in 0..len_in {
            t[i * len_out + o] = m[o * len_in + i];
        }
    }
    Tensor::from_data(TensorData::new(t, [len_in, len_out]), device)
}

/// Resizes the last two axes to `size`.
///
/// # Shapes
/// `[B, C, H, W]` → `[B, C, size[0], size[1]]`.
pub fn resize(x: Tensor<4>, size: [usize; 2], mode: Resample) -> Tensor<4> {
    let [b, c, h, w] = x.dims();
    let [ho, wo] = size;
    if [h, w] == size {
        return x;
    }
    let device = x.device();
    // The interpolation matrices in the input's float type (f16 models).
    let dtype = x.dtype();
    let matrix_t =
        |from, to, mode, device: &Device| cast_to(matrix_t(from, to, mode, device), dtype);
    let x = if w == wo {
        x
    } else {
        x.reshape([b * c * h, w])
            .matmul(matrix_t(w, wo, mode, &device))
            .reshape([b, c, h, wo])
    };
    if h == ho {
        return x;
    }
    x.swap_dims(2, 3)
        .reshape([b * c * wo, h])
        .matmul(matrix_t(h, ho, mode, &device))
        .reshape([b, c, wo, ho])
        .swap_dims(2, 3)
}
