//! Pretrained networks: EfficientNet-Lite0 against its reference output, VGG-16 loaded from a
//! torchvision-layout file with random weights of the real shapes, and both as the front of
//! allday's encoders.
//!
//! The EfficientNet-Lite0 weights are read from `../shared/models/efficientnet_lite0` beside the
//! repository, or from the folder in `ALLDAY_EFFICIENTNET_LITE0`; without them the test prints
//! why it is skipped.

use std::path::{Path, PathBuf};

use allday::backend::default_device;
use allday::config::{Config, ModelConfig, PlaceRange, PretrainedInit};
use allday::error::Error;
use allday::pretrained::vgg::{CHANNELS, TORCHVISION_INDICES};
use allday::pretrained::{EfficientNetLite0, Vgg16};
use allday::training::{Trainer, TrainingData};
use allday::{Domain, DoubleVae};
use burn::prelude::*;
use safetensors::tensor::{Dtype, TensorView};

fn efficientnet_folder() -> Option<PathBuf> {
    let folder = std::env::var_os("ALLDAY_EFFICIENTNET_LITE0")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR"))
                .join("../../../shared/models/efficientnet_lite0")
        });
    if folder.join("reference.json").is_file() {
        Some(folder)
    } else {
        eprintln!(
            "skipped: EfficientNet-Lite0 weights not found at {}; set ALLDAY_EFFICIENTNET_LITE0 to the folder holding efficientnet-lite0-57934424.pth and reference.json",
            folder.display()
        );
        None
    }
}

/// The reference input: `x[0, c, h, w] = 1.5 · sin(0.001 · (c·224·224 + h·224 + w))`, fed to
/// the stem as it is.
fn reference_input(device: &Device) -> Tensor<4> {
    let values: Vec<f32> = (0..3 * 224 * 224)
        .map(|index| (1.5 * (0.001 * index as f64).sin()) as f32)
        .collect();
    Tensor::from_data(TensorData::new(values, [1, 3, 224, 224]), device)
}

#[test]
fn efficientnet_lite0_reproduces_reference_logits() {
    let Some(folder) = efficientnet_folder() else {
        return;
    };
    let reference: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(folder.join("reference.json")).unwrap())
            .unwrap();
    let expected: Vec<f32> = reference["logits"]
        .as_array()
        .unwrap()
        .iter()
        .map(|value| value.as_f64().unwrap() as f32)
        .collect();
    assert_eq!(expected.len(), 1000);

    let device = default_device();
    let network =
        EfficientNetLite0::load(&folder.join("efficientnet-lite0-57934424.pth"), &device).unwrap();
    let input = reference_input(&device);
    let features = network.features(input.clone());
    assert_eq!(features.dims(), [1, 1280, 7, 7]);
    let logits: Vec<f32> = network
        .forward(input.clone())
        .into_data()
        .try_to_vec()
        .unwrap();
    let worst = |logits: &[f32]| {
        logits
            .iter()
            .zip(&expected)
            .map(|(a, e)| (a - e).abs())
            .fold(0.0f32, f32::max)
    };
    let difference = worst(&logits);
    assert!(difference < 1e-3, "largest logit difference {difference}");

    // Backbones run with their batch norms folded into the convolutions; the logits must not
    // move beyond rounding.
    let folded = network.fold_batch_norm();
    assert!(folded.bn0.is_none() && folded.blocks.iter().all(|block| block.bn1.is_none()));
    let folded_logits: Vec<f32> = folded.forward(input).into_data().try_to_vec().unwrap();
    let difference = worst(&folded_logits);
    assert!(
        difference < 1e-3,
        "largest folded logit difference {difference}"
    );
    // Folding a folded network keeps every layer, the expansion convolutions included.
    let refolded_logits: Vec<f32> = folded
        .fold_batch_norm()
        .forward(reference_input(&device))
        .into_data()
        .try_to_vec()
        .unwrap();
    assert_eq!(refolded_logits, folded_logits);

    let mut order: Vec<usize> = (0..1000).collect();
    order.sort_by(|&a, &b| logits[b].total_cmp(&logits[a]));
    let top5: Vec<usize> = reference["top5_indices"]
        .as_array()
        .unwrap()
        .iter()
        .map(|value| value.as_u64().unwrap() as usize)
        .collect();
    assert_eq!(order[..5], top5[..]);
}

/// Deterministic pseudo-random values in [−0.05, 0.05), distinct for every tensor and index.
fn values(seed: usize, count: usize) -> Vec<f32> {
    (0..count)
        .map(|index| {
            let x =
                ((index as u64 + 1).wrapping_mul(2_654_435_761) ^ (seed as u64 * 40_503)) % 10_007;
            (x as f32 / 10_007.0 - 0.5) * 0.1
        })
        .collect()
}

/// Writes torchvision's VGG-16 `features` tensors (real shapes, random values) and a small
/// stand-in classifier to a safetensors file; `edit` may change the list first.
fn write_vgg_file(path: &Path, edit: impl FnOnce(&mut Vec<(String, Vec<usize>)>)) {
    let mut tensors: Vec<(String, Vec<usize>)> = Vec::new();
    let mut channels_in = 3;
    for (torch_index, channels_out) in TORCHVISION_INDICES.iter().zip(CHANNELS) {
        tensors.push((
            format!("features.{torch_index}.weight"),
            vec![channels_out, channels_in, 3, 3],
        ));
        tensors.push((format!("features.{torch_index}.bias"), vec![channels_out]));
        channels_in = channels_out;
    }
    // torchvision's classifier is 4096-wide; a small one suffices to check that it is skipped.
    tensors.push(("classifier.0.weight".into(), vec![8, 16]));
    tensors.push(("classifier.0.bias".into(), vec![8]));
    edit(&mut tensors);
    let bytes: Vec<(String, Vec<u8>, Vec<usize>)> = tensors
        .into_iter()
        .enumerate()
        .map(|(seed, (name, shape))| {
            let data: Vec<u8> = values(seed, shape.iter().product())
                .iter()
                .flat_map(|value| value.to_le_bytes())
                .collect();
            (name, data, shape)
        })
        .collect();
    let views = bytes.iter().map(|(name, data, shape)| {
        (
            name.clone(),
            TensorView::new(Dtype::F32, shape.clone(), data).unwrap(),
        )
    });
    safetensors::serialize_to_file(views, None, path).unwrap();
}

#[test]
fn vgg16_loads_torchvision_layout() {
    let folder = tempfile::tempdir().unwrap();
    let path = folder.path().join("vgg16.safetensors");
    write_vgg_file(&path, |_| {});
    let device = default_device();
    let network = Vgg16::load(&path, &device).unwrap();

    // features.28 is the 13th convolution; its tensors were written 25th and 26th.
    let weight: Vec<f32> = network.convs[12]
        .weight
        .val()
        .into_data()
        .try_to_vec()
        .unwrap();
    assert_eq!(weight.len(), 512 * 512 * 9);
    assert_eq!(weight[..16], values(24, 16)[..]);
    let bias: Vec<f32> = network.convs[12]
        .bias
        .as_ref()
        .unwrap()
        .val()
        .into_data()
        .try_to_vec()
        .unwrap();
    assert_eq!(bias, values(25, 512));
    let first: Vec<f32> = network.convs[0]
        .weight
        .val()
        .into_data()
        .try_to_vec()
        .unwrap();
    assert_eq!(first, values(0, 64 * 3 * 9));

    let images = Tensor::<4>::ones([1, 3, 64, 48], &device);
    let activations = network.block_activations(images.clone(), 5);
    let shapes: Vec<[usize; 4]> = activations.iter().map(|a| a.dims()).collect();
    assert_eq!(
        shapes,
        [
            [1, 64, 64, 48],
            [1, 128, 32, 24],
            [1, 256, 16, 12],
            [1, 512, 8, 6],
            [1, 512, 4, 3]
        ]
    );
    assert_eq!(network.features(images).dims(), [1, 512, 4, 3]);
}

#[test]
fn vgg16_file_without_a_layer_names_the_missing_key() {
    let folder = tempfile::tempdir().unwrap();
    let path = folder.path().join("vgg16.safetensors");
    write_vgg_file(&path, |tensors| {
        tensors.retain(|(name, _)| name != "features.28.bias")
    });
    let error = Vgg16::load(&path, &default_device()).unwrap_err();
    let message = error.to_string();
    match error {
        Error::MissingWeights { keys, .. } => {
            assert_eq!(keys.len(), 1, "{message}");
            assert_eq!(keys[0].key, "features.28.bias");
            assert_eq!(keys[0].shape, [512]);
        }
        other => panic!("expected missing weights, got {other}"),
    }
    assert!(message.contains("`features.28.bias` [512]"), "{message}");
}

#[test]
fn vgg16_file_with_a_wrong_shape_names_key_and_both_shapes() {
    let folder = tempfile::tempdir().unwrap();
    let path = folder.path().join("vgg16.safetensors");
    write_vgg_file(&path, |tensors| {
        tensors[0].1 = vec![64, 3, 5, 5];
    });
    let error = Vgg16::load(&path, &default_device()).unwrap_err();
    let message = error.to_string();
    match error {
        Error::WeightShape {
            key,
            expected,
            found,
            ..
        } => {
            assert_eq!(key, "features.0.weight");
            assert_eq!(expected, [64, 3, 3, 3]);
            assert_eq!(found, [64, 3, 5, 5]);
        }
        other => panic!("expected a shape error, got {other}"),
    }
    assert!(
        message.contains("features.0.weight") && message.contains("[64, 3, 5, 5]"),
        "{message}"
    );
}

#[test]
fn vgg16_file_with_an_extra_layer_names_the_unexpected_key() {
    let folder = tempfile::tempdir().unwrap();
    let path = folder.path().join("vgg16.safetensors");
    write_vgg_file(&path, |tensors| {
        tensors.push(("features.30.weight".into(), vec![4, 4]))
    });
    let error = Vgg16::load(&path, &default_device()).unwrap_err();
    let message = error.to_string();
    match error {
        Error::UnexpectedWeights { keys, .. } => {
            assert_eq!(keys.len(), 1, "{message}");
            assert_eq!(keys[0].key, "features.30.weight");
            assert_eq!(keys[0].shape, [4, 4]);
        }
        other => panic!("expected unexpected weights, got {other}"),
    }
}

fn tiny_config(pretrained: PretrainedInit, weights: &Path, freeze: bool) -> ModelConfig {
    ModelConfig {
        channels: [4, 8, 8],
        private_blocks: 1,
        shared_encoder_blocks: 1,
        shared_decoder_blocks: 1,
        pretrained,
        pretrained_weights: weights.to_path_buf(),
        freeze_pretrained: freeze,
        ..ModelConfig::default()
    }
}

#[test]
fn vgg16_front_initialises_both_encoders() {
    let folder = tempfile::tempdir().unwrap();
    let path = folder.path().join("vgg16.safetensors");
    write_vgg_file(&path, |_| {});
    let config = tiny_config(PretrainedInit::Vgg16, &path, true);
    let device = default_device().autodiff();
    let model = DoubleVae::new(&config, &device)
        .load_pretrained(&config, &device)
        .unwrap();
    assert!(model.encoder_a.stem.is_none());
    assert!(model.encoder_a.down1.is_none());

    // conv2_2 is torchvision's features.7, written 7th: weight at index 6.
    for encoder in [&model.encoder_a, &model.encoder_b] {
        let convs = encoder.pretrained.as_ref().unwrap().vgg.as_ref().unwrap();
        assert_eq!(convs.len(), 4);
        let weight: Vec<f32> = convs[3].weight.val().into_data().try_to_vec().unwrap();
        assert_eq!(weight[..16], values(6, 16)[..]);
    }

    let images = Tensor::<4>::ones([1, 3, 16, 12], &device).mul_scalar(0.5);
    let layers = model.encode_layers(Domain::A, images.clone());
    let shapes: Vec<[usize; 4]> = layers.iter().map(|layer| layer.dims()).collect();
    // relu1_2, relu2_2, the stride-2 convolution, one private and one shared block.
    assert_eq!(
        shapes,
        [
            [1, 64, 16, 12],
            [1, 128, 8, 6],
            [1, 8, 4, 3],
            [1, 8, 4, 3],
            [1, 8, 4, 3]
        ]
    );

    // Frozen: the pretrained convolutions get no gradient, the layers after them do.
    let gradients = model.encode(Domain::A, images).sum().backward();
    let front = model.encoder_a.pretrained.as_ref().unwrap();
    assert!(
        front.vgg.as_ref().unwrap()[0]
            .weight
            .val()
            .grad(&gradients)
            .is_none()
    );
    assert!(
        model
            .encoder_a
            .down2
            .conv
            .weight
            .val()
            .grad(&gradients)
            .is_some()
    );
}

#[test]
fn efficientnet_front_is_trainable_unless_frozen() {
    let Some(folder) = efficientnet_folder() else {
        return;
    };
    let path = folder.join("efficientnet-lite0-57934424.pth");
    let device = default_device().autodiff();
    let network = EfficientNetLite0::load(&path, &device).unwrap();
    let config = tiny_config(PretrainedInit::EfficientNetLite0, &path, false);
    let model = DoubleVae::new(&config, &device)
        .load_pretrained(&config, &device)
        .unwrap();
    let front = model.encoder_b.pretrained.as_ref().unwrap();
    let stem = front.efficientnet_stem.as_ref().unwrap();
    let expected: Vec<f32> = network
        .conv_stem
        .weight
        .val()
        .into_data()
        .try_to_vec()
        .unwrap();
    let loaded: Vec<f32> = stem.weight.val().into_data().try_to_vec().unwrap();
    assert_eq!(loaded, expected);

    let images = Tensor::<4>::ones([1, 3, 16, 12], &device).mul_scalar(0.5);
    let latent = model.encode(Domain::B, images);
    assert_eq!(latent.dims(), [1, 8, 4, 3]);
    let gradients = latent.sum().backward();
    assert!(stem.weight.val().grad(&gradients).is_some());
}

#[test]
fn pretrained_init_without_weights_file_fails() {
    let folder = tempfile::tempdir().unwrap();
    let absent = folder.path().join("vgg16-397923af.pth");
    let config = tiny_config(PretrainedInit::Vgg16, &absent, true);
    let device = default_device();
    let error = DoubleVae::new(&config, &device)
        .load_pretrained(&config, &device)
        .unwrap_err();
    assert!(
        matches!(&error, Error::WeightsNotFound { path } if *path == absent),
        "{error}"
    );
}

/// Writes 10 day and 10 night 24×16 images with a place-dependent stripe pattern.
fn write_places(root: &Path) {
    for (folder, gain) in [("day", 1.0f32), ("night", 0.3)] {
        let folder = root.join(folder);
        std::fs::create_dir_all(&folder).unwrap();
        for place in 0..10u32 {
            let image = image::RgbImage::from_fn(24, 16, |x, y| {
                let stripe = ((x + 3 * place) / 4) % 2;
                let value = if stripe == 0 { 200.0 } else { 60.0 } * gain + y as f32;
                image::Rgb([value as u8, value as u8, 100])
            });
            image
                .save(folder.join(format!("Image{place:03}.png")))
                .unwrap();
        }
    }
}

fn first_vgg_weight(model: &DoubleVae) -> Vec<f32> {
    let front = model.encoder_a.pretrained.as_ref().unwrap();
    front.vgg.as_ref().unwrap()[0]
        .weight
        .val()
        .into_data()
        .try_to_vec()
        .unwrap()
}

fn down2_weight(model: &DoubleVae) -> Vec<f32> {
    model
        .encoder_a
        .down2
        .conv
        .weight
        .val()
        .into_data()
        .try_to_vec()
        .unwrap()
}

#[test]
fn frozen_front_stays_fixed_through_training_and_resume() {
    let folder = tempfile::tempdir().unwrap();
    let weights = folder.path().join("vgg16.safetensors");
    write_vgg_file(&weights, |_| {});
    write_places(folder.path());
    let mut config = Config::default();
    config.data.root = folder.path().to_path_buf();
    config.data.domain_a = vec!["day".into()];
    config.data.domain_b = vec!["night".into()];
    config.data.width = 16;
    config.data.height = 12;
    config.data.train_places = PlaceRange { start: 0, end: 8 };
    config.data.validation_places = PlaceRange { start: 8, end: 10 };
    config.model = tiny_config(PretrainedInit::Vgg16, &weights, true);
    config.training.batch_size = 4;
    config.training.epochs = 1;
    config.training.save_every = 1;
    config.optimizer.learning_rate = 1e-2;
    let run = folder.path().join("run");
    let device = default_device();

    let data = TrainingData::load(&config).unwrap();
    let mut trainer = Trainer::new(config.clone(), &run, &device, data)
        .unwrap()
        .with_progress(false);
    let pretrained = first_vgg_weight(trainer.model());
    assert_eq!(pretrained, values(0, 64 * 3 * 9));
    let down2 = down2_weight(trainer.model());
    trainer.run().unwrap();
    assert_eq!(first_vgg_weight(trainer.model()), pretrained);
    assert_ne!(down2_weight(trainer.model()), down2);

    // Freezing is not stored in the checkpoint; resuming must freeze again.
    let mut resumed = Trainer::resume(&run, &device, Some(2), None)
        .unwrap()
        .with_progress(false);
    resumed.run().unwrap();
    assert_eq!(resumed.epoch(), 2);
    assert_eq!(first_vgg_weight(resumed.model()), pretrained);

    // Fine-tuning trains the same layers.
    config.model.freeze_pretrained = false;
    let data = TrainingData::load(&config).unwrap();
    let mut tuned = Trainer::new(config, &folder.path().join("tuned"), &device, data)
        .unwrap()
        .with_progress(false);
    tuned.run().unwrap();
    assert_ne!(first_vgg_weight(tuned.model()), pretrained);
}

#[test]
fn efficientnet_layer_outputs_have_the_stage_shapes() {
    let device = default_device();
    let network = EfficientNetLite0::new(&device);
    let images = Tensor::<4>::zeros([2, 3, 64, 96], &device);
    let shapes: Vec<[usize; 4]> = network
        .layer_outputs(images.clone(), 8)
        .iter()
        .map(|output| output.dims())
        .collect();
    // Deepest first: the head, then stages 7 back to 1 (strides 32, 32, 32, 16, 16, 8, 4, 2).
    assert_eq!(
        shapes,
        [
            [2, 1280, 2, 3],
            [2, 320, 2, 3],
            [2, 192, 2, 3],
            [2, 112, 4, 6],
            [2, 80, 4, 6],
            [2, 40, 8, 12],
            [2, 24, 16, 24],
            [2, 16, 32, 48],
        ]
    );
    let two = network.layer_outputs(images.clone(), 2);
    assert_eq!(two.len(), 2);
    let features = network.features(images);
    assert_eq!(
        two[0].clone().into_data().try_to_vec::<f32>().unwrap(),
        features.into_data().try_to_vec::<f32>().unwrap(),
        "depth 1 is the feature map of the baselines"
    );
}
