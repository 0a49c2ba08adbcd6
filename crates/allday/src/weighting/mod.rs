//! Stage 2: a learned weight per channel of the matched encoder layers, trained with triplets of
//! labelled places while the encoders stay frozen (as LPIPS learns per-channel weights on top of
//! a fixed network).
//!
//! At one layer the distance between two images is the mean over positions of
//! ‖w ⊙ (a − b)‖₂, where a and b are the channel vectors at that position, each normalised to
//! unit length, and w is the layer's channel weights rescaled to an L2 norm of √channels.
//! The rescaling keeps the distance's scale fixed: otherwise shrinking every weight would lower
//! the hinge loss towards the margin without ranking anything better. The distances of the
//! matched layers are summed. With all weights equal and only the latent matched, this is the
//! unweighted descriptor distance of [`crate::retrieval`].

mod training;

pub use training::{
    BackboneSource, FeatureSource, NETWORK, TripletData, TripletEpoch, TripletTrainer, WeightsFile,
    triplet_run_config,
};

use std::collections::HashMap;

use burn::module::{Module, ModuleMapper, Param};
use burn::prelude::*;
use burn::tensor::activation::relu;
use rand::seq::IndexedRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::config::TripletSampling;
use crate::data::{ImageEntry, ImageSet};
use crate::error::{Error, Result};
use crate::model::{Domain, DoubleVae};
use crate::pretrained::{Backbone, network_layer_descriptors};
use crate::retrieval::{DistanceMatrix, per_position_descriptors, shifted_per_position_distances};

/// Images encoded per forward pass when features are extracted.
const ENCODE_BATCH: usize = 16;

/// Per-position descriptors of a set of images at the matched layers, deepest (latent) first.
///
/// Each layer is `[images, positions, channels]` with unit-length channel vectors; positions
/// run row by row over a grid `widths[layer]` wide.
#[derive(Debug, Clone)]
pub struct LayerFeatures {
    pub layers: Vec<Tensor<3>>,
    pub widths: Vec<usize>,
}

impl LayerFeatures {
    /// Encodes `images` of `domain` with the frozen model and keeps the last `depth` encoder
    /// activations (the latent and the `depth − 1` layers before it).
    pub fn extract(
        model: &DoubleVae,
        domain: Domain,
        images: &ImageSet,
        depth: usize,
        device: &Device,
    ) -> LayerFeatures {
        let model = model.valid();
        let indices: Vec<usize> = (0..images.len()).collect();
        let mut per_layer: Vec<Vec<Tensor<3>>> = vec![Vec::new(); depth];
        let mut widths = vec![0; depth];
        for chunk in indices.chunks(ENCODE_BATCH) {
            let activations = model.encode_layers(domain, images.batch(chunk, device));
            for (slot, activation) in activations.into_iter().rev().take(depth).enumerate() {
                widths[slot] = activation.dims()[3];
                per_layer[slot].push(per_position_descriptors(activation));
            }
        }
        LayerFeatures {
            layers: per_layer
                .into_iter()
                .map(|parts| Tensor::cat(parts, 0))
                .collect(),
            widths,
        }
    }

    /// Computes the last `depth` layers of a pretrained `backbone` for the files of `images`,
    /// which are decoded again at the network's input size (see [`crate::pretrained`]).
    pub fn from_backbone(
        backbone: &Backbone,
        images: &ImageSet,
        depth: usize,
        device: &Device,
    ) -> Result<LayerFeatures> {
        let (layers, widths) =
            network_layer_descriptors(backbone, depth, &images.entries, images.max_pixels, device)?;
        Ok(LayerFeatures { layers, widths })
    }

    /// Appends the images of `other` after those of `self`, layer by layer.
    pub fn concat(&self, other: &LayerFeatures) -> LayerFeatures {
        LayerFeatures {
            layers: self
                .layers
                .iter()
                .zip(&other.layers)
                .map(|(a, b)| Tensor::cat(vec![a.clone(), b.clone()], 0))
                .collect(),
            widths: self.widths.clone(),
        }
    }

    /// Gathers the images at `indices`, layer by layer.
    pub fn select(&self, indices: &[usize], device: &Device) -> Vec<Tensor<3>> {
        let indices: Vec<i64> = indices.iter().map(|&index| index as i64).collect();
        let count = indices.len();
        let indices = Tensor::<1, Int>::from_data(TensorData::new(indices, [count]), device);
        self.layers
            .iter()
            .map(|layer| layer.clone().select(0, indices.clone()))
            .collect()
    }

    /// Returns the channel count of each layer.
    pub fn channels(&self) -> Vec<usize> {
        self.layers.iter().map(|layer| layer.dims()[2]).collect()
    }

    /// Moves the features to `device` (for example to the autodiff device for training).
    pub fn to_device(&self, device: &Device) -> LayerFeatures {
        LayerFeatures {
            layers: self
                .layers
                .iter()
                .map(|layer| layer.clone().to_device(device))
                .collect(),
            widths: self.widths.clone(),
        }
    }
}

/// Returns the feature extractor of a triplet run on the frozen encoders of `model` (see
/// [`TripletTrainer::new`]).
pub fn encoder_features<'a>(
    model: &'a DoubleVae,
    device: &'a Device,
) -> impl FnMut(Domain, &ImageSet, usize) -> Result<LayerFeatures> + 'a {
    move |domain, images, depth| Ok(LayerFeatures::extract(model, domain, images, depth, device))
}

/// Returns the feature extractor of a triplet run on the layers of a pretrained `backbone`.
/// Both domains go through the same network.
pub fn backbone_features<'a>(
    backbone: &'a Backbone,
    device: &'a Device,
) -> impl FnMut(Domain, &ImageSet, usize) -> Result<LayerFeatures> + 'a {
    move |_, images, depth| LayerFeatures::from_backbone(backbone, images, depth, device)
}

/// Rescales a layer's weights to an L2 norm of √channels, which leaves all-ones weights as they
/// are.
///
/// `[channels]` → `[1, 1, channels]`, ready to scale `[batch, positions, channels]` features.
fn scale(weights: Tensor<1>) -> Tensor<3> {
    let [channels] = weights.dims();
    let norm = weights.clone().square().sum().sqrt().clamp_min(1e-12); // [1]
    (weights / norm)
        .mul_scalar((channels as f64).sqrt())
        .reshape([1, 1, channels])
}

/// One weight per channel of each matched layer, deepest first.
#[derive(Module, Debug)]
pub struct ChannelWeights {
    pub layers: Vec<Param<Tensor<1>>>,
}

impl ChannelWeights {
    /// Starts from all weights 1, which gives the unweighted distance.
    pub fn ones(channels: &[usize], device: &Device) -> ChannelWeights {
        ChannelWeights {
            layers: channels
                .iter()
                .map(|&count| Param::from_tensor(Tensor::ones([count], device)))
                .collect(),
        }
    }

    /// Builds the weights from plain values, one vector per layer.
    pub fn from_values(values: &[Vec<f32>], device: &Device) -> ChannelWeights {
        ChannelWeights {
            layers: values
                .iter()
                .map(|layer| {
                    Param::from_tensor(Tensor::from_data(
                        TensorData::new(layer.clone(), [layer.len()]),
                        device,
                    ))
                })
                .collect(),
        }
    }

    /// Reads the weights back to the host, one vector per layer.
    pub fn values(&self) -> Vec<Vec<f32>> {
        self.layers
            .iter()
            .map(|layer| {
                layer
                    .val()
                    .into_data()
                    .try_to_vec::<f32>()
                    .expect("weights are f32")
            })
            .collect()
    }

    /// Computes the distance between paired images, summed over layers.
    ///
    /// Shapes: each layer of `a` and `b` `[batch, positions, channels]`; returns `[batch]`.
    pub fn paired_distance(&self, a: &[Tensor<3>], b: &[Tensor<3>]) -> Tensor<1> {
        let mut total: Option<Tensor<1>> = None;
        for ((weights, a), b) in self.layers.iter().zip(a).zip(b) {
            let [batch, _, _] = a.dims();
            let layer = ((a.clone() - b.clone()) * scale(weights.val()))
                .square()
                .sum_dim(2)
                .add_scalar(1e-12)
                .sqrt()
                .mean_dim(1) // [batch, 1, 1]
                .reshape([batch]);
            total = Some(match total {
                Some(sum) => sum + layer,
                None => layer,
            });
        }
        total.expect("at least one matched layer")
    }

    /// Computes the weighted distance between every query and every database image, summed
    /// over layers. With `max_shift` > 0, each layer's grids are compared under the best
    /// horizontal offset of up to that many columns (see
    /// [`crate::retrieval::shifted_per_position_distances`]).
    pub fn distances(
        &self,
        queries: &LayerFeatures,
        database: &LayerFeatures,
        max_shift: usize,
    ) -> DistanceMatrix {
        let mut total: Option<DistanceMatrix> = None;
        for (((weights, queries), database), &width) in self
            .layers
            .iter()
            .zip(&queries.layers)
            .zip(&database.layers)
            .zip(&queries.widths)
        {
            // The same rescaling as in training, so that layers add up with the learned balance.
            let scale = scale(weights.val());
            let layer = shifted_per_position_distances(
                queries.clone() * scale.clone(),
                database.clone() * scale,
                width,
                max_shift,
            );
            total = Some(match total {
                Some(mut sum) => {
                    for (value, add) in sum.values.iter_mut().zip(&layer.values) {
                        *value += add;
                    }
                    sum
                }
                None => layer,
            });
        }
        total.expect("at least one matched layer")
    }
}

/// Keeps every weight at zero or above, keeping parameter ids (so Adam's state stays attached).
struct ClampNonNegative;

impl ModuleMapper for ClampNonNegative {
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        param.map(|tensor| tensor.clamp_min(0.0).detach().require_grad())
    }
}

/// One anchor–positive–negative triplet, as indices into the pooled features (domain A's
/// images first, then domain B's).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Triplet {
    pub anchor: usize,
    pub positive: usize,
    pub negative: usize,
}

/// Draws triplets of `sampling` (see [`TripletSampling`]); a negative's place is always more
/// than `tolerance` frames from the anchor's.
pub fn sample_triplets(
    domain_a: &[ImageEntry],
    domain_b: &[ImageEntry],
    sampling: TripletSampling,
    tolerance: usize,
    count: usize,
    rng: &mut ChaCha8Rng,
) -> Result<Vec<Triplet>> {
    let by_frame = |entries: &[ImageEntry], offset: usize| {
        let mut map: HashMap<usize, Vec<usize>> = HashMap::new();
        for (index, entry) in entries.iter().enumerate() {
            map.entry(entry.frame).or_default().push(offset + index);
        }
        map
    };
    let frames: Vec<usize> = domain_a
        .iter()
        .chain(domain_b)
        .map(|entry| entry.frame)
        .collect();
    // Anchors and positives are indices into the pool (domain A first); positives are keyed by
    // frame. Negatives are drawn from `negatives`, a range of the pool.
    let (anchor_range, positives, negatives) = match sampling {
        TripletSampling::Mixed => (
            0..domain_a.len(),
            by_frame(domain_b, domain_a.len()),
            0..frames.len(),
        ),
        TripletSampling::Retrieval => (
            domain_a.len()..frames.len(),
            by_frame(domain_a, 0),
            0..domain_a.len(),
        ),
    };
    let anchors: Vec<usize> = anchor_range
        .filter(|&index| positives.contains_key(&frames[index]))
        .collect();
    if anchors.is_empty() {
        return Err(Error::InvalidConfig {
            field: "data.train_places",
            value: "no shared places".into(),
            expected: "places with images in both domains to form anchor–positive pairs".into(),
        });
    }
    let mut triplets = Vec::with_capacity(count);
    let mut attempts = 0;
    while triplets.len() < count {
        attempts += 1;
        if attempts > 100 * count.max(1) {
            return Err(Error::InvalidConfig {
                field: "evaluation.tolerance",
                value: tolerance.to_string(),
                expected:
                    "a tolerance that leaves negatives: every image is within it of the anchors"
                        .into(),
            });
        }
        let anchor = *anchors.choose(rng).expect("anchors is not empty");
        let frame = frames[anchor];
        let positive = *positives[&frame]
            .choose(rng)
            .expect("a listed frame has images");
        let negative = rng.random_range(negatives.clone());
        if frames[negative].abs_diff(frame) <= tolerance {
            continue;
        }
        triplets.push(Triplet {
            anchor,
            positive,
            negative,
        });
    }
    Ok(triplets)
}

/// Mean hinge loss max(0, margin + d(a, p) − d(a, n)) and the share of satisfied triplets
/// (d(a, p) < d(a, n)).
pub fn triplet_loss(
    weights: &ChannelWeights,
    pool: &LayerFeatures,
    triplets: &[Triplet],
    margin: f64,
    device: &Device,
) -> (Tensor<1>, f64) {
    let pick =
        |field: fn(&Triplet) -> usize| -> Vec<usize> { triplets.iter().map(field).collect() };
    let anchors = pool.select(&pick(|t| t.anchor), device);
    let positives = pool.select(&pick(|t| t.positive), device);
    let negatives = pool.select(&pick(|t| t.negative), device);
    let positive = weights.paired_distance(&anchors, &positives);
    let negative = weights.paired_distance(&anchors, &negatives);
    let satisfied = positive
        .clone()
        .lower(negative.clone())
        .int()
        .sum()
        .into_scalar::<i64>() as f64
        / triplets.len().max(1) as f64;
    let loss = relu((positive - negative).add_scalar(margin)).mean();
    (loss, satisfied)
}

/// Triplets per chunk in [`channel_importance`], which bounds its memory. A chunk allocates
/// `[chunk, positions, channels + 1]` values per layer and pair.
const IMPORTANCE_CHUNK: usize = 32;

/// Measures how much each channel matters: the increase of the mean triplet loss over
/// `triplets` when that channel's weight alone is set to zero (the others are rescaled as in
/// every distance). Returns one vector per layer, deepest first; a negative value means the
/// loss falls without the channel.
///
/// All removals are computed in one pass. Within a layer, a pair's squared weighted difference
/// at a position is a sum over channels, so removing channel k subtracts its term and
/// rescales by `C / (‖w‖² − w_k²)` instead of `C / ‖w‖²`. The other layers' distances stay.
pub fn channel_importance(
    weights: &ChannelWeights,
    pool: &LayerFeatures,
    triplets: &[Triplet],
    margin: f64,
    device: &Device,
) -> Vec<Vec<f64>> {
    let layer_weights: Vec<Tensor<1>> = weights.layers.iter().map(|layer| layer.val()).collect();
    // Per layer, per pair kind (positive, negative): `[triplets, channels + 1]` distances, the
    // last column with all channels.
    let mut positive: Vec<Vec<Tensor<2>>> = vec![Vec::new(); layer_weights.len()];
    let mut negative: Vec<Vec<Tensor<2>>> = vec![Vec::new(); layer_weights.len()];
    for chunk in triplets.chunks(IMPORTANCE_CHUNK) {
        let pick =
            |field: fn(&Triplet) -> usize| -> Vec<usize> { chunk.iter().map(field).collect() };
        let anchors = pool.select(&pick(|t| t.anchor), device);
        let positives = pool.select(&pick(|t| t.positive), device);
        let negatives = pool.select(&pick(|t| t.negative), device);
        for (layer, weights) in layer_weights.iter().enumerate() {
            positive[layer].push(distances_without_each_channel(
                weights.clone(),
                anchors[layer].clone(),
                positives[layer].clone(),
            ));
            negative[layer].push(distances_without_each_channel(
                weights.clone(),
                anchors[layer].clone(),
                negatives[layer].clone(),
            ));
        }
    }
    let positive: Vec<Tensor<2>> = positive
        .into_iter()
        .map(|parts| Tensor::cat(parts, 0))
        .collect();
    let negative: Vec<Tensor<2>> = negative
        .into_iter()
        .map(|parts| Tensor::cat(parts, 0))
        .collect();
    let all_channels = |distances: &Tensor<2>| {
        let [count, columns] = distances.dims();
        distances.clone().slice([0..count, columns - 1..columns]) // [triplets, 1]
    };

    let mut importance = Vec::with_capacity(layer_weights.len());
    for layer in 0..layer_weights.len() {
        // d(a, p) − d(a, n) of the other layers, which removing a channel here leaves alone.
        let mut others: Option<Tensor<2>> = None;
        for other in (0..layer_weights.len()).filter(|&other| other != layer) {
            let difference = all_channels(&positive[other]) - all_channels(&negative[other]);
            others = Some(match others {
                Some(sum) => sum + difference,
                None => difference,
            });
        }
        // [triplets, channels + 1]: the hinge loss without each channel, then with all.
        let difference = positive[layer].clone() - negative[layer].clone();
        let difference = match others {
            Some(others) => difference + others,
            None => difference,
        };
        let losses: Vec<f64> = relu(difference.add_scalar(margin))
            .mean_dim(0)
            .into_data()
            .convert::<f64>()
            .try_to_vec::<f64>()
            .expect("f64 after conversion");
        let (base, removed) = losses.split_last().expect("a column with all channels");
        importance.push(removed.iter().map(|loss| loss - base).collect());
    }
    importance
}

/// Computes the weighted distance of paired images in one layer without each channel in turn,
/// and with all channels, as [`ChannelWeights::paired_distance`] does.
///
/// Shapes: `weights` `[channels]`, `a` and `b` `[batch, positions, channels]`; returns
/// `[batch, channels + 1]`, column k without channel k and the last column with all.
fn distances_without_each_channel(weights: Tensor<1>, a: Tensor<3>, b: Tensor<3>) -> Tensor<2> {
    let [batch, positions, channels] = a.dims();
    let device = a.device();
    // A zero weight is appended as channel C. Removing it removes nothing, so the last column
    // comes from the same operations as the others.
    let squared = Tensor::cat(vec![weights.square(), Tensor::zeros([1], &device)], 0); // [C + 1]
    let differences = Tensor::cat(
        vec![
            (a - b).square(),
            Tensor::zeros([batch, positions, 1], &device),
        ],
        2,
    ); // [batch, positions, C + 1]
    let terms = differences * squared.clone().reshape([1, 1, channels + 1]);
    let sum = terms.clone().sum_dim(2); // [batch, positions, 1]
    // `scale` sets s_c² = C · w_c² / ‖w‖², with the norm clamped at 1e-12.
    let rescale = (squared.clone().sum() - squared)
        .clamp_min(1e-24)
        .recip()
        .mul_scalar(channels as f64)
        .reshape([1, 1, channels + 1]);
    ((sum - terms).clamp_min(0.0) * rescale)
        .add_scalar(1e-12)
        .sqrt()
        .mean_dim(1) // [batch, 1, C + 1]
        .reshape([batch, channels + 1])
}

/// Measures [`channel_importance`] of learned weights on held-out images: `triplets_per_epoch`
/// triplets of the places in `images_a` and `images_b`, drawn from `seed`, on the features that
/// `extract` computes (see [`encoder_features`] and [`backbone_features`]). Returns the
/// importance per layer and the number of triplets.
pub fn held_out_importance(
    mut extract: impl FnMut(Domain, &ImageSet, usize) -> Result<LayerFeatures>,
    images_a: &ImageSet,
    images_b: &ImageSet,
    file: &WeightsFile,
    tolerance: usize,
    seed: u64,
    device: &Device,
) -> Result<(Vec<Vec<f64>>, usize)> {
    let pool = extract(Domain::A, images_a, file.depth)?.concat(&extract(
        Domain::B,
        images_b,
        file.depth,
    )?);
    let expected: Vec<usize> = file.weights.iter().map(Vec::len).collect();
    if pool.channels() != expected {
        return Err(Error::WeightsMismatch {
            weights: expected,
            features: pool.channels(),
        });
    }
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let triplets = sample_triplets(
        &images_a.entries,
        &images_b.entries,
        file.config.sampling,
        tolerance,
        file.config.triplets_per_epoch,
        &mut rng,
    )?;
    let weights = ChannelWeights::from_values(&file.weights, device);
    let importance = channel_importance(&weights, &pool, &triplets, file.config.margin, device);
    Ok((importance, triplets.len()))
}

/// Returns the smallest share of channels (0 to 1) whose importances, largest first, add up to
/// `fraction` of the total positive importance. Channels with zero or negative importance never
/// count towards it; with no positive importance the share is 0.
pub fn share_carrying(importance: &[f64], fraction: f64) -> f64 {
    let mut positive: Vec<f64> = importance
        .iter()
        .copied()
        .filter(|value| *value > 0.0)
        .collect();
    let total: f64 = positive.iter().sum();
    if total <= 0.0 || importance.is_empty() {
        return 0.0;
    }
    positive.sort_by(|a, b| b.total_cmp(a));
    let mut sum = 0.0;
    for (count, value) in positive.iter().enumerate() {
        sum += value;
        if sum >= fraction * total - 1e-12 {
            return (count + 1) as f64 / importance.len() as f64;
        }
    }
    positive.len() as f64 / importance.len() as f64
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::default_device;
    use crate::retrieval::per_position_distances;
    use burn::tensor::Distribution;
    use std::path::PathBuf;

    fn entries(frames: &[usize]) -> Vec<ImageEntry> {
        frames
            .iter()
            .map(|&frame| ImageEntry {
                path: PathBuf::from(format!("{frame}.png")),
                frame,
            })
            .collect()
    }

    #[test]
    fn paired_distance_by_hand() {
        let device = default_device();
        // One pair, one layer, 2 positions, 2 channels: a = (1, 0), (0, 1); b = (0, 1), (0, 1).
        let a = Tensor::<3>::from_data(
            TensorData::new(vec![1.0f32, 0.0, 0.0, 1.0], [1, 2, 2]),
            &device,
        );
        let b = Tensor::<3>::from_data(
            TensorData::new(vec![0.0f32, 1.0, 0.0, 1.0], [1, 2, 2]),
            &device,
        );
        // Weights (3, 4) rescale to (3, 4)·√2/5. Position 0 differs by (1, −1), so its distance
        // is ‖(3, −4)‖·√2/5 = √2; position 1 is equal. The mean is √2/2.
        let weights = ChannelWeights::from_values(&[vec![3.0, 4.0]], &device);
        let distance = weights
            .paired_distance(std::slice::from_ref(&a), std::slice::from_ref(&b))
            .into_scalar::<f32>();
        assert!((distance - 0.5f32.sqrt()).abs() < 1e-4, "{distance}");

        // Scaling all weights leaves the distance unchanged.
        let scaled = ChannelWeights::from_values(&[vec![30.0, 40.0]], &device);
        let same = scaled.paired_distance(&[a], &[b]).into_scalar::<f32>();
        assert!((same - distance).abs() < 1e-5, "{same}");
    }

    #[test]
    fn unit_weights_match_unweighted_distances() {
        let device = default_device();
        let features = |seed: f64| {
            let latent = Tensor::<4>::random(
                [3, 4, 2, 2],
                burn::tensor::Distribution::Normal(seed, 1.0),
                &device,
            );
            LayerFeatures {
                layers: vec![per_position_descriptors(latent)],
                widths: vec![2],
            }
        };
        let (queries, database) = (features(0.0), features(0.5));
        let weighted = ChannelWeights::ones(&[4], &device).distances(&queries, &database, 0);
        let plain = per_position_distances(queries.layers[0].clone(), database.layers[0].clone());
        for (a, b) in weighted.values.iter().zip(&plain.values) {
            assert!((a - b).abs() < 1e-5);
        }
    }

    #[test]
    fn distance_matrix_matches_paired_distance() {
        let device = default_device();
        let features = |count: usize, mean: f64| LayerFeatures {
            layers: [(4, 2), (3, 4)]
                .iter()
                .map(|&(channels, side)| {
                    per_position_descriptors(Tensor::<4>::random(
                        [count, channels, side, side],
                        burn::tensor::Distribution::Normal(mean, 1.0),
                        &device,
                    ))
                })
                .collect(),
            widths: vec![2, 4],
        };
        let (queries, database) = (features(2, 0.0), features(3, 0.3));
        let weights =
            ChannelWeights::from_values(&[vec![0.5, 2.0, 1.0, 0.1], vec![3.0, 1.0, 0.2]], &device);
        let matrix = weights.distances(&queries, &database, 0);
        for query in 0..2 {
            for image in 0..3 {
                let paired = weights
                    .paired_distance(
                        &queries.select(&[query], &device),
                        &database.select(&[image], &device),
                    )
                    .into_scalar::<f32>();
                let entry = matrix.values[query * 3 + image];
                assert!((entry - paired).abs() < 1e-4, "{entry} vs {paired}");
            }
        }
    }

    #[test]
    fn negatives_lie_outside_tolerance() {
        let day = entries(&[0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
        let night = entries(&[0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        let triplets =
            sample_triplets(&day, &night, TripletSampling::Mixed, 2, 500, &mut rng).unwrap();
        let frame = |index: usize| {
            if index < day.len() {
                day[index].frame
            } else {
                night[index - day.len()].frame
            }
        };
        for triplet in triplets {
            assert!(triplet.anchor < day.len());
            assert!(triplet.positive >= day.len());
            assert_eq!(frame(triplet.anchor), frame(triplet.positive));
            assert!(frame(triplet.negative).abs_diff(frame(triplet.anchor)) > 2);
        }
    }

    #[test]
    fn retrieval_triplets_rank_database_images_for_a_query() {
        let day = entries(&[0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
        let night = entries(&[0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        let triplets =
            sample_triplets(&day, &night, TripletSampling::Retrieval, 2, 500, &mut rng).unwrap();
        let mut negatives_seen = std::collections::HashSet::new();
        for triplet in triplets {
            assert!(triplet.anchor >= day.len(), "the anchor is a query");
            assert!(
                triplet.positive < day.len(),
                "the positive is a database image"
            );
            assert!(
                triplet.negative < day.len(),
                "the negative is a database image"
            );
            let anchor_frame = night[triplet.anchor - day.len()].frame;
            assert_eq!(day[triplet.positive].frame, anchor_frame);
            assert!(day[triplet.negative].frame.abs_diff(anchor_frame) > 2);
            negatives_seen.insert(triplet.negative);
        }
        // Every database image lies outside the tolerance of some query.
        assert_eq!(negatives_seen.len(), day.len());
    }

    #[test]
    fn tolerance_covering_everything_rejected() {
        let day = entries(&[0, 1, 2]);
        let night = entries(&[0, 1, 2]);
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        let error =
            sample_triplets(&day, &night, TripletSampling::Mixed, 5, 10, &mut rng).unwrap_err();
        assert!(error.to_string().contains("tolerance"), "{error}");
    }

    #[test]
    fn removal_importance_on_tiny_features() {
        let device = default_device();
        // One position, two channels. Anchor and positive are (1, 0); the negative differs
        // from them mostly in channel 1, so channel 1 separates the triplet.
        let norm = (1.0f32 + 0.01).sqrt();
        let values = vec![1.0, 0.0, 1.0, 0.0, 1.0 / norm, 0.1 / norm];
        let pool = LayerFeatures {
            layers: vec![Tensor::from_data(
                TensorData::new(values, [3, 1, 2]),
                &device,
            )],
            widths: vec![1],
        };
        let triplets = [Triplet {
            anchor: 0,
            positive: 1,
            negative: 2,
        }];
        let weights = ChannelWeights::ones(&[2], &device);
        let importance = channel_importance(&weights, &pool, &triplets, 0.1, &device);
        // Without channel 1 the negative is as close as the positive: the loss rises by about
        // the margin. Without channel 0 the rescaled channel 1 separates them better.
        assert!(importance[0][1] > 0.09, "{importance:?}");
        assert!(importance[0][0] < 0.0, "{importance:?}");

        // A channel whose weight is already zero does not matter at all.
        let weights = ChannelWeights::from_values(&[vec![0.0, 1.0]], &device);
        let importance = channel_importance(&weights, &pool, &triplets, 0.1, &device);
        assert_eq!(importance[0][0], 0.0);
    }

    #[test]
    fn importance_matches_removals_one_by_one() {
        let device = default_device();
        // Two layers, 20 images, 3 and 2 positions, 5 and 4 channels, unit vectors per position.
        let layer = |positions: usize, channels: usize| {
            let values = Tensor::<3>::random(
                [20, positions, channels],
                Distribution::Normal(0.0, 1.0),
                &device,
            );
            let norm = values.clone().square().sum_dim(2).sqrt();
            values / norm
        };
        let pool = LayerFeatures {
            layers: vec![layer(3, 5), layer(2, 4)],
            widths: vec![3, 2],
        };
        let weights = ChannelWeights::from_values(
            &[vec![0.5, 1.5, 0.0, 2.0, 1.0], vec![1.0, 0.2, 3.0, 0.7]],
            &device,
        );
        // 70 triplets: more than two chunks.
        let triplets: Vec<Triplet> = (0..70)
            .map(|index| Triplet {
                anchor: index % 20,
                positive: (index * 7 + 3) % 20,
                negative: (index * 11 + 5) % 20,
            })
            .collect();
        let margin = 0.05;

        let importance = channel_importance(&weights, &pool, &triplets, margin, &device);
        let loss = |values: &[Vec<f32>]| {
            let weights = ChannelWeights::from_values(values, &device);
            let (loss, _) = triplet_loss(&weights, &pool, &triplets, margin, &device);
            f64::from(loss.into_scalar::<f32>())
        };
        let values = weights.values();
        let base = loss(&values);
        assert_eq!(importance.len(), 2);
        for (layer, layer_values) in values.iter().enumerate() {
            assert_eq!(importance[layer].len(), layer_values.len());
            for channel in 0..layer_values.len() {
                let mut removed = values.clone();
                removed[layer][channel] = 0.0;
                let expected = loss(&removed) - base;
                let actual = importance[layer][channel];
                assert!(
                    (actual - expected).abs() < 1e-5,
                    "layer {layer} channel {channel}: {actual} against {expected}"
                );
            }
        }
        // Some removals must matter, or the comparison above proves little.
        assert!(importance.iter().flatten().any(|value| value.abs() > 1e-3));
        // The zero weight of layer 0, channel 2, changes nothing when removed.
        assert_eq!(importance[0][2], 0.0);
    }

    #[test]
    fn share_carrying_by_hand() {
        // Total positive importance 10; the largest two (6 and 3) carry 90 %.
        let importance = [3.0, -1.0, 6.0, 1.0, 0.0];
        assert_eq!(share_carrying(&importance, 0.9), 2.0 / 5.0);
        assert_eq!(share_carrying(&importance, 1.0), 3.0 / 5.0);
        assert_eq!(share_carrying(&[-1.0, 0.0], 0.9), 0.0);
    }

    #[test]
    fn clamp_keeps_weights_non_negative() {
        let device = default_device().autodiff();
        let weights = ChannelWeights::from_values(&[vec![-1.0, 2.0]], &device);
        let id = weights.layers[0].id;
        let clamped = weights.map(&mut ClampNonNegative);
        assert_eq!(clamped.values(), [vec![0.0, 2.0]]);
        assert_eq!(clamped.layers[0].id, id);
    }
}
