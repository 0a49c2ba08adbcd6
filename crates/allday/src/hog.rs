//! The HOG baseline (Dalal and Triggs 2005) as the evaluation protocol defines it: greyscale
//! 128×96, 9 unsigned orientations, 16-pixel cells, blocks of 2×2 cells, cosine distance.
//!
//! The computation follows scikit-image's `hog` with its defaults: centred differences for
//! the gradient (zero on the border rows and columns), orientation `atan2(dy, dx)` folded to
//! [0°, 180°), each pixel's magnitude added to the one bin its orientation falls in, cell
//! histograms divided by the pixels per cell, and L2-Hys normalisation of every block
//! (overlapping, one cell apart).

use std::path::Path;

use burn::prelude::*;
use image::imageops::FilterType;
use rayon::prelude::*;

use crate::data::{ImageEntry, decode_image};
use crate::error::Result;

pub const HOG_WIDTH: usize = 128;
pub const HOG_HEIGHT: usize = 96;
pub const ORIENTATIONS: usize = 9;
/// Cell side in pixels.
pub const CELL: usize = 16;
/// Block side in cells.
pub const BLOCK: usize = 2;
/// Block values are clipped here between the two L2 normalisations of L2-Hys.
const HYS_CLIP: f32 = 0.2;
/// Added (squared) under the block norm, as scikit-image does.
const BLOCK_EPSILON: f32 = 1e-5;

/// Returns the length of the descriptor of a `width`×`height` image.
pub fn descriptor_len(width: usize, height: usize) -> usize {
    let blocks_x = (width / CELL + 1).saturating_sub(BLOCK);
    let blocks_y = (height / CELL + 1).saturating_sub(BLOCK);
    blocks_x * blocks_y * BLOCK * BLOCK * ORIENTATIONS
}

/// The orientation histogram of every cell, `[cells_y][cells_x][ORIENTATIONS]` flattened.
///
/// `grey` is row-major `height × width`. Pixels beyond the last whole cell are ignored.
pub fn cell_histograms(grey: &[f32], width: usize, height: usize) -> Vec<f32> {
    assert_eq!(grey.len(), width * height, "grey image size");
    let cells_x = width / CELL;
    let cells_y = height / CELL;
    let mut histograms = vec![0.0f32; cells_x * cells_y * ORIENTATIONS];
    let bin_width = 180.0 / ORIENTATIONS as f32;
    for y in 0..cells_y * CELL {
        for x in 0..cells_x * CELL {
            let at = |x: usize, y: usize| grey[y * width + x];
            let dx = if x == 0 || x + 1 == width {
                0.0
            } else {
                at(x + 1, y) - at(x - 1, y)
            };
            let dy = if y == 0 || y + 1 == height {
                0.0
            } else {
                at(x, y + 1) - at(x, y - 1)
            };
            let magnitude = (dx * dx + dy * dy).sqrt();
            if magnitude == 0.0 {
                continue;
            }
            // Unsigned orientation: a gradient and its opposite share a bin.
            let orientation = dy.atan2(dx).to_degrees().rem_euclid(180.0);
            let bin = ((orientation / bin_width) as usize).min(ORIENTATIONS - 1);
            let cell = (y / CELL) * cells_x + x / CELL;
            histograms[cell * ORIENTATIONS + bin] += magnitude;
        }
    }
    let pixels_per_cell = (CELL * CELL) as f32;
    for value in &mut histograms {
        *value /= pixels_per_cell;
    }
    histograms
}

/// Scales `values` to unit L2 norm (with [`BLOCK_EPSILON`] under the root).
fn normalise_block(values: &mut [f32]) {
    let norm = (values.iter().map(|v| v * v).sum::<f32>() + BLOCK_EPSILON * BLOCK_EPSILON).sqrt();
    for value in values.iter_mut() {
        *value /= norm;
    }
}

/// Computes the HOG descriptor of a row-major grey image of any size, blocks in row-major order.
pub fn hog(grey: &[f32], width: usize, height: usize) -> Vec<f32> {
    let histograms = cell_histograms(grey, width, height);
    let cells_x = width / CELL;
    let cells_y = height / CELL;
    let mut descriptor = Vec::with_capacity(descriptor_len(width, height));
    for block_y in 0..(cells_y + 1).saturating_sub(BLOCK) {
        for block_x in 0..(cells_x + 1).saturating_sub(BLOCK) {
            let mut block = Vec::with_capacity(BLOCK * BLOCK * ORIENTATIONS);
            for cell_y in block_y..block_y + BLOCK {
                for cell_x in block_x..block_x + BLOCK {
                    let start = (cell_y * cells_x + cell_x) * ORIENTATIONS;
                    block.extend_from_slice(&histograms[start..start + ORIENTATIONS]);
                }
            }
            // L2-Hys: normalise, clip large values, normalise again.
            normalise_block(&mut block);
            for value in &mut block {
                *value = value.min(HYS_CLIP);
            }
            normalise_block(&mut block);
            descriptor.extend(block);
        }
    }
    descriptor
}

/// Computes the HOG descriptor of an image file: grey (Rec. 709 luma), bilinear resize to 128×96.
pub fn hog_descriptor(path: &Path, max_pixels: u64) -> Result<Vec<f32>> {
    let image = decode_image(path, max_pixels)?;
    let grey = image::imageops::resize(
        &image.to_luma32f(),
        HOG_WIDTH as u32,
        HOG_HEIGHT as u32,
        FilterType::Triangle,
    );
    let values: Vec<f32> = grey.pixels().map(|pixel| pixel[0]).collect();
    Ok(hog(&values, HOG_WIDTH, HOG_HEIGHT))
}

/// HOG descriptors of several images, computed in parallel: `[images, 1260]`.
pub fn hog_descriptors(
    entries: &[ImageEntry],
    max_pixels: u64,
    device: &Device,
) -> Result<Tensor<2>> {
    let rows: Vec<Vec<f32>> = entries
        .par_iter()
        .map(|entry| hog_descriptor(&entry.path, max_pixels))
        .collect::<Result<_>>()?;
    let dims = descriptor_len(HOG_WIDTH, HOG_HEIGHT);
    Ok(Tensor::from_data(
        TensorData::new(rows.concat(), [entries.len(), dims]),
        device,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A 32×32 image, dark on the left half and bright on the right: one vertical edge.
    fn vertical_edge() -> Vec<f32> {
        (0..32 * 32)
            .map(|i| if i % 32 < 16 { 0.0 } else { 1.0 })
            .collect()
    }

    fn transpose(grey: &[f32], side: usize) -> Vec<f32> {
        (0..side * side)
            .map(|i| grey[(i % side) * side + i / side])
            .collect()
    }

    #[test]
    fn vertical_edge_falls_in_the_horizontal_gradient_bin() {
        let histograms = cell_histograms(&vertical_edge(), 32, 32);
        assert_eq!(histograms.len(), 2 * 2 * ORIENTATIONS);
        // The edge lies between columns 15 and 16: the centred difference is 1 on column 15
        // (last of the left cells) and column 16 (first of the right cells), on all 16 rows
        // of each cell, at 0° (bin 0); a cell's histogram is divided by its 256 pixels.
        for cell in 0..4 {
            let bins = &histograms[cell * ORIENTATIONS..(cell + 1) * ORIENTATIONS];
            assert!(
                (bins[0] - 16.0 / 256.0).abs() < 1e-6,
                "cell {cell}: {bins:?}"
            );
            assert!(bins[1..].iter().all(|&v| v == 0.0), "cell {cell}: {bins:?}");
        }
    }

    #[test]
    fn horizontal_edge_falls_in_the_vertical_gradient_bin() {
        let histograms = cell_histograms(&transpose(&vertical_edge(), 32), 32, 32);
        // 90° lies in bin 4 (80° to 100°).
        for cell in 0..4 {
            let bins = &histograms[cell * ORIENTATIONS..(cell + 1) * ORIENTATIONS];
            let (strongest, _) = bins
                .iter()
                .enumerate()
                .max_by(|a, b| a.1.total_cmp(b.1))
                .unwrap();
            assert_eq!(strongest, 4, "cell {cell}: {bins:?}");
            assert_eq!(bins.iter().filter(|&&v| v > 0.0).count(), 1);
        }
    }

    #[test]
    fn descriptor_has_protocol_length_and_unit_blocks() {
        let grey: Vec<f32> = (0..HOG_WIDTH * HOG_HEIGHT)
            .map(|i| ((i % HOG_WIDTH) as f32 * 0.3).sin() + ((i / HOG_WIDTH) as f32 * 0.2).cos())
            .collect();
        let descriptor = hog(&grey, HOG_WIDTH, HOG_HEIGHT);
        // 7 × 5 blocks of 2 × 2 cells × 9 bins.
        assert_eq!(descriptor.len(), 1260);
        assert_eq!(descriptor.len(), descriptor_len(HOG_WIDTH, HOG_HEIGHT));
        for block in descriptor.chunks(BLOCK * BLOCK * ORIENTATIONS) {
            let norm = block.iter().map(|v| v * v).sum::<f32>().sqrt();
            assert!((norm - 1.0).abs() < 1e-3, "{norm}");
            assert!(block.iter().all(|&v| v >= 0.0));
        }
    }

    #[test]
    fn uniform_image_has_a_zero_descriptor() {
        let descriptor = hog(&vec![0.5; 64 * 64], 64, 64);
        assert_eq!(descriptor.len(), descriptor_len(64, 64));
        assert!(descriptor.iter().all(|&v| v == 0.0));
    }
}
