//! The double variational autoencoder (UNIT, Liu et al. 2017, "Unsupervised Image-to-Image
//! Translation Networks").
//!
//! Each domain has its own encoder and decoder. The last residual blocks of the encoders and the
//! first residual blocks of the decoders are one set of parameters used by both domains, which
//! ties the two latent spaces together. With the default sizes an encoder has 11 convolutions:
//! a 7×7 stem, two 4×4 stride-2 convolutions, two private and two shared residual blocks of two
//! 3×3 convolutions each. There is no pooling. The latent is the encoder's output at 1/4 of the
//! input resolution; UNIT's simplified VAE treats it as the mean of a unit-variance Gaussian.

use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::nn::interpolate::{Interpolate2d, Interpolate2dConfig, InterpolateMode};
use burn::nn::{BatchNorm, BatchNormConfig, InstanceNorm, InstanceNormConfig, PaddingConfig2d};
use burn::prelude::*;
use burn::tensor::activation::{relu, sigmoid};

use crate::config::{ModelConfig, Normalization};
use crate::error::Result;
use crate::pretrained::encoder::PretrainedFront;

/// One of the two image domains.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Domain {
    /// The first domain, day images in allday's default setup; its images form the database.
    A,
    /// The second domain, night images; its images are the queries.
    B,
}

impl Domain {
    pub fn other(self) -> Domain {
        match self {
            Domain::A => Domain::B,
            Domain::B => Domain::A,
        }
    }
}

fn conv(
    channels_in: usize,
    channels_out: usize,
    kernel: usize,
    stride: usize,
    device: &Device,
) -> Conv2d {
    // Padding k/2 keeps the size for odd kernels; for the 4×4 stride-2 convolutions a padding
    // of 1 halves it exactly.
    let padding = if kernel % 2 == 1 {
        kernel / 2
    } else {
        kernel / 2 - 1
    };
    Conv2dConfig::new([channels_in, channels_out], [kernel, kernel])
        .with_stride([stride, stride])
        .with_padding(PaddingConfig2d::Explicit(
            padding, padding, padding, padding,
        ))
        .init(device)
}

/// A convolution, optionally followed by instance normalisation.
#[derive(Module, Debug)]
pub struct ConvUnit {
    pub conv: Conv2d,
    pub norm: Option<InstanceNorm>,
}

impl ConvUnit {
    fn new(
        channels_in: usize,
        channels_out: usize,
        kernel: usize,
        stride: usize,
        normalization: Normalization,
        device: &Device,
    ) -> Self {
        ConvUnit {
            conv: conv(channels_in, channels_out, kernel, stride, device),
            norm: match normalization {
                Normalization::None => None,
                Normalization::Instance => Some(InstanceNormConfig::new(channels_out).init(device)),
            },
        }
    }

    /// `[batch, channels_in, h, w]` → `[batch, channels_out, h / stride, w / stride]`.
    pub fn forward(&self, input: Tensor<4>) -> Tensor<4> {
        let output = self.conv.forward(input);
        match &self.norm {
            Some(norm) => norm.forward(output),
            None => output,
        }
    }
}

/// Two 3×3 convolutions with a ReLU between them and a skip connection over both.
#[derive(Module, Debug)]
pub struct ResidualBlock {
    pub conv1: ConvUnit,
    pub conv2: ConvUnit,
}

impl ResidualBlock {
    pub fn new(channels: usize, normalization: Normalization, device: &Device) -> Self {
        ResidualBlock {
            conv1: ConvUnit::new(channels, channels, 3, 1, normalization, device),
            conv2: ConvUnit::new(channels, channels, 3, 1, normalization, device),
        }
    }

    /// `[batch, channels, h, w]` → `[batch, channels, h, w]`.
    pub fn forward(&self, input: Tensor<4>) -> Tensor<4> {
        let hidden = relu(self.conv1.forward(input.clone()));
        input + self.conv2.forward(hidden)
    }
}

/// The layers of one domain's encoder before the shared blocks.
///
/// Either `stem` and `down1` or `pretrained` is present (`model.pretrained` in the config).
#[derive(Module, Debug)]
pub struct PrivateEncoder {
    pub stem: Option<ConvUnit>,
    pub down1: Option<ConvUnit>,
    /// Pretrained layers in place of `stem` and `down1`, with the same output resolution.
    pub pretrained: Option<PretrainedFront>,
    pub down2: ConvUnit,
    pub blocks: Vec<ResidualBlock>,
}

impl PrivateEncoder {
    pub fn new(config: &ModelConfig, device: &Device) -> Self {
        let [c1, c2, c3] = config.channels;
        let norm = config.normalization;
        let pretrained = PretrainedFront::new(config.pretrained, device);
        let (stem, down1, front_channels) = match &pretrained {
            Some(_) => (None, None, PretrainedFront::channels(config.pretrained)),
            None => (
                Some(ConvUnit::new(3, c1, 7, 1, norm, device)),
                Some(ConvUnit::new(c1, c2, 4, 2, norm, device)),
                c2,
            ),
        };
        PrivateEncoder {
            stem,
            down1,
            pretrained,
            down2: ConvUnit::new(front_channels, c3, 4, 2, norm, device),
            blocks: (0..config.private_blocks)
                .map(|_| ResidualBlock::new(c3, norm, device))
                .collect(),
        }
    }

    /// Appends the activation after each layer to `activations`.
    ///
    /// `[batch, 3, h, w]` → `[batch, c3, h/4, w/4]`.
    fn forward(&self, image: Tensor<4>, activations: &mut Vec<Tensor<4>>) -> Tensor<4> {
        let x = match (&self.pretrained, &self.stem, &self.down1) {
            (Some(front), _, _) => front.forward(image, activations), // [batch, _, h/2, w/2]
            (None, Some(stem), Some(down1)) => {
                let x = relu(stem.forward(image)); // [batch, c1, h, w]
                activations.push(x.clone());
                let x = relu(down1.forward(x)); // [batch, c2, h/2, w/2]
                activations.push(x.clone());
                x
            }
            _ => unreachable!("PrivateEncoder::new builds either the stem or a pretrained front"),
        };
        let mut x = relu(self.down2.forward(x)); // [batch, c3, h/4, w/4]
        activations.push(x.clone());
        for block in &self.blocks {
            x = block.forward(x);
            activations.push(x.clone());
        }
        x
    }
}

/// The layers of one domain's decoder after the shared blocks: two stages of nearest ×2
/// upsampling, 5×5 convolution, batch norm and ReLU, then a 7×7 convolution to RGB and a
/// sigmoid.
#[derive(Module, Debug)]
pub struct PrivateDecoder {
    upsample: Interpolate2d,
    conv1: Conv2d,
    norm1: BatchNorm,
    conv2: Conv2d,
    norm2: BatchNorm,
    to_rgb: Conv2d,
}

impl PrivateDecoder {
    pub fn new(config: &ModelConfig, device: &Device) -> Self {
        let latent = config.channels[2];
        PrivateDecoder {
            upsample: Interpolate2dConfig::new()
                .with_scale_factor(Some([2.0, 2.0]))
                .with_mode(InterpolateMode::Nearest)
                .init(),
            conv1: conv(latent, latent / 2, 5, 1, device),
            norm1: BatchNormConfig::new(latent / 2).init(device),
            conv2: conv(latent / 2, latent / 4, 5, 1, device),
            norm2: BatchNormConfig::new(latent / 4).init(device),
            to_rgb: conv(latent / 4, 3, 7, 1, device),
        }
    }

    /// `[batch, latent, h/4, w/4]` → `[batch, 3, h, w]` in [0, 1].
    fn forward(&self, features: Tensor<4>) -> Tensor<4> {
        let x = self.conv1.forward(self.upsample.forward(features));
        let x = relu(self.norm1.forward(x)); // [batch, latent/2, h/2, w/2]
        let x = self.conv2.forward(self.upsample.forward(x));
        let x = relu(self.norm2.forward(x)); // [batch, latent/4, h, w]
        sigmoid(self.to_rgb.forward(x))
    }
}

/// The two encoders and two decoders with their shared layers.
#[derive(Module, Debug)]
pub struct DoubleVae {
    pub encoder_a: PrivateEncoder,
    pub encoder_b: PrivateEncoder,
    /// Used by both encoders; its output is the latent mean.
    pub shared_encoder: Vec<ResidualBlock>,
    /// Used by both decoders, applied to the latent first.
    pub shared_decoder: Vec<ResidualBlock>,
    pub decoder_a: PrivateDecoder,
    pub decoder_b: PrivateDecoder,
}

impl DoubleVae {
    /// Builds a freshly initialised model. Seed the device first for a reproducible init.
    pub fn new(config: &ModelConfig, device: &Device) -> Self {
        let latent = config.channels[2];
        DoubleVae {
            encoder_a: PrivateEncoder::new(config, device),
            encoder_b: PrivateEncoder::new(config, device),
            shared_encoder: (0..config.shared_encoder_blocks)
                .map(|_| ResidualBlock::new(latent, config.normalization, device))
                .collect(),
            shared_decoder: (0..config.shared_decoder_blocks)
                .map(|_| ResidualBlock::new(latent, config.normalization, device))
                .collect(),
            decoder_a: PrivateDecoder::new(config, device),
            decoder_b: PrivateDecoder::new(config, device),
        }
    }

    /// Loads the pretrained layers of `config.pretrained` into both encoders (one copy each,
    /// so that each domain fine-tunes its own) and freezes them when
    /// `config.freeze_pretrained` is set. A model without pretrained layers is returned as it is.
    pub fn load_pretrained(mut self, config: &ModelConfig, device: &Device) -> Result<Self> {
        let Some(network) = Option::<crate::pretrained::Network>::from(config.pretrained) else {
            return Ok(self);
        };
        let path = if config.pretrained_weights.as_os_str().is_empty() {
            network.default_weights()
        } else {
            config.pretrained_weights.clone()
        };
        self.encoder_a.pretrained = PretrainedFront::load(config.pretrained, &path, device)?;
        self.encoder_b.pretrained = PretrainedFront::load(config.pretrained, &path, device)?;
        Ok(self.freeze_pretrained(config))
    }

    /// Freezes the pretrained layers of both encoders when `config.freeze_pretrained` is set.
    /// Freezing is not stored in checkpoints, so a resumed run calls this again.
    pub fn freeze_pretrained(mut self, config: &ModelConfig) -> Self {
        if config.freeze_pretrained {
            self.encoder_a.pretrained = self.encoder_a.pretrained.map(Module::freeze);
            self.encoder_b.pretrained = self.encoder_b.pretrained.map(Module::freeze);
        }
        self
    }

    /// Encodes images of `domain` and returns the activation after every encoder layer, in
    /// order: stem, first and second stride-2 convolution, then each private and each shared
    /// residual block. The last activation is the latent mean.
    ///
    /// `[batch, 3, h, w]` → activations at full, 1/2 and 1/4 resolution; the latent is
    /// `[batch, latent, h/4, w/4]`.
    pub fn encode_layers(&self, domain: Domain, images: Tensor<4>) -> Vec<Tensor<4>> {
        let encoder = match domain {
            Domain::A => &self.encoder_a,
            Domain::B => &self.encoder_b,
        };
        let mut activations =
            Vec::with_capacity(3 + encoder.blocks.len() + self.shared_encoder.len());
        let mut x = encoder.forward(images, &mut activations);
        for block in &self.shared_encoder {
            x = block.forward(x);
            activations.push(x.clone());
        }
        activations
    }

    /// Encodes images of `domain` to the latent mean.
    ///
    /// `[batch, 3, h, w]` → `[batch, latent, h/4, w/4]`.
    pub fn encode(&self, domain: Domain, images: Tensor<4>) -> Tensor<4> {
        let encoder = match domain {
            Domain::A => &self.encoder_a,
            Domain::B => &self.encoder_b,
        };
        let mut activations = Vec::new();
        let mut x = encoder.forward(images, &mut activations);
        drop(activations);
        for block in &self.shared_encoder {
            x = block.forward(x);
        }
        x
    }

    /// Decodes latent codes to images of `domain`.
    ///
    /// `[batch, latent, h/4, w/4]` → `[batch, 3, h, w]` in [0, 1].
    pub fn decode(&self, domain: Domain, latent: Tensor<4>) -> Tensor<4> {
        self.decode_private(domain, self.decode_shared(latent))
    }

    /// Runs the shared decoder blocks, the first half of [`DoubleVae::decode`]. Their output serves
    /// both domains' private decoders, so a latent decoded to both domains needs them once.
    ///
    /// `[batch, latent, h/4, w/4]` → `[batch, latent, h/4, w/4]`.
    pub fn decode_shared(&self, latent: Tensor<4>) -> Tensor<4> {
        let mut x = latent;
        for block in &self.shared_decoder {
            x = block.forward(x);
        }
        x
    }

    /// Runs the private decoder of `domain` on the output of [`DoubleVae::decode_shared`].
    ///
    /// `[batch, latent, h/4, w/4]` → `[batch, 3, h, w]` in [0, 1].
    pub fn decode_private(&self, domain: Domain, features: Tensor<4>) -> Tensor<4> {
        match domain {
            Domain::A => self.decoder_a.forward(features),
            Domain::B => self.decoder_b.forward(features),
        }
    }

    /// Translates images of `from` to the other domain through the latent mean, without noise.
    pub fn translate(&self, from: Domain, images: Tensor<4>) -> Tensor<4> {
        self.decode(from.other(), self.encode(from, images))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::default_device;
    use burn::module::Param;

    fn tiny_config() -> ModelConfig {
        ModelConfig {
            channels: [4, 8, 8],
            private_blocks: 2,
            shared_encoder_blocks: 2,
            shared_decoder_blocks: 2,
            normalization: Normalization::Instance,
            ..ModelConfig::default()
        }
    }

    fn input(device: &Device) -> Tensor<4> {
        Tensor::random(
            [2, 3, 16, 12],
            burn::tensor::Distribution::Uniform(0.0, 1.0),
            device,
        )
    }

    fn max_abs_difference(a: Tensor<4>, b: Tensor<4>) -> f32 {
        (a - b).abs().max().into_scalar::<f32>()
    }

    /// Adds 0.5 to every weight of a convolution.
    fn perturb(unit: &mut ConvUnit) {
        let weight = unit.conv.weight.val().add_scalar(0.5);
        unit.conv.weight = Param::from_tensor(weight);
    }

    #[test]
    fn shapes_at_every_layer() {
        let device = default_device();
        let model = DoubleVae::new(&tiny_config(), &device).valid();
        let layers = model.encode_layers(Domain::A, input(&device));
        let dims: Vec<_> = layers.iter().map(|layer| layer.dims()).collect();
        assert_eq!(
            dims,
            [
                [2, 4, 16, 12],
                [2, 8, 8, 6],
                [2, 8, 4, 3],
                [2, 8, 4, 3],
                [2, 8, 4, 3],
                [2, 8, 4, 3],
                [2, 8, 4, 3],
            ]
        );
        let latent = model.encode(Domain::B, input(&device));
        assert_eq!(latent.dims(), [2, 8, 4, 3]);
        let image = model.decode(Domain::B, latent);
        assert_eq!(image.dims(), [2, 3, 16, 12]);
        let min = image.clone().min().into_scalar::<f32>();
        let max = image.max().into_scalar::<f32>();
        assert!(min >= 0.0, "{min}");
        assert!(max <= 1.0, "{max}");
    }

    #[test]
    fn default_sizes_give_eleven_encoder_convolutions() {
        let config = ModelConfig::default();
        let per_block = 2;
        let convolutions = 3 + per_block * (config.private_blocks + config.shared_encoder_blocks);
        assert_eq!(convolutions, 11);
        assert_eq!(config.channels[2], 256);
    }

    #[test]
    fn shared_encoder_weight_changes_both_domains() {
        let device = default_device();
        let model = DoubleVae::new(&tiny_config(), &device).valid();
        let images = input(&device);
        let before_a = model.encode(Domain::A, images.clone());
        let before_b = model.encode(Domain::B, images.clone());

        let mut changed = model.clone();
        perturb(&mut changed.shared_encoder[0].conv1);
        let after_a = changed.encode(Domain::A, images.clone());
        let after_b = changed.encode(Domain::B, images);
        assert!(max_abs_difference(before_a, after_a) > 1e-3);
        assert!(max_abs_difference(before_b, after_b) > 1e-3);
    }

    #[test]
    fn private_encoder_weight_changes_only_its_domain() {
        let device = default_device();
        let model = DoubleVae::new(&tiny_config(), &device).valid();
        let images = input(&device);
        let before_a = model.encode(Domain::A, images.clone());
        let before_b = model.encode(Domain::B, images.clone());

        let mut changed = model.clone();
        perturb(changed.encoder_a.stem.as_mut().unwrap());
        let after_a = changed.encode(Domain::A, images.clone());
        let after_b = changed.encode(Domain::B, images);
        assert!(max_abs_difference(before_a, after_a) > 1e-3);
        assert_eq!(max_abs_difference(before_b, after_b), 0.0);
    }

    #[test]
    fn shared_decoder_weight_changes_both_domains() {
        let device = default_device();
        let model = DoubleVae::new(&tiny_config(), &device).valid();
        let latent = Tensor::random(
            [2, 8, 4, 3],
            burn::tensor::Distribution::Normal(0.0, 1.0),
            &device,
        );
        let before_a = model.decode(Domain::A, latent.clone());
        let before_b = model.decode(Domain::B, latent.clone());

        let mut changed = model.clone();
        perturb(&mut changed.shared_decoder[1].conv2);
        let after_a = changed.decode(Domain::A, latent.clone());
        let after_b = changed.decode(Domain::B, latent.clone());
        assert!(max_abs_difference(before_a.clone(), after_a) > 1e-4);
        assert!(max_abs_difference(before_b.clone(), after_b) > 1e-4);

        let mut changed = model.clone();
        let weight = changed.decoder_b.to_rgb.weight.val().add_scalar(0.5);
        changed.decoder_b.to_rgb.weight = Param::from_tensor(weight);
        let after_a = changed.decode(Domain::A, latent.clone());
        let after_b = changed.decode(Domain::B, latent);
        assert_eq!(max_abs_difference(before_a, after_a), 0.0);
        assert!(max_abs_difference(before_b, after_b) > 1e-4);
    }
}
