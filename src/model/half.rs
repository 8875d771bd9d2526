//! Half precision for inference: the weights stored and the forward computed in f16 on
//! adapters with the `shader-f16` feature; inputs arrive and logits leave as f32, so callers
//! never see the difference. Training stays f32.

use burn::module::{Module, ModuleMapper, Param};
use burn::tensor::{DType, Device, FloatDType, Tensor};

use super::Segmentor;

/// Whether `device` computes in f16 (wgpu's `shader-f16`; lavapipe has it), unless
/// [`crate::device::HIDE_SHADER_F16_VAR`] is set.
pub fn supports_f16(device: &Device) -> bool {
    !crate::device::shader_f16_hidden() && device.supports_dtype(FloatDType::F16)
}

/// The model with every float weight and buffer (BatchNorm statistics too) cast to f16.
/// burn's clones of a module share its BatchNorm statistics, so a clone kept in f32 would
/// see them cast too: convert a model nothing else holds.
pub fn to_f16(model: Segmentor) -> Segmentor {
    struct Cast;
    impl ModuleMapper for Cast {
        fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
            param.map(|t| t.cast(FloatDType::F16))
        }
    }
    model.map(&mut Cast)
}

/// The model in f16 when `f16` (`--f16`), after checking that `device` (the adapter named
/// `adapter`) computes in it; as it is otherwise.
pub fn precision(
    model: Segmentor,
    f16: bool,
    device: &Device,
    adapter: &str,
) -> crate::error::Result<Segmentor> {
    if !f16 {
        return Ok(model);
    }
    if !supports_f16(device) {
        return Err(crate::error::Error::NoShaderF16 {
            adapter: adapter.to_string(),
            asked: "--f16".into(),
            instead: "run without --f16".into(),
        });
    }
    Ok(to_f16(model))
}

/// `t` in the float type `dtype` (no-op when it already is).
pub fn cast_to<const D: usize>(t: Tensor<D>, dtype: DType) -> Tensor<D> {
    if t.dtype() == dtype { t } else { t.cast(dtype) }
}
