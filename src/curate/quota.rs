//! Per-cluster quotas of the curated selection (paper §3, "Pre-training Dataset Curation",
//! Eq. 3): cluster m of the labeled set's M prototypes gets `B_m = B_u · N_m^l / B_l` of the
//! budget `B_u`, where `N_m^l` of the `B_l` labeled images fall in it.
//!
//! What the paper leaves open, decided here:
//! - **Rounding**: largest remainder (Hamilton). Each cluster gets `⌊B_u · N_m^l / B_l⌋`;
//!   the units left go one each to the clusters with the largest remainders, ties to the
//!   lower cluster index. The quotas sum to `B_u` exactly.
//! - **Clusters short of candidates**: a cluster keeps `min(quota, candidates)`; the
//!   shortfall goes to the clusters that still have candidates, in proportion to their
//!   `N_m^l` (apportioned the same way), each capped at its candidates; what a cap leaves
//!   over goes round again, until everything is placed or no cluster has candidates left.
//!   A budget above the candidates therefore selects every candidate.

pub use crate::apportion::apportion;

/// The quotas of one selection: what Eq. 3 gives, and what each cluster finally takes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Quotas {
    /// Eq. 3, rounded by largest remainder: sums to the budget.
    pub nominal: Vec<u64>,
    /// After giving the shortfall of clusters short of candidates to the others: never above
    /// a cluster's candidates; sums to `min(budget, Σ candidates)`.
    pub final_: Vec<u64>,
}

impl Quotas {
    /// Quotas for a budget of `budget` patches, from the labeled images per cluster
    /// (`N_m^l`) and the candidates per cluster (patches that passed every filter).
    ///
    /// # Panics
    /// If the two slices differ in length: a programming error.
    pub fn new(budget: u64, labeled: &[u64], candidates: &[u64]) -> Self {
        assert_eq!(labeled.len(), candidates.len(), "one count per cluster");
        let nominal = apportion(budget, labeled);
        let mut final_: Vec<u64> = nominal
            .iter()
            .zip(candidates)
            .map(|(&q, &c)| q.min(c))
            .collect();
        let mut shortfall = budget - final_.iter().sum::<u64>();
        while shortfall > 0 {
            // Clusters that can take more, weighted by their labeled images.
            let weights: Vec<u64> = labeled
                .iter()
                .zip(candidates)
                .zip(&final_)
                .map(|((&n, &c), &f)| if c > f { n } else { 0 })
                .collect();
            if weights.iter().all(|&w| w == 0) {
                break; // no cluster has candidates left
            }
            let extra = apportion(shortfall, &weights);
            let mut placed = 0;
            for ((f, &c), e) in final_.iter_mut().zip(candidates).zip(extra) {
                let take = e.min(c - *f);
                *f += take;
                placed += take;
            }
            shortfall -= placed;
            if placed == 0 {
                // Every unit went to clusters already full: cannot happen while some weight
                // is positive (a positive weight gets ≥ 1 unit only with spare room), but
                // never loop forever.
                break;
            }
        }
        Self { nominal, final_ }
    }
}
