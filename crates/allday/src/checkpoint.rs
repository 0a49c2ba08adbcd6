//! Checkpoints: the model, the optimizer state and the training position, saved atomically.
//!
//! A checkpoint is a directory `checkpoints/epoch-NNNNNN/` inside the run directory:
//!
//! - `NAME.bpk` for each network (`vae` for the double VAE): its parameters and batch-norm
//!   statistics, in burnpack, which also stores parameter ids so that the optimizer state finds
//!   its parameters again;
//! - `NAME-optimizer.bpk`: the state of that network's optimizer (Adam's moment estimates);
//! - `state.json`: epoch, step, seed, the full config and a SHA-256 of each file above.
//!
//! The directory is written under a temporary name, every file is synced, and only then is it
//! renamed into place, so a killed process leaves either the complete checkpoint or none.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};

use burn::module::{ModuleVisitor, Param};
use burn::optim::ModuleOptimizer;
use burn::prelude::*;
use burn::store::{BurnpackStore, ModuleSnapshot};
use burn::tensor::Bytes;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::config::Config;
use crate::error::{Error, Result};
use crate::model::DoubleVae;

const FORMAT_VERSION: u32 = 1;
/// Name of the double VAE's files in a checkpoint.
pub const VAE: &str = "vae";
const TEMPORARY_MARK: &str = ".tmp-";
const STATE_FILE: &str = "state.json";
const CHECKPOINTS_DIR: &str = "checkpoints";
const PREFIX: &str = "epoch-";

/// The training position and provenance stored beside the weights.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CheckpointState {
    pub format: u32,
    /// Epochs completed.
    pub epoch: usize,
    /// Optimizer steps completed.
    pub step: usize,
    /// The run's config as TOML, every field included.
    pub config: String,
    /// SHA-256 (hex) of each weight file.
    pub sha256: BTreeMap<String, String>,
    /// SHA-256 (hex) of each network's parameter values in module order, see
    /// [`weights_fingerprint`]. Unlike the file checksums it does not depend on parameter ids,
    /// which burn draws at random, so two runs with equal weights have equal fingerprints.
    #[serde(default)]
    pub weights_fingerprint: BTreeMap<String, String>,
}

/// A checkpoint on disk whose state has been read and checked.
#[derive(Debug, Clone)]
pub struct Checkpoint {
    pub path: PathBuf,
    pub state: CheckpointState,
    pub config: Config,
}

/// Cuts `text` to at most `limit` characters, marking the cut.
fn shorten(text: &str, limit: usize) -> String {
    match text.char_indices().nth(limit) {
        Some((end, _)) => format!("{}…", &text[..end]),
        None => text.to_string(),
    }
}

/// Lower-case hexadecimal SHA-256 of `bytes`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect()
}

fn write_synced(path: &Path, bytes: &[u8]) -> Result<()> {
    let mut file = File::create(path).map_err(|source| Error::io(path, source))?;
    file.write_all(bytes)
        .map_err(|source| Error::io(path, source))?;
    file.sync_all().map_err(|source| Error::io(path, source))
}

fn sync_dir(path: &Path) -> Result<()> {
    File::open(path)
        .and_then(|dir| dir.sync_all())
        .map_err(|source| Error::io(path, source))
}

/// Formats the checkpoint directory name of an epoch.
fn checkpoint_name(epoch: usize) -> String {
    format!("{PREFIX}{epoch:06}")
}

/// Serialises a module's parameters to burnpack bytes.
///
/// Batch-norm running statistics lag one update behind in burn 0.22; `valid()` merges the
/// pending update, so the saved statistics are the current ones.
pub fn model_bytes<M: Module + ModuleSnapshot>(
    model: &M,
    path_for_errors: &Path,
) -> Result<Vec<u8>> {
    let snapshot = model.valid();
    let mut store = BurnpackStore::from_bytes(None);
    snapshot
        .save_into(&mut store)
        .and_then(|_| store.get_bytes())
        .map(|bytes| bytes.to_vec())
        .map_err(|error| Error::Weights {
            path: path_for_errors.to_path_buf(),
            message: error.to_string(),
        })
}

/// Computes the SHA-256 (hex) of a module's parameter and buffer values, with their shapes, in
/// module order. It identifies the weights independently of parameter ids.
pub fn weights_fingerprint<M: Module>(module: &M) -> String {
    struct Hasher(Sha256);
    impl ModuleVisitor for Hasher {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
            let data = param.val().into_data();
            for dim in param.val().dims() {
                self.0.update((dim as u64).to_le_bytes());
            }
            self.0.update(data.as_bytes());
        }
    }
    let mut hasher = Hasher(Sha256::new());
    module.valid().visit(&mut hasher);
    hasher
        .0
        .finalize()
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect()
}

/// One trained network's files in a checkpoint: its weights and its optimizer's state.
#[derive(Debug, Clone)]
pub struct NetworkState {
    /// File stem: the weights go to `NAME.bpk`, the optimizer state to `NAME-optimizer.bpk`.
    pub name: String,
    pub weights: Vec<u8>,
    pub optimizer: Vec<u8>,
    /// See [`weights_fingerprint`].
    pub fingerprint: String,
}

impl NetworkState {
    /// Serialises a network and its optimizer under `name`.
    pub fn new<M: Module + ModuleSnapshot>(
        name: &str,
        module: &M,
        optimizer: &ModuleOptimizer,
    ) -> Result<Self> {
        let weights = model_bytes(module, Path::new(&weights_file(name)))?;
        let optimizer = optimizer
            .into_bytes()
            .map(|bytes| bytes.to_vec())
            .map_err(|error| Error::Weights {
                path: PathBuf::from(optimizer_file(name)),
                message: error.to_string(),
            })?;
        Ok(NetworkState {
            name: name.to_string(),
            weights,
            optimizer,
            fingerprint: weights_fingerprint(module),
        })
    }
}

fn weights_file(network: &str) -> String {
    format!("{network}.bpk")
}

fn optimizer_file(network: &str) -> String {
    format!("{network}-optimizer.bpk")
}

/// Writes a checkpoint for `epoch` into `run_dir/checkpoints/`, atomically, then removes all
/// but the newest `keep` checkpoints. `extra_files` (name, content) are stored beside the
/// networks under the same checksums.
pub fn save(
    run_dir: &Path,
    config: &Config,
    epoch: usize,
    step: usize,
    networks: &[NetworkState],
    extra_files: &[(String, Vec<u8>)],
    keep: usize,
) -> Result<PathBuf> {
    let checkpoints = run_dir.join(CHECKPOINTS_DIR);
    std::fs::create_dir_all(&checkpoints).map_err(|source| Error::io(&checkpoints, source))?;
    let name = checkpoint_name(epoch);
    let final_path = checkpoints.join(&name);
    let temporary = checkpoints.join(format!(".{name}{TEMPORARY_MARK}{}", std::process::id()));
    if temporary.exists() {
        std::fs::remove_dir_all(&temporary).map_err(|source| Error::io(&temporary, source))?;
    }
    std::fs::create_dir(&temporary).map_err(|source| Error::io(&temporary, source))?;

    let mut sha256 = BTreeMap::new();
    let mut weights_fingerprint = BTreeMap::new();
    for network in networks {
        weights_fingerprint.insert(network.name.clone(), network.fingerprint.clone());
        for (file, bytes) in [
            (weights_file(&network.name), &network.weights),
            (optimizer_file(&network.name), &network.optimizer),
        ] {
            write_synced(&temporary.join(&file), bytes)?;
            sha256.insert(file, sha256_hex(bytes));
        }
    }
    for (file, bytes) in extra_files {
        write_synced(&temporary.join(file), bytes)?;
        sha256.insert(file.clone(), sha256_hex(bytes));
    }
    let state = CheckpointState {
        format: FORMAT_VERSION,
        epoch,
        step,
        config: config.to_toml(),
        sha256,
        weights_fingerprint,
    };
    let json = serde_json::to_vec_pretty(&state).expect("checkpoint state serialises to JSON");
    write_synced(&temporary.join(STATE_FILE), &json)?;
    sync_dir(&temporary)?;

    if final_path.exists() {
        // A resumed run that repeats an epoch replaces that epoch's older checkpoint.
        std::fs::remove_dir_all(&final_path).map_err(|source| Error::io(&final_path, source))?;
    }
    std::fs::rename(&temporary, &final_path).map_err(|source| Error::io(&final_path, source))?;
    sync_dir(&checkpoints)?;

    prune(&checkpoints, keep)?;
    Ok(final_path)
}

/// Removes all but the newest `keep` checkpoints and any leftover temporary directories.
fn prune(checkpoints: &Path, keep: usize) -> Result<()> {
    let mut epochs = list(checkpoints)?;
    epochs.sort_unstable_by_key(|(epoch, _)| std::cmp::Reverse(*epoch));
    for (_, path) in epochs.into_iter().skip(keep.max(1)) {
        std::fs::remove_dir_all(&path).map_err(|source| Error::io(&path, source))?;
    }
    // Temporary directories are left behind only by a process killed while saving.
    let entries =
        std::fs::read_dir(checkpoints).map_err(|source| Error::io(checkpoints, source))?;
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with('.') && name.contains(TEMPORARY_MARK) && entry.path().is_dir() {
            std::fs::remove_dir_all(entry.path())
                .map_err(|source| Error::io(entry.path(), source))?;
        }
    }
    Ok(())
}

/// Lists the checkpoint directories under `checkpoints` with their epochs, unordered.
fn list(checkpoints: &Path) -> Result<Vec<(usize, PathBuf)>> {
    if !checkpoints.is_dir() {
        return Ok(Vec::new());
    }
    let entries =
        std::fs::read_dir(checkpoints).map_err(|source| Error::io(checkpoints, source))?;
    let mut found = Vec::new();
    for entry in entries {
        let path = entry
            .map_err(|source| Error::io(checkpoints, source))?
            .path();
        let epoch = path
            .file_name()
            .and_then(|name| name.to_str())
            .and_then(|name| name.strip_prefix(PREFIX))
            .and_then(|number| number.parse::<usize>().ok());
        if let (Some(epoch), true) = (epoch, path.is_dir()) {
            found.push((epoch, path));
        }
    }
    Ok(found)
}

/// Estimates the disk space that checkpointing a module needs while `keep` checkpoints are
/// kept: each checkpoint contains the weights and Adam's two moment estimates (three f32 values
/// per parameter), and a new checkpoint is complete before the oldest is removed.
pub fn estimated_checkpoint_bytes<M: Module>(module: &M, keep: usize) -> u64 {
    let per_checkpoint = 3 * 4 * module.num_params() as u64;
    per_checkpoint * (keep as u64 + 1)
}

/// Fails with a clear error when the file system of `dir` has less than `needed` bytes free.
pub fn check_free_space(dir: &Path, needed: u64) -> Result<()> {
    let available = fs4::available_space(dir).map_err(|source| Error::io(dir, source))?;
    if available < needed {
        return Err(Error::DiskSpace {
            path: dir.to_path_buf(),
            needed,
            available,
        });
    }
    Ok(())
}

/// Returns whether `run_dir` already contains at least one checkpoint.
pub fn has_checkpoints(run_dir: &Path) -> Result<bool> {
    Ok(!list(&run_dir.join(CHECKPOINTS_DIR))?.is_empty())
}

impl Checkpoint {
    /// Opens `path` for inference. It is either a checkpoint directory or a run directory,
    /// and for a run directory the newest checkpoint whose model weights are intact is used.
    pub fn open(path: &Path) -> Result<Checkpoint> {
        Self::open_with(path, VAE, false)
    }

    /// Opens `path` to resume training: like [`Checkpoint::open`], but every file of the
    /// checkpoint, optimizer states included, must be intact.
    pub fn open_for_resume(path: &Path) -> Result<Checkpoint> {
        Self::open_with(path, VAE, true)
    }

    /// Opens `path` to resume the training of network `network` (rather than the double VAE):
    /// the newest checkpoint that lists the network and whose files are all intact.
    pub fn open_network_for_resume(path: &Path, network: &str) -> Result<Checkpoint> {
        Self::open_with(path, network, true)
    }

    /// Opens the newest checkpoint that lists `network`'s weights and whose weights (or, with
    /// `every_file`, all listed files) match their checksums.
    fn open_with(path: &Path, network: &str, every_file: bool) -> Result<Checkpoint> {
        let open = |candidate: &Path| {
            let checkpoint = Self::read(candidate)?;
            checkpoint.verify(network, every_file)?;
            Ok(checkpoint)
        };
        if path.join(STATE_FILE).is_file() {
            return open(path);
        }
        let mut epochs = list(&path.join(CHECKPOINTS_DIR))?;
        if epochs.is_empty() {
            return Err(Error::NoCheckpoint {
                path: path.to_path_buf(),
            });
        }
        epochs.sort_unstable_by_key(|(epoch, _)| std::cmp::Reverse(*epoch));
        let mut first_error = None;
        for (_, candidate) in &epochs {
            match open(candidate) {
                Ok(checkpoint) => return Ok(checkpoint),
                Err(error) => {
                    tracing::warn!("skipping damaged checkpoint: {error}");
                    first_error.get_or_insert(error);
                }
            }
        }
        Err(Error::InvalidCheckpoint {
            path: path.to_path_buf(),
            message: format!(
                "all {} checkpoints are damaged (newest: {}); restore them from a backup or start a new run with another --out",
                epochs.len(),
                first_error.map_or_else(String::new, |error| error.to_string())
            ),
        })
    }

    fn read(path: &Path) -> Result<Checkpoint> {
        let state_path = path.join(STATE_FILE);
        let text = std::fs::read(&state_path).map_err(|source| Error::io(&state_path, source))?;
        let state: CheckpointState =
            serde_json::from_slice(&text).map_err(|error| Error::InvalidCheckpoint {
                path: state_path.clone(),
                message: error.to_string(),
            })?;
        if state.format != FORMAT_VERSION {
            return Err(Error::InvalidCheckpoint {
                path: state_path,
                message: format!(
                    "format version {} is not supported by this allday (expected {FORMAT_VERSION})",
                    state.format
                ),
            });
        }
        let config = Config::from_toml(&state.config, &state_path).map_err(|error| {
            Error::InvalidCheckpoint {
                path: state_path.clone(),
                message: format!(
                    "its config cannot be read by this version of allday ({error}); it was probably written by another version"
                ),
            }
        })?;
        Ok(Checkpoint {
            path: path.to_path_buf(),
            state,
            config,
        })
    }

    /// Reads a weight file and checks it against the checksum in `state.json`.
    fn read_verified(&self, file: &str) -> Result<Vec<u8>> {
        let path = self.path.join(file);
        let bytes = std::fs::read(&path).map_err(|source| Error::io(&path, source))?;
        let expected = self
            .state
            .sha256
            .get(file)
            .ok_or_else(|| Error::InvalidCheckpoint {
                path: self.path.join(STATE_FILE),
                message: format!("no checksum for {file}"),
            })?;
        if &sha256_hex(&bytes) != expected {
            return Err(Error::InvalidCheckpoint {
                path,
                message: "checksum mismatch (the file is damaged or was modified)".into(),
            });
        }
        Ok(bytes)
    }

    /// Checks that `network`'s weights are listed, then checks them (or, with `every_file`,
    /// every listed file) against their checksums.
    fn verify(&self, network: &str, every_file: bool) -> Result<()> {
        let weights = weights_file(network);
        if !self.state.sha256.contains_key(&weights) {
            return Err(Error::InvalidCheckpoint {
                path: self.path.join(STATE_FILE),
                message: format!("no `{weights}` listed"),
            });
        }
        if !every_file {
            return self.read_verified(&weights).map(drop);
        }
        for file in self.state.sha256.keys() {
            self.read_verified(file)?;
        }
        Ok(())
    }

    /// Reads a file saved with the checkpoint (see `extra_files` of [`save`]) after checking
    /// it against its checksum.
    pub fn read_file(&self, name: &str) -> Result<Vec<u8>> {
        self.read_verified(name)
    }

    /// Builds the model of the checkpoint's config on `device` and loads its weights.
    pub fn load_model(&self, device: &Device) -> Result<DoubleVae> {
        self.load_network(VAE, DoubleVae::new(&self.config.model, device))
    }

    /// Loads the weights of network `name` into `model`, a freshly built one of the right
    /// shape.
    pub fn load_network<M: Module + ModuleSnapshot>(&self, name: &str, mut model: M) -> Result<M> {
        let file = weights_file(name);
        let bytes = self.read_verified(&file)?;
        let mut store = BurnpackStore::from_bytes(Some(Bytes::from_bytes_vec(bytes)));
        let weights_error = |message: String| Error::Weights {
            path: self.path.join(&file),
            message: shorten(&message, 300),
        };
        let result = model.load_from(&mut store).map_err(|error| {
            weights_error(format!(
                "the weights do not fit the model of the checkpoint's config: {error}"
            ))
        })?;
        if !result.is_success() || !result.missing.is_empty() {
            return Err(weights_error(format!(
                "the weights do not fit the model of the checkpoint's config ({} errors, {} missing tensors, first: {:?})",
                result.errors.len(),
                result.missing.len(),
                result
                    .errors
                    .first()
                    .map(|error| error.to_string())
                    .or_else(|| result.missing.first().map(|missing| missing.0.clone()))
            )));
        }
        Ok(model)
    }

    /// Restores the state of network `name`'s optimizer into `optimizer`, a freshly built one
    /// of the same kind.
    pub fn load_optimizer(
        &self,
        name: &str,
        optimizer: ModuleOptimizer,
    ) -> Result<ModuleOptimizer> {
        let file = optimizer_file(name);
        let bytes = self.read_verified(&file)?;
        optimizer
            .from_bytes(Bytes::from_bytes_vec(bytes))
            .map_err(|error| Error::Weights {
                path: self.path.join(&file),
                message: error.to_string(),
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::default_device;
    use crate::config::ModelConfig;

    #[test]
    fn free_space_shortage_names_directory() {
        let folder = tempfile::tempdir().unwrap();
        check_free_space(folder.path(), 1).unwrap();
        let error = check_free_space(folder.path(), u64::MAX).unwrap_err();
        assert!(matches!(error, Error::DiskSpace { .. }), "{error}");
        assert!(
            error
                .to_string()
                .contains(&folder.path().display().to_string()),
            "{error}"
        );
    }

    #[test]
    fn checkpoint_estimate_counts_weights_and_moments() {
        let model = DoubleVae::new(&ModelConfig::default(), &default_device());
        let parameters = model.num_params() as u64;
        // Three f32 values per parameter, in three kept checkpoints plus the one being written.
        assert_eq!(estimated_checkpoint_bytes(&model, 3), 4 * 12 * parameters);
    }

    #[test]
    fn shorten_marks_the_cut() {
        assert_eq!(shorten("abcdef", 3), "abc…");
        assert_eq!(shorten("abc", 3), "abc");
    }
}
