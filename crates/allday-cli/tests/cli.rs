//! The `allday` binary end to end on generated image folders, and its error messages.

use std::path::{Path, PathBuf};

mod common;
use common::{allday, stderr, stdout, write_dataset};

fn write_config(root: &Path) -> PathBuf {
    let path = root.join("tiny.toml");
    let text = format!(
        r#"
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
epochs = 2
batch_size = 3
save_every = 1

[evaluation]
database = "day"
queries = "night"
places = "8..12"
tolerance = 0
"#,
        root.display()
    );
    std::fs::write(&path, text).unwrap();
    path
}

#[test]
fn train_eval_translate_end_to_end() {
    let folder = tempfile::tempdir().unwrap();
    let root = folder.path();
    write_dataset(root);
    let config = write_config(root);

    let output = allday(
        &[
            "train",
            "--config",
            config.to_str().unwrap(),
            "--out",
            "run",
            "--no-progress",
        ],
        root,
    );
    assert!(output.status.success(), "train failed: {}", stderr(&output));
    for file in [
        "config.toml",
        "metrics.csv",
        "train.log",
        "checkpoints/epoch-000002/state.json",
    ] {
        assert!(root.join("run").join(file).exists(), "missing {file}");
    }
    let metrics = std::fs::read_to_string(root.join("run/metrics.csv")).unwrap();
    assert_eq!(
        metrics.lines().count(),
        3,
        "header and two epochs:\n{metrics}"
    );

    let output = allday(
        &[
            "eval",
            "--run",
            "run",
            "--matches",
            "matches.csv",
            "--json",
            "eval.json",
        ],
        root,
    );
    assert!(output.status.success(), "eval failed: {}", stderr(&output));
    let table = stdout(&output);
    assert!(table.contains("allday latent"), "{table}");
    assert!(table.contains("raw pixels 32x24"), "{table}");
    let matches = std::fs::read_to_string(root.join("matches.csv")).unwrap();
    // Header plus the 4 database images of each of the 4 queries (fewer than 10).
    assert_eq!(matches.lines().count(), 1 + 4 * 4, "{matches}");
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(root.join("eval.json")).unwrap()).unwrap();
    assert_eq!(report["methods"]["allday latent"]["queries"], 4);

    let output = allday(
        &[
            "translate",
            "--run",
            "run",
            "--out",
            "grid.png",
            "--scale",
            "1",
        ],
        root,
    );
    assert!(
        output.status.success(),
        "translate failed: {}",
        stderr(&output)
    );
    let grid = image::open(root.join("grid.png")).unwrap();
    assert_eq!(
        (grid.width(), grid.height()),
        (4 * 16 + 5 * 4, 2 * 12 + 3 * 4)
    );

    // Stage 2: channel weights on the frozen encoders, then a weighted row in the table.
    let output = allday(
        &[
            "train-triplet",
            "--from",
            "run",
            "--epochs",
            "2",
            "--depth",
            "2",
            "--out",
            "weights.json",
        ],
        root,
    );
    assert!(
        output.status.success(),
        "train-triplet failed: {}",
        stderr(&output)
    );
    let weights: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(root.join("weights.json")).unwrap()).unwrap();
    assert_eq!(weights["depth"], 2);
    assert_eq!(
        weights["weights"][0].as_array().unwrap().len(),
        8,
        "latent channels"
    );
    assert_eq!(weights["history"].as_array().unwrap().len(), 2);
    let output = allday(&["eval", "--run", "run", "--weights", "weights.json"], root);
    assert!(
        output.status.success(),
        "weighted eval failed: {}",
        stderr(&output)
    );
    assert!(
        stdout(&output).contains("allday weighted d2"),
        "{}",
        stdout(&output)
    );

    // The table as CSV: a header and one row per method, with triplet and clustering columns.
    let output = allday(&["eval", "--run", "run", "--csv", "table.csv"], root);
    assert!(
        output.status.success(),
        "eval --csv failed: {}",
        stderr(&output)
    );
    let table = std::fs::read_to_string(root.join("table.csv")).unwrap();
    let lines: Vec<&str> = table.lines().collect();
    assert_eq!(lines.len(), 3, "{table}");
    assert!(
        lines[0].contains("triplet_loss,triplets_satisfied,silhouette"),
        "{table}"
    );
    assert_eq!(lines[1].split(',').count(), 11, "{table}");

    // Channel importance with its chart, one PNG per matched layer.
    let output = allday(
        &[
            "channels",
            "--run",
            "run",
            "--weights",
            "weights.json",
            "--top",
            "3",
        ],
        root,
    );
    assert!(
        output.status.success(),
        "channels failed: {}",
        stderr(&output)
    );
    for layer in [0, 1] {
        let chart = image::open(root.join(format!("weights-layer{layer}.png"))).unwrap();
        assert_eq!((chart.width(), chart.height()), (1000, 1100));
    }

    // A depth sweep of two depths writes its CSV (header and 2 × 1 epochs) and its chart.
    let output = allday(
        &[
            "depth-sweep",
            "--from",
            "run",
            "--max-depth",
            "2",
            "--epochs",
            "1",
            "--out",
            "sweep",
        ],
        root,
    );
    assert!(
        output.status.success(),
        "depth-sweep failed: {}",
        stderr(&output)
    );
    let sweep = std::fs::read_to_string(root.join("sweep/depth-sweep.csv")).unwrap();
    assert_eq!(sweep.lines().count(), 3, "{sweep}");
    assert!(root.join("sweep/depth-sweep.png").is_file());

    // Saliency of two channels for one night image: the image beside its heat map, scaled.
    let output = allday(
        &[
            "saliency",
            "--run",
            "run",
            "--channel",
            "0",
            "--channel",
            "5",
            "--scale",
            "2",
            "--out",
            "saliency",
            "night/10.jpg",
        ],
        root,
    );
    assert!(
        output.status.success(),
        "saliency failed: {}",
        stderr(&output)
    );
    for channel in [0, 5] {
        let map = image::open(root.join(format!("saliency/10-channel-{channel}.png"))).unwrap();
        assert_eq!((map.width(), map.height()), (2 * 16 * 2, 12 * 2));
    }
    let output = allday(
        &["saliency", "--run", "run", "--channel", "8", "night/10.jpg"],
        root,
    );
    assert!(!output.status.success());
    assert!(
        stderr(&output).contains("channel 8 does not exist"),
        "{}",
        stderr(&output)
    );

    // Resuming a finished run with more epochs continues from epoch 2.
    let output = allday(
        &["train", "--resume", "run", "--epochs", "3", "--no-progress"],
        root,
    );
    assert!(
        output.status.success(),
        "resume failed: {}",
        stderr(&output)
    );
    assert!(root.join("run/checkpoints/epoch-000003").exists());
    let metrics = std::fs::read_to_string(root.join("run/metrics.csv")).unwrap();
    assert_eq!(metrics.lines().count(), 4, "{metrics}");

    // A second fresh run into the same directory is refused.
    let output = allday(
        &[
            "train",
            "--config",
            config.to_str().unwrap(),
            "--out",
            "run",
            "--no-progress",
        ],
        root,
    );
    assert!(!output.status.success());
    assert!(stderr(&output).contains("--resume"), "{}", stderr(&output));
}

#[test]
fn missing_data_folder_is_named() {
    let folder = tempfile::tempdir().unwrap();
    let root = folder.path();
    write_dataset(root);
    let config = write_config(root);
    let output = allday(
        &[
            "train",
            "--config",
            config.to_str().unwrap(),
            "--data",
            "/nonexistent/gardens",
            "--out",
            "run",
        ],
        root,
    );
    assert!(!output.status.success());
    let message = stderr(&output);
    assert!(message.contains("/nonexistent/gardens/day"), "{message}");
    assert!(!message.contains("panicked"), "{message}");
}

#[test]
fn unreadable_image_is_named() {
    let folder = tempfile::tempdir().unwrap();
    let root = folder.path();
    write_dataset(root);
    std::fs::write(root.join("night/03.jpg"), b"not a jpeg").unwrap();
    let config = write_config(root);
    let output = allday(
        &[
            "train",
            "--config",
            config.to_str().unwrap(),
            "--out",
            "run",
        ],
        root,
    );
    assert!(!output.status.success());
    let message = stderr(&output);
    assert!(message.contains("night/03.jpg"), "{message}");
    assert!(!message.contains("panicked"), "{message}");
}

#[test]
fn invalid_config_value_is_named() {
    let folder = tempfile::tempdir().unwrap();
    let path = folder.path().join("bad.toml");
    std::fs::write(&path, "[data]\nwidth = 30\n").unwrap();
    let output = allday(
        &["train", "--config", path.to_str().unwrap()],
        folder.path(),
    );
    assert!(!output.status.success());
    let message = stderr(&output);
    assert!(message.contains("data.width"), "{message}");
    assert!(message.contains("30"), "{message}");
}

#[test]
fn eval_without_checkpoint_says_so() {
    let folder = tempfile::tempdir().unwrap();
    let output = allday(&["eval", "--run", "nowhere"], folder.path());
    assert!(!output.status.success());
    let message = stderr(&output);
    assert!(message.contains("no checkpoint in nowhere"), "{message}");
}

#[test]
fn unwritable_run_directory_fails_before_training() {
    let folder = tempfile::tempdir().unwrap();
    let root = folder.path();
    write_dataset(root);
    let config = write_config(root);
    // A regular file where the run directory's parent should be: no directory can be made.
    std::fs::write(root.join("blocker"), "a file").unwrap();
    let output = allday(
        &[
            "train",
            "--config",
            config.to_str().unwrap(),
            "--out",
            "blocker/run",
        ],
        root,
    );
    assert!(!output.status.success());
    let message = stderr(&output);
    assert!(message.contains("blocker/run"), "{message}");
    assert!(!message.contains("panicked"), "{message}");
    assert!(!message.contains("epoch 1"), "{message}");
}

#[test]
fn checkpoint_of_another_model_rejected() {
    let folder = tempfile::tempdir().unwrap();
    let root = folder.path();
    write_dataset(root);
    let config = write_config(root);
    let output = allday(
        &[
            "train",
            "--config",
            config.to_str().unwrap(),
            "--out",
            "run",
            "--epochs",
            "1",
        ],
        root,
    );
    assert!(output.status.success(), "{}", stderr(&output));

    // Change the model's width in the stored config and re-sign nothing: the checksums cover
    // only the weights, so the checkpoint opens, and loading must report the mismatch.
    let state_path = root.join("run/checkpoints/epoch-000001/state.json");
    let state = std::fs::read_to_string(&state_path).unwrap();
    let edited = state.replacen("    4,", "    6,", 1);
    assert_ne!(
        state, edited,
        "the test expects the stem width 4 in the stored config"
    );
    std::fs::write(&state_path, edited).unwrap();

    let output = allday(&["eval", "--run", "run"], root);
    assert!(!output.status.success());
    let message = stderr(&output);
    assert!(message.contains("vae.bpk"), "{message}");
    assert!(message.contains("do not fit"), "{message}");
    assert!(message.len() < 1000, "message too long: {message}");
}
