//! `summary.json`, `summary.md` and the console summary: three renderers of the same model.

mod markdown;

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::{Deserialize, Serialize};

use crate::explain::{self, Explanation};
use crate::model::{Execution, PackageState, PackageStatus, TestState, Totals, Verdict};

pub use markdown::render_markdown;

/// Where the results came from. The caller (harness) fills it from the installed efW build and
/// the guest; suites only records it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Provenance {
    /// harness's version.
    pub harness_version: String,
    /// How the efW build was chosen (e.g. `scheduled-run`, `release`, `local`).
    pub efw_source: Option<String>,
    /// The GitHub Actions run id of the efW build.
    pub efw_run_id: Option<String>,
    /// The efW commit.
    pub efw_sha: Option<String>,
    /// The efW version (also given to the tests as `CI_EFW_VERSION`).
    pub efw_version: Option<String>,
    /// The guest OS (e.g. `Windows 11 Pro N`, `linux`).
    pub guest_os: Option<String>,
    /// The guest OS build (e.g. `26100.2605`).
    pub guest_build: Option<String>,
    /// The git commit of the library under test.
    pub library_commit: Option<String>,
    /// Anything else worth recording.
    pub extra: BTreeMap<String, String>,
}

impl Provenance {
    /// The named facts with the labels the reports give them (`None` or empty when unknown).
    pub(crate) fn labelled_facts(&self) -> [(&str, Option<String>); 8] {
        [
            ("harness", Some(self.harness_version.clone())),
            ("efW source", self.efw_source.clone()),
            ("efW run", self.efw_run_id.clone()),
            ("efW commit", self.efw_sha.clone()),
            ("efW version", self.efw_version.clone()),
            ("guest OS", self.guest_os.clone()),
            ("guest build", self.guest_build.clone()),
            ("library commit", self.library_commit.clone()),
        ]
    }
}

/// Facts about one run that are not in the event stream.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct RunMeta {
    /// A unique id of this run: the history database keys runs by it. [`crate::results::write`]
    /// makes one when empty; folders written before it existed get one from their
    /// `summary.json` ([`crate::results::folder_run_id`]).
    #[serde(skip_serializing_if = "String::is_empty")]
    pub id: String,
    /// The ids of the shard runs a merged run was made of (`harness report merge`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub merged_from: Vec<String>,
    /// The suite's name.
    pub suite: String,
    /// `host` or `guest`.
    pub mode: String,
    /// `I/N` when sharded.
    pub shard: Option<String>,
    /// RFC 3339 start time.
    pub started: String,
    /// Wall-clock seconds.
    pub duration_secs: f64,
    /// The `go test` flags used.
    pub flags: Vec<String>,
    /// A harness-level error that stopped the run early (target lost, upload failed).
    pub error: Option<String>,
    /// Problems that did not stop the run but may change its results (e.g. a dangling symlink
    /// in testdata that could not be uploaded).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
    /// Every time the target crashed during the run (`kernel panic`, `bugcheck 0x…`), oldest
    /// first; the packages running then are errored "guest crashed (…)".
    #[serde(skip_serializing_if = "Vec::is_empty", default)]
    pub crashes: Vec<String>,
    /// Seconds spent in each sub-phase (`list`, `build`, `upload`, `run`, `rerun`; see
    /// [`crate::timing`]). Written at the top of `summary.json`, not under `run`.
    #[serde(skip)]
    pub timings: BTreeMap<String, f64>,
    /// Bytes of file content sent to the target. Written at the top of `summary.json`.
    #[serde(skip)]
    pub uploaded_bytes: u64,
}

/// A test in a summary list.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TestRef {
    /// Import path.
    pub package: String,
    /// Test name.
    pub test: String,
    /// Longest attempt, seconds.
    pub elapsed: f64,
    /// Number of attempts.
    pub attempts: usize,
    /// The output file in the results folder (failed tests).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub output_file: Option<String>,
    /// The efW and Windows error codes in the final attempt's output, explained (failed tests).
    #[serde(skip_serializing_if = "Vec::is_empty", default)]
    pub explanations: Vec<Explanation>,
}

/// One package in `summary.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PackageSummary {
    /// Import path.
    pub name: String,
    /// Status of its last run.
    pub status: PackageStatus,
    /// Seconds (first run).
    pub elapsed: f64,
    /// Tests seen.
    pub tests: usize,
    /// Hit its timeout.
    pub timed_out: bool,
    /// Infrastructure error.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub error: Option<String>,
    /// Build failed.
    pub build_failed: bool,
    /// The efW and Windows error codes in the output of a package that failed outside any
    /// test, explained.
    #[serde(skip_serializing_if = "Vec::is_empty", default)]
    pub explanations: Vec<Explanation>,
}

/// `summary.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    /// Format version of this file.
    pub schema: u32,
    /// Run facts.
    pub run: RunMeta,
    /// What the run amounts to.
    pub verdict: Verdict,
    /// The process exit code (0 passed, 1 test failures, 2 infrastructure).
    pub exit_code: u8,
    /// Counts.
    pub totals: Totals,
    /// Where the results came from.
    pub provenance: Provenance,
    /// Per package.
    pub packages: Vec<PackageSummary>,
    /// Tests that failed in the end.
    pub failed: Vec<TestRef>,
    /// Tests that failed and then passed.
    pub flaky: Vec<TestRef>,
    /// The slowest tests.
    pub slowest: Vec<TestRef>,
    /// Seconds spent in each sub-phase (`list`, `build`, `upload`, `run`, `rerun`): the span from
    /// the first moment it was busy to the last (host mode overlaps them).
    #[serde(default)]
    pub timings: BTreeMap<String, f64>,
    /// Bytes of file content sent to the target (0 when everything was already there).
    #[serde(default)]
    pub uploaded_bytes: u64,
}

impl Summary {
    /// The slowest tests that took any measurable time, slowest first.
    pub(crate) fn timed_slowest(&self) -> impl Iterator<Item = &TestRef> {
        self.slowest.iter().filter(|t| t.elapsed > 0.0)
    }
}

fn test_ref(pkg: &str, t: &TestState) -> TestRef {
    TestRef {
        package: pkg.to_string(),
        test: t.name.clone(),
        elapsed: t.max_elapsed(),
        attempts: t.attempts.len(),
        output_file: None,
        explanations: Vec::new(),
    }
}

/// Builds the summary. `files` maps `(package, test)` of failed tests to their output file.
pub fn summarize(
    ex: &Execution,
    meta: &RunMeta,
    provenance: &Provenance,
    files: &BTreeMap<(String, String), String>,
) -> Summary {
    let mut verdict = ex.verdict();
    if meta.error.is_some() || !meta.crashes.is_empty() {
        verdict = Verdict::Errored;
    }
    let failed = ex
        .failed_tests()
        .into_iter()
        .map(|(p, t)| {
            let mut r = test_ref(&p.name, t);
            r.output_file = files.get(&(p.name.clone(), t.name.clone())).cloned();
            r.explanations = explain::scan(&final_output(t));
            r
        })
        .collect();
    Summary {
        schema: 1,
        run: meta.clone(),
        verdict,
        exit_code: verdict.exit_code(),
        totals: ex.totals(),
        provenance: provenance.clone(),
        packages: ex
            .packages
            .iter()
            .map(|p| PackageSummary {
                name: p.name.clone(),
                status: p.status,
                elapsed: p.elapsed,
                tests: p.tests.len(),
                timed_out: p.timed_out,
                error: p.error.clone(),
                build_failed: p.build_failed,
                explanations: package_explanations(p),
            })
            .collect(),
        failed,
        flaky: ex
            .flaky_tests()
            .into_iter()
            .map(|(p, t)| test_ref(&p.name, t))
            .collect(),
        slowest: ex
            .slowest(10)
            .into_iter()
            .map(|(p, t)| test_ref(&p.name, t))
            .collect(),
        timings: meta.timings.clone(),
        uploaded_bytes: meta.uploaded_bytes,
    }
}

/// The output of a test's final attempt, with the harness's note, if any.
pub fn final_output(t: &TestState) -> String {
    let Some(a) = t.attempts.last() else {
        return String::new();
    };
    let mut text = a.output.clone();
    if let Some(s) = &a.synthesized {
        text.push_str(s);
    }
    text
}

/// The error codes in the output of a package that failed outside any test (empty otherwise).
pub fn package_explanations(p: &PackageState) -> Vec<Explanation> {
    if !p.failed_without_test() {
        return Vec::new();
    }
    let mut text: String = p
        .package_failures
        .iter()
        .map(|f| f.output.as_str())
        .collect();
    if let Some(e) = &p.error {
        text.push_str(e);
    }
    explain::scan(&text)
}

/// The last `n` lines of a test's final attempt (with the harness's note, if any).
pub fn excerpt(t: &TestState, n: usize) -> String {
    let text = final_output(t);
    let lines: Vec<&str> = text.lines().collect();
    printable(&lines[lines.len().saturating_sub(n)..].join("\n"))
}

/// Control characters (terminal escapes, NUL…) shown as `\u{1b}` instead of being sent to a
/// terminal or a Markdown page; tabs and newlines stay.
pub fn printable(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if c.is_control() && c != '\n' && c != '\t' {
            out.push_str(&c.escape_unicode().to_string());
        } else {
            out.push(c);
        }
    }
    out
}

fn totals_line(t: &Totals) -> String {
    format!(
        "{} tests in {} packages: {}, {} flaky ({} attempts)",
        t.tests,
        t.packages,
        t.counts(),
        t.flaky,
        t.attempts
    )
}

/// Packages whose tests the binary never reached, with why and which: `(package, why, tests)`.
fn not_run_groups(ex: &Execution) -> Vec<(String, String, Vec<String>)> {
    let mut out: Vec<(String, String, Vec<String>)> = Vec::new();
    for (p, t) in ex.not_run_tests() {
        let why = t
            .attempts
            .last()
            .and_then(|a| a.output.lines().next())
            .and_then(|l| l.strip_prefix(crate::event::NOT_RUN_MARK))
            .unwrap_or("the test binary exited first")
            .to_string();
        match out.iter_mut().find(|g| g.0 == p.name && g.1 == why) {
            Some(g) => g.2.push(t.name.clone()),
            None => out.push((p.name.clone(), why, vec![t.name.clone()])),
        }
    }
    out
}

/// `a, b, c` or `a, b, c and 7 more`.
fn some_names(names: &[String], n: usize) -> String {
    let shown = names.iter().take(n).cloned().collect::<Vec<_>>().join(", ");
    if names.len() > n {
        format!("{shown} and {} more", names.len() - n)
    } else {
        shown
    }
}

fn verdict_word(v: Verdict) -> &'static str {
    match v {
        Verdict::Passed => "PASSED",
        Verdict::Failed => "FAILED",
        Verdict::Errored => "ERRORED",
    }
}

/// The console summary printed at the end of `harness test`.
pub fn render_console(ex: &Execution, s: &Summary) -> String {
    let mut o = String::new();
    for (p, t) in ex.failed_tests() {
        let _ = writeln!(o, "--- FAIL: {} ({})", t.name, p.name);
        for l in excerpt(t, 10).lines() {
            let _ = writeln!(o, "    {l}");
        }
        for e in explain::scan(&final_output(t)) {
            let _ = writeln!(o, "    explain: {}", printable(&e.text()));
        }
    }
    for p in ex.packages_failed_without_test() {
        let _ = writeln!(o, "--- FAIL: package {}: {}", p.name, p.failure_reason());
        for e in package_explanations(p) {
            let _ = writeln!(o, "    explain: {}", printable(&e.text()));
        }
    }
    for p in ex.timed_out_packages() {
        let _ = writeln!(
            o,
            "--- TIMED OUT: package {} after {:.1}s (its process tree was killed)",
            p.name, p.elapsed
        );
    }
    for (pkg, why, tests) in not_run_groups(ex) {
        let _ = writeln!(
            o,
            "--- NOT RUN: {} test(s) in {pkg}: {why}: {}",
            tests.len(),
            some_names(&tests, 8)
        );
    }
    if !s.flaky.is_empty() {
        let _ = writeln!(o, "Flaky (failed, then passed on rerun):");
        for f in &s.flaky {
            let _ = writeln!(
                o,
                "    {} ({}) after {} attempts",
                f.test, f.package, f.attempts
            );
        }
    }
    let slow: Vec<_> = s.timed_slowest().take(5).collect();
    if !slow.is_empty() {
        let _ = writeln!(o, "Slowest:");
        for t in slow {
            let _ = writeln!(o, "    {:>8.2}s {} ({})", t.elapsed, t.test, t.package);
        }
    }
    for c in &s.run.crashes {
        let _ = writeln!(o, "Guest crashed: {}", printable(c));
    }
    for w in &s.run.warnings {
        let _ = writeln!(o, "Warning: {}", printable(w));
    }
    if let Some(e) = &s.run.error {
        let _ = writeln!(o, "Error: {e}");
    }
    let _ = writeln!(
        o,
        "{}: {} in {:.1}s",
        verdict_word(s.verdict),
        totals_line(&s.totals),
        s.run.duration_secs
    );
    o
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn printable_escapes_controls_only() {
        assert_eq!(
            printable("a\u{1b}[31mb\tc\n\u{0}"),
            "a\\u{1b}[31mb\tc\n\\u{0}"
        );
        assert_eq!(printable("]]> <&> é"), "]]> <&> é");
    }
}
