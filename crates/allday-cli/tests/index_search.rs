//! `allday index`, `allday search`, `allday export` and `allday data fetch` end to end through
//! the binary, on generated image folders and a local HTTP server.

use std::path::Path;

mod common;
use common::{allday, stderr, stdout, write_dataset};

/// Trains a tiny model for one epoch into `root/run`; `seed` sets its initial weights.
fn train(root: &Path, seed: u64) {
    let text = format!(
        r#"
seed = {seed}

[data]
root = "{}"
domain_a = ["day"]
domain_b = ["night"]
width = 16
height = 12
train_places = "0..6"
validation_places = "6..8"

[model]
channels = [4, 8, 8]
private_blocks = 1
shared_encoder_blocks = 1
shared_decoder_blocks = 1

[training]
epochs = 1
batch_size = 3

[evaluation]
database = "day"
queries = "night"
places = "8..12"
"#,
        root.display()
    );
    std::fs::write(root.join("tiny.toml"), text).unwrap();
    let output = allday(
        &[
            "train",
            "--config",
            "tiny.toml",
            "--out",
            "run",
            "--no-progress",
        ],
        root,
    );
    assert!(output.status.success(), "train failed: {}", stderr(&output));
}

#[test]
fn index_search_export() {
    let folder = tempfile::tempdir().unwrap();
    let root = folder.path();
    write_dataset(root);
    train(root, 1);

    let output = allday(
        &[
            "index",
            "--run",
            "run",
            "--domain",
            "day",
            "--out",
            "day.index",
            "--batch-size",
            "5",
            "--export-npy",
            "day.npy",
            "day",
        ],
        root,
    );
    assert!(output.status.success(), "index failed: {}", stderr(&output));
    assert!(
        stdout(&output).contains("added 12 images"),
        "{}",
        stdout(&output)
    );
    let output = allday(
        &[
            "index",
            "--run",
            "run",
            "--domain",
            "a",
            "--out",
            "day.index",
            "day",
        ],
        root,
    );
    assert!(output.status.success(), "{}", stderr(&output));
    assert!(
        stdout(&output).contains("added 0 images, 12 already indexed"),
        "{}",
        stdout(&output)
    );

    // The export: a [12, 8] float32 .npy, a safetensors file and the paths.
    let npy = std::fs::read(root.join("day.npy")).unwrap();
    assert_eq!(&npy[..8], b"\x93NUMPY\x01\x00");
    let header_length = u16::from_le_bytes([npy[8], npy[9]]) as usize;
    let header = std::str::from_utf8(&npy[10..10 + header_length]).unwrap();
    assert!(header.contains("'shape': (12, 8)"), "{header}");
    assert_eq!(npy.len(), 10 + header_length + 12 * 8 * 4);
    let safetensors = std::fs::read(root.join("day.safetensors")).unwrap();
    let json_length = u64::from_le_bytes(safetensors[..8].try_into().unwrap()) as usize;
    let json: serde_json::Value = serde_json::from_slice(&safetensors[8..8 + json_length]).unwrap();
    assert_eq!(json["descriptors"]["dtype"], "F32");
    assert_eq!(json["descriptors"]["shape"], serde_json::json!([12, 8]));
    // The same values in both files.
    assert_eq!(&safetensors[8 + json_length..], &npy[10 + header_length..]);
    let paths = std::fs::read_to_string(root.join("day.paths.csv")).unwrap();
    assert_eq!(paths.lines().count(), 13, "{paths}");
    assert!(
        paths.lines().nth(3).unwrap().ends_with("02.jpg,2"),
        "{paths}"
    );

    // Search: queries from the night folder, ground truth by frame, re-ranked, with a grid.
    let output = allday(
        &[
            "search",
            "--index",
            "day.index",
            "--top",
            "3",
            "--rerank",
            "6",
            "--tolerance",
            "1",
            "--json",
            "--grid",
            "grid.png",
            "--tile-width",
            "32",
            "night/09.jpg",
            "night/10.jpg",
        ],
        root,
    );
    assert!(
        output.status.success(),
        "search failed: {}",
        stderr(&output)
    );
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    let queries = report["queries"].as_array().unwrap();
    assert_eq!(queries.len(), 2);
    for (query, frame) in queries.iter().zip([9i64, 10]) {
        let matches = query["matches"].as_array().unwrap();
        assert_eq!(matches.len(), 3);
        let distances: Vec<f64> = matches
            .iter()
            .map(|found| found["distance"].as_f64().unwrap())
            .collect();
        assert!(
            distances.windows(2).all(|pair| pair[0] <= pair[1]),
            "{distances:?}"
        );
        for found in matches {
            let close = (found["frame"].as_i64().unwrap() - frame).abs() <= 1;
            assert_eq!(found["correct"], serde_json::json!(close), "{found}");
        }
    }
    let grid = image::open(root.join("grid.png")).unwrap();
    // Two rows of a query and three matches; 32×24 tiles (the index's 4:3 aspect).
    assert_eq!(
        (grid.width(), grid.height()),
        (8 + 4 * (32 + 8) + 12, 8 + 2 * (24 + 18 + 8))
    );

    let output = allday(
        &["export", "--index", "day.index", "--npy", "again.npy"],
        root,
    );
    assert!(output.status.success(), "{}", stderr(&output));
    assert_eq!(std::fs::read(root.join("again.npy")).unwrap(), npy);
}

#[test]
fn index_errors_name_the_problem() {
    let folder = tempfile::tempdir().unwrap();
    let root = folder.path();
    write_dataset(root);
    train(root, 1);
    let output = allday(
        &[
            "index",
            "--run",
            "run",
            "--domain",
            "day",
            "--out",
            "day.index",
            "day",
        ],
        root,
    );
    assert!(output.status.success(), "{}", stderr(&output));

    // A second run with other weights: its checkpoint is refused by both commands.
    std::fs::rename(root.join("run"), root.join("first-run")).unwrap();
    train(root, 2);
    let state: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(root.join("first-run/checkpoints/epoch-000001/state.json"))
            .unwrap(),
    )
    .unwrap();
    let fingerprint = state["weights_fingerprint"]["vae"].as_str().unwrap();
    for args in [
        vec![
            "index",
            "--run",
            "run",
            "--domain",
            "day",
            "--out",
            "day.index",
            "day",
        ],
        vec![
            "search",
            "--index",
            "day.index",
            "--run",
            "run",
            "night/09.jpg",
        ],
    ] {
        let output = allday(&args, root);
        assert!(!output.status.success());
        let message = stderr(&output);
        assert!(
            message.contains("was built with checkpoint weights"),
            "{message}"
        );
        assert!(message.contains(fingerprint), "{message}");
    }

    let output = allday(&["search", "--index", "day", "night/09.jpg"], root);
    assert!(!output.status.success());
    assert!(
        stderr(&output).contains("manifest.json is missing"),
        "{}",
        stderr(&output)
    );

    let output = allday(
        &[
            "search",
            "--index",
            "day.index",
            "--run",
            "first-run",
            "--grid",
            "out.jpg",
            "night/09.jpg",
        ],
        root,
    );
    assert!(
        stderr(&output).contains("must end in .png"),
        "{}",
        stderr(&output)
    );
}
