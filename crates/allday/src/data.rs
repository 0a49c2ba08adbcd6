//! Image folders, preprocessing and batching.
//!
//! A domain is one or more folders of images. The images of a folder are sorted by file name and
//! the position in that order is the image's frame index, which is its place on
//! frame-synchronised routes such as Gardens Point (frame i is place i in every folder).

use std::path::{Path, PathBuf};

use burn::prelude::*;
use image::imageops::FilterType;
use image::{DynamicImage, ImageDecoder, ImageReader};
use rayon::prelude::*;

use crate::config::PlaceRange;
use crate::error::{Error, Result};

const IMAGE_EXTENSIONS: [&str; 3] = ["jpg", "jpeg", "png"];

/// Lists the images of a folder sorted by file name; the index in the list is the frame index.
///
/// Every entry with an image extension is listed, a dangling link or a folder named `x.jpg`
/// included. Such an entry fails to decode, with an error naming it, instead of silently
/// shifting the frame index of every later image.
pub fn list_images(folder: &Path) -> Result<Vec<PathBuf>> {
    if !folder.is_dir() {
        return Err(Error::MissingFolder {
            path: folder.to_path_buf(),
        });
    }
    let entries = std::fs::read_dir(folder).map_err(|source| Error::io(folder, source))?;
    let mut images = Vec::new();
    for entry in entries {
        let path = entry.map_err(|source| Error::io(folder, source))?.path();
        let is_image = path
            .extension()
            .and_then(|extension| extension.to_str())
            .is_some_and(|extension| {
                IMAGE_EXTENSIONS
                    .iter()
                    .any(|known| extension.eq_ignore_ascii_case(known))
            });
        if is_image {
            images.push(path);
        }
    }
    if images.is_empty() {
        return Err(Error::NoImages {
            path: folder.to_path_buf(),
        });
    }
    images.sort();
    Ok(images)
}

/// Default of the largest image accepted, in pixels (width × height). The limit is checked from
/// the file header before decoding, so that a crafted header cannot make the decoder allocate
/// gigabytes.
pub const DEFAULT_MAX_IMAGE_PIXELS: u64 = 100_000_000;

/// How a set of images is loaded: the policy for unreadable files and the size limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LoadOptions {
    pub unreadable: UnreadableImages,
    /// Largest image accepted, in pixels.
    pub max_pixels: u64,
}

impl Default for LoadOptions {
    fn default() -> Self {
        LoadOptions {
            unreadable: UnreadableImages::Stop,
            max_pixels: DEFAULT_MAX_IMAGE_PIXELS,
        }
    }
}

/// Decodes an image file in the format its content shows, whatever its extension, and applies
/// its EXIF orientation.
pub fn decode_image(path: &Path, max_pixels: u64) -> Result<DynamicImage> {
    let image_error = |source| Error::Image {
        path: path.to_path_buf(),
        source,
    };
    let open = || -> Result<ImageReader<std::io::BufReader<std::fs::File>>> {
        ImageReader::open(path)
            .map_err(|source| Error::io(path, source))?
            .with_guessed_format()
            .map_err(|source| Error::io(path, source))
    };
    let reader = open()?;
    if reader.format() == Some(image::ImageFormat::Jpeg) && jpeg_is_truncated(path)? {
        // The JPEG decoder fills a truncated file's missing rows with grey instead of failing.
        return Err(Error::TruncatedImage {
            path: path.to_path_buf(),
        });
    }
    let (width, height) = reader.into_dimensions().map_err(image_error)?;
    let pixels = u64::from(width) * u64::from(height);
    if pixels > max_pixels {
        return Err(Error::ImageTooLarge {
            path: path.to_path_buf(),
            width,
            height,
            limit: max_pixels,
        });
    }
    let mut decoder = open()?.into_decoder().map_err(image_error)?;
    let orientation = decoder.orientation().map_err(image_error)?;
    let mut image = DynamicImage::from_decoder(decoder).map_err(image_error)?;
    image.apply_orientation(orientation);
    Ok(image)
}

/// Returns whether a file that starts like a JPEG (FF D8) lacks the end-of-image marker (FF D9)
/// in its last 4 KiB.
///
/// The marker cannot occur inside entropy-coded data, where an FF byte is always followed by 00,
/// so a file cut short lacks it. Some cameras append a few bytes after the marker, hence the
/// window rather than the last two bytes. Files that do not start like a JPEG are left to the
/// decoder, which reports them.
fn jpeg_is_truncated(path: &Path) -> Result<bool> {
    use std::io::{Read, Seek, SeekFrom};
    const WINDOW: u64 = 4096;
    let mut file = std::fs::File::open(path).map_err(|source| Error::io(path, source))?;
    let length = file
        .metadata()
        .map_err(|source| Error::io(path, source))?
        .len();
    let mut start = [0u8; 2];
    if file.read_exact(&mut start).is_err() || start != [0xFF, 0xD8] {
        return Ok(false);
    }
    let mut tail = Vec::new();
    file.seek(SeekFrom::Start(length.saturating_sub(WINDOW)))
        .and_then(|_| file.read_to_end(&mut tail))
        .map_err(|source| Error::io(path, source))?;
    Ok(!tail.windows(2).any(|pair| pair == [0xFF, 0xD9]))
}

/// Decodes an image, resizes it keeping its aspect ratio so that it covers `width`×`height`,
/// and crops the centre.
///
/// Returns the pixels in channel-major order `[3, height, width]`, scaled to [0, 1]. Grey images
/// are repeated over the three channels. Images above `max_pixels` are rejected.
pub fn load_image(path: &Path, width: usize, height: usize, max_pixels: u64) -> Result<Vec<f32>> {
    fit_image(&decode_image(path, max_pixels)?, path, width, height)
}

/// Resizes and crops an image decoded from `path` as [`load_image`] does.
pub fn fit_image(
    image: &DynamicImage,
    path: &Path,
    width: usize,
    height: usize,
) -> Result<Vec<f32>> {
    let image = image.to_rgb8();
    let (source_width, source_height) = image.dimensions();
    if source_width == 0 || source_height == 0 {
        return Err(Error::Image {
            path: path.to_path_buf(),
            source: image::ImageError::Limits(image::error::LimitError::from_kind(
                image::error::LimitErrorKind::DimensionError,
            )),
        });
    }

    // The smallest scale at which the image covers the target in both directions.
    let scale = f64::max(
        width as f64 / source_width as f64,
        height as f64 / source_height as f64,
    );
    let scaled_width = ((source_width as f64 * scale).round() as u32).max(width as u32);
    let scaled_height = ((source_height as f64 * scale).round() as u32).max(height as u32);
    let resized =
        image::imageops::resize(&image, scaled_width, scaled_height, FilterType::Triangle);
    let left = (scaled_width - width as u32) / 2;
    let top = (scaled_height - height as u32) / 2;
    let cropped = image::imageops::crop_imm(&resized, left, top, width as u32, height as u32);

    let plane = width * height;
    let mut pixels = vec![0.0f32; 3 * plane];
    for (x, y, pixel) in cropped.to_image().enumerate_pixels() {
        let offset = y as usize * width + x as usize;
        for channel in 0..3 {
            pixels[channel * plane + offset] = f32::from(pixel[channel]) / 255.0;
        }
    }
    Ok(pixels)
}

/// Runs `produce` on each item in order on a second thread and hands the results to `consume`
/// on this one, so that decoding the next batch of images overlaps with the network's work on
/// the current one. At most two results wait ahead of `consume`. The first error of either side
/// stops both and is returned.
pub fn prefetch<I, T>(
    items: impl IntoIterator<Item = I, IntoIter: Send>,
    produce: impl Fn(I) -> Result<T> + Sync,
    mut consume: impl FnMut(T) -> Result<()>,
) -> Result<()>
where
    T: Send,
{
    let items = items.into_iter();
    std::thread::scope(|scope| {
        let (sender, receiver) = std::sync::mpsc::sync_channel(1);
        let produce = &produce;
        scope.spawn(move || {
            for item in items {
                let produced = produce(item);
                let failed = produced.is_err();
                // A closed channel means that `consume` stopped early, so nothing is left to do.
                if sender.send(produced).is_err() || failed {
                    break;
                }
            }
        });
        // Returning early drops the receiver, which ends the producer at its next send.
        for produced in receiver {
            consume(produced?)?;
        }
        Ok(())
    })
}

/// Policy for an image that cannot be decoded while a set is loaded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum UnreadableImages {
    /// Stop with an error that names the file.
    #[default]
    Stop,
    /// Leave the file out with a warning that names it.
    Skip,
}

/// One image of a set: where it came from and its frame index in its folder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageEntry {
    pub path: PathBuf,
    pub frame: usize,
}

/// Lists the images of `folders` whose frame index lies in `places`.
fn place_entries(folders: &[PathBuf], places: PlaceRange) -> Result<Vec<ImageEntry>> {
    let mut entries = Vec::new();
    for folder in folders {
        let images = list_images(folder)?;
        if places.end > images.len() {
            return Err(Error::PlacesOutOfRange {
                folder: folder.clone(),
                start: places.start,
                end: places.end,
                available: images.len(),
            });
        }
        entries.extend(
            images
                .into_iter()
                .enumerate()
                .filter(|(frame, _)| places.contains(*frame))
                .map(|(frame, path)| ImageEntry { path, frame }),
        );
    }
    Ok(entries)
}

/// Preprocessed images held in memory, ready to batch.
#[derive(Debug, Clone)]
pub struct ImageSet {
    pub entries: Vec<ImageEntry>,
    pub width: usize,
    pub height: usize,
    /// The size limit the set was loaded with, for decoding its files again.
    pub max_pixels: u64,
    /// `[len, 3, height, width]`, row-major.
    pixels: Vec<f32>,
    /// `[len, 32 · 24]`: the raw-pixel baseline's descriptors, computed from the same decode
    /// when the set was loaded by [`ImageSet::load_with_thumbnails`].
    thumbnails: Option<Vec<f32>>,
}

impl ImageSet {
    /// Loads the images of the given folders whose frame index lies in `places`, decoding in
    /// parallel. An image that cannot be decoded stops the load or, with
    /// [`UnreadableImages::Skip`], is left out with a warning that names it. The frame indices
    /// of the other images do not change.
    pub fn load(
        folders: &[PathBuf],
        places: PlaceRange,
        width: usize,
        height: usize,
        options: LoadOptions,
    ) -> Result<ImageSet> {
        let entries = place_entries(folders, places)?;
        Self::from_entries(entries, width, height, options, false)
    }

    /// Loads like [`ImageSet::load`] and also computes the raw-pixel baseline's descriptor of
    /// each image ([`crate::baseline`]) from the same decode, so that an evaluation decodes
    /// each file once.
    pub fn load_with_thumbnails(
        folders: &[PathBuf],
        places: PlaceRange,
        width: usize,
        height: usize,
        options: LoadOptions,
    ) -> Result<ImageSet> {
        let entries = place_entries(folders, places)?;
        Self::from_entries(entries, width, height, options, true)
    }

    /// Loads the given files; the frame index of each is its position in `paths`.
    pub fn from_files(paths: &[PathBuf], width: usize, height: usize) -> Result<ImageSet> {
        let entries = paths
            .iter()
            .enumerate()
            .map(|(frame, path)| ImageEntry {
                path: path.clone(),
                frame,
            })
            .collect();
        Self::from_entries(entries, width, height, LoadOptions::default(), false)
    }

    fn from_entries(
        entries: Vec<ImageEntry>,
        width: usize,
        height: usize,
        options: LoadOptions,
        with_thumbnails: bool,
    ) -> Result<ImageSet> {
        let decoded: Vec<Result<(Vec<f32>, Vec<f32>)>> = entries
            .par_iter()
            .map(|entry| {
                let image = decode_image(&entry.path, options.max_pixels)?;
                let thumbnail = if with_thumbnails {
                    crate::baseline::thumbnail_descriptor(&image)
                } else {
                    Vec::new()
                };
                Ok((fit_image(&image, &entry.path, width, height)?, thumbnail))
            })
            .collect();
        let folder = entries
            .first()
            .and_then(|entry| entry.path.parent())
            .map(Path::to_path_buf)
            .unwrap_or_default();
        let mut kept = Vec::with_capacity(entries.len());
        let mut pixels = Vec::with_capacity(entries.len() * 3 * width * height);
        let mut thumbnails = Vec::new();
        let mut skipped = 0;
        for (entry, result) in entries.into_iter().zip(decoded) {
            match (result, options.unreadable) {
                (Ok((image, thumbnail)), _) => {
                    pixels.extend_from_slice(&image);
                    thumbnails.extend_from_slice(&thumbnail);
                    kept.push(entry);
                }
                (Err(error), UnreadableImages::Skip) => {
                    tracing::warn!("skipping unreadable image: {error}");
                    skipped += 1;
                }
                (Err(error), UnreadableImages::Stop) => return Err(error),
            }
        }
        if skipped > 0 {
            tracing::warn!("skipped {skipped} unreadable images, loaded {}", kept.len());
        }
        if kept.is_empty() {
            return Err(Error::NoReadableImages { folder, skipped });
        }
        Ok(ImageSet {
            entries: kept,
            width,
            height,
            max_pixels: options.max_pixels,
            pixels,
            thumbnails: with_thumbnails.then_some(thumbnails),
        })
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Returns the raw-pixel baseline's descriptors `[len, 32 · 24]`, if the set was loaded
    /// with them.
    pub fn thumbnails(&self) -> Option<&[f32]> {
        self.thumbnails.as_deref()
    }

    /// Returns the pixels of one image, `[3, height, width]`.
    pub fn image(&self, index: usize) -> &[f32] {
        let size = 3 * self.width * self.height;
        &self.pixels[index * size..(index + 1) * size]
    }

    /// Stacks the images at `indices` into a tensor `[indices.len(), 3, height, width]`.
    pub fn batch(&self, indices: &[usize], device: &Device) -> Tensor<4> {
        let mut values = Vec::with_capacity(indices.len() * 3 * self.width * self.height);
        for &index in indices {
            values.extend_from_slice(self.image(index));
        }
        let shape = [indices.len(), 3, self.height, self.width];
        Tensor::from_data(TensorData::new(values, shape), device)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefetch_keeps_order_and_overlaps() {
        let main = std::thread::current().id();
        let mut seen = Vec::new();
        prefetch(
            0..20,
            |item| {
                assert_ne!(
                    std::thread::current().id(),
                    main,
                    "produced on a second thread"
                );
                Ok(item * 10)
            },
            |value| {
                seen.push(value);
                Ok(())
            },
        )
        .unwrap();
        assert_eq!(seen, (0..20).map(|item| item * 10).collect::<Vec<_>>());
    }

    #[test]
    fn prefetch_stops_at_first_error() {
        let produced = std::sync::atomic::AtomicUsize::new(0);
        let missing = |item: usize| Error::NoImages {
            path: PathBuf::from(format!("folder-{item}")),
        };
        let mut consumed = Vec::new();
        let error = prefetch(
            0..1000,
            |item| {
                produced.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                if item == 3 {
                    Err(missing(item))
                } else {
                    Ok(item)
                }
            },
            |item| {
                consumed.push(item);
                Ok(())
            },
        )
        .unwrap_err();
        assert!(error.to_string().contains("folder-3"), "{error}");
        assert_eq!(consumed, [0, 1, 2]);
        assert_eq!(produced.load(std::sync::atomic::Ordering::SeqCst), 4);

        // The consumer fails on its second item, and the producer stops within the channel's
        // slack.
        produced.store(0, std::sync::atomic::Ordering::SeqCst);
        let error = prefetch(
            0..1000,
            |item| {
                produced.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                Ok(item)
            },
            |item| {
                if item == 1 {
                    Err(missing(item))
                } else {
                    Ok(())
                }
            },
        )
        .unwrap_err();
        assert!(error.to_string().contains("folder-1"), "{error}");
        assert!(produced.load(std::sync::atomic::Ordering::SeqCst) <= 5);
    }

    fn write_png(path: &Path, width: u32, height: u32, grey: bool) {
        if grey {
            image::GrayImage::from_fn(width, height, |x, _| image::Luma([(x * 255 / width) as u8]))
                .save(path)
                .unwrap();
        } else {
            image::RgbImage::from_fn(width, height, |x, y| {
                image::Rgb([(x % 256) as u8, (y % 256) as u8, 128])
            })
            .save(path)
            .unwrap();
        }
    }

    #[test]
    fn missing_folder_names_path() {
        let error = list_images(Path::new("/nonexistent/allday/day")).unwrap_err();
        assert!(matches!(error, Error::MissingFolder { .. }));
        assert!(
            error.to_string().contains("/nonexistent/allday/day"),
            "{error}"
        );
    }

    #[test]
    fn empty_folder_rejected() {
        let folder = tempfile::tempdir().unwrap();
        std::fs::write(folder.path().join("notes.txt"), "not an image").unwrap();
        let error = list_images(folder.path()).unwrap_err();
        assert!(matches!(error, Error::NoImages { .. }), "{error}");
    }

    #[test]
    fn unreadable_image_names_path() {
        let folder = tempfile::tempdir().unwrap();
        let path = folder.path().join("broken.jpg");
        std::fs::write(&path, b"this is text, not a JPEG").unwrap();
        let error = load_image(&path, 8, 8, DEFAULT_MAX_IMAGE_PIXELS).unwrap_err();
        assert!(matches!(error, Error::Image { .. }), "{error}");
        assert!(error.to_string().contains("broken.jpg"), "{error}");
    }

    #[test]
    fn exif_orientation_applied() {
        // A 4×2 JPEG whose EXIF orientation 6 means "rotate 90° clockwise to display".
        let folder = tempfile::tempdir().unwrap();
        let path = folder.path().join("rotated.jpg");
        let image = image::RgbImage::from_pixel(4, 2, image::Rgb([200, 200, 200]));
        let mut jpeg = Vec::new();
        image::codecs::jpeg::JpegEncoder::new(&mut jpeg)
            .encode_image(&image)
            .unwrap();
        // APP1 segment: "Exif\0\0", little-endian TIFF header, one IFD entry 0x0112 = 6.
        let tiff: [u8; 26] = [
            b'I', b'I', 42, 0, 8, 0, 0, 0, 1, 0, 0x12, 0x01, 3, 0, 1, 0, 0, 0, 6, 0, 0, 0, 0, 0, 0,
            0,
        ];
        let mut app1 = b"Exif\0\0".to_vec();
        app1.extend_from_slice(&tiff);
        let length = (app1.len() + 2) as u16;
        let mut file = vec![0xFF, 0xD8, 0xFF, 0xE1];
        file.extend_from_slice(&length.to_be_bytes());
        file.extend_from_slice(&app1);
        file.extend_from_slice(&jpeg[2..]);
        std::fs::write(&path, file).unwrap();

        let decoded = decode_image(&path, DEFAULT_MAX_IMAGE_PIXELS).unwrap();
        assert_eq!((decoded.width(), decoded.height()), (2, 4));
    }

    #[test]
    fn oversized_header_rejected_before_decoding() {
        // A PNG header declaring 60000×60000 pixels, with no pixel data behind it.
        let folder = tempfile::tempdir().unwrap();
        let path = folder.path().join("bomb.png");
        let mut png = b"\x89PNG\r\n\x1a\n".to_vec();
        let mut ihdr = b"IHDR".to_vec();
        ihdr.extend_from_slice(&60000u32.to_be_bytes());
        ihdr.extend_from_slice(&60000u32.to_be_bytes());
        ihdr.extend_from_slice(&[8, 2, 0, 0, 0]);
        png.extend_from_slice(&13u32.to_be_bytes());
        png.extend_from_slice(&ihdr);
        png.extend_from_slice(&crc32(&ihdr).to_be_bytes());
        // An empty IDAT chunk: decoders read the header up to the first image data chunk.
        png.extend_from_slice(&0u32.to_be_bytes());
        png.extend_from_slice(b"IDAT");
        png.extend_from_slice(&crc32(b"IDAT").to_be_bytes());
        std::fs::write(&path, png).unwrap();

        let error = decode_image(&path, DEFAULT_MAX_IMAGE_PIXELS).unwrap_err();
        assert!(
            matches!(error, Error::ImageTooLarge { width: 60000, .. }),
            "{error}"
        );
        assert!(error.to_string().contains("bomb.png"), "{error}");
    }

    /// CRC-32 (IEEE) of a PNG chunk's type and data.
    fn crc32(bytes: &[u8]) -> u32 {
        let mut crc = 0xFFFF_FFFFu32;
        for &byte in bytes {
            crc ^= u32::from(byte);
            for _ in 0..8 {
                crc = if crc & 1 == 1 {
                    (crc >> 1) ^ 0xEDB8_8320
                } else {
                    crc >> 1
                };
            }
        }
        !crc
    }

    #[test]
    fn images_sorted_by_name_with_frames() {
        let folder = tempfile::tempdir().unwrap();
        for name in ["b.png", "a.png", "c.PNG"] {
            write_png(&folder.path().join(name), 8, 8, false);
        }
        let names: Vec<_> = list_images(folder.path())
            .unwrap()
            .iter()
            .map(|path| path.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names, ["a.png", "b.png", "c.PNG"]);
    }

    #[test]
    fn resize_keeps_aspect_and_crops_centre() {
        let folder = tempfile::tempdir().unwrap();
        let path = folder.path().join("wide.png");
        // A 40×10 horizontal grey ramp. Scaled by 0.8 to 32×8, the centre 8×8 crop shows the
        // middle quarter of the ramp.
        write_png(&path, 40, 10, true);
        let pixels = load_image(&path, 8, 8, DEFAULT_MAX_IMAGE_PIXELS).unwrap();
        assert_eq!(pixels.len(), 3 * 8 * 8);
        let first = pixels[0];
        let last = pixels[7];
        assert!(first > 0.3, "left edge {first}");
        assert!(first < 0.5, "left edge {first}");
        assert!(last > 0.5, "right edge {last}");
        assert!(last < 0.7, "right edge {last}");
        // Grey input gives equal channels.
        assert_eq!(pixels[0], pixels[64]);
        assert_eq!(pixels[0], pixels[128]);
    }

    #[test]
    fn thumbnails_from_the_same_decode_match_the_pixel_baseline() {
        let folder = tempfile::tempdir().unwrap();
        for index in 0..3u32 {
            image::RgbImage::from_fn(96, 60, |x, y| {
                image::Rgb([
                    (x * 2 + index * 40) as u8,
                    (y * 3) as u8,
                    ((x ^ y) * 5) as u8,
                ])
            })
            .save(folder.path().join(format!("{index:03}.png")))
            .unwrap();
        }
        let folders = [folder.path().to_path_buf()];
        let places = PlaceRange { start: 0, end: 3 };
        let options = LoadOptions::default();
        let plain = ImageSet::load(&folders, places, 16, 12, options).unwrap();
        assert!(plain.thumbnails().is_none());
        let set = ImageSet::load_with_thumbnails(&folders, places, 16, 12, options).unwrap();
        assert_eq!(set.pixels, plain.pixels);

        let thumbnails = set.thumbnails().unwrap();
        let size = 32 * 24;
        assert_eq!(thumbnails.len(), 3 * size);
        for (index, entry) in set.entries.iter().enumerate() {
            let expected =
                crate::baseline::pixel_descriptor(&entry.path, DEFAULT_MAX_IMAGE_PIXELS).unwrap();
            assert_eq!(&thumbnails[index * size..(index + 1) * size], &expected[..]);
            assert!(expected.iter().any(|value| value.abs() > 0.5));
        }
    }

    #[test]
    fn entry_that_is_no_file_keeps_frames() {
        let folder = tempfile::tempdir().unwrap();
        write_png(&folder.path().join("000.png"), 8, 4, false);
        std::fs::create_dir(folder.path().join("001.jpg")).unwrap();
        write_png(&folder.path().join("002.png"), 8, 4, false);
        let folders = [folder.path().to_path_buf()];
        let places = PlaceRange { start: 0, end: 3 };

        assert_eq!(list_images(folder.path()).unwrap().len(), 3);
        let error = ImageSet::load(&folders, places, 4, 4, LoadOptions::default()).unwrap_err();
        assert!(error.to_string().contains("001.jpg"), "{error}");

        let skip = LoadOptions {
            unreadable: UnreadableImages::Skip,
            ..LoadOptions::default()
        };
        let set = ImageSet::load(&folders, places, 4, 4, skip).unwrap();
        let frames: Vec<_> = set.entries.iter().map(|entry| entry.frame).collect();
        assert_eq!(frames, [0, 2]);
    }

    #[test]
    fn place_range_selects_frames() {
        let folder = tempfile::tempdir().unwrap();
        for index in 0..5 {
            write_png(&folder.path().join(format!("{index:03}.png")), 8, 4, false);
        }
        let set = ImageSet::load(
            &[folder.path().to_path_buf()],
            PlaceRange { start: 1, end: 3 },
            4,
            4,
            LoadOptions::default(),
        )
        .unwrap();
        let frames: Vec<_> = set.entries.iter().map(|entry| entry.frame).collect();
        assert_eq!(frames, [1, 2]);
        let batch = set.batch(&[1, 0], &Device::flex());
        assert_eq!(batch.dims(), [2, 3, 4, 4]);

        let error = ImageSet::load(
            &[folder.path().to_path_buf()],
            PlaceRange { start: 0, end: 9 },
            4,
            4,
            LoadOptions::default(),
        )
        .unwrap_err();
        assert!(
            matches!(error, Error::PlacesOutOfRange { available: 5, .. }),
            "{error}"
        );
    }
}
