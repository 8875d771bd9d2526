//! The τ slider's arithmetic: the τ-mask and mask ratio recomputed from a sample's stored
//! confidence levels and validity (the same rule as the trainer's, [`s5_run::samples::passes`]),
//! and pseudo-label accuracy against coverage as τ varies, where truth is known.

use s5_run::samples::passes;

/// A sample's stored confidence (16-bit levels) and validity, row-major.
#[derive(Debug, Clone, PartialEq)]
pub struct Confidence {
    pub width: u32,
    pub height: u32,
    pub levels: Vec<u16>,
    pub valid: Vec<bool>,
}

impl Confidence {
    /// Whether each pixel is confident at `tau` (and valid).
    pub fn mask(&self, tau: f32) -> Vec<bool> {
        // One value per level, whatever `valid` holds (a pixel without one is not valid).
        self.levels
            .iter()
            .enumerate()
            .map(|(i, &l)| self.valid.get(i).copied().unwrap_or(false) && passes(l, tau))
            .collect()
    }

    /// Confident pixels over valid pixels at `tau`.
    pub fn ratio(&self, tau: f32) -> f64 {
        let valid = self.valid.iter().filter(|&&v| v).count();
        let confident = self.mask(tau).iter().filter(|&&c| c).count();
        confident as f64 / valid.max(1) as f64
    }

    /// For each τ of `taus`: `(τ, coverage, accuracy)`, where coverage is the share of valid
    /// pixels with truth that are confident, and accuracy the share of those confident pixels
    /// whose pseudo-label equals the truth (`None` where no pixel is confident). `pseudo`
    /// and `truth` are class indices per pixel; `None` in `truth` is unknown.
    pub fn accuracy_coverage(
        &self,
        pseudo: &[u8],
        truth: &[Option<u8>],
        taus: &[f32],
    ) -> Vec<(f32, f64, Option<f64>)> {
        let known: Vec<usize> = (0..self.levels.len())
            .filter(|&i| {
                self.valid.get(i).copied().unwrap_or(false)
                    && truth.get(i).copied().flatten().is_some()
            })
            .collect();
        taus.iter()
            .map(|&tau| {
                let (mut confident, mut right) = (0usize, 0usize);
                for &i in &known {
                    if passes(self.levels[i], tau) {
                        confident += 1;
                        right += usize::from(pseudo.get(i).copied() == truth[i]);
                    }
                }
                let coverage = confident as f64 / known.len().max(1) as f64;
                let accuracy = (confident > 0).then(|| right as f64 / confident as f64);
                (tau, coverage, accuracy)
            })
            .collect()
    }
}
