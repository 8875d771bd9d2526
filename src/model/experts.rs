//! FFN-MoE from a dense model, and a dense single-dataset model back from FFN-MoE (paper
//! §3, "Multi-Dataset Fine-Tuning with MoE").
//!
//! **Expansion** (as the authors' code initialises MoE-MDF from a dense S4P checkpoint):
//! every weight the two models share is copied; each block's dense `fc2` (`[F, D]`, burn's
//! `[in, out]`) gives the shared expert its first `D − P` output columns and every dataset
//! expert a copy of the last `P`, biases likewise, so the expanded backbone computes exactly
//! what the dense one did; every dataset's decoder is a copy of the dense model's decoder
//! with a new head (its classes are the dataset's).
//!
//! **Export**: the MoE output for dataset t is `[h·W_shared + b_shared | h·W_t + b_t]`,
//! which is `h·[W_shared | W_t] + [b_shared | b_t]`: a dense `fc2` with the stacked matrix.
//! With dataset t's decoder and head, the dense model computes what the MoE model computes
//! for t, at a single model's parameter count.

use burn::module::{Module, ModuleMapper, Param};
use burn::nn::Linear;
use burn::tensor::{Device, Tensor};

use super::config::{FfnKind, SegmentorConfig};
use super::ffn::MoeProjection;
use super::segmentor::Segmentor;
use crate::error::{Error, Result};

/// A new parameter of these values (a leaf: on an autodiff device, computed tensors are not).
fn param<const D: usize>(values: Tensor<D>) -> Param<Tensor<D>> {
    Param::from_tensor(values.detach())
}

/// Gives every parameter a new identity (its values unchanged), so copies of one module
/// are separate parameters for the optimiser.
struct FreshIds;

impl ModuleMapper for FreshIds {
    fn map_float<const D: usize>(&mut self, p: Param<Tensor<D>>) -> Param<Tensor<D>> {
        param(p.val())
    }
}

fn mismatch(reason: String) -> Error {
    Error::Config { reason }
}

/// The model of `target` initialised from `dense` (a dense model of `dense_cfg`, e.g. an
/// S4P run) for fine-tuning: the backbone and neck copied (FFN-MoE experts expanded from the
/// dense FFNs when `target` has them, so backbone and neck compute what the dense ones did
/// for every dataset), and the dense model's decoder `from_decoder` copied to every dataset
/// of `target` with a new head (its classes are the dataset's).
///
/// `target` must have `dense_cfg`'s backbone (dense or FFN-MoE) and decoder settings.
pub fn init_from_dense(
    dense: &Segmentor,
    dense_cfg: &SegmentorConfig,
    target: &SegmentorConfig,
    from_decoder: usize,
    device: &Device,
) -> Result<Segmentor> {
    let (datasets, expert_dim) = match target.backbone.ffn {
        FfnKind::Moe {
            datasets,
            expert_dim,
        } => (datasets, Some(expert_dim)),
        FfnKind::Dense => (target.classes.len(), None),
    };
    let mut same = target.backbone.clone();
    same.ffn = dense_cfg.backbone.ffn;
    if dense_cfg.backbone.ffn != FfnKind::Dense || same != dense_cfg.backbone {
        return Err(mismatch(
            "fine-tuning starts from a dense model of the same backbone (dim, depth, \
             heads, patch size, FFN width)"
                .into(),
        ));
    }
    if (dense_cfg.decoder_channels, dense_cfg.pool_scales)
        != (target.decoder_channels, target.pool_scales)
        || from_decoder >= dense.decoders.len()
        || target.classes.len() != datasets
    {
        return Err(mismatch(format!(
            "decoders do not fit: the dense model has {} decoder(s) of {} channels, the target \
             {} of {} channels for {datasets} dataset(s)",
            dense.decoders.len(),
            dense_cfg.decoder_channels,
            target.classes.len(),
            target.decoder_channels
        )));
    }
    let mut moe = Segmentor::new(target, device);
    // Everything with the same name and shape: patch embedding, tokens, attention, norms,
    // fc1, neck (and the dense decoders, replaced below).
    moe = moe.load_record(
        dense
            .clone()
            .into_record()
            .allow_partial(true)
            .allow_unused(true)
            .validate(false),
    );
    let d = target.backbone.dim;
    let Some(expert_dim) = expert_dim else {
        // Dense: everything but the decoders came with the record.
        moe.decoders = copied_decoders(dense, from_decoder, target, device);
        return Ok(moe);
    };
    for (block, dense_block) in moe.backbone.blocks.iter_mut().zip(&dense.backbone.blocks) {
        let fc2 = dense_block.ffn.fc2.as_ref().expect("a dense block has fc2");
        let w = fc2.weight.val();
        let f = w.dims()[0];
        let b = fc2
            .bias
            .as_ref()
            .map(|b| b.val())
            .unwrap_or_else(|| Tensor::zeros([d], device));
        let w_tail = w.clone().narrow(1, d - expert_dim, expert_dim);
        let b_tail = b.clone().narrow(0, d - expert_dim, expert_dim);
        block.ffn.moe = Some(MoeProjection {
            w_shared: param(w.narrow(1, 0, d - expert_dim)),
            b_shared: param(b.narrow(0, 0, d - expert_dim)),
            w_expert: param(w_tail.reshape([1, f, expert_dim]).repeat_dim(0, datasets)),
            b_expert: param(b_tail.reshape([1, expert_dim]).repeat_dim(0, datasets)),
        });
    }
    moe.decoders = copied_decoders(dense, from_decoder, target, device);
    Ok(moe)
}

/// Every decoder of `target`: a copy of `dense`'s decoder `from_decoder` with a new head.
fn copied_decoders(
    dense: &Segmentor,
    from_decoder: usize,
    target: &SegmentorConfig,
    device: &Device,
) -> Vec<crate::model::upernet::UperNet> {
    // Bodies and heads come from two fresh models, so nothing is shared between them or with
    // `dense`.
    let source = dense.decoders[from_decoder].clone().into_record();
    let heads = Segmentor::new(target, device).decoders;
    Segmentor::new(target, device)
        .decoders
        .into_iter()
        .zip(heads)
        .map(|(body, head)| {
            let copy = body.load_record(
                source
                    .clone()
                    .allow_partial(true)
                    .allow_unused(true)
                    .validate(false),
            );
            // Fresh identities for the copied body; the new head keeps its own, and its lazy
            // initialisation, so it draws its values when first used, from the run's seeded
            // generator, as a model built from scratch does (a resumed run gets the same).
            let mut copy = copy.map(&mut FreshIds);
            copy.classifier = head.classifier;
            copy
        })
        .collect()
}

/// The dense single-dataset model of dataset `dataset` of an FFN-MoE model of `cfg`, and
/// its configuration: the same outputs for that dataset, a single model's parameters.
pub fn dense_for_dataset(
    moe: &Segmentor,
    cfg: &SegmentorConfig,
    dataset: usize,
    device: &Device,
) -> Result<(Segmentor, SegmentorConfig)> {
    let FfnKind::Moe { datasets, .. } = cfg.backbone.ffn else {
        return Err(mismatch(
            "the model has dense FFNs already: nothing to export".into(),
        ));
    };
    if dataset >= datasets || dataset >= moe.decoders.len() {
        return Err(mismatch(format!(
            "dataset {dataset}: the model has {datasets} dataset(s)"
        )));
    }
    let mut dense_cfg = cfg.clone();
    dense_cfg.backbone.ffn = FfnKind::Dense;
    dense_cfg.classes = vec![cfg.classes[dataset]];
    let mut dense = Segmentor::new(&dense_cfg, device);
    dense = dense.load_record(
        moe.clone()
            .into_record()
            .allow_partial(true)
            .allow_unused(true)
            .validate(false),
    );
    for (block, moe_block) in dense.backbone.blocks.iter_mut().zip(&moe.backbone.blocks) {
        let p = moe_block
            .ffn
            .moe
            .as_ref()
            .expect("an FFN-MoE block has experts");
        let w_expert = p.w_expert.val().narrow(0, dataset, 1);
        let [_, f, e] = w_expert.dims();
        let b_expert = p.b_expert.val().narrow(0, dataset, 1).reshape([e]);
        let fc2: &mut Option<Linear> = &mut block.ffn.fc2;
        let fc2 = fc2.as_mut().expect("a dense block has fc2");
        fc2.weight = param(Tensor::cat(
            vec![p.w_shared.val(), w_expert.reshape([f, e])],
            1,
        ));
        fc2.bias = Some(param(Tensor::cat(vec![p.b_shared.val(), b_expert], 0)));
    }
    dense.decoders = vec![
        Segmentor::new(&dense_cfg, device)
            .decoders
            .remove(0)
            .load_record(moe.decoders[dataset].clone().into_record()),
    ];
    Ok((dense, dense_cfg))
}
