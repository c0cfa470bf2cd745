//! `index.html` (and `history.html`): the results as one self-contained page each, with the
//! style inline, no scripts and no external assets, so that a page works opened from a
//! downloaded CI artifact. Links go only to files of the same folder.

mod history;

use std::fmt::Write as _;

use crate::explain::{self, Explanation};
use crate::model::{Execution, TestState};
use crate::summary::{Summary, final_output, package_explanations, printable};
use crate::totals::Verdict;

pub use history::render_history;

/// The page style, inlined into every page.
const STYLE: &str = include_str!("style.css");

/// Lines of a failure's output shown on the page (the full output is in `failures/`).
const OUTPUT_LINES: usize = 200;

/// Text made safe for HTML content and attribute values; control characters shown escaped.
pub fn esc(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in printable(s).chars() {
        match c {
            '&' => o.push_str("&amp;"),
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '"' => o.push_str("&quot;"),
            '\'' => o.push_str("&#39;"),
            c => o.push(c),
        }
    }
    o
}

fn verdict_class(v: Verdict) -> &'static str {
    match v {
        Verdict::Passed => "passed",
        Verdict::Failed => "failed",
        Verdict::Errored => "errored",
    }
}

/// The page head and the opening of `<body>`.
fn head(o: &mut String, title: &str) {
    let _ = write!(
        o,
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <title>{}</title>\n<style>\n{STYLE}</style>\n</head>\n<body>\n",
        esc(title)
    );
}

fn tiles(o: &mut String, s: &Summary) {
    let t = &s.totals;
    let _ = writeln!(o, "<div class=\"tiles\">");
    let items: [(&str, String, &str); 8] = [
        ("packages", t.packages.to_string(), ""),
        ("tests", t.tests.to_string(), ""),
        ("passed", t.passed.to_string(), "good"),
        (
            "failed",
            t.failed.to_string(),
            if t.failed > 0 { "bad" } else { "" },
        ),
        ("skipped", t.skipped.to_string(), ""),
        (
            "not run",
            t.not_run.to_string(),
            if t.not_run > 0 { "bad" } else { "" },
        ),
        ("flaky", t.flaky.to_string(), ""),
        ("duration", format!("{:.1}s", s.run.duration_secs), ""),
    ];
    for (name, value, class) in items {
        let _ = writeln!(
            o,
            "<div class=\"tile {class}\" id=\"count-{}\"><b>{value}</b><span>{name}</span></div>",
            name.replace(' ', "-")
        );
    }
    let _ = writeln!(o, "</div>");
}

fn header(o: &mut String, s: &Summary, history: bool) {
    let v = verdict_class(s.verdict);
    let shard = s
        .run
        .shard
        .as_deref()
        .map(|x| format!(" (shard {})", esc(x)))
        .unwrap_or_default();
    let _ = writeln!(
        o,
        "<header class=\"{v}\">\n<h1>Go tests <code>{}</code>{shard}: <span class=\"verdict {v}\">{}</span></h1>",
        esc(&s.run.suite),
        v.to_uppercase()
    );
    let _ = writeln!(
        o,
        "<div class=\"muted\">{} mode, started {}, {}</div>",
        esc(&s.run.mode),
        esc(&s.run.started),
        esc(&s.totals.counts())
    );
    let _ = write!(
        o,
        "<nav><a href=\"summary.md\">summary.md</a><a href=\"summary.json\">summary.json</a>\
         <a href=\"junit.xml\">junit.xml</a><a href=\"events.jsonl\">events.jsonl</a>"
    );
    if history {
        let _ = write!(o, "<a href=\"history.html\">history</a>");
    }
    let _ = writeln!(o, "</nav>");
    tiles(o, s);
    let _ = writeln!(o, "</header>\n<main>");
    if let Some(e) = &s.run.error {
        let _ = writeln!(
            o,
            "<div class=\"note error\"><b>Error:</b> {}</div>",
            esc(e)
        );
    }
    for w in &s.run.warnings {
        let _ = writeln!(
            o,
            "<div class=\"note warning\"><b>Warning:</b> {}</div>",
            esc(w)
        );
    }
}

fn explanations(o: &mut String, notes: &[Explanation]) {
    if notes.is_empty() {
        return;
    }
    let _ = writeln!(o, "<ul class=\"explain\">");
    for e in notes {
        let _ = writeln!(o, "<li><b>explain</b> {}</li>", esc(&e.text()));
    }
    let _ = writeln!(o, "</ul>");
}

fn last_lines(text: &str, n: usize) -> (String, usize) {
    let lines: Vec<&str> = text.lines().collect();
    let cut = lines.len().saturating_sub(n);
    (lines[cut..].join("\n"), cut)
}

fn failure(o: &mut String, s: &Summary, pkg: &str, t: &TestState) {
    let file = s
        .failed
        .iter()
        .find(|f| f.package == pkg && f.test == t.name)
        .and_then(|f| f.output_file.clone());
    let _ = writeln!(
        o,
        "<details class=\"failure\" open><summary><code class=\"test\">{}</code> <span class=\"muted\">{} · {:.2}s · {} attempt(s)</span></summary><div>",
        esc(&t.name),
        esc(pkg),
        t.max_elapsed(),
        t.attempts.len()
    );
    explanations(o, &explain::scan(&final_output(t)));
    let (text, cut) = last_lines(&final_output(t), OUTPUT_LINES);
    if cut > 0 {
        let _ = writeln!(
            o,
            "<div class=\"muted\">{cut} earlier line(s) left out; the whole output is in the file below.</div>"
        );
    }
    let _ = writeln!(o, "<pre>{}</pre>", esc(&text));
    if let Some(f) = file {
        let _ = writeln!(
            o,
            "<div>Every attempt's output: <a href=\"{0}\">{0}</a></div>",
            esc(&f)
        );
    }
    let _ = writeln!(o, "</div></details>");
}

fn failures(o: &mut String, ex: &Execution, s: &Summary) {
    let failed = ex.failed_tests();
    if !failed.is_empty() {
        let _ = writeln!(
            o,
            "<h2 id=\"failures\">Failed tests ({})</h2>",
            failed.len()
        );
        for (p, t) in failed {
            failure(o, s, &p.name, t);
        }
    }
    let pkg_fail = ex.packages_failed_without_test();
    if !pkg_fail.is_empty() {
        let _ = writeln!(o, "<h2>Package failures</h2>\n<ul>");
        for p in pkg_fail {
            let why = p.failure_reason();
            let _ = writeln!(o, "<li><code>{}</code>: {}", esc(&p.name), esc(&why));
            explanations(o, &package_explanations(p));
            let out: String = p
                .package_failures
                .iter()
                .map(|f| f.output.as_str())
                .collect();
            if !out.trim().is_empty() {
                let _ = writeln!(o, "<pre>{}</pre>", esc(&last_lines(&out, 40).0));
            }
            let _ = writeln!(o, "</li>");
        }
        let _ = writeln!(o, "</ul>");
    }
}

fn other_outcomes(o: &mut String, ex: &Execution, s: &Summary) {
    let timed_out = ex.timed_out_packages();
    if !timed_out.is_empty() {
        let _ = writeln!(o, "<h2>Timed out</h2>\n<ul>");
        for p in timed_out {
            let _ = writeln!(
                o,
                "<li><code>{}</code> after {:.1}s</li>",
                esc(&p.name),
                p.elapsed
            );
        }
        let _ = writeln!(o, "</ul>");
    }
    let not_run = ex.not_run_tests();
    if !not_run.is_empty() {
        let _ = writeln!(o, "<h2>Not run ({})</h2>\n<ul>", not_run.len());
        for (p, t) in not_run {
            let _ = writeln!(
                o,
                "<li><code>{}</code> ({})</li>",
                esc(&t.name),
                esc(&p.name)
            );
        }
        let _ = writeln!(o, "</ul>");
    }
    if !s.flaky.is_empty() {
        let _ = writeln!(o, "<h2>Flaky (failed, then passed on rerun)</h2>\n<ul>");
        for f in &s.flaky {
            let _ = writeln!(
                o,
                "<li><code>{}</code> ({}), {} attempts</li>",
                esc(&f.test),
                esc(&f.package),
                f.attempts
            );
        }
        let _ = writeln!(o, "</ul>");
    }
}

/// Rows of `(label, seconds)` with a bar scaled to the largest.
fn bar_table(o: &mut String, head: &[&str], rows: &[(String, String, f64)]) {
    let max = rows.iter().map(|r| r.2).fold(0.0, f64::max);
    let _ = write!(o, "<table>\n<tr>");
    for h in head {
        let _ = write!(o, "<th>{h}</th>");
    }
    let _ = writeln!(o, "<th class=\"num\">seconds</th><th></th></tr>");
    for (a, b, secs) in rows {
        let width = if max > 0.0 { secs / max * 240.0 } else { 0.0 };
        let _ = write!(o, "<tr><td><code>{}</code></td>", esc(a));
        if head.len() > 1 {
            let _ = write!(o, "<td>{}</td>", esc(b));
        }
        let _ = writeln!(
            o,
            "<td class=\"num\">{secs:.2}</td><td><span class=\"bar\" style=\"width:{width:.0}px\"></span></td></tr>"
        );
    }
    let _ = writeln!(o, "</table>");
}

fn timings(o: &mut String, s: &Summary) {
    let _ = writeln!(o, "<h2 id=\"timings\">Timings</h2>");
    let _ = writeln!(
        o,
        "<p>Wall clock {:.1}s; {} bytes uploaded. Sub-phases overlap in host mode.</p>",
        s.run.duration_secs, s.uploaded_bytes
    );
    if !s.timings.is_empty() {
        let rows: Vec<_> = s
            .timings
            .iter()
            .map(|(k, v)| (k.clone(), String::new(), *v))
            .collect();
        bar_table(o, &["sub-phase"], &rows);
    }
    let slow: Vec<_> = s
        .timed_slowest()
        .map(|t| (t.test.clone(), t.package.clone(), t.elapsed))
        .collect();
    if !slow.is_empty() {
        let _ = writeln!(o, "<h3>Slowest tests</h3>");
        bar_table(o, &["test", "package"], &slow);
    }
}

fn provenance(o: &mut String, s: &Summary) {
    let pv = &s.provenance;
    let _ = writeln!(o, "<h2 id=\"provenance\">Provenance</h2>\n<table>");
    let run_id = ("run id", Some(s.run.id.clone()));
    let run = [
        ("mode", Some(s.run.mode.clone())),
        ("go test flags", Some(s.run.flags.join(" "))),
    ];
    let extra = pv.extra.iter().map(|(k, v)| (k.as_str(), Some(v.clone())));
    let rows = std::iter::once(run_id)
        .chain(pv.labelled_facts())
        .chain(run)
        .chain(extra);
    for (k, v) in rows {
        if let Some(v) = v.filter(|v| !v.is_empty()) {
            let _ = writeln!(
                o,
                "<tr><th>{}</th><td><code>{}</code></td></tr>",
                esc(k),
                esc(&v)
            );
        }
    }
    let _ = writeln!(o, "</table>");
}

/// `index.html` of a results folder; `history` adds a link to `history.html`.
pub fn render_index(ex: &Execution, s: &Summary, history: bool) -> String {
    let mut o = String::new();
    head(
        &mut o,
        &format!(
            "{}: {} — harness",
            s.run.suite,
            verdict_class(s.verdict).to_uppercase()
        ),
    );
    header(&mut o, s, history);
    failures(&mut o, ex, s);
    other_outcomes(&mut o, ex, s);
    timings(&mut o, s);
    provenance(&mut o, s);
    let _ = writeln!(
        o,
        "</main>\n<footer>Written by harness {}. Self-contained: no scripts, no external assets.</footer>\n</body>\n</html>",
        esc(&s.provenance.harness_version)
    );
    o
}
