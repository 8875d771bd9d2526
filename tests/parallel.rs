//! Data parallelism (`s5::train::parallel`): the batch split, and one step's gradients over
//! two devices (two wgpu devices on the one adapter, so CI runs the multi-GPU path) against
//! the same shares computed one after the other on one device in plain tensor ops.

use burn::module::{Module, ModuleVisitor, Param};
use burn::optim::GradientsParams;
use burn::tensor::activation::log_softmax;
use burn::tensor::{Device, Tensor, TensorData};
use s5::device::{GpuChoice, training_gpus};
use s5::model::Segmentor;
use s5::train::parallel::{Replicas, ShareLoss, shares, step_grads};

use crate::common::{Rng, assert_grads_close, device, small_segmentor, to_vec};

#[test]
fn shares_cover_the_batch_evenly() {
    for n in 1..12 {
        for k in 1..6 {
            let parts = shares(n, k);
            assert_eq!(parts.len(), k.min(n), "n {n}, k {k}");
            assert_eq!(parts[0].start, 0);
            assert_eq!(parts.last().map(|r| r.end), Some(n));
            for pair in parts.windows(2) {
                assert_eq!(pair[0].end, pair[1].start);
            }
            let lens: Vec<usize> = parts.iter().map(|r| r.len()).collect();
            let (min, max) = (lens.iter().min(), lens.iter().max());
            assert!(min >= Some(&1) && max.zip(min).is_some_and(|(a, b)| a - b <= 1));
        }
    }
}

/// Every parameter's gradient in `grads`, in visiting order.
fn read_grads(model: &Segmentor, grads: &GradientsParams) -> Vec<Vec<f32>> {
    struct Collect<'a>(&'a GradientsParams, Vec<Vec<f32>>);
    impl ModuleVisitor for Collect<'_> {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
            if let Some(g) = self.0.get::<D>(param.id) {
                self.1.push(to_vec(g));
            }
        }
    }
    let mut c = Collect(grads, Vec::new());
    model.visit(&mut c);
    c.1
}

/// Cross-entropy summed over a share's pixels and divided by the whole batch's pixel
/// count, from `log_softmax` and a one-hot target.
fn share_loss(model: &Segmentor, images: Tensor<4>, onehot: Tensor<4>, batch_px: f32) -> Tensor<1> {
    let picked = log_softmax(model.forward(images, 0), 1) * onehot;
    picked.sum().neg() / batch_px
}

#[test]
fn two_device_gradients_equal_the_shares_summed_on_one_device() {
    device();
    let gpus = training_gpus(None, GpuChoice::SameAdapter(2)).expect("a second device");
    assert_eq!(gpus.len(), 2);
    let devices: Vec<Device> = gpus.iter().map(|g| g.device.clone().autodiff()).collect();
    let (k, s, batch) = (3, 32, 5);
    let model = Segmentor::new(&small_segmentor(2, k), &devices[0]);
    let mut rng = Rng::fresh("data parallel");
    let images: Vec<f32> = (0..batch * 3 * s * s).map(|_| rng.normal(1.0)).collect();
    let labels: Vec<usize> = (0..batch * s * s).map(|_| rng.below(k)).collect();
    let mut onehot = vec![0.0f32; batch * k * s * s];
    for (p, &l) in labels.iter().enumerate() {
        let (b, px) = (p / (s * s), p % (s * s));
        onehot[(b * k + l) * s * s + px] = 1.0;
    }
    let batch_px = (batch * s * s) as f32;
    let parts = shares(batch, 2);
    assert_eq!(parts, vec![0..3, 3..5]);
    let slice = |r: &std::ops::Range<usize>, d: &Device| {
        let n = r.len();
        let img = images[r.start * 3 * s * s..r.end * 3 * s * s].to_vec();
        let hot = onehot[r.start * k * s * s..r.end * k * s * s].to_vec();
        (
            Tensor::<4>::from_data(TensorData::new(img, [n, 3, s, s]), d),
            Tensor::<4>::from_data(TensorData::new(hot, [n, k, s, s]), d),
        )
    };

    let replicas = Replicas::local(&devices);
    let out = step_grads(&model, replicas, parts.len(), 1.0, |i, replica, d| {
        let (img, hot) = slice(&parts[i], d);
        let loss = share_loss(replica, img, hot, batch_px);
        let value = s5::train::loss::scalar(loss.clone()).unwrap();
        Ok(ShareLoss {
            loss,
            sums: [("loss".to_string(), value)].into(),
            per_image: vec![i as f64; parts[i].len()],
        })
    })
    .expect("a data-parallel step");
    assert_eq!(out.per_image, vec![0.0, 0.0, 0.0, 1.0, 1.0]);
    let got = read_grads(&model, &out.grads);

    // Reference: both shares on the main device, one after the other; gradients summed on
    // the CPU.
    let mut want: Vec<Vec<f32>> = Vec::new();
    let mut loss_sum = 0.0;
    for r in &parts {
        let (img, hot) = slice(r, &devices[0]);
        let loss = share_loss(&model, img, hot, batch_px);
        loss_sum += s5::train::loss::scalar(loss.clone()).unwrap();
        let grads = GradientsParams::from_grads(loss.backward(), &model);
        let g = read_grads(&model, &grads);
        if want.is_empty() {
            want = g;
        } else {
            for (w, x) in want.iter_mut().zip(g) {
                w.iter_mut().zip(x).for_each(|(a, b)| *a += b);
            }
        }
    }
    assert!((out.sums["loss"] - loss_sum).abs() <= 1e-5 * loss_sum.abs().max(1.0));
    assert_grads_close("data parallel", &got, &want, 1e-4);
}
