//! junit.xml, summary.md and summary.json as golden files, built from recorded `go test -json`
//! streams of the fixture module (a gotestsum habit): what a CI system reads is checked byte for
//! byte, so a change to the reports shows up as a diff to review.
//!
//! - `UPDATE_GOLDEN=1 cargo test -p suites --test golden_reports` rewrites the golden files from
//!   the recorded streams.
//! - `RECORD_STREAMS=1 cargo test -p suites --test golden_reports` first records the streams
//!   again with the real `go` on `PATH` (then review both diffs).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use suites::event::parse_line;
use suites::{Execution, Provenance, RunMeta, RunRecord};

/// The fixture packages of the first attempt: passing, failing (also a subtest), skipped,
/// panicking, no test files, and a test that fails once.
const FIRST: &[&str] = &[
    "./pass",
    "./fail",
    "./skip",
    "./panicky",
    "./notests",
    "./flaky",
];
/// The rerun of what failed: the flaky test passes now, the broken one fails again.
const RERUNS: &[(&str, &str)] = &[("./flaky", "^TestFlaky$"), ("./fail", "^TestBroken$")];

fn dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden/reports")
}

fn gomod() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../testsupport/gomod")
}

/// `go test -json ARGS` in the fixture module, with the machine's paths replaced by fixed ones.
fn go_test_json(args: &[&str], state: &Path) -> String {
    let module = gomod().canonicalize().unwrap();
    let out = Command::new("go")
        .args(["test", "-json", "-count=1"])
        .args(args)
        .current_dir(&module)
        .env("HARNESS_FIXTURE_STATE", state)
        .output()
        .expect("`go` on PATH to record the streams");
    let goroot = Command::new("go").args(["env", "GOROOT"]).output().unwrap();
    let goroot = String::from_utf8(goroot.stdout).unwrap();
    String::from_utf8(out.stdout)
        .unwrap()
        .replace(&module.display().to_string(), "/src/gomod")
        .replace(goroot.trim(), "/goroot")
}

fn record() {
    let state = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir()).unwrap();
    std::fs::write(dir().join("first.jsonl"), go_test_json(FIRST, state.path())).unwrap();
    let mut reruns = String::new();
    for (pkg, run) in RERUNS {
        reruns.push_str(&go_test_json(&["-run", run, pkg], state.path()));
    }
    std::fs::write(dir().join("rerun.jsonl"), reruns).unwrap();
}

/// The reports written from the recorded streams, the run id (made at write time) normalised.
fn reports() -> BTreeMap<&'static str, String> {
    let mut lines = Vec::new();
    for f in ["first.jsonl", "rerun.jsonl"] {
        let text = std::fs::read_to_string(dir().join(f))
            .expect("recorded stream missing: run with RECORD_STREAMS=1");
        lines.extend(text.lines().map(str::to_string));
    }
    let evs: Vec<_> = lines.iter().filter_map(|l| parse_line(l)).collect();
    assert!(
        evs.len() > 40,
        "the recorded streams hold {} events",
        evs.len()
    );
    let rec = RunRecord {
        execution: Execution::from_events(&evs),
        events: lines,
        other_output: Vec::new(),
        meta: RunMeta {
            suite: "fixture".into(),
            mode: "host".into(),
            started: "2026-12-01T10:00:00Z".into(),
            duration_secs: 12.5,
            flags: vec!["-count=1".into()],
            timings: BTreeMap::from([("build".into(), 4.0), ("run".into(), 6.0)]),
            ..Default::default()
        },
        package_dirs: Vec::new(),
        cores: Vec::new(),
    };
    let prov = Provenance {
        harness_version: "0.1.0".into(),
        guest_os: Some("Debian 12".into()),
        ..Default::default()
    };
    let tmp = tempfile::tempdir().unwrap();
    let w = suites::write(tmp.path(), &rec, &prov).unwrap();
    ["junit.xml", "summary.md", "summary.json"]
        .into_iter()
        .map(|f| {
            let text = std::fs::read_to_string(tmp.path().join(f)).unwrap();
            (f, text.replace(&w.summary.run.id, "RUN-ID"))
        })
        .collect()
}

#[test]
fn reports_match_the_golden_files() {
    if std::env::var_os("RECORD_STREAMS").is_some() {
        record();
    }
    let update =
        std::env::var_os("UPDATE_GOLDEN").is_some() || std::env::var_os("RECORD_STREAMS").is_some();
    let mut differ = Vec::new();
    for (name, got) in reports() {
        let path = dir().join(name);
        if update {
            std::fs::write(&path, &got).unwrap();
        }
        let want = std::fs::read_to_string(&path)
            .expect("golden file missing: run with UPDATE_GOLDEN=1 and review the diff");
        if got != want {
            differ.push(path.display().to_string());
        }
    }
    assert!(
        differ.is_empty(),
        "{} differ; if the change is intended, rerun with UPDATE_GOLDEN=1 and review `git diff`",
        differ.join(", ")
    );
}

/// The recorded streams are what they claim: every outcome the goldens are meant to cover.
#[test]
fn the_streams_cover_pass_fail_skip_panic_flaky_and_no_tests() {
    let r = reports();
    let s: serde_json::Value = serde_json::from_str(&r["summary.json"]).unwrap();
    let t = &s["totals"];
    for (key, least) in [("passed", 1), ("failed", 2), ("skipped", 1), ("flaky", 1)] {
        assert!(t[key].as_u64().unwrap() >= least, "{key}: {t}");
    }
    assert!(t["packages_no_tests"].as_u64().unwrap() >= 1, "{t}");
    assert!(r["junit.xml"].contains("assignment to entry in nil map"));
    assert!(r["summary.md"].contains("TestBroken"));
}
