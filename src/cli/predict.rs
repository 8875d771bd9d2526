//! `s5 predict`: a trained model on images or folders of any size → index, colour and
//! confidence PNGs (index and confidence as GeoTIFFs for georeferenced inputs).

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Result, bail};
use indicatif::{ProgressBar, ProgressStyle};
use s5::data::source::images_in_folder;
use s5::device::{self, GpuBackend};
use s5::eval::predict::predict_file;

use super::infer_args::InferArgs;

#[derive(Debug, clap::Args)]
pub struct PredictArgs {
    /// A run directory (its newest checkpoint) or a checkpoint folder.
    #[arg(long)]
    model: PathBuf,
    /// Which decoder, by dataset name or index (needed when the model has several).
    #[arg(long)]
    dataset: Option<String>,
    /// Output folder: index/, color/ and confidence/ PNGs named like the inputs (index and
    /// confidence as tiled GeoTIFFs for georeferenced inputs).
    #[arg(long)]
    out: PathBuf,
    #[command(flatten)]
    infer: InferArgs,
    /// Weights and arithmetic in f16 (adapters with `shader-f16`): half the memory, faster
    /// where the GPU has fast f16; classes agree with f32 on ≥ 99.9 % of pixels.
    #[arg(long)]
    f16: bool,
    /// Images, or folders of images.
    #[arg(required = true)]
    inputs: Vec<PathBuf>,
}

pub fn run(backend: Option<GpuBackend>, args: PredictArgs) -> Result<()> {
    let mode = args.infer.mode()?;
    let mut files = Vec::new();
    for input in &args.inputs {
        if input.is_dir() {
            files.extend(images_in_folder(input)?);
        } else if input.is_file() {
            files.push(input.clone());
        } else {
            bail!("{}: no such image or folder", input.display());
        }
    }
    if files.is_empty() {
        bail!("no images found in {:?}", args.inputs);
    }
    let files = s5::eval::predict::distinct_outputs(files, &args.out)?;
    let gpu = device::gpu(backend)?;
    let (model, card, checkpoint) = s5::train::load_model(&args.model, &gpu.device)?;
    let model = super::infer_args::precision(model, args.f16, gpu)?;
    let dataset = card
        .dataset_index(args.dataset.as_deref())
        .map_err(anyhow::Error::msg)?;
    eprintln!(
        "model {} ({}), {} image(s), {mode}{}",
        checkpoint.display(),
        card.datasets[dataset].name,
        files.len(),
        if args.f16 { ", f16" } else { "" }
    );
    let bar = ProgressBar::new(files.len() as u64).with_style(ProgressStyle::with_template(
        "{bar:30} {pos}/{len} images ({eta})  {msg}",
    )?);
    let started = Instant::now();
    let mut pixels = 0u64;
    for file in &files {
        bar.set_message(file.display().to_string());
        let out = predict_file(
            &model,
            dataset,
            &card.datasets[dataset],
            file,
            &args.out,
            mode,
            args.infer.window_batch,
            &gpu.device,
        )?;
        pixels += u64::from(out.size_px.0) * u64::from(out.size_px.1);
        bar.inc(1);
    }
    bar.finish_and_clear();
    let secs = started.elapsed().as_secs_f64();
    println!(
        "wrote {} prediction(s) under {} (index/, color/, confidence/): {:.1} Mpx in {secs:.1} s",
        files.len(),
        args.out.display(),
        pixels as f64 / 1e6
    );
    if let Some(peak) = s5::memory::peak_rss_bytes() {
        println!(
            "peak memory (RSS): {:.0} MiB",
            peak as f64 / (1u64 << 20) as f64
        );
    }
    Ok(())
}
