//! A descriptor index of an image database on disk, for fast search with one checkpoint.
//!
//! An index is a directory:
//!
//! - `manifest.json`: format version, the checkpoint's path and weight fingerprint, the encoder's
//!   domain, the input size, the latent grid, the checkpoint's config, the indexed images
//!   (absolute path and frame index, in row order) and the list of shards;
//! - `global-NNNNNN.npy`: float32 `[images, channels]`, one global descriptor per image (the mean
//!   over positions of the per-position descriptors, L2-normalised), for cosine search;
//! - `positions-NNNNNN.npy`: float32 `[images, positions, channels]`, the per-position
//!   descriptors ([`crate::retrieval::per_position_descriptors`]) for re-ranking.
//!
//! The per-position descriptors are stored rather than recomputed: re-ranking then reads K rows
//! from disk instead of decoding and encoding K database images per query, and it keeps working
//! when the database images are moved or deleted. The cost is disk space: 4 bytes × positions ×
//! channels per image, 49 KB with `configs/quick.toml` (1 GB for 20 000 images), 786 KB with
//! the full sizes.
//!
//! Every run of [`build`] writes one new pair of shards, each under a temporary name first, and
//! then the manifest, atomically. The manifest is the commit point: shards it does not list are
//! leftovers of an interrupted run and are removed by the next one. Memory is bounded by one
//! batch of images and descriptors plus the list of paths, whatever the size of the database.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::time::Instant;

use burn::prelude::*;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::checkpoint::{Checkpoint, VAE, weights_fingerprint};
use crate::data::{UnreadableImages, list_images, load_image, prefetch};
use crate::error::{Error, Result};
use crate::knn::CosineSearch;
use crate::model::{Domain, DoubleVae};
use crate::npy::{NpyReader, NpyWriter};
use crate::retrieval::{per_position_descriptors, per_position_distances};

const FORMAT_VERSION: u32 = 1;
pub const MANIFEST: &str = "manifest.json";
const TEMPORARY_MARK: &str = ".tmp-";
/// Small constant in norms, against division by zero.
const EPSILON: f32 = 1e-12;

/// One indexed image.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IndexedImage {
    /// Absolute path at indexing time.
    pub path: PathBuf,
    /// Position in its folder's sorted image list, as in [`crate::data::ImageEntry`].
    pub frame: usize,
}

/// One pair of descriptor files written by one indexing run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Shard {
    pub global: String,
    pub positions: String,
    pub images: usize,
}

/// The index's description; see the module documentation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    pub format: u32,
    /// The checkpoint directory the index was built with, as given (made absolute).
    pub checkpoint: PathBuf,
    /// [`weights_fingerprint`] of the double VAE: the identity of the weights.
    pub fingerprint: String,
    /// The encoder's domain, `"A"` (day) or `"B"` (night).
    pub domain: String,
    /// Network input size in pixels.
    pub width: usize,
    pub height: usize,
    /// Latent grid: rows × columns positions of `channels` values.
    pub latent_rows: usize,
    pub latent_columns: usize,
    pub channels: usize,
    /// The checkpoint's config as TOML.
    pub config: String,
    /// Rows of the shards in order.
    pub images: Vec<IndexedImage>,
    pub shards: Vec<Shard>,
}

impl Manifest {
    pub fn domain(&self) -> Domain {
        if self.domain == "B" {
            Domain::B
        } else {
            Domain::A
        }
    }

    pub fn positions(&self) -> usize {
        self.latent_rows * self.latent_columns
    }
}

/// Returns the name stored in a manifest for a domain.
pub fn domain_name(domain: Domain) -> &'static str {
    match domain {
        Domain::A => "A",
        Domain::B => "B",
    }
}

/// Returns the fingerprint of a checkpoint's double VAE: the one in `state.json`, or, for a
/// checkpoint written before fingerprints were stored, the one computed from `model`.
pub fn checkpoint_fingerprint(checkpoint: &Checkpoint, model: &DoubleVae) -> String {
    checkpoint
        .state
        .weights_fingerprint
        .get(VAE)
        .cloned()
        .unwrap_or_else(|| weights_fingerprint(model))
}

/// An index on disk whose manifest has been read.
#[derive(Debug, Clone)]
pub struct DescriptorIndex {
    pub path: PathBuf,
    pub manifest: Manifest,
}

/// Counts and timing of one [`build`] run.
#[derive(Debug, Clone, PartialEq)]
pub struct BuildReport {
    /// Images encoded and added by this run.
    pub added: usize,
    /// Images found in the folders that the index already held.
    pub already_indexed: usize,
    /// Unreadable images left out (with `data.unreadable_images = "skip"`).
    pub skipped: usize,
    /// Images in the index after the run.
    pub total: usize,
    /// Wall time of encoding, in seconds.
    pub seconds: f64,
}

/// Settings of [`build`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BuildOptions {
    /// Images decoded and encoded at once; bounds memory.
    pub batch_size: usize,
    pub show_progress: bool,
}

impl Default for BuildOptions {
    fn default() -> Self {
        BuildOptions {
            batch_size: 32,
            show_progress: false,
        }
    }
}

/// Encodes images `[n, 3, h, w]` to per-position descriptors `[n, positions, channels]` and
/// global descriptors `[n, channels]` (mean over positions, L2-normalised).
pub fn encode_batch(
    model: &DoubleVae,
    domain: Domain,
    images: Tensor<4>,
) -> (Tensor<3>, Tensor<2>) {
    latent_descriptors(model.encode(domain, images))
}

/// Per-position and global descriptors of a latent `[n, channels, rows, columns]`; see
/// [`encode_batch`].
fn latent_descriptors(latent: Tensor<4>) -> (Tensor<3>, Tensor<2>) {
    let per_position = per_position_descriptors(latent);
    let [n, _, channels] = per_position.dims();
    let mean = per_position.clone().mean_dim(1).reshape([n, channels]);
    let norms = mean.clone().square().sum_dim(1).sqrt().clamp_min(EPSILON);
    (per_position, mean / norms)
}

/// Lists the images of `folders` with their frame indices, as absolute paths, dropping repeats.
fn list_folders(folders: &[PathBuf]) -> Result<Vec<IndexedImage>> {
    let mut seen = HashSet::new();
    let mut images = Vec::new();
    for folder in folders {
        for (frame, path) in list_images(folder)?.into_iter().enumerate() {
            let path = path
                .canonicalize()
                .map_err(|source| Error::io(&path, source))?;
            if seen.insert(path.clone()) {
                images.push(IndexedImage { path, frame });
            }
        }
    }
    Ok(images)
}

fn is_temporary(name: &str) -> bool {
    name.starts_with('.') && name.contains(TEMPORARY_MARK)
}

/// Builds the index at `path` from the images of `folders`, or, when `path` already contains
/// an index, adds the images it does not contain yet without encoding the others again.
///
/// The index must have been built with the same weights (by fingerprint), domain and input
/// size; otherwise nothing is written and the error names both.
pub fn build(
    path: &Path,
    checkpoint: &Checkpoint,
    model: &DoubleVae,
    domain: Domain,
    folders: &[PathBuf],
    options: BuildOptions,
    device: &Device,
) -> Result<BuildReport> {
    let fingerprint = checkpoint_fingerprint(checkpoint, model);
    let config = &checkpoint.config;
    let (width, height) = (config.data.width, config.data.height);
    let existing = if path.join(MANIFEST).is_file() {
        let index = DescriptorIndex::open(path)?;
        index.check_compatible(&checkpoint.path, &fingerprint)?;
        let manifest = &index.manifest;
        if manifest.domain() != domain {
            return Err(Error::IndexMismatch {
                path: path.to_path_buf(),
                field: "domain",
                index_value: manifest.domain.clone(),
                given_value: domain_name(domain).into(),
            });
        }
        if (manifest.width, manifest.height) != (width, height) {
            return Err(Error::IndexMismatch {
                path: path.to_path_buf(),
                field: "input size",
                index_value: format!("{}×{}", manifest.width, manifest.height),
                given_value: format!("{width}×{height}"),
            });
        }
        Some(index.manifest)
    } else {
        None
    };
    prepare_directory(path, existing.as_ref())?;

    let found = list_folders(folders)?;
    let indexed: HashSet<&Path> = existing
        .iter()
        .flat_map(|manifest| manifest.images.iter().map(|image| image.path.as_path()))
        .collect();
    let new: Vec<IndexedImage> = found
        .iter()
        .filter(|image| !indexed.contains(image.path.as_path()))
        .cloned()
        .collect();
    let already_indexed = found.len() - new.len();
    let previous_total = existing
        .as_ref()
        .map_or(0, |manifest| manifest.images.len());
    if new.is_empty() {
        return Ok(BuildReport {
            added: 0,
            already_indexed,
            skipped: 0,
            total: previous_total,
            seconds: 0.0,
        });
    }

    let shard_number = existing
        .as_ref()
        .map_or(0, |manifest| manifest.shards.len());
    let global_name = format!("global-{shard_number:06}.npy");
    let positions_name = format!("positions-{shard_number:06}.npy");
    let temporary =
        |name: &str| path.join(format!(".{name}{TEMPORARY_MARK}{}", std::process::id()));
    let (global_temporary, positions_temporary) =
        (temporary(&global_name), temporary(&positions_name));
    let result = encode_shard(
        model,
        domain,
        &new,
        (width, height),
        config.data.load_options(),
        options,
        &global_temporary,
        &positions_temporary,
        device,
    );
    let encoded = match result {
        Ok(encoded) => encoded,
        Err(error) => {
            let _ = std::fs::remove_file(&global_temporary);
            let _ = std::fs::remove_file(&positions_temporary);
            return Err(error);
        }
    };
    if let Some(manifest) = &existing
        && (
            manifest.latent_rows,
            manifest.latent_columns,
            manifest.channels,
        ) != (encoded.grid[0], encoded.grid[1], encoded.grid[2])
    {
        let _ = std::fs::remove_file(&global_temporary);
        let _ = std::fs::remove_file(&positions_temporary);
        return Err(Error::IndexMismatch {
            path: path.to_path_buf(),
            field: "latent grid",
            index_value: format!(
                "{}×{}×{}",
                manifest.latent_rows, manifest.latent_columns, manifest.channels
            ),
            given_value: format!(
                "{}×{}×{}",
                encoded.grid[0], encoded.grid[1], encoded.grid[2]
            ),
        });
    }
    for (from, to) in [
        (&global_temporary, path.join(&global_name)),
        (&positions_temporary, path.join(&positions_name)),
    ] {
        std::fs::rename(from, &to).map_err(|source| Error::io(&to, source))?;
    }

    let added = encoded.kept.len();
    let mut manifest = existing.unwrap_or_else(|| Manifest {
        format: FORMAT_VERSION,
        checkpoint: std::path::absolute(&checkpoint.path).unwrap_or(checkpoint.path.clone()),
        fingerprint: fingerprint.clone(),
        domain: domain_name(domain).into(),
        width,
        height,
        latent_rows: encoded.grid[0],
        latent_columns: encoded.grid[1],
        channels: encoded.grid[2],
        config: config.to_toml(),
        images: Vec::new(),
        shards: Vec::new(),
    });
    manifest.images.extend(encoded.kept);
    manifest.shards.push(Shard {
        global: global_name,
        positions: positions_name,
        images: added,
    });
    let json = serde_json::to_vec_pretty(&manifest).expect("the manifest serialises to JSON");
    crate::io::write_atomic(&path.join(MANIFEST), &json)?;
    Ok(BuildReport {
        added,
        already_indexed,
        skipped: new.len() - added,
        total: manifest.images.len(),
        seconds: encoded.seconds,
    })
}

/// Creates the index directory, or checks that an existing one is an index or empty, and
/// removes files of interrupted runs (temporary files and shards the manifest does not list).
fn prepare_directory(path: &Path, manifest: Option<&Manifest>) -> Result<()> {
    std::fs::create_dir_all(path).map_err(|source| Error::io(path, source))?;
    let listed: HashSet<&str> = manifest
        .iter()
        .flat_map(|manifest| manifest.shards.iter())
        .flat_map(|shard| [shard.global.as_str(), shard.positions.as_str()])
        .collect();
    let entries = std::fs::read_dir(path).map_err(|source| Error::io(path, source))?;
    let mut leftovers = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|source| Error::io(path, source))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        let is_shard = (name.starts_with("global-") || name.starts_with("positions-"))
            && name.ends_with(".npy");
        if name == MANIFEST || listed.contains(name.as_str()) {
            continue;
        }
        if is_temporary(&name) || is_shard {
            leftovers.push(entry.path());
        } else if manifest.is_none() {
            return Err(Error::NotAnIndex {
                path: path.to_path_buf(),
            });
        }
    }
    for leftover in leftovers {
        std::fs::remove_file(&leftover).map_err(|source| Error::io(&leftover, source))?;
    }
    Ok(())
}

/// Result of encoding one shard.
struct EncodedShard {
    /// The images written, in row order (unreadable ones skipped).
    kept: Vec<IndexedImage>,
    /// Latent rows, columns and channels.
    grid: [usize; 3],
    seconds: f64,
}

#[allow(clippy::too_many_arguments)]
fn encode_shard(
    model: &DoubleVae,
    domain: Domain,
    images: &[IndexedImage],
    (width, height): (usize, usize),
    load: crate::data::LoadOptions,
    options: BuildOptions,
    global_path: &Path,
    positions_path: &Path,
    device: &Device,
) -> Result<EncodedShard> {
    let model = model.valid();
    let progress = progress_bar(images.len() as u64, options.show_progress);
    let start = Instant::now();
    let mut writers: Option<(NpyWriter, NpyWriter)> = None;
    let mut grid = [0; 3];
    let mut kept = Vec::with_capacity(images.len());
    // The next batch is decoded while the encoder runs on this one.
    let decode = |chunk: &[IndexedImage]| -> Result<Vec<(IndexedImage, Result<Vec<f32>>)>> {
        Ok(chunk
            .par_iter()
            .map(|image| {
                let pixels = load_image(&image.path, width, height, load.max_pixels);
                (image.clone(), pixels)
            })
            .collect())
    };
    prefetch(
        images.chunks(options.batch_size.max(1)),
        decode,
        |decoded| {
            let mut pixels = Vec::with_capacity(decoded.len() * 3 * width * height);
            let mut batch = 0;
            progress.inc(decoded.len() as u64);
            for (image, result) in decoded {
                match (result, load.unreadable) {
                    (Ok(values), _) => {
                        pixels.extend_from_slice(&values);
                        kept.push(image);
                        batch += 1;
                    }
                    (Err(error), UnreadableImages::Skip) => {
                        tracing::warn!("skipping unreadable image: {error}");
                    }
                    (Err(error), UnreadableImages::Stop) => return Err(error),
                }
            }
            if batch == 0 {
                return Ok(());
            }
            let input =
                Tensor::<4>::from_data(TensorData::new(pixels, [batch, 3, height, width]), device);
            let latent = model.encode(domain, input);
            let [_, channels, rows, columns] = latent.dims();
            grid = [rows, columns, channels];
            let positions = rows * columns;
            let (per_position, global) = latent_descriptors(latent);
            let (global_writer, positions_writer) = match &mut writers {
                Some(writers) => writers,
                None => writers.insert((
                    NpyWriter::create(global_path, &[channels])?,
                    NpyWriter::create(positions_path, &[positions, channels])?,
                )),
            };
            global_writer.write_rows(&to_vec(global))?;
            positions_writer.write_rows(&to_vec(per_position))
        },
    )?;
    progress.finish_and_clear();
    let Some((global_writer, positions_writer)) = writers else {
        return Err(Error::NoReadableImages {
            folder: images
                .first()
                .and_then(|image| image.path.parent())
                .map(Path::to_path_buf)
                .unwrap_or_default(),
            skipped: images.len(),
        });
    };
    global_writer.finish()?;
    positions_writer.finish()?;
    Ok(EncodedShard {
        kept,
        grid,
        seconds: start.elapsed().as_secs_f64(),
    })
}

fn to_vec<const D: usize>(tensor: Tensor<D>) -> Vec<f32> {
    tensor
        .into_data()
        .try_to_vec::<f32>()
        .expect("descriptors are f32")
}

fn progress_bar(images: u64, show: bool) -> ProgressBar {
    let target = if show {
        ProgressDrawTarget::stderr()
    } else {
        ProgressDrawTarget::hidden()
    };
    let bar = ProgressBar::with_draw_target(Some(images), target);
    bar.set_style(
        ProgressStyle::with_template(
            "indexing {bar:30} {pos}/{len} images [{elapsed}<{eta}] {per_sec}",
        )
        .expect("the progress template is valid"),
    );
    bar
}

/// One database image found for a query.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Match {
    /// 1 for the nearest.
    pub rank: usize,
    /// Row in the index.
    pub row: usize,
    pub path: PathBuf,
    pub frame: usize,
    /// Cosine distance of the global descriptors, or, after re-ranking, the mean per-position
    /// L2 distance.
    pub distance: f32,
}

/// Returns the `k` rows of `database` (`[n, dims]`, row-major) nearest to `query` by cosine distance,
/// nearest first, as `(row, distance)`. Ties keep row order. Exact: every row is compared.
///
/// One pair at a time; [`CosineSearch`] gives the same result for many queries and a large
/// database faster.
pub fn top_k(query: &[f32], database: &[f32], dims: usize, k: usize) -> Vec<(usize, f32)> {
    let norm = |vector: &[f32]| {
        vector
            .iter()
            .map(|v| v * v)
            .sum::<f32>()
            .sqrt()
            .max(EPSILON)
    };
    let query_norm = norm(query);
    let mut distances: Vec<(usize, f32)> = database
        .chunks_exact(dims)
        .enumerate()
        .map(|(row, vector)| {
            let dot: f32 = vector.iter().zip(query).map(|(a, b)| a * b).sum();
            (row, 1.0 - dot / (norm(vector) * query_norm))
        })
        .collect();
    distances.sort_by(|a, b| a.1.total_cmp(&b.1).then(a.0.cmp(&b.0)));
    distances.truncate(k);
    distances
}

impl DescriptorIndex {
    /// Reads the manifest of the index at `path` and checks that its shards are complete.
    pub fn open(path: &Path) -> Result<DescriptorIndex> {
        let manifest_path = path.join(MANIFEST);
        if !path.is_dir() {
            return Err(Error::IndexNotFound {
                path: path.to_path_buf(),
            });
        }
        if !manifest_path.is_file() {
            return Err(Error::InvalidIndex {
                path: path.to_path_buf(),
                message: format!("{MANIFEST} is missing"),
            });
        }
        let text =
            std::fs::read(&manifest_path).map_err(|source| Error::io(&manifest_path, source))?;
        let manifest: Manifest =
            serde_json::from_slice(&text).map_err(|error| Error::InvalidIndex {
                path: manifest_path.clone(),
                message: error.to_string(),
            })?;
        if manifest.format != FORMAT_VERSION {
            return Err(Error::InvalidIndex {
                path: manifest_path,
                message: format!(
                    "format version {} is not supported by this allday (expected {FORMAT_VERSION})",
                    manifest.format
                ),
            });
        }
        let index = DescriptorIndex {
            path: path.to_path_buf(),
            manifest,
        };
        let rows: usize = index.manifest.shards.iter().map(|shard| shard.images).sum();
        if rows != index.manifest.images.len() {
            return Err(index.damaged(format!(
                "the shards hold {rows} rows for {} images",
                index.manifest.images.len()
            )));
        }
        for shard in &index.manifest.shards {
            let global = NpyReader::open(&path.join(&shard.global))?;
            let positions = NpyReader::open(&path.join(&shard.positions))?;
            let expected_global = [shard.images, index.manifest.channels];
            let expected_positions = [
                shard.images,
                index.manifest.positions(),
                index.manifest.channels,
            ];
            if global.shape != expected_global || positions.shape != expected_positions {
                return Err(index.damaged(format!(
                    "shard {} has shapes {:?} and {:?}, expected {:?} and {:?}",
                    shard.global,
                    global.shape,
                    positions.shape,
                    expected_global,
                    expected_positions
                )));
            }
        }
        Ok(index)
    }

    fn damaged(&self, message: String) -> Error {
        Error::InvalidIndex {
            path: self.path.clone(),
            message,
        }
    }

    pub fn len(&self) -> usize {
        self.manifest.images.len()
    }

    pub fn is_empty(&self) -> bool {
        self.manifest.images.is_empty()
    }

    /// Fails unless `fingerprint` is the fingerprint of the weights the index was built with.
    pub fn check_compatible(&self, checkpoint: &Path, fingerprint: &str) -> Result<()> {
        if self.manifest.fingerprint != fingerprint {
            return Err(Error::ForeignCheckpoint {
                path: self.path.clone(),
                index_fingerprint: self.manifest.fingerprint.clone(),
                checkpoint: checkpoint.to_path_buf(),
                checkpoint_fingerprint: fingerprint.to_string(),
            });
        }
        Ok(())
    }

    /// Reads all global descriptors, `[images, channels]` row-major.
    pub fn global_descriptors(&self) -> Result<Vec<f32>> {
        let mut values = Vec::with_capacity(self.len() * self.manifest.channels);
        for shard in &self.manifest.shards {
            let mut reader = NpyReader::open(&self.path.join(&shard.global))?;
            reader.read_rows(0, shard.images, &mut values)?;
        }
        Ok(values)
    }

    /// Reads the per-position descriptors of the given rows, `[rows.len(), positions, channels]`.
    pub fn position_descriptors(&self, rows: &[usize]) -> Result<Vec<f32>> {
        let mut readers = self
            .manifest
            .shards
            .iter()
            .map(|shard| NpyReader::open(&self.path.join(&shard.positions)))
            .collect::<Result<Vec<_>>>()?;
        let mut values = Vec::new();
        for &row in rows {
            let (mut shard, mut local) = (0, row);
            while local >= self.manifest.shards[shard].images {
                local -= self.manifest.shards[shard].images;
                shard += 1;
            }
            readers[shard].read_rows(local, 1, &mut values)?;
        }
        Ok(values)
    }

    /// Finds the `top` nearest database images of each query image (encoded with the
    /// `query_domain` encoder of `model`, which must carry the index's weights).
    ///
    /// Without `rerank` the order is by cosine distance of the global descriptors. With
    /// `rerank = Some(k)` the `max(k, top)` nearest by that distance are ordered again by the
    /// mean per-position distance ([`per_position_distances`]), which is reported instead.
    pub fn search(
        &self,
        model: &DoubleVae,
        query_domain: Domain,
        queries: &[PathBuf],
        top: usize,
        rerank: Option<usize>,
        device: &Device,
    ) -> Result<Vec<Vec<Match>>> {
        let manifest = &self.manifest;
        let config = crate::Config::from_toml(&manifest.config, &self.path.join(MANIFEST))?;
        // Normalised once here, not once per query.
        let global = CosineSearch::new(self.global_descriptors()?, manifest.channels);
        let model = model.valid();
        let mut results = Vec::with_capacity(queries.len());
        // The next query is decoded while this one is encoded and searched.
        let decode = |query: &PathBuf| {
            load_image(
                query,
                manifest.width,
                manifest.height,
                config.data.max_image_pixels,
            )
        };
        prefetch(queries, decode, |pixels| {
            let input = Tensor::<4>::from_data(
                TensorData::new(pixels, [1, 3, manifest.height, manifest.width]),
                device,
            );
            let (per_position, query_global) = encode_batch(&model, query_domain, input);
            let candidates = global
                .search(&to_vec(query_global), rerank.unwrap_or(top).max(top))
                .swap_remove(0);
            let ordered = match rerank {
                None => candidates,
                Some(_) => {
                    let rows: Vec<usize> = candidates.iter().map(|(row, _)| *row).collect();
                    let values = self.position_descriptors(&rows)?;
                    let database = Tensor::<3>::from_data(
                        TensorData::new(
                            values,
                            [rows.len(), manifest.positions(), manifest.channels],
                        ),
                        device,
                    );
                    let distances = per_position_distances(per_position, database);
                    distances
                        .ranking(0)
                        .into_iter()
                        .map(|column| (rows[column], distances.row(0)[column]))
                        .collect()
                }
            };
            results.push(
                ordered
                    .into_iter()
                    .take(top)
                    .enumerate()
                    .map(|(rank, (row, distance))| Match {
                        rank: rank + 1,
                        row,
                        path: manifest.images[row].path.clone(),
                        frame: manifest.images[row].frame,
                        distance,
                    })
                    .collect(),
            );
            Ok(())
        })?;
        Ok(results)
    }

    /// Writes the global descriptors for other tools (FAISS, numpy): `npy_path` as float32
    /// `[images, channels]`, the same array as tensor `descriptors` in a safetensors file beside
    /// it (`.safetensors`), and the image of each row in a CSV (`.paths.csv`:
    /// `row,path,frame`). Returns the three paths.
    pub fn export(&self, npy_path: &Path) -> Result<[PathBuf; 3]> {
        let global = self.global_descriptors()?;
        let channels = self.manifest.channels;
        crate::npy::write_matrix(npy_path, &global, channels)?;

        let safetensors_path = npy_path.with_extension("safetensors");
        let bytes: Vec<u8> = global
            .iter()
            .flat_map(|value| value.to_le_bytes())
            .collect();
        let safetensors_error = |message: String| Error::Safetensors {
            path: safetensors_path.clone(),
            message,
        };
        let view = safetensors::tensor::TensorView::new(
            safetensors::Dtype::F32,
            vec![self.len(), channels],
            &bytes,
        )
        .map_err(|error| safetensors_error(error.to_string()))?;
        let metadata = std::collections::HashMap::from([
            ("fingerprint".to_string(), self.manifest.fingerprint.clone()),
            ("domain".to_string(), self.manifest.domain.clone()),
            (
                "distance".to_string(),
                "cosine (rows are L2-normalised)".to_string(),
            ),
        ]);
        let serialised = safetensors::serialize([("descriptors", view)], Some(metadata))
            .map_err(|error| safetensors_error(error.to_string()))?;
        crate::io::write_atomic(&safetensors_path, &serialised)?;

        let paths_path = npy_path.with_extension("paths.csv");
        let mut writer = csv::Writer::from_writer(Vec::new());
        let csv_error = |error: csv::Error| Error::io(&paths_path, std::io::Error::other(error));
        writer
            .write_record(["row", "path", "frame"])
            .map_err(csv_error)?;
        for (row, image) in self.manifest.images.iter().enumerate() {
            writer
                .write_record([
                    row.to_string(),
                    image.path.to_string_lossy().into_owned(),
                    image.frame.to_string(),
                ])
                .map_err(csv_error)?;
        }
        let text = writer
            .into_inner()
            .map_err(|error| Error::io(&paths_path, std::io::Error::other(error.to_string())))?;
        crate::io::write_atomic(&paths_path, &text)?;
        Ok([npy_path.to_path_buf(), safetensors_path, paths_path])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn top_k_orders_by_cosine_distance() {
        // Query (1, 0); database rows at 90°, 45°, 0° (scaled), 180° and 45° again.
        let database = [0.0, 1.0, 1.0, 1.0, 3.0, 0.0, -1.0, 0.0, 2.0, 2.0];
        let nearest = top_k(&[1.0, 0.0], &database, 2, 4);
        let rows: Vec<usize> = nearest.iter().map(|(row, _)| *row).collect();
        // Equal distances (rows 1 and 4) keep row order.
        assert_eq!(rows, [2, 1, 4, 0]);
        let expected = [0.0, 1.0 - 0.5f32.sqrt(), 1.0 - 0.5f32.sqrt(), 1.0];
        for ((_, distance), expected) in nearest.iter().zip(expected) {
            assert!(
                (distance - expected).abs() < 1e-6,
                "{distance} vs {expected}"
            );
        }
        assert_eq!(top_k(&[1.0, 0.0], &database, 2, 10).len(), 5);
    }

    #[test]
    fn global_descriptor_is_normalised_mean() {
        let device = crate::backend::default_device();
        let model = DoubleVae::new(
            &crate::config::ModelConfig {
                channels: [4, 8, 8],
                private_blocks: 1,
                shared_encoder_blocks: 1,
                shared_decoder_blocks: 1,
                normalization: crate::config::Normalization::None,
                ..crate::config::ModelConfig::default()
            },
            &device,
        );
        let images = Tensor::<4>::random(
            [2, 3, 8, 12],
            burn::tensor::Distribution::Uniform(0.0, 1.0),
            &device,
        );
        let (per_position, global) = encode_batch(&model.valid(), Domain::A, images);
        assert_eq!(per_position.dims(), [2, 6, 8]);
        assert_eq!(global.dims(), [2, 8]);
        let per_position = to_vec(per_position);
        let global = to_vec(global);
        for image in 0..2 {
            let mut mean = [0.0f32; 8];
            for position in 0..6 {
                for channel in 0..8 {
                    mean[channel] += per_position[(image * 6 + position) * 8 + channel] / 6.0;
                }
            }
            let norm = mean.iter().map(|v| v * v).sum::<f32>().sqrt();
            for channel in 0..8 {
                let expected = mean[channel] / norm;
                let value = global[image * 8 + channel];
                assert!((value - expected).abs() < 1e-5, "{value} vs {expected}");
            }
        }
    }
}
