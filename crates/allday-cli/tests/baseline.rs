//! `allday baseline` on generated image folders, and its errors about weights files.

use std::path::Path;
use std::process::Output;

mod common;
use common::allday;

/// Writes 8 day and 8 night images of 64×48 pixels; frame i shows stripes at angle i in both,
/// the night ones darker.
fn write_dataset(root: &Path) {
    for (folder, gain) in [("day", 1.0f32), ("night", 0.4)] {
        let folder = root.join(folder);
        std::fs::create_dir_all(&folder).unwrap();
        for place in 0..8u32 {
            let angle = place as f32 * 0.4;
            let image = image::RgbImage::from_fn(64, 48, |x, y| {
                let phase = x as f32 * angle.cos() + y as f32 * angle.sin();
                let value = if (phase / 6.0).floor() as i32 % 2 == 0 {
                    220.0
                } else {
                    30.0
                };
                let value = (value * gain) as u8;
                image::Rgb([value, value, value])
            });
            image.save(folder.join(format!("{place:02}.png"))).unwrap();
        }
    }
}

fn baseline(root: &Path, model: &str, extra: &[&str]) -> Output {
    let data = root.to_str().unwrap();
    let mut args = vec![
        "baseline",
        "--model",
        model,
        "--data",
        data,
        "--database",
        "day",
        "--queries",
        "night",
        "--places",
        "0..8",
        "--tolerance",
        "0",
    ];
    args.extend_from_slice(extra);
    allday(&args, root)
}

#[test]
fn hog_baseline_prints_table_and_json() {
    let folder = tempfile::tempdir().unwrap();
    write_dataset(folder.path());
    let json = folder.path().join("hog.json");
    let output = baseline(folder.path(), "hog", &["--json", json.to_str().unwrap()]);
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    assert!(stdout.contains("HOG 128x96"), "{stdout}");
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    let figures = &report["methods"]["HOG 128x96"];
    assert_eq!(figures["queries"], 8, "{report}");
    assert_eq!(figures["database"], 8, "{report}");
    // Stripes at eight different angles: HOG tells every place apart despite the darker night.
    // `recall` is a list of (N, Recall@N in percent).
    assert_eq!(figures["recall"][0][0], 1, "{report}");
    assert_eq!(figures["recall"][0][1], 100.0, "{report}");
}

#[test]
fn missing_weights_file_is_named() {
    let folder = tempfile::tempdir().unwrap();
    write_dataset(folder.path());
    let output = baseline(
        folder.path(),
        "vgg16",
        &["--weights", "absent/vgg16-397923af.pth"],
    );
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("absent/vgg16-397923af.pth"), "{stderr}");
    assert!(stderr.contains("not found"), "{stderr}");
}

#[test]
fn weights_file_of_unknown_format_is_rejected() {
    let folder = tempfile::tempdir().unwrap();
    write_dataset(folder.path());
    std::fs::write(folder.path().join("weights.bin"), b"not weights").unwrap();
    let output = baseline(
        folder.path(),
        "efficientnet-lite0",
        &["--weights", "weights.bin"],
    );
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("weights.bin"), "{stderr}");
    assert!(stderr.contains(".safetensors"), "{stderr}");
}
