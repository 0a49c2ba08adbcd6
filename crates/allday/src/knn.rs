//! Exact k-nearest-neighbour search by cosine distance, as blocked matrix products.
//!
//! The database rows are L2-normalised once, so the cosine distance of a query to every row is
//! one minus a dot product. Queries are scored against blocks of database rows with one GEMM
//! per block, using the `gemm` crate that burn's flex backend also uses. The blocks run in
//! parallel on rayon's pool, and each query keeps its `k` best rows while they stream past.
//! FAISS's `IndexFlatIP` works the same way with BLAS, and neither approximates.

use rayon::prelude::*;

/// Small constant in norms against division by zero, the same as in retrieval.
const EPSILON: f32 = 1e-12;
/// Database rows per GEMM. With 100 queries the score block is 100 × 4096 × 4 bytes = 1.6 MB,
/// which stays in a core's L2 cache with its database block at 64 to 256 dimensions.
const BLOCK_ROWS: usize = 4096;

/// A database of L2-normalised descriptors `[rows, dims]`, row-major, ready to search.
#[derive(Debug, Clone)]
pub struct CosineSearch {
    database: Vec<f32>,
    dims: usize,
}

/// One result row: `(database row, cosine distance)`.
pub type Neighbour = (usize, f32);

impl CosineSearch {
    /// Takes the descriptors `[rows, dims]`, row-major, and normalises each row in place.
    ///
    /// # Panics
    ///
    /// If `dims` is 0 or `database.len()` is not a multiple of `dims`.
    pub fn new(mut database: Vec<f32>, dims: usize) -> CosineSearch {
        assert!(dims > 0, "descriptors need at least one dimension");
        assert!(
            database.len().is_multiple_of(dims),
            "{} values do not form rows of {dims} dimensions",
            database.len()
        );
        database.par_chunks_mut(dims).for_each(normalise);
        CosineSearch { database, dims }
    }

    /// Database rows.
    pub fn len(&self) -> usize {
        self.database.len() / self.dims
    }

    pub fn is_empty(&self) -> bool {
        self.database.is_empty()
    }

    pub fn dims(&self) -> usize {
        self.dims
    }

    /// Returns for each query (`[queries, dims]`, row-major) its `k` nearest database rows by
    /// cosine distance, nearest first; ties keep row order. Fewer than `k` come back when the
    /// database is smaller.
    ///
    /// # Panics
    ///
    /// If `queries.len()` is not a multiple of the database's `dims`.
    pub fn search(&self, queries: &[f32], k: usize) -> Vec<Vec<Neighbour>> {
        assert!(
            queries.len().is_multiple_of(self.dims),
            "{} query values do not form rows of {} dimensions",
            queries.len(),
            self.dims
        );
        let query_count = queries.len() / self.dims;
        if k == 0 || query_count == 0 || self.is_empty() {
            return vec![Vec::new(); query_count];
        }
        let mut queries = queries.to_vec();
        queries.chunks_mut(self.dims).for_each(normalise);

        let best = self
            .database
            .par_chunks(BLOCK_ROWS * self.dims)
            .enumerate()
            .fold(
                || vec![TopK::new(k); query_count],
                |mut best, (block, rows)| {
                    self.score_block(&queries, rows, block * BLOCK_ROWS, &mut best);
                    best
                },
            )
            .reduce(
                || vec![TopK::new(k); query_count],
                |mut left, right| {
                    for (left, right) in left.iter_mut().zip(right) {
                        left.merge(right);
                    }
                    left
                },
            );
        best.into_iter()
            .map(|top| {
                top.into_sorted()
                    .into_iter()
                    .map(|(row, similarity)| (row, 1.0 - similarity))
                    .collect()
            })
            .collect()
    }

    /// Scores all queries against the database rows `rows` (`[block, dims]`, the first of which
    /// is row `first_row`) and offers every score to the queries' `best`.
    fn score_block(&self, queries: &[f32], rows: &[f32], first_row: usize, best: &mut [TopK]) {
        let query_count = best.len();
        let block = rows.len() / self.dims;
        let dims = self.dims as isize;
        let mut scores = vec![0.0_f32; query_count * block]; // [queries, block], row-major
        // SAFETY: `scores` is `query_count × block` with row stride `block`, and `queries` is
        // `query_count × dims` with row stride `dims`. Read with column stride `dims` and row
        // stride 1, `rows` is the transposed block, `dims × block`. Every index that the strides
        // reach is in bounds, and `scores` is only written (`read_dst` is false).
        unsafe {
            gemm::gemm(
                query_count,
                block,
                self.dims,
                scores.as_mut_ptr(),
                1,
                block as isize,
                false,
                queries.as_ptr(),
                1,
                dims,
                rows.as_ptr(),
                dims,
                1,
                0.0,
                1.0,
                false,
                false,
                false,
                gemm::Parallelism::None,
            );
        }
        for (top, scores) in best.iter_mut().zip(scores.chunks_exact(block)) {
            for (offset, &score) in scores.iter().enumerate() {
                top.offer(first_row + offset, score);
            }
        }
    }
}

/// Scales a vector to unit L2 norm (a zero vector stays zero).
fn normalise(vector: &mut [f32]) {
    let norm = vector
        .iter()
        .map(|v| v * v)
        .sum::<f32>()
        .sqrt()
        .max(EPSILON);
    vector.iter_mut().for_each(|v| *v /= norm);
}

/// The `k` highest similarities seen so far, best first. Among equal similarities the lower
/// row wins, so the result does not depend on the order in which blocks arrive.
#[derive(Debug, Clone)]
struct TopK {
    k: usize,
    /// `(row, similarity)`, sorted best first, at most `k` long.
    entries: Vec<(usize, f32)>,
}

impl TopK {
    fn new(k: usize) -> TopK {
        TopK {
            k,
            entries: Vec::with_capacity(k + 1),
        }
    }

    /// Whether `(row, similarity)` ranks before `other`.
    fn better(a: (usize, f32), b: (usize, f32)) -> bool {
        a.1 > b.1 || (a.1 == b.1 && a.0 < b.0)
    }

    fn offer(&mut self, row: usize, similarity: f32) {
        let candidate = (row, similarity);
        if self.entries.len() == self.k {
            // The common case once the list is full: not better than the worst kept.
            if !Self::better(candidate, self.entries[self.k - 1]) {
                return;
            }
            self.entries.pop();
        }
        let position = self
            .entries
            .partition_point(|&kept| Self::better(kept, candidate));
        self.entries.insert(position, candidate);
    }

    fn merge(&mut self, other: TopK) {
        for (row, similarity) in other.entries {
            self.offer(row, similarity);
        }
    }

    fn into_sorted(self) -> Vec<(usize, f32)> {
        self.entries
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::index::top_k;
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    fn random_vectors(count: usize, dims: usize, seed: u64) -> Vec<f32> {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        (0..count * dims)
            .map(|_| rng.random_range(-1.0..1.0))
            .collect()
    }

    /// Blocked search against the per-pair `index::top_k` over several blocks and a partial
    /// last block: the same rows in the same order, distances within 1e-5 (the two round
    /// differently: one normalises before the dot product, the other divides after it).
    #[test]
    fn blocked_equals_per_pair() {
        let dims = 64;
        let rows = 2 * BLOCK_ROWS + 123;
        let database = random_vectors(rows, dims, 1);
        let queries = random_vectors(7, dims, 2);
        let search = CosineSearch::new(database.clone(), dims);
        let blocked = search.search(&queries, 10);
        assert_eq!(blocked.len(), 7);
        for (query, found) in queries.chunks(dims).zip(&blocked) {
            let expected = top_k(query, &database, dims, 10);
            let found_rows: Vec<usize> = found.iter().map(|(row, _)| *row).collect();
            let expected_rows: Vec<usize> = expected.iter().map(|(row, _)| *row).collect();
            assert_eq!(found_rows, expected_rows);
            for ((_, found), (_, expected)) in found.iter().zip(&expected) {
                assert!((found - expected).abs() < 1e-5, "{found} vs {expected}");
            }
        }
    }

    #[test]
    fn exact_duplicate_is_nearest_at_distance_zero() {
        let dims = 16;
        let database = random_vectors(500, dims, 3);
        let query = database[42 * dims..43 * dims].to_vec();
        let found = CosineSearch::new(database, dims).search(&query, 3);
        assert_eq!(found[0][0].0, 42);
        assert!(found[0][0].1.abs() < 1e-6, "{}", found[0][0].1);
    }

    #[test]
    fn ties_keep_row_order() {
        // Rows 0, 2 and 3 point the same way; row 1 is orthogonal.
        let database = vec![1.0, 0.0, 0.0, 1.0, 2.0, 0.0, 3.0, 0.0];
        let found = CosineSearch::new(database, 2).search(&[1.0, 0.0], 4);
        let rows: Vec<usize> = found[0].iter().map(|(row, _)| *row).collect();
        assert_eq!(rows, [0, 2, 3, 1]);
    }

    #[test]
    fn k_above_rows_returns_every_row() {
        let found =
            CosineSearch::new(random_vectors(5, 4, 4), 4).search(&random_vectors(2, 4, 5), 9);
        assert_eq!(found.len(), 2);
        assert!(found.iter().all(|rows| rows.len() == 5));
    }

    #[test]
    fn k_zero_returns_nothing() {
        let found =
            CosineSearch::new(random_vectors(5, 4, 6), 4).search(&random_vectors(2, 4, 7), 0);
        assert_eq!(found, vec![Vec::<Neighbour>::new(); 2]);
    }

    #[test]
    #[should_panic(expected = "do not form rows")]
    fn ragged_database_panics() {
        CosineSearch::new(vec![0.0; 10], 4);
    }
}
