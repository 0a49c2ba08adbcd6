//! PNG charts: loss curves, bar charts and colour-mapped grids, drawn with plotters.
//!
//! Text uses DejaVu Sans compiled into the binary (licence in `assets/fonts`), so charts render
//! the same on machines without system fonts.

use std::sync::Once;

use image::RgbImage;
use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::colors::colormaps::ViridisRGB;

use crate::error::{Error, Result};

const FONT: &[u8] = include_bytes!("../assets/fonts/DejaVuSans.ttf");
/// Font family name under which the embedded font is registered with plotters.
pub(crate) const FAMILY: &str = "sans-serif";

/// Registers the embedded font under the family name the charts ask for.
pub(crate) fn register_font() {
    static REGISTER: Once = Once::new();
    REGISTER.call_once(|| {
        if plotters::style::register_font(FAMILY, FontStyle::Normal, FONT).is_err() {
            tracing::warn!("the embedded chart font could not be read; charts will lack text");
        }
    });
}

/// One named line of a line chart.
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    pub label: String,
    pub points: Vec<(f64, f64)>,
}

/// Draws on a white `width`×`height` canvas and returns the pixels.
fn render(
    chart: &str,
    width: u32,
    height: u32,
    draw: impl FnOnce(&DrawingArea<BitMapBackend<'_>, Shift>) -> Result<()>,
) -> Result<RgbImage> {
    register_font();
    let mut buffer = vec![0u8; width as usize * height as usize * 3];
    {
        let root = BitMapBackend::with_buffer(&mut buffer, (width, height)).into_drawing_area();
        root.fill(&WHITE).map_err(bitmap_error(chart))?;
        draw(&root)?;
        root.present().map_err(bitmap_error(chart))?;
    }
    Ok(RgbImage::from_raw(width, height, buffer)
        .expect("the buffer holds width × height × 3 bytes"))
}

/// Maps a bitmap backend's drawing error into ours, keeping its message.
fn bitmap_error<E: std::error::Error + Send + Sync>(
    chart: &str,
) -> impl Fn(DrawingAreaErrorKind<E>) -> Error + '_ {
    move |error| Error::Plot {
        chart: chart.to_string(),
        message: error.to_string(),
    }
}

/// Returns (min, max) of the finite `values`, widened when they are all equal so that an axis
/// can span them. Without any finite value it returns (0, 1).
fn finite_range(values: impl Iterator<Item = f64>) -> (f64, f64) {
    let (low, high) = values
        .filter(|value| value.is_finite())
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(low, high), value| {
            (low.min(value), high.max(value))
        });
    if !low.is_finite() {
        return (0.0, 1.0);
    }
    if high - low < 1e-12 {
        let pad = low.abs().max(1.0) * 0.05;
        return (low - pad, high + pad);
    }
    (low, high)
}

/// Draws one line per series, with a legend, as a `width`×`height` image.
pub fn line_chart(
    title: &str,
    x_label: &str,
    y_label: &str,
    series: &[Series],
    (width, height): (u32, u32),
) -> Result<RgbImage> {
    render(title, width, height, |root| {
        let error = bitmap_error(title);
        let points = || series.iter().flat_map(|line| line.points.iter());
        let (x_min, x_max) = finite_range(points().map(|point| point.0));
        let (y_min, y_max) = finite_range(points().map(|point| point.1));
        let y_pad = (y_max - y_min) * 0.05;
        let mut chart = ChartBuilder::on(root)
            .caption(title, (FAMILY, 22))
            .margin(14)
            .x_label_area_size(44)
            .y_label_area_size(64)
            .build_cartesian_2d(x_min..x_max, (y_min - y_pad)..(y_max + y_pad))
            .map_err(&error)?;
        chart
            .configure_mesh()
            .x_desc(x_label)
            .y_desc(y_label)
            .label_style((FAMILY, 14))
            .axis_desc_style((FAMILY, 16))
            .draw()
            .map_err(&error)?;
        for (index, line) in series.iter().enumerate() {
            let color = Palette99::pick(index).to_rgba();
            let finite = line
                .points
                .iter()
                .copied()
                .filter(|(x, y)| x.is_finite() && y.is_finite());
            chart
                .draw_series(LineSeries::new(finite, color.stroke_width(2)))
                .map_err(&error)?
                .label(line.label.as_str())
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color));
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperRight)
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK)
            .label_font((FAMILY, 14))
            .draw()
            .map_err(&error)?;
        Ok(())
    })
}

/// Draws `bars` (label, value) in the given order as a vertical bar chart; the x axis names
/// every `label_every`-th bar.
pub fn bar_chart(
    area: &DrawingArea<BitMapBackend<'_>, Shift>,
    title: &str,
    x_label: &str,
    y_label: &str,
    bars: &[(String, f64)],
    label_every: usize,
) -> Result<()> {
    let error = bitmap_error(title);
    let (low, high) = finite_range(bars.iter().map(|bar| bar.1).chain([0.0]));
    let pad = (high - low) * 0.05;
    let count = bars.len().max(1);
    // Space before the first bar, which the y axis would otherwise cover when a bar is narrower
    // than a pixel (a chart of over a thousand channels).
    let left = (count as f64 * 0.01).max(0.5);
    let mut chart = ChartBuilder::on(area)
        .caption(title, (FAMILY, 20))
        .margin(14)
        .x_label_area_size(44)
        .y_label_area_size(72)
        .build_cartesian_2d(-left..count as f64, (low - pad)..(high + pad))
        .map_err(&error)?;
    let label_every = label_every.max(1);
    chart
        .configure_mesh()
        .disable_x_mesh()
        .x_labels(count.div_ceil(label_every).min(40))
        .x_label_formatter(&|x| {
            if *x < 0.0 {
                return String::new();
            }
            let index = x.floor() as usize;
            bars.get(index)
                .filter(|_| index.is_multiple_of(label_every))
                .map(|bar| bar.0.clone())
                .unwrap_or_default()
        })
        .x_desc(x_label)
        .y_desc(y_label)
        .label_style((FAMILY, 13))
        .axis_desc_style((FAMILY, 15))
        .draw()
        .map_err(&error)?;
    chart
        .draw_series(bars.iter().enumerate().map(|(index, (_, value))| {
            let value = if value.is_finite() { *value } else { 0.0 };
            let color = if value >= 0.0 {
                Palette99::pick(0)
            } else {
                Palette99::pick(1)
            };
            Rectangle::new(
                [(index as f64 + 0.1, 0.0), (index as f64 + 0.9, value)],
                color.filled(),
            )
        }))
        .map_err(&error)?;
    Ok(())
}

/// Draws `values` as a grid of cells coloured by value (viridis, from the minimum to the
/// maximum), each cell labelled with its index, row by row.
pub fn value_grid(
    area: &DrawingArea<BitMapBackend<'_>, Shift>,
    title: &str,
    values: &[f64],
) -> Result<()> {
    let error = bitmap_error(title);
    let columns = (values.len() as f64).sqrt().ceil().max(1.0) as usize;
    let rows = values.len().div_ceil(columns).max(1);
    let (low, high) = finite_range(values.iter().copied());
    let titled = area
        .titled(
            &format!("{title} (dark {low:.3}, bright {high:.3})"),
            (FAMILY, 20),
        )
        .map_err(&error)?;
    let (width, height) = titled.dim_in_pixel();
    let cell = (width as usize / (columns + 1))
        .min(height as usize / (rows + 1))
        .max(1);
    let left = (width as usize - cell * columns) / 2;
    let font_size = (cell as f64 * 0.32).clamp(6.0, 16.0);
    for (index, value) in values.iter().enumerate() {
        let (row, column) = (index / columns, index % columns);
        let x = (left + column * cell) as i32;
        let y = (row * cell) as i32;
        let level = if value.is_finite() {
            (value - low) / (high - low)
        } else {
            0.0
        };
        let color = ViridisRGB::get_color_normalized(level, 0.0, 1.0);
        titled
            .draw(&Rectangle::new(
                [(x, y), (x + cell as i32 - 1, y + cell as i32 - 1)],
                color.filled(),
            ))
            .map_err(&error)?;
        let text_color = if level > 0.6 { BLACK } else { WHITE };
        titled
            .draw(&Text::new(
                index.to_string(),
                (x + 3, y + 3),
                (FAMILY, font_size).into_font().color(&text_color),
            ))
            .map_err(&error)?;
    }
    Ok(())
}

/// Draws into a white `width`×`height` canvas split into a top and a bottom half.
pub fn two_panels(
    chart: &str,
    (width, height): (u32, u32),
    draw: impl FnOnce(
        &DrawingArea<BitMapBackend<'_>, Shift>,
        &DrawingArea<BitMapBackend<'_>, Shift>,
    ) -> Result<()>,
) -> Result<RgbImage> {
    render(chart, width, height, |root| {
        let (top, bottom) = root.split_vertically(height / 2);
        draw(&top, &bottom)
    })
}

/// Draws a layer's channel importance, sorted from most to least important, above its
/// channel weights as a grid. `importance[c]` and `weights[c]` belong to channel c.
pub fn channel_chart(title: &str, importance: &[f64], weights: &[f32]) -> Result<RgbImage> {
    let mut order: Vec<usize> = (0..importance.len()).collect();
    order.sort_by(|&a, &b| importance[b].total_cmp(&importance[a]));
    let bars: Vec<(String, f64)> = order
        .iter()
        .map(|&channel| (channel.to_string(), importance[channel]))
        .collect();
    let weights: Vec<f64> = weights.iter().map(|&weight| f64::from(weight)).collect();
    let label_every = importance.len().div_ceil(32).max(1);
    two_panels(title, (1000, 1100), |top, bottom| {
        bar_chart(
            top,
            &format!("{title}: importance, most important first"),
            "channel",
            "rise of the triplet loss without the channel",
            &bars,
            label_every,
        )?;
        value_grid(bottom, "learned weight per channel", &weights)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_chart_has_requested_size_and_ink() {
        let series = [
            Series {
                label: "depth 1".into(),
                points: vec![(1.0, 0.2), (2.0, 0.15), (3.0, 0.1)],
            },
            Series {
                label: "depth 2".into(),
                points: vec![(1.0, 0.25), (2.0, f64::NAN), (3.0, 0.12)],
            },
        ];
        let image = line_chart("loss", "epoch", "loss", &series, (400, 300)).unwrap();
        assert_eq!(image.dimensions(), (400, 300));
        let non_white = image.pixels().filter(|pixel| pixel.0 != [255; 3]).count();
        assert!(non_white > 1000, "{non_white} drawn pixels");
    }

    #[test]
    fn finite_range_widens_constants() {
        assert_eq!(finite_range([1.0, f64::NAN, 3.0].into_iter()), (1.0, 3.0));
        let (low, high) = finite_range([2.0, 2.0].into_iter());
        assert!(low < 2.0);
        assert!(high > 2.0);
        assert_eq!(finite_range(std::iter::empty()), (0.0, 1.0));
    }

    #[test]
    fn panels_draw_bars_and_grid() {
        let bars: Vec<(String, f64)> = (0..10)
            .map(|index| (index.to_string(), 1.0 - index as f64 * 0.15))
            .collect();
        let values: Vec<f64> = (0..10).map(f64::from).collect();
        let image = two_panels("channels", (500, 600), |top, bottom| {
            bar_chart(top, "importance", "channel", "loss increase", &bars, 2)?;
            value_grid(bottom, "weights", &values)
        })
        .unwrap();
        assert_eq!(image.dimensions(), (500, 600));
        // The grid's last cell (value 9, the maximum) is bright yellow in viridis.
        let yellow = image
            .pixels()
            .filter(|pixel| pixel.0[0] > 200 && pixel.0[1] > 200 && pixel.0[2] < 80)
            .count();
        assert!(yellow > 100, "{yellow} yellow pixels");
    }
}
