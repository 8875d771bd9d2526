//! Per-stage timing of the augmentations, for `s5 bench data`.

use std::time::Instant;

/// Told when each stage of an augmentation ends. `()` ignores it (the training path).
pub trait Probe {
    /// The stage named `stage` has just ended.
    fn mark(&mut self, stage: &'static str);
}

impl Probe for () {
    #[inline(always)]
    fn mark(&mut self, _: &'static str) {}
}

/// Seconds spent per stage, in the order the stages first ended: the time between one mark
/// and the previous (or [`Stages::start`]) goes to the stage the mark names.
#[derive(Debug, Clone, Default)]
pub struct Stages {
    pub seconds: Vec<(&'static str, f64)>,
    last: Option<Instant>,
}

impl Stages {
    /// Starts the clock of the next stage (call before each sample).
    pub fn start(&mut self) {
        self.last = Some(Instant::now());
    }
}

impl Probe for Stages {
    fn mark(&mut self, stage: &'static str) {
        let now = Instant::now();
        let spent = self.last.map_or(0.0, |t| (now - t).as_secs_f64());
        self.last = Some(now);
        match self.seconds.iter_mut().find(|(s, _)| *s == stage) {
            Some((_, total)) => *total += spent,
            None => self.seconds.push((stage, spent)),
        }
    }
}
