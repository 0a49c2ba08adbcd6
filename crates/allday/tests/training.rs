//! Training on small generated image folders: the loss falls, and a resumed run continues
//! exactly where the uninterrupted one would be.

use std::path::Path;

use allday::backend::default_device;
use allday::checkpoint::Checkpoint;
use allday::config::{Config, ModelConfig, Normalization, PlaceRange};
use allday::training::{Trainer, TrainingData};
use burn::module::{ModuleVisitor, Param};
use burn::prelude::*;

/// Writes `count` 24×16 images with a place-dependent pattern; `night` images are darker and
/// grey, as night photographs are.
fn write_domain(folder: &Path, count: usize, night: bool) {
    std::fs::create_dir_all(folder).unwrap();
    for place in 0..count {
        let image = image::RgbImage::from_fn(24, 16, |x, y| {
            let stripe = ((x as usize + 3 * place) / 4) % 2;
            let base = if stripe == 0 { 200 } else { 60 } as u8;
            let shade = (y * 4) as u8;
            if night {
                let grey = base / 3 + shade / 2;
                image::Rgb([grey, grey, grey])
            } else {
                image::Rgb([base, base.saturating_sub(shade), 100 + shade])
            }
        });
        image
            .save(folder.join(format!("Image{place:03}.png")))
            .unwrap();
    }
}

fn tiny_config(root: &Path) -> Config {
    write_domain(&root.join("day"), 14, false);
    write_domain(&root.join("night"), 14, true);
    let mut config = Config::default();
    config.data.root = root.to_path_buf();
    config.data.domain_a = vec!["day".into()];
    config.data.domain_b = vec!["night".into()];
    config.data.width = 16;
    config.data.height = 12;
    config.data.train_places = PlaceRange { start: 0, end: 8 };
    config.data.validation_places = PlaceRange { start: 8, end: 10 };
    config.evaluation.database = "day".into();
    config.evaluation.queries = "night".into();
    config.evaluation.places = PlaceRange { start: 10, end: 14 };
    config.model = ModelConfig {
        channels: [4, 8, 8],
        private_blocks: 1,
        shared_encoder_blocks: 1,
        shared_decoder_blocks: 1,
        normalization: Normalization::Instance,
        ..ModelConfig::default()
    };
    config.training.batch_size = 4;
    config.training.save_every = 1;
    config.optimizer.learning_rate = 1e-3;
    config
}

/// Collects every parameter and batch-norm statistic of the model in module order.
fn parameters(trainer: &Trainer) -> Vec<f32> {
    struct Collector(Vec<f32>);
    impl ModuleVisitor for Collector {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
            self.0
                .extend(param.val().into_data().try_to_vec::<f32>().unwrap());
        }
    }
    let mut collector = Collector(Vec::new());
    trainer.model().valid().visit(&mut collector);
    collector.0
}

#[test]
fn few_steps_lower_the_loss() {
    let folder = tempfile::tempdir().unwrap();
    let mut config = tiny_config(folder.path());
    config.training.epochs = 15;
    config.training.save_every = 100;
    let data = TrainingData::load(&config).unwrap();
    let mut trainer = Trainer::new(config, &folder.path().join("run"), &default_device(), data)
        .unwrap()
        .with_progress(false);
    let history = trainer.run().unwrap();
    let first = history.first().unwrap();
    let last = history.last().unwrap();
    assert_eq!(
        last.step,
        15 * 2,
        "two steps per epoch of 8 images in batches of 4"
    );
    assert!(
        last.losses.reconstruction < 0.8 * first.losses.reconstruction,
        "reconstruction {} → {}",
        first.losses.reconstruction,
        last.losses.reconstruction
    );
    assert!(
        last.losses.total < first.losses.total,
        "total {} → {}",
        first.losses.total,
        last.losses.total
    );
    // The last epoch is checkpointed even when save_every does not divide it.
    let checkpoint = Checkpoint::open(&folder.path().join("run")).unwrap();
    assert_eq!(checkpoint.state.epoch, 15);
}

#[test]
fn resume_matches_uninterrupted_run() {
    let folder = tempfile::tempdir().unwrap();
    let mut config = tiny_config(folder.path());
    config.training.epochs = 3;
    let device = default_device();
    let first_run = folder.path().join("first");
    let data = TrainingData::load(&config).unwrap();
    let mut straight = Trainer::new(config, &first_run, &device, data)
        .unwrap()
        .with_progress(false);

    straight.train_epoch().unwrap();
    straight.save_checkpoint().unwrap();
    // A second run directory holding only the state after epoch 1, as after a crash.
    let second_run = folder.path().join("second");
    copy_dir(&first_run, &second_run);

    let straight_history: Vec<_> = (0..2).map(|_| straight.train_epoch().unwrap()).collect();
    let mut resumed = Trainer::resume(&second_run, &device, None, None)
        .unwrap()
        .with_progress(false);
    assert_eq!(resumed.epoch(), 1);
    assert_eq!(resumed.step(), 2);
    let resumed_history: Vec<_> = (0..2).map(|_| resumed.train_epoch().unwrap()).collect();

    for (straight, resumed) in straight_history.iter().zip(&resumed_history) {
        assert_eq!(straight.step, resumed.step);
        assert_eq!(
            straight.losses.total, resumed.losses.total,
            "epoch {}",
            straight.epoch
        );
        assert_eq!(
            straight.losses.reconstruction,
            resumed.losses.reconstruction
        );
        assert_eq!(straight.validation_a, resumed.validation_a);
    }
    assert_eq!(
        parameters(&straight),
        parameters(&resumed),
        "weights differ after resuming"
    );
}

#[test]
fn diverging_run_stops_with_its_state() {
    let folder = tempfile::tempdir().unwrap();
    let mut config = tiny_config(folder.path());
    config.training.epochs = 3;
    // A weight near f32's maximum makes the gradients infinite, and Adam turns them into NaN
    // weights, so the second step's losses are NaN.
    config.loss.reconstruction = 1e38;
    let data = TrainingData::load(&config).unwrap();
    let mut trainer = Trainer::new(config, &folder.path().join("run"), &default_device(), data)
        .unwrap()
        .with_progress(false);
    let error = trainer.run().unwrap_err();
    let message = error.to_string();
    assert!(matches!(error, allday::Error::Diverged { .. }), "{message}");
    assert!(message.contains("learning_rate"), "{message}");
    assert!(message.contains("last checkpoint"), "{message}");
}

#[test]
fn new_run_refuses_directory_with_checkpoints() {
    let folder = tempfile::tempdir().unwrap();
    let mut config = tiny_config(folder.path());
    config.training.epochs = 1;
    let run = folder.path().join("run");
    let data = TrainingData::load(&config).unwrap();
    let mut trainer = Trainer::new(config.clone(), &run, &default_device(), data.clone())
        .unwrap()
        .with_progress(false);
    trainer.run().unwrap();
    let error = Trainer::new(config, &run, &default_device(), data)
        .err()
        .unwrap();
    assert!(error.to_string().contains("--resume"), "{error}");
}

#[test]
fn damaged_checkpoint_is_skipped_for_the_previous_one() {
    let folder = tempfile::tempdir().unwrap();
    let mut config = tiny_config(folder.path());
    config.training.epochs = 2;
    let run = folder.path().join("run");
    let data = TrainingData::load(&config).unwrap();
    let mut trainer = Trainer::new(config, &run, &default_device(), data)
        .unwrap()
        .with_progress(false);
    trainer.run().unwrap();

    let newest = run.join("checkpoints/epoch-000002/vae.bpk");
    let mut bytes = std::fs::read(&newest).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0xFF;
    std::fs::write(&newest, bytes).unwrap();

    let checkpoint = Checkpoint::open(&run).unwrap();
    assert_eq!(checkpoint.state.epoch, 1);
    let error = Checkpoint::open(&run.join("checkpoints/epoch-000002")).unwrap_err();
    assert!(error.to_string().contains("checksum"), "{error}");

    // With every checkpoint damaged, the error reports the damage instead of "no checkpoint".
    let oldest = run.join("checkpoints/epoch-000001/vae.bpk");
    std::fs::write(&oldest, b"truncated").unwrap();
    let error = Checkpoint::open(&run).unwrap_err();
    assert!(
        error.to_string().contains("all 2 checkpoints are damaged"),
        "{error}"
    );
}

#[test]
fn interrupted_save_leaves_no_checkpoint() {
    let folder = tempfile::tempdir().unwrap();
    let mut config = tiny_config(folder.path());
    config.training.epochs = 1;
    let run = folder.path().join("run");
    let data = TrainingData::load(&config).unwrap();
    let mut trainer = Trainer::new(config, &run, &default_device(), data)
        .unwrap()
        .with_progress(false);
    trainer.run().unwrap();

    // What a process killed while writing epoch 2 leaves: a temporary directory with part of
    // the files. It is not a checkpoint, and the next save removes it.
    let leftover = run.join("checkpoints/.epoch-000002.tmp-99999");
    std::fs::create_dir_all(&leftover).unwrap();
    std::fs::write(leftover.join("vae.bpk"), b"partial").unwrap();
    assert_eq!(Checkpoint::open(&run).unwrap().state.epoch, 1);

    let mut resumed = Trainer::resume(&run, &default_device(), Some(2), None)
        .unwrap()
        .with_progress(false);
    resumed.run().unwrap();
    assert!(!leftover.exists());
    assert_eq!(Checkpoint::open(&run).unwrap().state.epoch, 2);
}

#[test]
fn resume_needs_intact_optimizer_state() {
    let folder = tempfile::tempdir().unwrap();
    let mut config = tiny_config(folder.path());
    config.training.epochs = 2;
    let run = folder.path().join("run");
    let data = TrainingData::load(&config).unwrap();
    let mut trainer = Trainer::new(config, &run, &default_device(), data)
        .unwrap()
        .with_progress(false);
    trainer.run().unwrap();
    std::fs::remove_file(run.join("checkpoints/epoch-000002/vae-optimizer.bpk")).unwrap();

    // Inference needs only the weights, so it still uses the newest checkpoint.
    assert_eq!(Checkpoint::open(&run).unwrap().state.epoch, 2);
    // Resuming needs the optimizer state too, so it falls back to epoch 1.
    assert_eq!(Checkpoint::open_for_resume(&run).unwrap().state.epoch, 1);
    let resumed = Trainer::resume(&run, &default_device(), None, None).unwrap();
    assert_eq!(resumed.epoch(), 1);

    let error = Trainer::resume(&run, &default_device(), Some(0), None)
        .err()
        .unwrap();
    assert!(error.to_string().contains("training.epochs"), "{error}");
}

#[test]
fn loaded_model_gives_the_saved_outputs() {
    let folder = tempfile::tempdir().unwrap();
    let mut config = tiny_config(folder.path());
    config.training.epochs = 1;
    let run = folder.path().join("run");
    let data = TrainingData::load(&config).unwrap();
    let images = data.validation_a.clone();
    let mut trainer = Trainer::new(config, &run, &default_device(), data)
        .unwrap()
        .with_progress(false);
    trainer.run().unwrap();

    let device = default_device();
    let batch = images.batch(&[0, 1], &device);
    let expected = trainer.model().valid().decode(
        allday::Domain::A,
        trainer
            .model()
            .valid()
            .encode(allday::Domain::A, batch.clone()),
    );
    let loaded = Checkpoint::open(&run).unwrap().load_model(&device).unwrap();
    let actual = loaded.decode(allday::Domain::A, loaded.encode(allday::Domain::A, batch));
    let difference = (expected - actual).abs().max().into_scalar::<f32>();
    assert_eq!(difference, 0.0);
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.path().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

/// Trains one stage-1 epoch and returns its checkpoint with the images of the run's places.
fn stage_one(root: &Path) -> (Config, Checkpoint, allday::weighting::TripletData) {
    let mut config = tiny_config(root);
    config.training.epochs = 1;
    config.triplet.triplets_per_epoch = 64;
    config.triplet.batch_size = 16;
    config.triplet.epochs = 4;
    config.triplet.save_every = 2;
    config.triplet.depth = 2;
    // The two validation places need a tolerance below their distance to have negatives.
    config.evaluation.tolerance = 0;
    let data = TrainingData::load(&config).unwrap();
    let mut trainer = Trainer::new(config.clone(), &root.join("run"), &default_device(), data)
        .unwrap()
        .with_progress(false);
    trainer.run().unwrap();
    let checkpoint = Checkpoint::open(&root.join("run")).unwrap();
    let data = TrainingData::load(&config).unwrap();
    let triplet_data = allday::weighting::TripletData {
        train_a: data.train_a,
        train_b: data.train_b,
        validation_a: data.validation_a,
        validation_b: data.validation_b,
    };
    (config, checkpoint, triplet_data)
}

#[test]
fn triplet_resume_matches_uninterrupted_run() {
    use allday::weighting::{FeatureSource, TripletTrainer, encoder_features};
    let folder = tempfile::tempdir().unwrap();
    let (config, checkpoint, data) = stage_one(folder.path());
    let device = default_device();
    let model = checkpoint.load_model(&device).unwrap();

    let straight_dir = folder.path().join("straight");
    let mut straight = TripletTrainer::new(
        encoder_features(&model, &device),
        &FeatureSource::of_checkpoint(&checkpoint),
        &data,
        config.clone(),
        &straight_dir,
        &device,
    )
    .unwrap();
    straight.run().unwrap();
    let straight_file = straight.weights_file();
    assert_eq!(straight_file.history.len(), 4);
    assert_eq!(
        straight_file.weights.len(),
        2,
        "one weight vector per matched layer"
    );
    assert_ne!(
        straight_file.weights[0],
        vec![1.0; straight_file.weights[0].len()],
        "training moved the weights"
    );

    // Stop after epoch 3, a checkpoint having been written after epoch 2, then resume.
    let resumed_dir = folder.path().join("resumed");
    let mut first = TripletTrainer::new(
        encoder_features(&model, &device),
        &FeatureSource::of_checkpoint(&checkpoint),
        &data,
        config,
        &resumed_dir,
        &device,
    )
    .unwrap();
    first.train_epoch().unwrap();
    first.train_epoch().unwrap();
    let saved = first.save_checkpoint().unwrap();
    let weights_at_save = first.weights_file().weights;
    first.train_epoch().unwrap();
    drop(first);

    let mut resumed = TripletTrainer::resume(
        encoder_features(&model, &device),
        &FeatureSource::of_checkpoint(&checkpoint),
        &data,
        &resumed_dir,
        None,
        &device,
    )
    .unwrap();
    assert_eq!(resumed.epoch(), 2);
    assert_eq!(
        resumed.weights_file().weights,
        weights_at_save,
        "the checkpoint restores the weights unchanged ({})",
        saved.display()
    );
    resumed.run().unwrap();
    let resumed_file = resumed.weights_file();
    assert_eq!(resumed_file.weights, straight_file.weights);
    assert_eq!(resumed_file.history, straight_file.history);
    let metrics = std::fs::read_to_string(resumed_dir.join("metrics.csv")).unwrap();
    assert_eq!(
        metrics.lines().count(),
        5,
        "header and epochs 1 to 4 once each"
    );
}

#[test]
fn triplet_resume_rejects_other_encoders() {
    use allday::weighting::{FeatureSource, TripletTrainer, encoder_features};
    let folder = tempfile::tempdir().unwrap();
    let (config, checkpoint, data) = stage_one(folder.path());
    let device = default_device();
    let model = checkpoint.load_model(&device).unwrap();
    let run_dir = folder.path().join("triplet");
    let mut trainer = TripletTrainer::new(
        encoder_features(&model, &device),
        &FeatureSource::of_checkpoint(&checkpoint),
        &data,
        config.clone(),
        &run_dir,
        &device,
    )
    .unwrap();
    trainer.train_epoch().unwrap();
    trainer.save_checkpoint().unwrap();

    // A second stage-1 run with another seed has other encoder weights.
    let mut other_config = config;
    other_config.seed += 1;
    let other_data = TrainingData::load(&other_config).unwrap();
    let other_run = folder.path().join("other-run");
    let mut other = Trainer::new(other_config, &other_run, &device, other_data)
        .unwrap()
        .with_progress(false);
    other.run().unwrap();
    let other_checkpoint = Checkpoint::open(&other_run).unwrap();
    let error = TripletTrainer::resume(
        encoder_features(&model, &device),
        &FeatureSource::of_checkpoint(&other_checkpoint),
        &data,
        &run_dir,
        None,
        &device,
    )
    .err()
    .expect("other encoders are rejected");
    assert!(error.to_string().contains("other weights"), "{error}");
}
