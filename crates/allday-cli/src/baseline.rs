//! `allday baseline` and `allday compare`: retrieval with the reference descriptors (raw
//! pixels, HOG, ImageNet-pretrained networks), alone or beside a trained run.

use std::path::{Path, PathBuf};

use allday::backend::default_device;
use allday::checkpoint::Checkpoint;
use allday::config::{Config, PlaceRange};
use allday::data::LoadOptions;
use allday::evaluation::GroundTruth;
use allday::evaluation::run::{
    EvaluationSets, MethodResult, evaluate_backbone_layers, evaluate_hog, evaluate_latent,
    evaluate_network, evaluate_pixels, evaluate_weighted, format_table,
};
use allday::pooling::{GEM_P, Pooling};
use allday::pretrained::{Backbone, Network};
use allday::weighting::{WeightsFile, triplet_run_config};
use anyhow::{Context, Result};
use clap::{Args, ValueEnum};

use crate::eval::{EvaluationSet, EvaluationSetArgs};
use crate::init_logging;

/// Width and height the image sets are loaded at when only their file list is needed: every
/// baseline decodes the files again at its own size.
const LISTING_SIZE: (usize, usize) = (16, 12);

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum BaselineModel {
    /// VGG-16, torchvision's ImageNet weights (pass them with --weights).
    Vgg16,
    /// EfficientNet-Lite0, ImageNet weights.
    #[value(name = "efficientnet-lite0")]
    EfficientNetLite0,
    /// Standardised 32×24 grey thumbnails.
    Pixels,
    /// HOG of the 128×96 grey image.
    Hog,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum PoolingArg {
    /// Generalised mean, p = 3.
    Gem,
    /// Global average.
    Mean,
    /// Global maximum.
    Max,
    /// No pooling: per-position vectors compared as allday's latent.
    Spatial,
}

impl From<PoolingArg> for Pooling {
    fn from(pooling: PoolingArg) -> Pooling {
        match pooling {
            PoolingArg::Gem => Pooling::Gem { p: GEM_P },
            PoolingArg::Mean => Pooling::Mean,
            PoolingArg::Max => Pooling::Max,
            PoolingArg::Spatial => Pooling::Spatial,
        }
    }
}

#[derive(Args, Debug)]
pub struct BaselineArgs {
    /// The descriptor.
    #[arg(long, value_enum)]
    model: BaselineModel,
    /// How the network's last convolution map becomes a descriptor (networks only).
    #[arg(long, value_enum, default_value = "gem")]
    pooling: PoolingArg,
    /// PyTorch weights (.pth or .safetensors) [default: for efficientnet-lite0
    /// ../shared/models/efficientnet_lite0/efficientnet-lite0-57934424.pth, for vgg16
    /// torchvision's ~/.cache/torch/hub/checkpoints/vgg16-397923af.pth].
    #[arg(long, value_name = "PATH")]
    weights: Option<PathBuf>,
    /// Data root holding the database and query folders.
    #[arg(long, value_name = "DIR")]
    data: PathBuf,
    /// Database folder, relative to the data root.
    #[arg(long, default_value = "day_right")]
    database: String,
    /// Query folder, relative to the data root.
    #[arg(long, default_value = "night_right")]
    queries: String,
    /// Places (frame indices) kept in both sets, START..END.
    #[arg(long, value_name = "START..END", default_value = "100..200")]
    places: PlaceRange,
    /// A database image within this many frames of the query is a true match.
    #[arg(long, default_value_t = 2)]
    tolerance: usize,
    /// Write the figures as JSON to this file.
    #[arg(long, value_name = "FILE")]
    json: Option<PathBuf>,
}

#[derive(Args, Debug)]
pub struct CompareArgs {
    /// Run directory (its newest checkpoint) or one checkpoint directory.
    #[arg(long, value_name = "PATH")]
    run: PathBuf,
    /// Channel weights from `allday train-triplet`; adds the weighted embedding.
    #[arg(long, value_name = "FILE")]
    weights: Option<PathBuf>,
    #[command(flatten)]
    set: EvaluationSetArgs,
    /// EfficientNet-Lite0 weights [default:
    /// ../shared/models/efficientnet_lite0/efficientnet-lite0-57934424.pth].
    #[arg(long, value_name = "PATH")]
    efficientnet: Option<PathBuf>,
    /// VGG-16 weights in torchvision's layout; adds VGG-16 GeM to the table.
    #[arg(long, value_name = "PATH")]
    vgg16: Option<PathBuf>,
    /// Write the figures as JSON to this file.
    #[arg(long, value_name = "FILE")]
    json: Option<PathBuf>,
}

fn load_backbone(network: Network, weights: Option<&Path>) -> Result<Backbone> {
    let path = weights
        .map(Path::to_path_buf)
        .unwrap_or_else(|| network.default_weights());
    tracing::info!("loading {network} weights from {}", path.display());
    Backbone::load(network, &path, &default_device())
        .with_context(|| format!("cannot load {network}"))
}

fn network_name(network: Network, pooling: Pooling) -> String {
    format!("{} {pooling}", network.short_name())
}

pub fn baseline(args: BaselineArgs) -> Result<()> {
    init_logging(None)?;
    let device = default_device();
    let database = args.data.join(&args.database);
    let queries = args.data.join(&args.queries);
    let (width, height) = LISTING_SIZE;
    let sets = EvaluationSets::load(
        &database,
        &queries,
        args.places,
        width,
        height,
        LoadOptions::default(),
    )?;
    let ground_truth = GroundTruth::Frames {
        tolerance: args.tolerance,
    };
    let margin = Config::default().triplet.margin;
    let pooling = Pooling::from(args.pooling);
    let result = match args.model {
        BaselineModel::Pixels => evaluate_pixels(&sets, &ground_truth, margin, &device)?,
        BaselineModel::Hog => evaluate_hog(&sets, &ground_truth, margin, &device)?,
        BaselineModel::Vgg16 | BaselineModel::EfficientNetLite0 => {
            let network = match args.model {
                BaselineModel::Vgg16 => Network::Vgg16,
                _ => Network::EfficientNetLite0,
            };
            let backbone = load_backbone(network, args.weights.as_deref())?;
            let poolings = [(network_name(network, pooling), pooling)];
            evaluate_network(&backbone, &poolings, &sets, &ground_truth, margin, &device)?.remove(0)
        }
    };
    let header = format!(
        "queries {} → database {}, places {}, ±{} frames",
        queries.display(),
        database.display(),
        args.places,
        args.tolerance
    );
    report(
        &header,
        &[result],
        args.json.as_deref(),
        serde_json::json!({}),
    )
}

pub fn compare(args: CompareArgs) -> Result<()> {
    init_logging(None)?;
    let device = default_device();
    let checkpoint = Checkpoint::open(&args.run)?;
    let config = &checkpoint.config;
    let EvaluationSet {
        database,
        queries,
        places,
        tolerance,
    } = args.set.resolve(config);
    let ground_truth = GroundTruth::Frames { tolerance };
    let margin = config.triplet.margin;

    let model = checkpoint.load_model(&device)?;
    let sets = EvaluationSets::load(
        &database,
        &queries,
        places,
        config.data.width,
        config.data.height,
        config.data.load_options(),
    )?;
    let mut results: Vec<MethodResult> = Vec::new();
    tracing::info!("evaluating the trained embedding");
    results.push(evaluate_latent(
        &model,
        &sets,
        &ground_truth,
        margin,
        &device,
    ));
    if let Some(path) = &args.weights {
        let weights = WeightsFile::load(path)?;
        let max_shift = config.evaluation.max_shift;
        results.push(match &weights.backbone {
            Some(source) => {
                let backbone = load_backbone(source.network, Some(&source.weights))?;
                // The offsets the weights were trained for, from their triplet run.
                let run_config = match path.parent() {
                    Some(dir) => triplet_run_config(dir)?,
                    None => None,
                };
                let max_shift = run_config.map_or(max_shift, |run| run.evaluation.max_shift);
                let name = format!(
                    "allday {} weighted d{}",
                    source.network.short_name(),
                    weights.depth
                );
                evaluate_backbone_layers(
                    &backbone,
                    weights.depth,
                    &[(name, Some(&weights))],
                    max_shift,
                    &sets,
                    &ground_truth,
                    margin,
                    &device,
                )?
                .remove(0)
            }
            None => evaluate_weighted(
                &model,
                &sets,
                &ground_truth,
                &weights,
                max_shift,
                margin,
                &device,
            )?,
        });
    }
    let mut networks = vec![(Network::EfficientNetLite0, args.efficientnet.clone())];
    if let Some(path) = &args.vgg16 {
        networks.push((Network::Vgg16, Some(path.clone())));
    }
    for (network, weights) in networks {
        let backbone = load_backbone(network, weights.as_deref())?;
        tracing::info!("evaluating {network} with GAP and GeM pooling");
        let poolings: Vec<(String, Pooling)> = [Pooling::Mean, Pooling::Gem { p: GEM_P }]
            .into_iter()
            .map(|pooling| (network_name(network, pooling), pooling))
            .collect();
        results.extend(evaluate_network(
            &backbone,
            &poolings,
            &sets,
            &ground_truth,
            margin,
            &device,
        )?);
    }
    tracing::info!("evaluating HOG and raw pixels");
    results.push(evaluate_hog(&sets, &ground_truth, margin, &device)?);
    results.push(evaluate_pixels(&sets, &ground_truth, margin, &device)?);

    let header = format!(
        "checkpoint {} (epoch {})\nqueries {} → database {}, places {places}, ±{tolerance} frames",
        checkpoint.path.display(),
        checkpoint.state.epoch,
        queries.display(),
        database.display()
    );
    let extra = serde_json::json!({
        "checkpoint": checkpoint.path,
        "epoch": checkpoint.state.epoch,
    });
    report(&header, &results, args.json.as_deref(), extra)
}

/// Prints the table and, when asked, writes the figures as JSON (atomically).
fn report(
    header: &str,
    results: &[MethodResult],
    json: Option<&Path>,
    mut extra: serde_json::Value,
) -> Result<()> {
    println!("{header}\n");
    print!("{}", format_table(results));
    if let Some(path) = json {
        let methods: serde_json::Map<String, serde_json::Value> = results
            .iter()
            .map(|result| {
                let mut figures = serde_json::json!(result.metrics);
                figures["triplets"] = serde_json::json!(result.triplets);
                figures["clustering"] = serde_json::json!(result.clustering);
                (result.name.clone(), figures)
            })
            .collect();
        extra["setting"] = serde_json::json!(header);
        extra["methods"] = serde_json::Value::Object(methods);
        let text = serde_json::to_string_pretty(&extra)?;
        allday::io::write_atomic(path, text.as_bytes())
            .with_context(|| format!("cannot write {}", path.display()))?;
        println!("figures written to {}", path.display());
    }
    Ok(())
}
