//! Stage 1: unsupervised training of the double VAE with UNIT's losses.
//!
//! The loop is written by hand, as in burn's multi-network examples, so that further networks
//! and optimizers (discriminators) can join it. Everything random is derived from the config's
//! seed and the position in training: data order from the epoch, latent noise from the step.
//! A checkpoint therefore needs no RNG state beyond the seed and the step counters, and a
//! resumed run draws exactly the batches and noise the uninterrupted run would have drawn.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

use burn::module::{ModuleVisitor, Param};
use burn::optim::{AdamConfig, GradientsParams, ModuleOptimizer, decay::WeightDecayConfig};
use burn::prelude::*;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, StandardNormal};

use crate::checkpoint::{self, Checkpoint, NetworkState};
use crate::config::Config;
use crate::data::ImageSet;
use crate::error::{Error, Result};
use crate::loss::{LossTerms, LossValues, kl, l1};
use crate::model::{Domain, DoubleVae};

const CONFIG_FILE: &str = "config.toml";
const METRICS_FILE: &str = "metrics.csv";
const METRICS_HEADER: &str = "epoch,step,total,reconstruction,kl,cycle,cycle_kl,gradient_norm,validation_l1_a,validation_l1_b,seconds";
/// Checkpoints kept in a run directory; older ones are deleted after each save.
const CHECKPOINTS_KEPT: usize = 3;
/// Offset between the seed of data order and the seed of latent noise, so the two streams differ.
const NOISE_SEED_OFFSET: u64 = 0x9E37_79B9_7F4A_7C15;

/// The images of both domains, for training and for validation.
#[derive(Debug, Clone)]
pub struct TrainingData {
    pub train_a: ImageSet,
    pub train_b: ImageSet,
    pub validation_a: ImageSet,
    pub validation_b: ImageSet,
}

impl TrainingData {
    /// Loads the training and validation places of both domains.
    pub fn load(config: &Config) -> Result<TrainingData> {
        let data = &config.data;
        let folders = |names: &[String]| -> Vec<PathBuf> {
            names.iter().map(|name| data.root.join(name)).collect()
        };
        let (a, b) = (folders(&data.domain_a), folders(&data.domain_b));
        let load = |folders: &[PathBuf], places| {
            ImageSet::load(
                folders,
                places,
                data.width,
                data.height,
                data.load_options(),
            )
        };
        Ok(TrainingData {
            train_a: load(&a, data.train_places)?,
            train_b: load(&b, data.train_places)?,
            validation_a: load(&a, data.validation_places)?,
            validation_b: load(&b, data.validation_places)?,
        })
    }
}

/// Losses, validation error and duration of one epoch.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct EpochMetrics {
    /// 1-based number of the epoch.
    pub epoch: usize,
    /// Optimizer steps completed after this epoch.
    pub step: usize,
    /// Mean of each loss term over the epoch's steps.
    pub losses: LossValues,
    /// Mean over the epoch's steps of the global L2 norm of the gradient.
    pub gradient_norm: f64,
    /// Mean L1 between validation images of domain A and their reconstructions.
    pub validation_a: f64,
    /// The same for domain B.
    pub validation_b: f64,
    pub seconds: f64,
}

/// Builds Adam from the config.
pub fn optimizer(config: &Config) -> ModuleOptimizer {
    let settings = &config.optimizer;
    // burn's Adam takes f32 settings; the config keeps f64 so that TOML shows the values as
    // written.
    let weight_decay =
        (settings.weight_decay > 0.0).then(|| WeightDecayConfig::new(settings.weight_decay as f32));
    AdamConfig::new()
        .with_beta_1(settings.beta1 as f32)
        .with_beta_2(settings.beta2 as f32)
        .with_weight_decay(weight_decay)
        .init()
}

/// Computes UNIT's loss terms for one batch of each domain.
///
/// `noise(k, shape)` returns the k-th unit-variance sample (k = 0..4) added to a latent mean.
///
/// Shapes: both image batches `[batch, 3, h, w]`.
pub fn unit_losses(
    model: &DoubleVae,
    images_a: Tensor<4>,
    images_b: Tensor<4>,
    mut noise: impl FnMut(u64, [usize; 4]) -> Tensor<4>,
) -> LossTerms {
    let mean_a = model.encode(Domain::A, images_a.clone()); // [batch, latent, h/4, w/4]
    let mean_b = model.encode(Domain::B, images_b.clone());
    let latent_a = mean_a.clone() + noise(0, mean_a.dims());
    let latent_b = mean_b.clone() + noise(1, mean_b.dims());

    // Each latent goes to both domains' decoders, and the shared blocks run once for both.
    let shared_a = model.decode_shared(latent_a);
    let shared_b = model.decode_shared(latent_b);
    let reconstructed_a = model.decode_private(Domain::A, shared_a.clone());
    let reconstructed_b = model.decode_private(Domain::B, shared_b.clone());
    let translated_ab = model.decode_private(Domain::B, shared_a);
    let translated_ba = model.decode_private(Domain::A, shared_b);

    let mean_ab = model.encode(Domain::B, translated_ab);
    let mean_ba = model.encode(Domain::A, translated_ba);
    let latent_ab = mean_ab.clone() + noise(2, mean_ab.dims());
    let latent_ba = mean_ba.clone() + noise(3, mean_ba.dims());
    let cycled_a = model.decode(Domain::A, latent_ab);
    let cycled_b = model.decode(Domain::B, latent_ba);

    LossTerms {
        reconstruction: l1(reconstructed_a, images_a.clone())
            + l1(reconstructed_b, images_b.clone()),
        kl: kl(mean_a) + kl(mean_b),
        cycle: l1(cycled_a, images_a) + l1(cycled_b, images_b),
        cycle_kl: kl(mean_ab) + kl(mean_ba),
    }
}

/// Mean L1 reconstruction error of `images` through their own domain, without noise.
pub fn reconstruction_error(
    model: &DoubleVae,
    domain: Domain,
    images: &ImageSet,
    device: &Device,
) -> f64 {
    let model = model.valid();
    let mut sum = 0.0;
    let indices: Vec<usize> = (0..images.len()).collect();
    for chunk in indices.chunks(16) {
        let batch = images.batch(chunk, device);
        let reconstructed = model.decode(domain, model.encode(domain, batch.clone()));
        let error = l1(reconstructed, batch).into_scalar::<f32>();
        sum += f64::from(error) * chunk.len() as f64;
    }
    sum / images.len().max(1) as f64
}

/// Computes the global L2 norm of the gradients of `model`'s parameters.
fn gradient_norm(model: &DoubleVae, gradients: &GradientsParams) -> f64 {
    struct SquaredSum<'a> {
        gradients: &'a GradientsParams,
        sum: Option<Tensor<1>>,
    }
    impl ModuleVisitor for SquaredSum<'_> {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
            if let Some(gradient) = self.gradients.get::<D>(param.id) {
                let squared = gradient.square().sum();
                self.sum = Some(match self.sum.take() {
                    Some(sum) => sum + squared,
                    None => squared,
                });
            }
        }
    }
    let mut visitor = SquaredSum {
        gradients,
        sum: None,
    };
    model.visit(&mut visitor);
    visitor
        .sum
        .map_or(0.0, |sum| f64::from(sum.into_scalar::<f32>()).sqrt())
}

/// Draws a permutation of `0..len` from the seed and a stream number.
fn permutation(seed: u64, stream: u64, len: usize) -> Vec<usize> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    rng.set_stream(stream);
    let mut order: Vec<usize> = (0..len).collect();
    order.shuffle(&mut rng);
    order
}

/// Trains a double VAE and writes its run directory: `config.toml`, `metrics.csv` and
/// `checkpoints/`.
pub struct Trainer {
    config: Config,
    run_dir: PathBuf,
    /// The autodiff device that training runs on.
    device: Device,
    /// Always `Some` between calls; taken out while the optimizer consumes it.
    model: Option<DoubleVae>,
    optimizer: ModuleOptimizer,
    data: TrainingData,
    /// Epochs completed.
    epoch: usize,
    /// Optimizer steps completed.
    step: usize,
    /// Progress bar output; hidden in tests and when stderr is not a terminal.
    show_progress: bool,
    /// The newest checkpoint written or resumed from, for error messages.
    last_checkpoint: Option<PathBuf>,
}

impl Trainer {
    /// Starts a new run in `run_dir`, which must not hold checkpoints yet.
    pub fn new(
        config: Config,
        run_dir: &Path,
        device: &Device,
        data: TrainingData,
    ) -> Result<Trainer> {
        config.validate()?;
        if checkpoint::has_checkpoints(run_dir)? {
            return Err(Error::RunExists {
                path: run_dir.to_path_buf(),
            });
        }
        if data.train_a.len() < config.training.batch_size {
            return Err(batch_too_large(&config, &data));
        }
        std::fs::create_dir_all(run_dir).map_err(|source| Error::io(run_dir, source))?;
        let device = device.clone().autodiff();
        device.seed(config.seed);
        let model =
            DoubleVae::new(&config.model, &device).load_pretrained(&config.model, &device)?;
        checkpoint::check_free_space(
            run_dir,
            checkpoint::estimated_checkpoint_bytes(&model, CHECKPOINTS_KEPT),
        )?;
        let config_path = run_dir.join(CONFIG_FILE);
        std::fs::write(&config_path, config.to_toml())
            .map_err(|source| Error::io(&config_path, source))?;
        let metrics_path = run_dir.join(METRICS_FILE);
        std::fs::write(&metrics_path, format!("{METRICS_HEADER}\n"))
            .map_err(|source| Error::io(&metrics_path, source))?;

        Ok(Trainer {
            optimizer: optimizer(&config),
            config,
            run_dir: run_dir.to_path_buf(),
            device,
            model: Some(model),
            data,
            epoch: 0,
            step: 0,
            show_progress: true,
            last_checkpoint: None,
        })
    }

    /// Continues the run in `run_dir` from its newest intact checkpoint. `epochs`, when given,
    /// replaces the configured number of epochs (to train a finished run further).
    pub fn resume(
        run_dir: &Path,
        device: &Device,
        epochs: Option<usize>,
        data_root: Option<&Path>,
    ) -> Result<Trainer> {
        let checkpoint = Checkpoint::open_for_resume(run_dir)?;
        let mut config = checkpoint.config.clone();
        if let Some(epochs) = epochs {
            if epochs < checkpoint.state.epoch {
                return Err(Error::InvalidConfig {
                    field: "training.epochs",
                    value: epochs.to_string(),
                    expected: format!(
                        "at least the {} epochs already trained in {}",
                        checkpoint.state.epoch,
                        checkpoint.path.display()
                    ),
                });
            }
            config.training.epochs = epochs;
        }
        if let Some(root) = data_root {
            config.data.root = root.to_path_buf();
        }
        config.validate()?;
        let data = TrainingData::load(&config)?;
        Self::from_checkpoint(&checkpoint, config, run_dir, device, data)
    }

    /// Restores model, optimizer and position from `checkpoint`, with the given (possibly
    /// extended) config and already loaded data.
    pub fn from_checkpoint(
        checkpoint: &Checkpoint,
        config: Config,
        run_dir: &Path,
        device: &Device,
        data: TrainingData,
    ) -> Result<Trainer> {
        let device = device.clone().autodiff();
        let model = checkpoint
            .load_model(&device)?
            .freeze_pretrained(&config.model);
        let optimizer = checkpoint.load_optimizer(checkpoint::VAE, optimizer(&config))?;
        checkpoint::check_free_space(
            run_dir,
            checkpoint::estimated_checkpoint_bytes(&model, CHECKPOINTS_KEPT),
        )?;
        let epoch = checkpoint.state.epoch;
        tracing::info!(
            "resuming from {} (epoch {epoch}, step {})",
            checkpoint.path.display(),
            checkpoint.state.step
        );
        truncate_metrics(&run_dir.join(METRICS_FILE), epoch)?;
        let config_path = run_dir.join(CONFIG_FILE);
        std::fs::write(&config_path, config.to_toml())
            .map_err(|source| Error::io(&config_path, source))?;
        Ok(Trainer {
            optimizer,
            config,
            run_dir: run_dir.to_path_buf(),
            device,
            model: Some(model),
            data,
            epoch,
            step: checkpoint.state.step,
            show_progress: true,
            last_checkpoint: Some(checkpoint.path.clone()),
        })
    }

    /// Turns the progress bar on or off.
    pub fn with_progress(mut self, show: bool) -> Self {
        self.show_progress = show;
        self
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    pub fn model(&self) -> &DoubleVae {
        self.model
            .as_ref()
            .expect("the model is present between steps")
    }

    /// Epochs completed.
    pub fn epoch(&self) -> usize {
        self.epoch
    }

    /// Optimizer steps completed.
    pub fn step(&self) -> usize {
        self.step
    }

    pub fn steps_per_epoch(&self) -> usize {
        self.data.train_a.len() / self.config.training.batch_size
    }

    /// Trains until the configured number of epochs, checkpointing every `save_every` epochs
    /// and after the last one. Returns the metrics of the epochs it ran.
    pub fn run(&mut self) -> Result<Vec<EpochMetrics>> {
        let mut history = Vec::new();
        while self.epoch < self.config.training.epochs {
            let metrics = self.train_epoch()?;
            history.push(metrics);
            let last = self.epoch == self.config.training.epochs;
            if self.epoch.is_multiple_of(self.config.training.save_every) || last {
                let path = self.save_checkpoint()?;
                tracing::info!("saved checkpoint {}", path.display());
                self.last_checkpoint = Some(path);
            }
        }
        Ok(history)
    }

    /// Writes a checkpoint of the current state and returns its directory.
    pub fn save_checkpoint(&self) -> Result<PathBuf> {
        // Further networks (discriminators) add their own entry here.
        let networks = [NetworkState::new(
            checkpoint::VAE,
            self.model(),
            &self.optimizer,
        )?];
        checkpoint::save(
            &self.run_dir,
            &self.config,
            self.epoch,
            self.step,
            &networks,
            &[],
            CHECKPOINTS_KEPT,
        )
    }

    /// Runs one epoch, appends its row to `metrics.csv` and returns it.
    pub fn train_epoch(&mut self) -> Result<EpochMetrics> {
        let started = Instant::now();
        let steps = self.steps_per_epoch();
        if steps == 0 {
            return Err(batch_too_large(&self.config, &self.data));
        }
        let epoch_number = self.epoch + 1;
        let progress = self.progress_bar(steps as u64, epoch_number);
        let mut sum = LossValues::default();
        let mut gradient_norm_sum = 0.0;
        for index in 0..steps {
            let (losses, gradient_norm) = self.train_step(index)?;
            sum.accumulate(&losses);
            gradient_norm_sum += gradient_norm;
            progress.set_message(format!("{losses}"));
            progress.inc(1);
        }
        progress.finish_and_clear();

        self.epoch += 1;
        let model = self.model();
        let metrics = EpochMetrics {
            epoch: self.epoch,
            step: self.step,
            losses: sum.scaled(1.0 / steps as f64),
            gradient_norm: gradient_norm_sum / steps as f64,
            validation_a: reconstruction_error(
                model,
                Domain::A,
                &self.data.validation_a,
                &self.device,
            ),
            validation_b: reconstruction_error(
                model,
                Domain::B,
                &self.data.validation_b,
                &self.device,
            ),
            seconds: started.elapsed().as_secs_f64(),
        };
        tracing::info!(
            "epoch {}/{}: {} | gradient norm {:.3} | validation L1 A {:.4} B {:.4} | {:.1} s",
            metrics.epoch,
            self.config.training.epochs,
            metrics.losses,
            metrics.gradient_norm,
            metrics.validation_a,
            metrics.validation_b,
            metrics.seconds
        );
        append_metrics(&self.run_dir.join(METRICS_FILE), &metrics)?;
        Ok(metrics)
    }

    /// Runs the optimizer step `index` of the current epoch and returns its loss terms and the
    /// L2 norm of its gradient. `index` must be below [`Self::steps_per_epoch`]; it does not
    /// advance the epoch or write metrics, which [`Self::train_epoch`] does.
    pub fn train_step(&mut self, index: usize) -> Result<(LossValues, f64)> {
        let batch_size = self.config.training.batch_size;
        let seed = self.config.seed;
        let order_a = permutation(seed, 2 * self.epoch as u64, self.data.train_a.len());
        let indices_a = &order_a[index * batch_size..(index + 1) * batch_size];

        // Domain B has its own sequence of shuffled passes, independent of epochs, because it
        // usually contains a different number of images than domain A.
        let len_b = self.data.train_b.len();
        let indices_b: Vec<usize> = (0..batch_size)
            .map(|offset| {
                let position = self.step * batch_size + offset;
                let pass = (position / len_b) as u64;
                permutation(seed, 2 * pass + 1, len_b)[position % len_b]
            })
            .collect();

        let images_a = self.data.train_a.batch(indices_a, &self.device);
        let images_b = self.data.train_b.batch(&indices_b, &self.device);
        let device = self.device.clone();
        let step = self.step as u64;
        let noise = |k: u64, shape: [usize; 4]| {
            let mut rng = ChaCha8Rng::seed_from_u64(seed.wrapping_add(NOISE_SEED_OFFSET));
            rng.set_stream(4 * step + k);
            let count = shape.iter().product();
            let values: Vec<f32> = (0..count)
                .map(|_| StandardNormal.sample(&mut rng))
                .collect();
            Tensor::<4>::from_data(TensorData::new(values, shape), &device)
        };

        let model = self
            .model
            .take()
            .expect("the model is present between steps");
        let terms = unit_losses(&model, images_a, images_b, noise);
        let weights = &self.config.loss;
        let values = terms.values(weights);
        // The loss is checked before back-propagation and the gradient before the update, so
        // the weights of a diverged step are never applied.
        if !values.is_finite() {
            self.model = Some(model);
            return Err(self.diverged(values.to_string()));
        }
        let gradients = terms.total(weights).backward();
        let gradients = GradientsParams::from_grads(gradients, &model);
        let gradient_norm = gradient_norm(&model, &gradients);
        if !gradient_norm.is_finite() {
            self.model = Some(model);
            return Err(self.diverged(format!("{values}, gradient norm {gradient_norm}")));
        }
        let model = self
            .optimizer
            .step(self.config.optimizer.learning_rate, model, gradients);
        self.model = Some(model);
        self.step += 1;
        Ok((values, gradient_norm))
    }

    fn diverged(&self, terms: String) -> Error {
        Error::Diverged {
            epoch: self.epoch + 1,
            step: self.step,
            terms,
            checkpoint: self
                .last_checkpoint
                .as_ref()
                .map_or_else(|| "none yet".to_string(), |path| path.display().to_string()),
        }
    }

    fn progress_bar(&self, steps: u64, epoch: usize) -> ProgressBar {
        let target = if self.show_progress {
            ProgressDrawTarget::stderr()
        } else {
            ProgressDrawTarget::hidden()
        };
        let bar = ProgressBar::with_draw_target(Some(steps), target);
        bar.set_style(
            ProgressStyle::with_template(&format!(
                "epoch {epoch}/{} {{bar:30}} {{pos}}/{{len}} [{{elapsed}}<{{eta}}] {{msg}}",
                self.config.training.epochs
            ))
            .expect("the progress template is valid"),
        );
        bar
    }
}

fn batch_too_large(config: &Config, data: &TrainingData) -> Error {
    Error::InvalidConfig {
        field: "training.batch_size",
        value: config.training.batch_size.to_string(),
        expected: format!(
            "at most the number of training images of domain A ({})",
            data.train_a.len()
        ),
    }
}

fn append_metrics(path: &Path, metrics: &EpochMetrics) -> Result<()> {
    let mut file = OpenOptions::new()
        .append(true)
        .create(true)
        .open(path)
        .map_err(|source| Error::io(path, source))?;
    let losses = &metrics.losses;
    writeln!(
        file,
        "{},{},{:.6},{:.6},{:.6},{:.6},{:.6},{:.6},{:.6},{:.6},{:.2}",
        metrics.epoch,
        metrics.step,
        losses.total,
        losses.reconstruction,
        losses.kl,
        losses.cycle,
        losses.cycle_kl,
        metrics.gradient_norm,
        metrics.validation_a,
        metrics.validation_b,
        metrics.seconds
    )
    .map_err(|source| Error::io(path, source))
}

/// Drops the rows of epochs after `epoch`, which a killed run wrote after its last checkpoint.
fn truncate_metrics(path: &Path, epoch: usize) -> Result<()> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(source) => return Err(Error::io(path, source)),
    };
    let mut kept = format!("{METRICS_HEADER}\n");
    for line in text.lines().skip(1) {
        let row_epoch = line
            .split(',')
            .next()
            .and_then(|field| field.parse::<usize>().ok());
        if row_epoch.is_some_and(|row_epoch| row_epoch <= epoch) {
            kept.push_str(line);
            kept.push('\n');
        }
    }
    let mut file = File::create(path).map_err(|source| Error::io(path, source))?;
    file.write_all(kept.as_bytes())
        .map_err(|source| Error::io(path, source))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn permutation_is_deterministic_and_complete() {
        let first = permutation(7, 3, 50);
        assert_eq!(first, permutation(7, 3, 50));
        assert_ne!(first, permutation(7, 4, 50));
        let mut sorted = first.clone();
        sorted.sort_unstable();
        assert_eq!(sorted, (0..50).collect::<Vec<_>>());
    }

    #[test]
    fn truncate_metrics_keeps_earlier_epochs() {
        let folder = tempfile::tempdir().unwrap();
        let path = folder.path().join(METRICS_FILE);
        std::fs::write(&path, format!("{METRICS_HEADER}\n1,10,a\n2,20,b\n3,30,c\n")).unwrap();
        truncate_metrics(&path, 2).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(text, format!("{METRICS_HEADER}\n1,10,a\n2,20,b\n"));
    }
}
