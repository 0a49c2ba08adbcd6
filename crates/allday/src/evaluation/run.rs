//! Cross-domain retrieval on a query and a database set, for the model and the pixel baseline
//! through the same metrics: Recall@N, PR-AUC, triplet loss and clustering.

use std::path::Path;

use burn::prelude::*;

use crate::baseline::pixel_descriptors;
use crate::config::PlaceRange;
use crate::data::{ImageSet, LoadOptions};
use crate::error::Result;
use crate::evaluation::{
    Clustering, GroundTruth, RetrievalMetrics, TripletMetrics, clustering, evaluate,
    triplet_metrics,
};
use crate::hog::hog_descriptors;
use crate::model::{Domain, DoubleVae};
use crate::pooling::Pooling;
use crate::pretrained::{Backbone, Descriptors, network_descriptors};
use crate::retrieval::{
    DistanceMatrix, cosine_distances, encode_descriptors, per_position_distances,
};
use crate::weighting::{ChannelWeights, LayerFeatures, WeightsFile};

/// The N of the reported Recall@N.
pub const RECALL_AT: [usize; 3] = [1, 5, 10];
/// Images encoded per forward pass during evaluation.
const ENCODE_BATCH: usize = 16;

/// The database (domain A) and query (domain B) images of one evaluation.
#[derive(Debug, Clone)]
pub struct EvaluationSets {
    pub database: ImageSet,
    pub queries: ImageSet,
}

impl EvaluationSets {
    /// Loads the places `places` of a database and a query folder at the model's input size,
    /// with the raw-pixel baseline's descriptors from the same decode.
    pub fn load(
        database: &Path,
        queries: &Path,
        places: PlaceRange,
        width: usize,
        height: usize,
        options: LoadOptions,
    ) -> Result<EvaluationSets> {
        let load = |folder: &Path| {
            ImageSet::load_with_thumbnails(&[folder.to_path_buf()], places, width, height, options)
        };
        Ok(EvaluationSets {
            database: load(database)?,
            queries: load(queries)?,
        })
    }
}

/// One descriptor's distances and figures.
#[derive(Debug, Clone)]
pub struct MethodResult {
    pub name: String,
    /// Query-by-database distances.
    pub distances: DistanceMatrix,
    pub metrics: RetrievalMetrics,
    /// Triplet figures over the database and queries pooled; only with frame ground truth.
    pub triplets: Option<TripletMetrics>,
    /// Places as clusters over the database and queries pooled; only with frame ground truth.
    pub clustering: Option<Clustering>,
}

impl MethodResult {
    /// Measures one descriptor over `sets`: Recall@1/5/10 and PR-AUC from the query-by-database
    /// distances and, with frame ground truth, triplet loss and clustering from the distances
    /// between all images pooled (database first), with `margin` as the hinge margin.
    ///
    /// `concat` appends one set's descriptors to another's and `distances` compares a set of
    /// query descriptors with a set of database descriptors.
    #[allow(clippy::too_many_arguments)]
    pub fn measure<X>(
        name: String,
        queries: X,
        database: X,
        concat: impl Fn(&X, &X) -> X,
        distances: impl Fn(&X, &X) -> DistanceMatrix,
        sets: &EvaluationSets,
        ground_truth: &GroundTruth,
        margin: f64,
    ) -> MethodResult {
        let (cross, triplets, clustering) = match ground_truth {
            GroundTruth::Frames { tolerance } => {
                let pooled = concat(&database, &queries);
                let all = distances(&pooled, &pooled);
                let frames: Vec<usize> = sets
                    .database
                    .entries
                    .iter()
                    .chain(&sets.queries.entries)
                    .map(|entry| entry.frame)
                    .collect();
                let domain_a = sets.database.len();
                let triplets = triplet_metrics(&all.values, &frames, domain_a, *tolerance, margin);
                let clustering = clustering(&all.values, &frames);
                (cross_block(&all, domain_a), triplets, Some(clustering))
            }
            GroundTruth::Files { .. } => (distances(&queries, &database), None, None),
        };
        let metrics = evaluate(
            &cross,
            &sets.queries.entries,
            &sets.database.entries,
            ground_truth,
            &RECALL_AT,
        );
        MethodResult {
            name,
            distances: cross,
            metrics,
            triplets,
            clustering,
        }
    }
}

/// Cuts the query-by-database block out of the distances between all images, database first.
fn cross_block(all: &DistanceMatrix, database: usize) -> DistanceMatrix {
    let count = all.queries;
    let values = (database..count)
        .flat_map(|row| {
            all.values[row * count..row * count + database]
                .iter()
                .copied()
        })
        .collect();
    DistanceMatrix {
        queries: count - database,
        database,
        values,
    }
}

fn concat_rows<const D: usize>(first: &Tensor<D>, second: &Tensor<D>) -> Tensor<D> {
    Tensor::cat(vec![first.clone(), second.clone()], 0)
}

/// Retrieval with the model: database encoded by the domain-A encoder, queries by the domain-B
/// encoder, compared position by position.
pub fn evaluate_latent(
    model: &DoubleVae,
    sets: &EvaluationSets,
    ground_truth: &GroundTruth,
    margin: f64,
    device: &Device,
) -> MethodResult {
    let database = encode_descriptors(model, Domain::A, &sets.database, ENCODE_BATCH, device);
    let queries = encode_descriptors(model, Domain::B, &sets.queries, ENCODE_BATCH, device);
    MethodResult::measure(
        "allday latent".into(),
        queries,
        database,
        concat_rows,
        |queries, database| per_position_distances(queries.clone(), database.clone()),
        sets,
        ground_truth,
        margin,
    )
}

/// Retrieval with learned channel weights over the matched layers (see [`crate::weighting`]),
/// the grids compared under horizontal offsets of up to `max_shift` columns
/// ([`ChannelWeights::distances`]).
#[allow(clippy::too_many_arguments)]
pub fn evaluate_weighted(
    model: &DoubleVae,
    sets: &EvaluationSets,
    ground_truth: &GroundTruth,
    weights: &WeightsFile,
    max_shift: usize,
    margin: f64,
    device: &Device,
) -> Result<MethodResult> {
    let database = LayerFeatures::extract(model, Domain::A, &sets.database, weights.depth, device);
    let queries = LayerFeatures::extract(model, Domain::B, &sets.queries, weights.depth, device);
    let channel_weights = matching_weights(weights, &database)?;
    Ok(MethodResult::measure(
        format!("allday weighted d{}", weights.depth),
        queries,
        database,
        LayerFeatures::concat,
        |queries, database| channel_weights.distances(queries, database, max_shift),
        sets,
        ground_truth,
        margin,
    ))
}

/// Builds the channel weights of `file`, which must have one weight per channel of every
/// layer of `features`.
fn matching_weights(file: &WeightsFile, features: &LayerFeatures) -> Result<ChannelWeights> {
    let weights: Vec<usize> = file.weights.iter().map(Vec::len).collect();
    if weights != features.channels() {
        return Err(crate::error::Error::WeightsMismatch {
            weights,
            features: features.channels(),
        });
    }
    let device = features
        .layers
        .first()
        .map(Tensor::device)
        .expect("weights files have at least one layer");
    Ok(ChannelWeights::from_values(&file.weights, &device))
}

/// Retrieval with standardised 32×24 grey thumbnails and cosine distance.
pub fn evaluate_pixels(
    sets: &EvaluationSets,
    ground_truth: &GroundTruth,
    margin: f64,
    device: &Device,
) -> Result<MethodResult> {
    let descriptors = |set: &ImageSet| match set.thumbnails() {
        Some(values) => Ok(Tensor::from_data(
            TensorData::new(values.to_vec(), [set.len(), values.len() / set.len()]),
            device,
        )),
        None => pixel_descriptors(&set.entries, set.max_pixels, device),
    };
    let database = descriptors(&sets.database)?;
    let queries = descriptors(&sets.queries)?;
    Ok(evaluate_descriptors(
        "raw pixels 32x24".into(),
        Descriptors::Global(queries),
        Descriptors::Global(database),
        sets,
        ground_truth,
        margin,
    ))
}

/// Retrieval with HOG descriptors (128×96 grey, 9 orientations, 16-pixel cells, 2×2-cell
/// blocks) and cosine distance.
pub fn evaluate_hog(
    sets: &EvaluationSets,
    ground_truth: &GroundTruth,
    margin: f64,
    device: &Device,
) -> Result<MethodResult> {
    let database = hog_descriptors(&sets.database.entries, sets.database.max_pixels, device)?;
    let queries = hog_descriptors(&sets.queries.entries, sets.queries.max_pixels, device)?;
    Ok(evaluate_descriptors(
        "HOG 128x96".into(),
        Descriptors::Global(queries),
        Descriptors::Global(database),
        sets,
        ground_truth,
        margin,
    ))
}

/// Retrieval with precomputed descriptors: global ones by cosine distance, spatial ones
/// position by position as the latent.
///
/// Panics when one side is global and the other spatial, which the callers rule out by
/// computing both with one pooling.
pub fn evaluate_descriptors(
    name: String,
    queries: Descriptors,
    database: Descriptors,
    sets: &EvaluationSets,
    ground_truth: &GroundTruth,
    margin: f64,
) -> MethodResult {
    match (queries, database) {
        (Descriptors::Global(queries), Descriptors::Global(database)) => MethodResult::measure(
            name,
            queries,
            database,
            concat_rows,
            |queries, database| cosine_distances(queries.clone(), database.clone()),
            sets,
            ground_truth,
            margin,
        ),
        (Descriptors::Spatial(queries), Descriptors::Spatial(database)) => MethodResult::measure(
            name,
            queries,
            database,
            concat_rows,
            |queries, database| per_position_distances(queries.clone(), database.clone()),
            sets,
            ground_truth,
            margin,
        ),
        _ => panic!("query and database descriptors of different kinds"),
    }
}

/// Retrieval with a pretrained network's last convolution map under each `(name, pooling)`,
/// from one pass of the network over the images; the same network describes database and
/// queries. Returns one result per pooling, in order.
pub fn evaluate_network(
    backbone: &Backbone,
    poolings: &[(String, Pooling)],
    sets: &EvaluationSets,
    ground_truth: &GroundTruth,
    margin: f64,
    device: &Device,
) -> Result<Vec<MethodResult>> {
    let kinds: Vec<Pooling> = poolings.iter().map(|(_, pooling)| *pooling).collect();
    let describe = |set: &crate::data::ImageSet| {
        network_descriptors(backbone, &kinds, &set.entries, set.max_pixels, device)
    };
    let database = describe(&sets.database)?;
    let queries = describe(&sets.queries)?;
    Ok(poolings
        .iter()
        .zip(queries.into_iter().zip(database))
        .map(|((name, _), (queries, database))| {
            evaluate_descriptors(name.clone(), queries, database, sets, ground_truth, margin)
        })
        .collect())
}

/// Retrieval with the last `depth` layers of a pretrained `backbone`, compared position by
/// position under offsets of up to `max_shift` columns (as in [`evaluate_weighted`]). Each
/// entry of `weightings` names one result and gives learned channel weights for these layers,
/// or `None` for equal weights. The network runs once for all of them.
#[allow(clippy::too_many_arguments)]
pub fn evaluate_backbone_layers(
    backbone: &Backbone,
    depth: usize,
    weightings: &[(String, Option<&WeightsFile>)],
    max_shift: usize,
    sets: &EvaluationSets,
    ground_truth: &GroundTruth,
    margin: f64,
    device: &Device,
) -> Result<Vec<MethodResult>> {
    let database = LayerFeatures::from_backbone(backbone, &sets.database, depth, device)?;
    let queries = LayerFeatures::from_backbone(backbone, &sets.queries, depth, device)?;
    weightings
        .iter()
        .map(|(name, weights)| {
            let channel_weights = match weights {
                Some(file) => matching_weights(file, &database)?,
                None => ChannelWeights::ones(&database.channels(), device),
            };
            Ok(MethodResult::measure(
                name.clone(),
                queries.clone(),
                database.clone(),
                LayerFeatures::concat,
                |queries, database| channel_weights.distances(queries, database, max_shift),
                sets,
                ground_truth,
                margin,
            ))
        })
        .collect()
}

/// Formats results as an aligned text table, one method per row. Triplet and clustering
/// columns show `-` where they were not measured.
pub fn format_table(results: &[MethodResult]) -> String {
    // The method column is as wide as the longest name, and at least as the header's default.
    let width = results
        .iter()
        .map(|result| result.name.chars().count())
        .max()
        .unwrap_or(0)
        .max(22);
    let mut table = format!(
        "{:<width$} {:>6} {:>6} {:>6} {:>7} {:>8} {:>9} {:>10} {:>11} {:>8} {:>9}\n",
        "method",
        "R@1",
        "R@5",
        "R@10",
        "PR-AUC",
        "triplet",
        "satisfied",
        "silhouette",
        "intra/inter",
        "queries",
        "database"
    );
    for result in results {
        let metrics = &result.metrics;
        let recall = |n| {
            metrics
                .recall_at(n)
                .map_or("-".to_string(), |value| format!("{value:.1}"))
        };
        let optional = |value: Option<f64>, precision: usize| {
            value.map_or("-".to_string(), |value| format!("{value:.precision$}"))
        };
        let triplets = result.triplets;
        let clustering = result.clustering;
        table.push_str(&format!(
            "{:<width$} {:>6} {:>6} {:>6} {:>7.3} {:>8} {:>9} {:>10} {:>11} {:>8} {:>9}\n",
            result.name,
            recall(1),
            recall(5),
            recall(10),
            metrics.pr_auc,
            optional(triplets.map(|t| t.loss), 4),
            optional(triplets.map(|t| 100.0 * t.satisfied), 1),
            optional(clustering.map(|c| c.silhouette), 3),
            optional(clustering.map(|c| c.intra_inter_ratio), 3),
            metrics.queries,
            metrics.database
        ));
    }
    table
}

/// Formats results as CSV with the columns of [`format_table`]; unmeasured values are empty.
pub fn format_csv(results: &[MethodResult]) -> String {
    let mut text = String::from(
        "method,recall_at_1,recall_at_5,recall_at_10,pr_auc,triplet_loss,triplets_satisfied,silhouette,intra_inter_ratio,queries,database\n",
    );
    let optional = |value: Option<f64>| value.map_or(String::new(), |value| value.to_string());
    for result in results {
        let metrics = &result.metrics;
        let triplets = result.triplets;
        let clustering = result.clustering;
        let row = [
            result.name.replace(',', " "),
            optional(metrics.recall_at(1)),
            optional(metrics.recall_at(5)),
            optional(metrics.recall_at(10)),
            metrics.pr_auc.to_string(),
            optional(triplets.map(|t| t.loss)),
            optional(triplets.map(|t| t.satisfied)),
            optional(clustering.map(|c| c.silhouette)),
            optional(clustering.map(|c| c.intra_inter_ratio)),
            metrics.queries.to_string(),
            metrics.database.to_string(),
        ];
        text.push_str(&row.join(","));
        text.push('\n');
    }
    text
}
