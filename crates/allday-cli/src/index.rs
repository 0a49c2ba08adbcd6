//! `allday index`, `allday search` and `allday export`: a descriptor index of an image
//! database, nearest-neighbour search in it, and its global descriptors for other tools.

use std::path::{Path, PathBuf};

use allday::Domain;
use allday::backend::default_device;
use allday::checkpoint::Checkpoint;
use allday::data::{ImageEntry, list_images};
use allday::evaluation::GroundTruth;
use allday::index::{BuildOptions, DescriptorIndex, Match, build, checkpoint_fingerprint};
use allday::match_grid::{GridMatch, GridRow, match_grid};
use allday::translation::save_png;
use anyhow::{Context, Result, bail};
use clap::{Args, ValueEnum};

use crate::init_logging;

/// An encoder: day (domain A) or night (domain B).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum DomainArg {
    /// Domain A, the day encoder (also `a`).
    #[value(alias = "a", alias = "A")]
    Day,
    /// Domain B, the night encoder (also `b`).
    #[value(alias = "b", alias = "B")]
    Night,
}

impl From<DomainArg> for Domain {
    fn from(domain: DomainArg) -> Domain {
        match domain {
            DomainArg::Day => Domain::A,
            DomainArg::Night => Domain::B,
        }
    }
}

#[derive(Args, Debug)]
pub struct IndexArgs {
    /// Run directory (its newest checkpoint) or one checkpoint directory.
    #[arg(long, value_name = "PATH")]
    run: PathBuf,
    /// Encoder of the database images.
    #[arg(long, value_enum)]
    domain: DomainArg,
    /// Index directory; created, or extended with the images it does not hold yet.
    #[arg(long, value_name = "DIR")]
    out: PathBuf,
    /// Image folders to index (.jpg, .jpeg, .png, sorted by name).
    #[arg(required = true, value_name = "FOLDER")]
    folders: Vec<PathBuf>,
    /// Images decoded and encoded at once; memory grows with it, not with the database.
    #[arg(long, default_value_t = 32, value_parser = clap::value_parser!(u32).range(1..=4096))]
    batch_size: u32,
    /// Also write the global descriptors as FILE (.npy), FILE with extension .safetensors,
    /// and their image paths as FILE with extension .paths.csv.
    #[arg(long, value_name = "FILE")]
    export_npy: Option<PathBuf>,
    /// Do not show the progress bar.
    #[arg(long)]
    no_progress: bool,
}

pub fn index(args: IndexArgs) -> Result<()> {
    init_logging(None)?;
    let device = default_device();
    let checkpoint = Checkpoint::open(&args.run)?;
    let model = checkpoint.load_model(&device)?;
    let options = BuildOptions {
        batch_size: args.batch_size as usize,
        show_progress: !args.no_progress && std::io::IsTerminal::is_terminal(&std::io::stderr()),
    };
    let report = build(
        &args.out,
        &checkpoint,
        &model,
        args.domain.into(),
        &args.folders,
        options,
        &device,
    )
    .with_context(|| format!("cannot build index {}", args.out.display()))?;
    let rate = if report.seconds > 0.0 {
        format!(
            " in {:.1} s ({:.1} images/s)",
            report.seconds,
            report.added as f64 / report.seconds
        )
    } else {
        String::new()
    };
    println!(
        "index {}: added {} images{rate}, {} already indexed, {} unreadable skipped; {} images in total",
        args.out.display(),
        report.added,
        report.already_indexed,
        report.skipped,
        report.total
    );
    if let Some(path) = &args.export_npy {
        export_to(&args.out, path)?;
    }
    Ok(())
}

#[derive(Args, Debug)]
pub struct ExportArgs {
    /// Index directory written by `allday index`.
    #[arg(long, value_name = "DIR")]
    index: PathBuf,
    /// Output .npy file; the .safetensors and .paths.csv files go beside it.
    #[arg(long, value_name = "FILE")]
    npy: PathBuf,
}

pub fn export(args: ExportArgs) -> Result<()> {
    init_logging(None)?;
    export_to(&args.index, &args.npy)
}

fn export_to(index: &Path, npy: &Path) -> Result<()> {
    let has_npy_extension = npy
        .extension()
        .is_some_and(|extension| extension.eq_ignore_ascii_case("npy"));
    if !has_npy_extension {
        bail!(
            "--npy {} must end in .npy, the format written",
            npy.display()
        );
    }
    let index = DescriptorIndex::open(index)?;
    let written = index.export(npy)?;
    println!(
        "global descriptors [{}, {}] written to {}, {} and {}",
        index.len(),
        index.manifest.channels,
        written[0].display(),
        written[1].display(),
        written[2].display()
    );
    Ok(())
}

#[derive(Args, Debug)]
pub struct SearchArgs {
    /// Index directory written by `allday index`.
    #[arg(long, value_name = "DIR")]
    index: PathBuf,
    /// Run or checkpoint to encode the queries with [default: the one the index was built
    /// with]; its weights must be the index's.
    #[arg(long, value_name = "PATH")]
    run: Option<PathBuf>,
    /// Encoder of the queries [default: the other domain than the index's].
    #[arg(long, value_enum)]
    domain: Option<DomainArg>,
    /// Query images.
    #[arg(required = true, value_name = "QUERY")]
    queries: Vec<PathBuf>,
    /// Matches listed per query.
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u32).range(1..=1000))]
    top: u32,
    /// Re-rank the K nearest by global descriptor with the per-position distance.
    #[arg(long, value_name = "K", value_parser = clap::value_parser!(u32).range(1..=100000))]
    rerank: Option<u32>,
    /// Print the results as JSON on stdout.
    #[arg(long)]
    json: bool,
    /// Write a PNG of each query beside its matches.
    #[arg(long, value_name = "PNG")]
    grid: Option<PathBuf>,
    /// Mark database images within this many frames of the query (by position in their
    /// folders) as true matches.
    #[arg(long)]
    tolerance: Option<usize>,
    /// CSV of `query,match[,match…]` rows (paths relative to the CSV's folder) that marks the
    /// true matches instead of frame tolerance.
    #[arg(long, value_name = "CSV", conflicts_with = "tolerance")]
    ground_truth: Option<PathBuf>,
    /// Width of the grid's thumbnails in pixels; the height follows the index's aspect ratio.
    #[arg(long, default_value_t = 160, value_parser = clap::value_parser!(u32).range(16..=1024))]
    tile_width: u32,
}

/// The frame index of an image: its position in its folder's sorted image list.
fn frame_of(path: &Path) -> Result<usize> {
    let folder = path.parent().unwrap_or(Path::new("."));
    let folder = if folder.as_os_str().is_empty() {
        Path::new(".")
    } else {
        folder
    };
    let canonical = path
        .canonicalize()
        .with_context(|| format!("cannot read query {}", path.display()))?;
    let images = list_images(folder)?;
    images
        .iter()
        .position(|image| image.canonicalize().ok().as_deref() == Some(canonical.as_path()))
        .with_context(|| {
            format!(
                "query {} is not a .jpg, .jpeg or .png image, so it has no frame index",
                path.display()
            )
        })
}

pub fn search(args: SearchArgs) -> Result<()> {
    init_logging(None)?;
    if let Some(path) = &args.grid {
        let is_png = path
            .extension()
            .is_some_and(|extension| extension.eq_ignore_ascii_case("png"));
        if !is_png {
            bail!(
                "--grid {} must end in .png, the format written",
                path.display()
            );
        }
    }
    let device = default_device();
    let index = DescriptorIndex::open(&args.index)?;
    let run = args
        .run
        .clone()
        .unwrap_or_else(|| index.manifest.checkpoint.clone());
    let checkpoint = Checkpoint::open(&run).with_context(|| {
        format!(
            "cannot open checkpoint {} to encode the queries (pass the index's checkpoint with --run)",
            run.display()
        )
    })?;
    let model = checkpoint.load_model(&device)?;
    index.check_compatible(
        &checkpoint.path,
        &checkpoint_fingerprint(&checkpoint, &model),
    )?;
    let domain = args
        .domain
        .map(Domain::from)
        .unwrap_or_else(|| index.manifest.domain().other());

    let ground_truth = match (&args.ground_truth, args.tolerance) {
        (Some(path), _) => Some(GroundTruth::from_csv(path)?),
        (None, Some(tolerance)) => Some(GroundTruth::Frames { tolerance }),
        (None, None) => None,
    };
    let query_entries = args
        .queries
        .iter()
        .map(|path| {
            let frame = match ground_truth {
                Some(GroundTruth::Frames { .. }) => frame_of(path)?,
                _ => 0,
            };
            Ok(ImageEntry {
                path: path.clone(),
                frame,
            })
        })
        .collect::<Result<Vec<_>>>()?;
    if let Some(truth) = &ground_truth {
        truth.check_queries(&query_entries)?;
    }

    let results = index.search(
        &model,
        domain,
        &args.queries,
        args.top as usize,
        args.rerank.map(|k| k as usize),
        &device,
    )?;
    let correct = |query: &ImageEntry, found: &Match| {
        ground_truth.as_ref().map(|truth| {
            truth.is_match(
                query,
                &ImageEntry {
                    path: found.path.clone(),
                    frame: found.frame,
                },
            )
        })
    };
    let measure = if args.rerank.is_some() {
        "per-position L2 (mean over positions)"
    } else {
        "cosine of global descriptors"
    };

    if args.json {
        let queries: Vec<serde_json::Value> = query_entries
            .iter()
            .zip(&results)
            .map(|(query, matches)| {
                let matches: Vec<serde_json::Value> = matches
                    .iter()
                    .map(|found| {
                        let mut value = serde_json::json!(found);
                        if let Some(correct) = correct(query, found) {
                            value["correct"] = serde_json::json!(correct);
                        }
                        value
                    })
                    .collect();
                serde_json::json!({"query": query.path, "matches": matches})
            })
            .collect();
        let report = serde_json::json!({
            "index": args.index,
            "checkpoint": checkpoint.path,
            "distance": measure,
            "queries": queries,
        });
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        println!(
            "index {} ({} images), distance: {measure}",
            args.index.display(),
            index.len()
        );
        for (query, matches) in query_entries.iter().zip(&results) {
            println!("\nquery {}", query.path.display());
            println!("{:>5}  {:>9}  path", "rank", "distance");
            for found in matches {
                let mark = match correct(query, found) {
                    Some(true) => "  (true match)",
                    Some(false) => "",
                    None => "",
                };
                println!(
                    "{:>5}  {:>9.5}  {}{mark}",
                    found.rank,
                    found.distance,
                    found.path.display()
                );
            }
        }
    }

    if let Some(path) = &args.grid {
        let rows: Vec<GridRow> = query_entries
            .iter()
            .zip(&results)
            .map(|(query, matches)| GridRow {
                query: query.path.clone(),
                matches: matches
                    .iter()
                    .map(|found| GridMatch {
                        path: found.path.clone(),
                        distance: found.distance,
                        correct: correct(query, found),
                    })
                    .collect(),
            })
            .collect();
        let manifest = &index.manifest;
        let tile_height = (args.tile_width as usize * manifest.height / manifest.width).max(1);
        let grid = match_grid(
            &rows,
            args.tile_width,
            tile_height as u32,
            checkpoint.config.data.max_image_pixels,
        )?;
        save_png(&grid, path)?;
        let message = format!(
            "grid written to {} ({}×{} pixels)",
            path.display(),
            grid.width(),
            grid.height()
        );
        if args.json {
            eprintln!("{message}");
        } else {
            println!("\n{message}");
        }
    }
    Ok(())
}
