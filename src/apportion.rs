//! Largest-remainder (Hamilton) apportionment: whole units shared in proportion to weights,
//! summing exactly to the total. Curation's quotas (paper Eq. 3) and the synthetic pool's
//! mix of image kinds use it.

/// `weights` apportioned to `total` units by largest remainder: `⌊total · w_i / Σw⌋` each,
/// then one more unit to each of the largest remainders (ties to the lower index). Sums to
/// `total` exactly when `Σw > 0`; all zeros otherwise.
pub fn apportion(total: u64, weights: &[u64]) -> Vec<u64> {
    let sum: u128 = weights.iter().map(|&w| u128::from(w)).sum();
    if sum == 0 {
        return vec![0; weights.len()];
    }
    let exact: Vec<(u64, u128)> = weights
        .iter()
        .map(|&w| {
            let product = u128::from(total) * u128::from(w);
            ((product / sum) as u64, product % sum)
        })
        .collect();
    let mut shares: Vec<u64> = exact.iter().map(|&(floor, _)| floor).collect();
    let left = total - shares.iter().sum::<u64>();
    let mut order: Vec<usize> = (0..weights.len()).collect();
    // Largest remainder first; among equal remainders, the lower index.
    order.sort_by(|&a, &b| exact[b].1.cmp(&exact[a].1).then(a.cmp(&b)));
    for &i in order.iter().take(left as usize) {
        shares[i] += 1;
    }
    shares
}
