//! The sum over ranks in a fixed order. Each rank owns one chunk of the buffer: it receives
//! that chunk from every rank, adds the parts up in rank order, and every rank then gathers
//! the summed chunks. Each value is summed by one rank in one order, so every rank gets the
//! same bits, and the bits are those of `((r0 + r1) + r2) + ...`, which a one-process sum over
//! GPUs in device order also computes. Traffic per rank is 2 (n − 1) / n of the buffer, as in
//! a ring all-reduce.

use std::ops::Range;

use super::Comm;

/// Values reduced per round, at most: bounds the receive buffer (1 GiB of f32) and keeps
/// MPI's `int` counts in range whatever the model's size.
pub(super) const ROUND_VALUES: usize = 1 << 28;

/// `len` values cut into `parts` consecutive chunks, the first `len % parts` one longer
/// (empty chunks where `len < parts`).
pub fn chunks(len: usize, parts: usize) -> Vec<Range<usize>> {
    let parts = parts.max(1);
    let (base, extra) = (len / parts, len % parts);
    let mut start = 0;
    (0..parts)
        .map(|i| {
            let range = start..start + base + usize::from(i < extra);
            start = range.end;
            range
        })
        .collect()
}

/// `ranks` parts of `len` values each, laid one after another, summed elementwise in rank
/// order: `((p0 + p1) + p2) + ...`.
///
/// # Shapes
/// `received`: `[ranks · len]`; returns `[len]`.
pub fn sum_in_rank_order(received: &[f32], len: usize) -> Vec<f32> {
    let mut parts = received.chunks_exact(len.max(1));
    let mut sum = match parts.next() {
        Some(first) if len > 0 => first.to_vec(),
        _ => return Vec::new(),
    };
    for part in parts {
        for (s, v) in sum.iter_mut().zip(part) {
            *s += v;
        }
    }
    sum
}

/// Replaces `values` on every rank with their sum over all ranks (the same length on every
/// rank), in rank order; see the module's documentation.
pub fn all_reduce_sum(comm: &dyn Comm, values: &mut [f32]) {
    let n = comm.size();
    if n <= 1 {
        return;
    }
    let rank = comm.rank();
    let mut start = 0;
    while start < values.len() {
        let end = (start + ROUND_VALUES).min(values.len());
        let round = &mut values[start..end];
        let owned = chunks(round.len(), n);
        let counts: Vec<usize> = owned.iter().map(|c| c.len()).collect();
        let mine = counts[rank];
        // Every rank sends chunk j to rank j and receives its own chunk from every rank.
        let received = comm.all_to_all_f32(round, &counts, &vec![mine; n]);
        let summed = sum_in_rank_order(&received, mine);
        let gathered = comm.all_gather_f32(&summed, &counts);
        round.copy_from_slice(&gathered);
        start = end;
    }
}
