//! Bar charts drawn on the server as SVG: no script, and colours from the
//! stylesheet (the policy allows no inline style). Each chart is an image
//! with a text alternative that gives its total and its busiest bar.

use maud::{html, Markup};

/// The drawing's size in its own units (it scales to its box).
const WIDTH: f64 = 600.0;
const HEIGHT: f64 = 160.0;
/// Room under the bars for the first and last labels.
const LABELS: f64 = 18.0;

/// One bar: its label (an hour, a day) and its value.
pub struct Bar {
    pub label: String,
    pub value: i64,
}

/// A bar chart of `bars`, oldest first, titled `title`; `id` makes its
/// title's element id unique on the page.
pub fn bars(id: &str, title: &str, bars: &[Bar]) -> Markup {
    let total: i64 = bars.iter().map(|bar| bar.value).sum();
    let busiest = bars.iter().max_by_key(|bar| bar.value);
    let summary = match busiest {
        Some(bar) if total > 0 => format!("{title}: {total} in all, most in {} ({}).", bar.label, bar.value),
        _ => format!("{title}: none."),
    };
    let top = busiest.map(|bar| bar.value).unwrap_or(0).max(1) as f64;
    let slot = WIDTH / bars.len().max(1) as f64;
    let plot = HEIGHT - LABELS;
    let title_id = format!("{id}-title");
    html! {
        figure.chart {
            figcaption #(title_id) { (title) " " span.total { "(" (total) ")" } }
            svg viewBox=(format!("0 0 {WIDTH} {HEIGHT}")) role="img" aria-label=(summary) {
                line.axis x1="0" y1=(plot) x2=(WIDTH) y2=(plot) {}
                @for (n, bar) in bars.iter().enumerate() {
                    @let height = (bar.value as f64 / top * (plot - 4.0)).max(if bar.value > 0 { 1.0 } else { 0.0 });
                    rect.column x=(format!("{:.1}", n as f64 * slot + slot * 0.1)) y=(format!("{:.1}", plot - height))
                        width=(format!("{:.1}", slot * 0.8)) height=(format!("{height:.1}")) {
                        title { (bar.label) ": " (bar.value) }
                    }
                }
                @if let (Some(first), Some(last)) = (bars.first(), bars.last()) {
                    text.label x="0" y=(HEIGHT - 4.0) { (first.label) }
                    text.label x=(WIDTH) y=(HEIGHT - 4.0) text-anchor="end" { (last.label) }
                }
            }
        }
    }
}
