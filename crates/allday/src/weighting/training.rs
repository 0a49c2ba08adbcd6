//! Triplet training of channel weights, with checkpoints and exact resume.
//!
//! A triplet run lives in its own directory (by default `RUN_DIR/triplet-dN`): `source.json`
//! names the stage-1 checkpoint whose frozen encoders it trains on, `metrics.csv` has one row
//! per epoch, and `checkpoints/` contains the weights, Adam's state and the loss history. The
//! triplets of epoch k are drawn from stream k of the seed, so a resumed run draws the same
//! triplets as an uninterrupted one.

use std::io::Write;
use std::path::{Path, PathBuf};

use burn::module::Module;
use burn::optim::{AdamConfig, GradientsParams, ModuleOptimizer};
use burn::prelude::*;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use super::triplet_loss;
use super::{ChannelWeights, ClampNonNegative, LayerFeatures, Triplet, sample_triplets};
use crate::checkpoint::{self, Checkpoint, NetworkState};
use crate::config::{Config, TripletConfig};
use crate::data::{ImageEntry, ImageSet};
use crate::error::{Error, Result};
use crate::model::Domain;
use crate::pretrained::Network;

/// Name of the channel weights' files in a triplet checkpoint.
pub const NETWORK: &str = "channel-weights";

/// Returns the config of the triplet run in `run_dir`, or `None` when `run_dir` is no triplet
/// run: it lacks checkpoints or the `source.json` of one (for example the folder of a weights
/// file copied elsewhere, or a stage-1 run).
pub fn triplet_run_config(run_dir: &Path) -> Result<Option<Config>> {
    if !run_dir.join(SOURCE_FILE).is_file() || !checkpoint::has_checkpoints(run_dir)? {
        return Ok(None);
    }
    Ok(Some(
        Checkpoint::open_network_for_resume(run_dir, NETWORK)?.config,
    ))
}
const HISTORY_FILE: &str = "history.json";
const SOURCE_FILE: &str = "source.json";
const METRICS_FILE: &str = "metrics.csv";
const METRICS_HEADER: &str = "epoch,train_loss,validation_loss,validation_satisfied";
const CHECKPOINTS_KEPT: usize = 3;

/// Losses of one epoch of triplet training.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct TripletEpoch {
    pub epoch: usize,
    pub train_loss: f64,
    pub validation_loss: f64,
    pub validation_satisfied: f64,
}

/// Images of the training and validation places of both domains.
pub struct TripletData {
    pub train_a: ImageSet,
    pub train_b: ImageSet,
    pub validation_a: ImageSet,
    pub validation_b: ImageSet,
}

/// The frozen network a triplet run trains on, saved as `source.json`: a stage-1 checkpoint's
/// encoders or a pretrained backbone. A resume on other weights is rejected.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FeatureSource {
    /// The stage-1 checkpoint directory, or the backbone's weights file.
    #[serde(alias = "checkpoint")]
    pub path: PathBuf,
    /// [`checkpoint::weights_fingerprint`] of the VAE, or the SHA-256 of the backbone's
    /// weights file.
    #[serde(alias = "vae_fingerprint")]
    pub fingerprint: String,
    /// The pretrained network; absent for a stage-1 checkpoint.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backbone: Option<BackboneSource>,
}

/// A pretrained network and the weights file it was loaded from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BackboneSource {
    pub network: Network,
    pub weights: PathBuf,
}

impl FeatureSource {
    /// Describes the encoders of a stage-1 checkpoint.
    pub fn of_checkpoint(checkpoint: &Checkpoint) -> FeatureSource {
        FeatureSource {
            path: checkpoint.path.clone(),
            fingerprint: checkpoint
                .state
                .weights_fingerprint
                .get(checkpoint::VAE)
                .cloned()
                .unwrap_or_default(),
            backbone: None,
        }
    }

    /// Describes a pretrained `network` whose weights are the file at `weights`, hashing that
    /// file.
    pub fn of_backbone(network: Network, weights: &Path) -> Result<FeatureSource> {
        let bytes = std::fs::read(weights).map_err(|source| Error::io(weights, source))?;
        Ok(FeatureSource {
            path: weights.to_path_buf(),
            fingerprint: checkpoint::sha256_hex(&bytes),
            backbone: Some(BackboneSource {
                network,
                weights: weights.to_path_buf(),
            }),
        })
    }

    /// Reads the `source.json` of the triplet run in `run_dir`.
    pub fn read(run_dir: &Path) -> Result<FeatureSource> {
        let path = run_dir.join(SOURCE_FILE);
        let text = std::fs::read_to_string(&path).map_err(|error| Error::io(&path, error))?;
        serde_json::from_str(&text).map_err(|error| Error::InvalidCheckpoint {
            path,
            message: error.to_string(),
        })
    }
}

/// Trains channel weights on frozen features: the encoders of a stage-1 checkpoint or the
/// layers of a pretrained backbone.
pub struct TripletTrainer {
    config: Config,
    out_dir: PathBuf,
    device: Device,
    autodiff: Device,
    weights: ChannelWeights,
    optimizer: ModuleOptimizer,
    /// Training features of domain A then domain B, on the autodiff device.
    train_pool: LayerFeatures,
    train_a: Vec<ImageEntry>,
    train_b: Vec<ImageEntry>,
    validation_pool: LayerFeatures,
    /// Drawn once, so that validation losses compare across epochs.
    validation_triplets: Vec<Triplet>,
    epoch: usize,
    history: Vec<TripletEpoch>,
    /// The pretrained network the features come from; `None` for a stage-1 checkpoint.
    backbone: Option<BackboneSource>,
}

impl TripletTrainer {
    /// Starts a triplet run in `out_dir`, which must not contain one yet. `extract(domain,
    /// images, depth)` computes the features of the last `depth` layers for a set of images of
    /// `domain`, with the network that `source` names. `config.triplet` sets the training and
    /// `config.seed` the triplets.
    pub fn new(
        extract: impl FnMut(Domain, &ImageSet, usize) -> Result<LayerFeatures>,
        source: &FeatureSource,
        data: &TripletData,
        config: Config,
        out_dir: &Path,
        device: &Device,
    ) -> Result<TripletTrainer> {
        if checkpoint::has_checkpoints(out_dir)? {
            return Err(Error::RunExists {
                path: out_dir.to_path_buf(),
            });
        }
        std::fs::create_dir_all(out_dir).map_err(|source| Error::io(out_dir, source))?;
        let text = serde_json::to_string_pretty(source).expect("the source serialises to JSON");
        crate::io::write_atomic(&out_dir.join(SOURCE_FILE), text.as_bytes())?;
        crate::io::write_atomic(
            &out_dir.join(METRICS_FILE),
            format!("{METRICS_HEADER}\n").as_bytes(),
        )?;
        let mut trainer = Self::prepare(extract, source, data, config, out_dir, device)?;
        trainer.weights = ChannelWeights::ones(&trainer.train_pool.channels(), &trainer.autodiff);
        Ok(trainer)
    }

    /// Continues the triplet run in `out_dir` from its newest intact checkpoint, on the
    /// network of `source`, which must have the weights it started with (`extract` as in
    /// [`TripletTrainer::new`]). `epochs`, when given, replaces the configured number of
    /// epochs.
    pub fn resume(
        extract: impl FnMut(Domain, &ImageSet, usize) -> Result<LayerFeatures>,
        source: &FeatureSource,
        data: &TripletData,
        out_dir: &Path,
        epochs: Option<usize>,
        device: &Device,
    ) -> Result<TripletTrainer> {
        let checkpoint = Checkpoint::open_network_for_resume(out_dir, NETWORK)?;
        let started_on = FeatureSource::read(out_dir)?;
        if started_on.fingerprint != source.fingerprint {
            return Err(Error::InvalidCheckpoint {
                path: out_dir.to_path_buf(),
                message: format!(
                    "it was trained on the weights of {}, but {} holds other weights; pass the network it started from",
                    started_on.path.display(),
                    source.path.display()
                ),
            });
        }

        let mut config = checkpoint.config.clone();
        if let Some(epochs) = epochs {
            config.triplet.epochs = epochs;
        }
        let epoch = checkpoint.state.epoch;
        if config.triplet.epochs < epoch {
            return Err(Error::InvalidConfig {
                field: "triplet.epochs",
                value: config.triplet.epochs.to_string(),
                expected: format!("at least {epoch}, the epochs already trained"),
            });
        }
        let mut trainer = Self::prepare(extract, source, data, config, out_dir, device)?;
        let fresh = ChannelWeights::ones(&trainer.train_pool.channels(), &trainer.autodiff);
        trainer.weights = checkpoint.load_network(NETWORK, fresh)?;
        trainer.optimizer = checkpoint.load_optimizer(NETWORK, trainer.optimizer)?;
        let history = checkpoint.read_file(HISTORY_FILE)?;
        trainer.history =
            serde_json::from_slice(&history).map_err(|error| Error::InvalidCheckpoint {
                path: checkpoint.path.join(HISTORY_FILE),
                message: error.to_string(),
            })?;
        trainer.epoch = epoch;
        rewrite_metrics(&out_dir.join(METRICS_FILE), &trainer.history)?;
        tracing::info!(
            "resuming triplet training from {} (epoch {epoch})",
            checkpoint.path.display()
        );
        Ok(trainer)
    }

    /// Extracts the features and draws the validation triplets; the weights start at ones.
    fn prepare(
        mut extract: impl FnMut(Domain, &ImageSet, usize) -> Result<LayerFeatures>,
        source: &FeatureSource,
        data: &TripletData,
        config: Config,
        out_dir: &Path,
        device: &Device,
    ) -> Result<TripletTrainer> {
        let autodiff = device.clone().autodiff();
        let depth = config.triplet.depth;
        let train_pool = extract(Domain::A, &data.train_a, depth)?
            .concat(&extract(Domain::B, &data.train_b, depth)?)
            .to_device(&autodiff);
        let validation_pool = extract(Domain::A, &data.validation_a, depth)?.concat(&extract(
            Domain::B,
            &data.validation_b,
            depth,
        )?);
        let validation_triplets = sample_triplets(
            &data.validation_a.entries,
            &data.validation_b.entries,
            config.triplet.sampling,
            config.evaluation.tolerance,
            config.triplet.triplets_per_epoch,
            &mut triplet_rng(config.seed, 0),
        )?;
        let channels = train_pool.channels();
        Ok(TripletTrainer {
            weights: ChannelWeights::ones(&channels, &autodiff),
            optimizer: AdamConfig::new().init(),
            out_dir: out_dir.to_path_buf(),
            device: device.clone(),
            autodiff,
            train_pool,
            train_a: data.train_a.entries.clone(),
            train_b: data.train_b.entries.clone(),
            validation_pool,
            validation_triplets,
            epoch: 0,
            history: Vec::new(),
            backbone: source.backbone.clone(),
            config,
        })
    }

    /// Epochs completed.
    pub fn epoch(&self) -> usize {
        self.epoch
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Returns the run directory of this triplet training.
    pub fn out_dir(&self) -> &Path {
        &self.out_dir
    }

    /// Trains the remaining epochs, checkpointing every `triplet.save_every` epochs and after
    /// the last one.
    pub fn run(&mut self) -> Result<()> {
        let settings = self.config.triplet.clone();
        while self.epoch < settings.epochs {
            self.train_epoch()?;
            if self.epoch.is_multiple_of(settings.save_every) || self.epoch == settings.epochs {
                let path = self.save_checkpoint()?;
                tracing::debug!("checkpoint {}", path.display());
            }
        }
        Ok(())
    }

    /// Trains one epoch on freshly drawn triplets, then measures the validation triplets.
    pub fn train_epoch(&mut self) -> Result<TripletEpoch> {
        let settings = self.config.triplet.clone();
        let epoch = self.epoch + 1;
        let triplets = sample_triplets(
            &self.train_a,
            &self.train_b,
            settings.sampling,
            self.config.evaluation.tolerance,
            settings.triplets_per_epoch,
            &mut triplet_rng(self.config.seed, epoch as u64),
        )?;

        let mut loss_sum = 0.0;
        let mut batches = 0;
        for (index, batch) in triplets.chunks(settings.batch_size).enumerate() {
            let (loss, _) = triplet_loss(
                &self.weights,
                &self.train_pool,
                batch,
                settings.margin,
                &self.autodiff,
            );
            let value = f64::from(loss.clone().into_scalar::<f32>());
            if !value.is_finite() {
                return Err(Error::Diverged {
                    epoch,
                    step: index,
                    terms: format!("triplet loss {value}"),
                    checkpoint: self.last_checkpoint(),
                });
            }
            loss_sum += value;
            batches += 1;
            let gradients = GradientsParams::from_grads(loss.backward(), &self.weights);
            let weights =
                std::mem::replace(&mut self.weights, ChannelWeights { layers: Vec::new() });
            let mut weights = self
                .optimizer
                .step(settings.learning_rate, weights, gradients);
            if settings.non_negative {
                weights = weights.map(&mut ClampNonNegative);
            }
            self.weights = weights;
        }

        let (validation_loss, validation_satisfied) = triplet_loss(
            &self.weights.valid(),
            &self.validation_pool,
            &self.validation_triplets,
            settings.margin,
            &self.device,
        );
        let record = TripletEpoch {
            epoch,
            train_loss: loss_sum / batches.max(1) as f64,
            validation_loss: f64::from(validation_loss.into_scalar::<f32>()),
            validation_satisfied,
        };
        tracing::info!(
            "triplet epoch {epoch}/{}: train loss {:.4}, validation loss {:.4}, satisfied {:.1} %",
            settings.epochs,
            record.train_loss,
            record.validation_loss,
            100.0 * record.validation_satisfied
        );
        append_metrics(&self.out_dir.join(METRICS_FILE), &record)?;
        self.history.push(record);
        self.epoch = epoch;
        Ok(record)
    }

    /// Writes a checkpoint of the current epoch: weights, Adam's state and the history.
    pub fn save_checkpoint(&self) -> Result<PathBuf> {
        let network = NetworkState::new(NETWORK, &self.weights, &self.optimizer)?;
        let history =
            serde_json::to_vec_pretty(&self.history).expect("the history serialises to JSON");
        checkpoint::save(
            &self.out_dir,
            &self.config,
            self.epoch,
            self.epoch,
            &[network],
            &[(HISTORY_FILE.to_string(), history)],
            CHECKPOINTS_KEPT,
        )
    }

    fn last_checkpoint(&self) -> String {
        Checkpoint::open_network_for_resume(&self.out_dir, NETWORK).map_or_else(
            |_| "none".to_string(),
            |checkpoint| checkpoint.path.display().to_string(),
        )
    }

    /// Returns the learned weights on the device without autodiff.
    pub fn weights(&self) -> ChannelWeights {
        self.weights.valid()
    }

    /// Returns the learned weights with their settings and history, as written to JSON.
    pub fn weights_file(&self) -> WeightsFile {
        WeightsFile {
            depth: self.config.triplet.depth,
            weights: self.weights.values(),
            config: self.config.triplet.clone(),
            history: self.history.clone(),
            backbone: self.backbone.clone(),
        }
    }
}

/// Returns the random stream of epoch `epoch` (0 draws the validation triplets).
fn triplet_rng(seed: u64, epoch: u64) -> ChaCha8Rng {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    rng.set_stream(epoch);
    rng
}

fn append_metrics(path: &Path, record: &TripletEpoch) -> Result<()> {
    let mut file = std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .open(path)
        .map_err(|source| Error::io(path, source))?;
    writeln!(
        file,
        "{},{:.6},{:.6},{:.6}",
        record.epoch, record.train_loss, record.validation_loss, record.validation_satisfied
    )
    .map_err(|source| Error::io(path, source))
}

/// Rewrites the metrics file from the history of a checkpoint, dropping the rows of epochs a
/// killed run trained after it.
fn rewrite_metrics(path: &Path, history: &[TripletEpoch]) -> Result<()> {
    let mut text = format!("{METRICS_HEADER}\n");
    for record in history {
        text.push_str(&format!(
            "{},{:.6},{:.6},{:.6}\n",
            record.epoch, record.train_loss, record.validation_loss, record.validation_satisfied
        ));
    }
    crate::io::write_atomic(path, text.as_bytes())
}

/// Learned weights as written to disk, with the settings that produced them.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct WeightsFile {
    /// Matched layers, counted back from the latent.
    pub depth: usize,
    /// One vector per layer, deepest (latent) first.
    pub weights: Vec<Vec<f32>>,
    pub config: TripletConfig,
    pub history: Vec<TripletEpoch>,
    /// The pretrained network whose layers the weights are for; absent for the encoders of a
    /// stage-1 checkpoint.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backbone: Option<BackboneSource>,
}

impl WeightsFile {
    pub fn save(&self, path: &Path) -> Result<()> {
        let text = serde_json::to_string_pretty(self).expect("weights serialise to JSON");
        crate::io::write_atomic(path, text.as_bytes())
    }

    pub fn load(path: &Path) -> Result<WeightsFile> {
        let text = std::fs::read_to_string(path).map_err(|source| Error::io(path, source))?;
        let file: WeightsFile = serde_json::from_str(&text).map_err(|error| Error::Weights {
            path: path.to_path_buf(),
            message: error.to_string(),
        })?;
        if file.weights.len() != file.depth || file.depth == 0 {
            return Err(Error::Weights {
                path: path.to_path_buf(),
                message: format!(
                    "{} weight vectors for depth {}",
                    file.weights.len(),
                    file.depth
                ),
            });
        }
        Ok(file)
    }
}
