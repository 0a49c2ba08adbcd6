//! Encoder inference, as `allday eval` and `allday index` run it: no autodiff, one domain.

use allday::backend::default_device;
use allday::model::{Domain, DoubleVae};
use anyhow::Result;
use burn::module::Module;
use burn::prelude::*;
use burn::tensor::Distribution;
use serde_json::{Value, json};

use crate::ModelArgs;
use crate::timing::{report, time_iterations};
use crate::train_step::config;

/// Times the domain-B encoder on one `[batch, 3, size, size]` batch of uniform noise; the
/// time covers the forward pass and the copy of the latent to the host.
pub fn run(args: &ModelArgs) -> Result<Value> {
    let config = config(args)?;
    let device = default_device();
    device.seed(config.seed);
    let model = DoubleVae::new(&config.model, &device).valid();
    let images = Tensor::<4>::random(
        [args.batch, 3, args.size, args.size],
        Distribution::Uniform(0.0, 1.0),
        &device,
    );
    let seconds = time_iterations(args.warmup, args.iterations, || {
        let latent = model.encode(Domain::B, images.clone());
        latent.into_data();
        Ok(())
    })?;
    Ok(report(
        &seconds,
        model.num_params(),
        json!({ "size": args.size, "batch": args.batch }),
    ))
}
