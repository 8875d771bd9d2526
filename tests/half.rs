//! Half-precision inference (`s5::model::half`) against f32, the custom `moe_ffn` kernel
//! running in f16 inside the f16 model. (The dense model on real validation tiles:
//! `train.rs`, after the resumed run.)

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
