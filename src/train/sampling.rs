//! How the crops of a multi-dataset step are shared between the datasets
//! ([`Sampling`]): the authors' zip (one batch from every dataset each step), fixed ratios,
//! or temperature sampling `p_d ∝ n_d^(1/T)`. A step's shares depend only on (seed, step), so
//! a resumed run knows how many crops each dataset's stream had handed out.

use rand::SeedableRng;
use rand::distr::Distribution;
use rand::distr::weighted::WeightedIndex;
use rand_chacha::ChaCha8Rng;

use super::batch::Dataset;
use super::config::Sampling;
use super::parallel::RankSlots;

/// Mixed into the run's seed for the per-step draws.
const SAMPLER_SEED: u64 = 0x5a3d_1e55_0fda_7a00;

/// The crops each dataset gives to each step.
#[derive(Debug, Clone)]
pub struct Sampler {
    /// Every dataset's `batch` (`Zip`: each step's counts).
    batches: Vec<usize>,
    /// `Ratios` / `Temperature`: the per-crop dataset distribution and its probabilities.
    draw: Option<(WeightedIndex<f64>, Vec<f64>)>,
    seed: u64,
}

impl Sampler {
    /// The sampler of a run's datasets (its config is checked: ratios match the datasets).
    pub fn for_datasets(sampling: &Sampling, datasets: &[Dataset], seed: u64) -> Self {
        let train_images: Vec<usize> = datasets.iter().map(|d| d.train.len()).collect();
        Self::new(
            sampling,
            datasets.iter().map(|d| d.batch).collect(),
            &train_images,
            seed,
        )
    }

    /// The sampler of datasets with these batches and training-set sizes (one each).
    pub fn new(
        sampling: &Sampling,
        batches: Vec<usize>,
        train_images: &[usize],
        seed: u64,
    ) -> Self {
        let weights: Option<Vec<f64>> = match sampling {
            Sampling::Zip => None,
            Sampling::Ratios(r) => Some(r.clone()),
            Sampling::Temperature(t) => Some(
                train_images
                    .iter()
                    .map(|&n| (n as f64).powf(1.0 / t))
                    .collect(),
            ),
        };
        let draw = weights.filter(|_| batches.len() > 1).map(|w| {
            let sum: f64 = w.iter().sum();
            let probabilities = w.iter().map(|x| x / sum).collect();
            let index = WeightedIndex::new(&w).expect("the config checks the ratios");
            (index, probabilities)
        });
        Self {
            batches,
            draw,
            seed,
        }
    }

    /// Crops per step, over all datasets.
    pub fn step_size(&self) -> usize {
        self.batches.iter().sum()
    }

    /// The probability of each dataset for one crop (`None` under `Zip`).
    pub fn probabilities(&self) -> Option<&[f64]> {
        self.draw.as_ref().map(|(_, p)| p.as_slice())
    }

    /// How many crops each dataset gives to step `step`.
    pub fn counts(&self, step: u64) -> Vec<usize> {
        let Some((index, _)) = &self.draw else {
            return self.batches.clone();
        };
        let mut rng = ChaCha8Rng::seed_from_u64(self.seed ^ SAMPLER_SEED);
        rng.set_stream(step);
        let mut counts = vec![0; self.batches.len()];
        for _ in 0..self.step_size() {
            counts[index.sample(&mut rng)] += 1;
        }
        counts
    }

    /// How many crops each dataset gave to steps `0..step`: where its stream stands when a
    /// run resumes at `step`.
    pub fn consumed(&self, step: u64) -> Vec<u64> {
        if self.draw.is_none() {
            return self.batches.iter().map(|&b| b as u64 * step).collect();
        }
        let mut total = vec![0u64; self.batches.len()];
        for s in 0..step {
            for (t, c) in total.iter_mut().zip(self.counts(s)) {
                *t += c as u64;
            }
        }
        total
    }
}

/// Which of one dataset's crops one rank of an MPI job computes, by stream position: the
/// crops of its shares of each step, where a step's crops are those of the datasets past
/// their start step in dataset order, cut over every rank's devices. Asked in stream order
/// (a loader's thread, ahead of the steps); a gated dataset's crops go to no rank.
pub struct RankCrops {
    sampler: Sampler,
    dataset: usize,
    start_steps: Vec<u64>,
    slots: RankSlots,
    /// The step holding the positions from `step_start` on, and its counts.
    step: u64,
    step_start: u64,
    counts: Vec<usize>,
}

/// Steps a dataset may go without crops before [`RankCrops`] stops looking ahead (and
/// decodes): only a dataset that is never drawn gets there.
const MAX_EMPTY_STEPS: u32 = 1 << 20;

impl RankCrops {
    /// The crops of `dataset` from step `step` on, whose stream stands at `consumed` then.
    pub fn new(
        sampler: &Sampler,
        dataset: usize,
        start_steps: &[u64],
        slots: RankSlots,
        step: u64,
        consumed: u64,
    ) -> Self {
        Self {
            counts: sampler.counts(step),
            sampler: sampler.clone(),
            dataset,
            start_steps: start_steps.to_vec(),
            slots,
            step,
            step_start: consumed,
        }
    }

    /// Whether the crop at stream `position` is one of the rank's.
    pub fn keeps(&mut self, position: u64) -> bool {
        if position < self.step_start {
            return false; // handed out before this stream's first step
        }
        let d = self.dataset;
        let mut empty = 0;
        while position >= self.step_start + self.counts[d] as u64 {
            self.step_start += self.counts[d] as u64;
            self.step += 1;
            self.counts = self.sampler.counts(self.step);
            empty += u32::from(self.counts[d] == 0);
            if empty > MAX_EMPTY_STEPS {
                return true;
            }
        }
        let active = |e: usize| self.step >= self.start_steps[e] && self.counts[e] > 0;
        if !active(d) {
            return false;
        }
        let before: usize = (0..d).filter(|&e| active(e)).map(|e| self.counts[e]).sum();
        let total: usize = (0..self.counts.len())
            .filter(|&e| active(e))
            .map(|e| self.counts[e])
            .sum();
        let offset = before + (position - self.step_start) as usize;
        self.slots.span(total).contains(&offset)
    }
}
