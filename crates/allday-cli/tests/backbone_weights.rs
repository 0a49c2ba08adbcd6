//! `allday train-triplet --backbone` and `allday eval --weights` on real photographs: channel
//! weights learned on the last layer of ImageNet-pretrained EfficientNet-Lite0.
//!
//! The data and the weights are read from `../shared` beside the repository (Gardens Point and
//! `models/efficientnet_lite0`); `ALLDAY_GARDENS_POINT` may name another Gardens Point folder.

use std::path::{Path, PathBuf};

mod common;
use common::allday;

fn shared() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared")
}

fn gardens_point() -> PathBuf {
    let root = std::env::var_os("ALLDAY_GARDENS_POINT")
        .map(PathBuf::from)
        .unwrap_or_else(|| shared().join("data/gardens_point"));
    assert!(
        root.join("night_right").is_dir(),
        "Gardens Point not found at {}; set ALLDAY_GARDENS_POINT to the folder holding day_left, day_right and night_right",
        root.display()
    );
    root
}

fn efficientnet_weights() -> PathBuf {
    let path = shared().join("models/efficientnet_lite0/efficientnet-lite0-57934424.pth");
    assert!(
        path.is_file(),
        "EfficientNet-Lite0 weights not found at {}",
        path.display()
    );
    path
}

/// Reads Recall@1 and PR-AUC of one method from an `--json` report.
fn figures(report: &Path, method: &str) -> (f64, f64, u64) {
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(report).unwrap()).unwrap();
    let figures = &report["methods"][method];
    assert!(figures.is_object(), "no method {method} in {report}");
    (
        figures["recall"][0][1].as_f64().unwrap(),
        figures["pr_auc"].as_f64().unwrap(),
        figures["queries"].as_u64().unwrap(),
    )
}

#[test]
fn backbone_weights_train_and_evaluate() {
    let folder = tempfile::tempdir().unwrap();
    let dir = folder.path();
    let data = gardens_point();
    let weights = efficientnet_weights();
    let config = dir.join("backbone.toml");
    std::fs::write(
        &config,
        format!(
            r#"seed = 7
[data]
root = "{}"
train_places = "0..8"
validation_places = "8..12"
[triplet]
sampling = "retrieval"
epochs = 2
save_every = 1
triplets_per_epoch = 64
batch_size = 32
[evaluation]
places = "12..24"
tolerance = 1
"#,
            data.display()
        ),
    )
    .unwrap();

    let run_dir = dir.join("run");
    // A path relative to the weights' folder: the run must record where the file really is,
    // because later commands run from other folders.
    let output = allday(
        &[
            "train-triplet",
            "--backbone",
            "efficientnet-lite0",
            "--backbone-weights",
            weights.file_name().unwrap().to_str().unwrap(),
            "--config",
            config.to_str().unwrap(),
            "--run-dir",
            run_dir.to_str().unwrap(),
        ],
        weights.parent().unwrap(),
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    let weights_file = run_dir.join("channel-weights-d1.json");
    let file: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&weights_file).unwrap()).unwrap();
    assert_eq!(file["backbone"]["network"], "efficientnet-lite0", "{file}");
    assert_eq!(file["weights"][0].as_array().unwrap().len(), 1280);
    assert_eq!(file["history"].as_array().unwrap().len(), 2);

    // Without --run, eval takes the settings of the triplet run the weights were written to.
    let report = dir.join("eval.json");
    let output = allday(
        &[
            "eval",
            "--weights",
            weights_file.to_str().unwrap(),
            "--max-shift",
            "0",
            "--json",
            report.to_str().unwrap(),
        ],
        dir,
    );
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    assert!(
        stdout.contains("allday EffNet-Lite0 weighted d1"),
        "{stdout}"
    );
    let (_, _, queries) = figures(&report, "allday EffNet-Lite0 weighted d1");
    assert_eq!(queries, 12, "places 12..24 of the run's config");

    // The unweighted row is the spatial EfficientNet-Lite0 baseline, figure for figure.
    let unweighted = figures(&report, "EffNet-Lite0 spatial d1");
    let baseline_report = dir.join("baseline.json");
    let output = allday(
        &[
            "baseline",
            "--model",
            "efficientnet-lite0",
            "--weights",
            weights.to_str().unwrap(),
            "--pooling",
            "spatial",
            "--data",
            data.to_str().unwrap(),
            "--places",
            "12..24",
            "--tolerance",
            "1",
            "--json",
            baseline_report.to_str().unwrap(),
        ],
        dir,
    );
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let baseline = figures(&baseline_report, "EffNet-Lite0 spatial");
    assert_eq!(unweighted.0, baseline.0, "Recall@1");
    assert!((unweighted.1 - baseline.1).abs() < 1e-6, "PR-AUC");

    // A --run that is not the weights' triplet run is named as such, for eval and channels.
    let other = dir.join("other");
    std::fs::create_dir(&other).unwrap();
    for command in ["eval", "channels"] {
        let output = allday(
            &[
                command,
                "--run",
                other.to_str().unwrap(),
                "--weights",
                weights_file.to_str().unwrap(),
            ],
            dir,
        );
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "{command}: {stderr}");
        assert!(stderr.contains("not"), "{command}: {stderr}");
        assert!(
            stderr.contains("triplet run directory"),
            "{command}: {stderr}"
        );
    }

    let train_into = |run_dir: &Path| {
        allday(
            &[
                "train-triplet",
                "--backbone",
                "efficientnet-lite0",
                "--backbone-weights",
                weights.to_str().unwrap(),
                "--config",
                config.to_str().unwrap(),
                "--run-dir",
                run_dir.to_str().unwrap(),
            ],
            dir,
        )
    };

    // A new run does not write into a folder that contains the user's files.
    let occupied = dir.join("occupied");
    std::fs::create_dir(&occupied).unwrap();
    std::fs::write(occupied.join("metrics.csv"), "mine\n").unwrap();
    let output = train_into(&occupied);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "{stderr}");
    assert!(stderr.contains("is not empty"), "{stderr}");
    assert_eq!(
        std::fs::read_to_string(occupied.join("metrics.csv")).unwrap(),
        "mine\n"
    );

    // A folder left by a run on the same features before its first checkpoint is reused.
    let interrupted = dir.join("interrupted");
    std::fs::create_dir(&interrupted).unwrap();
    std::fs::copy(run_dir.join("source.json"), interrupted.join("source.json")).unwrap();
    let output = train_into(&interrupted);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    assert!(interrupted.join("channel-weights-d1.json").is_file());
}

#[test]
fn backbone_deeper_than_its_layers_rejected() {
    let folder = tempfile::tempdir().unwrap();
    let dir = folder.path();
    let output = allday(
        &[
            "train-triplet",
            "--backbone",
            "efficientnet-lite0",
            "--backbone-weights",
            efficientnet_weights().to_str().unwrap(),
            "--data",
            gardens_point().to_str().unwrap(),
            "--depth",
            "9",
            "--run-dir",
            dir.join("run").to_str().unwrap(),
        ],
        dir,
    );
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("triplet.depth"), "{stderr}");
    assert!(stderr.contains("1 to 8"), "{stderr}");
}
