//! `moe_ffn` (WGSL) against `moe_ffn_reference` (every expert on every row, then select):
//! forward and every gradient, with mixed dataset ids and sizes that do not divide the tiles,
//! for each tiling (workgroup memory for GPUs, registers for CPU adapters) whatever the adapter.

use burn::tensor::{Device, Int, Tensor};
use s5::kernels::{MoeKernel, MoeWeights, moe_ffn, moe_ffn_reference};

use crate::common::{Rng, assert_close, device, f16_adapter, to_vec};

struct Case {
    n: usize,
    f: usize,
    c: usize,
    p: usize,
    t: usize,
}

fn weights(rng: &mut Rng, case: &Case, device: &Device) -> MoeWeights {
    let Case { f, c, p, t, .. } = *case;
    MoeWeights {
        w_shared: rng.tensor([f, c - p], 0.3, device),
        b_shared: rng.tensor([c - p], 0.3, device),
        w_expert: rng.tensor([t, f, p], 0.3, device),
        b_expert: rng.tensor([t, p], 0.3, device),
    }
}

fn ids(values: &[i32], device: &Device) -> Tensor<1, Int> {
    Tensor::from_ints(values, device)
}

fn random_ids(rng: &mut Rng, n: usize, t: usize) -> Vec<i32> {
    (0..n).map(|_| rng.below(t) as i32).collect()
}

/// Both tilings of the vec4 path (whatever the model picks on an adapter is one of them).
const KERNELS: [MoeKernel; 2] = [MoeKernel::WorkgroupTiles, MoeKernel::RegisterTiles];

fn check_forward(case: Case, ids_of: impl Fn(&mut Rng, usize, usize) -> Vec<i32>) {
    let label = format!(
        "moe_ffn forward n={} f={} c={} p={} t={}",
        case.n, case.f, case.c, case.p, case.t
    );
    let mut rng = Rng::fresh(&label);
    let device = device();
    let h = rng.tensor([case.n, case.f], 1.0, &device);
    let w = weights(&mut rng, &case, &device);
    let ids = ids(&ids_of(&mut rng, case.n, case.t), &device);
    let want = moe_ffn_reference(h.clone(), &w, ids.clone());
    for kernel in KERNELS {
        let got = moe_ffn(h.clone(), &w, ids.clone(), kernel);
        assert_eq!(got.dims(), [case.n, case.c]);
        assert_close(&format!("{label} {kernel:?}"), got, want.clone());
    }
}

#[test]
fn forward_odd_sizes_mixed_ids() {
    check_forward(
        Case {
            n: 37,
            f: 45,
            c: 23,
            p: 7,
            t: 3,
        },
        random_ids,
    );
    check_forward(
        Case {
            n: 150,
            f: 70,
            c: 130,
            p: 33,
            t: 4,
        },
        random_ids,
    );
    check_forward(
        Case {
            n: 5,
            f: 3,
            c: 2,
            p: 1,
            t: 1,
        },
        random_ids,
    );
}

#[test]
fn forward_vec4_fast_path_partial_tiles() {
    // F, C-P and P multiples of 4 take moe_ffn_vec4.wgsl; nothing divides its tiles.
    check_forward(
        Case {
            n: 37,
            f: 44,
            c: 28,
            p: 8,
            t: 3,
        },
        random_ids,
    ); // 64-wide workgroup tiles
    check_forward(
        Case {
            n: 131,
            f: 100,
            c: 384,
            p: 96,
            t: 4,
        },
        random_ids,
    ); // 48-wide tiles
    check_forward(
        Case {
            n: 300,
            f: 132,
            c: 164,
            p: 52,
            t: 3,
        },
        random_ids,
    ); // several row tiles, columns that leave every tiling a partial tile
    check_forward(
        Case {
            n: 70,
            f: 36,
            c: 200,
            p: 72,
            t: 2,
        },
        random_ids,
    );
}

#[test]
fn forward_contiguous_runs_of_ids() {
    // A sample's tokens are contiguous; runs of 50 cross the 64-row tile boundaries.
    check_forward(
        Case {
            n: 200,
            f: 96,
            c: 72,
            p: 24,
            t: 3,
        },
        |_, n, t| (0..n).map(|i| ((i / 50) % t) as i32).collect(),
    );
}

#[test]
fn ids_outside_the_datasets_get_a_zero_expert_part() {
    // Widths 10/5/4 take the general kernel; 12/8/4 the vec4 tilings.
    for (f, c) in [(10, 9), (12, 12)] {
        let mut rng = Rng::fresh(&format!("moe_ffn out-of-range ids f={f}"));
        let device = device();
        let case = Case {
            n: 6,
            f,
            c,
            p: 4,
            t: 2,
        };
        let h = rng.tensor([case.n, case.f], 1.0, &device);
        let w = weights(&mut rng, &case, &device);
        let ids = ids(&[0, 1, -1, 2, 7, 1], &device);
        let want = moe_ffn_reference(h.clone(), &w, ids.clone());
        for kernel in KERNELS {
            let got = moe_ffn(h.clone(), &w, ids.clone(), kernel);
            for row in [2, 3, 4] {
                let expert = to_vec(got.clone().slice([row..row + 1, c - 4..c]));
                assert_eq!(expert, vec![0.0; 4], "{kernel:?} f={f} row {row}");
            }
            assert_close(
                &format!("moe_ffn with out-of-range ids f={f} {kernel:?}"),
                got,
                want.clone(),
            );
        }
    }
}

fn check_gradients(case: Case, kernel: MoeKernel) {
    let mut rng = Rng::fresh(&format!(
        "moe_ffn grads n={} f={} c={} p={} t={}",
        case.n, case.f, case.c, case.p, case.t
    ));
    let device = device().autodiff();
    let h = rng.tensor([case.n, case.f], 1.0, &device);
    let w = weights(&mut rng, &case, &device);
    // Dataset t-1 has no rows at all: its gradients must be exactly zero.
    let ids = ids(&random_ids(&mut rng, case.n, case.t - 1), &device);
    let r = rng.tensor([case.n, case.c], 1.0, &device);

    let run = |op: &dyn Fn(Tensor<2>, &MoeWeights, Tensor<1, Int>) -> Tensor<2>| {
        let h = h.clone().detach().require_grad();
        let w = MoeWeights {
            w_shared: w.w_shared.clone().detach().require_grad(),
            b_shared: w.b_shared.clone().detach().require_grad(),
            w_expert: w.w_expert.clone().detach().require_grad(),
            b_expert: w.b_expert.clone().detach().require_grad(),
        };
        let grads = (op(h.clone(), &w, ids.clone()) * r.clone())
            .sum()
            .backward();
        (
            h.grad(&grads).expect("dh"),
            w.w_shared.grad(&grads).expect("dw_shared"),
            w.b_shared.grad(&grads).expect("db_shared"),
            w.w_expert.grad(&grads).expect("dw_expert"),
            w.b_expert.grad(&grads).expect("db_expert"),
        )
    };
    let got = run(&|h, w, ids| moe_ffn(h, w, ids, kernel));
    let want = run(&moe_ffn_reference);
    let absent = case.t - 1;
    let absent_w = to_vec(
        got.3
            .clone()
            .slice([absent..absent + 1, 0..case.f, 0..case.p]),
    );
    assert!(
        absent_w.iter().all(|&g| g == 0.0),
        "expert of a dataset without rows got a gradient"
    );
    let absent_b = to_vec(got.4.clone().slice([absent..absent + 1, 0..case.p]));
    assert!(
        absent_b.iter().all(|&g| g == 0.0),
        "expert bias of a dataset without rows got a gradient"
    );
    assert_close("dh", got.0, want.0);
    assert_close("dw_shared", got.1, want.1);
    assert_close("db_shared", got.2, want.2);
    assert_close("dw_expert", got.3, want.3);
    assert_close("db_expert", got.4, want.4);
}

#[test]
fn gradients_match_reference() {
    for kernel in KERNELS {
        check_gradients(
            Case {
                n: 37,
                f: 45,
                c: 23,
                p: 7,
                t: 4,
            },
            kernel,
        );
        check_gradients(
            Case {
                n: 130,
                f: 66,
                c: 170,
                p: 69,
                t: 3,
            },
            kernel,
        );
        check_gradients(
            Case {
                n: 75,
                f: 68,
                c: 144,
                p: 48,
                t: 3,
            },
            kernel,
        );
    }
}

/// f16 operands: the kernel reads them as f16, accumulates in f32 and rounds the output once,
/// so against the f32 reference on the same (f16) values it is within one f16 rounding
/// (2^-11 relative, doubled for the norm-wise bound).
const F16_FORWARD_TOLERANCE: f32 = 1e-3;

/// The gradients of an f16 `moe_ffn` are burn's f16 matmuls and sums over the rows: against
/// the f32 reference's, on the same values, within f16 accumulation over up to 130 rows.
const F16_GRAD_TOLERANCE: f32 = 1e-2;

fn half<const D: usize>(t: Tensor<D>) -> Tensor<D> {
    t.cast(burn::tensor::FloatDType::F16)
}

fn full<const D: usize>(t: Tensor<D>) -> Tensor<D> {
    t.cast(burn::tensor::FloatDType::F32)
}

fn map_weights(w: &MoeWeights, f: impl Fn(Tensor<2>) -> Tensor<2>) -> MoeWeights {
    let f3 = |t: Tensor<3>| {
        let [a, b, c] = t.dims();
        f(t.reshape([a * b, c])).reshape([a, b, c])
    };
    let f1 = |t: Tensor<1>| f(t.unsqueeze::<2>()).squeeze_dim::<1>(0);
    MoeWeights {
        w_shared: f(w.w_shared.clone()),
        b_shared: f1(w.b_shared.clone()),
        w_expert: f3(w.w_expert.clone()),
        b_expert: f(w.b_expert.clone()),
    }
}

fn check_forward_f16(case: Case) {
    let label = format!(
        "moe_ffn f16 forward n={} f={} c={} p={} t={}",
        case.n, case.f, case.c, case.p, case.t
    );
    let mut rng = Rng::fresh(&label);
    let device = device();
    let h = half(rng.tensor([case.n, case.f], 1.0, &device));
    let w = map_weights(&weights(&mut rng, &case, &device), half);
    let ids = ids(&random_ids(&mut rng, case.n, case.t), &device);
    let want = moe_ffn_reference(full(h.clone()), &map_weights(&w, full), ids.clone());
    for kernel in KERNELS {
        let got = moe_ffn(h.clone(), &w, ids.clone(), kernel);
        assert_eq!(got.dtype(), burn::tensor::DType::F16, "{label}");
        let err = crate::common::rel_err(full(got), want.clone());
        assert!(
            err < F16_FORWARD_TOLERANCE,
            "{label} {kernel:?}: relative error {err:e} >= {F16_FORWARD_TOLERANCE:e}"
        );
    }
}

#[test]
fn f16_forward_matches_reference_on_every_path() {
    if !f16_adapter() {
        return;
    }
    // The general kernel (odd widths), the vec4 paths (both tilings), and 48-column tiles.
    for case in [
        Case {
            n: 37,
            f: 45,
            c: 23,
            p: 7,
            t: 4,
        },
        Case {
            n: 130,
            f: 68,
            c: 172,
            p: 44,
            t: 3,
        },
        Case {
            n: 70,
            f: 64,
            c: 144,
            p: 48,
            t: 3,
        },
    ] {
        check_forward_f16(case);
    }
}

#[test]
fn f16_gradients_match_the_f32_reference() {
    if !f16_adapter() {
        return;
    }
    let case = Case {
        n: 130,
        f: 68,
        c: 172,
        p: 44,
        t: 3,
    };
    let mut rng = Rng::fresh("moe_ffn f16 grads");
    let device = device().autodiff();
    let h = half(rng.tensor([case.n, case.f], 1.0, &device));
    let w = map_weights(&weights(&mut rng, &case, &device), half);
    let ids = ids(&random_ids(&mut rng, case.n, case.t), &device);
    let r = rng.tensor([case.n, case.c], 1.0, &device);
    // d (Σ out · r) / d operands, each operand a leaf of the given precision.
    let run = |precision: fn(Tensor<2>) -> Tensor<2>,
               op: &dyn Fn(Tensor<2>, &MoeWeights, Tensor<1, Int>) -> Tensor<2>| {
        let h = precision(h.clone()).detach().require_grad();
        let w = map_weights(&w, precision);
        let w = MoeWeights {
            w_shared: w.w_shared.detach().require_grad(),
            b_shared: w.b_shared.detach().require_grad(),
            w_expert: w.w_expert.detach().require_grad(),
            b_expert: w.b_expert.detach().require_grad(),
        };
        let grads = (full(op(h.clone(), &w, ids.clone())) * r.clone())
            .sum()
            .backward();
        [
            h.grad(&grads).expect("dh"),
            w.w_shared.grad(&grads).expect("dw_shared"),
            w.b_shared.grad(&grads).expect("db_shared").unsqueeze::<2>(),
            w.w_expert
                .grad(&grads)
                .expect("dw_expert")
                .flatten::<2>(0, 1),
            w.b_expert.grad(&grads).expect("db_expert"),
        ]
    };
    for kernel in KERNELS {
        let got = run(half, &|h, w, ids| moe_ffn(h, w, ids, kernel));
        let want = run(full, &moe_ffn_reference);
        for (name, (g, e)) in ["dh", "dw_shared", "db_shared", "dw_expert", "db_expert"]
            .iter()
            .zip(got.into_iter().zip(want))
        {
            assert_eq!(g.dtype(), burn::tensor::DType::F16, "{name} in f16");
            let err = crate::common::rel_err(full(g), e);
            assert!(
                err < F16_GRAD_TOLERANCE,
                "{name} ({kernel:?}): relative error {err:e} >= {F16_GRAD_TOLERANCE:e}"
            );
        }
    }
}
