//! Which GPUs a command spreads its work over (`s5 train`, `s5 pretrain`, `s5 bench step`).

use s5::device::GpuChoice;

#[derive(Debug, clap::Args)]
pub struct GpuArgs {
    /// GPUs to split each batch over (data parallelism): `auto` (the chosen adapter and
    /// every identical one) or a number (the chosen one, then others of its API).
    #[arg(long, default_value = "auto", value_parser = GpuChoice::parse)]
    gpus: GpuChoice,
    /// Split each batch over this many devices on the one chosen adapter: the multi-GPU code
    /// path without a second GPU (tests; no speed-up).
    #[arg(long, hide = true, conflicts_with = "gpus")]
    gpus_on_one_adapter: Option<usize>,
}

impl GpuArgs {
    pub fn choice(&self) -> GpuChoice {
        match self.gpus_on_one_adapter {
            Some(n) => GpuChoice::SameAdapter(n),
            None => self.gpus,
        }
    }
}
