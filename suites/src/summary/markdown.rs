//! `summary.md`: the run for `$GITHUB_STEP_SUMMARY`, section by section.

use super::*;

fn html_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// One list item per explained error code, indented by `indent`.
fn markdown_explanations(o: &mut String, notes: &[Explanation], indent: &str) {
    if notes.is_empty() {
        return;
    }
    if indent.is_empty() {
        let _ = writeln!(o, "Error codes in this output (`harness explain`):\n");
    }
    for e in notes {
        let _ = writeln!(
            o,
            "{indent}- **explain** {}",
            html_escape(&printable(&e.text()))
        );
    }
    if indent.is_empty() {
        o.push('\n');
    }
}

/// The provenance section of `summary.md`.
fn markdown_provenance(o: &mut String, s: &Summary) {
    let pv = &s.provenance;
    let _ = writeln!(o, "### Provenance\n");
    let mode = ("mode", Some(s.run.mode.clone()));
    for (k, v) in pv.labelled_facts().into_iter().chain([mode]) {
        if let Some(v) = v.filter(|v| !v.is_empty()) {
            let _ = writeln!(o, "- {k}: `{}`", html_escape(&v));
        }
    }
    for (k, v) in &pv.extra {
        let _ = writeln!(o, "- {}: `{}`", html_escape(k), html_escape(v));
    }
}

/// `summary.md`, ready for `$GITHUB_STEP_SUMMARY`.
pub fn render_markdown(ex: &Execution, s: &Summary) -> String {
    let mut o = String::new();
    heading(&mut o, s);
    timed_out_and_not_run(&mut o, ex);
    failures(&mut o, ex);
    flaky_and_slowest(&mut o, s);
    markdown_provenance(&mut o, s);
    o
}

/// The title, the totals table and the run's error, crashes and warnings.
fn heading(o: &mut String, s: &Summary) {
    let t = &s.totals;
    let shard = s
        .run
        .shard
        .as_deref()
        .map(|x| format!(" (shard {x})"))
        .unwrap_or_default();
    let _ = writeln!(
        o,
        "## Go tests `{}`{shard}: {}\n",
        s.run.suite,
        verdict_word(s.verdict)
    );
    let _ = writeln!(
        o,
        "| packages | tests | passed | failed | skipped | not run | flaky | duration |"
    );
    let _ = writeln!(o, "|---:|---:|---:|---:|---:|---:|---:|---:|");
    let _ = writeln!(
        o,
        "| {} | {} | {} | {} | {} | {} | {} | {:.1}s |\n",
        t.packages, t.tests, t.passed, t.failed, t.skipped, t.not_run, t.flaky, s.run.duration_secs
    );
    if let Some(e) = &s.run.error {
        let _ = writeln!(o, "**Error:** {}\n", html_escape(e));
    }
    for c in &s.run.crashes {
        let _ = writeln!(o, "**Guest crashed:** {}\n", html_escape(c));
    }
    for w in &s.run.warnings {
        let _ = writeln!(o, "**Warning:** {}\n", html_escape(w));
    }
}

/// Packages killed by their timeout, and tests their binary never reached.
fn timed_out_and_not_run(o: &mut String, ex: &Execution) {
    let timed_out = ex.timed_out_packages();
    if !timed_out.is_empty() {
        let _ = writeln!(o, "### Timed out\n");
        for p in timed_out {
            let _ = writeln!(o, "- `{}` after {:.1}s", p.name, p.elapsed);
        }
        o.push('\n');
    }
    let not_run = not_run_groups(ex);
    if !not_run.is_empty() {
        let _ = writeln!(o, "### Not run\n");
        for (pkg, why, tests) in not_run {
            let _ = writeln!(
                o,
                "- `{pkg}`: {} test(s), {}: {}",
                tests.len(),
                html_escape(&why),
                html_escape(&some_names(&tests, 20))
            );
        }
        o.push('\n');
    }
}

/// Failed tests with the end of their output, then packages that failed outside any test.
fn failures(o: &mut String, ex: &Execution) {
    let failed = ex.failed_tests();
    if !failed.is_empty() {
        let _ = writeln!(o, "### Failed\n");
        for (p, t) in failed {
            let _ = writeln!(
                o,
                "<details><summary><code>{}</code> ({})</summary>\n",
                html_escape(&t.name),
                html_escape(&p.name)
            );
            let _ = writeln!(
                o,
                "<pre>{}</pre>\n</details>\n",
                html_escape(&excerpt(t, 30))
            );
            markdown_explanations(o, &explain::scan(&final_output(t)), "");
        }
    }
    let pkg_fail = ex.packages_failed_without_test();
    if !pkg_fail.is_empty() {
        let _ = writeln!(o, "### Package failures\n");
        for p in pkg_fail {
            let _ = writeln!(o, "- `{}`: {}", p.name, html_escape(&p.failure_reason()));
            markdown_explanations(o, &package_explanations(p), "  ");
        }
        o.push('\n');
    }
}

/// Flaky tests, then the slowest ones.
fn flaky_and_slowest(o: &mut String, s: &Summary) {
    if !s.flaky.is_empty() {
        let _ = writeln!(o, "### Flaky\n");
        for f in &s.flaky {
            let _ = writeln!(o, "- `{}` ({}), {} attempts", f.test, f.package, f.attempts);
        }
        o.push('\n');
    }
    let slow: Vec<_> = s.timed_slowest().take(10).collect();
    if !slow.is_empty() {
        let _ = writeln!(
            o,
            "### Slowest\n\n| test | package | seconds |\n|---|---|---:|"
        );
        for t in slow {
            let _ = writeln!(o, "| `{}` | {} | {:.2} |", t.test, t.package, t.elapsed);
        }
        o.push('\n');
    }
}
