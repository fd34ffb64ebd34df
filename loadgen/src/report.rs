//! The picture of a run: an SVG (or HTML page) drawing a [`Summary`]'s latency distribution
//! and histogram and its throughput over time.

use std::fmt::Write as _;

use crate::summary::Summary;

impl Summary {
    /// The report as a standalone SVG document.
    pub fn svg(&self) -> String {
        let (w, h) = (900.0, 960.0);
        let mut s = String::new();
        let _ = write!(
            s,
            r#"<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" viewBox="0 0 {w} {h}" font-family="sans-serif" font-size="12">"#
        );
        let _ = write!(s, r#"<rect width="{w}" height="{h}" fill="white"/>"#);
        let _ = write!(
            s,
            r#"<text x="20" y="24" font-size="16">wsgate-loadgen {} ({}), {} connections</text>"#,
            self.scenario, self.format, self.connections
        );
        if let Some(o) = &self.offsets {
            let _ = write!(
                s,
                r#"<text x="{}" y="24" text-anchor="end">offsets: {} checked, {} gaps, {} duplicates; resumes: {} recovered, {} not</text>"#,
                w - 20.0,
                o.checked,
                o.gaps,
                o.duplicates,
                o.recovered,
                o.not_recovered
            );
        }
        let (lat, title) = if self.latency.count > 0 {
            (&self.latency, "end-to-end latency (µs) by percentile")
        } else {
            (&self.handshake, "handshake latency (µs) by percentile")
        };
        let pts: Vec<(f64, f64)> = lat
            .curve
            .iter()
            .enumerate()
            .map(|(i, (_, v))| (i as f64, *v))
            .collect();
        let labels: Vec<String> = lat.curve.iter().map(|(q, _)| format!("p{q}")).collect();
        chart(
            &mut s,
            70.0,
            50.0,
            800.0,
            230.0,
            title,
            &pts,
            Some(&labels),
            "#1f77b4",
        );
        bars(&mut s, 70.0, 360.0, 800.0, 230.0, &lat.bins);
        let (series, title): (Vec<(f64, f64)>, &str) = if self.scenario == "connect" {
            (
                self.series.iter().map(|p| (p.t, p.open as f64)).collect(),
                "open connections over time (s)",
            )
        } else {
            (
                self.series
                    .iter()
                    .map(|p| (p.t, p.deliveries_per_sec))
                    .collect(),
                "deliveries per second over time (s)",
            )
        };
        chart(
            &mut s, 70.0, 670.0, 800.0, 230.0, title, &series, None, "#d62728",
        );
        s.push_str("</svg>\n");
        s
    }

    /// The report as an HTML page (the SVG and the table).
    pub fn html(&self) -> String {
        format!(
            "<!doctype html><html><head><meta charset=\"utf-8\"><title>wsgate-loadgen</title></head>\
             <body>{}<pre>{}</pre></body></html>\n",
            self.svg(),
            self.table()
                .replace('&', "&amp;")
                .replace('<', "&lt;")
                .replace('>', "&gt;")
        )
    }
}

/// Draws the latency histogram as bars (samples per bucket).
fn bars(s: &mut String, x: f64, y: f64, w: f64, h: f64, bins: &[(f64, u64)]) {
    let _ = write!(
        s,
        r##"<text x="{x}" y="{}" font-size="14">latency histogram: samples per bucket (µs)</text><rect x="{x}" y="{y}" width="{w}" height="{h}" fill="none" stroke="#999"/>"##,
        y - 8.0
    );
    let max = bins.iter().map(|b| b.1).max().unwrap_or(0).max(1) as f64;
    let bw = w / bins.len().max(1) as f64;
    for (i, (upper, n)) in bins.iter().enumerate() {
        let bh = *n as f64 / max * h;
        let bx = x + i as f64 * bw;
        let _ = write!(
            s,
            r##"<rect x="{bx:.1}" y="{:.1}" width="{:.1}" height="{bh:.1}" fill="#2ca02c"/>"##,
            y + h - bh,
            (bw - 1.0).max(0.5)
        );
        if i % 8 == 0 {
            let _ = write!(
                s,
                r##"<text x="{:.1}" y="{}" text-anchor="middle" fill="#555">{}</text>"##,
                bx + bw,
                y + h + 14.0,
                human(*upper)
            );
        }
    }
    for i in 0..=4 {
        let v = max * f64::from(i) / 4.0;
        let _ = write!(
            s,
            r##"<text x="{}" y="{:.1}" text-anchor="end" fill="#555">{}</text>"##,
            x - 4.0,
            y + h - v / max * h + 4.0,
            human(v)
        );
    }
}

/// Draws a line chart with points `pts` in the box (x, y, w, h).
#[allow(clippy::too_many_arguments)]
fn chart(
    s: &mut String,
    x: f64,
    y: f64,
    w: f64,
    h: f64,
    title: &str,
    pts: &[(f64, f64)],
    labels: Option<&[String]>,
    color: &str,
) {
    let _ = write!(
        s,
        r##"<text x="{x}" y="{}" font-size="14">{title}</text><rect x="{x}" y="{y}" width="{w}" height="{h}" fill="none" stroke="#999"/>"##,
        y - 8.0
    );
    if pts.is_empty() {
        return;
    }
    let xmax = pts.iter().map(|p| p.0).fold(f64::MIN, f64::max).max(1e-9);
    let xmin = pts.iter().map(|p| p.0).fold(f64::MAX, f64::min);
    let ymax = pts.iter().map(|p| p.1).fold(0.0, f64::max).max(1e-9);
    let px = |v: f64| x + (v - xmin) / (xmax - xmin).max(1e-9) * w;
    let py = |v: f64| y + h - v / ymax * h;
    let path: Vec<String> = pts
        .iter()
        .map(|(a, b)| format!("{:.1},{:.1}", px(*a), py(*b)))
        .collect();
    let _ = write!(
        s,
        r#"<polyline fill="none" stroke="{color}" stroke-width="2" points="{}"/>"#,
        path.join(" ")
    );
    for i in 0..=4 {
        let v = ymax * f64::from(i) / 4.0;
        let _ = write!(
            s,
            r##"<text x="{}" y="{:.1}" text-anchor="end" fill="#555">{}</text>"##,
            x - 4.0,
            py(v) + 4.0,
            human(v)
        );
    }
    match labels {
        Some(labels) => {
            for ((a, b), l) in pts.iter().zip(labels) {
                let _ = write!(
                    s,
                    r##"<circle cx="{:.1}" cy="{:.1}" r="3" fill="{color}"/><text x="{:.1}" y="{}" text-anchor="middle" fill="#555">{l}</text>"##,
                    px(*a),
                    py(*b),
                    px(*a),
                    y + h + 14.0
                );
            }
        }
        None => {
            for i in 0..=4 {
                let v = xmin + (xmax - xmin) * f64::from(i) / 4.0;
                let _ = write!(
                    s,
                    r##"<text x="{:.1}" y="{}" text-anchor="middle" fill="#555">{v:.1}</text>"##,
                    px(v),
                    y + h + 14.0
                );
            }
        }
    }
}

fn human(v: f64) -> String {
    if v >= 1e6 {
        format!("{:.1}M", v / 1e6)
    } else if v >= 1e3 {
        format!("{:.1}k", v / 1e3)
    } else {
        format!("{v:.0}")
    }
}
