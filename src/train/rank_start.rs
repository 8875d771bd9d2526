//! What the ranks of an MPI job agree on before the first step: that they start the same run
//! (the same s5, config, datasets and model), where each rank's devices sit among all of
//! them, and rank 0's step (its weights follow, [`super::ranks::broadcast_weights`]).
//!
//! Rank 0 alone reads and writes the run directory and runs the optimizer; the others
//! receive what it read and its weights, so the run directory need not be visible to them
//! (the datasets must: every rank loads its data).

use std::path::Path;

use sha2::{Digest, Sha256};

use super::batch::Dataset;
use super::config::{RecipeSetup, TrainConfig};
use crate::distributed::World;
use crate::error::{Error, Result};
use crate::model::Segmentor;
use crate::run::{ModelCard, TrainState};

/// What must be the same on every rank, each part named for the message that says which
/// differs.
pub struct Identity {
    parts: Vec<(String, String)>,
}

impl Identity {
    /// The s5 version, the config (as RON), and `more`.
    pub fn new(config: &TrainConfig, more: Vec<(String, String)>) -> Self {
        let mut parts = vec![
            ("s5".to_string(), env!("CARGO_PKG_VERSION").to_string()),
            ("config".to_string(), config.to_ron()),
        ];
        parts.extend(more);
        Self { parts }
    }

    /// What a `--resume` asks: the config given to check against the run's, and the steps.
    pub fn resume(check: Option<&TrainConfig>, steps: Option<u64>) -> Self {
        Self {
            parts: vec![
                ("s5".to_string(), env!("CARGO_PKG_VERSION").to_string()),
                ("--resume".to_string(), String::new()),
                (
                    "--config".to_string(),
                    check.map(TrainConfig::to_ron).unwrap_or_default(),
                ),
                ("--steps".to_string(), format!("{steps:?}")),
            ],
        }
    }

    /// The model card and each labeled dataset's and the unlabeled pool's fingerprint.
    pub fn data(
        config: &TrainConfig,
        card: &ModelCard,
        datasets: &[Dataset],
    ) -> Result<Vec<(String, String)>> {
        let mut parts = vec![(
            "model card".to_string(),
            serde_json::to_string(card).expect("cards serialise"),
        )];
        for d in datasets {
            parts.push((format!("dataset `{}`", d.spec.name), dataset_fingerprint(d)));
        }
        if let RecipeSetup::FixMatch(setup) = &config.recipe {
            parts.push((
                "unlabeled pool".to_string(),
                pool_fingerprint(&setup.unlabeled)?,
            ));
        }
        Ok(parts)
    }

    fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(&self.parts).expect("strings serialise")
    }

    /// Refuses to go on unless every rank's identity equals rank 0's: the error names each
    /// differing rank and what differs (the same error on every rank).
    pub fn agree(&self, world: &World) -> Result<()> {
        if world.size() <= 1 {
            return Ok(());
        }
        let all = world.all_gather_bytes(&self.encode());
        let parse = |bytes: &[u8]| -> Vec<(String, String)> {
            serde_json::from_slice(bytes).unwrap_or_default()
        };
        let first = parse(&all[0]);
        let mut differ = Vec::new();
        for (rank, bytes) in all.iter().enumerate().skip(1) {
            let theirs = parse(bytes);
            let parts: Vec<String> = first
                .iter()
                .zip(&theirs)
                .filter(|(a, b)| a != b)
                .map(|((name, a), (_, b))| describe(name, a, b))
                .collect();
            let parts = if parts.is_empty() && first.len() != theirs.len() {
                vec!["what it checks (another s5?)".to_string()]
            } else {
                parts
            };
            if !parts.is_empty() {
                differ.push(format!(
                    "rank {rank} differs from rank 0 in {}",
                    parts.join(", ")
                ));
            }
        }
        if differ.is_empty() {
            return Ok(());
        }
        Err(Error::Ranks {
            reason: format!(
                "{} (of {} ranks). Every rank must start the same run: the same s5, config, \
                 flags and data files",
                differ.join("; "),
                world.size()
            ),
        })
    }
}

/// `name` of two ranks, with the config's differing sections named.
fn describe(name: &str, a: &str, b: &str) -> String {
    if name != "config" {
        return name.to_string();
    }
    let parse = |text: &str| TrainConfig::parse_ron(text).ok();
    match (parse(a), parse(b)) {
        (Some(a), Some(b)) => {
            let mut sections = a.sections_differing_from(&b);
            for (field, same) in [
                ("steps", a.steps == b.steps),
                (
                    "activation_checkpointing",
                    a.activation_checkpointing == b.activation_checkpointing,
                ),
                ("precision", a.precision == b.precision),
                ("loss_scaling", a.loss_scaling == b.loss_scaling),
            ] {
                if !same {
                    sections.push(field);
                }
            }
            format!("its config ({})", sections.join(", "))
        }
        _ => "its config".to_string(),
    }
}

/// A dataset's name, classes and every training and validation sample's path (relative to
/// the spec's root) and size in bytes, hashed: what makes two ranks' copies the same data
/// without reading every image.
fn dataset_fingerprint(dataset: &Dataset) -> String {
    let mut hash = Sha256::new();
    hash.update(dataset.spec.name.as_bytes());
    for class in &dataset.spec.classes {
        hash.update(class.as_bytes());
        hash.update([0]);
    }
    let root = dataset.spec.root.clone();
    for sample in dataset.train.iter().chain(&dataset.val) {
        for path in std::iter::once(&sample.image).chain(&sample.mask) {
            file_entry(&mut hash, root.as_deref(), path);
        }
    }
    format!("{:x}", hash.finalize())
}

/// The unlabeled pool's images (or its selected-patch list, whole), hashed as above.
fn pool_fingerprint(entry: &super::config::UnlabeledEntry) -> Result<String> {
    let mut hash = Sha256::new();
    match &entry.patches {
        Some(list) => {
            let bytes = std::fs::read(list)
                .map_err(|e| Error::reading(list, e, Some("selected patches")))?;
            hash.update(&bytes);
        }
        None => {
            let mut spec = crate::data::DatasetSpec::load(&entry.spec)?;
            if let Some(root) = &entry.root {
                spec.root = Some(root.clone());
            }
            let root = spec.root.clone();
            for sample in spec.samples(&entry.split)? {
                file_entry(&mut hash, root.as_deref(), &sample.image);
            }
        }
    }
    Ok(format!("{:x}", hash.finalize()))
}

fn file_entry(hash: &mut Sha256, root: Option<&Path>, path: &Path) {
    let relative = root.and_then(|r| path.strip_prefix(r).ok()).unwrap_or(path);
    hash.update(relative.to_string_lossy().as_bytes());
    let len = std::fs::metadata(path).map_or(u64::MAX, |m| m.len());
    hash.update(len.to_le_bytes());
}

/// Where this rank's `local` devices sit among every rank's: (the index of its first,
/// the devices over every rank).
pub fn slots(world: &World, local: usize) -> (usize, usize) {
    if world.size() <= 1 {
        return (0, local);
    }
    let counts: Vec<usize> = world
        .all_gather_bytes(&(local as u64).to_le_bytes())
        .iter()
        .map(|b| u64::from_le_bytes(b[..8].try_into().expect("8 bytes")) as usize)
        .collect();
    let first = counts[..world.rank()].iter().sum();
    (first, counts.iter().sum())
}

/// Rank 0's training state (step, time, loss scale), on every rank.
pub fn share_state(world: &World, state: TrainState) -> Result<TrainState> {
    if world.size() <= 1 {
        return Ok(state);
    }
    let bytes = world.broadcast_bytes(&serde_json::to_vec(&state).expect("states serialise"));
    serde_json::from_slice(&bytes)
        .map_err(|e| Error::Execution(format!("rank 0's training state did not arrive whole: {e}")))
}

/// Initialises every parameter of `model` not initialised yet, in visit order, from the
/// process's generator.
pub fn initialize(model: &Segmentor) {
    struct Touch;
    impl burn::module::ModuleVisitor for Touch {
        fn visit_float<const D: usize>(
            &mut self,
            param: &burn::module::Param<burn::tensor::Tensor<D>>,
        ) {
            let _ = param.val();
        }
    }
    burn::module::Module::visit(model, &mut Touch);
}
