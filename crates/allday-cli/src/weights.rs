//! Stage-2 commands: `allday train-triplet` learns channel weights, `allday depth-sweep`
//! compares matching depths, `allday channels` ranks the channels by importance.

use std::path::{Path, PathBuf};

use allday::backend::Device;
use allday::backend::default_device;
use allday::checkpoint::Checkpoint;
use allday::config::Config;
use allday::data::ImageSet;
use allday::model::Domain;
use allday::model::DoubleVae;
use allday::plot::{Series, channel_chart, line_chart};
use allday::pretrained::{Backbone, Network};
use allday::training::TrainingData;
use allday::translation::save_png;
use allday::weighting::{
    FeatureSource, LayerFeatures, TripletData, TripletTrainer, WeightsFile, backbone_features,
    encoder_features, held_out_importance, share_carrying,
};
use anyhow::{Context, Result, bail};
use clap::Args;

use crate::init_logging;

#[derive(Args, Debug)]
pub struct TrainTripletArgs {
    /// Run directory of a stage-1 training (its newest checkpoint) or one checkpoint directory.
    #[arg(
        long,
        value_name = "PATH",
        required_unless_present = "backbone",
        conflicts_with = "backbone"
    )]
    from: Option<PathBuf>,
    /// Learn the weights on the layers of this ImageNet-pretrained network instead of the
    /// encoders of a stage-1 run; both domains go through it. Needs --run-dir.
    #[arg(long, value_name = "NETWORK", requires = "run_dir")]
    backbone: Option<Network>,
    /// Weights of --backbone (.pth or .safetensors) [default: the network's usual location,
    /// see `allday baseline --help`].
    #[arg(long, value_name = "PATH", requires = "backbone")]
    backbone_weights: Option<PathBuf>,
    /// TOML config. With --from, its [triplet] section replaces the run's and the other
    /// sections are ignored. With --backbone, the whole file applies (data, triplet,
    /// evaluation and seed).
    #[arg(long, value_name = "FILE", conflicts_with = "resume")]
    config: Option<PathBuf>,
    /// Layers matched, counted back from the deepest [default: triplet.depth].
    #[arg(long, conflicts_with = "resume")]
    depth: Option<usize>,
    /// Epochs of triplet training [default: triplet.epochs]; with --resume, trains further.
    #[arg(long)]
    epochs: Option<usize>,
    /// Data root holding the domain folders [default: the config's data.root].
    #[arg(long, value_name = "DIR")]
    data: Option<PathBuf>,
    /// Directory of the triplet run's checkpoints and metrics [default with --from:
    /// triplet-dN in the run directory].
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

/// The frozen network a triplet run learns on.
enum TripletNetwork {
    /// The encoders of a stage-1 checkpoint.
    Encoders(Box<DoubleVae>),
    /// An ImageNet-pretrained network.
    Backbone(Backbone),
}

/// The frozen network of a triplet run, its config and the images of its training places.
struct Source {
    source: FeatureSource,
    network: TripletNetwork,
    config: Config,
    data: TripletData,
    /// The stage-1 run directory that contains the checkpoint, or `None` for a backbone.
    run_dir: Option<PathBuf>,
}

impl Source {
    /// Loads the encoders of the stage-1 checkpoint at `from`.
    fn load(from: &Path, data_root: Option<&Path>, device: &Device) -> Result<Source> {
        let checkpoint = Checkpoint::open(from)?;
        let mut config = checkpoint.config.clone();
        if let Some(root) = data_root {
            config.data.root = root.to_path_buf();
        }
        let model = checkpoint.load_model(device)?;
        // A checkpoint directory sits in RUN_DIR/checkpoints/.
        let run_dir = if checkpoint.path == from {
            checkpoint.path.join("../..")
        } else {
            from.to_path_buf()
        };
        Ok(Source {
            source: FeatureSource::of_checkpoint(&checkpoint),
            network: TripletNetwork::Encoders(Box::new(model)),
            data: triplet_data(&config)?,
            config,
            run_dir: Some(run_dir),
        })
    }

    /// Loads the pretrained `network` with the weights at `weights` (or its usual file).
    fn backbone(
        network: Network,
        weights: Option<&Path>,
        config: Config,
        device: &Device,
    ) -> Result<Source> {
        let path = weights
            .map(Path::to_path_buf)
            .unwrap_or_else(|| network.default_weights());
        // The run records this path, so it must lead to the file from any folder.
        let path = path.canonicalize().unwrap_or(path);
        tracing::info!("loading {network} weights from {}", path.display());
        let backbone = Backbone::load(network, &path, device)
            .with_context(|| format!("cannot load {network}"))?;
        let source = FeatureSource::of_backbone(network, &path)?;
        Ok(Source {
            source,
            network: TripletNetwork::Backbone(backbone),
            data: triplet_data(&config)?,
            config,
            run_dir: None,
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
        let trainer = match (&self.network, resume) {
            (TripletNetwork::Encoders(model), false) => TripletTrainer::new(
                encoder_features(model, device),
                &self.source,
                &self.data,
                config,
                run_dir,
                device,
            ),
            (TripletNetwork::Encoders(model), true) => TripletTrainer::resume(
                encoder_features(model, device),
                &self.source,
                &self.data,
                run_dir,
                epochs,
                device,
            ),
            (TripletNetwork::Backbone(backbone), false) => TripletTrainer::new(
                backbone_features(backbone, device),
                &self.source,
                &self.data,
                config,
                run_dir,
                device,
            ),
            (TripletNetwork::Backbone(backbone), true) => TripletTrainer::resume(
                backbone_features(backbone, device),
                &self.source,
                &self.data,
                run_dir,
                epochs,
                device,
            ),
        };
        trainer.with_context(|| format!("cannot train channel weights in {}", run_dir.display()))
    }
}

/// Loads the training and validation places of both domains of `config`.
fn triplet_data(config: &Config) -> Result<TripletData> {
    let data = TrainingData::load(config)?;
    Ok(TripletData {
        train_a: data.train_a,
        train_b: data.train_b,
        validation_a: data.validation_a,
        validation_b: data.validation_b,
    })
}

pub fn train_triplet(args: TrainTripletArgs) -> Result<()> {
    init_logging(None)?;
    let device = default_device();
    let source = match (&args.from, args.backbone) {
        (Some(from), _) => {
            let mut source = Source::load(from, args.data.as_deref(), &device)?;
            if let Some(path) = &args.config {
                source.config.triplet = Config::load(path)?.triplet;
            }
            source
        }
        (None, Some(network)) => {
            // A resumed run keeps the config of its checkpoint; the data root may move.
            let mut config = if args.resume {
                let run_dir = args.run_dir.as_deref().expect("clap requires --run-dir");
                Checkpoint::open_network_for_resume(run_dir, allday::weighting::NETWORK)?.config
            } else if let Some(path) = &args.config {
                Config::load(path)?
            } else {
                Config::default()
            };
            if let Some(root) = &args.data {
                config.data.root = root.clone();
            }
            // An absolute root lets `eval`, `channels` and `--resume` find the data from any
            // folder.
            if let Ok(root) = config.data.root.canonicalize() {
                config.data.root = root;
            }
            Source::backbone(network, args.backbone_weights.as_deref(), config, &device)?
        }
        (None, None) => bail!("pass --from RUN or --backbone NETWORK"),
    };
    let mut config = source.config.clone();
    if let Some(depth) = args.depth {
        config.triplet.depth = depth;
    }
    if let Some(epochs) = args.epochs {
        config.triplet.epochs = epochs;
    }
    config.validate()?;
    match (&source.network, args.backbone) {
        (TripletNetwork::Backbone(backbone), Some(network)) => {
            config.check_triplet_depth(backbone.max_depth(), &network.to_string())?
        }
        _ => config.check_triplet_depth(config.model.encoder_layers(), "the stage-1 encoders")?,
    }
    let run_dir = match (&args.run_dir, &source.run_dir) {
        (Some(dir), _) => dir.clone(),
        (None, Some(stage_one)) => stage_one.join(format!("triplet-d{}", config.triplet.depth)),
        (None, None) => bail!("--backbone needs --run-dir"),
    };
    if !args.resume && allday::checkpoint::has_checkpoints(&run_dir)? {
        bail!(
            "{} already contains a triplet run; continue it with --resume or pass another --run-dir",
            run_dir.display()
        );
    }
    // A new run writes source.json and metrics.csv, which must not replace the user's files.
    // A folder that a run on the same features left before its first checkpoint is reused.
    let occupied = std::fs::read_dir(&run_dir).is_ok_and(|mut entries| entries.next().is_some());
    let left_by_same_source =
        FeatureSource::read(&run_dir).is_ok_and(|existing| existing == source.source);
    if !args.resume && occupied && !left_by_same_source {
        bail!(
            "{} is not empty and contains no triplet run; pass a new or empty --run-dir",
            run_dir.display()
        );
    }
    let mut trainer = source.trainer(config, &run_dir, args.resume, args.epochs, &device)?;
    let settings = &trainer.config().triplet;
    tracing::info!(
        "training channel weights of {} layer(s) on places {} (validation {}), features of {}, run directory {}",
        settings.depth,
        trainer.config().data.train_places,
        trainer.config().data.validation_places,
        source.source.path.display(),
        run_dir.display()
    );
    trainer.run()?;
    let file = trainer.weights_file();
    let out = args.out.clone().unwrap_or_else(|| {
        source
            .run_dir
            .as_ref()
            .unwrap_or(&run_dir)
            .join(format!("channel-weights-d{}.json", file.depth))
    });
    file.save(&out)?;
    match &args.from {
        Some(from) => println!(
            "wrote {}; evaluate with `allday eval --run {} --weights {}`",
            out.display(),
            from.display(),
            out.display()
        ),
        None => println!(
            "wrote {}; evaluate with `allday eval --weights {}`",
            out.display(),
            out.display()
        ),
    }
    Ok(())
}

pub fn depth_sweep(args: DepthSweepArgs) -> Result<()> {
    init_logging(None)?;
    let device = default_device();
    let source = Source::load(&args.from, args.data.as_deref(), &device)?;
    let out = args.out.clone().unwrap_or_else(|| {
        source
            .run_dir
            .as_ref()
            .expect("a stage-1 source has its run directory")
            .join("depth-sweep")
    });
    let mut config = source.config.clone();
    if let Some(epochs) = args.epochs {
        config.triplet.epochs = epochs;
    }
    config.triplet.depth = args.max_depth;
    config.validate()?;
    config.check_triplet_depth(config.model.encoder_layers(), "the stage-1 encoders")?;

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
    let file = WeightsFile::load(&args.weights)?;
    // Weights of a backbone were trained in a triplet run directory; those of stage-1 encoders
    // come from the stage-1 run.
    let mut config = match &file.backbone {
        Some(weights_backbone) => {
            // A triplet run directory records its network in source.json.
            let run_network = FeatureSource::read(&args.run)
                .ok()
                .and_then(|source| source.backbone)
                .map(|backbone| backbone.network);
            if run_network != Some(weights_backbone.network) {
                bail!(
                    "{} contains weights of {}, and {} is not the triplet run directory they were trained in (its source.json is missing or names another network); pass that directory as --run",
                    args.weights.display(),
                    weights_backbone.network,
                    args.run.display()
                );
            }
            Checkpoint::open_network_for_resume(&args.run, allday::weighting::NETWORK)?.config
        }
        None => {
            // A triplet run on a pretrained network records it in source.json.
            if let Ok(FeatureSource {
                backbone: Some(backbone),
                ..
            }) = FeatureSource::read(&args.run)
            {
                bail!(
                    "{} contains weights of the stage-1 encoders, but {} is a triplet run on {}; pass the stage-1 run the weights were learned on as --run",
                    args.weights.display(),
                    args.run.display(),
                    backbone.network
                );
            }
            Checkpoint::open(&args.run)?.config
        }
    };
    if let Some(root) = &args.data {
        config.data.root = root.clone();
    }

    // Held out from the weights' training: the validation places of both domains.
    let data = TrainingData::load(&config)?;
    type Extractor<'a> =
        Box<dyn FnMut(Domain, &ImageSet, usize) -> allday::error::Result<LayerFeatures> + 'a>;
    let held_out = |extract: Extractor| {
        held_out_importance(
            extract,
            &data.validation_a,
            &data.validation_b,
            &file,
            config.evaluation.tolerance,
            config.seed,
            &device,
        )
    };
    let (importance, triplets) = match &file.backbone {
        Some(source) => {
            let backbone = Backbone::load(source.network, &source.weights, &device)
                .with_context(|| format!("cannot load {}", source.network))?;
            held_out(Box::new(backbone_features(&backbone, &device)))?
        }
        None => {
            let model = Checkpoint::open(&args.run)?.load_model(&device)?;
            held_out(Box::new(encoder_features(&model, &device)))?
        }
    };

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
    // Layers are numbered from the deepest, which is the latent or the network's last layer.
    let deepest = if file.backbone.is_some() {
        "the network's last layer"
    } else {
        "the latent"
    };
    for (layer, values) in importance.iter().enumerate() {
        println!(
            "layer {layer} (0 is {deepest}): {:.0} % of its {} channels carry 90 % of the importance",
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
        let name = match (&file.backbone, layer) {
            (None, 0) => "latent".to_string(),
            (None, _) => format!("layer {layer} before the latent"),
            (Some(source), 0) => format!("{} last layer", source.network.short_name()),
            (Some(source), _) => format!(
                "{} layer {layer} before the last",
                source.network.short_name()
            ),
        };
        let chart = channel_chart(&name, values, &file.weights[layer])?;
        save_png(&chart, &path)?;
        println!("chart written to {}", path.display());
    }
    Ok(())
}
