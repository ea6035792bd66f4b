//! `--plot FILE.svg`: the per-layer cos as bars against the `min_layer_cos` line, and the network
//! cos against the number of float layers, so the trade-off is seen at a glance.

use super::SearchResult;
use std::fmt::Write as _;

const W: f64 = 960.0;
const PANEL_H: f64 = 300.0;
const LEFT: f64 = 70.0;
const RIGHT: f64 = 20.0;

fn esc(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

/// Map a cos to a y pixel inside a panel whose top is `top`, for the value range `[lo, hi]`.
fn y_of(v: f64, lo: f64, hi: f64, top: f64) -> f64 {
    let t = if hi > lo { ((v - lo) / (hi - lo)).clamp(0.0, 1.0) } else { 0.5 };
    top + 30.0 + (1.0 - t) * (PANEL_H - 60.0)
}

/// Render the two panels as a standalone SVG document.
pub fn render_svg(result: &SearchResult, min_layer_cos: f64, expected_cos: f64) -> String {
    let mut s = String::new();
    let h = 2.0 * PANEL_H + 140.0;
    let _ = writeln!(
        s,
        r##"<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{h}" font-family="sans-serif" font-size="11">"#
    );
    let _ = writeln!(s, r##"<rect width="100%" height="100%" fill="white"/>"##
    );

    // Panel 1: per-layer cos bars.
    let top = 10.0;
    let n = result.losses.len().max(1) as f64;
    let lo = result.losses.iter().map(|l| l.1).fold(min_layer_cos, f64::min) - 0.0005;
    let hi = 1.0;
    let _ = writeln!(
        s,
        r##"<text x="{LEFT}" y="{}" font-size="14">Per-layer cos (INT8 layer vs float, predecessors as decided)</text>"##,
        top + 16.0
    );
    let bw = (W - LEFT - RIGHT) / n;
    for (i, (name, cos)) in result.losses.iter().enumerate() {
        let x = LEFT + i as f64 * bw;
        let y = y_of(*cos, lo, hi, top);
        let base = y_of(lo, lo, hi, top);
        let float = result.float_layers.contains(name);
        let color = if *cos < min_layer_cos {
            if float {
                "#d62728"
            } else {
                "#ff9896"
            }
        } else {
            "#1f77b4"
        };
        let _ = writeln!(
            s,
            r##"<rect x="{:.1}" y="{:.1}" width="{:.1}" height="{:.1}" fill="{color}"><title>{} cos {:.6}{}</title></rect>"##,
            x + 1.0,
            y,
            (bw - 2.0).max(1.0),
            (base - y).max(0.5),
            esc(name),
            cos,
            if float { " (float)" } else { "" }
        );
        let _ = writeln!(
            s,
            r##"<text transform="translate({:.1},{:.1}) rotate(60)" font-size="9">{}</text>"##,
            x + bw / 2.0,
            base + 6.0,
            esc(name)
        );
    }
    let ty = y_of(min_layer_cos, lo, hi, top);
    let _ = writeln!(
        s,
        r##"<line x1="{LEFT}" x2="{}" y1="{ty:.1}" y2="{ty:.1}" stroke="black" stroke-dasharray="4 3"/>"##,
        W - RIGHT
    );
    let _ = writeln!(s, r##"<text x="2" y="{:.1}">{min_layer_cos}</text>"##, ty + 4.0);
    let _ = writeln!(s, r##"<text x="2" y="{:.1}">{lo:.4}</text>"##, y_of(lo, lo, hi, top) + 4.0);
    let _ = writeln!(s, r##"<text x="2" y="{:.1}">1.0</text>"##, y_of(hi, lo, hi, top) + 4.0);

    // Panel 2: network cos vs number of float layers.
    let top2 = PANEL_H + 120.0;
    let _ = writeln!(
        s,
        r##"<text x="{LEFT}" y="{}" font-size="14">Network cos vs number of float layers (kept trials)</text>"##,
        top2 + 16.0
    );
    let mut pts = vec![(0usize, result.int8_cos)];
    for t in result.trials.iter().filter(|t| t.kept) {
        pts.push((t.float_count, t.network_cos));
    }
    let maxn = pts.iter().map(|p| p.0).max().unwrap_or(0).max(1) as f64;
    let lo2 = pts.iter().map(|p| p.1).fold(expected_cos, f64::min) - 0.0002;
    let hi2 = pts.iter().map(|p| p.1).fold(expected_cos, f64::max) + 0.0002;
    let xs = |k: usize| LEFT + (k as f64 / maxn) * (W - LEFT - RIGHT - 20.0);
    let poly: Vec<String> = pts.iter().map(|(k, c)| format!("{:.1},{:.1}", xs(*k), y_of(*c, lo2, hi2, top2))).collect();
    let _ = writeln!(s, r##"<polyline points="{}" fill="none" stroke="#2ca02c" stroke-width="2"/>"##, poly.join(" "));
    for (k, c) in &pts {
        let _ = writeln!(
            s,
            r##"<circle cx="{:.1}" cy="{:.1}" r="4" fill="#2ca02c"><title>{k} float layers: cos {c:.6}</title></circle>"##,
            xs(*k),
            y_of(*c, lo2, hi2, top2)
        );
        let _ = writeln!(s, r##"<text x="{:.1}" y="{:.1}">{k}</text>"##, xs(*k) - 3.0, top2 + PANEL_H - 10.0);
    }
    let ey = y_of(expected_cos, lo2, hi2, top2);
    let _ = writeln!(
        s,
        r##"<line x1="{LEFT}" x2="{}" y1="{ey:.1}" y2="{ey:.1}" stroke="black" stroke-dasharray="4 3"/>"##,
        W - RIGHT
    );
    let _ = writeln!(s, r##"<text x="2" y="{:.1}">{expected_cos}</text>"##, ey + 4.0);
    let _ = writeln!(s, "</svg>");
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::search::Trial;

    #[test]
    fn svg_has_one_bar_per_layer_and_a_point_per_kept_trial() {
        let r = SearchResult {
            int8_cos: 0.9991,
            mixed_cos: 0.9996,
            losses: vec![("a_Conv".into(), 0.998), ("b<x>_Conv".into(), 0.9995)],
            float_layers: vec!["a_Conv".into()],
            trials: vec![
                Trial {
                    layer: "a_Conv".into(),
                    added: vec!["a_Conv".into()],
                    network_cos: 0.9996,
                    kept: true,
                    float_count: 1,
                },
                Trial { layer: "c".into(), added: vec!["c".into()], network_cos: 0.998, kept: false, float_count: 1 },
            ],
            int8_enough: false,
            reached: false,
        };
        let svg = render_svg(&r, 0.999, 0.9999);
        assert_eq!(svg.matches("<rect x=").count(), 2);
        assert_eq!(svg.matches("<circle").count(), 2);
        assert!(svg.contains("b&lt;x&gt;_Conv"));
        assert!(svg.contains("#d62728"), "the float layer under the threshold is drawn red");
        assert!(svg.trim_end().ends_with("</svg>"));
    }
}
