//! Retrieval metrics: ground truth, Recall@N, PR-AUC, triplet loss and clustering.
//!
//! Recall@N is the share of queries with at least one true match among their N nearest database
//! images. PR-AUC follows VPR-Bench. Each query keeps only its nearest database image, and a
//! threshold sweeps over those distances from the most to the least confident. Precision is
//! correct accepted / accepted, recall is correct accepted / all queries, and the area is the
//! trapezoid sum that starts at recall 0 with the precision of the most confident query. It
//! therefore never exceeds Recall@1.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};

use crate::data::ImageEntry;
use crate::error::{Error, Result};
use crate::retrieval::DistanceMatrix;

/// The rule that decides which database images are true matches of a query.
#[derive(Debug, Clone, PartialEq)]
pub enum GroundTruth {
    /// Frame-synchronised folders: a database image matches when its frame index is within
    /// `tolerance` of the query's.
    Frames { tolerance: usize },
    /// Explicit pairs from a CSV file: query path → matching database paths.
    Files {
        /// The CSV file, for messages.
        source: PathBuf,
        pairs: HashMap<PathBuf, HashSet<PathBuf>>,
    },
}

impl GroundTruth {
    /// Reads a CSV ground truth. Each line is `query,match[,match…]` and paths are relative to
    /// the CSV file's folder unless absolute. A first line whose first field is exactly `query`
    /// is a header.
    pub fn from_csv(path: &Path) -> Result<GroundTruth> {
        let text = std::fs::read_to_string(path).map_err(|source| Error::io(path, source))?;
        let base = path.parent().unwrap_or(Path::new("."));
        let mut pairs: HashMap<PathBuf, HashSet<PathBuf>> = HashMap::new();
        for (number, line) in text.lines().enumerate() {
            let line = line.trim();
            let is_header = number == 0
                && line
                    .split(',')
                    .next()
                    .is_some_and(|field| field.trim().eq_ignore_ascii_case("query"));
            if line.is_empty() || is_header {
                continue;
            }
            let mut fields = line.split(',').map(str::trim);
            let query = fields.next().filter(|field| !field.is_empty());
            let matches: Vec<&str> = fields.filter(|field| !field.is_empty()).collect();
            let Some(query) = query.filter(|_| !matches.is_empty()) else {
                return Err(Error::GroundTruth {
                    path: path.to_path_buf(),
                    line: number + 1,
                    message: format!("expected `query,match[,match…]`, found `{line}`"),
                });
            };
            pairs
                .entry(normalise_path(&base.join(query)))
                .or_default()
                .extend(matches.iter().map(|name| normalise_path(&base.join(name))));
        }
        if pairs.is_empty() {
            return Err(Error::GroundTruth {
                path: path.to_path_buf(),
                line: 0,
                message: "no query rows".into(),
            });
        }
        Ok(GroundTruth::Files {
            source: path.to_path_buf(),
            pairs,
        })
    }

    /// Checks that a CSV ground truth lists the query images: an error when it lists none of
    /// them (every query would count as a miss), a warning naming the first missing one when
    /// it lists only some. Frame ground truth always passes.
    pub fn check_queries(&self, queries: &[ImageEntry]) -> Result<()> {
        let GroundTruth::Files { source, pairs } = self else {
            return Ok(());
        };
        let missing: Vec<&ImageEntry> = queries
            .iter()
            .filter(|query| !pairs.contains_key(&normalise_path(&query.path)))
            .collect();
        if !queries.is_empty() && missing.len() == queries.len() {
            return Err(Error::GroundTruth {
                path: source.clone(),
                line: 0,
                message: format!(
                    "none of the {} query images is listed (first query: {}); list them as `query,match` with paths relative to the CSV file's folder",
                    queries.len(),
                    queries[0].path.display()
                ),
            });
        }
        if let Some(first) = missing.first() {
            tracing::warn!(
                "{} of {} query images are not listed in {} and count as misses, e.g. {}",
                missing.len(),
                queries.len(),
                source.display(),
                first.path.display()
            );
        }
        Ok(())
    }

    /// Returns whether `candidate` is a true match of `query`.
    pub fn is_match(&self, query: &ImageEntry, candidate: &ImageEntry) -> bool {
        match self {
            GroundTruth::Frames { tolerance } => {
                query.frame.abs_diff(candidate.frame) <= *tolerance
            }
            GroundTruth::Files { pairs, .. } => pairs
                .get(&normalise_path(&query.path))
                .is_some_and(|matches| matches.contains(&normalise_path(&candidate.path))),
        }
    }
}

/// Returns the canonical form of a path where it exists, so that the same file compares equal
/// however it was named.
fn normalise_path(path: &Path) -> PathBuf {
    path.canonicalize().unwrap_or_else(|_| path.to_path_buf())
}

/// Retrieval figures of one descriptor on one query and database set.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct RetrievalMetrics {
    /// (N, Recall@N in percent).
    pub recall: Vec<(usize, f64)>,
    pub pr_auc: f64,
    pub queries: usize,
    pub database: usize,
}

impl RetrievalMetrics {
    /// Recall@N in percent for one of the computed N.
    pub fn recall_at(&self, n: usize) -> Option<f64> {
        self.recall
            .iter()
            .find(|(k, _)| *k == n)
            .map(|(_, value)| *value)
    }
}

/// Computes Recall@N for each N in `ns` and PR-AUC.
pub fn evaluate(
    distances: &DistanceMatrix,
    queries: &[ImageEntry],
    database: &[ImageEntry],
    ground_truth: &GroundTruth,
    ns: &[usize],
) -> RetrievalMetrics {
    assert_eq!(
        distances.queries,
        queries.len(),
        "one distance row per query"
    );
    assert_eq!(
        distances.database,
        database.len(),
        "one distance column per database image"
    );
    let rankings: Vec<Vec<usize>> = (0..queries.len())
        .map(|query| distances.ranking(query))
        .collect();

    let recall = ns
        .iter()
        .map(|&n| {
            let hits = rankings
                .iter()
                .enumerate()
                .filter(|(query, ranking)| {
                    ranking.iter().take(n).any(|&candidate| {
                        ground_truth.is_match(&queries[*query], &database[candidate])
                    })
                })
                .count();
            (n, 100.0 * hits as f64 / queries.len().max(1) as f64)
        })
        .collect();

    let nearest: Vec<(f32, bool)> = rankings
        .iter()
        .enumerate()
        .map(|(query, ranking)| {
            let best = ranking[0];
            (
                distances.row(query)[best],
                ground_truth.is_match(&queries[query], &database[best]),
            )
        })
        .collect();

    RetrievalMetrics {
        recall,
        pr_auc: pr_auc(&nearest),
        queries: queries.len(),
        database: database.len(),
    }
}

/// PR-AUC from each query's nearest-match distance and whether that match is correct.
///
/// Lower distance means more confident. Every query is assumed to have a true match, so the
/// recall denominator is the number of queries.
pub fn pr_auc(nearest: &[(f32, bool)]) -> f64 {
    if nearest.is_empty() {
        return 0.0;
    }
    let mut sorted = nearest.to_vec();
    sorted.sort_by(|a, b| a.0.total_cmp(&b.0));
    let total = sorted.len() as f64;
    let mut area = 0.0;
    let mut correct = 0usize;
    let mut previous_recall = 0.0;
    let mut previous_precision = if sorted[0].1 { 1.0 } else { 0.0 };
    let mut accepted = 0usize;
    while accepted < sorted.len() {
        // Queries with equal distances pass the threshold together.
        let threshold = sorted[accepted].0;
        while accepted < sorted.len() && sorted[accepted].0 == threshold {
            correct += usize::from(sorted[accepted].1);
            accepted += 1;
        }
        let precision = correct as f64 / accepted as f64;
        let recall = correct as f64 / total;
        area += (recall - previous_recall) * (precision + previous_precision) / 2.0;
        previous_recall = recall;
        previous_precision = precision;
    }
    area
}

/// How well a descriptor groups the images of each place, over images of several places.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct Clustering {
    /// Mean silhouette score with places as clusters, in [−1, 1]; higher is better. An image
    /// that is the only one of its place scores 0, as in scikit-learn.
    pub silhouette: f64,
    /// Mean distance between images of the same place divided by the mean distance between
    /// images of different places; lower is better.
    pub intra_inter_ratio: f64,
}

/// Computes the silhouette score and the intra/inter distance ratio from a square distance
/// matrix between `labels.len()` images, row-major, where `labels[i]` is image i's place.
pub fn clustering(distances: &[f32], labels: &[usize]) -> Clustering {
    let count = labels.len();
    assert_eq!(distances.len(), count * count, "a square distance matrix");
    let mut silhouettes = 0.0;
    let (mut intra_sum, mut intra_count, mut inter_sum, mut inter_count) =
        (0.0, 0usize, 0.0, 0usize);
    for i in 0..count {
        // Sum and count of distances from image i to each place.
        let mut per_place: HashMap<usize, (f64, usize)> = HashMap::new();
        for j in (0..count).filter(|&j| j != i) {
            let distance = f64::from(distances[i * count + j]);
            let entry = per_place.entry(labels[j]).or_default();
            entry.0 += distance;
            entry.1 += 1;
            if labels[j] == labels[i] {
                intra_sum += distance;
                intra_count += 1;
            } else {
                inter_sum += distance;
                inter_count += 1;
            }
        }
        let Some(&(own_sum, own_count)) = per_place.get(&labels[i]) else {
            continue; // the only image of its place: silhouette 0
        };
        let a = own_sum / own_count as f64;
        let b = per_place
            .iter()
            .filter(|(place, _)| **place != labels[i])
            .map(|(_, (sum, n))| sum / *n as f64)
            .fold(f64::INFINITY, f64::min);
        if b.is_finite() && a.max(b) > 0.0 {
            silhouettes += (b - a) / a.max(b);
        }
    }
    Clustering {
        silhouette: silhouettes / count.max(1) as f64,
        intra_inter_ratio: (intra_sum / intra_count.max(1) as f64)
            / (inter_sum / inter_count.max(1) as f64),
    }
}

/// Triplet figures of a descriptor over every triplet of a labelled image set.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct TripletMetrics {
    /// Mean hinge loss max(0, margin + d(a, p) − d(a, n)).
    pub loss: f64,
    /// Share of triplets with d(a, p) < d(a, n), 0 to 1.
    pub satisfied: f64,
    pub triplets: usize,
}

/// Measures the triplet loss over every triplet of a pooled set, without sampling.
///
/// `distances` is the square, row-major distance matrix between `frames.len()` images, the
/// first `domain_a` of them from domain A (the database) and the rest from domain B (the
/// queries). Every domain-A image is an anchor, every domain-B image of the same frame a
/// positive, and every image of either domain more than `tolerance` frames away a negative.
/// Returns `None` when no triplet exists.
pub fn triplet_metrics(
    distances: &[f32],
    frames: &[usize],
    domain_a: usize,
    tolerance: usize,
    margin: f64,
) -> Option<TripletMetrics> {
    let count = frames.len();
    assert_eq!(distances.len(), count * count, "a square distance matrix");
    let (mut loss, mut satisfied, mut triplets) = (0.0, 0usize, 0usize);
    for anchor in 0..domain_a {
        let row = &distances[anchor * count..(anchor + 1) * count];
        let negatives: Vec<f64> = (0..count)
            .filter(|&other| frames[other].abs_diff(frames[anchor]) > tolerance)
            .map(|other| f64::from(row[other]))
            .collect();
        for positive in (domain_a..count).filter(|&other| frames[other] == frames[anchor]) {
            let positive = f64::from(row[positive]);
            for negative in &negatives {
                loss += (margin + positive - negative).max(0.0);
                satisfied += usize::from(positive < *negative);
                triplets += 1;
            }
        }
    }
    (triplets > 0).then(|| TripletMetrics {
        loss: loss / triplets as f64,
        satisfied: satisfied as f64 / triplets as f64,
        triplets,
    })
}

/// Writes the `top` nearest database images of every query as CSV:
/// `query,rank,database,distance,correct`.
pub fn write_ranked_matches(
    path: &Path,
    distances: &DistanceMatrix,
    queries: &[ImageEntry],
    database: &[ImageEntry],
    ground_truth: &GroundTruth,
    top: usize,
) -> Result<()> {
    let mut text = String::from("query,rank,database,distance,correct\n");
    for (query, entry) in queries.iter().enumerate() {
        for (rank, &candidate) in distances.ranking(query).iter().take(top).enumerate() {
            text.push_str(&format!(
                "{},{},{},{:.6},{}\n",
                entry.path.display(),
                rank + 1,
                database[candidate].path.display(),
                distances.row(query)[candidate],
                ground_truth.is_match(entry, &database[candidate])
            ));
        }
    }
    crate::io::write_atomic(path, text.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

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
    fn recall_with_frame_tolerance_by_hand() {
        // Three queries (frames 0, 10, 20) against five database images (frames 0, 5, 10, 15, 21).
        let queries = entries(&[0, 10, 20]);
        let database = entries(&[0, 5, 10, 15, 21]);
        #[rustfmt::skip]
        let values = vec![
            // Query 0: nearest is frame 5 (wrong), then frame 0 (right).
            0.2, 0.1, 0.9, 0.9, 0.9,
            // Query 10: nearest is frame 10 (right).
            0.9, 0.9, 0.1, 0.5, 0.9,
            // Query 20: nearest is frame 21 (right only with tolerance ≥ 1).
            0.9, 0.9, 0.9, 0.5, 0.3,
        ];
        let distances = DistanceMatrix {
            queries: 3,
            database: 5,
            values,
        };

        let strict = evaluate(
            &distances,
            &queries,
            &database,
            &GroundTruth::Frames { tolerance: 0 },
            &[1, 2, 5],
        );
        // Query 20 has no database image at exactly frame 20.
        assert_eq!(
            strict.recall,
            [(1, 100.0 / 3.0), (2, 200.0 / 3.0), (5, 200.0 / 3.0)]
        );

        let tolerant = evaluate(
            &distances,
            &queries,
            &database,
            &GroundTruth::Frames { tolerance: 2 },
            &[1, 2],
        );
        assert_eq!(tolerant.recall, [(1, 200.0 / 3.0), (2, 100.0)]);
        assert_eq!((tolerant.queries, tolerant.database), (3, 5));
    }

    #[test]
    fn pr_auc_by_hand() {
        // Sorted by distance: correct, wrong, correct.
        // Points (recall, precision): start (0, 1), (1/3, 1), (1/3, 1/2), (2/3, 2/3).
        // Area: 1/3·1 + 0 + 1/3·(1/2 + 2/3)/2 = 1/3 + 7/36 = 19/36.
        let area = pr_auc(&[(0.1, true), (0.3, true), (0.2, false)]);
        assert!((area - 19.0 / 36.0).abs() < 1e-12, "{area}");
        assert_eq!(pr_auc(&[(0.1, true), (0.2, true)]), 1.0);
        assert_eq!(pr_auc(&[(0.1, false)]), 0.0);
    }

    #[test]
    fn pr_auc_never_exceeds_recall_at_one() {
        let nearest = [
            (0.5, false),
            (0.1, true),
            (0.4, true),
            (0.2, false),
            (0.3, true),
        ];
        let recall_at_one = 3.0 / 5.0;
        assert!(pr_auc(&nearest) <= recall_at_one);
    }

    #[test]
    fn clustering_by_hand() {
        // Four images, places [0, 0, 1, 1]. Same-place distances 1, different-place distances 3
        // except d(0, 2) = d(2, 0) = 2.
        #[rustfmt::skip]
        let distances = [
            0.0, 1.0, 2.0, 3.0,
            1.0, 0.0, 3.0, 3.0,
            2.0, 3.0, 0.0, 1.0,
            3.0, 3.0, 1.0, 0.0,
        ];
        let result = clustering(&distances, &[0, 0, 1, 1]);
        // Image 0: a = 1, b = mean(2, 3) = 2.5, s = 0.6. Image 1: a = 1, b = 3, s = 2/3.
        // Image 2: a = 1, b = 2.5, s = 0.6. Image 3: a = 1, b = 3, s = 2/3.
        let expected = (0.6 + 2.0 / 3.0 + 0.6 + 2.0 / 3.0) / 4.0;
        assert!((result.silhouette - expected).abs() < 1e-9, "{result:?}");
        // Intra: 1 over 4 ordered pairs; inter: (2 + 3 + 3 + 3) · 2 / 8 = 2.75.
        assert!(
            (result.intra_inter_ratio - 1.0 / 2.75).abs() < 1e-9,
            "{result:?}"
        );
    }

    #[test]
    fn triplet_metrics_by_hand() {
        // Images: A0 (frame 0), A1 (frame 5), then B0 (frame 0), B1 (frame 5). Tolerance 2.
        #[rustfmt::skip]
        let distances = [
            0.0, 0.9, 0.2, 0.5,
            0.9, 0.0, 0.7, 0.6,
            0.2, 0.7, 0.0, 0.4,
            0.5, 0.6, 0.4, 0.0,
        ];
        let frames = [0, 5, 0, 5];
        let metrics = triplet_metrics(&distances, &frames, 2, 2, 0.1).unwrap();
        // Anchor A0, positive B0 (0.2), negatives A1 (0.9) and B1 (0.5): losses 0 and 0.
        // Anchor A1, positive B1 (0.6), negatives A0 (0.9) and B0 (0.7): losses 0 and 0 (up to
        // rounding: 0.1 + 0.6 − 0.7 is 0 only in exact arithmetic).
        assert_eq!(metrics.triplets, 4);
        assert_eq!(metrics.satisfied, 1.0);
        assert!(metrics.loss.abs() < 1e-6, "{metrics:?}");

        // With margin 0.25, anchor A1 against B0 loses 0.25 + 0.6 − 0.7 = 0.15, and anchor A0
        // against B1 loses 0.25 + 0.2 − 0.5 = −0.05 → 0.
        let metrics = triplet_metrics(&distances, &frames, 2, 2, 0.25).unwrap();
        assert!((metrics.loss - 0.15 / 4.0).abs() < 1e-6, "{metrics:?}");

        // A tolerance that covers every frame leaves no negative.
        assert_eq!(triplet_metrics(&distances, &frames, 2, 5, 0.1), None);
    }

    #[test]
    fn csv_ground_truth_resolves_relative_paths() {
        let folder = tempfile::tempdir().unwrap();
        let csv = folder.path().join("pairs.csv");
        std::fs::write(&csv, "query,match\nnight/a.jpg,day/x.jpg,day/y.jpg\n").unwrap();
        let truth = GroundTruth::from_csv(&csv).unwrap();
        let query = ImageEntry {
            path: folder.path().join("night/a.jpg"),
            frame: 0,
        };
        let good = ImageEntry {
            path: folder.path().join("day/y.jpg"),
            frame: 7,
        };
        let bad = ImageEntry {
            path: folder.path().join("day/z.jpg"),
            frame: 0,
        };
        assert!(truth.is_match(&query, &good));
        assert!(!truth.is_match(&query, &bad));
    }

    #[test]
    fn csv_ground_truth_keeps_query_named_file() {
        let folder = tempfile::tempdir().unwrap();
        let csv = folder.path().join("pairs.csv");
        std::fs::write(&csv, "query0008.png,db0008.png\n").unwrap();
        let truth = GroundTruth::from_csv(&csv).unwrap();
        let query = ImageEntry {
            path: folder.path().join("query0008.png"),
            frame: 0,
        };
        let candidate = ImageEntry {
            path: folder.path().join("db0008.png"),
            frame: 0,
        };
        assert!(truth.is_match(&query, &candidate));
    }

    #[test]
    fn csv_ground_truth_listing_no_query_rejected() {
        let folder = tempfile::tempdir().unwrap();
        let csv = folder.path().join("pairs.csv");
        std::fs::write(&csv, "index,day,night\n0,day/0.jpg,night/0.jpg\n").unwrap();
        let truth = GroundTruth::from_csv(&csv).unwrap();
        let queries = entries(&[0, 1]);
        let error = truth.check_queries(&queries).unwrap_err();
        assert!(
            error.to_string().contains("none of the 2 query images"),
            "{error}"
        );
    }

    #[test]
    fn csv_ground_truth_rejects_row_without_match() {
        let folder = tempfile::tempdir().unwrap();
        let csv = folder.path().join("pairs.csv");
        std::fs::write(&csv, "night/a.jpg,day/x.jpg\nnight/b.jpg\n").unwrap();
        let error = GroundTruth::from_csv(&csv).unwrap_err();
        let message = error.to_string();
        assert!(
            message.contains("pairs.csv") && message.contains("line 2"),
            "{message}"
        );
    }
}
pub mod run;
