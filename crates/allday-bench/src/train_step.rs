//! One stage-1 training step, exactly as `allday train` runs it.

use allday::backend::default_device;
use allday::training::{Trainer, TrainingData};
use anyhow::{Context, Result};
use burn::module::Module;
use serde_json::{Value, json};

use crate::ModelArgs;
use crate::timing::{report, time_iterations};

/// Loads the config with the benchmark's image size and data folder.
pub fn config(args: &ModelArgs) -> Result<allday::Config> {
    let mut config = allday::Config::load(&args.config)
        .with_context(|| format!("failed to load {}", args.config.display()))?;
    config.data.root = args.data.clone();
    config.data.width = args.size;
    config.data.height = args.size;
    config.validate()?;
    Ok(config)
}

/// Builds a trainer on Gardens Point in a temporary run directory, which the caller keeps
/// alive while training.
pub fn trainer(args: &ModelArgs) -> Result<(Trainer, tempfile::TempDir)> {
    let mut config = config(args)?;
    config.training.batch_size = args.batch;
    config.validate()?;
    let data = TrainingData::load(&config)?;
    let run_dir = tempfile::tempdir()?;
    let trainer =
        Trainer::new(config, run_dir.path(), &default_device(), data)?.with_progress(false);
    Ok((trainer, run_dir))
}

/// Times `Trainer::train_step`: batching, latent noise, forward, loss read-back, backward,
/// gradient norm and the Adam update.
pub fn run(args: &ModelArgs) -> Result<Value> {
    let (mut trainer, _run_dir) = trainer(args)?;
    let steps = trainer.steps_per_epoch();
    let mut index = 0;
    let seconds = time_iterations(args.warmup, args.iterations, || {
        trainer.train_step(index % steps)?;
        index += 1;
        Ok(())
    })?;
    let parameters = trainer.model().num_params();
    Ok(report(
        &seconds,
        parameters,
        json!({ "size": args.size, "batch": args.batch }),
    ))
}
