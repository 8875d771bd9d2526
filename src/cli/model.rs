//! `s5 model summary`: parameter counts per part, and the paper's Table 1 reproduced.

use anyhow::{Result, bail};
use s5::data::DatasetSpec;
use s5::device::{self, GpuBackend};
use s5::model::{
    Activation, ParamCount, Segmentor, SegmentorConfig, VitConfig, count_params, paper_models,
};
use s5::run::{DatasetCard, ModelCard};
use s5::train::checkpoint::{dataset_card, save_model_folder};

#[derive(Debug, clap::Subcommand)]
pub enum ModelCommand {
    /// Parameter counts (millions) per part. Without --backbone: the paper's six models.
    Summary(SummaryArgs),
    /// Load a pretrained checkpoint (MAE / timm ViT, or the authors' S4P UperNet with neck and
    /// decoder; .pth or .safetensors) into an s5 model, report every key that did not map, and
    /// optionally save the model.
    Import(ImportArgs),
}

#[derive(Debug, clap::Args)]
pub struct ImportArgs {
    /// The checkpoint.
    checkpoint: std::path::PathBuf,
    /// vit-t, vit-s, vit-b, vit-l or vit-h.
    #[arg(long, default_value = "vit-b")]
    backbone: String,
    /// Datasets of an FFN-MoE model (experts initialised from the dense fc2).
    #[arg(long, default_value_t = 1)]
    datasets: usize,
    /// P of an FFN-MoE model: output columns of each dataset expert (1 to D − 1).
    #[arg(long, default_value_t = 256)]
    moe_part: usize,
    /// Classes per dataset (repeat once per dataset, or give one for all); --spec sets them
    /// instead.
    #[arg(long = "classes", default_values_t = [16], conflicts_with = "specs")]
    classes: Vec<usize>,
    /// The dataset spec of each decoder (repeat once per dataset): its classes, their names
    /// and palette go into the written checkpoint's card, so `s5 predict` colours by them
    /// and `s5 eval` finds the data.
    #[arg(long = "spec")]
    specs: Vec<std::path::PathBuf>,
    /// Write the whole model as an s5 checkpoint folder here (model.bpk, its card and
    /// checksums): `--init`, `s5 predict --model` and `s5 eval --model` take it.
    #[arg(long)]
    out: Option<std::path::PathBuf>,
}

#[derive(Debug, clap::Args)]
pub struct SummaryArgs {
    /// vit-t, vit-s, vit-b, vit-l or vit-h.
    #[arg(long, conflicts_with = "model")]
    backbone: Option<String>,
    /// The model of a run directory (its newest checkpoint) or checkpoint folder, as its
    /// card describes it.
    #[arg(long)]
    model: Option<std::path::PathBuf>,
    /// Datasets of a multi-dataset (MoE-MDF) model: one expert per FFN and one decoder each.
    #[arg(long, default_value_t = 1)]
    datasets: usize,
    /// P: output columns of each dataset expert (MoE when --datasets > 1).
    #[arg(long, conflicts_with = "alpha")]
    moe_part: Option<usize>,
    /// The paper's α instead of --moe-part: P = α · 1024 (Table 3's counts: α = 1/8, 1/4,
    /// 1/2 are P = 128, 256, 512 on ViT-B).
    #[arg(long)]
    alpha: Option<f64>,
    /// Classes per dataset (repeat once per dataset, or give one for all).
    #[arg(long = "classes", default_values_t = [16])]
    classes: Vec<usize>,
    #[arg(long, value_enum, default_value_t = ActivationArg::Gelu)]
    activation: ActivationArg,
    /// Also build the model on the GPU and count its parameters there.
    #[arg(long)]
    build: bool,
    #[arg(long)]
    json: bool,
}

pub fn run(backend: Option<GpuBackend>, cmd: ModelCommand) -> Result<()> {
    match cmd {
        ModelCommand::Summary(args) => summary(backend, args),
        ModelCommand::Import(args) => import(backend, args),
    }
}

fn classes_per_dataset(classes: &[usize], datasets: usize) -> Result<Vec<usize>> {
    match classes.len() {
        1 => Ok(vec![classes[0]; datasets]),
        n if n == datasets => Ok(classes.to_vec()),
        n => bail!(
            "--classes given {n} times for {datasets} datasets: give it once or once per dataset"
        ),
    }
}

fn import(backend: Option<GpuBackend>, args: ImportArgs) -> Result<()> {
    let Some(mut vit) = VitConfig::by_name(&args.backbone) else {
        bail!(
            "unknown backbone `{}`: use vit-t, vit-s, vit-b, vit-l or vit-h",
            args.backbone
        );
    };
    let datasets = match (args.specs.len(), args.datasets) {
        (0, d) => d,
        (n, 1) => n,
        (n, d) if n == d => d,
        (n, d) => bail!("--spec given {n} times for --datasets {d}: give one spec per dataset"),
    };
    if datasets == 0 {
        bail!("--datasets must be at least 1");
    }
    let specs = args
        .specs
        .iter()
        .map(|path| Ok((DatasetSpec::load(path)?, path.clone())))
        .collect::<Result<Vec<_>>>()?;
    if datasets > 1 {
        if args.moe_part == 0 || args.moe_part >= vit.dim {
            bail!(
                "--moe-part must be between 1 and {} for {} (got {})",
                vit.dim - 1,
                args.backbone,
                args.moe_part
            );
        }
        vit = vit.with_moe(datasets, args.moe_part);
    }
    let classes = if specs.is_empty() {
        classes_per_dataset(&args.classes, datasets)?
    } else {
        specs.iter().map(|(s, _)| s.num_classes()).collect()
    };
    if let Some(&k) = classes.iter().find(|&&k| k == 0 || k > 255) {
        bail!("--classes must be between 1 and 255 (got {k})");
    }
    if let Some(out) = &args.out
        && out.exists()
    {
        bail!(
            "{}: exists already; --out writes a new checkpoint folder",
            out.display()
        );
    }
    let cfg = SegmentorConfig::new(vit, classes);
    let gpu = device::gpu(backend)?;
    let raw = s5::model::import::read_checkpoint(&args.checkpoint)?;
    let mut model = Segmentor::new(&cfg, &gpu.device);
    let report =
        s5::model::import::load_segmentor(&mut model, &raw, &args.checkpoint, &gpu.device)?;
    println!(
        "loaded {} tensors from {}",
        report.loaded.len(),
        args.checkpoint.display()
    );
    for (part, prefix) in [
        ("backbone", None),
        ("neck", Some("neck.")),
        ("decoder", Some("decode_head.")),
    ] {
        let n = report
            .loaded
            .iter()
            .filter(|k| match prefix {
                Some(p) => k.starts_with(p),
                None => !k.starts_with("neck.") && !k.starts_with("decode_head."),
            })
            .count();
        println!("  {part:<9} {n} tensors");
    }
    if let Some((from, to)) = report.pos_resized {
        println!("position table resized from {from:?} to {to:?} (bicubic)");
    }
    if report.init_from_dense {
        println!("FFN-MoE experts initialised from the dense fc2 rows");
    }
    for key in &report.unmapped {
        println!("not mapped (ignored): {key}");
    }
    for key in &report.missing {
        println!("missing (left as initialised): {key}");
    }
    if let Some(out) = &args.out {
        let card = ModelCard {
            segmentor: cfg.clone(),
            datasets: if specs.is_empty() {
                cfg.classes
                    .iter()
                    .enumerate()
                    .map(|(i, &k)| generic_card(i, k))
                    .collect()
            } else {
                specs
                    .iter()
                    .map(|(spec, path)| Ok(dataset_card(spec, &std::path::absolute(path)?)))
                    .collect::<std::io::Result<_>>()?
            },
        };
        let dir = save_model_folder(&model, &card, out)?;
        println!("wrote {} (model, card, checksums)", dir.display());
    }
    Ok(())
}

/// The card of a decoder imported without a spec: classes `class-<k>` in distinct colours.
fn generic_card(index: usize, classes: usize) -> DatasetCard {
    DatasetCard {
        name: format!("imported-{index}"),
        classes: (0..classes).map(|k| format!("class-{k}")).collect(),
        palette: (0..classes)
            .map(|k| {
                let k = k as u32;
                [
                    (k * 97 % 256) as u8,
                    (k * 57 + 90) as u8,
                    (k * 151 + 30) as u8,
                ]
            })
            .collect(),
        background: None,
        spec: std::path::PathBuf::new(),
        imaging: Default::default(),
    }
}

fn millions(n: usize) -> String {
    format!("{:.1}", n as f64 / 1e6)
}

fn summary(backend: Option<GpuBackend>, args: SummaryArgs) -> Result<()> {
    if let Some(model) = &args.model {
        let dir = s5::run::checkpoint::resolve_checkpoint(model)?;
        let card = s5::run::checkpoint::read_card(&dir)?;
        let counted = count_params(&card.segmentor);
        if args.json {
            let doc = serde_json::json!({ "config": card.segmentor, "parts": counted, "total": counted.total() });
            println!("{}", serde_json::to_string_pretty(&doc)?);
        } else {
            print_parts(&dir.display().to_string(), &counted);
        }
        return Ok(());
    }
    let Some(name) = args.backbone else {
        let rows = paper_models();
        if args.json {
            let doc: Vec<_> = rows
                .iter()
                .map(|m| {
                    let c = count_params(&m.config);
                    serde_json::json!({ "model": m.name, "params": c.total(), "parts": c, "paper_m": m.paper_params_m })
                })
                .collect();
            println!("{}", serde_json::to_string_pretty(&doc)?);
            return Ok(());
        }
        println!(
            "{:<16} {:>10} {:>10} {:>10}",
            "model", "s5 (M)", "paper (M)", "diff (M)"
        );
        for m in rows {
            let (n, paper) = (m.name, m.paper_params_m);
            let total = count_params(&m.config).total() as f64 / 1e6;
            println!(
                "{n:<16} {total:>10.1} {paper:>10.1} {:>+10.2}",
                total - paper
            );
        }
        println!("\n(single: 16 classes; MoE-MDF: 4 datasets with 5, 5, 7, 9 classes, P = 256)");
        return Ok(());
    };
    let Some(mut vit) = VitConfig::by_name(&name) else {
        bail!("unknown backbone `{name}`: use vit-t, vit-s, vit-b, vit-l or vit-h");
    };
    if args.datasets == 0 {
        bail!("--datasets must be at least 1");
    }
    vit.activation = args.activation.into();
    if args.datasets > 1 || args.moe_part.is_some() || args.alpha.is_some() {
        let p = match (args.moe_part, args.alpha) {
            (Some(p), _) => p,
            (None, Some(a)) => VitConfig::expert_dim_for_alpha(a),
            (None, None) => 256.min(vit.dim / 2),
        };
        if p == 0 || p >= vit.dim {
            bail!(
                "P = {p}: --moe-part (or --alpha · 1024) must be between 1 and {} (the block \
                 width) for {name}",
                vit.dim - 1
            );
        }
        vit = vit.with_moe(args.datasets, p);
    }
    let classes = match args.classes.len() {
        1 => vec![args.classes[0]; args.datasets],
        n if n == args.datasets => args.classes.clone(),
        n => bail!(
            "--classes given {n} times for {} datasets: give it once or once per dataset",
            args.datasets
        ),
    };
    let cfg = SegmentorConfig::new(vit, classes);
    let counted = count_params(&cfg);
    let built = if args.build {
        let gpu = device::gpu(backend)?;
        Some(Segmentor::new(&cfg, &gpu.device).num_trainable_params())
    } else {
        None
    };
    if args.json {
        let doc = serde_json::json!({ "config": cfg, "parts": counted, "total": counted.total(), "built": built });
        println!("{}", serde_json::to_string_pretty(&doc)?);
        return Ok(());
    }
    print_parts(&name, &counted);
    if let Some(b) = built {
        println!(
            "{:<22} {:>10}  ({} parameters)",
            "built on the GPU",
            millions(b),
            b
        );
        if b != counted.total() {
            bail!(
                "the built model has {b} parameters but the counting code says {}",
                counted.total()
            );
        }
    }
    Ok(())
}

fn print_parts(name: &str, c: &ParamCount) {
    println!("{name}: parameters (M)");
    println!("{:<22} {:>10}", "backbone (shared)", millions(c.backbone));
    if c.experts > 0 {
        println!("{:<22} {:>10}", "dataset experts", millions(c.experts));
    }
    println!("{:<22} {:>10}", "neck", millions(c.neck));
    for (i, d) in c.decoders.iter().enumerate() {
        println!("{:<22} {:>10}", format!("decoder {i}"), millions(*d));
    }
    println!("{:<22} {:>10}", "total", millions(c.total()));
}

/// `--activation`: the FFN activation (the paper says ReLU, the authors' code GELU).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum ActivationArg {
    Gelu,
    Relu,
}

impl From<ActivationArg> for Activation {
    fn from(arg: ActivationArg) -> Self {
        match arg {
            ActivationArg::Gelu => Activation::Gelu,
            ActivationArg::Relu => Activation::Relu,
        }
    }
}
