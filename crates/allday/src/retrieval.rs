//! Descriptors and distances for place retrieval.
//!
//! The latent descriptor keeps the spatial layout: at every position of the latent grid the
//! channel vector is L2-normalised, and two images are compared by the mean over positions of
//! the L2 distance between their vectors. Global descriptors (one vector per image, as for the
//! raw-pixel baseline) are compared by cosine distance. Both are computed as blocked matrix
//! products, so the cost is a few GEMMs rather than a loop over pairs.

use burn::prelude::*;

use crate::data::ImageSet;
use crate::model::{Domain, DoubleVae};

/// Small constant under the square root and in norms, against division by zero.
const EPSILON: f32 = 1e-12;
/// Queries compared per block; bounds the `[positions, block, database]` intermediate.
const QUERY_BLOCK: usize = 256;

/// Distances between every query and every database image, row-major `[queries, database]`.
#[derive(Debug, Clone, PartialEq)]
pub struct DistanceMatrix {
    pub queries: usize,
    pub database: usize,
    pub values: Vec<f32>,
}

impl DistanceMatrix {
    /// Returns the distances of one query to every database image.
    pub fn row(&self, query: usize) -> &[f32] {
        &self.values[query * self.database..(query + 1) * self.database]
    }

    /// Database indices of one query, nearest first. Ties keep database order.
    pub fn ranking(&self, query: usize) -> Vec<usize> {
        let row = self.row(query);
        let mut order: Vec<usize> = (0..self.database).collect();
        order.sort_by(|&a, &b| row[a].total_cmp(&row[b]));
        order
    }
}

/// Normalises every position's channel vector to unit L2 norm.
///
/// `[n, channels, h, w]` → `[n, h·w, channels]`.
pub fn per_position_descriptors(latent: Tensor<4>) -> Tensor<3> {
    let [n, channels, height, width] = latent.dims();
    let vectors = latent
        .reshape([n, channels, height * width])
        .swap_dims(1, 2); // [n, positions, channels]
    let norms = vectors
        .clone()
        .square()
        .sum_dim(2)
        .sqrt()
        .clamp_min(EPSILON); // [n, positions, 1]
    vectors / norms
}

/// Encodes a set of images of `domain` to per-position descriptors, in batches of
/// `batch_size`.
///
/// Returns `[images, positions, latent channels]`.
pub fn encode_descriptors(
    model: &DoubleVae,
    domain: Domain,
    images: &ImageSet,
    batch_size: usize,
    device: &Device,
) -> Tensor<3> {
    let model = model.valid();
    let indices: Vec<usize> = (0..images.len()).collect();
    let parts: Vec<Tensor<3>> = indices
        .chunks(batch_size.max(1))
        .map(|chunk| per_position_descriptors(model.encode(domain, images.batch(chunk, device))))
        .collect();
    Tensor::cat(parts, 0)
}

/// Mean over positions of the L2 distance between channel vectors.
///
/// Shapes: `queries` `[q, positions, channels]`, `database` `[d, positions, channels]`,
/// usually normalised by [`per_position_descriptors`] and possibly scaled per channel.
pub fn per_position_distances(queries: Tensor<3>, database: Tensor<3>) -> DistanceMatrix {
    let [query_count, positions, _] = queries.dims();
    let [database_count, database_positions, _] = database.dims();
    assert_eq!(
        positions, database_positions,
        "query and database latents must have the same grid size"
    );
    let database_norms = database.clone().square().sum_dim(2).permute([1, 2, 0]); // [positions, 1, d]
    let database = database.permute([1, 2, 0]); // [positions, channels, d]
    let mut values = Vec::with_capacity(query_count * database_count);
    for start in (0..query_count).step_by(QUERY_BLOCK) {
        let end = (start + QUERY_BLOCK).min(query_count);
        let block = queries
            .clone()
            .narrow(0, start, end - start)
            .swap_dims(0, 1); // [positions, b, channels]
        let block_norms = block.clone().square().sum_dim(2); // [positions, b, 1]
        let dots = block.matmul(database.clone()); // [positions, b, d]
        // |u − v|² = |u|² + |v|² − 2 u·v, which rounding can make slightly negative.
        let distances = dots
            .mul_scalar(-2.0)
            .add(block_norms)
            .add(database_norms.clone())
            .clamp_min(0.0)
            .add_scalar(EPSILON)
            .sqrt()
            .mean_dim(0); // [1, b, d]
        values.extend(
            distances
                .into_data()
                .try_to_vec::<f32>()
                .expect("distances are f32"),
        );
    }
    DistanceMatrix {
        queries: query_count,
        database: database_count,
        values,
    }
}

/// Computes [`per_position_distances`] under the best horizontal offset between the two
/// grids. For each offset s from −`max_shift` to `max_shift` columns, query column x + s is
/// compared with database column x over the columns where both exist. The smallest of these
/// mean distances is kept. This tolerates a sideways change of viewpoint, such as the other side of the same
/// path. `max_shift` 0 is [`per_position_distances`]; it is capped at `width − 1`.
///
/// Shapes: `queries` `[q, positions, channels]`, `database` `[d, positions, channels]`, with
/// positions row by row over a grid `width` wide.
pub fn shifted_per_position_distances(
    queries: Tensor<3>,
    database: Tensor<3>,
    width: usize,
    max_shift: usize,
) -> DistanceMatrix {
    if max_shift == 0 {
        return per_position_distances(queries, database);
    }
    let [query_count, positions, channels] = queries.dims();
    let [database_count, ..] = database.dims();
    assert!(
        width > 0 && positions.is_multiple_of(width),
        "{positions} positions do not form rows of {width}"
    );
    let height = positions / width;
    let max_shift = max_shift.min(width - 1) as isize;

    let queries = queries.reshape([query_count, height, width, channels]);
    let database = database.reshape([database_count, height, width, channels]);
    let columns = |grid: &Tensor<4>, start: usize, overlap: usize| {
        let count = grid.dims()[0];
        grid.clone()
            .narrow(2, start, overlap)
            .reshape([count, height * overlap, channels])
    };

    let mut best: Option<DistanceMatrix> = None;
    for shift in -max_shift..=max_shift {
        let overlap = width - shift.unsigned_abs();
        let (query_start, database_start) = if shift >= 0 {
            (shift as usize, 0)
        } else {
            (0, shift.unsigned_abs())
        };
        let distances = per_position_distances(
            columns(&queries, query_start, overlap),
            columns(&database, database_start, overlap),
        );
        best = Some(match best {
            None => distances,
            Some(mut best) => {
                for (value, candidate) in best.values.iter_mut().zip(distances.values) {
                    *value = value.min(candidate);
                }
                best
            }
        });
    }
    best.expect("at least the zero offset is measured")
}

/// Cosine distance, 1 − cos, between global descriptors.
///
/// Shapes: `queries` `[q, dims]`, `database` `[d, dims]`; they need not be normalised.
pub fn cosine_distances(queries: Tensor<2>, database: Tensor<2>) -> DistanceMatrix {
    let normalise = |vectors: Tensor<2>| {
        let norms = vectors
            .clone()
            .square()
            .sum_dim(1)
            .sqrt()
            .clamp_min(EPSILON);
        vectors / norms
    };
    let [query_count, _] = queries.dims();
    let [database_count, _] = database.dims();
    let similarities = normalise(queries).matmul(normalise(database).transpose());
    let values = similarities
        .neg()
        .add_scalar(1.0)
        .into_data()
        .try_to_vec::<f32>()
        .expect("distances are f32");
    DistanceMatrix {
        queries: query_count,
        database: database_count,
        values,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::default_device;

    #[test]
    fn per_position_distance_by_hand() {
        let device = default_device();
        // One query and two database images, 2 channels on a 1×2 grid: [n, c, h, w].
        // Query positions: (1, 0) and (0, 2) → unit vectors (1, 0), (0, 1).
        let query = Tensor::<4>::from_data(
            TensorData::new(vec![1.0f32, 0.0, 0.0, 2.0], [1, 2, 1, 2]),
            &device,
        );
        // Database 0 equals the query up to scale; database 1 has (0, 1), (1, 0) swapped.
        let database = Tensor::<4>::from_data(
            TensorData::new(
                vec![3.0f32, 0.0, 0.0, 0.5, 0.0, 1.0, 1.0, 0.0],
                [2, 2, 1, 2],
            ),
            &device,
        );
        let distances = per_position_distances(
            per_position_descriptors(query),
            per_position_descriptors(database),
        );
        assert_eq!((distances.queries, distances.database), (1, 2));
        assert!(distances.values[0].abs() < 1e-4, "{:?}", distances.values);
        // Orthogonal unit vectors at both positions: √2 each.
        assert!(
            (distances.values[1] - 2f32.sqrt()).abs() < 1e-4,
            "{:?}",
            distances.values
        );
        assert_eq!(distances.ranking(0), [0, 1]);
    }

    #[test]
    fn shifted_distance_finds_the_offset_by_hand() {
        let device = default_device();
        // Unit vectors in 2 channels on a 1×3 grid, laid out `[n, positions, channels]`.
        let (a, b, c, d) = ([1.0f32, 0.0], [0.0, 1.0], [0.6, 0.8], [0.8, 0.6]);
        let grid = |columns: [[f32; 2]; 3]| {
            Tensor::<3>::from_data(TensorData::new(columns.concat(), [1, 3, 2]), &device)
        };
        // The database image shows the query's scene one column to the left.
        let query = grid([a, b, c]);
        let database = grid([b, c, d]);
        let distance =
            |u: [f32; 2], v: [f32; 2]| ((u[0] - v[0]).powi(2) + (u[1] - v[1]).powi(2)).sqrt();

        let aligned = shifted_per_position_distances(query.clone(), database.clone(), 3, 0);
        let expected = (distance(a, b) + distance(b, c) + distance(c, d)) / 3.0;
        assert!(
            (aligned.values[0] - expected).abs() < 1e-4,
            "{:?}",
            aligned.values
        );

        // Offset +1 compares query columns 1, 2 (b, c) with database columns 0, 1 (b, c).
        let shifted = shifted_per_position_distances(query.clone(), database.clone(), 3, 1);
        assert!(shifted.values[0] < 1e-3, "{:?}", shifted.values);

        // Offset −1 alone would compare (a, b) with (c, d); the minimum keeps the better +1.
        let wide = shifted_per_position_distances(query, database, 3, 5);
        assert_eq!(
            wide.values, shifted.values,
            "offsets are capped at width − 1"
        );
    }

    #[test]
    fn cosine_distance_by_hand() {
        let device = default_device();
        let queries = Tensor::<2>::from_data(TensorData::new(vec![1.0f32, 0.0], [1, 2]), &device);
        let database = Tensor::<2>::from_data(
            TensorData::new(vec![0.0f32, 5.0, 2.0, 2.0, -1.0, 0.0], [3, 2]),
            &device,
        );
        let distances = cosine_distances(queries, database);
        let expected = [1.0, 1.0 - 0.5f32.sqrt(), 2.0];
        for (value, expected) in distances.values.iter().zip(expected) {
            assert!((value - expected).abs() < 1e-5, "{value} vs {expected}");
        }
        assert_eq!(distances.ranking(0), [1, 0, 2]);
    }
}
