//! `allday`: train a day/night double VAE, evaluate place retrieval, render translations.

use std::fs::File;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use allday::backend::{backend_name, default_device};
use allday::checkpoint::Checkpoint;
use allday::config::{Config, PlaceRange};
use allday::data::{ImageSet, list_images};
use allday::evaluation::run::{
    EvaluationSets, evaluate_latent, evaluate_pixels, evaluate_weighted, format_table,
};
use allday::evaluation::{GroundTruth, write_ranked_matches};
use allday::model::Domain;
use allday::training::{Trainer, TrainingData};
use allday::translation::{save_png, translation_grid};
use allday::weighting::{
    ChannelWeights, LayerFeatures, TripletData, WeightsFile, channel_importance, sample_triplets,
    share_carrying, train_weights,
};
use anyhow::{Context, Result, bail};
use clap::{Args, Parser, Subcommand};
use rand::SeedableRng;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

/// Learn a day/night-invariant image embedding and retrieve places with it.
///
/// Train a double VAE on day and night image folders (`allday train`), measure night→day
/// retrieval with it (`allday eval`), and look at its translations (`allday translate`).
#[derive(Parser, Debug)]
#[command(name = "allday", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Train the double VAE (stage 1, unsupervised), or resume a run.
    Train(TrainArgs),
    /// Evaluate night→day retrieval with a trained checkpoint, beside the raw-pixel baseline.
    Eval(EvalArgs),
    /// Write a PNG of day and night images with their reconstructions and translations.
    Translate(TranslateArgs),
    /// Learn a weight per channel of the matched encoder layers from labelled triplets of
    /// training places (stage 2), with the encoders of a trained run frozen.
    TrainTriplet(TrainTripletArgs),
    /// Rank the channels of learned weights by how much the held-out triplet loss rises when
    /// each one alone is removed.
    Channels(ChannelsArgs),
}

#[derive(Args, Debug)]
struct ChannelsArgs {
    /// Run directory (its newest checkpoint) or one checkpoint directory.
    #[arg(long, value_name = "PATH")]
    run: PathBuf,
    /// Channel weights from `allday train-triplet`.
    #[arg(long, value_name = "FILE")]
    weights: PathBuf,
    /// Data root holding the domain folders [default: the run's data.root].
    #[arg(long, value_name = "DIR")]
    data: Option<PathBuf>,
    /// Write every channel's weight and importance to this CSV.
    #[arg(long, value_name = "CSV")]
    csv: Option<PathBuf>,
    /// Channels listed in the terminal, most important first.
    #[arg(long, default_value_t = 10)]
    top: usize,
}

#[derive(Args, Debug)]
struct TrainTripletArgs {
    /// Run directory of a stage-1 training (its newest checkpoint) or one checkpoint directory.
    #[arg(long, value_name = "PATH")]
    from: PathBuf,
    /// Encoder layers matched, counted back from the latent [default: triplet.depth of the run].
    #[arg(long)]
    depth: Option<usize>,
    /// Epochs of triplet training [default: triplet.epochs of the run].
    #[arg(long)]
    epochs: Option<usize>,
    /// Data root holding the domain folders [default: the run's data.root].
    #[arg(long, value_name = "DIR")]
    data: Option<PathBuf>,
    /// Output JSON of the weights [default: channel-weights-dN.json in the run directory].
    #[arg(long, short, value_name = "FILE")]
    out: Option<PathBuf>,
}

#[derive(Args, Debug)]
struct TrainArgs {
    /// TOML config; fields it omits take their defaults (see configs/reference.toml).
    #[arg(long, conflicts_with = "resume", required_unless_present = "resume")]
    config: Option<PathBuf>,
    /// Continue the run in this directory from its newest intact checkpoint, with the config
    /// stored in that checkpoint (edits to the run's config.toml are not applied).
    #[arg(long, value_name = "RUN_DIR")]
    resume: Option<PathBuf>,
    /// Run directory for config, metrics, log and checkpoints [default: runs/<config name>].
    #[arg(long, value_name = "RUN_DIR", conflicts_with = "resume")]
    out: Option<PathBuf>,
    /// Data root holding the domain folders; replaces `data.root` of the config.
    #[arg(long, value_name = "DIR")]
    data: Option<PathBuf>,
    /// Number of epochs; with --resume, trains a finished run further.
    #[arg(long)]
    epochs: Option<usize>,
    /// Images of each domain per step.
    #[arg(long, conflicts_with = "resume")]
    batch_size: Option<usize>,
    /// Checkpoint every this many epochs.
    #[arg(long, conflicts_with = "resume")]
    save_every: Option<usize>,
    /// Seed of initialisation, data order and noise.
    #[arg(long, conflicts_with = "resume")]
    seed: Option<u64>,
    /// Do not draw progress bars.
    #[arg(long)]
    no_progress: bool,
}

#[derive(Args, Debug)]
struct EvalArgs {
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
    /// Write the figures as JSON to this file.
    #[arg(long, value_name = "FILE")]
    json: Option<PathBuf>,
    /// Channel weights from `allday train-triplet`; adds a weighted row to the table.
    #[arg(long, value_name = "FILE")]
    weights: Option<PathBuf>,
}

#[derive(Args, Debug)]
struct TranslateArgs {
    /// Run directory (its newest checkpoint) or one checkpoint directory.
    #[arg(long, value_name = "PATH")]
    run: PathBuf,
    /// Day (domain A) image [default: first evaluation place of the database folder].
    #[arg(long, value_name = "IMAGE")]
    day: Option<PathBuf>,
    /// Night (domain B) image [default: first evaluation place of the query folder].
    #[arg(long, value_name = "IMAGE")]
    night: Option<PathBuf>,
    /// Data root for the default images [default: the run's data.root].
    #[arg(long, value_name = "DIR")]
    data: Option<PathBuf>,
    /// Output PNG.
    #[arg(long, short, default_value = "translation.png")]
    out: PathBuf,
    /// Magnification of each tile, 1 to 16.
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u32).range(1..=16))]
    scale: u32,
}

fn main() {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Train(args) => train(args),
        Command::Eval(args) => eval(args),
        Command::Translate(args) => translate(args),
        Command::TrainTriplet(args) => train_triplet(args),
        Command::Channels(args) => channels(args),
    };
    if let Err(error) = result {
        eprintln!("error: {}", describe(&error));
        std::process::exit(1);
    }
}

/// Joins an error and its causes into one line, skipping a cause whose text the message
/// before it already contains (library errors include their cause in their own message).
fn describe(error: &anyhow::Error) -> String {
    let mut line = String::new();
    for cause in error.chain() {
        let text = cause.to_string();
        if line.contains(&text) {
            continue;
        }
        if !line.is_empty() {
            line.push_str(": ");
        }
        line.push_str(&text);
    }
    line
}

/// Logs to stderr and, when given, to a file (without colours).
fn init_logging(log_file: Option<&Path>) -> Result<()> {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let stderr = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_target(false);
    let file = match log_file {
        Some(path) => {
            let file = File::options()
                .create(true)
                .append(true)
                .open(path)
                .with_context(|| format!("cannot open log file {}", path.display()))?;
            Some(
                tracing_subscriber::fmt::layer()
                    .with_writer(Mutex::new(file))
                    .with_ansi(false)
                    .with_target(false),
            )
        }
        None => None,
    };
    tracing_subscriber::registry()
        .with(filter)
        .with(stderr)
        .with(file)
        .init();
    Ok(())
}

fn train(args: TrainArgs) -> Result<()> {
    let device = default_device();
    let mut trainer = if let Some(run_dir) = &args.resume {
        if !run_dir.is_dir() {
            bail!("run directory {} not found", run_dir.display());
        }
        if run_dir.join("state.json").is_file() {
            bail!(
                "{} is a checkpoint; pass the run directory that contains its checkpoints/ folder to --resume",
                run_dir.display()
            );
        }
        init_logging(Some(&run_dir.join("train.log")))?;
        Trainer::resume(run_dir, &device, args.epochs, args.data.as_deref())
            .with_context(|| format!("cannot resume the run in {}", run_dir.display()))?
    } else {
        let config_path = args
            .config
            .as_ref()
            .expect("clap requires --config without --resume");
        let mut config = Config::load(config_path)?;
        if let Some(root) = &args.data {
            config.data.root = root.clone();
        }
        if let Some(epochs) = args.epochs {
            config.training.epochs = epochs;
        }
        if let Some(batch_size) = args.batch_size {
            config.training.batch_size = batch_size;
        }
        if let Some(save_every) = args.save_every {
            config.training.save_every = save_every;
        }
        if let Some(seed) = args.seed {
            config.seed = seed;
        }
        config.validate()?;
        // An absolute root lets `eval` and `resume` find the data from any folder.
        if let Ok(root) = config.data.root.canonicalize() {
            config.data.root = root;
        }
        let run_dir = args.out.clone().unwrap_or_else(|| {
            let name = config_path
                .file_stem()
                .unwrap_or_default()
                .to_string_lossy();
            PathBuf::from("runs").join(name.as_ref())
        });
        if allday::checkpoint::has_checkpoints(&run_dir)? {
            bail!(
                "run directory {} already contains checkpoints; continue it with `allday train --resume {}` or pass another --out",
                run_dir.display(),
                run_dir.display()
            );
        }
        let occupied =
            std::fs::read_dir(&run_dir).is_ok_and(|mut entries| entries.next().is_some());
        if occupied {
            bail!(
                "run directory {} exists and is not empty; pass another --out so that its files are not overwritten",
                run_dir.display()
            );
        }
        // The images are loaded before the run directory is made, so that bad data leaves
        // nothing behind.
        let data = TrainingData::load(&config)?;
        std::fs::create_dir_all(&run_dir)
            .with_context(|| format!("cannot create run directory {}", run_dir.display()))?;
        init_logging(Some(&run_dir.join("train.log")))?;
        tracing::info!(
            "loaded images from {} at {}×{}: {} in domain A, {} in domain B for training, {} and {} for validation",
            config.data.root.display(),
            config.data.width,
            config.data.height,
            data.train_a.len(),
            data.train_b.len(),
            data.validation_a.len(),
            data.validation_b.len()
        );
        Trainer::new(config, &run_dir, &device, data)?
    };
    let trainer_config = trainer.config().clone();
    tracing::info!(
        "backend {}; {} epochs of {} steps, batch {} per domain",
        backend_name(),
        trainer_config.training.epochs,
        trainer.steps_per_epoch(),
        trainer_config.training.batch_size
    );
    if trainer.epoch() >= trainer_config.training.epochs {
        tracing::info!(
            "the run has already trained all {} epochs; pass --epochs with a larger number to train further",
            trainer_config.training.epochs
        );
    }
    trainer = trainer.with_progress(!args.no_progress);
    let started = std::time::Instant::now();
    trainer.run()?;
    tracing::info!(
        "training finished at epoch {} after {:.1} min",
        trainer.epoch(),
        started.elapsed().as_secs_f64() / 60.0
    );
    Ok(())
}

fn eval(args: EvalArgs) -> Result<()> {
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
    let latent = evaluate_latent(&model, &sets, &ground_truth, &device);
    let weighted = match &args.weights {
        Some(path) => {
            let weights = WeightsFile::load(path)?;
            Some(evaluate_weighted(
                &model,
                &sets,
                &ground_truth,
                &weights,
                &device,
            ))
        }
        None => None,
    };
    let pixels = evaluate_pixels(&sets, &ground_truth, &device)?;

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
    if let Some(path) = &args.json {
        let methods: serde_json::Map<String, serde_json::Value> = results
            .iter()
            .map(|result| (result.name.clone(), serde_json::json!(result.metrics)))
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

fn translate(args: TranslateArgs) -> Result<()> {
    init_logging(None)?;
    let device = default_device();
    let checkpoint = Checkpoint::open(&args.run)?;
    let config = &checkpoint.config;
    let root = args
        .data
        .clone()
        .unwrap_or_else(|| config.data.root.clone());
    let (day, night) = match (args.day, args.night) {
        (Some(day), Some(night)) => (day, night),
        (day, night) => {
            // The first evaluation place, or the last frame both folders have.
            let database = list_images(&root.join(&config.evaluation.database))?;
            let queries = list_images(&root.join(&config.evaluation.queries))?;
            let frame = config
                .evaluation
                .places
                .start
                .min(database.len() - 1)
                .min(queries.len() - 1);
            (
                day.unwrap_or_else(|| database[frame].clone()),
                night.unwrap_or_else(|| queries[frame].clone()),
            )
        }
    };
    let is_png = args
        .out
        .extension()
        .is_some_and(|extension| extension.eq_ignore_ascii_case("png"));
    if !is_png {
        bail!(
            "--out {} must end in .png, the format written",
            args.out.display()
        );
    }
    let images = ImageSet::from_files(
        &[day.clone(), night.clone()],
        config.data.width,
        config.data.height,
    )?;
    let model = checkpoint.load_model(&device)?;
    let grid = translation_grid(
        &model,
        images.batch(&[0], &device),
        images.batch(&[1], &device),
        args.scale,
    );
    save_png(&grid, &args.out)?;
    println!(
        "wrote {}: rows day ({}) and night ({}); columns original, reconstruction, cycle reconstruction, translation to the other domain",
        args.out.display(),
        day.display(),
        night.display()
    );
    Ok(())
}

fn train_triplet(args: TrainTripletArgs) -> Result<()> {
    init_logging(None)?;
    let device = default_device();
    let checkpoint = Checkpoint::open(&args.from)?;
    let mut config = checkpoint.config.clone();
    if let Some(depth) = args.depth {
        config.triplet.depth = depth;
    }
    if let Some(epochs) = args.epochs {
        config.triplet.epochs = epochs;
    }
    if let Some(root) = &args.data {
        config.data.root = root.clone();
    }
    config.validate()?;
    let out = args.out.clone().unwrap_or_else(|| {
        // A checkpoint directory sits in RUN_DIR/checkpoints/; the weights go to RUN_DIR.
        let run_dir = if checkpoint.path == args.from {
            checkpoint.path.join("../..")
        } else {
            args.from.clone()
        };
        run_dir.join(format!("channel-weights-d{}.json", config.triplet.depth))
    });

    let model = checkpoint.load_model(&device)?;
    let data = TrainingData::load(&config)?;
    let data = TripletData {
        train_a: data.train_a,
        train_b: data.train_b,
        validation_a: data.validation_a,
        validation_b: data.validation_b,
    };
    tracing::info!(
        "training channel weights of {} layer(s) on places {} (validation {}), checkpoint {}",
        config.triplet.depth,
        config.data.train_places,
        config.data.validation_places,
        checkpoint.path.display()
    );
    let (weights, history) = train_weights(
        &model,
        &data,
        &config.triplet,
        config.evaluation.tolerance,
        config.seed,
        &device,
    )?;
    let file = WeightsFile {
        depth: config.triplet.depth,
        weights: weights.values(),
        config: config.triplet.clone(),
        history,
    };
    file.save(&out)?;
    println!(
        "wrote {}; evaluate with `allday eval --run {} --weights {}`",
        out.display(),
        args.from.display(),
        out.display()
    );
    Ok(())
}

fn channels(args: ChannelsArgs) -> Result<()> {
    init_logging(None)?;
    let device = default_device();
    let checkpoint = Checkpoint::open(&args.run)?;
    let mut config = checkpoint.config.clone();
    if let Some(root) = &args.data {
        config.data.root = root.clone();
    }
    let file = WeightsFile::load(&args.weights)?;
    let model = checkpoint.load_model(&device)?;

    // Held out from the weights' training: the validation places of both domains.
    let data = TrainingData::load(&config)?;
    let extract = |domain, images: &ImageSet| {
        LayerFeatures::extract(&model, domain, images, file.depth, &device)
    };
    let pool =
        extract(Domain::A, &data.validation_a).concat(&extract(Domain::B, &data.validation_b));
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(config.seed);
    let triplets = sample_triplets(
        &data.validation_a.entries,
        &data.validation_b.entries,
        config.evaluation.tolerance,
        file.config.triplets_per_epoch,
        &mut rng,
    )?;
    let weights = ChannelWeights::from_values(&file.weights, &device);
    let importance = channel_importance(&weights, &pool, &triplets, file.config.margin, &device);

    let mut rows: Vec<(usize, usize, f32, f64)> = Vec::new();
    for (layer, values) in importance.iter().enumerate() {
        for (channel, value) in values.iter().enumerate() {
            rows.push((layer, channel, file.weights[layer][channel], *value));
        }
    }
    rows.sort_by(|a, b| b.3.total_cmp(&a.3));
    println!(
        "channel importance: rise of the mean triplet loss ({} triplets of places {}) when one channel is removed",
        triplets.len(),
        config.data.validation_places
    );
    println!(
        "{:>5} {:>7} {:>9} {:>11}",
        "layer", "channel", "weight", "importance"
    );
    for (layer, channel, weight, value) in rows.iter().take(args.top) {
        println!("{layer:>5} {channel:>7} {weight:>9.4} {value:>11.5}");
    }
    for (layer, values) in importance.iter().enumerate() {
        println!(
            "layer {layer} (0 is the latent): {:.0} % of its {} channels carry 90 % of the importance",
            100.0 * share_carrying(values, 0.9),
            values.len()
        );
    }
    if let Some(path) = &args.csv {
        let mut text = String::from("layer,channel,weight,importance\n");
        for (layer, channel, weight, value) in &rows {
            text.push_str(&format!("{layer},{channel},{weight},{value}\n"));
        }
        allday::io::write_atomic(path, text.as_bytes())?;
        println!("written to {}", path.display());
    }
    Ok(())
}
