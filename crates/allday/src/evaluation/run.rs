//! Cross-domain retrieval on a query and a database set, for the model and the pixel baseline
//! through the same metrics.

use std::path::Path;

use burn::prelude::*;

use crate::baseline::pixel_descriptors;
use crate::config::PlaceRange;
use crate::data::{ImageSet, LoadOptions};
use crate::error::Result;
use crate::evaluation::{GroundTruth, RetrievalMetrics, evaluate};
use crate::model::{Domain, DoubleVae};
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
    /// Loads the places `places` of a database and a query folder at the model's input size.
    pub fn load(
        database: &Path,
        queries: &Path,
        places: PlaceRange,
        width: usize,
        height: usize,
        options: LoadOptions,
    ) -> Result<EvaluationSets> {
        let load =
            |folder: &Path| ImageSet::load(&[folder.to_path_buf()], places, width, height, options);
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
    pub distances: DistanceMatrix,
    pub metrics: RetrievalMetrics,
}

impl MethodResult {
    /// Measures Recall@1/5/10 and PR-AUC of a distance matrix over `sets`.
    fn new(
        name: String,
        distances: DistanceMatrix,
        sets: &EvaluationSets,
        ground_truth: &GroundTruth,
    ) -> Self {
        let metrics = evaluate(
            &distances,
            &sets.queries.entries,
            &sets.database.entries,
            ground_truth,
            &RECALL_AT,
        );
        MethodResult {
            name,
            distances,
            metrics,
        }
    }
}

/// Retrieval with the model: database encoded by the domain-A encoder, queries by the domain-B
/// encoder, compared position by position.
pub fn evaluate_latent(
    model: &DoubleVae,
    sets: &EvaluationSets,
    ground_truth: &GroundTruth,
    device: &Device,
) -> MethodResult {
    let database = encode_descriptors(model, Domain::A, &sets.database, ENCODE_BATCH, device);
    let queries = encode_descriptors(model, Domain::B, &sets.queries, ENCODE_BATCH, device);
    let distances = per_position_distances(queries, database);
    MethodResult::new("allday latent".into(), distances, sets, ground_truth)
}

/// Retrieval with learned channel weights over the matched layers (see [`crate::weighting`]).
pub fn evaluate_weighted(
    model: &DoubleVae,
    sets: &EvaluationSets,
    ground_truth: &GroundTruth,
    weights: &WeightsFile,
    device: &Device,
) -> MethodResult {
    let database = LayerFeatures::extract(model, Domain::A, &sets.database, weights.depth, device);
    let queries = LayerFeatures::extract(model, Domain::B, &sets.queries, weights.depth, device);
    let distances =
        ChannelWeights::from_values(&weights.weights, device).distances(&queries, &database);
    let metrics = evaluate(
        &distances,
        &sets.queries.entries,
        &sets.database.entries,
        ground_truth,
        &RECALL_AT,
    );
    MethodResult {
        name: format!("allday weighted d{}", weights.depth),
        distances,
        metrics,
    }
}

/// Retrieval with standardised 32×24 grey thumbnails and cosine distance.
pub fn evaluate_pixels(
    sets: &EvaluationSets,
    ground_truth: &GroundTruth,
    device: &Device,
) -> Result<MethodResult> {
    let database = pixel_descriptors(&sets.database.entries, sets.database.max_pixels, device)?;
    let queries = pixel_descriptors(&sets.queries.entries, sets.queries.max_pixels, device)?;
    let distances = cosine_distances(queries, database);
    Ok(MethodResult::new(
        "raw pixels 32x24".into(),
        distances,
        sets,
        ground_truth,
    ))
}

/// Formats results as an aligned text table, one method per row.
pub fn format_table(results: &[MethodResult]) -> String {
    let mut table = format!(
        "{:<20} {:>7} {:>7} {:>7} {:>7} {:>8} {:>9}\n",
        "method", "R@1", "R@5", "R@10", "PR-AUC", "queries", "database"
    );
    for result in results {
        let metrics = &result.metrics;
        let recall = |n| {
            metrics
                .recall_at(n)
                .map_or("-".to_string(), |value| format!("{value:.1}"))
        };
        table.push_str(&format!(
            "{:<20} {:>7} {:>7} {:>7} {:>7.3} {:>8} {:>9}\n",
            result.name,
            recall(1),
            recall(5),
            recall(10),
            metrics.pr_auc,
            metrics.queries,
            metrics.database
        ));
    }
    table
}
