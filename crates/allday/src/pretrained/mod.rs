//! ImageNet-pretrained networks as retrieval baselines and as initial encoder layers:
//! EfficientNet-Lite0 ([`efficientnet`]) and VGG-16 ([`vgg`]), loaded from PyTorch checkpoints
//! ([`import`]).
//!
//! Images are resized so that the short side is 224 pixels (bilinear; the long side keeps the
//! aspect ratio, rounded down as torchvision's `Resize(224)` does), scaled to [0, 1] and
//! normalised with the ImageNet mean and standard deviation. The last convolution map is then
//! pooled ([`crate::pooling`]).

pub mod efficientnet;
pub mod encoder;
pub mod fold;
pub mod import;
pub mod vgg;

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use burn::prelude::*;
use image::imageops::FilterType;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::data::{ImageEntry, decode_image, prefetch};
use crate::error::{Error, Result};
use crate::pooling::{Pooling, global_pool};
use crate::retrieval::per_position_descriptors;

pub use efficientnet::EfficientNetLite0;
pub use vgg::Vgg16;

/// ImageNet channel means of RGB in [0, 1].
pub const IMAGENET_MEAN: [f32; 3] = [0.485, 0.456, 0.406];
/// ImageNet channel standard deviations of RGB in [0, 1].
pub const IMAGENET_STD: [f32; 3] = [0.229, 0.224, 0.225];
/// The short side of the network input, in pixels.
pub const SHORT_SIDE: u32 = 224;
/// Images per forward pass when extracting descriptors.
const BATCH: usize = 8;

/// The pretrained networks allday supports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Network {
    #[serde(rename = "efficientnet-lite0")]
    EfficientNetLite0,
    #[serde(rename = "vgg16")]
    Vgg16,
}

impl fmt::Display for Network {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Network::EfficientNetLite0 => write!(f, "efficientnet-lite0"),
            Network::Vgg16 => write!(f, "vgg16"),
        }
    }
}

impl FromStr for Network {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text {
            "efficientnet-lite0" => Ok(Network::EfficientNetLite0),
            "vgg16" => Ok(Network::Vgg16),
            other => Err(format!(
                "unknown network `{other}`: expected efficientnet-lite0 or vgg16"
            )),
        }
    }
}

impl Network {
    /// Returns the network's name in result tables.
    pub fn short_name(self) -> &'static str {
        match self {
            Network::EfficientNetLite0 => "EffNet-Lite0",
            Network::Vgg16 => "VGG-16",
        }
    }

    /// Where the weights usually are: the shared EfficientNet-Lite0 file beside the
    /// repository, torchvision's download cache for VGG-16.
    pub fn default_weights(self) -> PathBuf {
        match self {
            Network::EfficientNetLite0 => {
                PathBuf::from("../shared/models/efficientnet_lite0/efficientnet-lite0-57934424.pth")
            }
            Network::Vgg16 => import::torch_hub_checkpoint(vgg::TORCHVISION_FILE),
        }
    }
}

/// A loaded network that turns normalised images into its last convolution map.
#[derive(Debug)]
pub enum Backbone {
    // Boxed so that the enum is as small as a pointer whichever network it holds.
    EfficientNetLite0(Box<EfficientNetLite0>),
    Vgg16(Box<Vgg16>),
}

impl Backbone {
    /// Loads a network for inference, with its batch norms folded into the convolutions
    /// ([`fold`]). A backbone only ever runs frozen.
    pub fn load(network: Network, weights: &Path, device: &Device) -> Result<Backbone> {
        Ok(match network {
            Network::EfficientNetLite0 => Backbone::EfficientNetLite0(Box::new(
                EfficientNetLite0::load(weights, device)?.fold_batch_norm(),
            )),
            Network::Vgg16 => Backbone::Vgg16(Box::new(Vgg16::load(weights, device)?)),
        })
    }

    /// `[batch, 3, h, w]` ImageNet-normalised → the last convolution map after its activation.
    pub fn features(&self, images: Tensor<4>) -> Tensor<4> {
        match self {
            Backbone::EfficientNetLite0(network) => network.features(images),
            Backbone::Vgg16(network) => network.features(images),
        }
    }

    /// Returns the number of layers that [`Backbone::layer_outputs`] can return.
    pub fn max_depth(&self) -> usize {
        match self {
            Backbone::EfficientNetLite0(_) => efficientnet::LAYERS,
            Backbone::Vgg16(_) => vgg::BLOCK_ENDS.len(),
        }
    }

    /// Returns the outputs of the last `depth` layers, deepest first (`depth` clamped to
    /// 1..=[`Backbone::max_depth`]): for EfficientNet-Lite0 the head, then the stage outputs
    /// from the last back; for VGG-16 relu5_3, relu4_3, … relu1_2.
    pub fn layer_outputs(&self, images: Tensor<4>, depth: usize) -> Vec<Tensor<4>> {
        match self {
            Backbone::EfficientNetLite0(network) => network.layer_outputs(images, depth),
            Backbone::Vgg16(network) => {
                let depth = depth.clamp(1, vgg::BLOCK_ENDS.len());
                let mut outputs = network.block_activations(images, vgg::BLOCK_ENDS.len());
                outputs.reverse();
                outputs.truncate(depth);
                outputs
            }
        }
    }
}

/// Returns the size of an image whose short side becomes [`SHORT_SIDE`], long side rounded down.
pub fn input_size(width: u32, height: u32) -> (u32, u32) {
    let scale = |long: u32, short: u32| {
        ((u64::from(long) * u64::from(SHORT_SIDE)) / u64::from(short.max(1))).max(1) as u32
    };
    if width <= height {
        (SHORT_SIDE, scale(height, width))
    } else {
        (scale(width, height), SHORT_SIDE)
    }
}

/// One preprocessed image: planar RGB `[3, height, width]`, ImageNet-normalised.
#[derive(Debug, Clone)]
pub struct NetworkInput {
    pub width: usize,
    pub height: usize,
    pub values: Vec<f32>,
}

/// Decodes and preprocesses one image for the networks.
pub fn network_input(path: &Path, max_pixels: u64) -> Result<NetworkInput> {
    let image = decode_image(path, max_pixels)?.to_rgb32f();
    let (width, height) = input_size(image.width(), image.height());
    let resized = image::imageops::resize(&image, width, height, FilterType::Triangle);
    let (width, height) = (width as usize, height as usize);
    let plane = width * height;
    let mut values = vec![0.0f32; 3 * plane];
    for (index, pixel) in resized.pixels().enumerate() {
        for channel in 0..3 {
            values[channel * plane + index] =
                (pixel[channel] - IMAGENET_MEAN[channel]) / IMAGENET_STD[channel];
        }
    }
    Ok(NetworkInput {
        width,
        height,
        values,
    })
}

/// Decodes and preprocesses a batch of images in parallel and returns them beside their
/// entries.
fn network_inputs(
    entries: &[ImageEntry],
    max_pixels: u64,
) -> Result<(&[ImageEntry], Vec<NetworkInput>)> {
    let inputs = entries
        .par_iter()
        .map(|entry| network_input(&entry.path, max_pixels))
        .collect::<Result<_>>()?;
    Ok((entries, inputs))
}

/// Descriptors of a set of images: one vector per image or one per grid position.
#[derive(Debug, Clone)]
pub enum Descriptors {
    /// `[images, channels]`, L2-normalised.
    Global(Tensor<2>),
    /// `[images, positions, channels]`, each position L2-normalised.
    Spatial(Tensor<3>),
}

/// Computes the descriptors of `entries` with `backbone` under each of `poolings` (one pass
/// through the network), in batches of equal-sized images. The result has one entry per
/// pooling, in order.
///
/// Spatial descriptors need one grid for all images; images of different aspect ratios give
/// [`Error::GridMismatch`].
pub fn network_descriptors(
    backbone: &Backbone,
    poolings: &[Pooling],
    entries: &[ImageEntry],
    max_pixels: u64,
    device: &Device,
) -> Result<Vec<Descriptors>> {
    let mut parts: Vec<Vec<Descriptors>> = vec![Vec::new(); poolings.len()];
    let mut first_grid: Option<(PathBuf, [usize; 2])> = None;
    // The next batch is decoded while the network runs on this one.
    let decode = |chunk| network_inputs(chunk, max_pixels);
    prefetch(entries.chunks(BATCH), decode, |(chunk, inputs)| {
        // Consecutive images of one size go through the network together.
        let mut start = 0;
        while start < inputs.len() {
            let (width, height) = (inputs[start].width, inputs[start].height);
            let end = start
                + inputs[start..]
                    .iter()
                    .take_while(|input| input.width == width && input.height == height)
                    .count();
            let values: Vec<f32> = inputs[start..end]
                .iter()
                .flat_map(|input| input.values.iter().copied())
                .collect();
            let batch = Tensor::<4>::from_data(
                TensorData::new(values, [end - start, 3, height, width]),
                device,
            );
            let map = backbone.features(batch);
            let [_, _, rows, columns] = map.dims();
            let path = &chunk[start].path;
            match &first_grid {
                None => first_grid = Some((path.clone(), [rows, columns])),
                Some((first, grid))
                    if *grid != [rows, columns] && poolings.contains(&Pooling::Spatial) =>
                {
                    return Err(Error::GridMismatch {
                        first: first.clone(),
                        first_grid: *grid,
                        other: path.clone(),
                        other_grid: [rows, columns],
                    });
                }
                Some(_) => {}
            }
            for (pooling, part) in poolings.iter().zip(&mut parts) {
                part.push(match pooling {
                    Pooling::Spatial => Descriptors::Spatial(per_position_descriptors(map.clone())),
                    _ => Descriptors::Global(global_pool(map.clone(), *pooling)),
                });
            }
            start = end;
        }
        Ok(())
    })?;
    Ok(parts.into_iter().map(Descriptors::cat).collect())
}

/// Per-position descriptors of the last `depth` layers of `backbone` for `entries`, deepest
/// first: one `[images, positions, channels]` tensor per layer, each position's channel vector
/// normalised to unit length (as allday's latent, see
/// [`crate::retrieval::per_position_descriptors`]), and the width of each layer's grid.
///
/// Every image must be resized to the same size; images of another aspect ratio give
/// [`Error::InputSizeMismatch`].
pub fn network_layer_descriptors(
    backbone: &Backbone,
    depth: usize,
    entries: &[ImageEntry],
    max_pixels: u64,
    device: &Device,
) -> Result<(Vec<Tensor<3>>, Vec<usize>)> {
    let mut per_layer: Vec<Vec<Tensor<3>>> = Vec::new();
    let mut widths = Vec::new();
    let mut first: Option<(PathBuf, [usize; 2])> = None;
    // The next batch is decoded while the network runs on this one.
    let decode = |chunk| network_inputs(chunk, max_pixels);
    prefetch(entries.chunks(BATCH), decode, |(chunk, inputs)| {
        for (entry, input) in chunk.iter().zip(&inputs) {
            match &first {
                None => first = Some((entry.path.clone(), [input.height, input.width])),
                Some((path, size)) if *size != [input.height, input.width] => {
                    return Err(Error::InputSizeMismatch {
                        first: path.clone(),
                        first_size: *size,
                        other: entry.path.clone(),
                        other_size: [input.height, input.width],
                    });
                }
                Some(_) => {}
            }
        }
        let [height, width] = first.as_ref().expect("the chunk is not empty").1;
        let values: Vec<f32> = inputs
            .iter()
            .flat_map(|input| input.values.iter().copied())
            .collect();
        let batch = Tensor::<4>::from_data(
            TensorData::new(values, [inputs.len(), 3, height, width]),
            device,
        );
        let outputs = backbone.layer_outputs(batch, depth);
        per_layer.resize_with(outputs.len(), Vec::new);
        widths = outputs.iter().map(|output| output.dims()[3]).collect();
        for (layer, output) in per_layer.iter_mut().zip(outputs) {
            layer.push(per_position_descriptors(output));
        }
        Ok(())
    })?;
    let layers = per_layer
        .into_iter()
        .map(|parts| Tensor::cat(parts, 0))
        .collect();
    Ok((layers, widths))
}

impl Descriptors {
    /// Joins the descriptors of consecutive batches, which all have the kind of the first.
    fn cat(parts: Vec<Descriptors>) -> Descriptors {
        let mut global = Vec::new();
        let mut spatial = Vec::new();
        for part in parts {
            match part {
                Descriptors::Global(tensor) => global.push(tensor),
                Descriptors::Spatial(tensor) => spatial.push(tensor),
            }
        }
        if spatial.is_empty() {
            Descriptors::Global(Tensor::cat(global, 0))
        } else {
            Descriptors::Spatial(Tensor::cat(spatial, 0))
        }
    }
}
