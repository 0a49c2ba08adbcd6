//! Day↔night translation images: each domain's image beside its reconstruction, its cycle
//! reconstruction and its translation to the other domain.

use std::path::Path;

use burn::prelude::*;
use image::{Rgb, RgbImage};

use crate::error::{Error, Result};
use crate::model::{Domain, DoubleVae};

/// White space between tiles, in pixels.
const GUTTER: u32 = 4;

/// Converts one image `[3, h, w]` with values in [0, 1] to 8-bit RGB.
fn to_rgb(image: Tensor<3>) -> RgbImage {
    let [_, height, width] = image.dims();
    let values = image
        .into_data()
        .try_to_vec::<f32>()
        .expect("images are f32");
    let plane = height * width;
    RgbImage::from_fn(width as u32, height as u32, |x, y| {
        let offset = y as usize * width + x as usize;
        let channel = |c: usize| (values[c * plane + offset].clamp(0.0, 1.0) * 255.0).round() as u8;
        Rgb([channel(0), channel(1), channel(2)])
    })
}

/// Computes the four tiles of one row: original, reconstruction, cycle reconstruction and
/// translation.
///
/// `image`: `[1, 3, h, w]`.
fn row(model: &DoubleVae, domain: Domain, image: Tensor<4>) -> [Tensor<4>; 4] {
    let latent = model.encode(domain, image.clone());
    let shared = model.decode_shared(latent);
    let reconstruction = model.decode_private(domain, shared.clone());
    let translation = model.decode_private(domain.other(), shared);
    let cycle = model.translate(domain.other(), translation.clone());
    [image, reconstruction, cycle, translation]
}

/// Builds the translation grid: row 1 a domain-A (day) image, row 2 a domain-B (night) image;
/// columns original, reconstruction, cycle reconstruction (to the other domain and back),
/// translation to the other domain. Tiles are magnified by `scale` (nearest neighbour).
///
/// `image_a`, `image_b`: `[1, 3, h, w]`.
pub fn translation_grid(
    model: &DoubleVae,
    image_a: Tensor<4>,
    image_b: Tensor<4>,
    scale: u32,
) -> RgbImage {
    let model = model.valid();
    let rows = [
        row(&model, Domain::A, image_a),
        row(&model, Domain::B, image_b),
    ];
    let [_, _, height, width] = rows[0][0].dims();
    let tile_width = width as u32 * scale;
    let tile_height = height as u32 * scale;
    let mut grid = RgbImage::from_pixel(
        4 * tile_width + 5 * GUTTER,
        2 * tile_height + 3 * GUTTER,
        Rgb([255, 255, 255]),
    );
    for (row_index, tiles) in rows.into_iter().enumerate() {
        for (column, tile) in tiles.into_iter().enumerate() {
            let tile = to_rgb(tile.squeeze_dim::<3>(0));
            let tile = image::imageops::resize(
                &tile,
                tile_width,
                tile_height,
                image::imageops::FilterType::Nearest,
            );
            let x = GUTTER + column as u32 * (tile_width + GUTTER);
            let y = GUTTER + row_index as u32 * (tile_height + GUTTER);
            image::imageops::replace(&mut grid, &tile, i64::from(x), i64::from(y));
        }
    }
    grid
}

/// Writes a PNG through a temporary file, so an interrupted write leaves no partial image.
pub fn save_png(image: &RgbImage, path: &Path) -> Result<()> {
    let temporary = crate::io::temporary_path(path);
    let result = image
        .save_with_format(&temporary, image::ImageFormat::Png)
        .map_err(|source| Error::WritePng {
            path: path.to_path_buf(),
            source,
        })
        .and_then(|_| std::fs::rename(&temporary, path).map_err(|source| Error::io(path, source)));
    if result.is_err() {
        let _ = std::fs::remove_file(&temporary);
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::default_device;
    use crate::config::ModelConfig;

    #[test]
    fn grid_has_two_rows_of_four_tiles() {
        let device = default_device();
        let config = ModelConfig {
            channels: [4, 8, 8],
            private_blocks: 1,
            shared_encoder_blocks: 1,
            shared_decoder_blocks: 1,
            normalization: crate::config::Normalization::Instance,
            ..ModelConfig::default()
        };
        let model = DoubleVae::new(&config, &device);
        let image = || Tensor::<4>::ones([1, 3, 8, 12], &device).mul_scalar(0.5);
        let grid = translation_grid(&model, image(), image(), 2);
        assert_eq!(
            grid.dimensions(),
            (4 * 24 + 5 * GUTTER, 2 * 16 + 3 * GUTTER)
        );
        // The original tile of row 1 is mid grey.
        assert_eq!(grid.get_pixel(GUTTER, GUTTER), &Rgb([128, 128, 128]));
    }
}
