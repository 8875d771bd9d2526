//! Importing pretrained ViT weights: MAE / timm checkpoints and the authors' S4P backbones
//! (`.pth` / `.pt` and `.safetensors`; a `{'model': ...}` or `{'state_dict': ...}` wrapping
//! and `module.` / `backbone.` prefixes are taken off). The position table
//! is resized bicubically to the model's grid (its cls entry kept), and a dense checkpoint
//! loaded into an FFN-MoE model initialises the shared expert from the first D−P rows of fc2
//! and every dataset expert from a copy of the last P rows. Keys that do not map are listed
//! in the report, never silently dropped. Reading a checkpoint runs no code: PyTorch's pickle
//! is parsed by `pytorch-reader`, which only rebuilds tensors, never calls anything.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use burn::module::Param;
use burn::nn::{LayerNorm, Linear};
use burn::tensor::{Device, Tensor, TensorData};
use serde::Serialize;

use super::resize::{Resample, resize};
use super::segmentor::Segmentor;
use super::upernet::{ConvBnRelu, UperNet};
use super::vit::Vit;
use crate::error::{Error, Result};

/// A checkpoint's tensors: name → (shape, f32 values).
pub type RawTensors = BTreeMap<String, (Vec<usize>, Vec<f32>)>;

/// What an import did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ImportReport {
    /// Checkpoint keys (timm names) loaded into the model.
    pub loaded: Vec<String>,
    /// Checkpoint keys s5 has no place for (e.g. timm's final `norm`, a classifier `head`).
    pub unmapped: Vec<String>,
    /// Model tensors the checkpoint did not provide (left as initialised).
    pub missing: Vec<String>,
    /// (from, to) patch grids when the position table was resized.
    pub pos_resized: Option<([usize; 2], [usize; 2])>,
    /// Whether fc2 rows were split into shared and dataset experts.
    pub init_from_dense: bool,
}

/// A float element type both checkpoint formats can hold.
#[derive(Clone, Copy)]
enum Float {
    F32,
    F16,
    Bf16,
}

/// Little-endian `bytes` of `kind` as f32 values.
fn decode_floats(kind: Float, bytes: &[u8]) -> Vec<f32> {
    match kind {
        Float::F32 => bytes
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect(),
        Float::F16 => bytes
            .chunks_exact(2)
            .map(|b| half::f16::from_le_bytes([b[0], b[1]]).to_f32())
            .collect(),
        Float::Bf16 => bytes
            .chunks_exact(2)
            .map(|b| half::bf16::from_le_bytes([b[0], b[1]]).to_f32())
            .collect(),
    }
}

/// Reads every tensor of a `.safetensors` file as f32 (F32, F16 and BF16 accepted).
pub fn read_safetensors(path: &Path) -> Result<RawTensors> {
    let fail = |reason: String| Error::Checkpoint {
        path: path.to_path_buf(),
        reason,
    };
    let bytes = std::fs::read(path).map_err(|e| Error::reading(path, e, Some("checkpoint")))?;
    let file = safetensors::SafeTensors::deserialize(&bytes)
        .map_err(|e| fail(format!("not a safetensors file: {e}")))?;
    let mut out = RawTensors::new();
    for (name, view) in file.tensors() {
        let data = view.data();
        let kind = match view.dtype() {
            safetensors::Dtype::F32 => Float::F32,
            safetensors::Dtype::F16 => Float::F16,
            safetensors::Dtype::BF16 => Float::Bf16,
            other => {
                return Err(fail(format!(
                    "tensor `{name}` has dtype {other:?}; s5 reads F32, F16 and BF16"
                )));
            }
        };
        let values = decode_floats(kind, data);
        out.insert(name, (view.shape().to_vec(), values));
    }
    Ok(out)
}

/// Reads every tensor of a PyTorch checkpoint (`torch.save` ZIP or legacy formats) as f32.
pub fn read_pytorch(path: &Path) -> Result<RawTensors> {
    let fail = |reason: String| Error::Checkpoint {
        path: path.to_path_buf(),
        reason,
    };
    if !path.is_file() {
        return Err(Error::MissingFile {
            path: path.to_path_buf(),
            context: Some("checkpoint".into()),
        });
    }
    let reader = pytorch_reader::PytorchReader::new(path)
        .map_err(|e| fail(format!("not a readable PyTorch checkpoint: {e}")))?;
    let mut out = RawTensors::new();
    for (name, tensor) in reader.tensors() {
        let bytes = tensor
            .read()
            .map_err(|e| fail(format!("tensor `{name}`: {e}")))?;
        let kind = match tensor.dtype() {
            pytorch_reader::DType::F32 => Float::F32,
            pytorch_reader::DType::F16 => Float::F16,
            pytorch_reader::DType::BF16 => Float::Bf16,
            // Integer buffers (e.g. BatchNorm's num_batches_tracked) are not weights s5 loads.
            _ => continue,
        };
        let values = decode_floats(kind, &bytes);
        out.insert(name.clone(), (tensor.shape().to_vec(), values));
    }
    Ok(out)
}

/// Reads a checkpoint by extension: `.safetensors`, or `.pth` / `.pt` / `.bin` (PyTorch).
pub fn read_checkpoint(path: &Path) -> Result<RawTensors> {
    match path.extension().and_then(|e| e.to_str()) {
        Some("safetensors") => read_safetensors(path),
        Some("pth" | "pt" | "bin" | "ckpt") => read_pytorch(path),
        _ => Err(Error::Checkpoint {
            path: path.to_path_buf(),
            reason: "unknown checkpoint format: expected .safetensors, .pth or .pt".into(),
        }),
    }
}

/// timm / MAE names for the authors' (mmseg) names, prefixes stripped.
pub fn normalise_key(key: &str) -> String {
    let mut k = key;
    // Wrappings and prefixes, in any combination ("model.module.backbone.blocks...").
    while let Some(rest) = ["module.", "model.", "state_dict.", "backbone."]
        .iter()
        .find_map(|p| k.strip_prefix(p))
    {
        k = rest;
    }
    let mut k = k.to_string();
    for (from, to) in [
        ("layers.", "blocks."),
        (".ln1.", ".norm1."),
        (".ln2.", ".norm2."),
        ("patch_embed.projection.", "patch_embed.proj."),
        ("attn.attn.in_proj_weight", "attn.qkv.weight"),
        ("attn.attn.in_proj_bias", "attn.qkv.bias"),
        ("attn.attn.out_proj.", "attn.proj."),
        ("ffn.layers.0.0.", "mlp.fc1."),
        ("ffn.layers.1.", "mlp.fc2."),
    ] {
        if k.contains(from) {
            k = k.replacen(from, to, 1);
        }
    }
    k
}

struct Source<'a> {
    tensors: BTreeMap<String, &'a (Vec<usize>, Vec<f32>)>,
    used: BTreeSet<String>,
    missing: Vec<String>,
    path: &'a Path,
    device: &'a Device,
}

impl<'a> Source<'a> {
    fn new(
        tensors: BTreeMap<String, &'a (Vec<usize>, Vec<f32>)>,
        path: &'a Path,
        device: &'a Device,
    ) -> Self {
        Self {
            tensors,
            used: BTreeSet::new(),
            missing: Vec::new(),
            path,
            device,
        }
    }

    fn take<const D: usize>(&mut self, key: &str, shape: [usize; D]) -> Result<Option<Tensor<D>>> {
        let Some((got, values)) = self.tensors.get(key) else {
            self.missing.push(key.to_string());
            return Ok(None);
        };
        if got.as_slice() != shape.as_slice() {
            return Err(Error::Checkpoint {
                path: self.path.to_path_buf(),
                reason: format!(
                    "`{key}` is {got:?} but the model needs {shape:?}: wrong backbone size?"
                ),
            });
        }
        self.used.insert(key.to_string());
        Ok(Some(Tensor::from_data(
            TensorData::new(values.clone(), shape),
            self.device,
        )))
    }

    /// A PyTorch Linear (`[out, in]`) into burn's (`[in, out]`).
    fn linear(&mut self, prefix: &str, linear: &mut Linear) -> Result<()> {
        let [i, o] = linear.weight.lazy_shape().dims::<2>();
        if let Some(w) = self.take(&format!("{prefix}.weight"), [o, i])? {
            linear.weight = Param::from_tensor(w.transpose());
        }
        if let Some(b) = self.take(&format!("{prefix}.bias"), [o])? {
            linear.bias = Some(Param::from_tensor(b));
        }
        Ok(())
    }

    /// An mmseg `ConvModule` (conv without bias + BatchNorm with running statistics).
    fn conv_bn(&mut self, prefix: &str, block: &mut ConvBnRelu) -> Result<()> {
        let shape = block.conv.weight.lazy_shape().dims::<4>();
        if let Some(w) = self.take(&format!("{prefix}.conv.weight"), shape)? {
            block.conv.weight = Param::from_tensor(w);
        }
        let c = shape[0];
        if let Some(g) = self.take(&format!("{prefix}.bn.weight"), [c])? {
            block.bn.gamma = Param::from_tensor(g);
        }
        if let Some(b) = self.take(&format!("{prefix}.bn.bias"), [c])? {
            block.bn.beta = Param::from_tensor(b);
        }
        if let Some(m) = self.take(&format!("{prefix}.bn.running_mean"), [c])? {
            block.bn.running_mean = burn::module::RunningState::new(m);
        }
        if let Some(v) = self.take(&format!("{prefix}.bn.running_var"), [c])? {
            block.bn.running_var = burn::module::RunningState::new(v);
        }
        Ok(())
    }

    /// A bias-carrying conv or deconv weight pair.
    fn conv<const D: usize>(
        &mut self,
        prefix: &str,
        weight: &mut Param<Tensor<D>>,
        bias: &mut Option<Param<Tensor<1>>>,
    ) -> Result<()> {
        let shape = weight.lazy_shape().dims::<D>();
        if let Some(w) = self.take(&format!("{prefix}.weight"), shape)? {
            *weight = Param::from_tensor(w);
        }
        if let Some(b) = bias.as_ref() {
            let n = b.lazy_shape().dims::<1>()[0];
            if let Some(t) = self.take(&format!("{prefix}.bias"), [n])? {
                *bias = Some(Param::from_tensor(t));
            }
        }
        Ok(())
    }

    fn norm(&mut self, prefix: &str, norm: &mut LayerNorm) -> Result<()> {
        let d = norm.gamma.lazy_shape().dims::<1>()[0];
        if let Some(w) = self.take(&format!("{prefix}.weight"), [d])? {
            norm.gamma = Param::from_tensor(w);
        }
        if let Some(b) = self.take(&format!("{prefix}.bias"), [d])? {
            norm.beta = Some(Param::from_tensor(b));
        }
        Ok(())
    }
}

/// Loads a ViT checkpoint (any key naming above) into `vit`.
pub fn load_vit(
    vit: &mut Vit,
    raw: &RawTensors,
    path: &Path,
    device: &Device,
) -> Result<ImportReport> {
    let tensors: BTreeMap<String, &(Vec<usize>, Vec<f32>)> =
        raw.iter().map(|(k, v)| (normalise_key(k), v)).collect();
    let mut src = Source::new(tensors, path, device);
    let mut report = ImportReport::default();
    let [d, c, p, _] = vit.patch_embed.weight.lazy_shape().dims::<4>();
    if let Some(w) = src.take("patch_embed.proj.weight", [d, c, p, p])? {
        vit.patch_embed.weight = Param::from_tensor(w);
    }
    if let Some(b) = src.take("patch_embed.proj.bias", [d])? {
        vit.patch_embed.bias = Some(Param::from_tensor(b));
    }
    if let Some(t) = src.take("cls_token", [1, 1, d])? {
        vit.cls_token = Param::from_tensor(t);
    }
    // Position table: drop nothing, resize the grid part to ours.
    let tokens = vit.pos_embed.lazy_shape().dims::<3>()[1];
    let g = ((tokens - 1) as f64).sqrt().round() as usize;
    match src.tensors.get("pos_embed").map(|(s, _)| s.clone()) {
        Some(shape) if shape.len() == 3 && shape[0] == 1 && shape[2] == d => {
            let n = shape[1];
            let (has_cls, grid_n) = match ((n as f64).sqrt().round() as usize).pow(2) == n {
                true => (false, n),
                false => (true, n - 1),
            };
            let gs = (grid_n as f64).sqrt().round() as usize;
            if gs * gs != grid_n {
                return Err(Error::Checkpoint {
                    path: path.to_path_buf(),
                    reason: format!(
                        "`pos_embed` has {n} entries: not a square grid (with or without cls)"
                    ),
                });
            }
            let table = src.take("pos_embed", [1, n, d])?.expect("present");
            let cls = if has_cls {
                Some(table.clone().narrow(1, 0, 1))
            } else {
                None
            };
            let grid = table
                .narrow(1, usize::from(has_cls), grid_n)
                .reshape([1, gs, gs, d])
                .permute([0, 3, 1, 2]);
            let grid = resize(grid, [g, g], Resample::Bicubic)
                .permute([0, 2, 3, 1])
                .reshape([1, g * g, d]);
            let cls = cls.unwrap_or_else(|| vit.pos_embed.val().narrow(1, 0, 1));
            vit.pos_embed = Param::from_tensor(Tensor::cat(vec![cls, grid], 1));
            if gs != g {
                report.pos_resized = Some(([gs, gs], [g, g]));
            }
        }
        Some(shape) => {
            return Err(Error::Checkpoint {
                path: path.to_path_buf(),
                reason: format!("`pos_embed` is {shape:?}; expected [1, tokens, {d}]"),
            });
        }
        None => src.missing.push("pos_embed".into()),
    }
    for (i, block) in vit.blocks.iter_mut().enumerate() {
        let b = format!("blocks.{i}");
        src.norm(&format!("{b}.norm1"), &mut block.norm1)?;
        src.linear(&format!("{b}.attn.qkv"), &mut block.attn.qkv)?;
        src.linear(&format!("{b}.attn.proj"), &mut block.attn.proj)?;
        src.norm(&format!("{b}.norm2"), &mut block.norm2)?;
        src.linear(&format!("{b}.mlp.fc1"), &mut block.ffn.fc1)?;
        let ffn = &mut block.ffn;
        if let Some(fc2) = ffn.fc2.as_mut() {
            src.linear(&format!("{b}.mlp.fc2"), fc2)?;
        } else if let Some(moe) = ffn.moe.as_mut() {
            let [f, shared] = moe.w_shared.lazy_shape().dims::<2>();
            let [t, _, p] = moe.w_expert.lazy_shape().dims::<3>();
            let dim = shared + p;
            if let Some(w) = src.take(&format!("{b}.mlp.fc2.weight"), [dim, f])? {
                let w = w.transpose(); // [F, D]
                moe.w_shared = Param::from_tensor(w.clone().narrow(1, 0, shared));
                let expert = w.narrow(1, shared, p).unsqueeze_dim::<3>(0);
                moe.w_expert = Param::from_tensor(expert.repeat_dim(0, t));
                report.init_from_dense = true;
            }
            if let Some(bias) = src.take(&format!("{b}.mlp.fc2.bias"), [dim])? {
                moe.b_shared = Param::from_tensor(bias.clone().narrow(0, 0, shared));
                moe.b_expert = Param::from_tensor(
                    bias.narrow(0, shared, p)
                        .unsqueeze_dim::<2>(0)
                        .repeat_dim(0, t),
                );
            }
        }
    }
    report.loaded = src.used.iter().cloned().collect();
    report.unmapped = src
        .tensors
        .keys()
        .filter(|k| !src.used.contains(*k))
        .cloned()
        .collect();
    report.missing = src.missing;
    Ok(report)
}

/// Loads the authors' S4P UperNet checkpoint (`*_s4p_upernet.pth`, mmseg names) into a whole
/// segmentor: the backbone as [`load_vit`], the simple-FPN neck (`neck.upsample_4x.{0,1,3}`,
/// `neck.upsample_2x.0`) and the UperNet (`decode_head.*`) copied into every dataset's
/// decoder, as MoE-MDF initialises them. The 1×1 classifier (`decode_head.conv_seg`) is loaded
/// only into decoders with the checkpoint's class count; elsewhere it is reported missing.
pub fn load_segmentor(
    model: &mut Segmentor,
    raw: &RawTensors,
    path: &Path,
    device: &Device,
) -> Result<ImportReport> {
    let mut report = load_vit(&mut model.backbone, raw, path, device)?;
    // What the backbone left: the neck and head keys (mmseg names, wrappers removed).
    let rest: BTreeMap<String, &(Vec<usize>, Vec<f32>)> = raw
        .iter()
        .map(|(k, v)| (normalise_key(k), v))
        .filter(|(k, _)| report.unmapped.contains(k))
        .collect();
    let mut used = BTreeSet::new();
    let mut missing = Vec::new();
    {
        let mut src = Source::new(rest.clone(), path, device);
        let neck = &mut model.neck;
        src.conv(
            "neck.upsample_4x.0",
            &mut neck.up4_a.weight,
            &mut neck.up4_a.bias,
        )?;
        src.norm("neck.upsample_4x.1", &mut neck.up4_norm)?;
        src.conv(
            "neck.upsample_4x.3",
            &mut neck.up4_b.weight,
            &mut neck.up4_b.bias,
        )?;
        src.conv(
            "neck.upsample_2x.0",
            &mut neck.up2.weight,
            &mut neck.up2.bias,
        )?;
        used.extend(src.used);
        missing.extend(src.missing);
    }
    for (d, decoder) in model.decoders.iter_mut().enumerate() {
        let mut src = Source::new(rest.clone(), path, device);
        load_upernet(&mut src, decoder)?;
        used.extend(src.used);
        missing.extend(
            src.missing
                .into_iter()
                .map(|k| format!("{k} (decoder {d})")),
        );
    }
    report.loaded.extend(used.iter().cloned());
    report.loaded.sort();
    report.loaded.dedup();
    report.unmapped.retain(|k| !used.contains(k));
    report.missing.extend(missing);
    Ok(report)
}

fn load_upernet(src: &mut Source<'_>, head: &mut UperNet) -> Result<()> {
    for (i, block) in head.ppm.iter_mut().enumerate() {
        src.conv_bn(&format!("decode_head.psp_modules.{i}.1"), block)?;
    }
    src.conv_bn("decode_head.bottleneck", &mut head.bottleneck)?;
    for (i, block) in head.laterals.iter_mut().enumerate() {
        src.conv_bn(&format!("decode_head.lateral_convs.{i}"), block)?;
    }
    for (i, block) in head.fpn_convs.iter_mut().enumerate() {
        src.conv_bn(&format!("decode_head.fpn_convs.{i}"), block)?;
    }
    src.conv_bn("decode_head.fpn_bottleneck", &mut head.fpn_bottleneck)?;
    // The classifier fits only a decoder with the checkpoint's class count.
    let [k, c, _, _] = head.classifier.weight.lazy_shape().dims::<4>();
    match src
        .tensors
        .get("decode_head.conv_seg.weight")
        .map(|(s, _)| s.clone())
    {
        Some(shape) if shape == [k, c, 1, 1] => {
            src.conv(
                "decode_head.conv_seg",
                &mut head.classifier.weight,
                &mut head.classifier.bias,
            )?;
        }
        _ => src.missing.push("decode_head.conv_seg".into()),
    }
    Ok(())
}
