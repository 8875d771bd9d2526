//! A curation run directory as a library: open it under its lock, then make its stages
//! (plan, prototypes, similarity floor, selection); [`super::shards`] scores its shards side
//! by side and [`super::all`] runs every stage in order. The CLI parses arguments, draws the
//! [`Progress`] it is sent and prints the outcomes.
//!
//! Every stage records what it was made with, and a stage built on another checks it: a
//! plan that would renumber scored patches is refused (or the stale results moved aside),
//! shards of other prototypes or another plan are never read.

use std::path::{Path, PathBuf};

pub use super::options::{
    PlanOptions, PlanOutcome, PrototypeOptions, SelectOptions, SelectOutcome, SimilarityRule, Stale,
};
pub use super::progress::{Progress, Sink, Stage};

use super::floor::calibrate_floor;
use super::plan::{make_plan, tiled};
use super::prototypes::{build_prototypes, embed_images};
use super::seed::SeedModel;
use super::select::{Filters, select, select_by_entropy_alone};
use super::selected::write_selected;
use super::shards::{ShardSet, refresh_report};
use crate::device::Gpu;
use crate::error::{Error, Result};
use crate::run::checkpoint::file_sum;
use crate::run::curation::{Plan, Prototypes, ShardSummary, SimilarityFloor};
use crate::run::{LockHolder, Manifest, RunDir, RunKind, RunLock};

/// A curation run directory held under its lock.
pub struct CurationRun {
    dir: RunDir,
    _lock: RunLock,
}

impl CurationRun {
    /// Opens (or creates) the curation run at `out`: its lock, and a manifest of kind
    /// `curate`. Returns the former holder of a stale lock it took over.
    pub fn open(out: &Path) -> Result<(Self, Option<LockHolder>)> {
        let dir = RunDir::new(out);
        if dir.manifest().exists() {
            check_kind(&dir)?;
        }
        let (lock, taken_over) = RunLock::acquire(&dir)?;
        if dir.manifest().exists() {
            check_kind(&dir)?;
        } else {
            Manifest::new(RunKind::Curate).save(&dir)?;
        }
        Ok((Self { dir, _lock: lock }, taken_over))
    }

    pub fn dir(&self) -> &RunDir {
        &self.dir
    }

    /// Fixes the pool. Over a plan that numbers the patches otherwise, the scored shards and
    /// what was made from them are stale: refused, or moved aside (`options.stale`).
    pub fn plan(&self, options: &PlanOptions) -> Result<PlanOutcome> {
        options.check()?;
        let mut plan = make_plan(
            &options.spec,
            &options.split,
            options.patch_px,
            options.stride_px,
        )?;
        if let Some(truth) = &options.truth {
            apply_truth(&mut plan, truth)?;
        }
        let old = load_missing(Plan::load(&self.dir))?;
        let same_numbering = old
            .as_ref()
            .is_some_and(|o| o.numbering_sha256() == plan.numbering_sha256());
        let mut moved_aside = None;
        if !same_numbering && let Some(old) = &old {
            let stale = self.stale_results();
            if !stale.is_empty() {
                match options.stale {
                    Stale::Refuse => {
                        let why = if old.imaging != plan.imaging {
                            format!(
                                "reads the images with another `imaging` ({:?}, was {:?}), so \
                                 their scores would be mixed with new ones",
                                plan.imaging, old.imaging
                            )
                        } else {
                            "numbers the patches anew, so they would be read as other patches"
                                .to_string()
                        };
                        return Err(Error::RunDir {
                            path: self.dir.curation(),
                            reason: format!(
                                "it holds results of its current plan ({} patches of {} px from \
                                 {} images): {}. The new plan ({} patches of {} px from {} \
                                 images) {why}. Curate into a new --out, or pass --move-stale \
                                 to move them to curation/stale-<n>/",
                                old.patches,
                                old.patch_px,
                                old.images.len(),
                                stale
                                    .iter()
                                    .map(|p| p.display().to_string())
                                    .collect::<Vec<_>>()
                                    .join(", "),
                                plan.patches,
                                plan.patch_px,
                                plan.images.len(),
                            ),
                        });
                    }
                    Stale::MoveAside => moved_aside = Some(self.move_aside(&stale)?),
                }
            }
        }
        plan.save(&self.dir)?;
        Ok(PlanOutcome {
            plan,
            same_numbering,
            moved_aside,
        })
    }

    /// What depends on the plan's numbering: shards, floor, selection, report, thumbnails
    /// (relative to `curation/`, those that exist).
    fn stale_results(&self) -> Vec<PathBuf> {
        [
            "shards",
            "floor.json",
            "selected.tsv",
            "selection.json",
            "report.json",
            "thumbs",
        ]
        .into_iter()
        .map(PathBuf::from)
        .filter(|p| self.dir.curation().join(p).exists())
        .filter(|p| p != Path::new("shards") || !shard_files_empty(&self.dir))
        .collect()
    }

    /// Moves `stale` (relative to `curation/`) into a new `curation/stale-<n>/`.
    fn move_aside(&self, stale: &[PathBuf]) -> Result<PathBuf> {
        let curation = self.dir.curation();
        let folder = (1..)
            .map(|n| curation.join(format!("stale-{n}")))
            .find(|p| !p.exists())
            .expect("some stale-<n> is free");
        let io = |path: &Path| {
            let path = path.to_path_buf();
            move |source| Error::Io { path, source }
        };
        std::fs::create_dir_all(&folder).map_err(io(&folder))?;
        for name in stale {
            std::fs::rename(curation.join(name), folder.join(name)).map_err(io(&folder))?;
        }
        Ok(folder)
    }

    /// Embeds the labeled images and clusters them (the prototypes and `N_m^l` of Eq. 3);
    /// then, if the plan is there, calibrates the similarity floor for its patch size.
    pub fn prototypes(
        &self,
        options: &PrototypeOptions,
        gpu: &Gpu,
        progress: Sink,
    ) -> Result<(Prototypes, Option<SimilarityFloor>)> {
        options.check()?;
        let seed = SeedModel::load(&options.model, options.dataset.as_deref(), &gpu.device)?;
        let spec = seed.spec()?;
        let images = spec.samples(&options.split)?.len() as u64;
        let (prototypes, embedded) = build_prototypes(
            &seed.model,
            seed.model_ref.clone(),
            seed.dataset,
            &spec,
            &options.split,
            options.embedding,
            &options.kmeans,
            &gpu.device,
            &count_images(progress, images),
        )?;
        prototypes.save(&self.dir)?;
        let floor = match load_missing(Plan::load(&self.dir))? {
            Some(plan) => Some(self.floor_with(
                &seed,
                &prototypes,
                &embedded,
                &plan,
                options,
                gpu,
                progress,
            )?),
            None => None,
        };
        Ok((prototypes, floor))
    }

    /// Calibrates the similarity floor of the run's prototypes for its plan's patch size
    /// (`options.model` must be the prototypes' model).
    pub fn floor(
        &self,
        options: &PrototypeOptions,
        gpu: &Gpu,
        progress: Sink,
    ) -> Result<SimilarityFloor> {
        options.check()?;
        let plan = Plan::load(&self.dir)?;
        let prototypes = Prototypes::load(&Prototypes::path(&self.dir))?;
        let seed = SeedModel::load(&options.model, Some(&prototypes.dataset), &gpu.device)?;
        seed.check_made(&prototypes)?;
        let spec = seed.spec()?;
        let images = spec.samples(&prototypes.split)?.len() as u64;
        let (embedded, _) = embed_images(
            &seed.model,
            seed.dataset,
            &spec,
            &prototypes.split,
            prototypes.embedding,
            &gpu.device,
            &count_images(progress, images),
        )?;
        self.floor_with(&seed, &prototypes, &embedded, &plan, options, gpu, progress)
    }

    /// The floor of `prototypes` for `plan`, from the labeled images' embeddings `embedded`.
    #[allow(clippy::too_many_arguments)]
    fn floor_with(
        &self,
        seed: &SeedModel,
        prototypes: &Prototypes,
        embedded: &[f32],
        plan: &Plan,
        options: &PrototypeOptions,
        gpu: &Gpu,
        progress: Sink,
    ) -> Result<SimilarityFloor> {
        let floor = calibrate_floor(
            &seed.model,
            &seed.spec_path,
            &prototypes.split,
            plan.patch_px,
            options.floor_quantile,
            prototypes,
            &file_sum(&Prototypes::path(&self.dir))?.sha256,
            embedded,
            seed.setup(options.batch),
            &gpu.device,
            &|done, total| progress(Progress::Calibrating { done, total }),
        )?;
        floor.save(&self.dir)?;
        Ok(floor)
    }

    /// Selects the budget from the shards of the current plan and prototypes, once they
    /// cover every patch of the plan; writes `selected.tsv` and the final report.
    pub fn select(&self, options: &SelectOptions) -> Result<SelectOutcome> {
        options.check()?;
        let plan = Plan::load(&self.dir)?;
        let prototypes = Prototypes::load(&Prototypes::path(&self.dir))?;
        let shards = ShardSet::current(&self.dir)?;
        shards.check_complete(&self.dir, &plan)?;
        if let Some(first) = shards.shards.first()
            && first.model_sha256 != prototypes.model.sha256
        {
            return Err(Error::RunDir {
                path: self.dir.curation(),
                reason: format!(
                    "the shards were scored by weights {} but the prototypes come from weights \
                     {}: score again with the prototypes' model",
                    first.model_sha256, prototypes.model.sha256
                ),
            });
        }
        let files = shards.record_files(&self.dir);
        let mut filters = Filters {
            foreground_min: options.foreground_min,
            entropy_max: options.entropy_max,
            ..Filters::default()
        };
        match options.similarity {
            SimilarityRule::Floor => filters.cluster_floor = self.current_floor(&plan)?.per_cluster,
            SimilarityRule::AtLeast(min) => filters.similarity_min = Some(min),
            SimilarityRule::Off => {}
        }
        let clusters = prototypes.labeled_per_cluster.len();
        let selection = if options.ignore_clusters {
            select_by_entropy_alone(&files, clusters, options.budget, &filters)?
        } else {
            select(
                &files,
                &prototypes.labeled_per_cluster,
                options.budget,
                &filters,
            )?
        };
        let table = write_selected(&self.dir, &tiled(&plan), &selection)?;
        let report = refresh_report(&self.dir, Some((&selection, options.budget)))?;
        Ok(SelectOutcome {
            selection,
            labeled: prototypes.labeled_per_cluster,
            table,
            report,
        })
    }

    /// The floor of the current prototypes for the plan's patch size.
    fn current_floor(&self, plan: &Plan) -> Result<SimilarityFloor> {
        let path = SimilarityFloor::path(&self.dir);
        let floor = match SimilarityFloor::load(&self.dir) {
            Ok(floor) => floor,
            Err(crate::run::RunError::Missing { .. }) => {
                return Err(Error::RunDir {
                    path,
                    reason: "missing: no similarity floor was calibrated (the prototypes were \
                             made before the plan?). Make it with `s5 curate floor`, or select \
                             with --no-floor"
                        .into(),
                });
            }
            Err(e) => return Err(e.into()),
        };
        let prototypes_sha256 = file_sum(&Prototypes::path(&self.dir))?.sha256;
        if !floor.leave_one_out {
            return Err(Error::RunDir {
                path,
                reason: "calibrated by an earlier s5: calibrate it again with `s5 curate floor`, \
                         or select with --no-floor"
                    .into(),
            });
        }
        if floor.prototypes_sha256 != prototypes_sha256 || floor.patch_px != plan.patch_px {
            return Err(Error::RunDir {
                path,
                reason: format!(
                    "calibrated for other prototypes or for {} px patches (the plan's are {} \
                     px): calibrate it again with `s5 curate floor`, or select with --no-floor",
                    floor.patch_px, plan.patch_px
                ),
            });
        }
        Ok(floor)
    }
}

/// A run folder whose manifest is not of kind `curate` is not used.
fn check_kind(dir: &RunDir) -> Result<()> {
    let manifest = Manifest::load(dir)?;
    if manifest.kind != RunKind::Curate {
        return Err(Error::RunDir {
            path: dir.root().to_path_buf(),
            reason: format!(
                "this is a `{}` run, not a curation run: choose another --out",
                manifest.kind
            ),
        });
    }
    Ok(())
}

/// Whether `curation/shards/` holds no shard summary.
fn shard_files_empty(dir: &RunDir) -> bool {
    ShardSummary::load_all(dir).is_ok_and(|s| s.is_empty())
}

/// Gives each plan image its kind from the pool's truth.
pub(super) fn apply_truth(plan: &mut Plan, truth: &Path) -> Result<()> {
    let kinds = super::evaluate::read_truth(truth)?;
    for image in &mut plan.images {
        image.kind = kinds.get(&image.path).cloned();
    }
    plan.in_distribution_kind = Some(super::evaluate::IN_DISTRIBUTION.into());
    if plan.images.iter().all(|i| i.kind.is_none()) {
        return Err(Error::Spec {
            path: truth.to_path_buf(),
            reason: format!(
                "names none of the pool's {} images (paths are relative to its folder)",
                plan.images.len()
            ),
        });
    }
    Ok(())
}

/// `Ok(None)` for a run file that is not there yet.
pub(super) fn load_missing<T>(loaded: crate::run::Result<T>) -> Result<Option<T>> {
    match loaded {
        Ok(value) => Ok(Some(value)),
        Err(crate::run::RunError::Missing { .. }) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// Counts embedded images into [`Progress::Embedding`] of `total`.
fn count_images(progress: Sink<'_>, total: u64) -> impl Fn() + '_ {
    let done = std::sync::atomic::AtomicU64::new(0);
    move || {
        let n = done.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
        progress(Progress::Embedding { done: n, total })
    }
}
