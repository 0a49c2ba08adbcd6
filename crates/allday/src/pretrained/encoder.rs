//! The first layers of an ImageNet-pretrained network as the front of allday's private
//! encoders, in place of the 7×7 stem and the first stride-2 convolution.
//!
//! Both fronts take RGB in [0, 1] (allday's input), apply the ImageNet normalisation the
//! networks were trained with, and return a map at half the input resolution, which the
//! encoder's second stride-2 convolution takes to the latent's quarter resolution:
//! - VGG-16: conv1_1, conv1_2, max pool, conv2_1, conv2_2 (ReLU after each); activations
//!   relu1_2 `[n, 64, h, w]` and relu2_2 `[n, 128, h/2, w/2]`.
//! - EfficientNet-Lite0: the stem and stage 1 (one block); activations `[n, 32, h/2, w/2]`
//!   and `[n, 16, h/2, w/2]`.

use std::path::Path;

use burn::nn::BatchNorm;
use burn::nn::conv::Conv2d;
use burn::nn::pool::{MaxPool2d, MaxPool2dConfig};
use burn::prelude::*;
use burn::tensor::activation::relu;

use crate::config::PretrainedInit;
use crate::error::Result;
use crate::pretrained::efficientnet::{EfficientNetLite0, MbConvBlock};
use crate::pretrained::vgg::Vgg16;
use crate::pretrained::{IMAGENET_MEAN, IMAGENET_STD, Network};

/// VGG-16 convolutions the front keeps: blocks 1 and 2.
const VGG_CONVS: usize = 4;
/// EfficientNet-Lite0 blocks the front keeps: stage 1.
const EFFICIENTNET_BLOCKS: usize = 1;

/// The pretrained layers of one encoder. Exactly one of the fields is present.
#[derive(Module, Debug)]
pub struct PretrainedFront {
    /// VGG-16's conv1_1 to conv2_2.
    pub vgg: Option<Vec<Conv2d>>,
    pool: Option<MaxPool2d>,
    /// EfficientNet-Lite0's stem convolution, its batch norm and the stage-1 block.
    pub efficientnet_stem: Option<Conv2d>,
    pub efficientnet_bn0: Option<BatchNorm>,
    pub efficientnet_blocks: Option<Vec<MbConvBlock>>,
}

impl PretrainedFront {
    /// Builds the front of `init` with initial (untrained) weights; `None` for
    /// [`PretrainedInit::None`].
    pub fn new(init: PretrainedInit, device: &Device) -> Option<PretrainedFront> {
        match init {
            PretrainedInit::None => None,
            PretrainedInit::Vgg16 => Some(Self::from_vgg(Vgg16::new(device))),
            PretrainedInit::EfficientNetLite0 => {
                Some(Self::from_efficientnet(EfficientNetLite0::new(device)))
            }
        }
    }

    /// Loads the front of `init` from the weights file at `path`.
    pub fn load(init: PretrainedInit, path: &Path, device: &Device) -> Result<Option<Self>> {
        Ok(match init {
            PretrainedInit::None => None,
            PretrainedInit::Vgg16 => Some(Self::from_vgg(Vgg16::load(path, device)?)),
            PretrainedInit::EfficientNetLite0 => Some(Self::from_efficientnet(
                EfficientNetLite0::load(path, device)?,
            )),
        })
    }

    fn from_vgg(network: Vgg16) -> Self {
        PretrainedFront {
            vgg: Some(network.convs.into_iter().take(VGG_CONVS).collect()),
            pool: Some(MaxPool2dConfig::new([2, 2]).with_strides([2, 2]).init()),
            efficientnet_stem: None,
            efficientnet_bn0: None,
            efficientnet_blocks: None,
        }
    }

    fn from_efficientnet(network: EfficientNetLite0) -> Self {
        PretrainedFront {
            vgg: None,
            pool: None,
            efficientnet_stem: Some(network.conv_stem),
            efficientnet_bn0: network.bn0,
            efficientnet_blocks: Some(
                network
                    .blocks
                    .into_iter()
                    .take(EFFICIENTNET_BLOCKS)
                    .collect(),
            ),
        }
    }

    /// Returns the channels of the front's output.
    pub fn channels(init: PretrainedInit) -> usize {
        match init {
            PretrainedInit::None => 0,
            PretrainedInit::Vgg16 => 128,
            PretrainedInit::EfficientNetLite0 => 16,
        }
    }

    /// Computes `[batch, 3, h, w]` RGB in [0, 1] → `[batch, channels, h/2, w/2]` and appends
    /// the two activations listed in the module documentation to `activations`.
    pub fn forward(&self, images: Tensor<4>, activations: &mut Vec<Tensor<4>>) -> Tensor<4> {
        let device = images.device();
        let mean = Tensor::<1>::from_floats(IMAGENET_MEAN, &device).reshape([1, 3, 1, 1]);
        let std = Tensor::<1>::from_floats(IMAGENET_STD, &device).reshape([1, 3, 1, 1]);
        let mut x = (images - mean) / std;
        if let (Some(convs), Some(pool)) = (&self.vgg, &self.pool) {
            for (index, conv) in convs.iter().enumerate() {
                x = relu(conv.forward(x));
                if index == 1 {
                    activations.push(x.clone());
                    x = pool.forward(x);
                }
            }
            activations.push(x.clone());
        } else if let (Some(stem), Some(norm), Some(blocks)) = (
            &self.efficientnet_stem,
            &self.efficientnet_bn0,
            &self.efficientnet_blocks,
        ) {
            x = norm.forward(stem.forward(x)).clamp(0.0, 6.0);
            activations.push(x.clone());
            for block in blocks {
                x = block.forward(x);
            }
            activations.push(x.clone());
        }
        x
    }
}

impl From<PretrainedInit> for Option<Network> {
    fn from(init: PretrainedInit) -> Option<Network> {
        match init {
            PretrainedInit::None => None,
            PretrainedInit::Vgg16 => Some(Network::Vgg16),
            PretrainedInit::EfficientNetLite0 => Some(Network::EfficientNetLite0),
        }
    }
}
