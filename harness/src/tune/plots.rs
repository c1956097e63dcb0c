//! SVG plots of a sweep (plotters): throughput vs p99 latency, one curve per configuration
//! with one point per target rate; and one bar chart per knob (median throughput, and broker
//! CPU per GB when measured, for each of the knob's values at max throughput).
//!
//! Owns: drawing. Must never: invent points (a configuration without successful runs draws
//! nothing).

use std::path::Path;

use plotters::prelude::*;

use crate::tune::results::SummaryRow;

const SIZE: (u32, u32) = (900, 560);

fn err(e: impl std::fmt::Display) -> String {
    format!("plot: {e}")
}

/// `x_metric` vs `y_metric` per configuration, points ordered by x.
pub fn throughput_vs_latency(
    path: &Path,
    title: &str,
    summary: &[SummaryRow],
    x_metric: &str,
    y_metric: &str,
) -> Result<(), String> {
    let mut curves: Vec<(String, Vec<(f64, f64)>)> = Vec::new();
    for r in summary.iter().filter(|r| r.runs > 0) {
        let point = (r.medians[x_metric], r.medians[y_metric]);
        match curves.iter_mut().find(|(c, _)| *c == r.config) {
            Some((_, pts)) => pts.push(point),
            None => curves.push((r.config.clone(), vec![point])),
        }
    }
    for (_, pts) in &mut curves {
        pts.sort_by(|a, b| a.0.total_cmp(&b.0));
    }
    let x_max = curves.iter().flat_map(|(_, p)| p.iter().map(|x| x.0)).fold(0.0, f64::max).max(1e-9) * 1.1;
    let y_max = curves.iter().flat_map(|(_, p)| p.iter().map(|x| x.1)).fold(0.0, f64::max).max(1e-9) * 1.1;
    let root = SVGBackend::new(path, SIZE).into_drawing_area();
    root.fill(&WHITE).map_err(err)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 20))
        .margin(15)
        .x_label_area_size(45)
        .y_label_area_size(60)
        .build_cartesian_2d(0.0..x_max, 0.0..y_max)
        .map_err(err)?;
    chart.configure_mesh().x_desc(x_metric).y_desc(y_metric).draw().map_err(err)?;
    for (i, (label, pts)) in curves.iter().enumerate() {
        let color = Palette99::pick(i).to_rgba();
        chart
            .draw_series(LineSeries::new(pts.clone(), color.stroke_width(2)))
            .map_err(err)?
            .label(label.clone())
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], color.stroke_width(2)));
        chart.draw_series(pts.iter().map(|p| Circle::new(*p, 4, color.filled()))).map_err(err)?;
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .draw()
        .map_err(err)?;
    root.present().map_err(err)
}

/// Bars: one per `(label, value)`.
pub fn bars(path: &Path, title: &str, y_desc: &str, bars: &[(String, f64)]) -> Result<(), String> {
    let n = bars.len().max(1);
    let y_max = bars.iter().map(|b| b.1).fold(0.0, f64::max).max(1e-9) * 1.15;
    let root = SVGBackend::new(path, SIZE).into_drawing_area();
    root.fill(&WHITE).map_err(err)?;
    let labels: Vec<String> = bars.iter().map(|b| b.0.clone()).collect();
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 20))
        .margin(15)
        .x_label_area_size(45)
        .y_label_area_size(60)
        .build_cartesian_2d(-0.5..(n as f64 - 0.5), 0.0..y_max)
        .map_err(err)?;
    chart
        .configure_mesh()
        .disable_x_mesh()
        .x_labels(n)
        .x_label_formatter(&|x| {
            let i = x.round();
            if (x - i).abs() < 1e-6 && i >= 0.0 {
                labels.get(i as usize).cloned().unwrap_or_default()
            } else {
                String::new()
            }
        })
        .y_desc(y_desc)
        .draw()
        .map_err(err)?;
    chart
        .draw_series(bars.iter().enumerate().map(|(i, (_, v))| {
            let x = i as f64;
            Rectangle::new([(x - 0.35, 0.0), (x + 0.35, *v)], Palette99::pick(i).filled())
        }))
        .map_err(err)?;
    chart
        .draw_series(
            bars.iter().enumerate().map(|(i, (_, v))| {
                Text::new(format!("{v:.2}"), (i as f64 - 0.15, *v + y_max * 0.02), ("sans-serif", 14))
            }),
        )
        .map_err(err)?;
    root.present().map_err(err)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    #[test]
    fn plots_are_written_as_svg() {
        let dir = std::env::temp_dir().join(format!("sluice-plots-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let row = |config: &str, mb: f64, p99: f64| SummaryRow {
            config: config.into(),
            knobs: BTreeMap::new(),
            target_rate: 0.0,
            runs: 1,
            failed_runs: 0,
            medians: [("produce_mb_per_sec".to_string(), mb), ("ack_p99_ms".to_string(), p99)].into_iter().collect(),
        };
        let summary = vec![row("a", 10.0, 1.0), row("a", 20.0, 3.0), row("b", 15.0, 2.0)];
        let curve = dir.join("curve.svg");
        throughput_vs_latency(&curve, "t", &summary, "produce_mb_per_sec", "ack_p99_ms").unwrap();
        let svg = std::fs::read_to_string(&curve).unwrap();
        assert!(svg.starts_with("<svg") && svg.contains("polyline"), "{}", &svg[..200.min(svg.len())]);
        let bar = dir.join("bar.svg");
        bars(&bar, "b", "MB/s", &[("x".into(), 1.0), ("y".into(), 2.0)]).unwrap();
        assert!(std::fs::read_to_string(&bar).unwrap().contains("<rect"));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
