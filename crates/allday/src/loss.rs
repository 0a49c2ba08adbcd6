//! UNIT's loss terms for the double VAE.

use burn::prelude::*;

use crate::config::LossWeights;

/// Mean absolute difference over all elements.
pub fn l1(prediction: Tensor<4>, target: Tensor<4>) -> Tensor<1> {
    (prediction - target).abs().mean()
}

/// KL divergence of UNIT's simplified VAE: with unit variance, the KL term of N(μ, 1) against
/// N(0, 1) reduces (up to constants and a factor 1/2) to the mean of μ².
pub fn kl(mean: Tensor<4>) -> Tensor<1> {
    mean.square().mean()
}

/// The four loss terms of one step, each summed over both domains, and their weighted total.
#[derive(Debug, Clone)]
pub struct LossTerms {
    /// `[1]` L1 between each image and its reconstruction through its own domain.
    pub reconstruction: Tensor<1>,
    /// `[1]` mean(μ²) of both domains' latents.
    pub kl: Tensor<1>,
    /// `[1]` L1 between each image and its translation to the other domain and back.
    pub cycle: Tensor<1>,
    /// `[1]` mean(μ²) of the translated images' latents.
    pub cycle_kl: Tensor<1>,
}

impl LossTerms {
    /// Computes the weighted sum that training minimises.
    pub fn total(&self, weights: &LossWeights) -> Tensor<1> {
        self.reconstruction
            .clone()
            .mul_scalar(weights.reconstruction)
            + self.kl.clone().mul_scalar(weights.kl)
            + self.cycle.clone().mul_scalar(weights.cycle)
            + self.cycle_kl.clone().mul_scalar(weights.cycle_kl)
    }

    /// Reads the terms back to the host, for logging.
    pub fn values(&self, weights: &LossWeights) -> LossValues {
        let value = |tensor: &Tensor<1>| f64::from(tensor.clone().into_scalar::<f32>());
        let mut values = LossValues {
            reconstruction: value(&self.reconstruction),
            kl: value(&self.kl),
            cycle: value(&self.cycle),
            cycle_kl: value(&self.cycle_kl),
            total: 0.0,
        };
        values.total = values.weighted_total(weights);
        values
    }
}

/// Loss terms as plain numbers.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct LossValues {
    pub reconstruction: f64,
    pub kl: f64,
    pub cycle: f64,
    pub cycle_kl: f64,
    pub total: f64,
}

impl LossValues {
    pub fn weighted_total(&self, weights: &LossWeights) -> f64 {
        weights.reconstruction * self.reconstruction
            + weights.kl * self.kl
            + weights.cycle * self.cycle
            + weights.cycle_kl * self.cycle_kl
    }

    pub fn is_finite(&self) -> bool {
        [
            self.reconstruction,
            self.kl,
            self.cycle,
            self.cycle_kl,
            self.total,
        ]
        .iter()
        .all(|value| value.is_finite())
    }

    /// Adds `other` to a running sum.
    pub fn accumulate(&mut self, other: &LossValues) {
        self.reconstruction += other.reconstruction;
        self.kl += other.kl;
        self.cycle += other.cycle;
        self.cycle_kl += other.cycle_kl;
        self.total += other.total;
    }

    /// Divides every term, turning a running sum into a mean.
    pub fn scaled(&self, factor: f64) -> LossValues {
        LossValues {
            reconstruction: self.reconstruction * factor,
            kl: self.kl * factor,
            cycle: self.cycle * factor,
            cycle_kl: self.cycle_kl * factor,
            total: self.total * factor,
        }
    }
}

impl std::fmt::Display for LossValues {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "total {:.4} recon {:.4} kl {:.4} cycle {:.4} cycle_kl {:.4}",
            self.total, self.reconstruction, self.kl, self.cycle, self.cycle_kl
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::default_device;

    fn tensor(values: [f32; 4], device: &Device) -> Tensor<4> {
        Tensor::from_data(TensorData::new(values.to_vec(), [1, 1, 2, 2]), device)
    }

    #[test]
    fn l1_by_hand() {
        let device = default_device();
        let a = tensor([0.0, 1.0, 0.5, 0.25], &device);
        let b = tensor([1.0, 1.0, 0.0, 0.75], &device);
        // |−1| + 0 + 0.5 + |−0.5| = 2, over 4 elements.
        assert_eq!(l1(a, b).into_scalar::<f32>(), 0.5);
    }

    #[test]
    fn kl_by_hand() {
        let device = default_device();
        let mean = tensor([1.0, -2.0, 0.0, 3.0], &device);
        // (1 + 4 + 0 + 9) / 4
        assert_eq!(kl(mean).into_scalar::<f32>(), 3.5);
    }

    #[test]
    fn total_uses_weights() {
        let device = default_device();
        let scalar =
            |value: f32| Tensor::<1>::from_data(TensorData::new(vec![value], [1]), &device);
        let terms = LossTerms {
            reconstruction: scalar(0.5),
            kl: scalar(2.0),
            cycle: scalar(0.25),
            cycle_kl: scalar(4.0),
        };
        let weights = LossWeights::default();
        // 10·0.5 + 0.01·2 + 10·0.25 + 0.01·4 = 7.56
        let total = terms.total(&weights).into_scalar::<f32>();
        assert!((total - 7.56).abs() < 1e-5, "{total}");
        let values = terms.values(&weights);
        assert!((values.total - 7.56).abs() < 1e-5);
    }
}
