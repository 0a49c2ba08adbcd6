//! Pretrained networks: EfficientNet-Lite0 against its reference output, and VGG-16 loaded
//! from a torchvision-layout file with random weights of the real shapes.
//!
//! The EfficientNet-Lite0 weights are read from `../shared/models/efficientnet_lite0` beside the
//! repository, or from the folder in `ALLDAY_EFFICIENTNET_LITE0`; without them the test prints
//! why it is skipped.

use std::path::{Path, PathBuf};

use allday::backend::default_device;
use allday::error::Error;
use allday::pretrained::vgg::{CHANNELS, TORCHVISION_INDICES};
use allday::pretrained::{EfficientNetLite0, Vgg16};
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
    let logits: Vec<f32> = network.forward(input).into_data().try_to_vec().unwrap();
    let worst = logits
        .iter()
        .zip(&expected)
        .map(|(a, e)| (a - e).abs())
        .fold(0.0f32, f32::max);
    assert!(worst < 1e-3, "largest logit difference {worst}");

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
