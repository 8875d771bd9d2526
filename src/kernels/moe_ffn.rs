//! `moe_ffn`: the second half of an FFN-MoE block (paper §3, MoE-MDF) as one grouped GEMM:
//! the shared expert and each row's dataset expert written straight into the concatenated
//! `[N, C]` output. When F, C-P and P are multiples of 4 it runs `shaders/moe_ffn_vec4.wgsl`
//! (tiles in workgroup memory, for GPUs) or `shaders/moe_ffn_vec4_regs.wgsl` (tiles in
//! registers, for CPU adapters), see [`MoeKernel`]; otherwise `shaders/moe_ffn.wgsl`.
//!
//! [`launch`] runs the WGSL kernel for `CubeBackend`, [`autodiff`] adds a backward in backend
//! ops (each expert's weight gradient sums only its own rows), and [`moe_ffn_reference`] is the
//! naive composition in tensor ops: every expert on every row, then select.

use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::tensor::{FloatTensor, IntTensor};
use burn::backend::wgpu::{CubeTensor, SourceKernel, into_contiguous};
use burn::backend::{Autodiff, Backend, Dispatch, TensorMetadata, get_or_init_device_settings};
use burn::cubecl::server::KernelArguments;
use burn::cubecl::{CubeCount, CubeDim};
use burn::tensor::{DType, Int, IntDType, Shape, Slice, Tensor};

use super::ops::{MoeKernel, S5Ops};
use super::shader::{
    MOE_FFN, MOE_FFN_F16, MOE_FFN_TILE_ROWS, MOE_FFN_VEC4, MOE_FFN_VEC4_F16, MOE_FFN_VEC4_N48,
    MOE_FFN_VEC4_N48_F16, MOE_FFN_VEC4_REGS, MOE_FFN_VEC4_REGS_F16, MOE_FFN_VEC4_REGS_TILE_COLS,
    MOE_FFN_VEC4_REGS_TILE_ROWS, MOE_FFN_VEC4_TILE_ROWS, Shader, ShaderKernel,
};

/// The weights of an FFN-MoE output projection: a shared expert and one expert per dataset.
///
/// # Shapes
/// w_shared `[F, C-P]`, b_shared `[C-P]`, w_expert `[T, F, P]`, b_expert `[T, P]`.
#[derive(Debug, Clone)]
pub struct MoeWeights {
    pub w_shared: Tensor<2>,
    pub b_shared: Tensor<1>,
    pub w_expert: Tensor<3>,
    pub b_expert: Tensor<2>,
}

/// `[h·W_shared + b_shared | h·W_expert[t(n)] + b_expert[t(n)]]` for each row n, where
/// `t(n) = ids[n]` is the row's dataset. Rows may mix datasets; a row whose id is outside
/// `[0, T)` gets a zero expert part. Differentiable in `h` and all weights. `kernel` is the
/// tiling, chosen by the caller for its adapter (the model picks it when it is built; tests
/// and `s5 bench` run each).
///
/// # Shapes
/// h `[N, F]`, ids `[N]` → `[N, C]` with `C = (C-P) + P`.
///
/// The operands are all f32, or all f16 (on adapters with `shader-f16`): f16 ones are read
/// as such, every product accumulated in f32 and the output, f16 then, rounded once.
///
/// # Panics
/// On inconsistent shapes, or operands not all f32 or all f16: programming errors.
pub fn moe_ffn(
    h: Tensor<2>,
    weights: &MoeWeights,
    ids: Tensor<1, Int>,
    kernel: MoeKernel,
) -> Tensor<2> {
    check_shapes(&h, weights, &ids);
    let dtypes = [
        h.dtype(),
        weights.w_shared.dtype(),
        weights.b_shared.dtype(),
        weights.w_expert.dtype(),
        weights.b_expert.dtype(),
    ];
    assert!(
        matches!(dtypes[0], DType::F32 | DType::F16) && dtypes.iter().all(|d| *d == dtypes[0]),
        "moe_ffn: the kernel reads operands all f32 or all f16, not {dtypes:?}"
    );
    let ids = if ids.dtype() == DType::I32 {
        ids
    } else {
        ids.cast(IntDType::I32)
    };
    Tensor::from_dispatch(Dispatch::moe_ffn(
        h.into_dispatch(),
        weights.w_shared.clone().into_dispatch(),
        weights.b_shared.clone().into_dispatch(),
        weights.w_expert.clone().into_dispatch(),
        weights.b_expert.clone().into_dispatch(),
        ids.into_dispatch(),
        kernel,
    ))
}

/// The naive composition with the same contract as [`moe_ffn`]: every expert applied to
/// every row, then each row keeps its own dataset's output.
pub fn moe_ffn_reference(h: Tensor<2>, weights: &MoeWeights, ids: Tensor<1, Int>) -> Tensor<2> {
    check_shapes(&h, weights, &ids);
    let [n, _] = h.dims();
    let [t, _, p] = weights.w_expert.dims();
    let shared = h.clone().matmul(weights.w_shared.clone()) + weights.b_shared.clone().unsqueeze();
    let mut expert = Tensor::<2>::zeros([n, p], &h.device());
    for d in 0..t {
        let w = weights
            .w_expert
            .clone()
            .slice_dim(0, d..d + 1)
            .squeeze_dim::<2>(0);
        let b = weights.b_expert.clone().slice_dim(0, d..d + 1);
        let rows = ids.clone().equal_elem(d as i64).float().reshape([n, 1]);
        expert = expert + (h.clone().matmul(w) + b) * rows;
    }
    Tensor::cat(vec![shared, expert], 1)
}

fn check_shapes(h: &Tensor<2>, weights: &MoeWeights, ids: &Tensor<1, Int>) {
    let [n, f] = h.dims();
    let [f_shared, c_shared] = weights.w_shared.dims();
    let [t, f_expert, p] = weights.w_expert.dims();
    assert_eq!(
        f_shared, f,
        "moe_ffn: w_shared must be [F, C-P] with F = {f}"
    );
    assert_eq!(
        f_expert, f,
        "moe_ffn: w_expert must be [T, F, P] with F = {f}"
    );
    assert_eq!(
        weights.b_shared.dims(),
        [c_shared],
        "moe_ffn: b_shared must be [C-P]"
    );
    assert_eq!(
        weights.b_expert.dims(),
        [t, p],
        "moe_ffn: b_expert must be [T, P]"
    );
    assert_eq!(ids.dims(), [n], "moe_ffn: ids must be [N]");
    assert!(
        n > 0 && f > 0 && c_shared > 0 && p > 0 && t > 0,
        "moe_ffn: empty operand (the shared and the expert part both need columns)"
    );
    assert!(
        n * f <= u32::MAX as usize && t * f * p <= u32::MAX as usize,
        "moe_ffn: operands exceed the kernel's 32-bit indexing"
    );
}

/// The WGSL launch.
pub(super) fn launch(
    h: CubeTensor,
    w_shared: CubeTensor,
    b_shared: CubeTensor,
    w_expert: CubeTensor,
    b_expert: CubeTensor,
    ids: CubeTensor,
    kernel: MoeKernel,
) -> CubeTensor {
    let [h, w_shared, b_shared, w_expert, b_expert, ids] =
        [h, w_shared, b_shared, w_expert, b_expert, ids].map(into_contiguous);
    let [n, f] = h.shape().dims::<2>();
    let [_, c_shared] = w_shared.shape().dims::<2>();
    let [t, _, p] = w_expert.shape().dims::<3>();
    let client = h.client.clone();

    let f16 = match h.dtype {
        DType::F32 => false,
        DType::F16 => true,
        dtype => panic!("moe_ffn: f32 or f16 operands, not {dtype:?}"),
    };
    // The shader of the operands' precision (f16 twins tile alike).
    let pick = |f32_shader: Shader, f16_shader: Shader| if f16 { f16_shader } else { f32_shader };
    let vec4 = f % 4 == 0 && c_shared % 4 == 0 && p % 4 == 0;
    let padded = |tile: usize| c_shared.div_ceil(tile) * tile + p.div_ceil(tile) * tile;
    // (shader, tile rows, tile columns); a tile lies wholly in one column block.
    let (shader, tile_rows, tile_cols): (Shader, usize, usize) = match kernel {
        _ if !vec4 => (
            pick(MOE_FFN, MOE_FFN_F16),
            MOE_FFN_TILE_ROWS,
            MOE_FFN.workgroup_size as usize,
        ),
        MoeKernel::RegisterTiles => (
            pick(MOE_FFN_VEC4_REGS, MOE_FFN_VEC4_REGS_F16),
            MOE_FFN_VEC4_REGS_TILE_ROWS,
            MOE_FFN_VEC4_REGS_TILE_COLS,
        ),
        // Workgroup tiles are as many columns wide as the workgroup has invocations.
        _ if padded(48) < padded(64) => (
            pick(MOE_FFN_VEC4_N48, MOE_FFN_VEC4_N48_F16),
            MOE_FFN_VEC4_TILE_ROWS,
            MOE_FFN_VEC4_N48.workgroup_size as usize,
        ),
        _ => (
            pick(MOE_FFN_VEC4, MOE_FFN_VEC4_F16),
            MOE_FFN_VEC4_TILE_ROWS,
            MOE_FFN_VEC4.workgroup_size as usize,
        ),
    };
    let lanes = if vec4 { 4 } else { 1 };
    let units = |x: usize| (x / lanes) as u32;
    let params = [n as u32, units(f), units(c_shared), units(p), t as u32];
    let params = client.create_from_slice(bytemuck::cast_slice(&params));
    let out_shape = Shape::new([n, c_shared + p]);
    let out = client.empty(out_shape.num_elements() * h.dtype.size());
    let col_tiles = c_shared.div_ceil(tile_cols) + p.div_ceil(tile_cols);
    let row_tiles = n.div_ceil(tile_rows);
    client.launch(
        Box::new(SourceKernel::new(
            ShaderKernel(shader),
            CubeDim::new_1d(shader.workgroup_size),
        )),
        CubeCount::Static(col_tiles as u32, row_tiles as u32, 1),
        KernelArguments::new().with_buffers(vec![
            h.handle.clone().binding(),
            w_shared.handle.clone().binding(),
            b_shared.handle.clone().binding(),
            w_expert.handle.clone().binding(),
            b_expert.handle.clone().binding(),
            ids.handle.clone().binding(),
            params.binding(),
            out.clone().binding(),
        ]),
    );
    CubeTensor::new_contiguous(client, h.device.clone(), out_shape, out, h.dtype)
}

/// Forward on the inner backend, one autodiff node with five parents.
pub(super) fn autodiff<B: Backend + S5Ops, C: CheckpointStrategy>(
    h: FloatTensor<Autodiff<B, C>>,
    w_shared: FloatTensor<Autodiff<B, C>>,
    b_shared: FloatTensor<Autodiff<B, C>>,
    w_expert: FloatTensor<Autodiff<B, C>>,
    b_expert: FloatTensor<Autodiff<B, C>>,
    ids: IntTensor<Autodiff<B, C>>,
    kernel: MoeKernel,
) -> FloatTensor<Autodiff<B, C>> {
    let nodes = [
        h.node(),
        w_shared.node(),
        b_shared.node(),
        w_expert.node(),
        b_expert.node(),
    ];
    let forward = |ids| {
        B::moe_ffn(
            h.primitive().clone(),
            w_shared.primitive().clone(),
            b_shared.primitive().clone(),
            w_expert.primitive().clone(),
            b_expert.primitive().clone(),
            ids,
            kernel,
        )
    };
    match MoeFfnBackward
        .prepare::<C>(nodes)
        .compute_bound()
        .stateful()
    {
        OpsKind::Tracked(prep) => {
            let out = forward(ids.clone());
            let state = (
                h.primitive().clone(),
                w_shared.primitive().clone(),
                w_expert.primitive().clone(),
                ids,
            );
            prep.finish(state, out)
        }
        OpsKind::UnTracked(prep) => prep.finish(forward(ids)),
    }
}

/// With g = [g_s | g_e] and M the `[N, T]` one-hot of the ids, G = (M ⊗ g_e) `[N, T·P]`
/// holds each row's expert gradient in its dataset's slot, so every expert gradient is one
/// matmul: dW_e = hᵀ·G, db_e = Σ_n G, and dh = g_s·W_sᵀ + G·W_eᵀ (W_e as `[F, T·P]`).
#[derive(Debug)]
struct MoeFfnBackward;

impl<B: Backend> Backward<B, 5> for MoeFfnBackward {
    /// (h `[N, F]`, w_shared `[F, C-P]`, w_expert `[T, F, P]`, ids `[N]`)
    type State = (FloatTensor<B>, FloatTensor<B>, FloatTensor<B>, IntTensor<B>);

    fn backward(self, ops: Ops<Self::State, 5>, grads: &mut Gradients, _: &mut Checkpointer) {
        let [node_h, node_ws, node_bs, node_we, node_be] = ops.parents;
        let grad = grads.consume::<B>(&ops.node);
        let (h, w_shared, w_expert, ids) = ops.state;
        let [n, f] = h.shape().dims::<2>();
        let [_, c_shared] = w_shared.shape().dims::<2>();
        let [t, _, p] = w_expert.shape().dims::<3>();
        let device = h.device();
        let settings = get_or_init_device_settings::<B>(&device);

        let g_shared = B::float_slice(grad.clone(), &[Slice::from(0..n), Slice::from(0..c_shared)]);
        let g_expert = B::float_slice(
            grad,
            &[Slice::from(0..n), Slice::from(c_shared..c_shared + p)],
        );

        // One-hot [N, T, 1] of the ids (all zeros for an id outside [0, T)).
        let datasets = B::int_arange(0..t as i64, &device, settings.int_dtype);
        let datasets = B::int_expand(
            B::int_reshape(datasets, Shape::new([1, t])),
            Shape::new([n, t]),
        );
        let ids = B::int_cast(ids, settings.int_dtype);
        let ids = B::int_expand(B::int_reshape(ids, Shape::new([n, 1])), Shape::new([n, t]));
        let one_hot = B::bool_into_float(
            B::int_equal(ids, datasets, settings.bool_dtype),
            h.dtype().into(),
        );
        let one_hot = B::float_reshape(one_hot, Shape::new([n, t, 1]));
        let g_grouped = B::float_mul(one_hot, B::float_reshape(g_expert, Shape::new([n, 1, p])));
        let g_grouped = B::float_reshape(g_grouped, Shape::new([n, t * p]));

        if let Some(node) = node_h {
            // W_e as [F, T·P]: swap [T, F, P] → [F, T, P].
            let w_expert_flat =
                B::float_reshape(B::float_swap_dims(w_expert, 0, 1), Shape::new([f, t * p]));
            let dh = B::float_add(
                B::float_matmul(g_shared.clone(), B::float_transpose(w_shared)),
                B::float_matmul(g_grouped.clone(), B::float_transpose(w_expert_flat)),
            );
            grads.register::<B>(node.id, dh);
        }
        if let Some(node) = node_ws {
            let dws = B::float_matmul(B::float_transpose(h.clone()), g_shared.clone());
            grads.register::<B>(node.id, dws);
        }
        if let Some(node) = node_bs {
            let dbs = B::float_reshape(B::float_sum_dim(g_shared, 0), Shape::new([c_shared]));
            grads.register::<B>(node.id, dbs);
        }
        if let Some(node) = node_we {
            let dwe = B::float_matmul(B::float_transpose(h), g_grouped.clone());
            let dwe = B::float_swap_dims(B::float_reshape(dwe, Shape::new([f, t, p])), 0, 1);
            grads.register::<B>(node.id, dwe);
        }
        if let Some(node) = node_be {
            let dbe = B::float_reshape(B::float_sum_dim(g_grouped, 0), Shape::new([t, p]));
            grads.register::<B>(node.id, dbe);
        }
    }
}
