//! `allday train`: stage-1 training of the double VAE, and resuming a run.

use std::path::PathBuf;

use allday::backend::{backend_name, default_device};
use allday::config::Config;
use allday::training::{Trainer, TrainingData};
use anyhow::{Context, Result, bail};
use clap::Args;

use crate::init_logging;

#[derive(Args, Debug)]
pub struct TrainArgs {
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

pub fn run(args: TrainArgs) -> Result<()> {
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
