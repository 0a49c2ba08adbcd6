//! Broken and unusual image files, made by the tests: each loads, or fails with an error that
//! names the file, and the skip policy leaves out exactly the broken ones.

use std::io::Cursor;
use std::path::Path;

use allday::config::PlaceRange;
use allday::data::{DEFAULT_MAX_IMAGE_PIXELS, ImageSet, LoadOptions, UnreadableImages, load_image};

fn jpeg_bytes(width: u32, height: u32) -> Vec<u8> {
    let image = image::RgbImage::from_fn(width, height, |x, y| {
        image::Rgb([(x * 7) as u8, (y * 5) as u8, 90])
    });
    let mut bytes = Vec::new();
    image
        .write_to(&mut Cursor::new(&mut bytes), image::ImageFormat::Jpeg)
        .unwrap();
    bytes
}

/// An 8×8 CMYK JPEG (Adobe APP14 marker) of pure red, as Pillow 13.0 writes it, in hex.
const CMYK_JPEG_HEX: [&str; 8] = [
    "ffd8ffee000e41646f626500640000000000ffdb0043000302020302020303030304030304050805050404050a070706",
    "080c0a0c0c0b0a0b0b0d0e12100d0e110e0b0b1016101113141515150c0f171816141812141514ffc000140800080008",
    "044311004d11005911004b1100ffc4001f0000010501010101010100000000000000000102030405060708090a0bffc4",
    "00b5100002010303020403050504040000017d01020300041105122131410613516107227114328191a1082342b1c115",
    "52d1f02433627282090a161718191a25262728292a3435363738393a434445464748494a535455565758595a63646566",
    "6768696a737475767778797a838485868788898a92939495969798999aa2a3a4a5a6a7a8a9aab2b3b4b5b6b7b8b9bac2",
    "c3c4c5c6c7c8c9cad2d3d4d5d6d7d8d9dae1e2e3e4e5e6e7e8e9eaf1f2f3f4f5f6f7f8f9faffda000e0443004d005900",
    "4b00003f00fd53afcaaafcaaafd53affd9",
];

fn cmyk_jpeg_bytes() -> Vec<u8> {
    let hex: String = CMYK_JPEG_HEX.concat();
    (0..hex.len())
        .step_by(2)
        .map(|index| u8::from_str_radix(&hex[index..index + 2], 16).unwrap())
        .collect()
}

fn png_bytes(image: image::DynamicImage) -> Vec<u8> {
    let mut bytes = Vec::new();
    image
        .write_to(&mut Cursor::new(&mut bytes), image::ImageFormat::Png)
        .unwrap();
    bytes
}

/// Writes the corpus into `folder`; returns the file names that must fail to load.
fn write_corpus(folder: &Path) -> Vec<&'static str> {
    let good_jpeg = jpeg_bytes(40, 30);
    let good_png = png_bytes(image::DynamicImage::ImageRgb8(image::RgbImage::new(40, 30)));
    let files: Vec<(&str, Vec<u8>)> = vec![
        ("00_good.jpg", good_jpeg.clone()),
        ("01_zero_bytes.png", Vec::new()),
        (
            "02_truncated.jpg",
            good_jpeg[..good_jpeg.len() / 2].to_vec(),
        ),
        ("03_truncated.png", good_png[..good_png.len() / 2].to_vec()),
        ("04_text.jpg", b"this is a text file".to_vec()),
        (
            "05_sixteen_bit.png",
            png_bytes(image::DynamicImage::ImageRgb16(
                image::ImageBuffer::from_pixel(40, 30, image::Rgb([60000u16, 100, 30000])),
            )),
        ),
        (
            "06_grey_alpha.png",
            png_bytes(image::DynamicImage::ImageLumaA8(
                image::ImageBuffer::from_pixel(40, 30, image::LumaA([128u8, 20])),
            )),
        ),
        (
            "07_one_pixel.png",
            png_bytes(image::DynamicImage::ImageRgb8(image::RgbImage::from_pixel(
                1,
                1,
                image::Rgb([255, 0, 0]),
            ))),
        ),
        ("08_png_named_jpg.jpg", good_png.clone()),
        ("09_cmyk.jpg", cmyk_jpeg_bytes()),
    ];
    for (name, bytes) in &files {
        std::fs::write(folder.join(name), bytes).unwrap();
    }
    vec![
        "01_zero_bytes.png",
        "02_truncated.jpg",
        "03_truncated.png",
        "04_text.jpg",
    ]
}

#[test]
fn each_file_loads_or_names_itself() {
    let folder = tempfile::tempdir().unwrap();
    let broken = write_corpus(folder.path());
    let mut names: Vec<_> = std::fs::read_dir(folder.path())
        .unwrap()
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    for name in names {
        let result = load_image(&folder.path().join(&name), 8, 8, DEFAULT_MAX_IMAGE_PIXELS);
        if broken.contains(&name.as_str()) {
            let error = result.expect_err(&name);
            assert!(error.to_string().contains(&name), "{name}: {error}");
        } else {
            let pixels = result.unwrap_or_else(|error| panic!("{name}: {error}"));
            assert_eq!(pixels.len(), 3 * 8 * 8, "{name}");
        }
    }
}

#[test]
fn one_pixel_image_fills_the_target() {
    let folder = tempfile::tempdir().unwrap();
    write_corpus(folder.path());
    let pixels = load_image(
        &folder.path().join("07_one_pixel.png"),
        8,
        8,
        DEFAULT_MAX_IMAGE_PIXELS,
    )
    .unwrap();
    // Red everywhere: channel 0 is 1, channels 1 and 2 are 0.
    assert!(pixels[..64].iter().all(|&value| value == 1.0));
    assert!(pixels[64..].iter().all(|&value| value == 0.0));
}

#[test]
fn cmyk_jpeg_decodes_to_rgb() {
    let folder = tempfile::tempdir().unwrap();
    write_corpus(folder.path());
    let pixels = load_image(
        &folder.path().join("09_cmyk.jpg"),
        8,
        8,
        DEFAULT_MAX_IMAGE_PIXELS,
    )
    .unwrap();
    let (red, green, blue) = (pixels[0], pixels[64], pixels[128]);
    assert!(red > 0.9, "red {red}");
    assert!(green < 0.1, "green {green}");
    assert!(blue < 0.1, "blue {blue}");
}

#[test]
fn skip_policy_leaves_out_broken_files() {
    let folder = tempfile::tempdir().unwrap();
    let broken = write_corpus(folder.path());
    let places = PlaceRange { start: 0, end: 10 };
    let stop = LoadOptions::default();
    let skip = LoadOptions {
        unreadable: UnreadableImages::Skip,
        ..LoadOptions::default()
    };
    let folders = [folder.path().to_path_buf()];

    let error = ImageSet::load(&folders, places, 8, 8, stop).unwrap_err();
    assert!(error.to_string().contains("01_zero_bytes.png"), "{error}");

    let set = ImageSet::load(&folders, places, 8, 8, skip).unwrap();
    assert_eq!(set.len(), 10 - broken.len());
    // Frame indices are positions in the folder listing, kept for the files that remain.
    let frames: Vec<_> = set.entries.iter().map(|entry| entry.frame).collect();
    assert_eq!(frames, [0, 5, 6, 7, 8, 9]);
}

#[test]
fn size_limit_is_configurable() {
    let folder = tempfile::tempdir().unwrap();
    write_corpus(folder.path());
    let path = folder.path().join("00_good.jpg");
    // 40×30 = 1200 pixels.
    assert!(load_image(&path, 8, 8, 1200).is_ok());
    let error = load_image(&path, 8, 8, 1199).unwrap_err();
    assert!(
        error.to_string().contains("above the limit of 1199 pixels"),
        "{error}"
    );
}

#[test]
fn skip_policy_with_nothing_readable_fails() {
    let folder = tempfile::tempdir().unwrap();
    std::fs::write(folder.path().join("a.jpg"), b"text").unwrap();
    std::fs::write(folder.path().join("b.png"), b"").unwrap();
    let error = ImageSet::load(
        &[folder.path().to_path_buf()],
        PlaceRange { start: 0, end: 2 },
        8,
        8,
        LoadOptions {
            unreadable: UnreadableImages::Skip,
            ..LoadOptions::default()
        },
    )
    .unwrap_err();
    assert!(
        error.to_string().contains("none of the 2 images"),
        "{error}"
    );
}
