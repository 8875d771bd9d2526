//! `reduce::total`: the whole-tensor sum training uses instead of `Tensor::sum`, whose float
//! atomics make the last bit vary from run to run.

use burn::tensor::Tensor;

use crate::common::{Rng, device, to_vec};

/// Right to float precision on odd sizes, and the same bits every time it is repeated.
#[test]
fn total_is_exact_enough_and_reproducible() {
    let dev = device();
    let mut rng = Rng::fresh("total_is_exact_enough_and_reproducible");
    for n in [1, 3, 257, 4099, 1_000_003] {
        let x: Tensor<1> = rng.tensor([n], 1.0, &dev);
        let values = to_vec(x.clone());
        let exact: f64 = values.iter().map(|&v| f64::from(v)).sum();
        let scale: f64 = values.iter().map(|&v| f64::from(v).abs()).sum();
        let first = to_vec(s5::reduce::total(x.clone()))[0];
        assert!(
            (f64::from(first) - exact).abs() <= 1e-6 * scale.max(1.0),
            "n = {n}: total {first}, exact {exact}"
        );
        for repeat in 0..8 {
            let again = to_vec(s5::reduce::total(x.clone()))[0];
            assert_eq!(
                again.to_bits(),
                first.to_bits(),
                "n = {n}, repeat {repeat}: {again} after {first}"
            );
        }
    }
    // Any rank: a 4-D tensor sums like its flattened self.
    let x: Tensor<4> = rng.tensor([2, 3, 17, 19], 1.0, &dev);
    let flat = to_vec(s5::reduce::total(x.clone().flatten::<1>(0, 3)))[0];
    assert_eq!(to_vec(s5::reduce::total(x))[0].to_bits(), flat.to_bits());
}
