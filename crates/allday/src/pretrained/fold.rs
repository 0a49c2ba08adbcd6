//! Batch-norm folding for inference.
//!
//! At inference a batch norm is a fixed affine map per channel,
//! `y = γ · (x − μ) / √(σ² + ε) + β`, with the running mean μ and variance σ². After a
//! convolution it can be merged into the convolution's weights and bias, which removes the
//! four element-wise passes over the activation that the batch norm costs on a CPU backend.
//! The folded network gives the same outputs up to rounding, but it cannot be trained any
//! more: the batch-norm parameters are gone.

use burn::module::Param;
use burn::nn::BatchNorm;
use burn::nn::conv::Conv2d;
use burn::prelude::*;

/// Merges `norm`, applied to the output of `conv` in inference mode, into `conv`.
///
/// With `s = γ / √(σ² + ε)` per output channel, the weights become `W · s` and the bias
/// `(b − μ) · s + β` (`b` = 0 for a convolution without bias). Grouped and depthwise
/// convolutions fold alike, since the weights' first axis is the output channel.
pub fn fold_batch_norm(mut conv: Conv2d, norm: &BatchNorm) -> Conv2d {
    let [channels, ..] = conv.weight.dims();
    // [channels]. burn's running statistics lag one update, so they are read with `value_sync`.
    let mean = norm.running_mean.value_sync();
    let variance = norm.running_var.value_sync();
    let scale = norm.gamma.val() / variance.add_scalar(norm.epsilon).sqrt();
    let bias = match &conv.bias {
        Some(bias) => bias.val(),
        None => Tensor::zeros([channels], &mean.device()),
    };
    let bias = (bias - mean) * scale.clone() + norm.beta.val();
    let weight = conv.weight.val() * scale.reshape([channels, 1, 1, 1]);
    conv.weight = Param::from_tensor(weight);
    conv.bias = Some(Param::from_tensor(bias));
    conv
}

/// Runs `conv` and adds its bias, if it has one, as a broadcast tensor addition.
///
/// Same result as [`Conv2d::forward`], but faster on the flex backend, whose convolutions add
/// their bias in a scalar loop on one thread. For EfficientNet-Lite0 that loop costs more than
/// the batch norms that folding removes; the tensor addition is vectorised and parallel.
pub fn conv_forward(conv: &Conv2d, input: Tensor<4>) -> Tensor<4> {
    let Some(bias) = &conv.bias else {
        return conv.forward(input);
    };
    // Cloning a module shares its tensors, so nothing is copied.
    let unbiased = Conv2d {
        bias: None,
        ..conv.clone()
    };
    let [channels] = bias.dims();
    unbiased.forward(input) + bias.val().reshape([1, channels, 1, 1])
}

/// Applies `norm` to `x` unless it was folded into the convolution before it (`None`).
pub fn apply_norm(norm: &Option<BatchNorm>, x: Tensor<4>) -> Tensor<4> {
    match norm {
        Some(norm) => norm.forward(x),
        None => x,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::default_device;
    use burn::module::RunningState;
    use burn::nn::BatchNormConfig;
    use burn::nn::PaddingConfig2d;
    use burn::nn::conv::Conv2dConfig;
    use burn::tensor::Distribution;

    fn max_abs_difference(a: Tensor<4>, b: Tensor<4>) -> f32 {
        (a - b).abs().max().into_scalar()
    }

    /// Builds a batch norm whose four statistics differ per channel and from their initial values.
    fn trained_norm(channels: usize, device: &Device) -> BatchNorm {
        let mut norm = BatchNormConfig::new(channels)
            .with_epsilon(1e-3)
            .init(device);
        let uniform =
            |low, high| Tensor::<1>::random([channels], Distribution::Uniform(low, high), device);
        norm.gamma = Param::from_tensor(uniform(0.5, 2.0));
        norm.beta = Param::from_tensor(uniform(-1.0, 1.0));
        norm.running_mean = RunningState::new(uniform(-0.5, 0.5));
        norm.running_var = RunningState::new(uniform(0.1, 3.0));
        norm
    }

    fn check(groups: usize, bias: bool) {
        let device = default_device();
        let channels = 6;
        let conv = Conv2dConfig::new([channels, channels], [3, 3])
            .with_groups(groups)
            .with_bias(bias)
            .with_stride([2, 2])
            .with_padding(PaddingConfig2d::Explicit(1, 1, 1, 1))
            .init(&device);
        let norm = trained_norm(channels, &device);
        let input = Tensor::<4>::random([2, channels, 9, 7], Distribution::Default, &device);

        let expected = norm.forward(conv.forward(input.clone()));
        let folded = fold_batch_norm(conv, &norm);
        let actual = folded.forward(input.clone());
        assert_eq!(actual.dims(), expected.dims());
        let difference = max_abs_difference(actual.clone(), expected);
        assert!(difference < 1e-5, "folded output differs by {difference}");
        let separate_bias = conv_forward(&folded, input);
        assert!(max_abs_difference(separate_bias, actual) < 1e-6);
    }

    #[test]
    fn folded_convolution_matches_convolution_then_batch_norm() {
        check(1, false);
        check(1, true);
    }

    #[test]
    fn folded_depthwise_convolution_matches() {
        check(6, false);
    }

    #[test]
    fn identity_batch_norm_leaves_outputs_unchanged() {
        let device = default_device();
        let conv = Conv2dConfig::new([3, 4], [1, 1]).init(&device);
        // Fresh statistics are mean 0, variance 1, γ 1 and β 0. ε is as small as burn allows.
        let norm = BatchNormConfig::new(4).with_epsilon(1e-12).init(&device);
        let input = Tensor::<4>::random([1, 3, 4, 4], Distribution::Default, &device);
        let expected = conv.forward(input.clone());
        let actual = fold_batch_norm(conv, &norm).forward(input);
        assert!(max_abs_difference(actual, expected) < 1e-5);
    }
}
