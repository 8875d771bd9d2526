//! Projected weak scaling of a training step over MPI ranks, from a step time measured on one
//! GPU and a model of the traffic of s5's sum (`s5 bench all` prints it).
//!
//! Per step each rank sends and receives 2 (N − 1) / N of the gradient buffer G for the sum
//! in rank order (what a ring all-reduce moves, [`crate::distributed`]), then rank 0's
//! weights reach every rank in a pipelined broadcast (about G per rank). Over links of B
//! bytes/s that is T_comm = (2 (N − 1) / N + 1) · G / B; latency terms (microseconds per hop)
//! are negligible at these sizes. Each GPU keeps its batch (weak scaling), so a step on N
//! GPUs takes T_c + T_comm where nothing overlaps, and the efficiency is
//! T_c / (T_c + T_comm). With `activation_checkpointing: Blocks` the ViT blocks' share of
//! the sum runs during the backward pass ([`crate::train::overlap`]); where it is hidden
//! completely only the rest of the sum and the broadcast remain: the overlapped efficiency,
//! an upper bound, as the plain one is a lower bound.

use std::fmt;

use serde::Serialize;

use crate::model::{SegmentorConfig, block_params, count_params};

/// GPUs the projection is made for.
pub const PROJECTED_GPUS: [usize; 3] = [8, 32, 128];

/// Link speeds (Gb/s) the projection is made for.
pub const PROJECTED_LINKS_GBPS: [f64; 3] = [25.0, 100.0, 200.0];

/// Bytes of one summed gradient value (gradients travel in f32 in every precision).
const GRADIENT_BYTES: f64 = 4.0;

/// One (GPUs, link) cell of the projection.
#[derive(Debug, Clone, Serialize)]
pub struct ScalingRow {
    pub gpus: usize,
    pub link_gbps: f64,
    /// Seconds per step of the sum and the broadcast, none of it hidden.
    pub comm_s: f64,
    /// T_c / (T_c + comm_s).
    pub efficiency: f64,
    /// The same with the blocks' share of the sum hidden in the backward pass.
    pub efficiency_overlapped: f64,
}

/// The projection of one measured step.
#[derive(Debug, Clone, Serialize)]
pub struct ScalingProjection {
    /// The measured one-GPU step time T_c.
    pub step_s: f64,
    /// The step's crops per GPU (labeled + unlabeled).
    pub crops_per_gpu: usize,
    /// Whether the step ran in mixed precision (else f32).
    pub mixed: bool,
    /// Gradient values summed per step (the model's parameters).
    pub gradient_values: usize,
    /// Of which in the ViT blocks (summed during the backward pass with per-block
    /// recomputation).
    pub block_values: usize,
    pub rows: Vec<ScalingRow>,
}

/// Seconds per step of s5's sum of `values` gradient values over `gpus` ranks, over links
/// of `link_gbps`: 2 (N − 1) / N of the buffer sent and received per rank.
pub fn sum_seconds(values: usize, gpus: usize, link_gbps: f64) -> f64 {
    let n = gpus.max(1) as f64;
    2.0 * (n - 1.0) / n * values as f64 * GRADIENT_BYTES / bytes_per_s(link_gbps)
}

/// Seconds per step of rank 0's broadcast of `values` weights (a pipelined broadcast: about
/// the buffer once per rank); none for one rank.
pub fn broadcast_seconds(values: usize, gpus: usize, link_gbps: f64) -> f64 {
    if gpus <= 1 {
        return 0.0;
    }
    values as f64 * GRADIENT_BYTES / bytes_per_s(link_gbps)
}

fn bytes_per_s(link_gbps: f64) -> f64 {
    link_gbps * 1e9 / 8.0
}

/// Projects a step of `model` that took `step_s` on one GPU with `crops_per_gpu` crops (in
/// mixed precision where `mixed`) to [`PROJECTED_GPUS`] over [`PROJECTED_LINKS_GBPS`].
pub fn project(
    model: &SegmentorConfig,
    step_s: f64,
    crops_per_gpu: usize,
    mixed: bool,
) -> ScalingProjection {
    let count = count_params(model);
    let gradient_values = count.total();
    let block_values = model.backbone.depth * block_params(&model.backbone) + count.experts;
    let rest = gradient_values.saturating_sub(block_values);
    let mut rows = Vec::new();
    for gpus in PROJECTED_GPUS {
        for link_gbps in PROJECTED_LINKS_GBPS {
            let broadcast_s = broadcast_seconds(gradient_values, gpus, link_gbps);
            let comm_s = sum_seconds(gradient_values, gpus, link_gbps) + broadcast_s;
            // Hidden: the blocks' share of the sum; left: the rest of it and the broadcast.
            let left_s = sum_seconds(rest, gpus, link_gbps) + broadcast_s;
            rows.push(ScalingRow {
                gpus,
                link_gbps,
                comm_s,
                efficiency: step_s / (step_s + comm_s),
                efficiency_overlapped: step_s / (step_s + left_s),
            });
        }
    }
    ScalingProjection {
        step_s,
        crops_per_gpu,
        mixed,
        gradient_values,
        block_values,
        rows,
    }
}

impl fmt::Display for ScalingProjection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "projected weak scaling of the {} step ({:.3} s for {} crops per GPU; {:.1} M \
             gradient values, {:.0} % in the ViT blocks):",
            if self.mixed { "mixed-precision" } else { "f32" },
            self.step_s,
            self.crops_per_gpu,
            self.gradient_values as f64 / 1e6,
            100.0 * self.block_values as f64 / self.gradient_values.max(1) as f64
        )?;
        writeln!(
            f,
            "efficiency without overlap / with the blocks' sums hidden in the backward pass \
             (communication per step)"
        )?;
        write!(f, "{:>6}", "GPUs")?;
        for link in PROJECTED_LINKS_GBPS {
            write!(f, "  {:>24}", format!("{link} Gb/s"))?;
        }
        writeln!(f)?;
        for chunk in self.rows.chunks(PROJECTED_LINKS_GBPS.len()) {
            write!(f, "{:>6}", chunk[0].gpus)?;
            for row in chunk {
                write!(
                    f,
                    "  {:>24}",
                    format!(
                        "{:.3} / {:.3} ({:.1} ms)",
                        row.efficiency,
                        row.efficiency_overlapped,
                        1e3 * row.comm_s
                    )
                )?;
            }
            writeln!(f)?;
        }
        Ok(())
    }
}
