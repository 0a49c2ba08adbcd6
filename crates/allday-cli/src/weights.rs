//! Stage-2 commands: `allday train-triplet` learns channel weights, `allday depth-sweep`
//! compares matching depths, `allday channels` ranks the channels by importance.

use std::path::{Path, PathBuf};

use allday::backend::Device;
use allday::backend::default_device;
use allday::checkpoint::Checkpoint;
use allday::config::Config;
use allday::model::DoubleVae;
use allday::plot::{Series, channel_chart, line_chart};
use allday::training::TrainingData;
use allday::translation::save_png;
use allday::weighting::{
    TripletData, TripletTrainer, WeightsFile, held_out_importance, share_carrying,
};
use anyhow::{Context, Result, bail};
use clap::Args;

use crate::init_logging;

#[derive(Args, Debug)]
pub struct TrainTripletArgs {
    /// Run directory of a stage-1 training (its newest checkpoint) or one checkpoint directory.
    #[arg(long, value_name = "PATH")]
    from: PathBuf,
    /// TOML config whose [triplet] section replaces the run's (other sections are ignored).
    #[arg(long, value_name = "FILE", conflicts_with = "resume")]
    config: Option<PathBuf>,
    /// Encoder layers matched, counted back from the latent [default: triplet.depth].
    #[arg(long, conflicts_with = "resume")]
    depth: Option<usize>,
    /// Epochs of triplet training [default: triplet.epochs]; with --resume, trains further.
    #[arg(long)]
    epochs: Option<usize>,
    /// Data root holding the domain folders [default: the run's data.root].
    #[arg(long, value_name = "DIR")]
    data: Option<PathBuf>,
    /// Directory of the triplet run's checkpoints and metrics [default: triplet-dN in the run
    /// directory].
    #[arg(long, value_name = "DIR")]
    run_dir: Option<PathBuf>,
    /// Continue the triplet run in --run-dir from its newest intact checkpoint.
    #[arg(long)]
    resume: bool,
    /// Output JSON of the weights [default: channel-weights-dN.json in the run directory].
    #[arg(long, short, value_name = "FILE")]
    out: Option<PathBuf>,
}

#[derive(Args, Debug)]
pub struct DepthSweepArgs {
    /// Run directory of a stage-1 training (its newest checkpoint) or one checkpoint directory.
    #[arg(long, value_name = "PATH")]
    from: PathBuf,
    /// Deepest matching depth trained; depths 1 to this are swept.
    #[arg(long, default_value_t = 3)]
    max_depth: usize,
    /// Epochs of triplet training per depth [default: triplet.epochs of the run].
    #[arg(long)]
    epochs: Option<usize>,
    /// Data root holding the domain folders [default: the run's data.root].
    #[arg(long, value_name = "DIR")]
    data: Option<PathBuf>,
    /// Output directory for depth-sweep.csv, depth-sweep.png and one triplet run per depth
    /// [default: depth-sweep in the run directory]. Depths already trained there are resumed.
    #[arg(long, value_name = "DIR")]
    out: Option<PathBuf>,
}

#[derive(Args, Debug)]
pub struct ChannelsArgs {
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
    /// PNG of the importance and the weights [default: the weights file with .png]; with
    /// several matched layers, one PNG per layer ending in -layerN.
    #[arg(long, value_name = "PNG")]
    png: Option<PathBuf>,
}

/// A stage-1 checkpoint with its frozen model and the images of its training places.
struct Source {
    checkpoint: Checkpoint,
    config: Config,
    model: DoubleVae,
    data: TripletData,
    /// The run directory that holds the checkpoint.
    run_dir: PathBuf,
}

impl Source {
    fn load(from: &Path, data_root: Option<&Path>, device: &Device) -> Result<Source> {
        let checkpoint = Checkpoint::open(from)?;
        let mut config = checkpoint.config.clone();
        if let Some(root) = data_root {
            config.data.root = root.to_path_buf();
        }
        let model = checkpoint.load_model(device)?;
        let data = TrainingData::load(&config)?;
        // A checkpoint directory sits in RUN_DIR/checkpoints/.
        let run_dir = if checkpoint.path == from {
            checkpoint.path.join("../..")
        } else {
            from.to_path_buf()
        };
        Ok(Source {
            checkpoint,
            config,
            model,
            data: TripletData {
                train_a: data.train_a,
                train_b: data.train_b,
                validation_a: data.validation_a,
                validation_b: data.validation_b,
            },
            run_dir,
        })
    }

    /// Starts a triplet run with `config` in `run_dir`, or resumes the one there.
    fn trainer(
        &self,
        config: Config,
        run_dir: &Path,
        resume: bool,
        epochs: Option<usize>,
        device: &Device,
    ) -> Result<TripletTrainer> {
        let trainer = if resume {
            TripletTrainer::resume(
                &self.model,
                &self.checkpoint,
                &self.data,
                run_dir,
                epochs,
                device,
            )
        } else {
            TripletTrainer::new(
                &self.model,
                &self.checkpoint,
                &self.data,
                config,
                run_dir,
                device,
            )
        };
        trainer.with_context(|| format!("cannot train channel weights in {}", run_dir.display()))
    }
}

pub fn train_triplet(args: TrainTripletArgs) -> Result<()> {
    init_logging(None)?;
    let device = default_device();
    let source = Source::load(&args.from, args.data.as_deref(), &device)?;
    let mut config = source.config.clone();
    if let Some(path) = &args.config {
        config.triplet = Config::load(path)?.triplet;
    }
    if let Some(depth) = args.depth {
        config.triplet.depth = depth;
    }
    if let Some(epochs) = args.epochs {
        config.triplet.epochs = epochs;
    }
    config.validate()?;
    let run_dir = args.run_dir.clone().unwrap_or_else(|| {
        source
            .run_dir
            .join(format!("triplet-d{}", config.triplet.depth))
    });
    if !args.resume && allday::checkpoint::has_checkpoints(&run_dir)? {
        bail!(
            "{} already contains a triplet run; continue it with --resume or pass another --run-dir",
            run_dir.display()
        );
    }
    let mut trainer = source.trainer(config, &run_dir, args.resume, args.epochs, &device)?;
    let settings = &trainer.config().triplet;
    tracing::info!(
        "training channel weights of {} layer(s) on places {} (validation {}), encoders of {}, run directory {}",
        settings.depth,
        trainer.config().data.train_places,
        trainer.config().data.validation_places,
        source.checkpoint.path.display(),
        run_dir.display()
    );
    trainer.run()?;
    let file = trainer.weights_file();
    let out = args.out.clone().unwrap_or_else(|| {
        source
            .run_dir
            .join(format!("channel-weights-d{}.json", file.depth))
    });
    file.save(&out)?;
    println!(
        "wrote {}; evaluate with `allday eval --run {} --weights {}`",
        out.display(),
        args.from.display(),
        out.display()
    );
    Ok(())
}

pub fn depth_sweep(args: DepthSweepArgs) -> Result<()> {
    init_logging(None)?;
    let device = default_device();
    let source = Source::load(&args.from, args.data.as_deref(), &device)?;
    let out = args
        .out
        .clone()
        .unwrap_or_else(|| source.run_dir.join("depth-sweep"));
    let mut config = source.config.clone();
    if let Some(epochs) = args.epochs {
        config.triplet.epochs = epochs;
    }
    config.triplet.depth = args.max_depth;
    config.validate()?;

    let mut series = Vec::new();
    let mut csv = String::from("depth,epoch,train_loss,validation_loss,validation_satisfied\n");
    for depth in 1..=args.max_depth {
        let mut depth_config = config.clone();
        depth_config.triplet.depth = depth;
        let run_dir = out.join(format!("d{depth}"));
        let resume = allday::checkpoint::has_checkpoints(&run_dir)?;
        let mut trainer = source.trainer(
            depth_config,
            &run_dir,
            resume,
            Some(config.triplet.epochs),
            &device,
        )?;
        tracing::info!("depth {depth} of {}: {}", args.max_depth, run_dir.display());
        trainer.run()?;
        let file = trainer.weights_file();
        file.save(&out.join(format!("channel-weights-d{depth}.json")))?;
        for record in &file.history {
            csv.push_str(&format!(
                "{depth},{},{},{},{}\n",
                record.epoch,
                record.train_loss,
                record.validation_loss,
                record.validation_satisfied
            ));
        }
        series.push(Series {
            label: format!("depth {depth}"),
            points: file
                .history
                .iter()
                .map(|record| (record.epoch as f64, record.validation_loss))
                .collect(),
        });
    }
    let csv_path = out.join("depth-sweep.csv");
    allday::io::write_atomic(&csv_path, csv.as_bytes())?;
    let chart = line_chart(
        &format!(
            "validation triplet loss by matching depth (places {})",
            config.data.validation_places
        ),
        "epoch",
        "validation triplet loss",
        &series,
        (900, 560),
    )?;
    let png_path = out.join("depth-sweep.png");
    save_png(&chart, &png_path)?;
    println!(
        "{:>5} {:>16} {:>10}",
        "depth", "validation loss", "satisfied"
    );
    for (depth, line) in series.iter().enumerate() {
        let last = line.points.last().map_or(f64::NAN, |point| point.1);
        let history = WeightsFile::load(&out.join(format!("channel-weights-d{}.json", depth + 1)))?;
        let satisfied = history
            .history
            .last()
            .map_or(f64::NAN, |record| 100.0 * record.validation_satisfied);
        println!("{:>5} {last:>16.4} {satisfied:>9.1}%", depth + 1);
    }
    println!(
        "wrote {} and {}; evaluate a depth with `allday eval --run {} --weights {}`",
        csv_path.display(),
        png_path.display(),
        args.from.display(),
        out.join("channel-weights-dN.json").display()
    );
    Ok(())
}

pub fn channels(args: ChannelsArgs) -> Result<()> {
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
    let (importance, triplets) = held_out_importance(
        &model,
        &data.validation_a,
        &data.validation_b,
        &file,
        config.evaluation.tolerance,
        config.seed,
        &device,
    )?;

    let mut rows: Vec<(usize, usize, f32, f64)> = Vec::new();
    for (layer, values) in importance.iter().enumerate() {
        for (channel, value) in values.iter().enumerate() {
            rows.push((layer, channel, file.weights[layer][channel], *value));
        }
    }
    rows.sort_by(|a, b| b.3.total_cmp(&a.3));
    println!(
        "channel importance: rise of the mean triplet loss ({} triplets of places {}) when one channel is removed",
        triplets, config.data.validation_places
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
    let png = args
        .png
        .clone()
        .unwrap_or_else(|| args.weights.with_extension("png"));
    for (layer, values) in importance.iter().enumerate() {
        let path = if importance.len() == 1 {
            png.clone()
        } else {
            let stem = png.file_stem().unwrap_or_default().to_string_lossy();
            png.with_file_name(format!("{stem}-layer{layer}.png"))
        };
        let name = if layer == 0 {
            "latent".to_string()
        } else {
            format!("layer {layer} before the latent")
        };
        let chart = channel_chart(&name, values, &file.weights[layer])?;
        save_png(&chart, &path)?;
        println!("chart written to {}", path.display());
    }
    Ok(())
}
