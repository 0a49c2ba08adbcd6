//! `allday saliency`: heat maps of the input pixels that drive chosen latent channels.

use std::path::PathBuf;

use allday::backend::{Device, default_device};
use allday::checkpoint::Checkpoint;
use allday::data::load_image;
use allday::model::Domain;
use allday::saliency::{Target, render_saliency};
use allday::training::TrainingData;
use allday::translation::save_png;
use allday::weighting::{WeightsFile, encoder_features, held_out_importance};
use anyhow::{Context, Result, bail};
use clap::{Args, ValueEnum};

use crate::init_logging;

/// The encoder that reads the images.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum DomainArg {
    /// Domain A's encoder (the database side).
    Day,
    /// Domain B's encoder (the query side).
    Night,
}

#[derive(Args, Debug)]
pub struct SaliencyArgs {
    /// Run directory (its newest checkpoint) or one checkpoint directory.
    #[arg(long, value_name = "PATH")]
    run: PathBuf,
    /// Latent channel to explain; repeat the option for several channels.
    #[arg(long, value_name = "K", required_unless_present = "top")]
    channel: Vec<usize>,
    /// Explain the N latent channels that matter most, ranked by held-out importance of the
    /// learned weights given with --weights.
    #[arg(long, value_name = "N", requires = "weights")]
    top: Option<usize>,
    /// Channel weights from `allday train-triplet`, to rank channels for --top.
    #[arg(long, value_name = "FILE")]
    weights: Option<PathBuf>,
    /// Encoder that reads the images.
    #[arg(long, value_enum, default_value = "night")]
    domain: DomainArg,
    /// Latent cell X,Y (column, row) whose activation is explained [default: the sum over all
    /// cells].
    #[arg(long, value_name = "X,Y", value_parser = parse_position)]
    position: Option<(usize, usize)>,
    /// Data root for ranking channels with --top [default: the run's data.root].
    #[arg(long, value_name = "DIR")]
    data: Option<PathBuf>,
    /// Output folder; one PNG per image and channel, IMAGE-STEM-channel-K.png, or
    /// FOLDER-IMAGE-STEM-channel-K.png when two images share a name.
    #[arg(long, short, default_value = "saliency")]
    out: PathBuf,
    /// Magnification of the image, 1 to 16.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u32).range(1..=16))]
    scale: u32,
    /// Images to explain, resized and cropped to the run's input size.
    #[arg(required = true, value_name = "IMAGE")]
    images: Vec<PathBuf>,
}

fn parse_position(text: &str) -> Result<(usize, usize), String> {
    let parse = |part: &str| part.trim().parse::<usize>().ok();
    match text.split_once(',') {
        Some((x, y)) => parse(x)
            .zip(parse(y))
            .ok_or_else(|| format!("expected X,Y with two cell indices, e.g. 3,2; found `{text}`")),
        None => Err(format!(
            "expected X,Y with two cell indices, e.g. 3,2; found `{text}`"
        )),
    }
}

pub fn run(args: SaliencyArgs) -> Result<()> {
    init_logging(None)?;
    let device = default_device();
    let checkpoint = Checkpoint::open(&args.run)?;
    let mut config = checkpoint.config.clone();
    if let Some(root) = &args.data {
        config.data.root = root.clone();
    }
    let mut channels = args.channel.clone();
    if let Some(top) = args.top {
        let path = args
            .weights
            .as_ref()
            .expect("clap requires --weights with --top");
        channels.extend(top_channels(&checkpoint, &config, path, top, &device)?);
    }
    let mut seen = std::collections::HashSet::new();
    channels.retain(|channel| seen.insert(*channel));
    let (width, height) = (config.data.width, config.data.height);
    let max_pixels = config.data.max_image_pixels;
    // Loaded up front so that a bad image fails before any gradient is computed.
    let mut images = Vec::with_capacity(args.images.len());
    for path in &args.images {
        images.push(load_image(path, width, height, max_pixels)?);
    }

    let autodiff = device.clone().autodiff();
    let model = checkpoint.load_model(&autodiff)?;
    let domain = match args.domain {
        DomainArg::Day => Domain::A,
        DomainArg::Night => Domain::B,
    };
    let target = match args.position {
        Some((x, y)) => Target::At { x, y },
        None => Target::Sum,
    };
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("cannot create output folder {}", args.out.display()))?;
    // Images from different folders may share a name (frame i of day and night folders), so
    // the output names then start with the folder.
    let stem = |path: &PathBuf| {
        path.file_stem()
            .unwrap_or_default()
            .to_string_lossy()
            .into_owned()
    };
    let mut stems: Vec<String> = args.images.iter().map(stem).collect();
    let unique: std::collections::HashSet<&String> = stems.iter().collect();
    if unique.len() < stems.len() {
        for (name, path) in stems.iter_mut().zip(&args.images) {
            let folder = path
                .parent()
                .and_then(|parent| parent.file_name())
                .unwrap_or_default()
                .to_string_lossy();
            *name = format!("{folder}-{name}");
        }
    }
    for (pixels, stem) in images.iter().zip(&stems) {
        for &channel in &channels {
            let rendered = render_saliency(
                &model,
                domain,
                pixels,
                (height, width),
                channel,
                target,
                args.scale,
                &autodiff,
            )?;
            let out = args.out.join(format!("{stem}-channel-{channel}.png"));
            save_png(&rendered, &out)?;
            println!("{}", out.display());
        }
    }
    Ok(())
}

/// Ranks the latent channels of learned weights by held-out importance and returns the `top`
/// most important ones.
fn top_channels(
    checkpoint: &Checkpoint,
    config: &allday::config::Config,
    weights: &std::path::Path,
    top: usize,
    device: &Device,
) -> Result<Vec<usize>> {
    let file = WeightsFile::load(weights)?;
    if let Some(source) = &file.backbone {
        bail!(
            "{} contains weights of {} layers; saliency ranks the channels of the stage-1 latent, so pass weights trained with `allday train-triplet --from`",
            weights.display(),
            source.network
        );
    }
    let model = checkpoint.load_model(device)?;
    let data = TrainingData::load(config)?;
    let (importance, _) = held_out_importance(
        encoder_features(&model, device),
        &data.validation_a,
        &data.validation_b,
        &file,
        config.evaluation.tolerance,
        config.seed,
        device,
    )?;
    let latent = &importance[0];
    if top == 0 || top > latent.len() {
        bail!(
            "--top {top} is out of range: the latent has {} channels",
            latent.len()
        );
    }
    let mut order: Vec<usize> = (0..latent.len()).collect();
    order.sort_by(|&a, &b| latent[b].total_cmp(&latent[a]));
    order.truncate(top);
    tracing::info!("most important latent channels: {order:?}");
    Ok(order)
}
