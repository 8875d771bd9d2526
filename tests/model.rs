//! The model: parameter counts against the paper and against models built for real, output
//! shapes, per-sample routing of mixed batches, and gradients reaching every parameter
//! through the MoE op.

use burn::module::{Module, ModuleVisitor, Param};
use burn::tensor::{Device, Tensor};
use s5::model::{Segmentor, SegmentorConfig, VitConfig, count_params};

use crate::common::{Rng, assert_close, device, max_abs_diff, to_vec};

#[test]
fn parameter_counts_match_the_paper_and_the_built_vit_b() {
    let mdf = vec![5, 5, 7, 9];
    let paper = [
        (SegmentorConfig::new(VitConfig::vit_base(), vec![16]), 103.2),
        (
            SegmentorConfig::new(VitConfig::vit_base().with_moe(4, 256), mdf.clone()),
            160.4,
        ),
        (
            SegmentorConfig::new(VitConfig::vit_large(), vec![16]),
            327.4,
        ),
        (
            SegmentorConfig::new(VitConfig::vit_large().with_moe(4, 256), mdf.clone()),
            435.0,
        ),
        (SegmentorConfig::new(VitConfig::vit_huge(), vec![16]), 663.4),
        (
            SegmentorConfig::new(VitConfig::vit_huge().with_moe(4, 256), mdf),
            824.5,
        ),
    ];
    for (cfg, want) in &paper {
        let got = count_params(cfg).total() as f64 / 1e6;
        assert!(
            (got - want).abs() <= 0.2,
            "{}: {got:.2} M vs the paper's {want} M",
            cfg.backbone.dim
        );
    }
    // The library's named presets are these models with these counts.
    let presets: Vec<(SegmentorConfig, f64)> = s5::model::paper_models()
        .into_iter()
        .map(|m| (m.config, m.paper_params_m))
        .collect();
    assert_eq!(presets, paper.to_vec());
    // ViT-B built for real (parameters are lazy: nothing is allocated).
    let device = device();
    for (cfg, _) in &paper[..2] {
        let model = Segmentor::new(cfg, &device);
        assert_eq!(model.num_trainable_params(), count_params(cfg).total());
    }
}

fn tiny(moe: Option<(usize, usize)>, classes: Vec<usize>, depth: usize) -> SegmentorConfig {
    let mut vit = VitConfig::vit_tiny();
    vit.depth = depth;
    vit.feature_blocks = [0, 1, 2, depth - 1].map(|i| i.min(depth - 1));
    if depth >= 4 {
        vit.feature_blocks = [depth - 4, depth - 3, depth - 2, depth - 1];
    }
    if let Some((t, p)) = moe {
        vit = vit.with_moe(t, p);
    }
    let mut cfg = SegmentorConfig::new(vit, classes);
    cfg.decoder_channels = 32;
    cfg
}

#[test]
fn tiny_vit_upernet_gives_full_resolution_logits() {
    let device = device();
    let model = Segmentor::new(
        &SegmentorConfig::new(VitConfig::vit_tiny(), vec![6]),
        &device,
    );
    let mut rng = Rng::fresh("model forward");
    let x = rng.tensor([2, 3, 64, 96], 1.0, &device);
    let out = model.forward(x, 0);
    assert_eq!(out.dims(), [2, 6, 64, 96]);
    assert!(to_vec(out).iter().all(|v| v.is_finite()));
}

#[test]
fn a_mixed_batch_gives_each_sample_what_it_gets_alone() {
    let device = device();
    let cfg = tiny(Some((3, 48)), vec![4, 5, 6], 4);
    let model = Segmentor::new(&cfg, &device);
    let mut rng = Rng::fresh("model mixed batch");
    let x = rng.tensor([3, 3, 64, 48], 1.0, &device);
    let datasets = [2, 0, 1];
    let mixed = model.forward_mixed(x.clone(), &datasets);
    for (i, (got, &d)) in mixed.into_iter().zip(&datasets).enumerate() {
        let alone = model.forward(x.clone().narrow(0, i, 1), d);
        assert_eq!(got.dims(), [1, cfg.classes[d], 64, 48]);
        assert_close(&format!("sample {i} (dataset {d})"), got, alone);
    }
}

struct GradCheck<'a> {
    grads: &'a burn::tensor::Gradients,
    with_grad: usize,
    without_grad: usize,
    problems: Vec<String>,
}

impl ModuleVisitor for GradCheck<'_> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        match param.val().grad(self.grads) {
            Some(g) => {
                self.with_grad += 1;
                let g = to_vec(g.reshape([-1]));
                if !g.iter().all(|v| v.is_finite()) || g.iter().all(|v| *v == 0.0) {
                    self.problems.push(format!(
                        "{:?}: zero or non-finite gradient",
                        param.lazy_shape()
                    ));
                }
            }
            None => self.without_grad += 1,
        }
    }
}

#[test]
fn gradients_reach_every_parameter_through_the_moe_op() {
    let device: Device = device().autodiff();
    let cfg = tiny(Some((3, 48)), vec![4, 5, 6], 4);
    let model = Segmentor::new(&cfg, &device);
    let mut rng = Rng::fresh("model grads");
    // Two samples per dataset: a decoder's BatchNorm needs more than one value per channel
    // at the 1×1 pyramid-pooling level to pass a gradient.
    let x = rng.tensor([6, 3, 64, 64], 1.0, &device);
    let outs = model.forward_mixed(x, &[0, 1, 2, 2, 1, 0]);
    let loss = outs
        .into_iter()
        .map(|o| {
            let r = rng.tensor(o.dims(), 1.0, &o.device());
            (o * r).sum()
        })
        .reduce(|a, b| a + b)
        .unwrap();
    let grads = loss.backward();
    let mut check = GradCheck {
        grads: &grads,
        with_grad: 0,
        without_grad: 0,
        problems: Vec::new(),
    };
    model.visit(&mut check);
    assert!(check.problems.is_empty(), "{:?}", check.problems);
    // Only BatchNorm running statistics (2 per BatchNorm, 12 BatchNorms per decoder) are not trained.
    assert_eq!(
        check.without_grad,
        3 * 12 * 2,
        "{} params had gradients",
        check.with_grad
    );
}

#[test]
fn matrix_resize_matches_burns_interpolate() {
    use burn::tensor::module::interpolate;
    use burn::tensor::ops::{InterpolateMode, InterpolateOptions};
    use s5::model::resize::{Resample, resize};
    let device = device();
    let mut rng = Rng::fresh("resize");
    let x = rng.tensor([2, 3, 7, 10], 1.0, &device);
    for (mode, burn_mode) in [
        (Resample::Bilinear, InterpolateMode::Bilinear),
        (Resample::Bicubic, InterpolateMode::Bicubic),
    ] {
        for size in [[28, 40], [5, 13], [7, 3]] {
            let want = interpolate(
                x.clone(),
                InterpolateOptions::new(burn_mode.clone())
                    .with_output_size(size)
                    .with_align_corners(false),
            );
            assert_close(
                &format!("{mode:?} to {size:?}"),
                resize(x.clone(), size, mode),
                want,
            );
        }
    }
}

fn fixture(name: &str) -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

fn fixture_vit(moe: bool) -> VitConfig {
    let mut vit = VitConfig::vit_tiny();
    vit.dim = 32;
    vit.depth = 4;
    vit.heads = 2;
    vit.pos_grid_px = 48;
    vit.feature_blocks = [0, 1, 2, 3];
    if moe { vit.with_moe(2, 8) } else { vit }
}

/// tests/fixtures/make_vit_fixture.py wrote a timm checkpoint and, with numpy, the features
/// it must produce: s5 must reproduce them, densely and as an MoE initialised from fc2.
#[test]
fn a_timm_checkpoint_reproduces_its_reference_features() {
    use s5::model::import::{load_vit, read_checkpoint};
    use s5::model::vit::Vit;
    let device = device();
    let expected = read_checkpoint(&fixture("vit_timm_tiny_expected.safetensors")).unwrap();
    let tensor4 = |name: &str| {
        let (shape, values) = &expected[name];
        let shape: [usize; 4] = shape.clone().try_into().unwrap();
        Tensor::<4>::from_data(
            burn::tensor::TensorData::new(values.clone(), shape),
            &device,
        )
    };
    // The same weights as safetensors and as torch.save({'model': state_dict}) writes them.
    let path = fixture("vit_timm_tiny.safetensors");
    let raw = read_checkpoint(&path).unwrap();
    let pth = fixture("vit_timm_tiny.pth");
    let raw_pth = read_checkpoint(&pth).unwrap_or_else(|e| panic!("{e}"));
    for (moe, raw, path) in [
        (false, &raw, &path),
        (true, &raw, &path),
        (false, &raw_pth, &pth),
        (true, &raw_pth, &pth),
    ] {
        let mut vit = Vit::new(&fixture_vit(moe), &device);
        let report = load_vit(&mut vit, raw, path, &device).unwrap();
        assert_eq!(
            report.unmapped,
            ["head.bias", "head.weight", "norm.bias", "norm.weight"],
            "{report:?}"
        );
        assert!(report.missing.is_empty(), "{report:?}");
        assert_eq!(report.init_from_dense, moe);
        let ids = Tensor::<1, burn::tensor::Int>::from_ints([1], &device);
        let features = vit.forward(tensor4("input"), ids);
        for (i, f) in features.into_iter().enumerate() {
            assert_close(
                &format!("f{i} (moe: {moe}, {})", path.display()),
                f,
                tensor4(&format!("f{i}")),
            );
        }
    }
    // A checkpoint of another width: an error naming the key.
    let mut wide = fixture_vit(false);
    wide.dim = 64;
    let err = load_vit(&mut Vit::new(&wide, &device), &raw, &path, &device).unwrap_err();
    assert!(
        err.to_string().contains("patch_embed.proj.weight")
            && err.to_string().contains("vit_timm_tiny"),
        "{err}"
    );
}

#[test]
fn own_checkpoints_round_trip_and_refuse_another_model() {
    use s5::model::checkpoint::{load, save};
    let device = device();
    let cfg = tiny(Some((2, 48)), vec![3, 4], 4);
    let model = Segmentor::new(&cfg, &device);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("checkpoints/model.bpk");
    save(&model, &path).unwrap();
    let leftovers: Vec<_> = std::fs::read_dir(path.parent().unwrap())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(
        leftovers.len(),
        1,
        "only the checkpoint, no temporary file: {leftovers:?}"
    );
    let fresh = Segmentor::new(&cfg, &device);
    let loaded = load(fresh, &path).unwrap();
    // A loaded model no longer needs its file (a pruned or replaced checkpoint): the file is
    // gone before the GPU first takes the weights. (burn's own loading reads them from the file
    // then, and the device thread panicked.)
    let kept = dir.path().join("kept.bpk");
    std::fs::rename(&path, &kept).unwrap();
    let mut rng = Rng::fresh("checkpoint");
    let x = rng.tensor([2, 3, 32, 32], 1.0, &device);
    assert_close(
        "reloaded model",
        loaded.forward(x.clone(), 1),
        model.forward(x, 1),
    );
    std::fs::rename(&kept, &path).unwrap();
    let other = Segmentor::new(&tiny(None, vec![3], 4), &device);
    let err = load(other, &path).unwrap_err();
    assert!(err.to_string().contains("model.bpk"), "{err}");
    let err = load(Segmentor::new(&cfg, &device), &dir.path().join("nope.bpk")).unwrap_err();
    assert!(err.to_string().contains("nope.bpk"), "{err}");
}

/// Model + AdamW state saved after one step and restored: the next step matches an
/// uninterrupted run exactly.
#[test]
fn training_checkpoints_resume_the_optimizer_exactly() {
    use burn::optim::{AdamWConfig, GradientsParams};
    use s5::model::checkpoint::{load_training, save_training};
    let device: Device = device().autodiff();
    let mut cfg = tiny(Some((2, 48)), vec![3, 4], 4);
    // No stochastic layers: both runs must see the same computation.
    cfg.backbone.drop_path = 0.0;
    cfg.head_dropout = 0.0;
    let mut rng = Rng::fresh("training checkpoint");
    let x = rng.tensor([2, 3, 32, 32], 1.0, &device);
    let step = |model: Segmentor, optim: &mut burn::optim::ModuleOptimizer| {
        let loss = model.forward(x.clone(), 1).powi_scalar(2).mean();
        let grads = GradientsParams::from_grads(loss.backward(), &model);
        optim.step(1e-3, model, grads)
    };
    let mut optim = AdamWConfig::new().init();
    let model = step(Segmentor::new(&cfg, &device), &mut optim);
    let dir = tempfile::tempdir().unwrap();
    save_training(&model, &optim, dir.path()).unwrap();
    let (restored, mut restored_optim) = load_training(
        Segmentor::new(&cfg, &device),
        AdamWConfig::new().init(),
        dir.path(),
    )
    .unwrap();
    let a = step(model, &mut optim);
    let b = step(restored, &mut restored_optim);
    let probe = rng.tensor([1, 3, 32, 32], 1.0, &device);
    let (ya, yb) = (
        to_vec(a.forward(probe.clone(), 0)),
        to_vec(b.forward(probe, 0)),
    );
    assert_eq!(ya, yb, "resumed step differs from the uninterrupted one");
}

/// The authors' S4P UperNet checkpoints use mmseg names (`backbone.layers.i.ln1`,
/// `neck.upsample_4x.0`, `decode_head.psp_modules.0.1.conv`, ...): a segmentor exported under
/// those names loads back into a fresh one with the same outputs, its decoder copied into
/// every dataset's decoder, the classifier only where the class count fits.
#[test]
fn an_authors_s4p_checkpoint_loads_backbone_neck_and_decoders() {
    use s5::model::import::{RawTensors, load_segmentor};
    let device = device();
    let mut cfg = tiny(None, vec![4], 4);
    cfg.backbone.pos_grid_px = 64;
    let mut source = Segmentor::new(&cfg, &device);
    // Non-default BatchNorm statistics, so the test sees them travel.
    {
        let head = &mut source.decoders[0];
        for c in head
            .ppm
            .iter_mut()
            .chain([&mut head.bottleneck, &mut head.fpn_bottleneck])
            .chain(head.laterals.iter_mut())
            .chain(head.fpn_convs.iter_mut())
        {
            let (m, v) = (c.bn.running_mean.value(), c.bn.running_var.value());
            c.bn.running_mean = burn::module::RunningState::new(m + 0.1);
            c.bn.running_var = burn::module::RunningState::new(v * 2.0);
        }
    }
    let source = source;
    let mut raw = RawTensors::new();
    let mut put = |k: &str, t: Vec<f32>, shape: Vec<usize>| {
        raw.insert(format!("state_dict.{k}"), (shape, t));
    };
    fn flat<const D: usize>(t: Tensor<D>) -> (Vec<f32>, Vec<usize>) {
        let shape = t.dims().to_vec();
        (to_vec(t.reshape([-1])), shape)
    }
    /// Stores one tensor under its key: values and shape.
    type Put<'a> = dyn FnMut(&str, Vec<f32>, Vec<usize>) + 'a;
    let linear = |put: &mut Put, k: &str, l: &burn::nn::Linear| {
        let (w, s) = flat(l.weight.val().transpose());
        put(&format!("{k}.weight"), w, s);
        let (b, s) = flat(l.bias.as_ref().unwrap().val());
        put(&format!("{k}.bias"), b, s);
    };
    let vit = &source.backbone;
    let (w, s) = flat(vit.patch_embed.weight.val());
    put("backbone.patch_embed.projection.weight", w, s);
    let (w, s) = flat(vit.patch_embed.bias.as_ref().unwrap().val());
    put("backbone.patch_embed.projection.bias", w, s);
    let (w, s) = flat(vit.cls_token.val());
    put("backbone.cls_token", w, s);
    let (w, s) = flat(vit.pos_embed.val());
    put("backbone.pos_embed", w, s);
    for (i, b) in vit.blocks.iter().enumerate() {
        let p = format!("backbone.layers.{i}");
        for (n, norm) in [("ln1", &b.norm1), ("ln2", &b.norm2)] {
            let (w, s) = flat(norm.gamma.val());
            put(&format!("{p}.{n}.weight"), w, s);
            let (w, s) = flat(norm.beta.as_ref().unwrap().val());
            put(&format!("{p}.{n}.bias"), w, s);
        }
        let (w, s) = flat(b.attn.qkv.weight.val().transpose());
        put(&format!("{p}.attn.attn.in_proj_weight"), w, s);
        let (w, s) = flat(b.attn.qkv.bias.as_ref().unwrap().val());
        put(&format!("{p}.attn.attn.in_proj_bias"), w, s);
        linear(&mut put, &format!("{p}.attn.attn.out_proj"), &b.attn.proj);
        linear(&mut put, &format!("{p}.ffn.layers.0.0"), &b.ffn.fc1);
        linear(
            &mut put,
            &format!("{p}.ffn.layers.1"),
            b.ffn.fc2.as_ref().unwrap(),
        );
    }
    let neck = &source.neck;
    for (k, conv) in [
        ("neck.upsample_4x.0", &neck.up4_a),
        ("neck.upsample_4x.3", &neck.up4_b),
        ("neck.upsample_2x.0", &neck.up2),
    ] {
        let (w, s) = flat(conv.weight.val());
        put(&format!("{k}.weight"), w, s);
        let (w, s) = flat(conv.bias.as_ref().unwrap().val());
        put(&format!("{k}.bias"), w, s);
    }
    let (w, s) = flat(neck.up4_norm.gamma.val());
    put("neck.upsample_4x.1.weight", w, s);
    let (w, s) = flat(neck.up4_norm.beta.as_ref().unwrap().val());
    put("neck.upsample_4x.1.bias", w, s);
    let head = &source.decoders[0];
    let mut conv_bn = |k: String, c: &s5::model::upernet::ConvBnRelu| {
        let (w, s) = flat(c.conv.weight.val());
        put(&format!("{k}.conv.weight"), w, s);
        for (n, t) in [
            ("weight", c.bn.gamma.val()),
            ("bias", c.bn.beta.val()),
            ("running_mean", c.bn.running_mean.value()),
            ("running_var", c.bn.running_var.value()),
        ] {
            let (w, s) = flat(t);
            put(&format!("{k}.bn.{n}"), w, s);
        }
    };
    for (i, c) in head.ppm.iter().enumerate() {
        conv_bn(format!("decode_head.psp_modules.{i}.1"), c);
    }
    conv_bn("decode_head.bottleneck".into(), &head.bottleneck);
    for (i, c) in head.laterals.iter().enumerate() {
        conv_bn(format!("decode_head.lateral_convs.{i}"), c);
    }
    for (i, c) in head.fpn_convs.iter().enumerate() {
        conv_bn(format!("decode_head.fpn_convs.{i}"), c);
    }
    conv_bn("decode_head.fpn_bottleneck".into(), &head.fpn_bottleneck);
    let (w, s) = flat(head.classifier.weight.val());
    put("decode_head.conv_seg.weight", w, s);
    let (w, s) = flat(head.classifier.bias.as_ref().unwrap().val());
    put("decode_head.conv_seg.bias", w, s);
    put("auxiliary_head.conv_seg.weight", vec![0.0; 4], vec![4]);

    // Two datasets: the first has the checkpoint's 4 classes, the second 6.
    let mut target_cfg = cfg.clone();
    target_cfg.classes = vec![4, 6];
    let mut target = Segmentor::new(&target_cfg, &device);
    let path = std::path::Path::new("upernet_s4p.pth");
    let report = load_segmentor(&mut target, &raw, path, &device).unwrap();
    assert_eq!(
        report.unmapped,
        ["auxiliary_head.conv_seg.weight"],
        "{report:?}"
    );
    assert_eq!(
        report.missing,
        ["decode_head.conv_seg (decoder 1)"],
        "{report:?}"
    );
    let mut rng = Rng::fresh("s4p import");
    let x = rng.tensor([1, 3, 64, 64], 1.0, &device);
    let ids = Tensor::<1, burn::tensor::Int>::from_ints([0], &device);
    let fa = target.backbone.forward(x.clone(), ids.clone());
    let fb = source.backbone.forward(x.clone(), ids);
    for (i, (a, b)) in fa.iter().zip(&fb).enumerate() {
        assert_close(&format!("backbone feature {i}"), a.clone(), b.clone());
    }
    let na = target.neck.forward(fa);
    let nb = source.neck.forward(fb);
    for (i, (a, b)) in na.iter().zip(&nb).enumerate() {
        assert_close(&format!("neck level {i}"), a.clone(), b.clone());
    }
    let (ta, sa) = (&target.decoders[0], &source.decoders[0]);
    let blocks = |h: &s5::model::upernet::UperNet| {
        let mut v: Vec<s5::model::upernet::ConvBnRelu> = h.ppm.clone();
        v.push(h.bottleneck.clone());
        v.extend(h.laterals.clone());
        v.extend(h.fpn_convs.clone());
        v.push(h.fpn_bottleneck.clone());
        v
    };
    for (i, (a, b)) in blocks(ta).iter().zip(blocks(sa).iter()).enumerate() {
        assert_close(
            &format!("block {i} conv"),
            a.conv.weight.val(),
            b.conv.weight.val(),
        );
        assert_close(
            &format!("block {i} gamma"),
            a.bn.gamma.val(),
            b.bn.gamma.val(),
        );
        assert_close(&format!("block {i} beta"), a.bn.beta.val(), b.bn.beta.val());
        assert_close(
            &format!("block {i} mean"),
            a.bn.running_mean.value() + 1.0,
            b.bn.running_mean.value() + 1.0,
        );
        assert_close(
            &format!("block {i} var"),
            a.bn.running_var.value(),
            b.bn.running_var.value(),
        );
    }
    assert_close(
        "classifier",
        ta.classifier.weight.val(),
        sa.classifier.weight.val(),
    );
    assert_close(
        "classifier bias",
        ta.classifier.bias.as_ref().unwrap().val(),
        sa.classifier.bias.as_ref().unwrap().val(),
    );
    assert_close(
        "decoder on the same features",
        ta.forward(na.clone()),
        sa.forward(na.clone()),
    );
    assert_close(
        "decoder 0 after import",
        target.forward(x.clone(), 0),
        source.forward(x, 0),
    );
}

/// Paper Table 3's parameter counts for ViT-B on the four fine-tuning datasets: four single
/// models (SDF), one dense model with four decoders (MDF), and MoE-MDF with experts of
/// P = 128, 256, 512 (the paper's α = P / 1024).
#[test]
fn table_3_parameter_counts() {
    let classes = s5::run::architecture::PAPER_MDF_CLASSES.to_vec();
    let m = |cfg: &SegmentorConfig| count_params(cfg).total() as f64 / 1e6;
    let sdf: f64 = classes
        .iter()
        .map(|&k| m(&SegmentorConfig::new(VitConfig::vit_base(), vec![k])))
        .sum();
    let mdf = m(&SegmentorConfig::new(
        VitConfig::vit_base(),
        classes.clone(),
    ));
    let moe = |p| {
        m(&SegmentorConfig::new(
            VitConfig::vit_base().with_moe(classes.len(), p),
            classes.clone(),
        ))
    };
    for (name, got, paper) in [
        ("SDF", sdf, 412.8),
        ("MDF", mdf, 132.1),
        ("MoE-MDF P=128", moe(128), 146.2),
        ("MoE-MDF P=256", moe(256), 160.4),
        ("MoE-MDF P=512", moe(512), 188.7),
    ] {
        assert!(
            (got - paper).abs() <= 0.2,
            "{name}: {got:.2} M vs the paper's {paper} M"
        );
    }
}

/// Every parameter's identity, in visiting order.
fn param_ids(model: &Segmentor) -> Vec<burn::module::ParamId> {
    struct Ids(Vec<burn::module::ParamId>);
    impl ModuleVisitor for Ids {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
            self.0.push(param.id);
        }
    }
    let mut ids = Ids(Vec::new());
    model.visit(&mut ids);
    ids.0
}

/// Right after expansion from a dense model, the FFN-MoE backbone and neck compute what the
/// dense ones did, for every dataset; the decoders are the dense decoder with new heads, and
/// every parameter is its own.
#[test]
fn experts_initialised_from_a_dense_model_compute_what_it_did() {
    use s5::model::experts::init_from_dense;
    let device = device();
    let dense_cfg = tiny(None, vec![3], 4);
    let dense = Segmentor::new(&dense_cfg, &device);
    let target = tiny(Some((2, 12)), vec![3, 5], 4);
    let moe = init_from_dense(&dense, &dense_cfg, &target, 0, &device).unwrap();
    let mut rng = Rng::fresh("experts from dense");
    let x = rng.tensor([2, 3, 32, 32], 1.0, &device);
    for t in 0..2 {
        let ids = Tensor::<1, burn::tensor::Int>::from_ints([t, t], &device);
        let dense_ids = Tensor::<1, burn::tensor::Int>::from_ints([0, 0], &device);
        let a = moe.neck.forward(moe.backbone.forward(x.clone(), ids));
        let b = dense
            .neck
            .forward(dense.backbone.forward(x.clone(), dense_ids));
        for (i, (a, b)) in a.iter().zip(&b).enumerate() {
            assert_close(&format!("dataset {t}, level {i}"), a.clone(), b.clone());
        }
    }
    // Decoder 0 with the dense head put back: the dense model's logits.
    let mut with_head = moe.clone();
    with_head.decoders[0].classifier = dense.decoders[0].classifier.clone();
    assert_close(
        "logits",
        with_head.forward(x.clone(), 0),
        dense.forward(x.clone(), 0),
    );
    // The heads are new.
    let head = |m: &Segmentor, d: usize| to_vec(m.decoders[d].classifier.weight.val());
    assert_ne!(head(&moe, 0), head(&dense, 0));
    let ids = param_ids(&moe);
    let unique: std::collections::HashSet<_> = ids.iter().collect();
    assert_eq!(unique.len(), ids.len(), "a parameter appears twice");
    assert_eq!(moe.num_trainable_params(), count_params(&target).total());
    // A dense model of another backbone is refused.
    let other = tiny(None, vec![3], 2);
    assert!(
        init_from_dense(
            &Segmentor::new(&other, &device),
            &other,
            &target,
            0,
            &device
        )
        .is_err()
    );
}

/// The dense export of one dataset of an FFN-MoE model gives that dataset's logits (same
/// argmax) with a single model's parameters.
#[test]
fn a_dense_export_computes_what_the_moe_model_computes_for_its_dataset() {
    use s5::model::experts::dense_for_dataset;
    let device = device();
    let cfg = tiny(Some((3, 8)), vec![3, 4, 6], 4);
    let moe = Segmentor::new(&cfg, &device);
    let mut rng = Rng::fresh("dense export");
    let x = rng.tensor([2, 3, 32, 32], 1.0, &device);
    for t in 0..3 {
        let (dense, dense_cfg) = dense_for_dataset(&moe, &cfg, t, &device).unwrap();
        assert_eq!(dense_cfg.classes, vec![cfg.classes[t]]);
        assert_eq!(
            dense.num_trainable_params(),
            count_params(&dense_cfg).total()
        );
        let want = moe.forward(x.clone(), t);
        let got = dense.forward(x.clone(), 0);
        let (a, b) = (to_vec(got.clone()), to_vec(want.clone()));
        let worst = max_abs_diff(&format!("dataset {t} logits"), &a, &b);
        assert!(worst <= 1e-4, "dataset {t}: logits differ by {worst}");
        assert_eq!(
            to_vec(got.argmax(1).float()),
            to_vec(want.argmax(1).float()),
            "dataset {t}"
        );
    }
    assert!(dense_for_dataset(&moe, &cfg, 3, &device).is_err());
}

/// The authors' S4P UperNet checkpoint layout (mmseg names, `backbone.` prefix, PyTorch's
/// `[out, in]` Linear weights), written from `model`'s own tensors: backbone, neck and
/// decode_head, BatchNorm statistics included.
fn authors_state_dict(model: &Segmentor) -> Vec<(String, Vec<usize>, Vec<f32>)> {
    let mut out: Vec<(String, Vec<usize>, Vec<f32>)> = Vec::new();
    let mut put = |key: String, t: Tensor<1>, shape: Vec<usize>| out.push((key, shape, to_vec(t)));
    let flat = |t: Tensor<4>| {
        let dims = t.dims().to_vec();
        (t.flatten::<1>(0, 3), dims)
    };
    let linear =
        |put: &mut dyn FnMut(String, Tensor<1>, Vec<usize>), key: &str, l: &burn::nn::Linear| {
            let [i, o] = l.weight.val().dims();
            put(
                format!("{key}.weight"),
                l.weight.val().transpose().flatten(0, 1),
                vec![o, i],
            );
            let b = l.bias.as_ref().unwrap().val();
            put(format!("{key}.bias"), b, vec![o]);
        };
    let norm =
        |put: &mut dyn FnMut(String, Tensor<1>, Vec<usize>), key: &str, n: &burn::nn::LayerNorm| {
            let d = n.gamma.val().dims()[0];
            put(format!("{key}.weight"), n.gamma.val(), vec![d]);
            put(
                format!("{key}.bias"),
                n.beta.as_ref().unwrap().val(),
                vec![d],
            );
        };
    let vit = &model.backbone;
    let (w, dims) = flat(vit.patch_embed.weight.val());
    put(
        "backbone.patch_embed.projection.weight".into(),
        w,
        dims.clone(),
    );
    put(
        "backbone.patch_embed.projection.bias".into(),
        vit.patch_embed.bias.as_ref().unwrap().val(),
        vec![dims[0]],
    );
    let cls = vit.cls_token.val();
    let cls_dims = cls.dims().to_vec();
    put("backbone.cls_token".into(), cls.flatten(0, 2), cls_dims);
    let pos = vit.pos_embed.val();
    let pos_dims = pos.dims().to_vec();
    put("backbone.pos_embed".into(), pos.flatten(0, 2), pos_dims);
    for (i, block) in vit.blocks.iter().enumerate() {
        let b = format!("backbone.layers.{i}");
        norm(&mut put, &format!("{b}.ln1"), &block.norm1);
        let [d_in, d_out] = block.attn.qkv.weight.val().dims();
        put(
            format!("{b}.attn.attn.in_proj_weight"),
            block.attn.qkv.weight.val().transpose().flatten(0, 1),
            vec![d_out, d_in],
        );
        put(
            format!("{b}.attn.attn.in_proj_bias"),
            block.attn.qkv.bias.as_ref().unwrap().val(),
            vec![d_out],
        );
        linear(
            &mut put,
            &format!("{b}.attn.attn.out_proj"),
            &block.attn.proj,
        );
        norm(&mut put, &format!("{b}.ln2"), &block.norm2);
        linear(&mut put, &format!("{b}.ffn.layers.0.0"), &block.ffn.fc1);
        linear(
            &mut put,
            &format!("{b}.ffn.layers.1"),
            block.ffn.fc2.as_ref().expect("dense"),
        );
    }
    let neck = &model.neck;
    for (key, weight, bias) in [
        ("neck.upsample_4x.0", &neck.up4_a.weight, &neck.up4_a.bias),
        ("neck.upsample_4x.3", &neck.up4_b.weight, &neck.up4_b.bias),
        ("neck.upsample_2x.0", &neck.up2.weight, &neck.up2.bias),
    ] {
        let (w, dims) = flat(weight.val());
        put(format!("{key}.weight"), w, dims);
        let b = bias.as_ref().unwrap().val();
        let n = b.dims()[0];
        put(format!("{key}.bias"), b, vec![n]);
    }
    norm(&mut put, "neck.upsample_4x.1", &neck.up4_norm);
    let head = &model.decoders[0];
    let mut conv_bn = |key: String, block: &s5::model::upernet::ConvBnRelu| {
        let (w, dims) = flat(block.conv.weight.val());
        let c = dims[0];
        put(format!("{key}.conv.weight"), w, dims);
        put(format!("{key}.bn.weight"), block.bn.gamma.val(), vec![c]);
        put(format!("{key}.bn.bias"), block.bn.beta.val(), vec![c]);
        put(
            format!("{key}.bn.running_mean"),
            block.bn.running_mean.value(),
            vec![c],
        );
        put(
            format!("{key}.bn.running_var"),
            block.bn.running_var.value(),
            vec![c],
        );
    };
    for (i, block) in head.ppm.iter().enumerate() {
        conv_bn(format!("decode_head.psp_modules.{i}.1"), block);
    }
    conv_bn("decode_head.bottleneck".into(), &head.bottleneck);
    for (i, block) in head.laterals.iter().enumerate() {
        conv_bn(format!("decode_head.lateral_convs.{i}"), block);
    }
    for (i, block) in head.fpn_convs.iter().enumerate() {
        conv_bn(format!("decode_head.fpn_convs.{i}"), block);
    }
    conv_bn("decode_head.fpn_bottleneck".into(), &head.fpn_bottleneck);
    let (w, dims) = flat(head.classifier.weight.val());
    let k = dims[0];
    put("decode_head.conv_seg.weight".into(), w, dims);
    put(
        "decode_head.conv_seg.bias".into(),
        head.classifier.bias.as_ref().unwrap().val(),
        vec![k],
    );
    out
}

/// `s5 model import` of the authors' S4P UperNet layout (a checkpoint this test writes from
/// a model of its own, plus an auxiliary head s5 has no place for) loads backbone, neck and
/// decoder: the imported folder predicts exactly as the model it was written from, and
/// `s5 predict` takes the folder.
#[test]
fn model_import_loads_backbone_neck_and_decoder_into_a_folder_predict_takes() {
    use safetensors::{Dtype, tensor::TensorView};
    let device = device();
    let dir = tempfile::tempdir().unwrap();
    // What `s5 model import --backbone vit-t --classes 6` builds.
    let cfg = SegmentorConfig::new(VitConfig::vit_tiny(), vec![6]);
    let lock = crate::common::device_rng_lock();
    device.seed(11);
    let source = Segmentor::new(&cfg, &device);
    source.num_params(); // every parameter drawn now, under the lock
    drop(lock);
    let mut tensors = authors_state_dict(&source);
    tensors.push((
        "auxiliary_head.conv_seg.weight".into(),
        vec![6, 4, 1, 1],
        vec![0.5; 24],
    ));
    let bytes: Vec<(String, Vec<usize>, Vec<u8>)> = tensors
        .iter()
        .map(|(k, shape, v)| (k.clone(), shape.clone(), bytemuck::cast_slice(v).to_vec()))
        .collect();
    let views: Vec<(String, TensorView<'_>)> = bytes
        .iter()
        .map(|(k, shape, b)| {
            (
                k.clone(),
                TensorView::new(Dtype::F32, shape.clone(), b).unwrap(),
            )
        })
        .collect();
    let checkpoint = dir.path().join("upernet_s4p.safetensors");
    std::fs::write(&checkpoint, safetensors::serialize(views, None).unwrap()).unwrap();
    let folder = dir.path().join("imported");
    let out = crate::common::s5()
        .args(["model", "import"])
        .arg(&checkpoint)
        .args(["--backbone", "vit-t", "--classes", "6", "--out"])
        .arg(&folder)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let count = |part: &str| -> usize {
        let line = stdout
            .lines()
            .find(|l| l.trim_start().starts_with(part))
            .unwrap_or_else(|| panic!("{stdout}"));
        line.split_whitespace().nth(1).unwrap().parse().unwrap()
    };
    let decoder_keys = tensors
        .iter()
        .filter(|(k, ..)| k.starts_with("decode_head."))
        .count();
    let neck_keys = tensors
        .iter()
        .filter(|(k, ..)| k.starts_with("neck."))
        .count();
    assert_eq!(count("neck"), neck_keys, "{stdout}");
    assert_eq!(count("decoder"), decoder_keys, "{stdout}");
    assert_eq!(
        count("backbone"),
        tensors.len() - 1 - neck_keys - decoder_keys,
        "{stdout}"
    );
    assert!(
        stdout.contains("not mapped (ignored): auxiliary_head.conv_seg.weight"),
        "{stdout}"
    );
    assert!(!stdout.contains("missing"), "{stdout}");
    // The folder verifies and holds the very model that wrote the checkpoint.
    s5::run::checkpoint::verify(&folder).unwrap();
    let (imported, card, _) = s5::train::load_model(&folder, &device).unwrap();
    assert_eq!(card.segmentor, cfg);
    let x = Rng::fresh("import").tensor([1, 3, 64, 64], 1.0, &device);
    let (a, b) = (
        to_vec(imported.forward(x.clone(), 0)),
        to_vec(source.forward(x, 0)),
    );
    let worst = max_abs_diff("imported vs source logits", &a, &b);
    assert!(
        worst <= 1e-5,
        "the imported model predicts differently by {worst}"
    );
    let image = dir.path().join("tile.png");
    image::RgbImage::from_fn(64, 64, |x, y| {
        image::Rgb([(x * 4) as u8, (y * 4) as u8, 90])
    })
    .save(&image)
    .unwrap();
    let out = crate::common::s5()
        .args(["predict", "--mode", "whole", "--model"])
        .arg(&folder)
        .arg("--out")
        .arg(dir.path().join("pred"))
        .arg(&image)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(dir.path().join("pred/index/tile.png").is_file());
    // --out into a folder that exists is refused before anything is loaded.
    let again = crate::common::s5()
        .args(["model", "import"])
        .arg(&checkpoint)
        .args(["--backbone", "vit-t", "--classes", "6", "--out"])
        .arg(&folder)
        .output()
        .unwrap();
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("exists already"));
}
