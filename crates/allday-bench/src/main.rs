//! Benchmark binary of allday, the Rust side of `bench/run.sh`.
//!
//! Each subcommand times one operation in-process, after warm-up iterations, and prints one
//! JSON object on stdout: the seconds of every timed iteration, the model's parameter count
//! and the backend. `bench/harness.py` runs it interleaved with the PyTorch reference
//! (`bench/reference.py`, same subcommands and flags), takes medians and reads peak RSS from
//! the process's rusage. Nothing here is a test, and CI never runs it.

mod backbone;
mod encode;
mod profile;
mod search;
mod timing;
mod train_step;

use std::path::PathBuf;

use anyhow::Result;
use clap::{Args, Parser, Subcommand};

/// The allocator of the `allday` binary, so that the timings are those of the CLI.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "allday-bench",
    about = "Time allday's hot paths for bench/run.sh"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Time stage-1 training steps (forward, backward, gradient norm, Adam).
    TrainStep(ModelArgs),
    /// Time the domain-B encoder on one batch, without autodiff.
    Encode(ModelArgs),
    /// Time EfficientNet-Lite0's last layers on one batch, without autodiff.
    Backbone(backbone::BackboneArgs),
    /// Time exact top-k search of random unit descriptors.
    Search(search::SearchArgs),
    /// Time the phases of a training step with a sync after each (forward, backward, optimizer).
    Profile(ModelArgs),
}

/// The model and workload shared by the model subcommands.
#[derive(Args, Clone)]
pub struct ModelArgs {
    /// Config that defines the model, loss and optimizer (only `data.root` and the image size
    /// are overridden).
    #[arg(long, default_value = "configs/quick.toml")]
    pub config: PathBuf,
    /// Folder with Gardens Point's `day_left/`, `day_right/` and `night_right/`.
    #[arg(long, default_value = "../shared/data/gardens_point")]
    pub data: PathBuf,
    /// Image width and height, pixels (a multiple of 4).
    #[arg(long, default_value_t = 64)]
    pub size: usize,
    /// Images per domain and batch.
    #[arg(long, default_value_t = 8)]
    pub batch: usize,
    /// Untimed iterations before the timed ones.
    #[arg(long, default_value_t = 2)]
    pub warmup: usize,
    /// Timed iterations.
    #[arg(long, default_value_t = 5)]
    pub iterations: usize,
}

fn main() -> Result<()> {
    let cli = Cli::parse();
    let report = match cli.command {
        Command::TrainStep(args) => train_step::run(&args)?,
        Command::Encode(args) => encode::run(&args)?,
        Command::Backbone(args) => backbone::run(&args)?,
        Command::Search(args) => search::run(&args)?,
        Command::Profile(args) => profile::run(&args)?,
    };
    println!("{report}");
    Ok(())
}
