//! The library's error type.

use std::path::PathBuf;

/// Everything that can go wrong in allday's library code.
///
/// Each variant carries the file, field or value at fault, so that the message alone shows the
/// user what to fix.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(
        "image folder not found: {path} (check the data root and the folder names in the config)"
    )]
    MissingFolder { path: PathBuf },

    #[error("no images (.jpg, .jpeg, .png) in folder {path}")]
    NoImages { path: PathBuf },

    #[error(
        "image {path} is truncated (its JPEG end marker is missing); copy it again or remove it"
    )]
    TruncatedImage { path: PathBuf },

    #[error("none of the {skipped} images in {folder} could be read (all were skipped)")]
    NoReadableImages { folder: PathBuf, skipped: usize },

    #[error(
        "cannot read image {path}: {source} (replace or remove the file; in a dataset, data.unreadable_images = \"skip\" leaves such files out)"
    )]
    Image {
        path: PathBuf,
        #[source]
        source: image::ImageError,
    },

    #[error(
        "image {path} is {width}×{height} pixels, above the limit of {limit} pixels; resize it or remove it from the folder"
    )]
    ImageTooLarge {
        path: PathBuf,
        width: u32,
        height: u32,
        limit: u64,
    },

    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    #[error("invalid config {path}: {message}")]
    ConfigParse { path: PathBuf, message: String },

    #[error("invalid config value `{field}` = {value}: {expected}")]
    InvalidConfig {
        field: &'static str,
        value: String,
        expected: String,
    },

    #[error("invalid place range `{value}`: expected START..END with START < END, e.g. 100..200")]
    InvalidPlaceRange { value: String },

    #[error(
        "place range {start}..{end} needs frames up to {end}, but folder {folder} contains {available} images"
    )]
    PlacesOutOfRange {
        folder: PathBuf,
        start: usize,
        end: usize,
        available: usize,
    },

    #[error("ground-truth file {path}, line {line}: {message}")]
    GroundTruth {
        path: PathBuf,
        line: usize,
        message: String,
    },

    #[error(
        "no checkpoint in {path} (train first with `allday train`, or pass a checkpoint directory)"
    )]
    NoCheckpoint { path: PathBuf },

    #[error("checkpoint {path} is invalid: {message}")]
    InvalidCheckpoint { path: PathBuf, message: String },

    #[error(
        "not enough disk space for checkpoints in {path}: about {needed} bytes needed, {available} available; free space or choose another --out"
    )]
    DiskSpace {
        path: PathBuf,
        needed: u64,
        available: u64,
    },

    #[error(
        "run directory {path} already contains a training run; resume it with --resume or choose another --out"
    )]
    RunExists { path: PathBuf },

    #[error("invalid weights {path}: {message}")]
    Weights { path: PathBuf, message: String },

    #[error(
        "pretrained weights file not found: {path} (pass the file with --weights to `baseline` or --backbone-weights to `train-triplet`; see the README for where to get it)"
    )]
    WeightsNotFound { path: PathBuf },

    #[error(
        "cannot tell the format of weights file {path}: expected a .pth or .pt PyTorch state dict or a .safetensors file"
    )]
    WeightFormat { path: PathBuf },

    #[error(
        "weights file {path} lacks {} tensor(s) the network needs: {}; is it the right network?",
        keys.len(),
        list_keys(keys)
    )]
    MissingWeights { path: PathBuf, keys: Vec<WeightKey> },

    #[error(
        "weights file {path} holds {} tensor(s) the network has no place for: {}; is it the right network?",
        keys.len(),
        list_keys(keys)
    )]
    UnexpectedWeights { path: PathBuf, keys: Vec<WeightKey> },

    #[error(
        "weights file {path}: tensor `{key}` has shape {found:?}, but the network expects {expected:?}"
    )]
    WeightShape {
        path: PathBuf,
        key: String,
        expected: Vec<usize>,
        found: Vec<usize>,
    },

    #[error(
        "spatial descriptors need every image at the same size, but {first} gives a {first_grid:?} feature grid and {other} gives {other_grid:?}; use a global pooling instead"
    )]
    GridMismatch {
        first: PathBuf,
        first_grid: [usize; 2],
        other: PathBuf,
        other_grid: [usize; 2],
    },

    #[error(
        "per-position features need every image at one size, but {first} is resized to {first_size:?} (height, width) and {other} to {other_size:?}; use images of one aspect ratio"
    )]
    InputSizeMismatch {
        first: PathBuf,
        first_size: [usize; 2],
        other: PathBuf,
        other_size: [usize; 2],
    },

    #[error(
        "the channel weights are for layers of {weights:?} channels, but the network gives {features:?}; pass the weights learned on this network"
    )]
    WeightsMismatch {
        weights: Vec<usize>,
        features: Vec<usize>,
    },

    #[error("cannot write PNG {path}: {source}")]
    WritePng {
        path: PathBuf,
        #[source]
        source: image::ImageError,
    },

    #[error(
        "channel {channel} does not exist: the layer has {channels} channels (0 to {channels} − 1)"
    )]
    ChannelOutOfRange { channel: usize, channels: usize },

    #[error(
        "position x {x}, y {y} lies outside the {columns}×{rows} latent grid (x below {columns}, y below {rows})"
    )]
    PositionOutOfRange {
        x: usize,
        y: usize,
        columns: usize,
        rows: usize,
    },

    #[error("cannot draw chart `{chart}`: {message}")]
    Plot { chart: String, message: String },

    #[error(
        "training diverged (a loss term or the gradient is not finite) at epoch {epoch}, step {step}: {terms}; last checkpoint: {checkpoint}. Lower optimizer.learning_rate or the loss weights, then resume or start again"
    )]
    Diverged {
        epoch: usize,
        step: usize,
        terms: String,
        checkpoint: String,
    },

    #[error(
        "{path} is not an allday index (no manifest.json, but other files); choose a new --out or an empty folder"
    )]
    NotAnIndex { path: PathBuf },

    #[error("index {path} not found; build one with `allday index --out {path} …`")]
    IndexNotFound { path: PathBuf },

    #[error("index {path} is damaged: {message}; build it again with `allday index`")]
    InvalidIndex { path: PathBuf, message: String },

    #[error(
        "index {path} was built with checkpoint weights {index_fingerprint}, but {checkpoint} has weights {checkpoint_fingerprint}; pass the checkpoint the index was built with, or build a new index with --out"
    )]
    ForeignCheckpoint {
        path: PathBuf,
        index_fingerprint: String,
        checkpoint: PathBuf,
        checkpoint_fingerprint: String,
    },

    #[error(
        "index {path} holds {field} {index_value}, but {given_value} was asked for; build a separate index with another --out"
    )]
    IndexMismatch {
        path: PathBuf,
        field: &'static str,
        index_value: String,
        given_value: String,
    },

    #[error("invalid .npy file {path}: {message}")]
    Npy { path: PathBuf, message: String },

    #[error("cannot write safetensors file {path}: {message}")]
    Safetensors { path: PathBuf, message: String },

    #[error("download of {url} failed: {message}")]
    Download { url: String, message: String },

    #[error("archive {path} is not a usable dataset archive: {message}")]
    Archive { path: PathBuf, message: String },

    #[error(
        "{path} exists but does not hold the complete dataset ({message}); remove it or choose another --dir"
    )]
    IncompleteDataset { path: PathBuf, message: String },
}

/// A tensor of a weights file, named by the file's key, with its shape.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WeightKey {
    pub key: String,
    pub shape: Vec<usize>,
}

/// Lists the first keys with their shapes; a long list ends with the count left out.
fn list_keys(keys: &[WeightKey]) -> String {
    const SHOWN: usize = 8;
    let mut text = keys
        .iter()
        .take(SHOWN)
        .map(|key| format!("`{}` {:?}", key.key, key.shape))
        .collect::<Vec<_>>()
        .join(", ");
    if keys.len() > SHOWN {
        text.push_str(&format!(" and {} more", keys.len() - SHOWN));
    }
    text
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// Wraps an I/O error with the path it concerns.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            source,
        }
    }
}
