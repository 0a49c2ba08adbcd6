//! Exact top-k search over random descriptors, the counterpart of FAISS's flat indexes.

use allday::knn::CosineSearch;
use anyhow::{Result, ensure};
use clap::Args;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde_json::{Value, json};

use crate::timing::{report, time_iterations};

#[derive(Args, Clone)]
pub struct SearchArgs {
    /// Database descriptors.
    #[arg(long, default_value_t = 100_000)]
    pub rows: usize,
    /// Dimensions of a descriptor (the latent channels: 256 at the full sizes).
    #[arg(long, default_value_t = 256)]
    pub dims: usize,
    /// Queries per search call.
    #[arg(long, default_value_t = 100)]
    pub queries: usize,
    /// Neighbours returned per query.
    #[arg(long, default_value_t = 10)]
    pub k: usize,
    #[arg(long, default_value_t = 1)]
    pub warmup: usize,
    #[arg(long, default_value_t = 5)]
    pub iterations: usize,
}

/// Uniform values in [-1, 1), `[count, dims]` row-major.
fn random_vectors(count: usize, dims: usize, seed: u64) -> Vec<f32> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    (0..count * dims)
        .map(|_| rng.random_range(-1.0..1.0))
        .collect()
}

/// Times `CosineSearch::search` of `queries` random queries against `rows` random descriptors;
/// building the index (normalising the rows) is timed once and reported apart.
pub fn run(args: &SearchArgs) -> Result<Value> {
    ensure!(args.dims > 0, "--dims must be positive");
    let database = random_vectors(args.rows, args.dims, 1);
    let queries = random_vectors(args.queries, args.dims, 2);
    let started = std::time::Instant::now();
    let search = CosineSearch::new(database, args.dims);
    let build_seconds = started.elapsed().as_secs_f64();
    let seconds = time_iterations(args.warmup, args.iterations, || {
        let found = search.search(&queries, args.k);
        ensure!(found.len() == args.queries, "one result list per query");
        Ok(())
    })?;
    Ok(report(
        &seconds,
        0,
        json!({
            "rows": args.rows,
            "dims": args.dims,
            "queries": args.queries,
            "k": args.k,
            "build_seconds": build_seconds,
        }),
    ))
}
