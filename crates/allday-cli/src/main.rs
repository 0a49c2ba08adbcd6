//! `allday`: train a day/night double VAE, evaluate place retrieval, render translations.

mod baseline;
mod data;
mod eval;
mod index;
mod saliency;
mod train;
mod translate;
mod weights;

use std::fs::File;
use std::io::IsTerminal;
use std::path::Path;
use std::sync::Mutex;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

/// Tensor operations allocate and free buffers of megabytes many times per forward pass.
/// mimalloc keeps them for reuse, while glibc's allocator returns them to the system each time
/// (figures in BENCHMARKS.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

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
    Train(train::TrainArgs),
    /// Evaluate night→day retrieval with a trained checkpoint, beside the raw-pixel baseline.
    Eval(eval::EvalArgs),
    /// Write a PNG of day and night images with their reconstructions and translations.
    Translate(translate::TranslateArgs),
    /// Learn a weight per channel of the matched encoder layers from labelled triplets of
    /// training places (stage 2), with the encoders of a trained run frozen.
    TrainTriplet(weights::TrainTripletArgs),
    /// Rank the channels of learned weights by how much the held-out triplet loss rises when
    /// each one alone is removed.
    Channels(weights::ChannelsArgs),
    /// Train one channel weighting per matching depth 1..N and plot their validation losses.
    DepthSweep(weights::DepthSweepArgs),
    /// Write heat maps of the input pixels that drive chosen latent channels (the gradient of
    /// a channel's activation with respect to the image).
    Saliency(saliency::SaliencyArgs),
    /// Evaluate one reference descriptor (VGG-16, EfficientNet-Lite0, raw pixels or HOG) with
    /// the metrics of `allday eval`.
    Baseline(baseline::BaselineArgs),
    /// Print one table of every reference descriptor beside a trained run's embedding.
    Compare(baseline::CompareArgs),
    /// Encode image folders into a descriptor index, or add new images to one.
    Index(index::IndexArgs),
    /// Find the nearest indexed images of query images.
    Search(index::SearchArgs),
    /// Write an index's global descriptors as .npy and safetensors, with their image paths.
    Export(index::ExportArgs),
    /// Download datasets.
    Data(data::DataArgs),
}

fn main() {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Train(args) => train::run(args),
        Command::Eval(args) => eval::run(args),
        Command::Translate(args) => translate::run(args),
        Command::TrainTriplet(args) => weights::train_triplet(args),
        Command::Channels(args) => weights::channels(args),
        Command::DepthSweep(args) => weights::depth_sweep(args),
        Command::Saliency(args) => saliency::run(args),
        Command::Baseline(args) => baseline::baseline(args),
        Command::Compare(args) => baseline::compare(args),
        Command::Index(args) => index::index(args),
        Command::Search(args) => index::search(args),
        Command::Export(args) => index::export(args),
        Command::Data(args) => data::run(args),
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
pub(crate) fn init_logging(log_file: Option<&Path>) -> Result<()> {
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
