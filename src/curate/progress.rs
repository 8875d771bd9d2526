//! What a curation tells its caller while it works: which [`Stage`] begins (or is reused)
//! and how far the counted work of a stage has come.

/// A stage of a curation, in the order `s5 curate run` makes them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    Plan,
    Prototypes,
    Floor,
    Score,
    Select,
}

impl Stage {
    pub const ALL: [Stage; 5] = [
        Stage::Plan,
        Stage::Prototypes,
        Stage::Floor,
        Stage::Score,
        Stage::Select,
    ];

    /// 1-based position among [`Stage::ALL`].
    pub fn number(self) -> usize {
        Stage::ALL.iter().position(|&s| s == self).unwrap_or(0) + 1
    }
}

impl std::fmt::Display for Stage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Stage::Plan => "plan",
            Stage::Prototypes => "prototypes",
            Stage::Floor => "similarity floor",
            Stage::Score => "score",
            Stage::Select => "select",
        })
    }
}

/// What a curation tells its caller while it works.
#[derive(Debug, Clone, PartialEq)]
pub enum Progress {
    /// A stage begins (`reused`: its result is there and fits, so it is not made again).
    Stage {
        stage: Stage,
        reused: bool,
        detail: String,
    },
    /// Labeled images embedded for the prototypes, of `total`.
    Embedding { done: u64, total: u64 },
    /// Labeled patches scored for the similarity floor, of `total`.
    Calibrating { done: u64, total: u64 },
    /// Patches of the shard scored, of `total`.
    Scoring { done: u64, total: u64 },
    /// Something the user should know that does not stop the stage.
    Warning(String),
}

/// Where progress goes (an indicatif bar, a log, nothing).
pub type Sink<'a> = &'a (dyn Fn(Progress) + Sync);
