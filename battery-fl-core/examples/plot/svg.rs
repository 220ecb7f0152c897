//! Predicted against true cycle life with interval bars and flagged cells, drawn with
//! `plotters` as SVG (text is SVG text: no font files needed).

use std::path::Path;

use anyhow::Result;
use plotters::coord::types::RangedCoordf64;
use plotters::prelude::*;

/// The drawing area's chart: the caption, `x` by `y` axes, the fonts both plots use.
type Chart<'a, 'b> = ChartContext<'a, SVGBackend<'b>, Cartesian2d<RangedCoordf64, RangedCoordf64>>;

fn chart<'a, 'b>(
    root: &'a DrawingArea<SVGBackend<'b>, plotters::coord::Shift>,
    title: &str,
    x: std::ops::Range<f64>,
    y: std::ops::Range<f64>,
) -> Result<Chart<'a, 'b>> {
    root.fill(&WHITE)?;
    Ok(ChartBuilder::on(root)
        .caption(title, ("sans-serif", 22))
        .margin(16)
        .x_label_area_size(50)
        .y_label_area_size(70)
        .build_cartesian_2d(x, y)?)
}

/// The series legend at `position`, boxed.
fn legend<'a, 'b: 'a>(chart: &mut Chart<'a, 'b>, position: SeriesLabelPosition) -> Result<()> {
    chart
        .configure_series_labels()
        .position(position)
        .border_style(BLACK.mix(0.4))
        .background_style(WHITE.mix(0.9))
        .label_font(("sans-serif", 14))
        .draw()?;
    Ok(())
}

/// One test cell of the plot.
pub struct IntervalPoint {
    pub truth: f64,
    pub life: f64,
    pub lower: f64,
    pub upper: f64,
    pub flagged: bool,
}

/// Predicted vs true, one colour per series (fleet), a vertical bar per cell for its interval,
/// a black cross on cells flagged out of distribution, the diagonal for reference.
pub fn predicted_vs_true(
    path: &Path,
    title: &str,
    series: &[(String, Vec<IntervalPoint>)],
) -> Result<()> {
    let max = series
        .iter()
        .flat_map(|(_, p)| p.iter().flat_map(|p| [p.truth, p.life, p.upper]))
        .filter(|v| v.is_finite())
        .fold(1.0f64, f64::max)
        * 1.05;
    let root = SVGBackend::new(path, (860, 680)).into_drawing_area();
    let mut chart = chart(&root, title, 0f64..max, 0f64..max)?;
    chart
        .configure_mesh()
        .axis_desc_style(("sans-serif", 16))
        .label_style(("sans-serif", 13))
        .x_desc("true cycle life (cycles)")
        .y_desc("predicted cycle life (cycles)")
        .x_label_formatter(&|v| format!("{v:.0}"))
        .y_label_formatter(&|v| format!("{v:.0}"))
        .draw()?;
    chart
        .draw_series(LineSeries::new([(0.0, 0.0), (max, max)], BLACK.mix(0.35)))?
        .label("predicted = true")
        .legend(|(x, y)| PathElement::new([(x, y), (x + 18, y)], BLACK.mix(0.35)));
    for (i, (name, points)) in series.iter().enumerate() {
        let color = Palette99::pick(i).to_rgba();
        chart.draw_series(points.iter().map(|p| {
            PathElement::new(
                [(p.truth, p.lower.min(max)), (p.truth, p.upper.min(max))],
                color.mix(0.45).stroke_width(2),
            )
        }))?;
        chart
            .draw_series(
                points
                    .iter()
                    .map(|p| Circle::new((p.truth, p.life.min(max)), 4, color.filled())),
            )?
            .label(name.as_str())
            .legend(move |(x, y)| Circle::new((x + 9, y), 4, color.filled()));
    }
    let flagged: Vec<&IntervalPoint> = series
        .iter()
        .flat_map(|(_, p)| p.iter().filter(|p| p.flagged))
        .collect();
    if !flagged.is_empty() {
        chart
            .draw_series(
                flagged
                    .iter()
                    .map(|p| Cross::new((p.truth, p.life.min(max)), 7, BLACK.stroke_width(2))),
            )?
            .label("out of distribution")
            .legend(|(x, y)| Cross::new((x + 9, y), 6, BLACK.stroke_width(2)));
    }
    legend(&mut chart, SeriesLabelPosition::UpperLeft)?;
    root.present()?;
    Ok(())
}

/// One fleet's line of [`rmse_per_round`]: its name, (round, RMSE) points and its local-only
/// RMSE, if known.
pub struct FleetLine {
    pub name: String,
    pub rmse: Vec<(f64, f64)>,
    pub local: Option<f64>,
}

/// RMSE per round: the global model over all test cells (thick, black), each fleet's own
/// test cells in its colour, and each fleet's local-only RMSE as a dashed line in the same
/// colour (the level the federation has to beat for that fleet).
pub fn rmse_per_round(
    path: &Path,
    title: &str,
    global: &[(f64, f64)],
    fleets: &[FleetLine],
) -> Result<()> {
    let values = global
        .iter()
        .map(|p| p.1)
        .chain(
            fleets
                .iter()
                .flat_map(|f| f.rmse.iter().map(|p| p.1).chain(f.local)),
        )
        .filter(|v| v.is_finite());
    let top = values.fold(1.0f64, f64::max) * 1.08;
    let last = global.iter().map(|p| p.0).fold(1.0f64, f64::max);
    let root = SVGBackend::new(path, (900, 600)).into_drawing_area();
    let mut chart = chart(&root, title, 0.5f64..last + 0.5, 0f64..top)?;
    chart
        .configure_mesh()
        .axis_desc_style(("sans-serif", 16))
        .label_style(("sans-serif", 13))
        .x_desc("round")
        .y_desc("RMSE (cycles)")
        .x_labels((last as usize).min(20))
        .x_label_formatter(&|v| format!("{v:.0}"))
        .y_label_formatter(&|v| format!("{v:.0}"))
        .draw()?;
    chart
        .draw_series(LineSeries::new(
            global.iter().copied(),
            BLACK.stroke_width(3),
        ))?
        .label("global model, all fleets")
        .legend(|(x, y)| PathElement::new([(x, y), (x + 18, y)], BLACK.stroke_width(3)));
    for (
        i,
        FleetLine {
            name,
            rmse: series,
            local,
        },
    ) in fleets.iter().enumerate()
    {
        let color = Palette99::pick(i).to_rgba();
        chart
            .draw_series(LineSeries::new(
                series.iter().copied(),
                color.stroke_width(2),
            ))?
            .label(name.as_str())
            .legend(move |(x, y)| PathElement::new([(x, y), (x + 18, y)], color.stroke_width(2)));
        chart.draw_series(series.iter().map(|&p| Circle::new(p, 3, color.filled())))?;
        if let Some(level) = local {
            chart.draw_series(DashedLineSeries::new(
                [(0.5, *level), (last + 0.5, *level)],
                8,
                6,
                color.stroke_width(1),
            ))?;
        }
    }
    chart
        .draw_series(std::iter::once(PathElement::new(
            [(0.0, -1.0), (0.0, -1.0)],
            BLACK.mix(0.6),
        )))?
        .label("dashed: the fleet's local-only RMSE")
        .legend(|(x, y)| PathElement::new([(x, y), (x + 18, y)], BLACK.mix(0.6)));
    legend(&mut chart, SeriesLabelPosition::UpperRight)?;
    root.present()?;
    Ok(())
}
