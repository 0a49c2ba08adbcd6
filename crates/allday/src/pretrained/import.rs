//! Loading PyTorch checkpoints (`.pth`/`.pt` state dicts and `.safetensors` files) into burn
//! modules.
//!
//! The file's keys are renamed to the module's paths by a [`KeyMap`] of exact prefixes rather
//! than by burn-store's contiguous index mapping: renumbering `features.0, 2, 5, …` to
//! `0, 1, 2, …` silently shifts every later layer when one layer is absent from the file, and
//! the user would then see shape errors on layers that are fine. With explicit prefixes an
//! absent layer is reported as missing under its own name.
//!
//! burn-store applies the tensors and returns an `ApplyResult` listing the module paths it
//! found no tensor for (`missing`), the tensors no module path took (`unused`) and per-tensor
//! errors (shape or data type mismatches). [`load_weights`] turns those into
//! [`Error::MissingWeights`], [`Error::UnexpectedWeights`] and [`Error::WeightShape`], named by
//! the file's own keys.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use burn::module::Module;
use burn::store::{
    ApplyError, ModuleSnapshot, ModuleStore, PyTorchToBurnAdapter, PytorchStore, SafetensorsStore,
};

use crate::error::{Error, Result, WeightKey};

/// How to rename a checkpoint's keys to a module's paths.
#[derive(Debug, Clone, Default)]
pub struct KeyMap {
    /// `(file prefix, module prefix)` pairs; a key takes the first pair whose file prefix it
    /// starts with. Prefixes end with a dot so that `features.2.` does not match
    /// `features.21.`.
    prefixes: Vec<(String, String)>,
    /// File keys starting with one of these are expected and not loaded (a classifier the
    /// feature extractor does not use).
    ignored_prefixes: Vec<String>,
    /// File keys ending with one of these are expected and not loaded (PyTorch's batch-norm
    /// step counter `num_batches_tracked`, which inference does not need).
    ignored_suffixes: Vec<String>,
}

impl KeyMap {
    pub fn new() -> KeyMap {
        KeyMap::default()
    }

    /// Maps file keys starting with `file` to module paths starting with `module`.
    pub fn prefix(mut self, file: impl Into<String>, module: impl Into<String>) -> KeyMap {
        self.prefixes.push((file.into(), module.into()));
        self
    }

    /// Skips file keys starting with `prefix` without reporting them.
    pub fn ignore_prefix(mut self, prefix: impl Into<String>) -> KeyMap {
        self.ignored_prefixes.push(prefix.into());
        self
    }

    /// Skips file keys ending with `suffix` without reporting them.
    pub fn ignore_suffix(mut self, suffix: impl Into<String>) -> KeyMap {
        self.ignored_suffixes.push(suffix.into());
        self
    }

    fn is_ignored(&self, key: &str) -> bool {
        self.ignored_prefixes
            .iter()
            .any(|prefix| key.starts_with(prefix.as_str()))
            || self
                .ignored_suffixes
                .iter()
                .any(|suffix| key.ends_with(suffix.as_str()))
    }

    /// Returns the module path of a file key, or `None` when no prefix covers it.
    pub fn to_module(&self, key: &str) -> Option<String> {
        self.prefixes.iter().find_map(|(file, module)| {
            key.strip_prefix(file.as_str())
                .map(|rest| format!("{module}{rest}"))
        })
    }

    /// Returns the file key of a module path, or the path itself when no prefix covers it.
    pub fn to_file(&self, path: &str) -> String {
        self.prefixes
            .iter()
            .find_map(|(file, module)| {
                path.strip_prefix(module.as_str())
                    .map(|rest| format!("{file}{rest}"))
            })
            .unwrap_or_else(|| path.to_string())
    }
}

/// Checkpoint formats that [`load_weights`] reads, chosen by file extension.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WeightFormat {
    /// A pickled PyTorch state dict (`torch.save`), `.pth` or `.pt`.
    Pytorch,
    /// A safetensors file in PyTorch's layout (linear weights `[out, in]`).
    Safetensors,
}

impl WeightFormat {
    pub fn from_path(path: &Path) -> Result<WeightFormat> {
        let extension = path
            .extension()
            .and_then(|extension| extension.to_str())
            .map(str::to_ascii_lowercase);
        match extension.as_deref() {
            Some("pth" | "pt") => Ok(WeightFormat::Pytorch),
            Some("safetensors") => Ok(WeightFormat::Safetensors),
            _ => Err(Error::WeightFormat {
                path: path.to_path_buf(),
            }),
        }
    }
}

/// Reads every tensor of a checkpoint, named by the file's keys.
fn read_tensors(path: &Path) -> Result<Vec<burn::store::burn_pack::Tensor>> {
    if !path.is_file() {
        return Err(Error::WeightsNotFound {
            path: path.to_path_buf(),
        });
    }
    let invalid = |message: String| Error::Weights {
        path: path.to_path_buf(),
        message,
    };
    let tensors: Vec<_> = match WeightFormat::from_path(path)? {
        WeightFormat::Pytorch => {
            let mut store = PytorchStore::from_file(path).map_indices_contiguous(false);
            store
                .get_all_tensors()
                .map_err(|error| invalid(error.to_string()))?
                .values()
                .cloned()
                .collect()
        }
        WeightFormat::Safetensors => {
            let mut store = SafetensorsStore::from_file(path).map_indices_contiguous(false);
            store
                .get_all_tensors()
                .map_err(|error| invalid(error.to_string()))?
                .values()
                .cloned()
                .collect()
        }
    };
    Ok(tensors)
}

/// Loads the checkpoint at `path` into `module`, renaming keys with `keys`.
///
/// Linear weights are transposed from PyTorch's `[out, in]` to burn's `[in, out]` and
/// batch-norm `weight`/`bias` become `gamma`/`beta` (burn-store's `PyTorchToBurnAdapter`).
/// Every module parameter must be in the file with its shape, and every file tensor must be
/// used or ignored by `keys`; otherwise the error names the offending keys and shapes.
pub fn load_weights<M: Module + ModuleSnapshot>(
    mut module: M,
    path: &Path,
    keys: &KeyMap,
) -> Result<M> {
    let mut unexpected = Vec::new();
    let mut renamed = Vec::new();
    for mut tensor in read_tensors(path)? {
        if keys.is_ignored(&tensor.name) {
            continue;
        }
        match keys.to_module(&tensor.name) {
            Some(module_path) => {
                tensor.name = module_path;
                renamed.push(tensor);
            }
            None => unexpected.push(WeightKey {
                key: tensor.name.clone(),
                shape: tensor.shape.to_vec(),
            }),
        }
    }
    let file_shapes: BTreeMap<String, Vec<usize>> = renamed
        .iter()
        .map(|tensor| (tensor.name.clone(), tensor.shape.to_vec()))
        .collect();
    let expected_shapes: BTreeMap<String, Vec<usize>> = module
        .collect(None, None, true)
        .into_iter()
        .map(|tensor| (tensor.name, tensor.shape.to_vec()))
        .collect();

    let result = module.apply(renamed, None, Some(Box::new(PyTorchToBurnAdapter)), true);

    if let Some(error) = result.errors.first() {
        let error = match error {
            ApplyError::ShapeMismatch {
                path: module_path,
                expected,
                found,
            } => Error::WeightShape {
                path: path.to_path_buf(),
                key: keys.to_file(module_path),
                expected: expected.to_vec(),
                found: found.to_vec(),
            },
            other => Error::Weights {
                path: path.to_path_buf(),
                message: translate_paths(&other.to_string(), keys),
            },
        };
        return Err(error);
    }
    if !result.missing.is_empty() {
        let missing = result
            .missing
            .iter()
            .map(|(module_path, _)| WeightKey {
                key: keys.to_file(module_path),
                shape: expected_shapes
                    .get(module_path)
                    .cloned()
                    .unwrap_or_default(),
            })
            .collect();
        return Err(Error::MissingWeights {
            path: path.to_path_buf(),
            keys: missing,
        });
    }
    unexpected.extend(result.unused.iter().map(|module_path| WeightKey {
        key: keys.to_file(module_path),
        shape: file_shapes.get(module_path).cloned().unwrap_or_default(),
    }));
    if !unexpected.is_empty() {
        return Err(Error::UnexpectedWeights {
            path: path.to_path_buf(),
            keys: unexpected,
        });
    }
    Ok(module)
}

/// Replaces the module paths quoted in a burn-store message by the file's keys.
fn translate_paths(message: &str, keys: &KeyMap) -> String {
    let mut parts = message.split('\'');
    let mut translated = parts.next().unwrap_or_default().to_string();
    for (index, part) in parts.enumerate() {
        translated.push('\'');
        // Odd pieces sit between quotes.
        if index % 2 == 0 {
            translated.push_str(&keys.to_file(part));
        } else {
            translated.push_str(part);
        }
    }
    translated
}

/// Returns the default location of a checkpoint that torchvision downloads, for messages.
pub fn torch_hub_checkpoint(file: &str) -> PathBuf {
    let home = std::env::var_os("TORCH_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".cache/torch")))
        .unwrap_or_else(|| PathBuf::from("~/.cache/torch"));
    home.join("hub/checkpoints").join(file)
}

#[cfg(test)]
mod tests {
    use burn::nn::{BatchNorm, BatchNormConfig, Linear, LinearConfig};
    use burn::prelude::*;
    use safetensors::tensor::{Dtype, TensorView};

    use super::*;
    use crate::backend::default_device;

    #[derive(Module, Debug)]
    struct Small {
        fc: Linear,
        norm: BatchNorm,
    }

    fn small(device: &Device) -> Small {
        Small {
            fc: LinearConfig::new(3, 2).init(device),
            norm: BatchNormConfig::new(2).init(device),
        }
    }

    fn keys() -> KeyMap {
        KeyMap::new()
            .prefix("head.", "fc.")
            .prefix("bn.", "norm.")
            .ignore_suffix(".num_batches_tracked")
    }

    /// Writes f32 tensors named in PyTorch's layout to a safetensors file.
    fn write(path: &Path, tensors: &[(&str, Vec<usize>, Vec<f32>)]) {
        let bytes: Vec<Vec<u8>> = tensors
            .iter()
            .map(|(_, _, values)| values.iter().flat_map(|v| v.to_le_bytes()).collect())
            .collect();
        let views = tensors.iter().zip(&bytes).map(|((name, shape, _), data)| {
            (
                name.to_string(),
                TensorView::new(Dtype::F32, shape.clone(), data).unwrap(),
            )
        });
        safetensors::serialize_to_file(views, None, path).unwrap();
    }

    fn pytorch_tensors() -> Vec<(&'static str, Vec<usize>, Vec<f32>)> {
        vec![
            // PyTorch's linear weight is [out, in].
            (
                "head.weight",
                vec![2, 3],
                vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0],
            ),
            ("head.bias", vec![2], vec![0.5, -0.5]),
            ("bn.weight", vec![2], vec![2.0, 3.0]),
            ("bn.bias", vec![2], vec![0.1, 0.2]),
            ("bn.running_mean", vec![2], vec![1.0, -1.0]),
            ("bn.running_var", vec![2], vec![4.0, 9.0]),
            ("bn.num_batches_tracked", vec![1], vec![7.0]),
        ]
    }

    fn to_vec<const D: usize>(tensor: Tensor<D>) -> Vec<f32> {
        tensor.into_data().try_to_vec::<f32>().unwrap()
    }

    #[test]
    fn keys_map_both_ways() {
        let keys = keys();
        assert_eq!(keys.to_module("head.weight").as_deref(), Some("fc.weight"));
        assert_eq!(keys.to_module("other.weight"), None);
        assert_eq!(keys.to_file("norm.running_var"), "bn.running_var");
        assert!(keys.is_ignored("bn.num_batches_tracked"));
    }

    #[test]
    fn linear_is_transposed_and_batch_norm_renamed() {
        let folder = tempfile::tempdir().unwrap();
        let path = folder.path().join("small.safetensors");
        write(&path, &pytorch_tensors());
        let device = default_device();
        let module = load_weights(small(&device), &path, &keys()).unwrap();
        // burn stores [in, out]: the transpose of PyTorch's rows.
        assert_eq!(
            to_vec(module.fc.weight.val()),
            [1.0, 4.0, 2.0, 5.0, 3.0, 6.0]
        );
        assert_eq!(to_vec(module.norm.gamma.val()), [2.0, 3.0]);
        assert_eq!(to_vec(module.norm.beta.val()), [0.1, 0.2]);
        assert_eq!(to_vec(module.norm.running_var.value_sync()), [4.0, 9.0]);
        // x · Wᵀ + b with x = (1, 1, 1): (6.5, 14.5).
        let output = module.fc.forward(Tensor::<2>::ones([1, 3], &device));
        assert_eq!(to_vec(output), [6.5, 14.5]);
    }

    #[test]
    fn unknown_key_outside_the_map_is_unexpected() {
        let folder = tempfile::tempdir().unwrap();
        let path = folder.path().join("small.safetensors");
        let mut tensors = pytorch_tensors();
        tensors.push(("extra.weight", vec![5], vec![0.0; 5]));
        write(&path, &tensors);
        let error = load_weights(small(&default_device()), &path, &keys()).unwrap_err();
        assert!(
            matches!(&error, Error::UnexpectedWeights { keys, .. }
                if keys.len() == 1 && keys[0].key == "extra.weight" && keys[0].shape == [5]),
            "{error}"
        );
    }

    #[test]
    fn wrong_extension_and_absent_file_are_reported() {
        let folder = tempfile::tempdir().unwrap();
        let absent = folder.path().join("absent.pth");
        let error = load_weights(small(&default_device()), &absent, &keys()).unwrap_err();
        assert!(matches!(error, Error::WeightsNotFound { .. }), "{error}");
        let text = folder.path().join("weights.txt");
        std::fs::write(&text, "not weights").unwrap();
        let error = load_weights(small(&default_device()), &text, &keys()).unwrap_err();
        assert!(matches!(error, Error::WeightFormat { .. }), "{error}");
        let broken = folder.path().join("broken.safetensors");
        std::fs::write(&broken, "not weights").unwrap();
        let error = load_weights(small(&default_device()), &broken, &keys()).unwrap_err();
        assert!(error.to_string().contains("broken.safetensors"), "{error}");
    }
}
