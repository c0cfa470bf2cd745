use std::path::{Path, PathBuf};

use super::*;
use crate::event::parse_line;
use crate::summary::{Provenance, RunMeta};
use crate::{RunRecord, Written};

/// `(test, how, seconds)`: how is `pass`, `fail` or `flaky` (failed, then passed on rerun).
type Spec<'a> = &'a [(&'a str, &'a str, f64)];

const PKG: &str = "example.com/m/p";

fn events(tests: Spec) -> Vec<String> {
    let mut v = vec![format!(r#"{{"Action":"start","Package":"{PKG}"}}"#)];
    let mut any_fail = false;
    for (t, how, secs) in tests {
        let first = if *how == "pass" { "pass" } else { "fail" };
        any_fail |= first == "fail";
        v.push(format!(
            r#"{{"Action":"run","Package":"{PKG}","Test":"{t}"}}"#
        ));
        v.push(format!(
            r#"{{"Action":"{first}","Package":"{PKG}","Test":"{t}","Elapsed":{secs}}}"#
        ));
    }
    let end = if any_fail { "fail" } else { "pass" };
    v.push(format!(
        r#"{{"Action":"{end}","Package":"{PKG}","Elapsed":1}}"#
    ));
    let flaky: Vec<_> = tests.iter().filter(|t| t.1 == "flaky").collect();
    if !flaky.is_empty() {
        v.push(format!(r#"{{"Action":"start","Package":"{PKG}"}}"#));
        for (t, _, secs) in flaky {
            v.push(format!(
                r#"{{"Action":"run","Package":"{PKG}","Test":"{t}"}}"#
            ));
            v.push(format!(
                r#"{{"Action":"pass","Package":"{PKG}","Test":"{t}","Elapsed":{secs}}}"#
            ));
        }
        v.push(format!(
            r#"{{"Action":"pass","Package":"{PKG}","Elapsed":1}}"#
        ));
    }
    v
}

/// Writes a results folder like `harness test` does.
pub(crate) fn write_run(
    dir: &Path,
    started: &str,
    shard: Option<&str>,
    efw: &str,
    tests: Spec,
) -> Written {
    let lines = events(tests);
    let evs: Vec<_> = lines.iter().map(|l| parse_line(l).unwrap()).collect();
    let rec = RunRecord {
        execution: Execution::from_events(&evs),
        events: lines,
        other_output: Vec::new(),
        meta: RunMeta {
            suite: "ebpf-go".into(),
            mode: "guest".into(),
            shard: shard.map(str::to_string),
            started: started.into(),
            duration_secs: 60.0,
            ..Default::default()
        },
        package_dirs: Vec::new(),
        cores: Vec::new(),
    };
    let prov = Provenance {
        harness_version: "0.1.0".into(),
        efw_version: Some(efw.into()),
        ..Default::default()
    };
    crate::write(dir, &rec, &prov).unwrap()
}

fn db(tmp: &Path) -> History {
    History::open(&tmp.join("state/history.sqlite")).unwrap()
}

fn all(h: &History) -> Window {
    h.window(&Filter {
        now_unix: now_unix(),
        ..Default::default()
    })
    .unwrap()
}

fn status(w: &Window, test: &str) -> Vec<Option<&'static str>> {
    w.tests
        .iter()
        .find(|t| t.test == test)
        .unwrap()
        .cells
        .iter()
        .map(|c| c.map(|c| c.status))
        .collect()
}

#[test]
fn importing_a_folder_twice_counts_it_once() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("r1");
    write_run(
        &dir,
        "2026-11-01T10:00:00Z",
        None,
        "1.0",
        &[("TestA", "pass", 0.5)],
    );
    let mut h = db(tmp.path());
    let first = h.import_dir(&dir).unwrap();
    assert!(first.new);
    assert_eq!(first.rows, 2, "the test and its package");
    let again = h.import_dir(&dir).unwrap();
    assert!(!again.new);
    assert_eq!(again.run_id, first.run_id);
    assert_eq!(again.rows, 2);
    assert_eq!(h.run_count().unwrap(), 1);
    // And through a fresh connection (what a second harness process sees).
    drop(h);
    let mut h = db(tmp.path());
    assert!(!h.import_dir(&dir).unwrap().new);
    assert_eq!(all(&h).runs.len(), 1);
}

#[test]
fn folders_without_a_run_id_get_a_stable_one() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("old");
    write_run(
        &dir,
        "2026-11-01T10:00:00Z",
        None,
        "1.0",
        &[("TestA", "pass", 0.5)],
    );
    let path = dir.join("summary.json");
    let mut v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    v["run"].as_object_mut().unwrap().remove("id");
    std::fs::write(&path, serde_json::to_string_pretty(&v).unwrap()).unwrap();
    let id = crate::results::folder_run_id(&dir).unwrap();
    assert!(id.starts_with("sum-"), "{id}");
    assert_eq!(crate::results::folder_run_id(&dir).unwrap(), id);
    let mut h = db(tmp.path());
    assert_eq!(h.import_dir(&dir).unwrap().run_id, id);
    assert!(!h.import_dir(&dir).unwrap().new);
}

fn three_runs(tmp: &Path) -> (History, Vec<PathBuf>) {
    let runs: [(&str, &str, Spec); 3] = [
        (
            "2026-11-01T10:00:00Z",
            "1.0",
            &[
                ("TestA", "pass", 1.0),
                ("TestB", "fail", 2.0),
                ("TestC", "pass", 10.0),
            ],
        ),
        (
            "2026-11-02T10:00:00Z",
            "1.1",
            &[
                ("TestA", "fail", 1.0),
                ("TestB", "pass", 2.0),
                ("TestC", "flaky", 11.0),
            ],
        ),
        (
            "2026-11-03T10:00:00Z",
            "1.1",
            &[
                ("TestA", "fail", 1.0),
                ("TestB", "pass", 2.0),
                ("TestC", "pass", 15.0),
            ],
        ),
    ];
    let mut h = db(tmp);
    let mut dirs = Vec::new();
    for (i, (started, efw, tests)) in runs.iter().enumerate() {
        let d = tmp.join(format!("run{i}"));
        write_run(&d, started, None, efw, tests);
        assert!(h.import_dir(&d).unwrap().new);
        dirs.push(d);
    }
    (h, dirs)
}

#[test]
fn report_finds_new_failures_passes_flakes_and_trends() {
    let tmp = tempfile::tempdir().unwrap();
    let (h, _) = three_runs(tmp.path());
    let w = all(&h);
    assert_eq!(w.runs.len(), 3);
    assert_eq!(
        status(&w, "TestA"),
        [Some("pass"), Some("fail"), Some("fail")]
    );
    let r = report(&w, 10);

    let names = |v: &[Change]| v.iter().map(|c| c.test.clone()).collect::<Vec<_>>();
    // The package row stays `pass`: its failures are its tests'.
    assert_eq!(names(&r.newly_failing), ["TestA"]);
    let a = &r.newly_failing[0];
    assert_eq!(a.streak, 2);
    assert_eq!(a.since.started, "2026-11-02T10:00:00Z");
    assert_eq!(a.since.efw_version.as_deref(), Some("1.1"));
    assert_eq!(a.before.started, "2026-11-01T10:00:00Z");
    assert_eq!(names(&r.newly_passing), ["TestB"]);

    assert_eq!(r.flaky.len(), 1);
    let c = &r.flaky[0];
    assert_eq!((c.test.as_str(), c.flaky_runs, c.runs), ("TestC", 1, 3));
    assert!((c.rate - 1.0 / 3.0).abs() < 1e-9);

    assert_eq!(r.slowest[0].test, "TestC");
    assert_eq!(r.slowest[0].series, [10.0, 11.0, 15.0]);
    assert_eq!(r.slowest[0].earlier_median_secs, Some(10.5));
    let trend = r.slowest[0].trend_pct.unwrap();
    assert!(
        (trend - (15.0 / 10.5 - 1.0) * 100.0).abs() < 1e-9,
        "{trend}"
    );

    let text = render_text(&r, "in the last 14d");
    assert!(text.starts_with("3 runs in the last 14d"), "{text}");
    assert!(
        text.contains(
            "TestA (example.com/m/p): 2 run(s) in a row since 2026-11-02T10:00:00Z (efW 1.1)"
        ),
        "{text}"
    );
    assert!(
        text.contains("33.3%  flaky in 1/3 runs, failed in 0  TestC"),
        "{text}"
    );
    assert!(text.contains("+43% vs 10.50s"), "{text}");
}

#[test]
fn since_suite_and_last_runs_narrow_the_window() {
    let tmp = tempfile::tempdir().unwrap();
    let (h, _) = three_runs(tmp.path());
    let now = unix_of("2026-11-03T12:00:00Z").unwrap();
    let w = |since: Option<&str>, suite: Option<&str>, last: Option<usize>| {
        h.window(&Filter {
            since_secs: since.map(|s| parse_since(s).unwrap()),
            suite: suite.map(str::to_string),
            last_runs: last,
            now_unix: now,
        })
        .unwrap()
    };
    assert_eq!(w(Some("1d"), None, None).runs.len(), 1);
    assert_eq!(w(Some("36h"), None, None).runs.len(), 2);
    assert_eq!(w(Some("14d"), None, None).runs.len(), 3);
    assert_eq!(w(None, Some("other"), None).runs.len(), 0);
    let last2 = w(None, Some("ebpf-go"), Some(2));
    assert_eq!(last2.runs.len(), 2);
    assert_eq!(
        last2.runs[0].started, "2026-11-02T10:00:00Z",
        "oldest first"
    );
    // In the last two runs TestA failed both times: not "newly" failing within that window.
    assert!(report(&last2, 5).newly_failing.is_empty());
    let empty = report(&w(None, Some("other"), None), 5);
    assert!(render_text(&empty, "recorded").starts_with("No runs recorded"));
}

#[test]
fn a_merged_run_supersedes_its_shards_in_either_order() {
    for merged_first in [false, true] {
        let tmp = tempfile::tempdir().unwrap();
        let s1 = tmp.path().join("s1");
        let s2 = tmp.path().join("s2");
        write_run(
            &s1,
            "2026-11-01T10:00:00Z",
            Some("1/2"),
            "1.0",
            &[("TestA", "pass", 1.0)],
        );
        write_run(
            &s2,
            "2026-11-01T10:00:01Z",
            Some("2/2"),
            "1.0",
            &[("TestB", "fail", 1.0)],
        );
        let merged = tmp.path().join("merged");
        let m = crate::merge(&[s1.clone(), s2.clone()], &merged).unwrap();
        assert_eq!(m.summary.run.merged_from.len(), 2);
        assert!(!m.summary.run.id.is_empty());
        assert!(!m.summary.run.merged_from.contains(&m.summary.run.id));
        let mut h = db(tmp.path());
        let order = if merged_first {
            vec![&merged, &s1, &s2]
        } else {
            vec![&s1, &s2, &merged]
        };
        for d in order {
            let imp = h.import_dir(d).unwrap();
            let is_shard = d != &merged;
            assert_eq!(
                imp.superseded_by.is_some(),
                is_shard && merged_first,
                "{}: {imp:?}",
                d.display()
            );
        }
        assert_eq!(h.run_count().unwrap(), 3);
        let w = all(&h);
        assert_eq!(
            w.runs.len(),
            1,
            "merged_first={merged_first}: only the merged run counts"
        );
        assert_eq!(w.runs[0].id, m.summary.run.id);
        assert_eq!(status(&w, "TestA"), [Some("pass")]);
        assert_eq!(status(&w, "TestB"), [Some("fail")]);
    }
}

#[test]
fn a_database_from_a_newer_harness_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("h.sqlite");
    let c = Connection::open(&path).unwrap();
    c.pragma_update(None, "user_version", 99).unwrap();
    drop(c);
    let e = History::open(&path).unwrap_err().to_string();
    assert!(e.contains("schema version 99"), "{e}");
    assert!(e.contains("newer harness"), "{e}");
}

#[test]
fn a_damaged_database_says_what_to_do() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("h.sqlite");
    std::fs::write(&path, vec![0x5a; 8192]).unwrap();
    let e = History::open(&path).unwrap_err().to_string();
    assert!(e.contains(&path.display().to_string()), "{e}");
    assert!(e.contains("move it away"), "{e}");
}

#[test]
fn the_history_page_shows_troubled_tests_and_plots() {
    let tmp = tempfile::tempdir().unwrap();
    let (h, dirs) = three_runs(tmp.path());
    h.write_page(&dirs[2], "ebpf-go", 30).unwrap();
    let page = std::fs::read_to_string(dirs[2].join("history.html")).unwrap();
    assert!(
        page.contains("History of <code>ebpf-go</code>: 3 runs"),
        "{page}"
    );
    // TestA (pass, fail, fail) and TestC (flaky once) get rows; the package row does not.
    assert!(
        page.contains("<code>TestA (example.com/m/p)</code>"),
        "{page}"
    );
    assert!(
        page.contains("<code>TestC (example.com/m/p)</code>"),
        "{page}"
    );
    assert!(page.contains(r#"<td class="c pass""#) && page.contains(r#"<td class="c fail""#));
    assert!(page.contains(r#"<td class="c flaky""#));
    assert!(page.contains("1 other tests and packages passed"), "{page}");
    assert_eq!(
        page.matches("<svg").count(),
        1 + 3 + 3,
        "durations, 3 rows, 3 slowest"
    );
    assert!(!page.contains("<script") && !page.contains("http://www.w3.org/1999"));
    let index = std::fs::read_to_string(dirs[2].join("index.html")).unwrap();
    assert!(index.contains(r#"<a href="history.html">history</a>"#));
}
