//! Training and evaluation configuration, read from and written to TOML.
//!
//! Every field has a default, so a config file only lists what it changes. The defaults are the
//! full sizes of the design (UNIT, Liu et al. 2017): 64/128/256 channels, two private and two
//! shared residual blocks per encoder, two shared blocks per decoder, loss weights 10 / 0.01 /
//! 10 / 0.01 and Adam with learning rate 1e-4.

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::data::{DEFAULT_MAX_IMAGE_PIXELS, LoadOptions, UnreadableImages};
use crate::error::{Error, Result};

/// The whole configuration of a training run and of its default evaluation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Seed of weight initialisation, data order and latent noise.
    pub seed: u64,
    pub data: DataConfig,
    pub model: ModelConfig,
    pub loss: LossWeights,
    pub optimizer: OptimizerConfig,
    pub training: TrainingConfig,
    pub evaluation: EvaluationConfig,
    pub triplet: TripletConfig,
}

/// Source folders of the two image domains and the preparation of their images.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DataConfig {
    /// Folder that the domain folders below are relative to.
    pub root: PathBuf,
    /// Folders of domain A (day). Their images are pooled.
    pub domain_a: Vec<String>,
    /// Folders of domain B (night).
    pub domain_b: Vec<String>,
    /// Network input width in pixels; divisible by 4.
    pub width: usize,
    /// Network input height in pixels; divisible by 4.
    pub height: usize,
    /// Places (frame indices, half-open) used for training.
    pub train_places: PlaceRange,
    /// Places used for the per-epoch validation reconstruction. They must not overlap the
    /// training places nor the evaluation places.
    pub validation_places: PlaceRange,
    /// Policy for an image that cannot be decoded: `"stop"` with an error naming it, or
    /// `"skip"` it with a warning.
    pub unreadable_images: UnreadableImages,
    /// Largest image accepted, in pixels (width × height), read from the file header before
    /// decoding; larger files count as unreadable.
    pub max_image_pixels: u64,
}

impl DataConfig {
    /// The options that image sets of this config are loaded with.
    pub fn load_options(&self) -> LoadOptions {
        LoadOptions {
            unreadable: self.unreadable_images,
            max_pixels: self.max_image_pixels,
        }
    }
}

/// Layer sizes of the double VAE.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ModelConfig {
    /// Output channels of the 7×7 stem and of the two stride-2 convolutions. The last entry is
    /// the number of latent channels.
    pub channels: [usize; 3],
    /// Residual blocks (two 3×3 convolutions each) private to each encoder.
    pub private_blocks: usize,
    /// Residual blocks shared by both encoders; their output is the latent mean.
    pub shared_encoder_blocks: usize,
    /// Residual blocks shared by both decoders, applied to the latent first.
    pub shared_decoder_blocks: usize,
    /// Normalisation after every encoder convolution and inside every residual block. The
    /// decoders' upsampling stages always use batch norm.
    pub normalization: Normalization,
    /// ImageNet-pretrained layers in place of each encoder's stem and first stride-2
    /// convolution (see [`crate::pretrained::encoder`]); `none` trains every layer from scratch.
    pub pretrained: PretrainedInit,
    /// PyTorch weights of `pretrained` (.pth or .safetensors); empty means the network's usual
    /// location. Read once, when a run starts; checkpoints carry the weights afterwards.
    pub pretrained_weights: PathBuf,
    /// Keep the pretrained layers fixed (`true`) or train them with the rest (`false`).
    pub freeze_pretrained: bool,
}

/// The pretrained network whose first layers start each encoder.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum PretrainedInit {
    /// No pretrained layers: the 7×7 stem and a 4×4 stride-2 convolution, trained from scratch.
    #[serde(rename = "none")]
    None,
    /// VGG-16's conv1_1 to conv2_2 (torchvision's weights).
    #[serde(rename = "vgg16")]
    Vgg16,
    /// EfficientNet-Lite0's stem and stage 1.
    #[serde(rename = "efficientnet-lite0")]
    EfficientNetLite0,
}

/// Feature normalisation inside the encoders and residual blocks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Normalization {
    /// No normalisation.
    None,
    /// Instance normalisation with a learned scale and shift per channel, which removes each
    /// image's per-channel mean and contrast (as in the UNIT and MUNIT generators).
    Instance,
}

/// Weights of UNIT's loss terms.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LossWeights {
    /// L1 reconstruction of each domain through its own decoder.
    pub reconstruction: f64,
    /// KL term of the latent, mean(μ²) under UNIT's unit-variance VAE.
    pub kl: f64,
    /// L1 reconstruction after translating to the other domain and back.
    pub cycle: f64,
    /// KL term of the latent of the translated images.
    pub cycle_kl: f64,
}

/// Adam's settings. UNIT uses β₁ = 0.5 and weight decay 1e-4.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct OptimizerConfig {
    pub learning_rate: f64,
    pub beta1: f64,
    pub beta2: f64,
    /// L2 penalty added to the gradient (Adam, not AdamW); 0 disables it.
    pub weight_decay: f64,
}

/// Length of training and how often to checkpoint.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TrainingConfig {
    /// Number of epochs. One epoch is one pass over domain A's training images. Domain B's
    /// images are drawn from their own shuffled order, which restarts whenever it runs out.
    pub epochs: usize,
    /// Images of each domain per step.
    pub batch_size: usize,
    /// Write a checkpoint every this many epochs (and always after the last one).
    pub save_every: usize,
}

/// Stage 2: triplet training of per-channel weights on the frozen encoders. Negatives are
/// images of places more than `evaluation.tolerance` frames from the anchor.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TripletConfig {
    /// Encoder layers matched, counted back from the latent: 1 matches the latent alone, N the
    /// latent and the N − 1 layers before it.
    pub depth: usize,
    /// Hinge margin, in units of the descriptor distance (which lies in [0, 2] per layer for
    /// unit weights).
    pub margin: f64,
    pub learning_rate: f64,
    pub epochs: usize,
    /// Triplets drawn afresh each epoch (and once for validation).
    pub triplets_per_epoch: usize,
    pub batch_size: usize,
    /// Clamp the weights to zero or above after each step, as LPIPS does.
    pub non_negative: bool,
    /// The domains that the anchor, positive and negative of a triplet come from.
    pub sampling: TripletSampling,
    /// Write a checkpoint every this many epochs (and always after the last one).
    pub save_every: usize,
}

impl Default for TripletConfig {
    fn default() -> Self {
        TripletConfig {
            depth: 1,
            margin: 0.1,
            learning_rate: 1e-2,
            epochs: 30,
            triplets_per_epoch: 2048,
            batch_size: 128,
            non_negative: true,
            sampling: TripletSampling::Mixed,
            save_every: 5,
        }
    }
}

/// Triplet sampling: the domains that anchor, positive and negative are drawn from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TripletSampling {
    /// Anchor a domain-A image, positive a domain-B image of its place, negative an image of
    /// either domain: the weights learn to bring the domains together as well as to tell
    /// places apart.
    Mixed,
    /// As retrieval ranks: anchor a domain-B image (a query), positive a domain-A image of its
    /// place and negative a domain-A image of another place (the database).
    Retrieval,
}

/// The default retrieval evaluation of `allday eval`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EvaluationConfig {
    /// Folder of database images (domain A, relative to the data root).
    pub database: String,
    /// Folder of query images (domain B).
    pub queries: String,
    /// Places kept in both database and queries.
    pub places: PlaceRange,
    /// A database image within this many frames of the query's frame is a true match.
    pub tolerance: usize,
    /// Largest horizontal offset, in grid columns, under which the per-position grids of
    /// weighted layers are compared (the best offset counts); 0 compares them aligned.
    pub max_shift: usize,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            seed: 42,
            data: DataConfig::default(),
            model: ModelConfig::default(),
            loss: LossWeights::default(),
            optimizer: OptimizerConfig::default(),
            training: TrainingConfig::default(),
            evaluation: EvaluationConfig::default(),
            triplet: TripletConfig::default(),
        }
    }
}

impl Default for DataConfig {
    fn default() -> Self {
        DataConfig {
            root: PathBuf::from("../shared/data/gardens_point"),
            domain_a: vec!["day_left".into(), "day_right".into()],
            domain_b: vec!["night_right".into()],
            width: 128,
            height: 96,
            train_places: PlaceRange { start: 0, end: 90 },
            validation_places: PlaceRange {
                start: 90,
                end: 100,
            },
            unreadable_images: UnreadableImages::Stop,
            max_image_pixels: DEFAULT_MAX_IMAGE_PIXELS,
        }
    }
}

impl ModelConfig {
    /// Returns the number of encoder layers whose activations stage 2 can match: the stem, the
    /// two stride-2 convolutions and every residual block.
    pub fn encoder_layers(&self) -> usize {
        3 + self.private_blocks + self.shared_encoder_blocks
    }
}

impl Default for ModelConfig {
    fn default() -> Self {
        ModelConfig {
            channels: [64, 128, 256],
            private_blocks: 2,
            shared_encoder_blocks: 2,
            shared_decoder_blocks: 2,
            normalization: Normalization::None,
            pretrained: PretrainedInit::None,
            pretrained_weights: PathBuf::new(),
            freeze_pretrained: true,
        }
    }
}

impl Default for LossWeights {
    fn default() -> Self {
        LossWeights {
            reconstruction: 10.0,
            kl: 0.01,
            cycle: 10.0,
            cycle_kl: 0.01,
        }
    }
}

impl Default for OptimizerConfig {
    fn default() -> Self {
        OptimizerConfig {
            learning_rate: 1e-4,
            beta1: 0.5,
            beta2: 0.999,
            weight_decay: 1e-4,
        }
    }
}

impl Default for TrainingConfig {
    fn default() -> Self {
        TrainingConfig {
            epochs: 100,
            batch_size: 8,
            save_every: 5,
        }
    }
}

impl Default for EvaluationConfig {
    fn default() -> Self {
        EvaluationConfig {
            database: "day_right".into(),
            queries: "night_right".into(),
            places: PlaceRange {
                start: 100,
                end: 200,
            },
            tolerance: 2,
            max_shift: 0,
        }
    }
}

impl Config {
    /// Checks that `triplet.depth` does not exceed the `layers` layers of the network that
    /// the weights are learned on, named by `network` in the error.
    pub fn check_triplet_depth(&self, layers: usize, network: &str) -> Result<()> {
        if self.triplet.depth > layers {
            return Err(Error::InvalidConfig {
                field: "triplet.depth",
                value: self.triplet.depth.to_string(),
                expected: format!("1 to {layers}, the number of layers of {network}"),
            });
        }
        Ok(())
    }

    /// Reads and validates a TOML config file.
    pub fn load(path: &Path) -> Result<Config> {
        let text = std::fs::read_to_string(path).map_err(|source| Error::io(path, source))?;
        Config::from_toml(&text, path)
    }

    /// Parses and validates TOML text; `origin` names the source in error messages.
    pub fn from_toml(text: &str, origin: &Path) -> Result<Config> {
        let config: Config = toml::from_str(text).map_err(|error| {
            // One line: the position from the span, then the parser's message.
            let position = error.span().map(|span| {
                let before = &text[..span.start.min(text.len())];
                let line = before.matches('\n').count() + 1;
                let column = before.len() - before.rfind('\n').map_or(0, |index| index + 1) + 1;
                format!("line {line}, column {column}: ")
            });
            Error::ConfigParse {
                path: origin.to_path_buf(),
                message: format!(
                    "{}{}",
                    position.unwrap_or_default(),
                    error.message().trim_end().replace('\n', " ")
                ),
            }
        })?;
        config.validate()?;
        Ok(config)
    }

    /// Serialises the config, every field included, as TOML.
    pub fn to_toml(&self) -> String {
        toml::to_string_pretty(self).expect("a Config always serialises to TOML")
    }

    /// Checks the values that parsing cannot: sizes, counts and overlapping place ranges.
    pub fn validate(&self) -> Result<()> {
        fn invalid(field: &'static str, value: impl fmt::Display, expected: &str) -> Error {
            Error::InvalidConfig {
                field,
                value: value.to_string(),
                expected: expected.to_string(),
            }
        }

        let data = &self.data;
        if data.width == 0 || !data.width.is_multiple_of(4) {
            return Err(invalid(
                "data.width",
                data.width,
                "a positive multiple of 4 (the latent is at 1/4 resolution)",
            ));
        }
        if data.height == 0 || !data.height.is_multiple_of(4) {
            return Err(invalid(
                "data.height",
                data.height,
                "a positive multiple of 4 (the latent is at 1/4 resolution)",
            ));
        }
        if data.max_image_pixels == 0 {
            return Err(invalid(
                "data.max_image_pixels",
                0,
                "a positive number of pixels",
            ));
        }
        if data.domain_a.is_empty() {
            return Err(invalid("data.domain_a", "[]", "at least one folder"));
        }
        if data.domain_b.is_empty() {
            return Err(invalid("data.domain_b", "[]", "at least one folder"));
        }
        if data.train_places.overlaps(&data.validation_places) {
            return Err(invalid(
                "data.validation_places",
                data.validation_places,
                &format!("places outside the training places {}", data.train_places),
            ));
        }
        let evaluation = &self.evaluation;
        for (field, range) in [
            ("data.train_places", data.train_places),
            ("data.validation_places", data.validation_places),
        ] {
            if range.overlaps(&evaluation.places) {
                return Err(invalid(
                    field,
                    range,
                    &format!(
                        "places outside the evaluation places {} (a place must never be both trained on and evaluated)",
                        evaluation.places
                    ),
                ));
            }
        }

        let model = &self.model;
        if model.channels.contains(&0) {
            return Err(invalid(
                "model.channels",
                format!("{:?}", model.channels),
                "three positive channel counts",
            ));
        }
        if !model.channels[2].is_multiple_of(4) {
            return Err(invalid(
                "model.channels",
                format!("{:?}", model.channels),
                "a last (latent) entry divisible by 4, since the decoder halves it twice",
            ));
        }

        let training = &self.training;
        if training.epochs == 0 {
            return Err(invalid("training.epochs", 0, "at least 1"));
        }
        if training.batch_size < 2 {
            return Err(invalid(
                "training.batch_size",
                training.batch_size,
                "at least 2 (batch norm needs more than one image per batch)",
            ));
        }
        if training.save_every == 0 {
            return Err(invalid("training.save_every", 0, "at least 1"));
        }

        let optimizer = &self.optimizer;
        if !(optimizer.learning_rate.is_finite() && optimizer.learning_rate > 0.0) {
            return Err(invalid(
                "optimizer.learning_rate",
                optimizer.learning_rate,
                "a positive number",
            ));
        }
        for (field, beta) in [
            ("optimizer.beta1", optimizer.beta1),
            ("optimizer.beta2", optimizer.beta2),
        ] {
            if !(0.0..1.0).contains(&beta) {
                return Err(invalid(field, beta, "a number in [0, 1)"));
            }
        }
        if !(optimizer.weight_decay.is_finite() && optimizer.weight_decay >= 0.0) {
            return Err(invalid(
                "optimizer.weight_decay",
                optimizer.weight_decay,
                "zero or a positive number",
            ));
        }
        for (field, weight) in [
            ("loss.reconstruction", self.loss.reconstruction),
            ("loss.kl", self.loss.kl),
            ("loss.cycle", self.loss.cycle),
            ("loss.cycle_kl", self.loss.cycle_kl),
        ] {
            if !(weight.is_finite() && weight >= 0.0) {
                return Err(invalid(field, weight, "zero or a positive number"));
            }
        }
        let triplet = &self.triplet;
        // The upper bound depends on the network the weights are learned on; see
        // `check_triplet_depth`.
        if triplet.depth == 0 {
            return Err(invalid("triplet.depth", triplet.depth, "1 or more"));
        }
        for (field, count) in [
            ("triplet.epochs", triplet.epochs),
            ("triplet.triplets_per_epoch", triplet.triplets_per_epoch),
            ("triplet.batch_size", triplet.batch_size),
            ("triplet.save_every", triplet.save_every),
        ] {
            if count == 0 {
                return Err(invalid(field, 0, "at least 1"));
            }
        }
        if !(triplet.learning_rate.is_finite() && triplet.learning_rate > 0.0) {
            return Err(invalid(
                "triplet.learning_rate",
                triplet.learning_rate,
                "a positive number",
            ));
        }
        if !(triplet.margin.is_finite() && triplet.margin >= 0.0) {
            return Err(invalid(
                "triplet.margin",
                triplet.margin,
                "zero or a positive number",
            ));
        }
        if self.loss.reconstruction == 0.0 && self.loss.cycle == 0.0 {
            return Err(invalid(
                "loss.reconstruction",
                0,
                "a positive weight for reconstruction or cycle (with both at zero nothing teaches the decoders)",
            ));
        }
        Ok(())
    }
}

/// A half-open range of place (frame) indices, written `START..END` as in Rust.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PlaceRange {
    pub start: usize,
    pub end: usize,
}

impl PlaceRange {
    pub fn len(&self) -> usize {
        self.end - self.start
    }

    pub fn is_empty(&self) -> bool {
        self.end <= self.start
    }

    pub fn contains(&self, place: usize) -> bool {
        (self.start..self.end).contains(&place)
    }

    pub fn overlaps(&self, other: &PlaceRange) -> bool {
        self.start < other.end && other.start < self.end
    }
}

impl fmt::Display for PlaceRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}..{}", self.start, self.end)
    }
}

impl FromStr for PlaceRange {
    type Err = Error;

    fn from_str(text: &str) -> Result<Self> {
        let invalid = || Error::InvalidPlaceRange {
            value: text.to_string(),
        };
        let (start, end) = text.split_once("..").ok_or_else(invalid)?;
        let start: usize = start.trim().parse().map_err(|_| invalid())?;
        let end: usize = end.trim().parse().map_err(|_| invalid())?;
        if start >= end {
            return Err(invalid());
        }
        Ok(PlaceRange { start, end })
    }
}

impl Serialize for PlaceRange {
    fn serialize<S: Serializer>(&self, serializer: S) -> std::result::Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for PlaceRange {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> std::result::Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_round_trip_through_toml() {
        let config = Config::default();
        let text = config.to_toml();
        let parsed = Config::from_toml(&text, Path::new("inline")).unwrap();
        assert_eq!(parsed, config);
    }

    #[test]
    fn shipped_configs_parse() {
        let configs = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../configs");
        let reference = Config::load(&configs.join("reference.toml")).unwrap();
        assert_eq!(
            reference,
            Config::default(),
            "reference.toml lists every default"
        );
        let quick = Config::load(&configs.join("quick.toml")).unwrap();
        assert_eq!(quick.model.channels, [16, 32, 64]);
    }

    #[test]
    fn partial_file_keeps_other_defaults() {
        let text = "[training]\nepochs = 3\n[data]\nwidth = 64\n";
        let config = Config::from_toml(text, Path::new("inline")).unwrap();
        assert_eq!(config.training.epochs, 3);
        assert_eq!(config.data.width, 64);
        assert_eq!(config.training.batch_size, 8);
        assert_eq!(config.loss, LossWeights::default());
    }

    #[test]
    fn unknown_key_names_the_key() {
        let error =
            Config::from_toml("[training]\nepoch = 3\n", Path::new("run.toml")).unwrap_err();
        let message = error.to_string();
        assert!(message.contains("run.toml"), "{message}");
        assert!(message.contains("epoch"), "{message}");
    }

    #[test]
    fn wrong_type_names_line_and_column() {
        let text = "seed = 1\n[training]\nepochs = \"many\"\n";
        let error = Config::from_toml(text, Path::new("run.toml")).unwrap_err();
        let message = error.to_string();
        assert!(message.contains("line 3, column 10"), "{message}");
        assert!(!message.contains('\n'), "{message}");
    }

    #[test]
    fn impossible_values_name_their_field() {
        let cases = [
            ("[data]\nheight = 0\n", "data.height"),
            ("[training]\nbatch_size = 0\n", "training.batch_size"),
            ("[training]\nepochs = 0\n", "training.epochs"),
            ("[training]\nsave_every = 0\n", "training.save_every"),
            (
                "[optimizer]\nlearning_rate = -1.0\n",
                "optimizer.learning_rate",
            ),
            ("[optimizer]\nbeta1 = 1.0\n", "optimizer.beta1"),
            ("[model]\nchannels = [8, 16, 30]\n", "model.channels"),
            (
                "[loss]\nreconstruction = 0.0\ncycle = 0.0\n",
                "loss.reconstruction",
            ),
            ("[triplet]\ndepth = 0\n", "triplet.depth"),
            (
                "[data]\nvalidation_places = \"50..95\"\n",
                "data.validation_places",
            ),
        ];
        for (text, field) in cases {
            let error = Config::from_toml(text, Path::new("inline")).unwrap_err();
            assert!(error.to_string().contains(field), "{text}: {error}");
        }
    }

    #[test]
    fn triplet_depth_beyond_the_encoders_rejected() {
        let config = Config::from_toml("[triplet]\ndepth = 8\n", Path::new("inline")).unwrap();
        let layers = config.model.encoder_layers();
        assert_eq!(
            layers, 7,
            "stem, two stride-2 convolutions and four residual blocks"
        );
        let error = config
            .check_triplet_depth(layers, "the stage-1 encoders")
            .unwrap_err();
        assert!(error.to_string().contains("triplet.depth"), "{error}");
        assert!(error.to_string().contains("1 to 7"), "{error}");
        config.check_triplet_depth(8, "EfficientNet-Lite0").unwrap();
    }

    #[test]
    fn width_not_divisible_by_four_rejected() {
        let error = Config::from_toml("[data]\nwidth = 66\n", Path::new("inline")).unwrap_err();
        assert!(error.to_string().contains("data.width"), "{error}");
    }

    #[test]
    fn training_overlapping_evaluation_rejected() {
        let text = "[data]\ntrain_places = \"0..110\"\nvalidation_places = \"200..210\"\n";
        let error = Config::from_toml(text, Path::new("inline")).unwrap_err();
        assert!(error.to_string().contains("data.train_places"), "{error}");
    }

    #[test]
    fn place_range_parses_and_rejects() {
        assert_eq!(
            "100..200".parse::<PlaceRange>().unwrap(),
            PlaceRange {
                start: 100,
                end: 200
            }
        );
        assert!("200..100".parse::<PlaceRange>().is_err());
        assert!("5".parse::<PlaceRange>().is_err());
        assert!("a..b".parse::<PlaceRange>().is_err());
    }
}
