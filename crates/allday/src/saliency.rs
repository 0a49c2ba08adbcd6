//! Saliency: which input pixels drive one latent channel.
//!
//! The saliency map of channel k is the gradient of k's activation in the latent (summed over
//! all positions, or taken at one position) with respect to the input pixels, as in
//! gradient-based saliency (Simonyan et al. 2014). Its magnitude per pixel is the largest
//! absolute gradient over the three colour channels.

use burn::module::Module;
use burn::prelude::*;
use image::{Rgb, RgbImage};
use plotters::style::colors::colormaps::{ColorMap, ViridisRGB};

use crate::error::{Error, Result};
use crate::model::{Domain, DoubleVae};

/// The part of a channel's latent activation that a saliency map explains.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// The activation summed over every latent position.
    Sum,
    /// The activation at one latent position (column x, row y, in latent cells).
    At { x: usize, y: usize },
}

/// Computes the gradient of `channel`'s latent activation with respect to the input pixels.
///
/// `model` must live on an autodiff device; its parameters are frozen here, so no gradient of
/// the weights is kept. Shapes: `image` `[1, 3, height, width]` on that device; returns
/// `[3, height, width]` on the device without autodiff.
pub fn channel_gradient(
    model: &DoubleVae,
    domain: Domain,
    image: Tensor<4>,
    channel: usize,
    target: Target,
) -> Result<Tensor<3>> {
    let [_, _, height, width] = image.dims();
    let model = model.clone().freeze();
    let image = image.require_grad();
    let latent = model.encode(domain, image.clone()); // [1, channels, h, w]
    let [_, channels, rows, columns] = latent.dims();
    if channel >= channels {
        return Err(Error::ChannelOutOfRange { channel, channels });
    }
    let activation = latent.narrow(1, channel, 1);
    let activation = match target {
        Target::Sum => activation.sum(),
        Target::At { x, y } => {
            if x >= columns || y >= rows {
                return Err(Error::PositionOutOfRange {
                    x,
                    y,
                    columns,
                    rows,
                });
            }
            activation.narrow(2, y, 1).narrow(3, x, 1).sum()
        }
    };
    let gradients = activation.backward();
    let gradient = image
        .grad(&gradients)
        .expect("the image requires a gradient and the latent depends on it");
    Ok(gradient.reshape([3, height, width]))
}

/// Renders a saliency map beside its image: left the image, right the image in grey under the
/// gradient magnitude in viridis, normalised to the largest magnitude. Each pixel becomes a
/// `scale`×`scale` block.
///
/// Shapes: `image` and `gradient` `[3, height, width]`, the image in [0, 1].
pub fn saliency_image(image: &Tensor<3>, gradient: &Tensor<3>, scale: u32) -> RgbImage {
    let [_, height, width] = image.dims();
    let pixels = image
        .clone()
        .into_data()
        .try_to_vec::<f32>()
        .expect("images are f32");
    let magnitude = gradient
        .clone()
        .abs()
        .max_dim(0)
        .into_data()
        .try_to_vec::<f32>()
        .expect("gradients are f32");
    let peak = magnitude.iter().copied().fold(0.0f32, f32::max);
    let plane = height * width;
    let (width_u32, height_u32) = (width as u32, height as u32);
    let mut output = RgbImage::new(2 * width_u32 * scale, height_u32 * scale);
    for y in 0..height {
        for x in 0..width {
            let index = y * width + x;
            let rgb = [0, 1, 2].map(|c| pixels[c * plane + index].clamp(0.0, 1.0));
            let grey = 0.299 * rgb[0] + 0.587 * rgb[1] + 0.114 * rgb[2];
            let level = if peak > 0.0 {
                magnitude[index] / peak
            } else {
                0.0
            };
            let heat = ViridisRGB.get_color_normalized(level, 0.0, 1.0);
            // The heat colour weighs more where the gradient is strong, so weak regions keep
            // the image's structure visible.
            let alpha = 0.35 + 0.65 * level;
            let blend =
                |channel: u8| (alpha * f32::from(channel) + (1.0 - alpha) * grey * 255.0) as u8;
            let left = Rgb(rgb.map(|value| (value * 255.0).round() as u8));
            let right = Rgb([blend(heat.0), blend(heat.1), blend(heat.2)]);
            for dy in 0..scale {
                for dx in 0..scale {
                    let (px, py) = (x as u32 * scale + dx, y as u32 * scale + dy);
                    output.put_pixel(px, py, left);
                    output.put_pixel(px + width_u32 * scale, py, right);
                }
            }
        }
    }
    output
}

/// Renders the saliency of latent `channel` for one image (see [`saliency_image`]).
///
/// `pixels` are channel-major `[3, height, width]` in [0, 1], as
/// [`crate::data::load_image`] returns them; `device` is the autodiff device `model` lives on.
#[allow(clippy::too_many_arguments)]
pub fn render_saliency(
    model: &DoubleVae,
    domain: Domain,
    pixels: &[f32],
    (height, width): (usize, usize),
    channel: usize,
    target: Target,
    scale: u32,
    device: &Device,
) -> Result<RgbImage> {
    let image = Tensor::<4>::from_data(
        TensorData::new(pixels.to_vec(), [1, 3, height, width]),
        device,
    );
    let gradient = channel_gradient(model, domain, image.clone(), channel, target)?;
    Ok(saliency_image(
        &image.reshape([3, height, width]),
        &gradient,
        scale,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::default_device;
    use crate::config::{ModelConfig, Normalization};
    use burn::tensor::Distribution;

    fn tiny_model(device: &Device) -> DoubleVae {
        let config = ModelConfig {
            channels: [4, 8, 8],
            private_blocks: 1,
            shared_encoder_blocks: 1,
            shared_decoder_blocks: 1,
            normalization: Normalization::None,
            ..ModelConfig::default()
        };
        DoubleVae::new(&config, device)
    }

    #[test]
    fn gradient_has_image_shape() {
        let device = default_device().autodiff();
        let model = tiny_model(&device);
        let image = Tensor::<4>::random([1, 3, 32, 48], Distribution::Uniform(0.0, 1.0), &device);
        let gradient = channel_gradient(&model, Domain::B, image, 3, Target::Sum).unwrap();
        assert_eq!(gradient.dims(), [3, 32, 48]);
        let total = gradient.abs().sum().into_scalar::<f32>();
        assert!(total > 0.0, "the summed activation depends on the pixels");
    }

    #[test]
    fn gradient_is_zero_outside_receptive_field() {
        let device = default_device().autodiff();
        let model = tiny_model(&device);
        let image = Tensor::<4>::random([1, 3, 96, 96], Distribution::Uniform(0.0, 1.0), &device);
        // Walking back from latent cell (0, 0): the four 3×3 convs reach latent cells 0–4, the
        // second 4×4 stride-2 conv half-resolution cells 0–10, the first one input pixels 0–22
        // and the 7×7 conv pixels 0–25. Nothing from pixel 32 on can change the activation.
        let gradient =
            channel_gradient(&model, Domain::A, image, 0, Target::At { x: 0, y: 0 }).unwrap();
        let seen = gradient.clone().slice([0..3, 0..32, 0..32]).abs().sum();
        assert!(seen.into_scalar::<f32>() > 0.0);
        let beyond_rows = gradient.clone().slice([0..3, 32..96, 0..96]).abs().sum();
        let beyond_columns = gradient.slice([0..3, 0..96, 32..96]).abs().sum();
        assert_eq!(beyond_rows.into_scalar::<f32>(), 0.0);
        assert_eq!(beyond_columns.into_scalar::<f32>(), 0.0);
    }

    #[test]
    fn out_of_range_channel_and_position_rejected() {
        let device = default_device().autodiff();
        let model = tiny_model(&device);
        let image = || Tensor::<4>::zeros([1, 3, 16, 16], &device);
        let error = channel_gradient(&model, Domain::A, image(), 8, Target::Sum).unwrap_err();
        assert!(error.to_string().contains("channel 8"), "{error}");
        let error =
            channel_gradient(&model, Domain::A, image(), 0, Target::At { x: 4, y: 0 }).unwrap_err();
        assert!(error.to_string().contains("4×4"), "{error}");
    }

    #[test]
    fn rendering_doubles_width_and_scales() {
        let device = default_device();
        let image = Tensor::<3>::ones([3, 4, 5], &device).mul_scalar(0.5);
        let mut gradient = vec![0.0f32; 3 * 4 * 5];
        gradient[7] = -2.0; // pixel (x 2, y 1) of the red plane
        let gradient = Tensor::<3>::from_data(TensorData::new(gradient, [3, 4, 5]), &device);
        let output = saliency_image(&image, &gradient, 3);
        assert_eq!(output.dimensions(), (30, 12));
        assert_eq!(output.get_pixel(0, 0), &Rgb([128, 128, 128]));
        // The strongest pixel is fully the top of viridis (yellow).
        let hot = output.get_pixel(15 + 2 * 3, 3);
        assert!(hot.0[0] > 200 && hot.0[1] > 200 && hot.0[2] < 80, "{hot:?}");
    }
}
