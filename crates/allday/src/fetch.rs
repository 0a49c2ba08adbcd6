//! Downloading and unpacking a public image dataset: Gardens Point Walking.
//!
//! [`fetch`] downloads the archive to a temporary file beside the target folder, opens it as a
//! zip (which checks its central directory), extracts the dataset's folders into a temporary
//! folder (every entry's CRC-32 is checked as it is read), checks that every folder holds the
//! expected number of decodable images, and only then renames the temporary folder to the
//! target. An interrupted download, a damaged archive or a missing folder therefore leaves
//! nothing behind, and a complete target folder makes the call a no-op.

use std::fs::File;
use std::io::{BufWriter, Read, Write};
use std::path::{Component, Path, PathBuf};
use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use rayon::prelude::*;

use crate::data::{DEFAULT_MAX_IMAGE_PIXELS, decode_image, list_images};
use crate::error::{Error, Result};

/// Where TU Chemnitz publishes Gardens Point Walking. This URL is the one used by the
/// download code of the VPR tutorial of Schubert, Neubert et al. (TU Chemnitz); it was not
/// fetched while writing this code (the build machine has no internet access), so `--url`
/// overrides it.
pub const GARDENS_POINT_URL: &str =
    "https://www.tu-chemnitz.de/etit/proaut/datasets/GardensPoint_Walking.zip";

/// The contents of a complete copy of a dataset.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DatasetSpec {
    /// Folder names, each of which must appear once in the archive (at any depth, all under
    /// the same parent folder).
    pub folders: Vec<String>,
    /// Decodable images each folder must hold.
    pub images_per_folder: usize,
}

impl DatasetSpec {
    /// Gardens Point Walking: day_left, day_right and night_right, 200 images each.
    pub fn gardens_point() -> DatasetSpec {
        DatasetSpec {
            folders: vec!["day_left".into(), "day_right".into(), "night_right".into()],
            images_per_folder: 200,
        }
    }
}

/// The outcome of [`fetch`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FetchOutcome {
    /// The target folder was complete already; nothing was downloaded.
    AlreadyPresent,
    /// The archive (this many bytes) was downloaded and unpacked.
    Downloaded { bytes: u64 },
}

/// Checks that `dir` contains every folder of `spec` with exactly the expected number of images,
/// all decodable. Returns a description of the first problem.
pub fn check_dataset(dir: &Path, spec: &DatasetSpec) -> std::result::Result<(), String> {
    for folder in &spec.folders {
        let images = list_images(&dir.join(folder)).map_err(|error| error.to_string())?;
        if images.len() != spec.images_per_folder {
            return Err(format!(
                "{folder} holds {} images, expected {}",
                images.len(),
                spec.images_per_folder
            ));
        }
        images
            .par_iter()
            .try_for_each(|path| decode_image(path, DEFAULT_MAX_IMAGE_PIXELS).map(|_| ()))
            .map_err(|error| error.to_string())?;
    }
    Ok(())
}

/// Removes the temporary download and folder when dropped, so every exit path cleans up.
struct Temporaries {
    archive: PathBuf,
    folder: PathBuf,
}

impl Drop for Temporaries {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.archive);
        let _ = std::fs::remove_dir_all(&self.folder);
    }
}

/// Makes `dir` hold the dataset of `spec` downloaded from `url`, unless it holds it already.
///
/// A `dir` that exists, is not empty and is not complete is left alone and reported, so that
/// no user file is overwritten.
pub fn fetch(
    dir: &Path,
    url: &str,
    spec: &DatasetSpec,
    show_progress: bool,
) -> Result<FetchOutcome> {
    if dir.exists() {
        match check_dataset(dir, spec) {
            Ok(()) => return Ok(FetchOutcome::AlreadyPresent),
            Err(message) => {
                let empty = std::fs::read_dir(dir)
                    .map_err(|source| Error::io(dir, source))?
                    .next()
                    .is_none();
                if !empty {
                    return Err(Error::IncompleteDataset {
                        path: dir.to_path_buf(),
                        message,
                    });
                }
            }
        }
    }
    let name = dir
        .file_name()
        .map(|name| name.to_string_lossy().into_owned())
        .ok_or_else(|| Error::InvalidConfig {
            field: "--dir",
            value: dir.display().to_string(),
            expected: "a folder path that ends in a name".into(),
        })?;
    let parent = dir
        .parent()
        .filter(|parent| !parent.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::create_dir_all(parent).map_err(|source| Error::io(parent, source))?;
    let process = std::process::id();
    let temporaries = Temporaries {
        archive: parent.join(format!(".{name}.download-{process}.zip")),
        folder: parent.join(format!(".{name}.tmp-{process}")),
    };

    let bytes = download(url, &temporaries.archive, show_progress)?;
    unpack(&temporaries.archive, &temporaries.folder, spec)?;
    check_dataset(&temporaries.folder, spec).map_err(|message| Error::Archive {
        path: PathBuf::from(url),
        message,
    })?;
    if dir.exists() {
        // Checked above to be empty.
        std::fs::remove_dir(dir).map_err(|source| Error::io(dir, source))?;
    }
    std::fs::rename(&temporaries.folder, dir).map_err(|source| Error::io(dir, source))?;
    if let Ok(parent) = File::open(parent) {
        let _ = parent.sync_all();
    }
    Ok(FetchOutcome::Downloaded { bytes })
}

/// Downloads `url` to `path`; fails when the connection ends before the announced length.
/// Returns the number of bytes written.
pub fn download(url: &str, path: &Path, show_progress: bool) -> Result<u64> {
    let download_error = |message: String| Error::Download {
        url: url.to_string(),
        message,
    };
    let agent = ureq::AgentBuilder::new()
        .timeout_connect(Duration::from_secs(30))
        .timeout_read(Duration::from_secs(60))
        .build();
    let response = agent.get(url).call().map_err(|error| match error {
        ureq::Error::Status(code, response) => download_error(format!(
            "the server returned {code} {}",
            response.status_text()
        )),
        ureq::Error::Transport(transport) => download_error(transport.to_string()),
    })?;
    let expected: Option<u64> = response
        .header("Content-Length")
        .and_then(|length| length.trim().parse().ok());
    let target = if show_progress {
        ProgressDrawTarget::stderr()
    } else {
        ProgressDrawTarget::hidden()
    };
    let progress = ProgressBar::with_draw_target(expected, target);
    progress.set_style(
        ProgressStyle::with_template(
            "downloading {bar:30} {bytes}/{total_bytes} [{elapsed}<{eta}] {bytes_per_sec}",
        )
        .expect("the progress template is valid"),
    );
    let file = File::create(path).map_err(|source| Error::io(path, source))?;
    let mut writer = BufWriter::new(file);
    let mut reader = response.into_reader();
    let mut buffer = vec![0u8; 1 << 16];
    let mut written = 0u64;
    loop {
        let count = match reader.read(&mut buffer) {
            Ok(0) => break,
            Ok(count) => count,
            Err(error) if error.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(error) => {
                return Err(download_error(format!(
                    "the connection failed after {written} bytes: {error}"
                )));
            }
        };
        writer
            .write_all(&buffer[..count])
            .map_err(|source| Error::io(path, source))?;
        written += count as u64;
        progress.inc(count as u64);
    }
    progress.finish_and_clear();
    if let Some(expected) = expected
        && written != expected
    {
        return Err(download_error(format!(
            "the connection ended after {written} of {expected} bytes; run the command again"
        )));
    }
    let file = writer
        .into_inner()
        .map_err(|error| Error::io(path, error.into_error()))?;
    file.sync_all().map_err(|source| Error::io(path, source))?;
    Ok(written)
}

/// Finds the folder inside the archive that holds all folders of `spec`: the components
/// before the first of them.
fn dataset_prefix(names: &[PathBuf], spec: &DatasetSpec) -> Option<PathBuf> {
    let first = spec.folders.first()?;
    let prefix = names.iter().find_map(|name| {
        let components: Vec<Component> = name.components().collect();
        let position = components
            .iter()
            .position(|component| component.as_os_str() == first.as_str())?;
        // A folder entry of its own, or a file below it.
        Some(components[..position].iter().collect::<PathBuf>())
    })?;
    spec.folders
        .iter()
        .all(|folder| {
            let wanted = prefix.join(folder);
            names.iter().any(|name| name.starts_with(&wanted))
        })
        .then_some(prefix)
}

/// Extracts the dataset folders of the zip `archive` into `target` (created), keeping the
/// layout below the folder that holds them. Entries outside that folder are skipped; an entry
/// whose path leaves the target is an error.
pub fn unpack(archive: &Path, target: &Path, spec: &DatasetSpec) -> Result<()> {
    let archive_error = |message: String| Error::Archive {
        path: archive.to_path_buf(),
        message,
    };
    let file = File::open(archive).map_err(|source| Error::io(archive, source))?;
    let mut zip = zip::ZipArchive::new(file)
        .map_err(|error| archive_error(format!("it is not a readable zip file ({error})")))?;
    let mut names = Vec::with_capacity(zip.len());
    for index in 0..zip.len() {
        let entry = zip
            .by_index(index)
            .map_err(|error| archive_error(error.to_string()))?;
        let name = entry
            .enclosed_name()
            .map(Path::to_path_buf)
            .ok_or_else(|| {
                archive_error(format!(
                    "entry `{}` points outside the folder it is extracted to",
                    entry.name()
                ))
            })?;
        names.push(name);
    }
    let prefix = dataset_prefix(&names, spec).ok_or_else(|| {
        archive_error(format!(
            "it does not contain the folders {} side by side",
            spec.folders.join(", ")
        ))
    })?;
    std::fs::create_dir_all(target).map_err(|source| Error::io(target, source))?;
    for (index, name) in names.iter().enumerate() {
        let Ok(relative) = name.strip_prefix(&prefix) else {
            continue;
        };
        if relative.as_os_str().is_empty() {
            continue;
        }
        let destination = target.join(relative);
        let mut entry = zip
            .by_index(index)
            .map_err(|error| archive_error(error.to_string()))?;
        if entry.is_dir() {
            std::fs::create_dir_all(&destination)
                .map_err(|source| Error::io(&destination, source))?;
            continue;
        }
        if let Some(parent) = destination.parent() {
            std::fs::create_dir_all(parent).map_err(|source| Error::io(parent, source))?;
        }
        let mut output =
            File::create(&destination).map_err(|source| Error::io(&destination, source))?;
        // Reading to the end checks the entry's CRC-32.
        std::io::copy(&mut entry, &mut output).map_err(|error| {
            archive_error(format!("entry `{}` is damaged ({error})", name.display()))
        })?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_found_at_any_depth() {
        let spec = DatasetSpec {
            folders: vec!["a".into(), "b".into()],
            images_per_folder: 1,
        };
        let names = |list: &[&str]| list.iter().map(PathBuf::from).collect::<Vec<_>>();
        assert_eq!(
            dataset_prefix(&names(&["Top/a/1.png", "Top/b/1.png", "x.txt"]), &spec),
            Some(PathBuf::from("Top"))
        );
        assert_eq!(
            dataset_prefix(&names(&["a/", "a/1.png", "b/1.png"]), &spec),
            Some(PathBuf::new())
        );
        assert_eq!(
            dataset_prefix(&names(&["Top/a/1.png", "b/1.png"]), &spec),
            None
        );
    }
}
