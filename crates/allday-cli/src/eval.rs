//! `allday eval`: night→day retrieval with a trained checkpoint beside the pixel baseline.

use std::path::{Path, PathBuf};

use allday::backend::{Device, default_device};
use allday::checkpoint::Checkpoint;
use allday::config::{Config, PlaceRange};
use allday::evaluation::run::{
    EvaluationSets, MethodResult, evaluate_backbone_layers, evaluate_latent, evaluate_pixels,
    evaluate_weighted, format_csv, format_table,
};
use allday::evaluation::{GroundTruth, write_ranked_matches};
use allday::pretrained::Backbone;
use allday::weighting::{BackboneSource, WeightsFile, triplet_run_config};
use anyhow::{Context, Result, bail};
use clap::Args;

use crate::init_logging;

/// The images and ground truth of an evaluation, each defaulting to the run's config.
#[derive(Args, Debug)]
pub struct EvaluationSetArgs {
    /// Data root holding the database and query folders [default: the run's data.root].
    #[arg(long, value_name = "DIR")]
    data: Option<PathBuf>,
    /// Database folder (day, domain A), relative to the data root [default: the run's
    /// evaluation.database].
    #[arg(long)]
    database: Option<String>,
    /// Query folder (night, domain B), relative to the data root [default: the run's
    /// evaluation.queries].
    #[arg(long)]
    queries: Option<String>,
    /// Places (frame indices) kept in both sets, START..END [default: the run's
    /// evaluation.places].
    #[arg(long, value_name = "START..END")]
    places: Option<PlaceRange>,
    /// A database image within this many frames of the query is a true match [default: the
    /// run's evaluation.tolerance].
    #[arg(long)]
    tolerance: Option<usize>,
}

/// An evaluation's folders, places and frame tolerance, with the defaults filled in.
pub struct EvaluationSet {
    pub database: PathBuf,
    pub queries: PathBuf,
    pub places: PlaceRange,
    pub tolerance: usize,
}

impl EvaluationSetArgs {
    /// Fills what was not passed from `config`.
    pub fn resolve(&self, config: &Config) -> EvaluationSet {
        let evaluation = &config.evaluation;
        let root = self.data.as_ref().unwrap_or(&config.data.root);
        EvaluationSet {
            database: root.join(self.database.as_deref().unwrap_or(&evaluation.database)),
            queries: root.join(self.queries.as_deref().unwrap_or(&evaluation.queries)),
            places: self.places.unwrap_or(evaluation.places),
            tolerance: self.tolerance.unwrap_or(evaluation.tolerance),
        }
    }
}

#[derive(Args, Debug)]
pub struct EvalArgs {
    /// Run directory (its newest checkpoint) or one checkpoint directory. Not needed for
    /// --weights learned on a pretrained backbone, whose triplet run directory it may name.
    #[arg(long, value_name = "PATH")]
    run: Option<PathBuf>,
    #[command(flatten)]
    set: EvaluationSetArgs,
    /// CSV of `query,match[,match…]` rows, paths relative to the CSV's folder, to use instead
    /// of frame tolerance. A first row whose first field is `query` is a header.
    #[arg(long, value_name = "CSV", conflicts_with = "tolerance")]
    ground_truth: Option<PathBuf>,
    /// Write the 10 nearest database images of every query to this CSV.
    #[arg(long, value_name = "CSV")]
    matches: Option<PathBuf>,
    /// Write the table as CSV to this file.
    #[arg(long, value_name = "CSV")]
    csv: Option<PathBuf>,
    /// Write the figures as JSON to this file.
    #[arg(long, value_name = "FILE")]
    json: Option<PathBuf>,
    /// Compare the grids of weighted layers under horizontal offsets of up to this many
    /// columns, keeping the best [default: the config's evaluation.max_shift].
    #[arg(long, value_name = "COLUMNS")]
    max_shift: Option<usize>,
    /// Channel weights from `allday train-triplet`: of the run's encoder layers (adds a
    /// weighted row) or of a pretrained backbone's layers (evaluates that embedding).
    #[arg(long, value_name = "FILE")]
    weights: Option<PathBuf>,
}

/// The source of the evaluated embedding.
enum Subject {
    /// A stage-1 checkpoint's encoders, optionally with channel weights of its layers.
    Encoders {
        checkpoint: Box<Checkpoint>,
        weights: Option<WeightsFile>,
    },
    /// Channel weights learned on the layers of a pretrained network.
    Backbone {
        weights: WeightsFile,
        source: BackboneSource,
        /// The triplet run's config, when its run directory was found.
        config: Option<Box<Config>>,
    },
}

impl Subject {
    fn open(args: &EvalArgs) -> Result<Subject> {
        let weights = args.weights.as_deref().map(WeightsFile::load).transpose()?;
        match weights {
            Some(weights) if weights.backbone.is_some() => {
                let source = weights.backbone.clone().expect("checked above");
                // The triplet run directory: --run, or the folder the weights were written to.
                let run_dir = match (&args.run, &args.weights) {
                    (Some(run), _) => Some(run.clone()),
                    (None, Some(path)) => path.parent().map(Path::to_path_buf),
                    (None, None) => None,
                };
                let config = match run_dir {
                    Some(dir) => triplet_run_config(&dir)?.map(Box::new),
                    None => None,
                };
                if let (Some(run), None) = (&args.run, &config) {
                    bail!(
                        "{} is not a triplet run directory (it lacks source.json or checkpoints), but the weights in {} were learned on {}; pass the directory they were trained in as --run, or leave --run out",
                        run.display(),
                        args.weights.as_deref().unwrap_or(Path::new("")).display(),
                        source.network
                    );
                }
                Ok(Subject::Backbone {
                    weights,
                    source,
                    config,
                })
            }
            weights => {
                let Some(run) = &args.run else {
                    bail!("pass --run with a stage-1 run, or --weights learned on a backbone");
                };
                Ok(Subject::Encoders {
                    checkpoint: Box::new(Checkpoint::open(run)?),
                    weights,
                })
            }
        }
    }

    /// Returns the config whose data and evaluation sections give the defaults.
    fn config(&self) -> Config {
        match self {
            Subject::Encoders { checkpoint, .. } => checkpoint.config.clone(),
            Subject::Backbone { config, .. } => config.as_deref().cloned().unwrap_or_default(),
        }
    }

    /// Returns the first line of the report.
    fn describe(&self) -> String {
        match self {
            Subject::Encoders { checkpoint, .. } => format!(
                "checkpoint {} (epoch {})",
                checkpoint.path.display(),
                checkpoint.state.epoch
            ),
            Subject::Backbone { source, .. } => format!(
                "{} with weights {}, learned channel weights",
                source.network,
                source.weights.display()
            ),
        }
    }

    /// Measures the embedding, then the unweighted features it builds on.
    fn evaluate(
        &self,
        sets: &EvaluationSets,
        ground_truth: &GroundTruth,
        max_shift: usize,
        margin: f64,
        device: &Device,
    ) -> Result<Vec<MethodResult>> {
        match self {
            Subject::Encoders {
                checkpoint,
                weights,
            } => {
                let model = checkpoint.load_model(device)?;
                let mut results = vec![evaluate_latent(&model, sets, ground_truth, margin, device)];
                if let Some(weights) = weights {
                    results.push(evaluate_weighted(
                        &model,
                        sets,
                        ground_truth,
                        weights,
                        max_shift,
                        margin,
                        device,
                    )?);
                }
                Ok(results)
            }
            Subject::Backbone {
                weights, source, ..
            } => {
                let backbone = Backbone::load(source.network, &source.weights, device)
                    .with_context(|| format!("cannot load {}", source.network))?;
                let depth = weights.depth;
                let name = source.network.short_name();
                evaluate_backbone_layers(
                    &backbone,
                    depth,
                    &[
                        (format!("allday {name} weighted d{depth}"), Some(weights)),
                        (format!("{name} spatial d{depth}"), None),
                    ],
                    max_shift,
                    sets,
                    ground_truth,
                    margin,
                    device,
                )
                .map_err(Into::into)
            }
        }
    }
}

pub fn run(args: EvalArgs) -> Result<()> {
    init_logging(None)?;
    let device = default_device();
    let subject = Subject::open(&args)?;
    let config = subject.config();
    let evaluation = &config.evaluation;
    let EvaluationSet {
        database,
        queries,
        places,
        tolerance,
    } = args.set.resolve(&config);
    let ground_truth = match &args.ground_truth {
        Some(path) => GroundTruth::from_csv(path)?,
        None => GroundTruth::Frames { tolerance },
    };
    for (name, range) in [
        ("training", config.data.train_places),
        ("validation", config.data.validation_places),
    ] {
        if range.overlaps(&places) {
            tracing::warn!(
                "evaluation places {places} overlap the {name} places {range} of this run"
            );
        }
    }

    let sets = EvaluationSets::load(
        &database,
        &queries,
        places,
        config.data.width,
        config.data.height,
        config.data.load_options(),
    )?;
    ground_truth.check_queries(&sets.queries.entries)?;
    let margin = config.triplet.margin;
    let max_shift = args.max_shift.unwrap_or(evaluation.max_shift);
    let mut results = subject.evaluate(&sets, &ground_truth, max_shift, margin, &device)?;
    results.push(evaluate_pixels(&sets, &ground_truth, margin, &device)?);

    let tolerance = match &ground_truth {
        GroundTruth::Frames { tolerance } => format!("±{tolerance} frames"),
        GroundTruth::Files { source, .. } => format!("ground truth {}", source.display()),
    };
    println!(
        "{}\nqueries {} → database {}, places {places}, {tolerance}\n",
        subject.describe(),
        queries.display(),
        database.display()
    );
    print!("{}", format_table(&results));

    if let Some(path) = &args.matches {
        write_ranked_matches(
            path,
            &results[0].distances,
            &sets.queries.entries,
            &sets.database.entries,
            &ground_truth,
            10,
        )?;
        println!("\nranked matches written to {}", path.display());
    }
    if let Some(path) = &args.csv {
        allday::io::write_atomic(path, format_csv(&results).as_bytes())?;
        println!("table written to {}", path.display());
    }
    if let Some(path) = &args.json {
        let methods: serde_json::Map<String, serde_json::Value> = results
            .iter()
            .map(|result| {
                let mut figures = serde_json::json!(result.metrics);
                figures["triplets"] = serde_json::json!(result.triplets);
                figures["clustering"] = serde_json::json!(result.clustering);
                (result.name.clone(), figures)
            })
            .collect();
        let report = serde_json::json!({
            "subject": subject.describe(),
            "database": database,
            "queries": queries,
            "places": places.to_string(),
            "ground_truth": tolerance,
            "methods": methods,
        });
        let text = serde_json::to_string_pretty(&report)?;
        allday::io::write_atomic(path, text.as_bytes())?;
        println!("figures written to {}", path.display());
    }
    Ok(())
}
