//! The curation plan: the pool's images and sizes fixed once, so every shard, on any machine
//! and after any restart, numbers the patches the same way; and which patches a shard scores.

use std::ops::Range;
use std::path::Path;

use rayon::prelude::*;

use crate::data::source::{Patch, TiledSource, grid_offsets};
use crate::data::{DatasetSpec, SampleRef};
use crate::error::{Error, Result};
use crate::run::curation::{Plan, PlanImage, SkippedFile};

/// Reads the header of every image of `split` of the spec at `spec_path` (in parallel) and
/// fixes the pool; an unreadable image is listed as skipped, never fatal.
pub fn make_plan(spec_path: &Path, split: &str, patch_px: u32, stride_px: u32) -> Result<Plan> {
    if patch_px == 0 || stride_px == 0 {
        return Err(Error::Config {
            reason: "--patch-px and --stride-px must be at least 1".into(),
        });
    }
    let spec = DatasetSpec::load(spec_path)?;
    let samples = spec.samples(split)?;
    let sizes: Vec<Result<(u32, u32)>> = samples
        .par_iter()
        .map(|s| crate::data::io::image_size(&s.image))
        .collect();
    let mut images = Vec::new();
    let mut skipped = Vec::new();
    for (sample, size) in samples.into_iter().zip(sizes) {
        match size {
            Ok((width_px, height_px)) => images.push(PlanImage {
                // Absolute, so shards scored from another folder (a cluster node) find it.
                path: std::path::absolute(&sample.image).map_err(|source| Error::Io {
                    path: sample.image.clone(),
                    source,
                })?,
                width_px,
                height_px,
                kind: None,
            }),
            Err(e) => skipped.push(SkippedFile {
                path: sample.image,
                reason: e.to_string(),
            }),
        }
    }
    let patches = images
        .iter()
        .map(|i| {
            (grid_offsets(i.width_px, patch_px, stride_px).len()
                * grid_offsets(i.height_px, patch_px, stride_px).len()) as u64
        })
        .sum();
    Ok(Plan {
        spec: std::path::absolute(spec_path).map_err(|source| Error::Io {
            path: spec_path.to_path_buf(),
            source,
        })?,
        split: split.to_string(),
        patch_px,
        stride_px,
        images,
        skipped,
        patches,
        in_distribution_kind: None,
        imaging: spec.imaging,
    })
}

/// The plan's patches, numbered as the plan fixes them: image by image, rows then columns.
pub fn tiled(plan: &Plan) -> TiledSource {
    let mut patches = Vec::with_capacity(plan.patches as usize);
    for (index, image) in plan.images.iter().enumerate() {
        for y in grid_offsets(image.height_px, plan.patch_px, plan.stride_px) {
            for x in grid_offsets(image.width_px, plan.patch_px, plan.stride_px) {
                patches.push(Patch {
                    image: index,
                    x_px: x,
                    y_px: y,
                    width_px: plan.patch_px.min(image.width_px),
                    height_px: plan.patch_px.min(image.height_px),
                });
            }
        }
    }
    TiledSource {
        images: plan
            .images
            .iter()
            .map(|i| SampleRef {
                image: i.path.clone(),
                mask: None,
            })
            .collect(),
        patches,
        stretches: Default::default(),
    }
}

/// The patches of shard `index` of `count`: contiguous runs of whole blocks of `block`
/// patches (the scoring batch), the first shards one block longer. Batches then start at the
/// same patches however the plan is sharded, so every patch is scored in the same company
/// and gets the same bits.
pub fn shard_range(patches: u64, index: u32, count: u32, block: u64) -> Range<u64> {
    let block = block.max(1);
    let blocks = patches.div_ceil(block);
    let (count, index) = (u64::from(count.max(1)), u64::from(index));
    let (base, extra) = (blocks / count, blocks % count);
    let first = index * base + index.min(extra);
    let end = first + base + u64::from(index < extra);
    (first * block).min(patches)..(end * block).min(patches)
}

/// Which shard this process scores: `--shard i/n` if given, else a Slurm array task
/// (`SLURM_ARRAY_TASK_ID` − `SLURM_ARRAY_TASK_MIN` of `SLURM_ARRAY_TASK_COUNT`), else a
/// Kubernetes Indexed Job's `JOB_COMPLETION_INDEX` of `shards`, else an MPI rank of its world
/// (the launcher's variables, [`crate::distributed::LAUNCHER_VARS`]: `OMPI_COMM_WORLD_RANK`
/// of `OMPI_COMM_WORLD_SIZE` under OpenMPI, `PMI_RANK` of `PMI_SIZE` under MPICH's
/// `mpiexec` and `srun --mpi=pmi2`), else the whole plan (0 of 1).
pub fn shard_from(flag: Option<&str>, shards: Option<u32>) -> Result<(u32, u32)> {
    shard_from_env(flag, shards, &|name| std::env::var(name).ok())
}

/// [`shard_from`] with the environment read through `env`.
pub fn shard_from_env(
    flag: Option<&str>,
    shards: Option<u32>,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<(u32, u32)> {
    let bad = |what: String| Error::Config { reason: what };
    let env = |name: &str| env(name).filter(|v| !v.trim().is_empty());
    let number = |name: &str, text: &str| -> Result<u32> {
        text.trim()
            .parse()
            .map_err(|_| bad(format!("{name} = `{text}` is not a whole number")))
    };
    let mpi = crate::distributed::LAUNCHER_VARS
        .into_iter()
        .find_map(|(rank, size)| env(rank).map(|r| (rank, r, size, env(size))));
    let (index, count) = if let Some(text) = flag {
        let (i, n) = text.split_once('/').ok_or_else(|| {
            bad(format!(
                "--shard `{text}`: write it as INDEX/COUNT, e.g. 0/8"
            ))
        })?;
        (number("--shard index", i)?, number("--shard count", n)?)
    } else if let Some(id) = env("SLURM_ARRAY_TASK_ID") {
        let min =
            env("SLURM_ARRAY_TASK_MIN").map_or(Ok(0), |m| number("SLURM_ARRAY_TASK_MIN", &m))?;
        let count = env("SLURM_ARRAY_TASK_COUNT").ok_or_else(|| {
            bad("SLURM_ARRAY_TASK_ID is set but SLURM_ARRAY_TASK_COUNT is not".into())
        })?;
        let id = number("SLURM_ARRAY_TASK_ID", &id)?;
        (
            id.saturating_sub(min),
            number("SLURM_ARRAY_TASK_COUNT", &count)?,
        )
    } else if let Some(index) = env("JOB_COMPLETION_INDEX") {
        let count = shards.ok_or_else(|| {
            bad("JOB_COMPLETION_INDEX is set: give the Job's completions as --shards N".into())
        })?;
        (number("JOB_COMPLETION_INDEX", &index)?, count)
    } else if let Some((rank_var, rank, size_var, size)) = mpi {
        let size = size.ok_or_else(|| bad(format!("{rank_var} is set but {size_var} is not")))?;
        let (rank, size) = (number(rank_var, &rank)?, number(size_var, &size)?);
        if let Some(shards) = shards.filter(|&n| n != size) {
            return Err(bad(format!(
                "--shards {shards}, but the MPI job has {size} ranks ({size_var}): each rank \
                 scores one shard, so drop --shards or start {shards} ranks"
            )));
        }
        (rank, size)
    } else if let Some(count) = shards {
        return Err(bad(format!(
            "--shards {count} without a shard index: give --shard INDEX/{count}, or run under a \
             Slurm array, a Kubernetes Indexed Job or mpirun"
        )));
    } else {
        (0, 1)
    };
    if count == 0 || index >= count {
        return Err(bad(format!(
            "shard {index} of {count} does not exist (shards are 0-based)"
        )));
    }
    Ok((index, count))
}
