//! Wall-clock timing of repeated iterations.

use std::time::Instant;

use anyhow::Result;
use serde_json::{Value, json};

/// Runs `iteration` `warmup` times untimed, then `iterations` times timed, and returns the
/// seconds of each timed run. `iteration` must block until its result is on the host.
pub fn time_iterations(
    warmup: usize,
    iterations: usize,
    mut iteration: impl FnMut() -> Result<()>,
) -> Result<Vec<f64>> {
    for _ in 0..warmup {
        iteration()?;
    }
    let mut seconds = Vec::with_capacity(iterations);
    for _ in 0..iterations {
        let started = Instant::now();
        iteration()?;
        seconds.push(started.elapsed().as_secs_f64());
    }
    Ok(seconds)
}

/// The JSON report of one run: timed seconds, parameter count and the backend's name.
pub fn report(seconds: &[f64], parameters: usize, extra: Value) -> Value {
    let mut report = json!({
        "implementation": "allday",
        "backend": allday::backend::backend_name(),
        "threads": rayon_threads(),
        "parameters": parameters,
        "seconds": seconds,
    });
    if let (Some(report), Value::Object(extra)) = (report.as_object_mut(), extra) {
        report.extend(extra);
    }
    report
}

/// Rayon's thread count as the environment sets it, which is what flex computes with.
fn rayon_threads() -> usize {
    std::env::var("RAYON_NUM_THREADS")
        .ok()
        .and_then(|value| value.parse().ok())
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
}
