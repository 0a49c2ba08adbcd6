//! Phase timing of a training step. Each phase ends with a device sync, so its wall time is its
//! own. The phases follow `Trainer::train_step` except for the gradient norm, which the trainer
//! also computes (one reduction per parameter) and this leaves out.

use std::time::Instant;

use allday::backend::default_device;
use allday::loss::LossValues;
use allday::model::DoubleVae;
use allday::training::{TrainingData, optimizer, unit_losses};
use anyhow::{Result, anyhow};
use burn::module::Module;
use burn::optim::GradientsParams;
use burn::prelude::*;
use burn::tensor::Distribution;
use serde_json::{Value, json};

use crate::ModelArgs;
use crate::timing::report;
use crate::train_step::config;

/// The phases in step order.
const PHASES: [&str; 5] = ["data", "forward", "backward", "gradients", "optimizer"];

/// Times each phase of `args.iterations` steps after `args.warmup` untimed ones and reports
/// the seconds of every step per phase.
pub fn run(args: &ModelArgs) -> Result<Value> {
    let config = config(args)?;
    let data = TrainingData::load(&config)?;
    let device = default_device().autodiff();
    device.seed(config.seed);
    let mut model = Some(DoubleVae::new(&config.model, &device));
    let mut adam = optimizer(&config);
    let mut phases: Vec<Vec<f64>> = vec![Vec::new(); PHASES.len()];
    let sync = || {
        device
            .sync()
            .map_err(|error| anyhow!("device sync failed: {error:?}"))
    };

    for step in 0..args.warmup + args.iterations {
        let mut seconds = [0.0; PHASES.len()];
        let mut started = Instant::now();
        let mut lap = |phase: usize| -> Result<()> {
            sync()?;
            seconds[phase] = started.elapsed().as_secs_f64();
            started = Instant::now();
            Ok(())
        };

        let indices: Vec<usize> = (0..args.batch)
            .map(|i| (step * args.batch + i) % data.train_a.len())
            .collect();
        let images_a = data.train_a.batch(&indices, &device);
        let images_b = data.train_b.batch(&indices, &device);
        let noise = |_: u64, shape: [usize; 4]| {
            Tensor::<4>::random(shape, Distribution::Normal(0.0, 1.0), &device)
        };
        lap(0)?;

        let current = model
            .take()
            .expect("the model is put back after every step");
        let terms = unit_losses(&current, images_a, images_b, noise);
        let values: LossValues = terms.values(&config.loss);
        anyhow::ensure!(values.is_finite(), "loss is not finite: {values}");
        lap(1)?;

        let gradients = terms.total(&config.loss).backward();
        lap(2)?;

        let gradients = GradientsParams::from_grads(gradients, &current);
        lap(3)?;

        model = Some(adam.step(config.optimizer.learning_rate, current, gradients));
        lap(4)?;

        if step >= args.warmup {
            for (phase, value) in phases.iter_mut().zip(seconds) {
                phase.push(value);
            }
        }
    }

    let totals: Vec<f64> = (0..args.iterations)
        .map(|i| phases.iter().map(|phase| phase[i]).sum())
        .collect();
    let parameters = model.as_ref().map_or(0, Module::num_params);
    let by_phase: serde_json::Map<String, Value> = PHASES
        .iter()
        .zip(&phases)
        .map(|(name, seconds)| (name.to_string(), json!(seconds)))
        .collect();
    Ok(report(
        &totals,
        parameters,
        json!({ "size": args.size, "batch": args.batch, "phases": by_phase }),
    ))
}
