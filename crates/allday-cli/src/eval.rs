//! `allday eval`: night→day retrieval with a trained checkpoint beside the pixel baseline.

use std::path::PathBuf;

use allday::backend::default_device;
use allday::checkpoint::Checkpoint;
use allday::config::PlaceRange;
use allday::evaluation::run::{
    EvaluationSets, evaluate_latent, evaluate_pixels, evaluate_weighted, format_csv, format_table,
};
use allday::evaluation::{GroundTruth, write_ranked_matches};
use allday::weighting::WeightsFile;
use anyhow::Result;
use clap::Args;

use crate::init_logging;

#[derive(Args, Debug)]
pub struct EvalArgs {
    /// Run directory (its newest checkpoint) or one checkpoint directory.
    #[arg(long, value_name = "PATH")]
    run: PathBuf,
    /// Data root holding the database and query folders [default: the run's data.root].
    #[arg(long, value_name = "DIR")]
    data: Option<PathBuf>,
    /// Database folder (day, domain A), relative to the data root.
    #[arg(long)]
    database: Option<String>,
    /// Query folder (night, domain B), relative to the data root.
    #[arg(long)]
    queries: Option<String>,
    /// Places (frame indices) kept in both sets, START..END.
    #[arg(long, value_name = "START..END")]
    places: Option<PlaceRange>,
    /// A database image within this many frames of the query is a true match.
    #[arg(long)]
    tolerance: Option<usize>,
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
    /// Channel weights from `allday train-triplet`; adds a weighted row to the table.
    #[arg(long, value_name = "FILE")]
    weights: Option<PathBuf>,
}

pub fn run(args: EvalArgs) -> Result<()> {
    init_logging(None)?;
    let device = default_device();
    let checkpoint = Checkpoint::open(&args.run)?;
    let config = &checkpoint.config;
    let evaluation = &config.evaluation;
    let root = args
        .data
        .clone()
        .unwrap_or_else(|| config.data.root.clone());
    let database = root.join(args.database.as_deref().unwrap_or(&evaluation.database));
    let queries = root.join(args.queries.as_deref().unwrap_or(&evaluation.queries));
    let places = args.places.unwrap_or(evaluation.places);
    let ground_truth = match &args.ground_truth {
        Some(path) => GroundTruth::from_csv(path)?,
        None => GroundTruth::Frames {
            tolerance: args.tolerance.unwrap_or(evaluation.tolerance),
        },
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

    let model = checkpoint.load_model(&device)?;
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
    let latent = evaluate_latent(&model, &sets, &ground_truth, margin, &device);
    let weighted = match &args.weights {
        Some(path) => {
            let weights = WeightsFile::load(path)?;
            Some(evaluate_weighted(
                &model,
                &sets,
                &ground_truth,
                &weights,
                margin,
                &device,
            ))
        }
        None => None,
    };
    let pixels = evaluate_pixels(&sets, &ground_truth, margin, &device)?;

    let tolerance = match &ground_truth {
        GroundTruth::Frames { tolerance } => format!("±{tolerance} frames"),
        GroundTruth::Files { source, .. } => format!("ground truth {}", source.display()),
    };
    println!(
        "checkpoint {} (epoch {})\nqueries {} → database {}, places {places}, {tolerance}\n",
        checkpoint.path.display(),
        checkpoint.state.epoch,
        queries.display(),
        database.display()
    );
    let mut results = vec![latent.clone()];
    results.extend(weighted.clone());
    results.push(pixels.clone());
    print!("{}", format_table(&results));

    if let Some(path) = &args.matches {
        write_ranked_matches(
            path,
            &latent.distances,
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
            "checkpoint": checkpoint.path,
            "epoch": checkpoint.state.epoch,
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
