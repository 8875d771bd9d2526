//! Curation (paper §3, "Pre-training Dataset Curation"): rank unlabeled patches by the mean
//! pixel entropy a seed model gives them, and keep the most reliable ones under per-cluster
//! quotas that follow the labeled set's clusters, so the selection stays diverse.
//!
//! The pipeline, as a library ([`run`], [`shards`], [`all`]): a curation run directory
//! opened under its lock, its stages with typed options and outcomes, and [`run::Progress`]
//! sent to the caller (the CLI draws it).
//!
//! - [`all`]: every stage in order, each reused only where it fits (`s5 curate run`);
//! - [`run`]: the run directory and its plan, prototypes, floor and selection stages;
//! - [`options`]: each stage's typed options, checked before anything is written;
//! - [`progress`]: the stages and the progress a curation reports;
//! - [`seed`]: the seed model, loaded, with its decoder and the hash of its weights;
//! - [`shards`]: one shard scored, the shards that count and whether they cover the plan;
//! - [`floor`]: each cluster's similarity floor, calibrated on the labeled patches;
//! - [`embed`]: backbone features pooled into one unit vector per image;
//! - [`evaluate`]: a curation against a pool's known truth (kinds, AUROC);
//! - [`kmeans`]: spherical K-Means;
//! - [`prototypes`]: the labeled set embedded and clustered (`s5 curate prototypes`);
//! - [`pca`]: the two principal axes of the projection;
//! - [`plan`]: the pool fixed once, and the patches of each shard;
//! - [`score`]: entropy, confidence, foreground share and nearest prototype of each patch;
//! - [`quota`]: Eq. 3's quotas, their rounding and the redistribution of shortfalls;
//! - [`record`]: one scored patch per fixed-size record, in per-shard files;
//! - [`report`]: the report the viewer reads (clusters, histograms, projection, thumbnails);
//! - [`sample`]: the embeddings of a bounded, deterministic sample of the pool;
//! - [`select`]: the selection in two streaming passes, memory bounded by the budget;
//! - [`selected`]: the selection as a table that `s5 pretrain` reads.

pub mod all;
pub mod embed;
pub mod evaluate;
pub mod floor;
pub mod kmeans;
pub mod options;
pub mod pca;
pub mod plan;
pub mod progress;
pub mod prototypes;
pub mod quota;
pub mod record;
pub mod report;
pub mod run;
pub mod sample;
pub mod score;
pub mod seed;
pub mod select;
pub mod selected;
pub mod shards;
