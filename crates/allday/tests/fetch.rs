//! Downloading and unpacking a dataset from a local HTTP server on 127.0.0.1: a complete
//! archive, a second call that downloads nothing, and archives or transfers that fail and must
//! leave nothing behind.

#![cfg(feature = "fetch")]

use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use allday::Error;
use allday::fetch::{DatasetSpec, FetchOutcome, fetch};

const FOLDERS: [&str; 3] = ["day_left", "day_right", "night_right"];

fn spec(images: usize) -> DatasetSpec {
    DatasetSpec {
        images_per_folder: images,
        ..DatasetSpec::gardens_point()
    }
}

/// Serves `body` to every request; with `cut_at`, announces the full length but closes the
/// connection after that many bytes. Returns the URL and the request counter.
fn serve(body: Vec<u8>, status: &'static str, cut_at: Option<usize>) -> (String, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let address = listener.local_addr().unwrap();
    let requests = Arc::new(AtomicUsize::new(0));
    let counter = requests.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut request = Vec::new();
            let mut byte = [0u8; 1];
            while !request.ends_with(b"\r\n\r\n") && stream.read(&mut byte).unwrap_or(0) == 1 {
                request.push(byte[0]);
            }
            counter.fetch_add(1, Ordering::SeqCst);
            let header = format!(
                "HTTP/1.1 {status}\r\nContent-Length: {}\r\nContent-Type: application/zip\r\nConnection: close\r\n\r\n",
                body.len()
            );
            let _ = stream.write_all(header.as_bytes());
            let end = cut_at.unwrap_or(body.len());
            let _ = stream.write_all(&body[..end]);
            let _ = stream.flush();
            // Dropping the stream closes the connection, mid-body when cut.
        }
    });
    (
        format!("http://{address}/GardensPoint_Walking.zip"),
        requests,
    )
}

/// A zip of the dataset's layout under a top folder, `images` tiny PNGs per folder, plus a
/// file outside the folders.
fn dataset_zip(folders: &[&str], images: usize) -> Vec<u8> {
    let mut zip = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let options =
        zip::write::FileOptions::default().compression_method(zip::CompressionMethod::Deflated);
    zip.add_directory("GardensPoint/", options).unwrap();
    zip.start_file("GardensPoint/README.txt", options).unwrap();
    zip.write_all(b"tiny copy for tests").unwrap();
    for folder in folders {
        zip.add_directory(format!("GardensPoint/{folder}/"), options)
            .unwrap();
        for index in 0..images {
            let image = image::RgbImage::from_fn(8, 6, |x, y| {
                image::Rgb([(x * 30) as u8, (y * 40) as u8, (index * 50) as u8])
            });
            let mut png = Vec::new();
            image
                .write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png)
                .unwrap();
            zip.start_file(
                format!("GardensPoint/{folder}/Image{index:03}.png"),
                options,
            )
            .unwrap();
            zip.write_all(&png).unwrap();
        }
    }
    zip.finish().unwrap().into_inner()
}

/// Names in `folder`, sorted.
fn listing(folder: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(folder)
        .unwrap()
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

#[test]
fn complete_archive_unpacks_once() {
    let folder = tempfile::tempdir().unwrap();
    let target = folder.path().join("gardens_point");
    let (url, requests) = serve(dataset_zip(&FOLDERS, 3), "200 OK", None);

    let outcome = fetch(&target, &url, &spec(3), false).unwrap();
    assert!(
        matches!(outcome, FetchOutcome::Downloaded { bytes } if bytes > 0),
        "{outcome:?}"
    );
    assert_eq!(
        listing(&target),
        ["README.txt", "day_left", "day_right", "night_right"]
    );
    for name in FOLDERS {
        assert_eq!(
            listing(&target.join(name)),
            ["Image000.png", "Image001.png", "Image002.png"]
        );
    }
    // No temporary archive or folder is left beside the target.
    assert_eq!(listing(folder.path()), ["gardens_point"]);

    let outcome = fetch(&target, &url, &spec(3), false).unwrap();
    assert_eq!(outcome, FetchOutcome::AlreadyPresent);
    assert_eq!(
        requests.load(Ordering::SeqCst),
        1,
        "the second call downloaded again"
    );
}

/// Runs a fetch that must fail and checks that the folder it was given contains nothing new.
fn assert_fails_cleanly(url: &str, spec: &DatasetSpec) -> Error {
    let folder = tempfile::tempdir().unwrap();
    let target = folder.path().join("gardens_point");
    let error = fetch(&target, url, spec, false).unwrap_err();
    assert!(
        listing(folder.path()).is_empty(),
        "left behind: {:?} after {error}",
        listing(folder.path())
    );
    error
}

#[test]
fn corrupt_archive_leaves_nothing() {
    let garbage: Vec<u8> = (0..5000u32).map(|i| (i * 7919 % 251) as u8).collect();
    let (url, _) = serve(garbage, "200 OK", None);
    let error = assert_fails_cleanly(&url, &spec(3));
    assert!(matches!(error, Error::Archive { .. }), "{error}");
    assert!(error.to_string().contains("not a readable zip"), "{error}");
}

#[test]
fn damaged_entry_fails_its_checksum() {
    let mut archive = dataset_zip(&FOLDERS, 3);
    // Flip bytes inside the data of the last image, before the central directory.
    let last = archive
        .windows(b"night_right/Image002.png".len())
        .position(|window| window == b"night_right/Image002.png")
        .unwrap();
    for byte in &mut archive[last + 40..last + 60] {
        *byte ^= 0x5A;
    }
    let (url, _) = serve(archive, "200 OK", None);
    let error = assert_fails_cleanly(&url, &spec(3));
    assert!(matches!(error, Error::Archive { .. }), "{error}");
}

#[test]
fn interrupted_download_leaves_nothing() {
    let archive = dataset_zip(&FOLDERS, 3);
    let half = archive.len() / 2;
    let (url, _) = serve(archive, "200 OK", Some(half));
    let error = assert_fails_cleanly(&url, &spec(3));
    assert!(matches!(error, Error::Download { .. }), "{error}");
}

#[test]
fn missing_folder_or_images_rejected() {
    let (url, _) = serve(dataset_zip(&FOLDERS[..2], 3), "200 OK", None);
    let error = assert_fails_cleanly(&url, &spec(3));
    assert!(error.to_string().contains("night_right"), "{error}");

    let (url, _) = serve(dataset_zip(&FOLDERS, 3), "200 OK", None);
    let error = assert_fails_cleanly(&url, &spec(4));
    assert!(
        error.to_string().contains("holds 3 images, expected 4"),
        "{error}"
    );
}

#[test]
fn server_error_reported() {
    let (url, _) = serve(b"no such file".to_vec(), "404 Not Found", None);
    let error = assert_fails_cleanly(&url, &spec(3));
    assert!(error.to_string().contains("404"), "{error}");
}

#[test]
fn incomplete_folder_of_the_user_kept() {
    let folder = tempfile::tempdir().unwrap();
    let target = folder.path().join("gardens_point");
    std::fs::create_dir_all(target.join("day_left")).unwrap();
    std::fs::write(target.join("notes.txt"), "mine").unwrap();
    let (url, requests) = serve(dataset_zip(&FOLDERS, 3), "200 OK", None);
    let error = fetch(&target, &url, &spec(3), false).unwrap_err();
    assert!(matches!(error, Error::IncompleteDataset { .. }), "{error}");
    assert_eq!(
        std::fs::read_to_string(target.join("notes.txt")).unwrap(),
        "mine"
    );
    assert_eq!(requests.load(Ordering::SeqCst), 0);
}
