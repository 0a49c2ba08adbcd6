//! `allday data fetch`: download and unpack a public dataset.

use std::path::PathBuf;

use anyhow::Result;
use clap::{Args, Subcommand, ValueEnum};

#[derive(Args, Debug)]
pub struct DataArgs {
    #[command(subcommand)]
    command: DataCommand,
}

#[derive(Subcommand, Debug)]
enum DataCommand {
    /// Download and unpack a dataset; does nothing when the folder already holds it.
    Fetch(FetchArgs),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Dataset {
    /// Gardens Point Walking (day_left, day_right, night_right; 200 images each).
    GardensPoint,
}

#[derive(Args, Debug)]
struct FetchArgs {
    #[arg(value_enum)]
    dataset: Dataset,
    /// Folder that receives day_left/, day_right/ and night_right/.
    #[arg(long, value_name = "DIR", default_value = "data/gardens_point")]
    dir: PathBuf,
    /// Address of the zip archive [default: the TU Chemnitz address].
    #[arg(long)]
    url: Option<String>,
    /// Images expected per folder (for tests with a small archive).
    #[arg(long, hide = true)]
    expect_images: Option<usize>,
    /// Do not show the progress bar.
    #[arg(long)]
    no_progress: bool,
}

pub fn run(args: DataArgs) -> Result<()> {
    crate::init_logging(None)?;
    match args.command {
        DataCommand::Fetch(args) => fetch(args),
    }
}

#[cfg(feature = "fetch")]
fn fetch(args: FetchArgs) -> Result<()> {
    use allday::fetch::{DatasetSpec, FetchOutcome, GARDENS_POINT_URL};
    use anyhow::Context;
    use std::io::IsTerminal;

    let Dataset::GardensPoint = args.dataset;
    let mut spec = DatasetSpec::gardens_point();
    if let Some(count) = args.expect_images {
        spec.images_per_folder = count;
    }
    let url = args.url.as_deref().unwrap_or(GARDENS_POINT_URL);
    let show_progress = !args.no_progress && std::io::stderr().is_terminal();
    let outcome = allday::fetch::fetch(&args.dir, url, &spec, show_progress)
        .with_context(|| format!("cannot fetch Gardens Point into {}", args.dir.display()))?;
    match outcome {
        FetchOutcome::AlreadyPresent => println!(
            "{} already holds Gardens Point ({} folders of {} images); nothing downloaded",
            args.dir.display(),
            spec.folders.len(),
            spec.images_per_folder
        ),
        FetchOutcome::Downloaded { bytes } => println!(
            "downloaded {bytes} bytes from {url} and unpacked {} into {}",
            spec.folders.join(", "),
            args.dir.display()
        ),
    }
    Ok(())
}

#[cfg(not(feature = "fetch"))]
fn fetch(_args: FetchArgs) -> Result<()> {
    anyhow::bail!(
        "this allday was built without the `fetch` feature; build it with `--features fetch` or download the archive by hand"
    )
}
