//! The descriptor index on small generated image folders: build and read back, search, append
//! without encoding old images again, and refuse a checkpoint with other weights.

use std::path::{Path, PathBuf};

use allday::Error;
use allday::backend::default_device;
use allday::checkpoint::Checkpoint;
use allday::config::{Config, ModelConfig, Normalization, PlaceRange};
use allday::index::{BuildOptions, DescriptorIndex, build};
use allday::model::Domain;
use allday::training::{Trainer, TrainingData};

/// Writes `count` 24×16 images with a place-dependent pattern, named from `first` on.
fn write_images(folder: &Path, first: usize, count: usize, night: bool) {
    std::fs::create_dir_all(folder).unwrap();
    for place in first..first + count {
        let image = image::RgbImage::from_fn(24, 16, |x, y| {
            let stripe = ((x as usize + 3 * place) / 4 + y as usize / (2 + place % 3)) % 2;
            let value = if stripe == 0 { 210 } else { 50 } as u8;
            let value = if night { value / 3 } else { value };
            image::Rgb([value, value / 2 + (place * 20 % 100) as u8, 128])
        });
        image
            .save(folder.join(format!("Image{place:03}.png")))
            .unwrap();
    }
}

/// Saves a freshly initialised model (seeded by `seed`) as a checkpoint of a run in `root`.
fn checkpoint(root: &Path, seed: u64) -> Checkpoint {
    write_images(&root.join("day"), 0, 10, false);
    write_images(&root.join("night"), 0, 10, true);
    let mut config = Config {
        seed,
        ..Config::default()
    };
    config.data.root = root.to_path_buf();
    config.data.domain_a = vec!["day".into()];
    config.data.domain_b = vec!["night".into()];
    config.data.width = 16;
    config.data.height = 12;
    config.data.train_places = PlaceRange { start: 0, end: 6 };
    config.data.validation_places = PlaceRange { start: 6, end: 8 };
    config.evaluation.places = PlaceRange { start: 8, end: 10 };
    config.model = ModelConfig {
        channels: [4, 8, 8],
        private_blocks: 1,
        shared_encoder_blocks: 1,
        shared_decoder_blocks: 1,
        normalization: Normalization::None,
        ..ModelConfig::default()
    };
    config.training.batch_size = 2;
    let run = root.join(format!("run-{seed}"));
    let data = TrainingData::load(&config).unwrap();
    let trainer = Trainer::new(config, &run, &default_device(), data)
        .unwrap()
        .with_progress(false);
    trainer.save_checkpoint().unwrap();
    Checkpoint::open(&run).unwrap()
}

fn options() -> BuildOptions {
    BuildOptions {
        batch_size: 3,
        show_progress: false,
    }
}

fn sorted_files(folder: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(folder)
        .unwrap()
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

#[test]
fn index_round_trip_and_search() {
    let folder = tempfile::tempdir().unwrap();
    let root = folder.path();
    let checkpoint = checkpoint(root, 1);
    let device = default_device();
    let model = checkpoint.load_model(&device).unwrap();
    let database = root.join("database");
    write_images(&database, 0, 7, false);
    let path = root.join("day.index");

    let report = build(
        &path,
        &checkpoint,
        &model,
        Domain::A,
        std::slice::from_ref(&database),
        options(),
        &device,
    )
    .unwrap();
    assert_eq!(
        (report.added, report.already_indexed, report.total),
        (7, 0, 7)
    );
    assert_eq!(
        sorted_files(&path),
        ["global-000000.npy", "manifest.json", "positions-000000.npy"]
    );

    let index = DescriptorIndex::open(&path).unwrap();
    let manifest = &index.manifest;
    assert_eq!(manifest.images.len(), 7);
    assert_eq!(
        manifest.fingerprint,
        checkpoint.state.weights_fingerprint["vae"]
    );
    assert_eq!((manifest.width, manifest.height), (16, 12));
    // A 16×12 input gives a 4×3 latent grid of the last encoder width.
    assert_eq!(
        (
            manifest.latent_rows,
            manifest.latent_columns,
            manifest.channels
        ),
        (3, 4, 8)
    );
    for (frame, image) in manifest.images.iter().enumerate() {
        assert_eq!(image.frame, frame);
        assert_eq!(
            image.path,
            database
                .join(format!("Image{frame:03}.png"))
                .canonicalize()
                .unwrap()
        );
    }
    let global = index.global_descriptors().unwrap();
    assert_eq!(global.len(), 7 * 8);
    for row in global.chunks(8) {
        let norm: f32 = row.iter().map(|v| v * v).sum::<f32>().sqrt();
        assert!((norm - 1.0).abs() < 1e-4, "global descriptor norm {norm}");
    }
    let positions = index.position_descriptors(&[6, 0]).unwrap();
    assert_eq!(positions.len(), 2 * 12 * 8);
    for vector in positions.chunks(8) {
        let norm: f32 = vector.iter().map(|v| v * v).sum::<f32>().sqrt();
        assert!(
            (norm - 1.0).abs() < 1e-4,
            "per-position descriptor norm {norm}"
        );
    }

    // Each database image, searched with the encoder it was indexed with, finds itself first
    // at distance 0, with the global and with the re-ranked distance.
    let queries: Vec<PathBuf> = [4, 1]
        .iter()
        .map(|frame| database.join(format!("Image{frame:03}.png")))
        .collect();
    for rerank in [None, Some(5)] {
        let results = index
            .search(&model, Domain::A, &queries, 3, rerank, &device)
            .unwrap();
        for (result, frame) in results.iter().zip([4, 1]) {
            assert_eq!(result.len(), 3);
            assert_eq!(result[0].frame, frame, "{rerank:?}: {result:?}");
            assert_eq!(result[0].rank, 1);
            assert!(result[0].distance.abs() < 1e-3, "{result:?}");
            assert!(
                result
                    .windows(2)
                    .all(|pair| pair[0].distance <= pair[1].distance)
            );
        }
    }
}

#[test]
fn append_encodes_only_new_images() {
    let folder = tempfile::tempdir().unwrap();
    let root = folder.path();
    let checkpoint = checkpoint(root, 2);
    let device = default_device();
    let model = checkpoint.load_model(&device).unwrap();
    let (first, second) = (root.join("first"), root.join("second"));
    write_images(&first, 0, 4, false);
    write_images(&second, 4, 3, false);
    let path = root.join("day.index");
    build(
        &path,
        &checkpoint,
        &model,
        Domain::A,
        std::slice::from_ref(&first),
        options(),
        &device,
    )
    .unwrap();
    let first_shard = std::fs::read(path.join("positions-000000.npy")).unwrap();
    let first_modified = std::fs::metadata(path.join("positions-000000.npy"))
        .unwrap()
        .modified()
        .unwrap();
    // A leftover of an interrupted run is removed by the next one.
    std::fs::write(path.join(".global-000001.npy.tmp-1"), b"partial").unwrap();

    let report = build(
        &path,
        &checkpoint,
        &model,
        Domain::A,
        &[first.clone(), second.clone()],
        options(),
        &device,
    )
    .unwrap();
    assert_eq!(
        (report.added, report.already_indexed, report.total),
        (3, 4, 7)
    );
    assert_eq!(
        sorted_files(&path),
        [
            "global-000000.npy",
            "global-000001.npy",
            "manifest.json",
            "positions-000000.npy",
            "positions-000001.npy"
        ]
    );
    assert_eq!(
        std::fs::read(path.join("positions-000000.npy")).unwrap(),
        first_shard
    );
    assert_eq!(
        std::fs::metadata(path.join("positions-000000.npy"))
            .unwrap()
            .modified()
            .unwrap(),
        first_modified
    );

    // Nothing new: nothing written.
    let report = build(
        &path,
        &checkpoint,
        &model,
        Domain::A,
        std::slice::from_ref(&second),
        options(),
        &device,
    )
    .unwrap();
    assert_eq!(
        (report.added, report.already_indexed, report.total),
        (0, 3, 7)
    );

    // The appended index equals one built in a single run.
    let whole = root.join("whole.index");
    build(
        &whole,
        &checkpoint,
        &model,
        Domain::A,
        &[first, second.clone()],
        options(),
        &device,
    )
    .unwrap();
    let appended = DescriptorIndex::open(&path).unwrap();
    let single = DescriptorIndex::open(&whole).unwrap();
    assert_eq!(appended.manifest.images, single.manifest.images);
    let (a, b) = (
        appended.global_descriptors().unwrap(),
        single.global_descriptors().unwrap(),
    );
    assert!(a.iter().zip(&b).all(|(x, y)| (x - y).abs() < 1e-5));
    // Re-ranking reads per-position rows from both shards.
    let query = second.join("Image005.png");
    let results = appended
        .search(&model, Domain::A, &[query], 7, Some(7), &device)
        .unwrap();
    assert_eq!(
        results[0][0].frame, 1,
        "frame in its folder: {:?}",
        results[0]
    );
    assert!(results[0][0].path.ends_with("second/Image005.png"));
}

#[test]
fn foreign_checkpoint_and_other_domain_rejected() {
    let folder = tempfile::tempdir().unwrap();
    let root = folder.path();
    let ours = checkpoint(root, 3);
    let theirs = checkpoint(root, 4);
    let device = default_device();
    let model = ours.load_model(&device).unwrap();
    let database = root.join("database");
    write_images(&database, 0, 3, false);
    let path = root.join("day.index");
    build(
        &path,
        &ours,
        &model,
        Domain::A,
        std::slice::from_ref(&database),
        options(),
        &device,
    )
    .unwrap();
    let manifest_before = std::fs::read(path.join("manifest.json")).unwrap();

    write_images(&database, 3, 2, false);
    let other_model = theirs.load_model(&device).unwrap();
    let error = build(
        &path,
        &theirs,
        &other_model,
        Domain::A,
        std::slice::from_ref(&database),
        options(),
        &device,
    )
    .unwrap_err();
    let (ours_fingerprint, theirs_fingerprint) = (
        &ours.state.weights_fingerprint["vae"],
        &theirs.state.weights_fingerprint["vae"],
    );
    assert_ne!(ours_fingerprint, theirs_fingerprint);
    assert!(matches!(error, Error::ForeignCheckpoint { .. }), "{error}");
    let message = error.to_string();
    assert!(message.contains(ours_fingerprint.as_str()), "{message}");
    assert!(message.contains(theirs_fingerprint.as_str()), "{message}");
    assert_eq!(
        std::fs::read(path.join("manifest.json")).unwrap(),
        manifest_before
    );

    let index = DescriptorIndex::open(&path).unwrap();
    let error = index
        .check_compatible(&theirs.path, theirs_fingerprint)
        .unwrap_err();
    assert!(matches!(error, Error::ForeignCheckpoint { .. }), "{error}");

    let error = build(
        &path,
        &ours,
        &model,
        Domain::B,
        std::slice::from_ref(&database),
        options(),
        &device,
    )
    .unwrap_err();
    assert!(
        matches!(
            error,
            Error::IndexMismatch {
                field: "domain",
                ..
            }
        ),
        "{error}"
    );

    // A folder of other files is not taken for an index.
    let other = root.join("photos");
    write_images(&other, 0, 1, false);
    let error = build(
        &other,
        &ours,
        &model,
        Domain::A,
        &[database],
        options(),
        &device,
    )
    .unwrap_err();
    assert!(matches!(error, Error::NotAnIndex { .. }), "{error}");
}
