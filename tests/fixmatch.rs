//! One FixMatch step (`s5::train::fixmatch`) against a reference written from the method's
//! description in plain tensor ops and CPU loops: same inputs, boxes and draws ⇒ same L_s,
//! L_u, mask ratio and gradients.

use burn::module::{Module, ModuleVisitor, Param};
use burn::tensor::activation::{log_softmax, softmax};
use burn::tensor::{Device, Int, Tensor, TensorData};
use s5::data::augment::CutMixBox;
use s5::data::loader::UnlabeledItem;
use s5::model::Segmentor;
use s5::train::config::{FixMatchSetup, LossForm};
use s5::train::fixmatch::{Normalizers, UnlabeledTensors, fixmatch_step, mixed_valid_px};

use crate::common::{Rng, assert_grads_close, device, small_segmentor, to_vec};

const S: usize = 32;

fn random_items(rng: &mut Rng, n: usize) -> Vec<UnlabeledItem> {
    (0..n)
        .map(|i| {
            let plane = |rng: &mut Rng| (0..3 * S * S).map(|_| rng.normal(1.0)).collect();
            let cutmix = (i % 3 != 2).then(|| {
                let w = 4 + rng.below(20) as u32;
                let h = 4 + rng.below(20) as u32;
                CutMixBox {
                    x_px: rng.below(S - w as usize + 1) as u32,
                    y_px: rng.below(S - h as usize + 1) as u32,
                    width_px: w,
                    height_px: h,
                }
            });
            UnlabeledItem {
                weak: plane(rng),
                strong: plane(rng),
                // A padded band on some items.
                valid: (0..S * S)
                    .map(|p| u8::from(i % 2 == 0 || p % S < S - 5))
                    .collect(),
                cutmix,
                truth: (i != 1).then(|| (0..S * S).map(|_| rng.below(4) as u8).collect()),
                weak_rgb: image::RgbImage::new(S as u32, S as u32),
                strong_rgb: image::RgbImage::new(S as u32, S as u32),
            }
        })
        .collect()
}

/// Gradients of every parameter, in visiting order.
fn grads_of(model: &Segmentor, loss: Tensor<1>) -> Vec<Vec<f32>> {
    struct Collect<'a>(&'a burn::tensor::Gradients, Vec<Vec<f32>>);
    impl ModuleVisitor for Collect<'_> {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
            if let Some(g) = param.val().grad(self.0) {
                self.1.push(to_vec(g));
            }
        }
    }
    let grads = loss.backward();
    let mut c = Collect(&grads, Vec::new());
    model.visit(&mut c);
    c.1
}

#[test]
fn one_fixmatch_step_matches_a_plain_tensor_reference() {
    let plain: Device = device();
    let dev = plain.clone().autodiff();
    let k = 4;
    let model = Segmentor::new(&small_segmentor(2, k), &dev);
    let teacher = model.valid();
    let mut rng = Rng::fresh("fixmatch step");
    let (bl, bu) = (2, 3);
    let images_l = rng.tensor([bl, 3, S, S], 1.0, &dev);
    let labels_l: Vec<i32> = (0..bl * S * S).map(|_| rng.below(k) as i32).collect();
    let valid_l: Vec<f32> = (0..bl * S * S)
        .map(|p| f32::from(u8::from(p % 7 != 0)))
        .collect();
    let labeled_px: f32 = valid_l.iter().sum();
    let labels_l = Tensor::<3, Int>::from_data(TensorData::new(labels_l, [bl, S, S]), &dev);
    let valid_l = Tensor::<3>::from_data(TensorData::new(valid_l, [bl, S, S]), &dev);
    let items_u = random_items(&mut rng, bu);
    let items_p = random_items(&mut rng, bu);

    // ---- Reference ----
    let n = S * S;
    let upload = |items: &[UnlabeledItem], weak: bool| -> Tensor<4> {
        let v: Vec<f32> = items
            .iter()
            .flat_map(|i| {
                if weak {
                    i.weak.clone()
                } else {
                    i.strong.clone()
                }
            })
            .collect();
        Tensor::from_data(TensorData::new(v, [items.len(), 3, S, S]), &plain)
    };
    let weak = Tensor::cat(vec![upload(&items_u, true), upload(&items_p, true)], 0);
    let probs = softmax(teacher.forward(weak, 0), 1);
    let (conf, labels) = probs.clone().max_dim_with_indices(1);
    let conf = to_vec(conf);
    let labels: Vec<i64> = labels.into_data().convert::<i64>().try_to_vec().unwrap();
    // The teacher's mean entropy per unlabeled image (unmixed weak views): over its valid
    // pixels, the background class's term (3) left out (paper Eq. 1).
    let probs_v = to_vec(probs.clone());
    let entropy_ref: Vec<f64> = (0..bu)
        .map(|i| {
            let (mut sum, mut count) = (0f64, 0f64);
            for p in 0..n {
                if items_u[i].valid[p] == 0 {
                    continue;
                }
                count += 1.0;
                for c in (0..k).filter(|&c| c != 3) {
                    let q = f64::from(probs_v[(i * k + c) * n + p]);
                    if q > 0.0 {
                        sum -= q * q.ln();
                    }
                }
            }
            sum / count.max(1.0)
        })
        .collect();
    // Truth where an item has one (item 1 has none): as a label and a 0/1 validity.
    let truth_of = |item: &UnlabeledItem| -> (Vec<i64>, Vec<f32>) {
        match &item.truth {
            Some(t) => (t.iter().map(|&c| i64::from(c)).collect(), vec![1.0; n]),
            None => (vec![0; n], vec![0.0; n]),
        }
    };
    // CutMix on the CPU, plane by plane, with the boxes' own paste.
    let mut strong_mix: Vec<f32> = items_u.iter().flat_map(|i| i.strong.clone()).collect();
    let (mut lab_mix, mut conf_mix, mut valid_mix) = (Vec::new(), Vec::new(), Vec::new());
    let (mut truth_mix, mut truth_valid_mix) = (Vec::new(), Vec::new());
    for i in 0..bu {
        let mut l: Vec<i64> = labels[i * n..(i + 1) * n].to_vec();
        let mut c: Vec<f32> = conf[i * n..(i + 1) * n].to_vec();
        let mut v: Vec<f32> = items_u[i].valid.iter().map(|&x| f32::from(x)).collect();
        let (mut t, mut tv) = truth_of(&items_u[i]);
        if let Some(cut) = items_u[i].cutmix {
            let j = bu + i;
            cut.paste(&mut l, &labels[j * n..(j + 1) * n], S as u32, 1);
            cut.paste(&mut c, &conf[j * n..(j + 1) * n], S as u32, 1);
            let pv: Vec<f32> = items_p[i].valid.iter().map(|&x| f32::from(x)).collect();
            cut.paste(&mut v, &pv, S as u32, 1);
            let (pt, ptv) = truth_of(&items_p[i]);
            cut.paste(&mut t, &pt, S as u32, 1);
            cut.paste(&mut tv, &ptv, S as u32, 1);
            for ch in 0..3 {
                let at = (i * 3 + ch) * n;
                cut.paste(
                    &mut strong_mix[at..at + n],
                    &items_p[i].strong[ch * n..(ch + 1) * n],
                    S as u32,
                    1,
                );
            }
        }
        lab_mix.extend(l);
        conf_mix.extend(c);
        valid_mix.extend(v);
        truth_mix.extend(t);
        truth_valid_mix.extend(tv);
    }
    // τ between two well-separated confidences near the median: about half the pixels in,
    // and no pixel so close to τ that rounding could move it across.
    let mut sorted: Vec<f32> = conf_mix.clone();
    sorted.sort_by(f32::total_cmp);
    let mid = sorted.len() / 2;
    let i = (mid..sorted.len() - 1)
        .find(|&i| sorted[i + 1] - sorted[i] > 1e-5)
        .expect("distinct confidences");
    let threshold = f64::from((sorted[i] + sorted[i + 1]) / 2.0);
    let setup = FixMatchSetup {
        threshold,
        lambda: 0.7,
        loss_form: LossForm::Code,
        ..FixMatchSetup::default()
    };
    // Two identical steps (no dropout, no drop path): burn's backward consumes a graph, so
    // the gradients of L_s and of L_u each need a forward of their own.
    let step = || {
        fixmatch_step(
            &model,
            (images_l.clone(), labels_l.clone(), valid_l.clone()),
            &UnlabeledTensors::from_items(&items_u, S, &plain),
            &UnlabeledTensors::from_items(&items_p, S, &plain),
            &setup,
            Some(3),
            Normalizers {
                labeled_px: f64::from(labeled_px),
                mixed_px: mixed_valid_px(&items_u, &items_p),
            },
        )
    };
    let out = step();
    let supervised_again = step().supervised;

    let weight: Vec<f32> = conf_mix
        .iter()
        .zip(&valid_mix)
        .map(|(&c, &v)| {
            if f64::from(c) >= setup.threshold {
                v
            } else {
                0.0
            }
        })
        .collect();
    let valid_sum: f32 = valid_mix.iter().sum();
    // The CPU count of valid mixed pixels (the L_u denominator) is the reference's.
    assert_eq!(mixed_valid_px(&items_u, &items_p), f64::from(valid_sum));
    let expected_ratio = weight.iter().sum::<f32>() / valid_sum;
    assert!(
        expected_ratio > 0.02 && expected_ratio < 0.98,
        "the test wants a partial mask, got {expected_ratio}"
    );
    let strong_mix = Tensor::<4>::from_data(TensorData::new(strong_mix, [bu, 3, S, S]), &dev);
    let student = || {
        model.forward(
            Tensor::cat(vec![images_l.clone(), strong_mix.clone()], 0),
            0,
        )
    };
    let logits = student();
    let one_hot = |l: Vec<i64>, b: usize| {
        let v: Vec<f32> = (0..b)
            .flat_map(|bi| {
                let l = &l;
                (0..k).flat_map(move |c| {
                    (0..n).map(move |p| f32::from(u8::from(l[bi * n + p] == c as i64)))
                })
            })
            .collect();
        Tensor::<4>::from_data(TensorData::new(v, [b, k, S, S]), &dev)
    };
    let ce = |logits: Tensor<4>, target: Tensor<4>| -> Tensor<3> {
        let [b, _, h, w] = logits.dims();
        (log_softmax(logits, 1) * target)
            .sum_dim(1)
            .reshape([b, h, w])
            .neg()
    };
    let labels_l_vec: Vec<i64> = labels_l.into_data().convert::<i64>().try_to_vec().unwrap();
    let l_s_of = |logits: Tensor<4>| {
        (ce(logits.narrow(0, 0, bl), one_hot(labels_l_vec.clone(), bl)) * valid_l.clone()).sum()
            / valid_l.clone().sum()
    };
    let l_s_ref = l_s_of(logits.clone());
    let weight = Tensor::<3>::from_data(TensorData::new(weight, [bu, S, S]), &dev);
    let l_u_ref =
        (ce(logits.narrow(0, bl, bu), one_hot(lab_mix.clone(), bu)) * weight).sum() / valid_sum;

    let scalar = |t: Tensor<1>| s5::train::loss::scalar(t).unwrap();
    let close = |a: f64, b: f64| (a - b).abs() <= 1e-4 * b.abs().max(1.0);
    let (l_s, l_u) = (
        scalar(out.supervised.clone()),
        scalar(out.unsupervised.clone()),
    );
    assert!(
        close(l_s, scalar(l_s_ref.clone())),
        "L_s {l_s} vs reference"
    );
    assert!(
        close(l_u, scalar(l_u_ref.clone())),
        "L_u {l_u} vs reference"
    );
    let total_ref = (l_s_ref.clone() + l_u_ref.clone() * setup.lambda) / 2.0;
    assert!(close(scalar(out.loss.clone()), scalar(total_ref)));
    let counts: std::collections::BTreeMap<String, f64> =
        out.counts.clone().read().unwrap().into_iter().collect();
    assert_eq!(counts["px/valid"], f64::from(valid_sum));
    let ratio = counts["px/confident"] / counts["px/valid"];
    assert!(close(ratio, f64::from(expected_ratio)));
    // Pseudo-label accuracy, all pixels and confident ones: counts of 0/1 pixels, exact.
    let (mut with_truth, mut correct, mut confident_with_truth, mut correct_confident) =
        (0f64, 0f64, 0f64, 0f64);
    for p in 0..bu * n {
        let known = f64::from(valid_mix[p] * truth_valid_mix[p]);
        let right = known * f64::from(u8::from(lab_mix[p] == truth_mix[p]));
        let confident = f64::from(u8::from(f64::from(conf_mix[p]) >= setup.threshold));
        with_truth += known;
        correct += right;
        confident_with_truth += known * confident;
        correct_confident += right * confident;
    }
    assert!(
        confident_with_truth > 0.0 && correct < with_truth,
        "the test wants confident pixels with truth and some wrong pseudo-labels"
    );
    for (name, want) in [
        ("px/with_truth", with_truth),
        ("px/correct", correct),
        ("px/confident_with_truth", confident_with_truth),
        ("px/correct_confident", correct_confident),
    ] {
        assert_eq!(counts[name], want, "{name}");
    }
    let entropy = to_vec(out.entropy.clone());
    for (i, (&got, &want)) in entropy.iter().zip(&entropy_ref).enumerate() {
        assert!(
            close(f64::from(got), want),
            "entropy of image {i}: {got} vs {want}"
        );
    }
    // What the step logs, from those sums and entropies.
    let sums: std::collections::BTreeMap<String, f64> = counts.clone();
    let per_image: Vec<f64> = entropy.iter().map(|&e| f64::from(e)).collect();
    let (_, stats) = s5::train::recipe::fixmatch::summarize(&sums, &per_image);
    use s5::run::keys;
    assert!(close(stats[&keys::MASK_RATIO], f64::from(expected_ratio)));
    let mean_entropy = entropy_ref.iter().sum::<f64>() / bu as f64;
    assert!(close(stats[&keys::MEAN_ENTROPY], mean_entropy));
    assert!(close(
        stats[&keys::PSEUDO_LABEL_ACC_ALL],
        correct / with_truth
    ));
    assert!(close(
        stats[&keys::PSEUDO_LABEL_ACC_CONFIDENT],
        correct_confident / confident_with_truth
    ));
    // No confident pixel with truth: the confident accuracy is undefined, so not logged
    // (never a 0); the accuracy over all pixels still is.
    let mut none_confident = sums.clone();
    none_confident.insert("px/confident_with_truth".into(), 0.0);
    none_confident.insert("px/correct_confident".into(), 0.0);
    let (_, stats) = s5::train::recipe::fixmatch::summarize(&none_confident, &per_image);
    assert!(
        !stats.contains_key(&keys::PSEUDO_LABEL_ACC_CONFIDENT),
        "{stats:?}"
    );
    assert!(stats.contains_key(&keys::PSEUDO_LABEL_ACC_ALL), "{stats:?}");
    // Gradients of L_s and of L_u reach the same values through both computations.
    let got = grads_of(&model, supervised_again);
    let want = grads_of(&model, l_s_of(student()));
    assert_grads_close("L_s", &got, &want, 1e-3);
    let got = grads_of(&model, out.unsupervised);
    let want = grads_of(&model, l_u_ref);
    assert_grads_close("L_u", &got, &want, 1e-3);
}
