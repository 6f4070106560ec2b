//! The latency plot: p50 and p99 of every endpoint in every mode, on a log scale.

use std::path::Path;

use plotters::prelude::*;

use crate::{HitRun, Mode};

pub(crate) fn latency(path: &Path, size: u64, results: &[HitRun]) -> anyhow::Result<()> {
    let rows: Vec<&HitRun> = results.iter().filter(|r| r.size == size).collect();
    let endpoints: Vec<&'static str> = {
        let mut e: Vec<&'static str> = Vec::new();
        for r in &rows {
            if !e.contains(&r.endpoint) {
                e.push(r.endpoint);
            }
        }
        e
    };
    let root = SVGBackend::new(path, (1100, 560)).into_drawing_area();
    root.fill(&WHITE)?;
    let max = rows
        .iter()
        .map(|r| r.wrk.p99_us)
        .max()
        .unwrap_or(1000)
        .max(1000)
        * 3;
    let groups = endpoints.len() as f64;
    let mut chart = ChartBuilder::on(&root)
        .caption(
            format!("Latency by scenario, {size} businesses (bars p50, whiskers p99; log scale)"),
            ("sans-serif", 20),
        )
        .margin(15)
        .x_label_area_size(40)
        .y_label_area_size(70)
        .build_cartesian_2d(0f64..groups, (10u64..max).log_scale())?;
    chart
        .configure_mesh()
        .disable_x_mesh()
        .x_labels(endpoints.len() * 2 + 1)
        .x_label_formatter(&|x| {
            let i = x.floor() as usize;
            if (x - x.floor() - 0.5).abs() < 0.01 {
                endpoints.get(i).copied().unwrap_or("").to_owned()
            } else {
                String::new()
            }
        })
        .y_desc("microseconds")
        .draw()?;
    let colors = [
        RGBColor(31, 119, 180),
        RGBColor(44, 160, 44),
        RGBColor(214, 39, 40),
        RGBColor(148, 103, 189),
    ];
    let width = 0.8 / Mode::ALL.len() as f64;
    for (m, mode) in Mode::ALL.iter().enumerate() {
        let color = colors.get(m).copied().unwrap_or(BLACK);
        let mut bars = Vec::new();
        let mut whiskers = Vec::new();
        for (i, name) in endpoints.iter().enumerate() {
            if let Some(r) = rows.iter().find(|r| r.mode == *mode && r.endpoint == *name) {
                let x0 = i as f64 + 0.1 + width * m as f64;
                bars.push(Rectangle::new(
                    [(x0, 10), (x0 + width * 0.9, r.wrk.p50_us.max(11))],
                    color.filled(),
                ));
                let xm = x0 + width * 0.45;
                whiskers.push(PathElement::new(
                    vec![(xm, r.wrk.p50_us.max(11)), (xm, r.wrk.p99_us.max(11))],
                    color.stroke_width(2),
                ));
            }
        }
        chart
            .draw_series(bars)?
            .label(mode.label())
            .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 12, y + 5)], color.filled()));
        chart.draw_series(whiskers)?;
    }
    finish(&mut chart, &root)
}

/// Memory by dataset size, log-log: Redis (the mode's namespace) and the server's
/// resident memory, per mode.
pub(crate) fn memory(path: &Path, all: &[crate::footprint::Footprint]) -> anyhow::Result<()> {
    let root = SVGBackend::new(path, (900, 480)).into_drawing_area();
    root.fill(&WHITE)?;
    let min_size = all.iter().map(|f| f.size).min().unwrap_or(1).max(1);
    let max_size = all
        .iter()
        .map(|f| f.size)
        .max()
        .unwrap_or(10)
        .max(min_size * 10);
    let mib = |b: f64| (b / 1048576.0).max(0.1);
    let top = all
        .iter()
        .map(|f| mib(f.redis_bytes() as f64).max(f.rss_mib))
        .fold(1.0, f64::max)
        * 2.0;
    let mut chart = ChartBuilder::on(&root)
        .caption(
            "Memory after the dashboard mix, by dataset size (log-log)",
            ("sans-serif", 20),
        )
        .margin(15)
        .x_label_area_size(40)
        .y_label_area_size(70)
        .build_cartesian_2d(
            (min_size as f64 / 2.0..max_size as f64 * 2.0).log_scale(),
            (0.1f64..top).log_scale(),
        )?;
    chart
        .configure_mesh()
        .x_desc("businesses")
        .y_desc("MiB")
        .draw()?;
    let colors = [RGBColor(31, 119, 180), RGBColor(44, 160, 44)];
    let mut modes: Vec<Mode> = all.iter().map(|f| f.mode).collect();
    modes.sort();
    modes.dedup();
    for (m, mode) in modes.iter().enumerate() {
        let color = colors.get(m).copied().unwrap_or(BLACK);
        let of: Vec<_> = all.iter().filter(|f| f.mode == *mode).collect();
        let redis: Vec<(f64, f64)> = of
            .iter()
            .map(|f| (f.size as f64, mib(f.redis_bytes() as f64)))
            .collect();
        let rss: Vec<(f64, f64)> = of.iter().map(|f| (f.size as f64, f.rss_mib)).collect();
        chart
            .draw_series(LineSeries::new(redis, color.stroke_width(2)))?
            .label(format!("Redis, {}", mode.label()))
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 14, y)], color.stroke_width(2))
            });
        chart
            .draw_series(LineSeries::new(rss, color.stroke_width(1)))?
            .label(format!("server RSS, {}", mode.label()))
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 14, y)], color.stroke_width(1))
            });
    }
    finish(&mut chart, &root)
}

/// Draws the legend in the upper left corner and writes the file.
fn finish<'a, CT: CoordTranslate>(
    chart: &mut ChartContext<'a, SVGBackend<'a>, CT>,
    root: &DrawingArea<SVGBackend<'a>, plotters::coord::Shift>,
) -> anyhow::Result<()> {
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.9))
        .border_style(BLACK)
        .position(SeriesLabelPosition::UpperLeft)
        .draw()?;
    root.present()?;
    Ok(())
}
