//! `allday translate`: a PNG of day and night images with reconstructions and translations.

use std::path::PathBuf;

use allday::backend::default_device;
use allday::checkpoint::Checkpoint;
use allday::data::{ImageSet, list_images};
use allday::translation::{save_png, translation_grid};
use anyhow::{Result, bail};
use clap::Args;

use crate::init_logging;

#[derive(Args, Debug)]
pub struct TranslateArgs {
    /// Run directory (its newest checkpoint) or one checkpoint directory.
    #[arg(long, value_name = "PATH")]
    run: PathBuf,
    /// Day (domain A) image [default: first evaluation place of the database folder].
    #[arg(long, value_name = "IMAGE")]
    day: Option<PathBuf>,
    /// Night (domain B) image [default: first evaluation place of the query folder].
    #[arg(long, value_name = "IMAGE")]
    night: Option<PathBuf>,
    /// Data root for the default images [default: the run's data.root].
    #[arg(long, value_name = "DIR")]
    data: Option<PathBuf>,
    /// Output PNG.
    #[arg(long, short, default_value = "translation.png")]
    out: PathBuf,
    /// Magnification of each tile, 1 to 16.
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u32).range(1..=16))]
    scale: u32,
}

pub fn run(args: TranslateArgs) -> Result<()> {
    init_logging(None)?;
    let device = default_device();
    let checkpoint = Checkpoint::open(&args.run)?;
    let config = &checkpoint.config;
    let root = args
        .data
        .clone()
        .unwrap_or_else(|| config.data.root.clone());
    let (day, night) = match (args.day, args.night) {
        (Some(day), Some(night)) => (day, night),
        (day, night) => {
            // The first evaluation place, or the last frame both folders have.
            let database = list_images(&root.join(&config.evaluation.database))?;
            let queries = list_images(&root.join(&config.evaluation.queries))?;
            let frame = config
                .evaluation
                .places
                .start
                .min(database.len() - 1)
                .min(queries.len() - 1);
            (
                day.unwrap_or_else(|| database[frame].clone()),
                night.unwrap_or_else(|| queries[frame].clone()),
            )
        }
    };
    let is_png = args
        .out
        .extension()
        .is_some_and(|extension| extension.eq_ignore_ascii_case("png"));
    if !is_png {
        bail!(
            "--out {} must end in .png, the format written",
            args.out.display()
        );
    }
    let images = ImageSet::from_files(
        &[day.clone(), night.clone()],
        config.data.width,
        config.data.height,
    )?;
    let model = checkpoint.load_model(&device)?;
    let grid = translation_grid(
        &model,
        images.batch(&[0], &device),
        images.batch(&[1], &device),
        args.scale,
    );
    save_png(&grid, &args.out)?;
    println!(
        "wrote {}: rows day ({}) and night ({}); columns original, reconstruction, cycle reconstruction, translation to the other domain",
        args.out.display(),
        day.display(),
        night.display()
    );
    Ok(())
}
