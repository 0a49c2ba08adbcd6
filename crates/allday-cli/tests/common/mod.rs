//! Helpers shared by the CLI tests: running the `allday` binary and writing a tiny dataset.

// Each test file compiles this module on its own and uses only some of the helpers.
#![allow(dead_code)]

use std::path::Path;
use std::process::{Command, Output};

pub fn allday(args: &[&str], dir: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_allday"))
        .args(args)
        .current_dir(dir)
        .env("RUST_LOG", "warn")
        .output()
        .expect("the allday binary runs")
}

pub fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

pub fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// Writes 12 day and 12 night images of 24×16 pixels; frame i shows pattern i in both.
pub fn write_dataset(root: &Path) {
    for (folder, night) in [("day", false), ("night", true)] {
        let folder = root.join(folder);
        std::fs::create_dir_all(&folder).unwrap();
        for place in 0..12u32 {
            let image = image::RgbImage::from_fn(24, 16, |x, y| {
                let on = ((x + 2 * place) / 3 + y / 4) % 2 == 0;
                let value = match (on, night) {
                    (true, false) => 220,
                    (false, false) => 40,
                    (true, true) => 90,
                    (false, true) => 10,
                };
                image::Rgb([value, value, if night { value } else { 128 }])
            });
            image.save(folder.join(format!("{place:02}.jpg"))).unwrap();
        }
    }
}
