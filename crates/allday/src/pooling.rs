//! Pooling of a convolutional feature map into a place descriptor.
//!
//! Global poolings reduce `[n, channels, h, w]` to one L2-normalised vector per image, compared
//! by cosine distance. The spatial descriptor keeps the grid and normalises each position's
//! channel vector, as allday's latent does ([`crate::retrieval::per_position_descriptors`]).

use std::fmt;
use std::str::FromStr;

use burn::prelude::*;

/// Floor under activations before the GeM power, so that the p-th root of a zero mean is
/// defined and its gradient finite.
const GEM_EPSILON: f32 = 1e-6;
/// Floor under vector norms, against division by zero.
const NORM_EPSILON: f32 = 1e-12;
/// GeM exponent of the reference baselines (Radenović et al. 2018 learn about 3).
pub const GEM_P: f32 = 3.0;

/// How a feature map becomes a descriptor.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Pooling {
    /// Maximum over positions per channel (MAC).
    Max,
    /// Mean over positions per channel (global average pooling).
    Mean,
    /// Generalised mean: `(mean over positions of x^p)^(1/p)`; p = 1 is the mean and large
    /// p tends to the maximum.
    Gem { p: f32 },
    /// No pooling: the L2-normalised channel vector of every position.
    Spatial,
}

impl fmt::Display for Pooling {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Pooling::Max => write!(f, "max"),
            Pooling::Mean => write!(f, "GAP"),
            Pooling::Gem { p } => write!(f, "GeM p={p}"),
            Pooling::Spatial => write!(f, "spatial"),
        }
    }
}

impl FromStr for Pooling {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text {
            "max" => Ok(Pooling::Max),
            "mean" | "gap" => Ok(Pooling::Mean),
            "gem" => Ok(Pooling::Gem { p: GEM_P }),
            "spatial" => Ok(Pooling::Spatial),
            other => Err(format!(
                "unknown pooling `{other}`: expected gem, mean, max or spatial"
            )),
        }
    }
}

/// Scales every row to unit L2 norm: `[n, dims]` → `[n, dims]`.
pub fn l2_normalise(vectors: Tensor<2>) -> Tensor<2> {
    let norms = vectors
        .clone()
        .square()
        .sum_dim(1)
        .sqrt()
        .clamp_min(NORM_EPSILON);
    vectors / norms
}

/// Pools a feature map globally and L2-normalises the result.
///
/// `[n, channels, h, w]` → `[n, channels]`. `pooling` must not be [`Pooling::Spatial`]; use
/// [`crate::retrieval::per_position_descriptors`] for that.
pub fn global_pool(map: Tensor<4>, pooling: Pooling) -> Tensor<2> {
    let [n, channels, height, width] = map.dims();
    let flat = map.reshape([n, channels, height * width]);
    let pooled = match pooling {
        Pooling::Max => flat.max_dim(2),
        Pooling::Mean => flat.mean_dim(2),
        Pooling::Gem { p } => flat
            .clamp_min(GEM_EPSILON)
            .powf_scalar(p)
            .mean_dim(2)
            .powf_scalar(1.0 / p),
        Pooling::Spatial => panic!("global_pool called with spatial pooling"),
    };
    l2_normalise(pooled.reshape([n, channels]))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::default_device;

    /// Two images, two channels, a 1×2 grid: channel 0 = (1, 3), channel 1 = (2, 2) for the
    /// first image; the second image is the first times 10.
    fn map() -> Tensor<4> {
        Tensor::from_data(
            TensorData::new(
                vec![1.0f32, 3.0, 2.0, 2.0, 10.0, 30.0, 20.0, 20.0],
                [2, 2, 1, 2],
            ),
            &default_device(),
        )
    }

    fn values(tensor: Tensor<2>) -> Vec<f32> {
        tensor.into_data().try_to_vec::<f32>().unwrap()
    }

    fn assert_close(actual: &[f32], expected: &[f32]) {
        for (a, e) in actual.iter().zip(expected) {
            assert!((a - e).abs() < 1e-5, "{actual:?} vs {expected:?}");
        }
    }

    fn unit(x: f32, y: f32) -> [f32; 2] {
        let norm = (x * x + y * y).sqrt();
        [x / norm, y / norm]
    }

    #[test]
    fn mean_pooling_by_hand() {
        // Means (2, 2) → (1/√2, 1/√2) for both images: scale does not matter after L2.
        let pooled = values(global_pool(map(), Pooling::Mean));
        let [a, b] = unit(2.0, 2.0);
        assert_close(&pooled, &[a, b, a, b]);
    }

    #[test]
    fn max_pooling_by_hand() {
        let pooled = values(global_pool(map(), Pooling::Max));
        let [a, b] = unit(3.0, 2.0);
        assert_close(&pooled, &[a, b, a, b]);
    }

    #[test]
    fn gem_pooling_by_hand() {
        // Channel 0: ((1³ + 3³) / 2)^(1/3) = 14^(1/3); channel 1: 2.
        let pooled = values(global_pool(map(), Pooling::Gem { p: 3.0 }));
        let [a, b] = unit(14f32.cbrt(), 2.0);
        assert_close(&pooled, &[a, b, a, b]);
        // GeM lies between the mean (2) and the maximum (3) on channel 0.
        assert!(14f32.cbrt() > 2.0 && 14f32.cbrt() < 3.0);
    }

    #[test]
    fn gem_with_p_one_is_the_mean() {
        let gem = values(global_pool(map(), Pooling::Gem { p: 1.0 }));
        let mean = values(global_pool(map(), Pooling::Mean));
        assert_close(&gem, &mean);
    }

    #[test]
    fn pooling_names_parse() {
        assert_eq!("gem".parse::<Pooling>().unwrap(), Pooling::Gem { p: 3.0 });
        assert_eq!("spatial".parse::<Pooling>().unwrap(), Pooling::Spatial);
        let error = "median".parse::<Pooling>().unwrap_err();
        assert!(error.contains("median"), "{error}");
    }
}
