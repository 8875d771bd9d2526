//! `s5 synth`: write the synthetic aerial dataset.

use std::path::PathBuf;

use anyhow::{Context, Result};
use indicatif::{ProgressBar, ProgressStyle};
use s5::data::synth::{SynthConfig, generate};

#[derive(Debug, clap::Args)]
pub struct SynthArgs {
    /// Output folder (created; existing files with the same names are replaced).
    #[arg(long)]
    out: PathBuf,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Side of the labeled tiles.
    #[arg(long, default_value_t = SynthConfig::default().tile_px)]
    tile_px: u32,
    /// Training images per domain.
    #[arg(long, default_value_t = SynthConfig::default().train_per_domain)]
    train: usize,
    /// Validation images per domain.
    #[arg(long, default_value_t = SynthConfig::default().val_per_domain)]
    val: usize,
    /// In-domain images in the unlabeled pool.
    #[arg(long, default_value_t = SynthConfig::default().pool_in_domain)]
    pool: usize,
    /// Out-of-distribution pool images per kind (cloud, haze, sea, noise, other domain).
    #[arg(long, default_value_t = SynthConfig::default().pool_ood_per_kind)]
    pool_ood: usize,
    /// A pool of exactly this many images, in the proportion of --pool to --pool-ood of
    /// each kind (the kind of each image is recorded in pool/truth.ron).
    #[arg(long)]
    pool_images: Option<usize>,
}

pub fn run(args: SynthArgs) -> Result<()> {
    let cfg = SynthConfig {
        seed: args.seed,
        tile_px: args.tile_px,
        train_per_domain: args.train,
        val_per_domain: args.val,
        pool_in_domain: args.pool,
        pool_ood_per_kind: args.pool_ood,
        pool_images: args.pool_images,
        pool_width_px: SynthConfig::pool_width_for(args.tile_px),
    };
    if let Err(e) = cfg.validate() {
        let flag = match e.field.as_str() {
            "tile_px" => "--tile-px",
            "train_per_domain" => "--train",
            "val_per_domain" => "--val",
            "pool_in_domain" => "--pool",
            _ => "",
        };
        anyhow::bail!("s5 synth {flag}: {e}");
    }
    let total = 2 * (cfg.train_per_domain + cfg.val_per_domain) + cfg.pool_total();
    let bar = ProgressBar::new(total as u64).with_style(
        ProgressStyle::with_template("{bar:40} {pos}/{len} scenes ({eta})")
            .context("progress template")?,
    );
    let out = generate(&args.out, &cfg, &|| bar.inc(1))?;
    bar.finish_and_clear();
    let preview = args.out.join("preview.png");
    s5::fsutil::save_png_atomic(&preview, &s5::data::synth::preview(&args.out, 3, 128)?)?;
    println!(
        "wrote {} files under {}\n  urban (Potsdam-like): {}\n  rural (LoveDA-like): {}\n  suburb (Vaihingen-like, conflicting labels): {}\n  unlabeled pool:      {} (truth in pool/truth.ron)\n  a look at it:        {}",
        out.files,
        args.out.display(),
        out.urban_spec.display(),
        out.rural_spec.display(),
        out.suburb_spec.display(),
        out.pool_spec.display(),
        preview.display()
    );
    Ok(())
}
