//! The widened ops of mixed precision (`s5::kernels::{softmax,layer_norm,batch_norm}_widened`)
//! against their references (cast to f32, burn's op, cast back), forward and gradients, on
//! fresh random inputs of odd sizes, in f32 and (where the adapter has `shader-f16`) f16;
//! and `model::mixed::batch_norm`'s running averages against burn's.

use burn::tensor::{DType, Tensor};
use s5::kernels::{
    batch_norm_widened, batch_norm_widened_reference, layer_norm_widened,
    layer_norm_widened_reference, softmax_widened, softmax_widened_reference,
};

use crate::common::{Rng, device, rel_err};

/// Precisions to check on this adapter.
fn precisions() -> Vec<DType> {
    let mut out = vec![DType::F32];
    if crate::common::f16_adapter() {
        out.push(DType::F16);
    }
    out
}

/// Bounds on max |custom − reference| / max |reference|: the same f32 arithmetic in another
/// order, its result (and in f16 the input's gradient) rounded once to the input's precision.
fn tolerance(precision: DType) -> f32 {
    if precision == DType::F16 { 4e-3 } else { 1e-4 }
}

/// Forward and gradients (of x and the given f32 parameters) of one op and its reference,
/// through a random linear loss, compared.
fn check<const D: usize>(
    what: &str,
    x: Tensor<D>,
    params: &[Tensor<1>],
    op: impl Fn(Tensor<D>, &[Tensor<1>]) -> Tensor<D>,
    reference: impl Fn(Tensor<D>, &[Tensor<1>]) -> Tensor<D>,
    rng: &mut Rng,
) {
    let precision = x.dtype();
    let dev = device().autodiff();
    let weights = rng.tensor::<D>(x.dims(), 1.0, &dev);
    let mut runs = Vec::new();
    for f in [&op as &dyn Fn(_, &_) -> _, &reference] {
        let x = Tensor::<D>::from_data(x.to_data(), &dev)
            .cast(precision)
            .require_grad();
        let params: Vec<Tensor<1>> = params
            .iter()
            .map(|p| Tensor::from_data(p.to_data(), &dev).require_grad())
            .collect();
        let out = f(x.clone(), &params);
        assert_eq!(
            out.dtype(),
            precision,
            "{what}: output in the input's precision"
        );
        let loss = (out.clone().cast(DType::F32) * weights.clone()).sum();
        let grads = loss.backward();
        let dx = x.grad(&grads).expect("x has a gradient");
        assert_eq!(
            dx.dtype(),
            precision,
            "{what}: x's gradient in x's precision"
        );
        let dparams: Vec<Tensor<1>> = params
            .iter()
            .map(|p| p.grad(&grads).expect("a parameter gradient"))
            .collect();
        runs.push((out.detach(), dx, dparams));
    }
    let tol = tolerance(precision);
    let (got, want) = (&runs[0], &runs[1]);
    let err = rel_err(
        got.0.clone().cast(DType::F32),
        want.0.clone().cast(DType::F32),
    );
    assert!(
        err < tol,
        "{what} ({precision:?}): forward differs by {err}"
    );
    let err = rel_err(
        got.1.clone().cast(DType::F32),
        want.1.clone().cast(DType::F32),
    );
    assert!(
        err < tol,
        "{what} ({precision:?}): x's gradient differs by {err}"
    );
    for (i, (g, w)) in got.2.iter().zip(&want.2).enumerate() {
        assert_eq!(
            g.dtype(),
            DType::F32,
            "{what}: parameter {i}'s gradient in f32"
        );
        let err = rel_err(g.clone(), w.clone());
        assert!(
            err < tol,
            "{what} ({precision:?}): parameter {i}'s gradient differs by {err}"
        );
    }
}

#[test]
fn softmax_widened_matches_its_reference() {
    let mut rng = Rng::fresh("softmax widened");
    let dev = device();
    for precision in precisions() {
        for dim in [1, 3] {
            let x = rng.tensor::<4>([3, 5, 7, 9], 3.0, &dev).cast(precision);
            check(
                &format!("softmax over dim {dim}"),
                x,
                &[],
                |x, _| softmax_widened(x, dim),
                |x, _| softmax_widened_reference(x, dim),
                &mut rng,
            );
        }
    }
}

#[test]
fn layer_norm_widened_matches_its_reference() {
    let mut rng = Rng::fresh("layer norm widened");
    let dev = device();
    for precision in precisions() {
        // Rows with an offset, as residual streams have: the centring must happen in f32.
        let x = (rng.tensor::<3>([3, 7, 13], 1.0, &dev) + 4.0).cast(precision);
        let gamma = rng.tensor::<1>([13], 1.0, &dev) + 1.0;
        let beta = rng.tensor::<1>([13], 1.0, &dev);
        check(
            "layer norm",
            x,
            &[gamma, beta],
            |x, p| layer_norm_widened(x, p[0].clone(), p[1].clone(), 1e-6),
            |x, p| layer_norm_widened_reference(x, p[0].clone(), p[1].clone(), 1e-6),
            &mut rng,
        );
    }
}

/// Small channels (burn's statistics) and channels over `LONG_CHANNEL` values (statistics
/// and gradient sums in short chunks; still under lavapipe's limit, where the reference is
/// right).
#[test]
fn batch_norm_widened_matches_its_reference() {
    let mut rng = Rng::fresh("batch norm widened");
    let dev = device();
    let long = [2, 3, 97 + rng.below(6), 89 + rng.below(6)];
    assert!(2 * long[2] * long[3] > s5::kernels::LONG_CHANNEL);
    for (precision, shape) in precisions()
        .into_iter()
        .flat_map(|p| [(p, [3, 5, 7, 9]), (p, long)])
    {
        let c = shape[1];
        let x = (rng.tensor::<4>(shape, 2.0, &dev) + 1.0).cast(precision);
        let gamma = rng.tensor::<1>([c], 1.0, &dev) + 1.0;
        let beta = rng.tensor::<1>([c], 1.0, &dev);
        check(
            &format!("batch norm {shape:?}"),
            x.clone(),
            &[gamma.clone(), beta.clone()],
            |x, p| batch_norm_widened(x, p[0].clone(), p[1].clone(), 1e-5).output,
            |x, p| batch_norm_widened_reference(x, p[0].clone(), p[1].clone(), 1e-5).output,
            &mut rng,
        );
        let got = batch_norm_widened(x.clone(), gamma.clone(), beta.clone(), 1e-5);
        let want = batch_norm_widened_reference(x, gamma, beta, 1e-5);
        for (name, g, w) in [
            ("mean", got.mean, want.mean),
            ("variance", got.variance, want.variance),
        ] {
            assert_eq!(g.dtype(), DType::F32, "batch {name} in f32");
            let err = rel_err(g, w);
            assert!(err < 1e-4, "batch {name} ({precision:?}) differs by {err}");
        }
    }
}

/// A training forward of an f32 BatchNorm on f16 activations (mixed precision) moves the
/// running averages as burn's forward on the same values in f32 does.
#[test]
fn mixed_batch_norm_updates_the_running_averages_as_burn_does() {
    use burn::nn::BatchNormConfig;
    if !crate::common::f16_adapter() {
        return;
    }
    let mut rng = Rng::fresh("mixed batch norm running averages");
    let dev = device().autodiff();
    let x = (rng.tensor::<4>([2, 6, 5, 3], 1.5, &dev) + 0.5).cast(DType::F16);
    let mut averages = Vec::new();
    for mixed in [false, true] {
        let layer = BatchNormConfig::new(6).init(&dev);
        let input = if mixed {
            x.clone()
        } else {
            x.clone().cast(DType::F32)
        };
        let out = s5::model::mixed::batch_norm(&layer, input);
        assert_eq!(out.dtype(), if mixed { DType::F16 } else { DType::F32 });
        averages.push((
            layer.running_mean.value_sync(),
            layer.running_var.value_sync(),
        ));
    }
    for (name, got, want) in [
        ("mean", averages[1].0.clone(), averages[0].0.clone()),
        ("variance", averages[1].1.clone(), averages[0].1.clone()),
    ] {
        assert_eq!(got.dtype(), DType::F32, "running {name} stays f32");
        let err = rel_err(got, want);
        assert!(err < 1e-5, "running {name} differs by {err}");
    }
}

/// BatchNorm's statistics over more values per channel than lavapipe runs loop iterations
/// in one invocation (65 535; the decoder's 1/4-scale features of 8 crops of 512 px hold
/// 131 072), through `model::mixed::batch_norm` in each precision the adapter has, against
/// the mean and variance summed on the host in f64. The values rise along the channel, so a
/// sum that stopped early would miss the largest (burn's own statistics did: 31 % low).
#[test]
fn batch_norm_statistics_cover_every_value_of_a_large_channel() {
    use burn::nn::BatchNormConfig;
    let mut rng = Rng::fresh("batch norm over a large channel");
    let dev = device().autodiff();
    // An odd count per channel, so no reduction reads several values per iteration.
    let (b, c, h, w) = (3, 3, 151 + 2 * rng.below(10), 163 + 2 * rng.below(10));
    let per_channel = b * h * w;
    assert!(per_channel > 65_535 && per_channel % 2 == 1);
    let mut values = vec![0f32; b * c * h * w];
    for (i, v) in values.iter_mut().enumerate() {
        let (channel, within) = ((i / (h * w)) % c, i % (h * w));
        *v = rng.normal(1.0) + channel as f32 + 4.0 * within as f32 / (h * w) as f32;
    }
    // Per channel on the host: mean and biased variance in f64.
    let mut expected = Vec::new();
    for channel in 0..c {
        let of_channel = (0..b).flat_map(|n| {
            let start = (n * c + channel) * h * w;
            values[start..start + h * w].iter().map(|&v| f64::from(v))
        });
        let mean = of_channel.clone().sum::<f64>() / per_channel as f64;
        let variance = of_channel.map(|v| (v - mean).powi(2)).sum::<f64>() / per_channel as f64;
        expected.push((mean, variance));
    }
    let x = Tensor::<4>::from_data(burn::tensor::TensorData::new(values, [b, c, h, w]), &dev);
    for precision in precisions() {
        let layer = BatchNormConfig::new(c).init(&dev);
        let out = s5::model::mixed::batch_norm(&layer, x.clone().cast(precision));
        let out = crate::common::to_vec(out.cast(DType::F32));
        // burn moves the running mean by momentum 0.1 from 0.
        let running = crate::common::to_vec(layer.running_mean.value_sync());
        eprintln!(
            "DEBUG {precision:?} running {running:?} var {:?} expected {expected:?} out0 {:?}",
            crate::common::to_vec(layer.running_var.value_sync()),
            &out[..4]
        );
        for (channel, &(mean, variance)) in expected.iter().enumerate() {
            let got = f64::from(running[channel]) / 0.1;
            assert!(
                (got - mean).abs() <= 1e-3 * mean.abs().max(1.0),
                "{precision:?} channel {channel}: running mean {got}, host {mean}"
            );
            // The output of a normalised channel has mean 0 and variance 1.
            let of_channel: Vec<f64> = (0..b)
                .flat_map(|n| {
                    let start = (n * c + channel) * h * w;
                    out[start..start + h * w].iter().map(|&v| f64::from(v))
                })
                .collect();
            assert!(of_channel.iter().all(|v| v.is_finite()), "{precision:?}");
            let out_mean = of_channel.iter().sum::<f64>() / per_channel as f64;
            let out_var = of_channel
                .iter()
                .map(|v| (v - out_mean).powi(2))
                .sum::<f64>()
                / per_channel as f64;
            let tolerance = if precision == DType::F16 { 1e-2 } else { 1e-3 };
            assert!(
                out_mean.abs() <= tolerance && (out_var - 1.0).abs() <= tolerance,
                "{precision:?} channel {channel}: normalised mean {out_mean}, variance \
                 {out_var} (host variance {variance})"
            );
        }
    }
}
