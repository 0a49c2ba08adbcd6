//! The raw-pixel baseline: greyscale thumbnails compared by cosine distance.
//!
//! Each image is converted to grey, resized (bilinear, aspect ratio not kept) to 32×24 and
//! standardised to zero mean and unit standard deviation over the whole thumbnail.

use burn::prelude::*;
use image::DynamicImage;
use image::imageops::FilterType;
use rayon::prelude::*;

use crate::data::{ImageEntry, decode_image};
use crate::error::Result;

pub const PIXEL_WIDTH: u32 = 32;
pub const PIXEL_HEIGHT: u32 = 24;

/// Computes the standardised 32×24 grey thumbnail of one image file, row-major.
pub fn pixel_descriptor(path: &std::path::Path, max_pixels: u64) -> Result<Vec<f32>> {
    Ok(thumbnail_descriptor(&decode_image(path, max_pixels)?))
}

/// Computes the standardised 32×24 grey thumbnail of a decoded image, row-major.
pub fn thumbnail_descriptor(image: &DynamicImage) -> Vec<f32> {
    let grey = image::imageops::resize(
        &image.to_luma8(),
        PIXEL_WIDTH,
        PIXEL_HEIGHT,
        FilterType::Triangle,
    );
    let values: Vec<f32> = grey.pixels().map(|pixel| f32::from(pixel[0])).collect();
    let count = values.len() as f32;
    let mean = values.iter().sum::<f32>() / count;
    let variance = values
        .iter()
        .map(|value| (value - mean).powi(2))
        .sum::<f32>()
        / count;
    // A uniform image has no contrast to standardise; it keeps zeros.
    let deviation = variance.sqrt().max(1e-6);
    values
        .iter()
        .map(|value| (value - mean) / deviation)
        .collect()
}

/// Pixel descriptors of several images, decoded in parallel.
///
/// Returns `[images, 32·24]`.
pub fn pixel_descriptors(
    entries: &[ImageEntry],
    max_pixels: u64,
    device: &Device,
) -> Result<Tensor<2>> {
    let rows: Vec<Vec<f32>> = entries
        .par_iter()
        .map(|entry| pixel_descriptor(&entry.path, max_pixels))
        .collect::<Result<_>>()?;
    let dims = (PIXEL_WIDTH * PIXEL_HEIGHT) as usize;
    Ok(Tensor::from_data(
        TensorData::new(rows.concat(), [entries.len(), dims]),
        device,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn descriptor_is_standardised() {
        let folder = tempfile::tempdir().unwrap();
        let path = folder.path().join("ramp.png");
        image::RgbImage::from_fn(64, 48, |x, y| {
            image::Rgb([(x * 4) as u8, (y * 5) as u8, 30])
        })
        .save(&path)
        .unwrap();
        let descriptor = pixel_descriptor(&path, crate::data::DEFAULT_MAX_IMAGE_PIXELS).unwrap();
        assert_eq!(descriptor.len(), 32 * 24);
        let mean = descriptor.iter().sum::<f32>() / descriptor.len() as f32;
        let variance = descriptor
            .iter()
            .map(|value| (value - mean).powi(2))
            .sum::<f32>()
            / descriptor.len() as f32;
        assert!(mean.abs() < 1e-4, "{mean}");
        assert!((variance - 1.0).abs() < 1e-3, "{variance}");
    }
}
