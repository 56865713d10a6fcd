//! PNG charts with an embedded font (no system font library needed).

use std::path::Path;

use image::ImageEncoder;
use plotters::prelude::*;
use plotters::style::FontStyle;

static FONT: &[u8] = include_bytes!("../../../assets/DejaVuSans.ttf");

/// Registers the embedded font as "sans-serif" once.
pub fn init_font() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        if plotters::style::register_font("sans-serif", FontStyle::Normal, FONT).is_err() {
            eprintln!("warning: embedded font failed to load; plot text may be missing");
        }
    });
}

/// One line of a chart.
pub struct Series {
    pub label: String,
    pub points: Vec<(f64, f64)>,
    pub color: RGBColor,
    pub dashed: bool,
}

/// The palette of the charts.
pub const COLORS: [RGBColor; 6] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
];

fn draw_series<'a, DB: DrawingBackend + 'a, X, Y>(
    chart: &mut ChartContext<'a, DB, Cartesian2d<X, Y>>,
    series: &[Series],
) -> Result<(), Box<dyn std::error::Error>>
where
    X: plotters::coord::ranged1d::Ranged<ValueType = f64>,
    Y: plotters::coord::ranged1d::Ranged<ValueType = f64>,
    DB::ErrorType: 'static,
{
    for s in series {
        let color = s.color;
        let style = color.stroke_width(2);
        if s.dashed {
            chart
                .draw_series(DashedLineSeries::new(s.points.iter().copied(), 8, 5, style))?
                .label(&s.label)
                .legend(move |(x, y)| {
                    EmptyElement::at((x, y))
                        + PathElement::new(vec![(0, 0), (6, 0)], color.stroke_width(2))
                        + PathElement::new(vec![(10, 0), (16, 0)], color.stroke_width(2))
                });
        } else {
            chart
                .draw_series(LineSeries::new(s.points.iter().copied(), style))?
                .label(&s.label)
                .legend(move |(x, y)| {
                    PathElement::new(vec![(x, y), (x + 18, y)], color.stroke_width(2))
                });
            chart.draw_series(s.points.iter().map(|&p| Circle::new(p, 3, color.filled())))?;
        }
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::LowerRight)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .label_font(("sans-serif", 13))
        .draw()?;
    Ok(())
}

/// (x min, x max, y min, y max) over every finite point of every series; an error when
/// there is none (an empty range would make the axes meaningless).
fn bounds(series: &[Series]) -> Result<(f64, f64, f64, f64), Box<dyn std::error::Error>> {
    let b = series
        .iter()
        .flat_map(|s| s.points.iter())
        .filter(|(x, y)| x.is_finite() && y.is_finite())
        .fold(
            (f64::MAX, f64::MIN, f64::MAX, f64::MIN),
            |(x0, x1, y0, y1), &(x, y)| (x0.min(x), x1.max(x), y0.min(y), y1.max(y)),
        );
    if b.0 > b.1 {
        return Err("nothing to plot: no finite values".into());
    }
    Ok(b)
}

/// Checks before any work that `path` names a PNG that can be written.
pub fn check_png_path(path: &Path) -> Result<(), Box<dyn std::error::Error>> {
    let ext = path
        .extension()
        .map(|e| e.to_string_lossy().to_lowercase())
        .unwrap_or_default();
    if ext != "png" {
        return Err(format!(
            "{}: plots are written as PNG; name the file *.png",
            path.display()
        )
        .into());
    }
    wgpu_batchnorm::internal::check_writable(path)
        .map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(())
}

/// Draws into an RGB buffer with `draw`, encodes it as PNG in memory, and writes the file
/// atomically: a failure (full disk, unwritable directory) leaves no partial file.
fn render(
    path: &Path,
    size: (u32, u32),
    draw: impl FnOnce(
        &DrawingArea<BitMapBackend<'_>, plotters::coord::Shift>,
    ) -> Result<(), Box<dyn std::error::Error>>,
) -> Result<(), Box<dyn std::error::Error>> {
    check_png_path(path)?;
    let mut pixels = vec![0u8; size.0 as usize * size.1 as usize * 3];
    {
        let root = BitMapBackend::with_buffer(&mut pixels, size).into_drawing_area();
        draw(&root)?;
        root.present()?;
    }
    let mut png = Vec::new();
    image::codecs::png::PngEncoder::new(&mut png)
        .write_image(&pixels, size.0, size.1, image::ColorType::Rgb8)
        .map_err(|e| format!("{}: encoding the PNG failed: {e}", path.display()))?;
    wgpu_batchnorm::internal::write_atomically(path, &png)
        .map_err(|e| format!("cannot write the plot {}: {e}", path.display()))?;
    Ok(())
}

/// A log-log chart (bandwidth against size).
pub fn loglog(
    path: &Path,
    title: &str,
    x_desc: &str,
    y_desc: &str,
    series: &[Series],
) -> Result<(), Box<dyn std::error::Error>> {
    init_font();
    let (x0, x1, y0, y1) = bounds(series)?;
    if x0 <= 0.0 || y0 <= 0.0 {
        return Err("a log-log plot needs positive values".into());
    }
    render(path, (1000, 650), |root| {
        root.fill(&WHITE)?;
        let mut chart = ChartBuilder::on(root)
            .caption(title, ("sans-serif", 22))
            .margin(15)
            .x_label_area_size(45)
            .y_label_area_size(65)
            .build_cartesian_2d(
                (x0 / 1.5..x1 * 1.5).log_scale(),
                (y0 / 1.5..y1 * 1.5).log_scale(),
            )?;
        chart
            .configure_mesh()
            .x_desc(x_desc)
            .y_desc(y_desc)
            .label_style(("sans-serif", 13))
            .draw()?;
        draw_series(&mut chart, series)?;
        Ok(())
    })
}

/// Two linear panels side by side sharing the x axis (loss and accuracy per epoch).
pub fn two_panels(
    path: &Path,
    x_desc: &str,
    panels: [(&str, &[Series]); 2],
) -> Result<(), Box<dyn std::error::Error>> {
    init_font();
    let ranges = [bounds(panels[0].1)?, bounds(panels[1].1)?];
    render(path, (1200, 500), |root| {
        root.fill(&WHITE)?;
        let areas = root.split_evenly((1, 2));
        for ((area, (title, series)), (x0, x1, y0, y1)) in areas.iter().zip(panels).zip(ranges) {
            let pad = ((y1 - y0) * 0.08).max(1e-3);
            let mut chart = ChartBuilder::on(area)
                .caption(title, ("sans-serif", 20))
                .margin(15)
                .x_label_area_size(40)
                .y_label_area_size(55)
                .build_cartesian_2d(x0 - 0.2..x1 + 0.2, y0 - pad..y1 + pad)?;
            chart
                .configure_mesh()
                .x_desc(x_desc)
                .label_style(("sans-serif", 13))
                .draw()?;
            draw_series(&mut chart, series)?;
        }
        Ok(())
    })
}
