//! A PNG of search results: each query beside its nearest database images, with the distance
//! under each thumbnail and, when the ground truth is known, a green border on true matches and
//! a red one on false matches.
//!
//! Text is drawn with plotters in DejaVu Sans compiled into the binary (as in [`crate::plot`]),
//! so the grid renders the same on machines without system fonts.

use std::path::{Path, PathBuf};

use image::{Rgb, RgbImage};
use plotters::prelude::*;

use crate::error::{Error, Result};
use crate::plot::{FAMILY, register_font};

/// Space between tiles and around the grid, in pixels.
const GUTTER: u32 = 8;
/// Extra space between the query column and the matches, in pixels.
const QUERY_GAP: u32 = 12;
/// Height of the text line under each tile, in pixels.
const LABEL_HEIGHT: u32 = 18;
/// Width of the border that marks a true or false match, in pixels (drawn over the tile).
const BORDER: u32 = 3;
const WHITE_PIXEL: Rgb<u8> = Rgb([255, 255, 255]);
const TRUE_MATCH: Rgb<u8> = Rgb([0, 170, 0]);
const FALSE_MATCH: Rgb<u8> = Rgb([220, 0, 0]);
const QUERY_FRAME: Rgb<u8> = Rgb([40, 80, 220]);

/// One database image shown for a query.
#[derive(Debug, Clone, PartialEq)]
pub struct GridMatch {
    pub path: PathBuf,
    pub distance: f32,
    /// Whether it is a true match; `None` when no ground truth is given (no border).
    pub correct: Option<bool>,
}

/// One row of the grid: a query and its matches, nearest first.
#[derive(Debug, Clone, PartialEq)]
pub struct GridRow {
    pub query: PathBuf,
    pub matches: Vec<GridMatch>,
}

/// Pixel size of a grid of `rows` queries with `columns` matches each and tiles of
/// `tile_width`×`tile_height`.
pub fn grid_size(rows: usize, columns: usize, tile_width: u32, tile_height: u32) -> (u32, u32) {
    let width = GUTTER + (columns as u32 + 1) * (tile_width + GUTTER) + QUERY_GAP;
    let height = GUTTER + rows as u32 * (tile_height + LABEL_HEIGHT + GUTTER);
    (width, height)
}

/// Loads a thumbnail the way the network receives images: resized to cover the tile and centre
/// cropped.
fn thumbnail(path: &Path, width: u32, height: u32, max_pixels: u64) -> Result<RgbImage> {
    let (w, h) = (width as usize, height as usize);
    let pixels = crate::data::load_image(path, w, h, max_pixels)?;
    let plane = w * h;
    Ok(RgbImage::from_fn(width, height, |x, y| {
        let offset = y as usize * w + x as usize;
        let channel = |c: usize| (pixels[c * plane + offset] * 255.0).round() as u8;
        Rgb([channel(0), channel(1), channel(2)])
    }))
}

/// Draws a rectangle outline of `BORDER` pixels inside the tile at (`x`, `y`).
fn draw_border(grid: &mut RgbImage, x: u32, y: u32, width: u32, height: u32, colour: Rgb<u8>) {
    for dy in 0..height {
        for dx in 0..width {
            let inside = dx >= BORDER
                && dy >= BORDER
                && dx < width.saturating_sub(BORDER)
                && dy < height.saturating_sub(BORDER);
            if !inside {
                grid.put_pixel(x + dx, y + dy, colour);
            }
        }
    }
}

/// Builds the grid: one row per query, the query at the left (blue border, labelled `query`),
/// then its matches with their distances under them. Every row has `columns` match places;
/// rows with fewer matches leave them white.
pub fn match_grid(
    rows: &[GridRow],
    tile_width: u32,
    tile_height: u32,
    max_pixels: u64,
) -> Result<RgbImage> {
    let columns = rows.iter().map(|row| row.matches.len()).max().unwrap_or(0);
    let (width, height) = grid_size(rows.len(), columns, tile_width, tile_height);
    let mut grid = RgbImage::from_pixel(width, height, WHITE_PIXEL);
    let mut labels: Vec<(String, i32, i32)> = Vec::new();
    for (row_index, row) in rows.iter().enumerate() {
        let y = GUTTER + row_index as u32 * (tile_height + LABEL_HEIGHT + GUTTER);
        let label_y = (y + tile_height + 2) as i32;
        let tile = thumbnail(&row.query, tile_width, tile_height, max_pixels)?;
        image::imageops::replace(&mut grid, &tile, i64::from(GUTTER), i64::from(y));
        draw_border(&mut grid, GUTTER, y, tile_width, tile_height, QUERY_FRAME);
        labels.push(("query".into(), GUTTER as i32, label_y));
        for (column, found) in row.matches.iter().enumerate() {
            let x = GUTTER + QUERY_GAP + (column as u32 + 1) * (tile_width + GUTTER);
            let tile = thumbnail(&found.path, tile_width, tile_height, max_pixels)?;
            image::imageops::replace(&mut grid, &tile, i64::from(x), i64::from(y));
            if let Some(correct) = found.correct {
                let colour = if correct { TRUE_MATCH } else { FALSE_MATCH };
                draw_border(&mut grid, x, y, tile_width, tile_height, colour);
            }
            labels.push((
                format!("{}. {:.4}", column + 1, found.distance),
                x as i32,
                label_y,
            ));
        }
    }
    draw_labels(&mut grid, &labels)?;
    Ok(grid)
}

/// Writes each label's text with its top-left corner at the given pixel.
fn draw_labels(grid: &mut RgbImage, labels: &[(String, i32, i32)]) -> Result<()> {
    register_font();
    let (width, height) = grid.dimensions();
    let plot_error = |message: String| Error::Plot {
        chart: "search grid".into(),
        message,
    };
    let root = BitMapBackend::with_buffer(grid, (width, height)).into_drawing_area();
    let style = TextStyle::from((FAMILY, (LABEL_HEIGHT - 4) as f64).into_font()).color(&BLACK);
    for (text, x, y) in labels {
        root.draw(&Text::new(text.as_str(), (*x, *y), &style))
            .map_err(|error| plot_error(error.to_string()))?;
    }
    root.present()
        .map_err(|error| plot_error(error.to_string()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write_image(path: &Path, value: u8) {
        RgbImage::from_pixel(40, 30, Rgb([value, value, value]))
            .save(path)
            .unwrap();
    }

    #[test]
    fn grid_size_and_marks() {
        let folder = tempfile::tempdir().unwrap();
        let paths: Vec<PathBuf> = (0..3)
            .map(|index| folder.path().join(format!("{index}.png")))
            .collect();
        for (index, path) in paths.iter().enumerate() {
            write_image(path, 60 * index as u8 + 60);
        }
        let found = |index: usize, correct| GridMatch {
            path: paths[index].clone(),
            distance: 0.25 * index as f32,
            correct,
        };
        let rows = [
            GridRow {
                query: paths[0].clone(),
                matches: vec![found(1, Some(true)), found(2, Some(false))],
            },
            GridRow {
                query: paths[1].clone(),
                matches: vec![found(0, None)],
            },
        ];
        let grid = match_grid(&rows, 64, 48, u64::MAX).unwrap();
        // Two rows, the query column and two match columns.
        assert_eq!(grid.dimensions(), grid_size(2, 2, 64, 48));
        assert_eq!(
            grid.dimensions(),
            (8 + 3 * (64 + 8) + 12, 8 + 2 * (48 + 18 + 8))
        );
        let first_match_x = GUTTER + QUERY_GAP + 64 + GUTTER;
        let second_match_x = first_match_x + 64 + GUTTER;
        assert_eq!(grid.get_pixel(first_match_x, GUTTER), &TRUE_MATCH);
        assert_eq!(grid.get_pixel(second_match_x, GUTTER), &FALSE_MATCH);
        assert_eq!(grid.get_pixel(GUTTER, GUTTER), &QUERY_FRAME);
        // Inside the border the thumbnail shows the image (grey 120 for image 1).
        assert_eq!(
            grid.get_pixel(first_match_x + 20, GUTTER + 20),
            &Rgb([120, 120, 120])
        );
        // Without ground truth there is no border: the corner is the image itself.
        let row_two = GUTTER + 48 + 18 + GUTTER;
        assert_eq!(grid.get_pixel(first_match_x, row_two), &Rgb([60, 60, 60]));
        // The second row has one match, so its second match place stays white.
        assert_eq!(
            grid.get_pixel(second_match_x + 20, row_two + 20),
            &WHITE_PIXEL
        );
        // Text was drawn under the first tile: some pixel of the label line is dark.
        let label_dark = (GUTTER..GUTTER + 64)
            .any(|x| (GUTTER + 48..GUTTER + 48 + 18).any(|y| grid.get_pixel(x, y)[0] < 100));
        assert!(label_dark, "no text under the query tile");
    }
}
