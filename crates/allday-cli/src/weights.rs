//! Stage-2 commands: `allday train-triplet` learns channel weights, `allday channels` ranks
//! the channels by importance.

use std::path::PathBuf;

use allday::backend::default_device;
use allday::checkpoint::Checkpoint;
use allday::data::ImageSet;
use allday::model::Domain;
use allday::training::TrainingData;
use allday::weighting::{
    ChannelWeights, LayerFeatures, TripletData, WeightsFile, channel_importance, sample_triplets,
    share_carrying, train_weights,
};
use anyhow::Result;
use clap::Args;
use rand::SeedableRng;

use crate::init_logging;

#[derive(Args, Debug)]
pub struct TrainTripletArgs {
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
}

pub fn train_triplet(args: TrainTripletArgs) -> Result<()> {
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
