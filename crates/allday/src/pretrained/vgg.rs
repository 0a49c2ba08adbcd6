//! VGG-16 (Simonyan and Zisserman 2015), the convolutional part in torchvision's layout.
//!
//! torchvision keeps the 13 convolutions in `features`, a `Sequential` whose indices also count
//! the ReLUs and max pools: the convolutions sit at 0, 2, 5, 7, 10, 12, 14, 17, 19, 21, 24, 26
//! and 28. The classifier (`classifier.0`, `.3`, `.6`) is not used for descriptors and is
//! skipped when loading. torchvision downloads the ImageNet weights to
//! `~/.cache/torch/hub/checkpoints/vgg16-397923af.pth`.

use std::path::Path;

use burn::nn::PaddingConfig2d;
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::pool::{MaxPool2d, MaxPool2dConfig};
use burn::prelude::*;
use burn::tensor::activation::relu;

use crate::error::Result;
use crate::pretrained::import::{KeyMap, load_weights};

/// The file name torchvision gives the ImageNet weights.
pub const TORCHVISION_FILE: &str = "vgg16-397923af.pth";

/// Indices of the convolutions in torchvision's `features`.
pub const TORCHVISION_INDICES: [usize; 13] = [0, 2, 5, 7, 10, 12, 14, 17, 19, 21, 24, 26, 28];

/// Output channels of the 13 convolutions.
pub const CHANNELS: [usize; 13] = [
    64, 64, 128, 128, 256, 256, 256, 512, 512, 512, 512, 512, 512,
];

/// The last convolution of each of the five blocks (0-based in [`CHANNELS`]); a 2×2 max pool
/// follows each, and the activations after their ReLUs are relu1_2, relu2_2, relu3_3,
/// relu4_3 and relu5_3.
pub const BLOCK_ENDS: [usize; 5] = [1, 3, 6, 9, 12];

/// The 13 convolutions of VGG-16 with their ReLUs and the max pools between blocks.
#[derive(Module, Debug)]
pub struct Vgg16 {
    pub convs: Vec<Conv2d>,
    pool: MaxPool2d,
}

impl Vgg16 {
    /// A network with initial (untrained) weights; [`Vgg16::load`] fills them.
    pub fn new(device: &Device) -> Self {
        let mut channels_in = 3;
        let convs = CHANNELS
            .iter()
            .map(|&channels_out| {
                let conv = Conv2dConfig::new([channels_in, channels_out], [3, 3])
                    .with_padding(PaddingConfig2d::Explicit(1, 1, 1, 1))
                    .init(device);
                channels_in = channels_out;
                conv
            })
            .collect();
        Vgg16 {
            convs,
            pool: MaxPool2dConfig::new([2, 2]).with_strides([2, 2]).init(),
        }
    }

    /// Loads torchvision's state dict (`.pth`) or the same tensors as `.safetensors`.
    pub fn load(path: &Path, device: &Device) -> Result<Self> {
        load_weights(Vgg16::new(device), path, &key_map())
    }

    /// The activations after relu1_2 … relu5_3, before each block's max pool, up to and
    /// including block `blocks` (1 to 5).
    ///
    /// `images` are ImageNet-normalised RGB `[batch, 3, h, w]`; block b's activation is
    /// `[batch, channels, h / 2^(b−1), w / 2^(b−1)]` (each halving rounded down).
    pub fn block_activations(&self, images: Tensor<4>, blocks: usize) -> Vec<Tensor<4>> {
        let blocks = blocks.clamp(1, BLOCK_ENDS.len());
        let mut activations = Vec::with_capacity(blocks);
        let mut x = images;
        for (index, conv) in self.convs.iter().enumerate() {
            x = relu(conv.forward(x));
            if BLOCK_ENDS.contains(&index) {
                activations.push(x.clone());
                if activations.len() == blocks {
                    break;
                }
                x = self.pool.forward(x);
            }
        }
        activations
    }

    /// Computes the last convolution map, after relu5_3: `[batch, 512, h/16, w/16]`.
    pub fn features(&self, images: Tensor<4>) -> Tensor<4> {
        self.block_activations(images, BLOCK_ENDS.len())
            .pop()
            .expect("five blocks give five activations")
    }
}

/// Renames torchvision's `features.N.` to `convs.i.` and skips the classifier.
pub fn key_map() -> KeyMap {
    TORCHVISION_INDICES
        .iter()
        .enumerate()
        .fold(KeyMap::new(), |keys, (index, torch_index)| {
            keys.prefix(
                format!("features.{torch_index}."),
                format!("convs.{index}."),
            )
        })
        .ignore_prefix("classifier.")
}
