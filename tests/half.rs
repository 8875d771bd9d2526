//! Half precision against f32: inference of an f16 model (`s5::model::half`), the custom
//! `moe_ffn` kernel running in f16 inside it (the dense model on real validation tiles:
//! `train.rs`, after the resumed run); and mixed precision (`s5::model::mixed`), an f32
//! model computing on f16 activations, whose gradients are the f32 model's.

use burn::module::Module;
use burn::tensor::{DType, Tensor, TensorData};
use s5::model::Segmentor;
use s5::model::half::{supports_f16, to_f16};

use crate::common::{Rng, device, rel_err, small_segmentor};

#[test]
fn an_moe_model_in_f16_gives_the_logits_of_f32() {
    let dev = device();
    if !supports_f16(&dev) {
        refuses_f16_clearly(&dev);
        return;
    }
    let mut cfg = small_segmentor(2, 5);
    cfg.backbone = cfg.backbone.with_moe(3, 8);
    cfg.classes = vec![5, 4, 3];
    // Two identical models (clones would share BatchNorm statistics, which the cast changes).
    let _rng = crate::common::device_rng_lock();
    let build = || {
        dev.seed(21);
        let model = Segmentor::new(&cfg, &dev).valid();
        model.num_params(); // initialise every parameter now, in a fixed order
        model
    };
    let (full, half) = (build(), to_f16(build()));
    assert_eq!(half.float_dtype(), DType::F16);
    let mut rng = Rng::fresh("f16 moe");
    let (b, s) = (3, 48);
    let images: Vec<f32> = (0..b * 3 * s * s).map(|_| rng.normal(1.0)).collect();
    let x = || Tensor::<4>::from_data(TensorData::new(images.clone(), [b, 3, s, s]), &dev);
    for dataset in 0..3 {
        let (want, got) = (full.forward(x(), dataset), half.forward(x(), dataset));
        assert_eq!(got.dtype(), DType::F32, "logits leave as f32");
        let err = rel_err(got, want);
        assert!(err < 3e-2, "dataset {dataset}: relative error {err}");
    }
    let mixed = half.forward_mixed(x(), &[2, 0, 1]);
    assert!(mixed.iter().all(|t| t.dtype() == DType::F32));
}

/// On an adapter without `shader-f16`, `s5 predict --f16` fails naming the missing feature.
fn refuses_f16_clearly(dev: &burn::tensor::Device) {
    let dir = tempfile::tempdir().unwrap();
    let cfg = small_segmentor(1, 3);
    let model = Segmentor::new(&cfg, dev);
    let card = s5::run::ModelCard {
        segmentor: cfg,
        datasets: vec![s5::run::DatasetCard {
            name: "three".into(),
            classes: vec!["a".into(), "b".into(), "c".into()],
            palette: vec![[0, 0, 0], [255, 0, 0], [0, 255, 0]],
            background: None,
            spec: std::path::PathBuf::new(),
            imaging: Default::default(),
        }],
    };
    let folder = dir.path().join("model");
    s5::train::checkpoint::save_model_folder(&model, &card, &folder).unwrap();
    let image = dir.path().join("tile.png");
    image::RgbImage::new(64, 64).save(&image).unwrap();
    let out = crate::common::s5()
        .args(["predict", "--f16", "--model"])
        .arg(&folder)
        .arg("--out")
        .arg(dir.path().join("pred"))
        .arg(&image)
        .output()
        .unwrap();
    crate::common::assert_f16_refused(&out);
}

/// Mixed-precision parity per parameter, as `allclose` in L2 norms: f16 activations and
/// weights round every layer's output to 11 significant bits through two blocks, the neck
/// and the decoder (whose convolutions accumulate in f16 where cubecl picks its direct
/// kernel), and the training BatchNorms over a batch of four small maps amplify that
/// rounding. Measured over 20 fresh draws: within 1–2 % of each parameter's norm, and within
/// 0.25 % of the largest gradient's norm for the gradients that are small sums of terms of
/// both signs (LayerNorm scales, the position table through its bicubic resize). A wrong or
/// missing gradient is of the order of 100 %.
const MIXED_GRAD_RTOL: f64 = 0.1;
const MIXED_GRAD_ATOL: f64 = 5e-3;

/// `b` images of `s` × `s` px that are smooth, as photographs are (a random mix of a few
/// low-frequency waves per image, channels differing by a random gain, plus a little
/// noise), and the field in [−1, 1] per pixel they were made from.
///
/// # Shapes
/// images `[b, 3, s, s]`, field `[b, s, s]`, both flattened.
fn smooth_images(rng: &mut Rng, b: usize, s: usize) -> (Vec<f32>, Vec<f32>) {
    let mut field = Vec::with_capacity(b * s * s);
    let mut images = Vec::with_capacity(b * 3 * s * s);
    for _ in 0..b {
        let waves: Vec<[f32; 3]> = (0..3)
            .map(|_| {
                [
                    rng.normal(4.0),
                    rng.normal(4.0),
                    rng.uniform() * std::f32::consts::TAU,
                ]
            })
            .collect();
        let start = field.len();
        for y in 0..s {
            for x in 0..s {
                let (u, v) = (x as f32 / s as f32, y as f32 / s as f32);
                let sum: f32 = waves
                    .iter()
                    .map(|[fx, fy, p]| (fx * u + fy * v + p).sin())
                    .sum();
                field.push(sum / 3.0);
            }
        }
        for _ in 0..3 {
            let gain = 0.5 + rng.uniform();
            for i in 0..s * s {
                images.push(gain * field[start + i] + rng.normal(0.05));
            }
        }
    }
    (images, field)
}

/// The loss scale of the mixed-precision step (a gradient scaler's initial 2^16).
const LOSS_SCALE: f64 = 65_536.0;

/// A mixed-precision step (f32 parameters, f16 activations, f32 LayerNorm, BatchNorm,
/// softmax and loss) gives every parameter the f32 step's gradient within f16 tolerance, in
/// f32: a small ViT + UperNet, dense and FFN-MoE.
///
/// The decoder uses GELU: with UperNet's ReLU, rounding that moves a pre-activation across
/// zero switches that unit's gradient on or off, and after the BatchNorms' centring (which
/// leaves gradients that are small sums of large terms of both signs) a few such switches
/// change a parameter's gradient by 20–100 %; the f32 model's own gradients move as much
/// when only its input image is rounded to f16. GELU makes the gradient continuous, so what
/// is left to compare is the arithmetic of mixed precision.
#[test]
fn a_mixed_precision_step_has_the_gradients_of_f32() {
    use burn::optim::GradientsParams;
    use s5::model::Activation;
    use s5::train::loss::cross_entropy_over;
    if !crate::common::f16_adapter() {
        return;
    }
    let train = device().autodiff();
    let (s, b) = (64, 4);
    let mut rng = Rng::fresh("mixed precision gradients");
    let (images, field) = smooth_images(&mut rng, b, s);
    for moe in [false, true] {
        let mut cfg = small_segmentor(2, 5);
        cfg.decoder_activation = Activation::Gelu;
        // No 1 × 1 pyramid pooling: BatchNorm over one pooled value per image normalises
        // four numbers, whose gradient any rounding swings.
        cfg.pool_scales = [2, 3, 4, 6];
        if moe {
            cfg.backbone = cfg.backbone.with_moe(3, 8);
            cfg.classes = vec![5, 4, 3];
        }
        let k = cfg.classes[0];
        // Each pixel's class from the field its image was made from, in k bands: regions, as
        // real masks have, so the gradients add up over them instead of cancelling.
        let labels: Vec<i32> = field
            .iter()
            .map(|v| (((v + 1.0) / 2.0 * k as f32) as i32).clamp(0, k as i32 - 1))
            .collect();
        // One model, run in both precisions: a clone shares its parameters (and BatchNorm
        // statistics, which a training forward updates but does not read).
        let model = {
            let _rng = crate::common::device_rng_lock();
            let model = Segmentor::new(&cfg, &train);
            crate::memory::collect(&model, None); // every parameter drawn now, under the lock
            model
        };
        let mut runs = Vec::new();
        for mixed in [false, true] {
            let model = model.clone().with_mixed_precision(mixed);
            let logits = model.forward(
                Tensor::from_data(TensorData::new(images.clone(), [b, 3, s, s]), &train),
                0,
            );
            assert_eq!(logits.dtype(), DType::F32, "logits leave as f32");
            let loss = cross_entropy_over(
                logits,
                Tensor::from_data(TensorData::new(labels.clone(), [b, s, s]), &train),
                Tensor::ones([b, s, s], &train),
                (b * s * s) as f64,
            );
            // Scaled as a gradient scaler's first step is (2^16): unscaled, the f16
            // gradients of the first layers fall into f16's subnormals (below 6e-5) and
            // lose most of their bits. Both runs alike, so the comparison is unchanged.
            let grads = GradientsParams::from_grads((loss * LOSS_SCALE).backward(), &model);
            let got = crate::memory::collect(&model, Some(&grads));
            runs.push((got, model.float_dtype(), model.compute_dtype()));
        }
        let what = if moe { "FFN-MoE" } else { "dense" };
        assert_eq!(
            (runs[0].1, runs[0].2, runs[1].1, runs[1].2),
            (DType::F32, DType::F32, DType::F32, DType::F16),
            "{what}: f32 master weights, f32 then f16 compute"
        );
        crate::common::assert_grads_allclose(
            &format!("{what} mixed precision"),
            &runs[1].0,
            &runs[0].0,
            MIXED_GRAD_RTOL,
            MIXED_GRAD_ATOL,
        );
    }
}
