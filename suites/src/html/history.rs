//! `history.html`: each test's status over the last runs, and durations as inline SVG.

use std::fmt::Write as _;

use super::{esc, head};
use crate::history::{Cell, Change, Report, TestSeries, Window, label};

/// A line plot of `values` (one per run, `None` where missing) as inline SVG.
fn plot(values: &[Option<f64>], colors: &[&str], width: f64, height: f64, axis: bool) -> String {
    let max = values.iter().flatten().copied().fold(0.0, f64::max);
    let (left, bottom) = if axis { (44.0, 16.0) } else { (2.0, 2.0) };
    let n = values.len().max(2) as f64 - 1.0;
    let x = |i: usize| left + i as f64 / n * (width - left - 4.0);
    let y = |v: f64| {
        let scale = if max > 0.0 { v / max } else { 0.0 };
        4.0 + (1.0 - scale) * (height - bottom - 6.0)
    };
    let mut o = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{width:.0}\" height=\"{height:.0}\" viewBox=\"0 0 {width:.0} {height:.0}\" role=\"img\">"
    );
    if axis {
        let _ = write!(
            o,
            "<line x1=\"{left}\" y1=\"{0:.1}\" x2=\"{1:.1}\" y2=\"{0:.1}\" stroke=\"#d1d9e0\"/>\
             <text x=\"0\" y=\"12\">{max:.1}s</text><text x=\"0\" y=\"{0:.1}\">0s</text>\
             <text x=\"{left}\" y=\"{2:.1}\">oldest</text><text x=\"{3:.1}\" y=\"{2:.1}\">newest</text>",
            y(0.0),
            width - 4.0,
            height - 2.0,
            width - 44.0,
        );
    }
    let points: Vec<String> = values
        .iter()
        .enumerate()
        .filter_map(|(i, v)| v.map(|v| format!("{:.1},{:.1}", x(i), y(v))))
        .collect();
    let _ = write!(
        o,
        "<polyline fill=\"none\" stroke=\"#57606a\" stroke-width=\"1.5\" points=\"{}\"/>",
        points.join(" ")
    );
    for (i, v) in values.iter().enumerate() {
        if let Some(v) = v {
            let color = colors.get(i).copied().unwrap_or("#57606a");
            let r = if axis { 3.5 } else { 1.8 };
            let _ = write!(
                o,
                "<circle cx=\"{:.1}\" cy=\"{:.1}\" r=\"{r}\" fill=\"{color}\"/>",
                x(i),
                y(*v)
            );
        }
    }
    o.push_str("</svg>");
    o
}

fn verdict_color(v: &str) -> &'static str {
    match v {
        "passed" | "pass" => "#1a7f37",
        "failed" | "errored" | "fail" => "#d1242f",
        _ => "#8c959f",
    }
}

fn cell_class(c: &Option<Cell>) -> &'static str {
    match c {
        None => "none",
        Some(c) if c.flaky => "flaky",
        Some(c) => match c.status {
            "pass" => "pass",
            "fail" => "fail",
            "skip" => "skip",
            _ => "notrun",
        },
    }
}

/// Tests worth a row: not passing (or skipping) cleanly in every run that had them.
fn troubled(t: &TestSeries) -> bool {
    t.cells
        .iter()
        .flatten()
        .any(|c| c.flaky || !matches!(c.status, "pass" | "skip"))
}

fn grid(o: &mut String, w: &Window) {
    let rows: Vec<&TestSeries> = w.tests.iter().filter(|t| troubled(t)).collect();
    let calm = w.tests.len() - rows.len();
    let _ = writeln!(
        o,
        "<h2 id=\"status\">Status over the last {} runs</h2>\n<p class=\"legend\">oldest on the left\
         <span class=\"c pass\"></span>pass<span class=\"c fail\"></span>fail\
         <span class=\"c flaky\"></span>flaky<span class=\"c skip\"></span>skipped or not run\
         <span class=\"c none\"></span>not in that run</p>",
        w.runs.len()
    );
    if rows.is_empty() {
        let _ = writeln!(
            o,
            "<p>Every one of the {calm} tests and packages passed or was skipped in every run that had it.</p>"
        );
        return;
    }
    let _ = writeln!(o, "<table class=\"grid\">");
    for t in rows {
        let _ = write!(o, "<tr>");
        for (c, run) in t.cells.iter().zip(&w.runs) {
            let _ = write!(
                o,
                "<td class=\"c {}\" title=\"{}\"></td>",
                cell_class(c),
                esc(&format!(
                    "{}: {}",
                    run.started,
                    c.map_or("not in this run", |c| c.status)
                ))
            );
        }
        let series: Vec<Option<f64>> = t.cells.iter().map(|c| c.map(|c| c.elapsed)).collect();
        let colors: Vec<&str> = t
            .cells
            .iter()
            .map(|c| verdict_color(c.map_or("", |c| c.status)))
            .collect();
        let _ = writeln!(
            o,
            "<td>{}</td><td><code>{}</code></td></tr>",
            plot(&series, &colors, 120.0, 22.0, false),
            esc(&t.label())
        );
    }
    let _ = writeln!(o, "</table>");
    if calm > 0 {
        let _ = writeln!(
            o,
            "<p class=\"muted\">{calm} other tests and packages passed or were skipped in every run that had them.</p>"
        );
    }
}

fn changes(o: &mut String, title: &str, id: &str, list: &[Change]) {
    let _ = writeln!(o, "<h2 id=\"{id}\">{title} ({})</h2>", list.len());
    if list.is_empty() {
        return;
    }
    let _ = writeln!(o, "<ul>");
    for c in list {
        let label = label(&c.package, &c.test);
        let efw = c
            .since
            .efw_version
            .as_deref()
            .map(|v| format!(", efW {}", esc(v)))
            .unwrap_or_default();
        let _ = writeln!(
            o,
            "<li><code>{}</code>: {} run(s) in a row since {}{efw}</li>",
            esc(&label),
            c.streak,
            esc(&c.since.started)
        );
    }
    let _ = writeln!(o, "</ul>");
}

fn flaky_and_slow(o: &mut String, r: &Report) {
    let _ = writeln!(o, "<h2 id=\"flaky\">Flaky rate ({})</h2>", r.flaky.len());
    if !r.flaky.is_empty() {
        let _ = writeln!(
            o,
            "<table><tr><th class=\"num\">rate</th><th class=\"num\">flaky</th><th class=\"num\">failed</th><th>test</th></tr>"
        );
        for f in &r.flaky {
            let _ = writeln!(
                o,
                "<tr><td class=\"num\">{:.0}%</td><td class=\"num\">{}/{}</td><td class=\"num\">{}</td><td><code>{}</code> ({})</td></tr>",
                f.rate * 100.0,
                f.flaky_runs,
                f.runs,
                f.failed_runs,
                esc(&f.test),
                esc(&f.package)
            );
        }
        let _ = writeln!(o, "</table>");
    }
    let _ = writeln!(o, "<h2 id=\"slowest\">Slowest tests and their trend</h2>");
    let _ = writeln!(
        o,
        "<table><tr><th class=\"num\">newest</th><th class=\"num\">trend</th><th>durations</th><th>test</th></tr>"
    );
    for s in &r.slowest {
        let trend = s.trend_pct.map(|p| format!("{p:+.0}%")).unwrap_or_default();
        let series: Vec<Option<f64>> = s.series.iter().copied().map(Some).collect();
        let _ = writeln!(
            o,
            "<tr><td class=\"num\">{:.2}s</td><td class=\"num\">{trend}</td><td>{}</td><td><code>{}</code> ({})</td></tr>",
            s.latest_secs,
            plot(&series, &[], 160.0, 24.0, false),
            esc(&s.test),
            esc(&s.package)
        );
    }
    let _ = writeln!(o, "</table>");
}

/// `history.html`: the runs of `w` (a window of one suite, oldest first) and `r`, its report.
pub fn render_history(w: &Window, r: &Report, suite: &str) -> String {
    let mut o = String::new();
    head(&mut o, &format!("{suite}: history — harness"));
    let last = w
        .runs
        .last()
        .map(|r| r.verdict.as_str())
        .unwrap_or("passed");
    let _ = writeln!(
        o,
        "<header class=\"{}\">\n<h1>History of <code>{}</code>: {} runs</h1>\n<nav><a href=\"index.html\">this run</a></nav>\n</header>\n<main>",
        esc(last),
        esc(suite),
        w.runs.len()
    );
    let _ = writeln!(o, "<h2 id=\"durations\">Run durations</h2>");
    let durations: Vec<Option<f64>> = w.runs.iter().map(|r| Some(r.duration_secs)).collect();
    let colors: Vec<&str> = w.runs.iter().map(|r| verdict_color(&r.verdict)).collect();
    let _ = writeln!(o, "{}", plot(&durations, &colors, 640.0, 160.0, true));
    changes(&mut o, "Newly failing", "newly-failing", &r.newly_failing);
    changes(&mut o, "Newly passing", "newly-passing", &r.newly_passing);
    grid(&mut o, w);
    flaky_and_slow(&mut o, r);
    let _ = writeln!(
        o,
        "<h2 id=\"runs\">Runs</h2>\n<table><tr><th>started</th><th>verdict</th><th class=\"num\">seconds</th><th>efW</th><th>harness</th><th>run id</th></tr>"
    );
    for run in w.runs.iter().rev() {
        let _ = writeln!(
            o,
            "<tr><td>{}</td><td>{}</td><td class=\"num\">{:.1}</td><td>{}</td><td>{}</td><td><code>{}</code></td></tr>",
            esc(&run.started),
            esc(&run.verdict),
            run.duration_secs,
            esc(run.efw_version.as_deref().unwrap_or("")),
            esc(&run.harness_version),
            esc(&run.id)
        );
    }
    let _ = writeln!(
        o,
        "</table>\n</main>\n<footer>Written by harness from its history database. Self-contained: no scripts, no external assets.</footer>\n</body>\n</html>"
    );
    o
}
