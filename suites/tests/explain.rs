//! A failing test whose output carries an efW error code gets it explained in every report:
//! `junit.xml` (message and body), `summary.md`, `summary.json` and the console summary.

use quick_junit::TestCaseStatus;
use suites::event::parse_line;
use suites::{Execution, Provenance, RunMeta, RunRecord};

const EVENTS: &[&str] = &[
    r#"{"Action":"start","Package":"github.com/cilium/ebpf"}"#,
    r#"{"Action":"run","Package":"github.com/cilium/ebpf","Test":"TestMapBatch"}"#,
    r#"{"Action":"output","Package":"github.com/cilium/ebpf","Test":"TestMapBatch","Output":"    map_test.go:42: batch update: Errno(119)\n"}"#,
    r#"{"Action":"fail","Package":"github.com/cilium/ebpf","Test":"TestMapBatch","Elapsed":0.1}"#,
    r#"{"Action":"run","Package":"github.com/cilium/ebpf","Test":"TestPlain"}"#,
    r#"{"Action":"output","Package":"github.com/cilium/ebpf","Test":"TestPlain","Output":"    x_test.go:1: want 2, got 3\n"}"#,
    r#"{"Action":"fail","Package":"github.com/cilium/ebpf","Test":"TestPlain","Elapsed":0.1}"#,
    r#"{"Action":"fail","Package":"github.com/cilium/ebpf","Elapsed":0.3}"#,
    r#"{"Action":"start","Package":"github.com/cilium/ebpf/link"}"#,
    r#"{"Action":"output","Package":"github.com/cilium/ebpf/link","Output":"trace: hr=0x80070490\n"}"#,
    r#"{"Action":"fail","Package":"github.com/cilium/ebpf/link","Elapsed":0.2}"#,
];

fn record() -> RunRecord {
    let evs: Vec<_> = EVENTS.iter().map(|l| parse_line(l).unwrap()).collect();
    RunRecord {
        execution: Execution::from_events(&evs),
        events: EVENTS.iter().map(|s| s.to_string()).collect(),
        other_output: Vec::new(),
        meta: RunMeta {
            suite: "ebpf".into(),
            mode: "guest".into(),
            ..Default::default()
        },
        package_dirs: Vec::new(),
        cores: Vec::new(),
    }
}

fn failure_of(report: &quick_junit::Report, pkg: &str, test: &str) -> (String, String) {
    let suite = report
        .test_suites
        .iter()
        .find(|s| s.name.as_str() == pkg)
        .unwrap();
    let case = suite
        .test_cases
        .iter()
        .find(|c| c.name.as_str() == test)
        .unwrap();
    match &case.status {
        TestCaseStatus::NonSuccess {
            message,
            description,
            ..
        } => (
            message.as_ref().map(|m| m.to_string()).unwrap_or_default(),
            description
                .as_ref()
                .map(|d| d.to_string())
                .unwrap_or_default(),
        ),
        other => panic!("{test} did not fail: {other:?}"),
    }
}

#[test]
fn errno_119_is_explained_in_junit_summary_and_console() {
    let tmp = tempfile::tempdir().unwrap();
    let rec = record();
    let w = suites::write(tmp.path(), &rec, &Provenance::default()).unwrap();

    let xml = std::fs::read_to_string(tmp.path().join("junit.xml")).unwrap();
    let report = suites::junit::read(&xml).unwrap();
    let (msg, body) = failure_of(&report, "github.com/cilium/ebpf", "TestMapBatch");
    assert_eq!(
        msg,
        "Failed: Errno(119) = ENOBUFS (119 on Windows, 105 on Linux)"
    );
    assert!(body.contains("batch update: Errno(119)"), "{body}");
    assert!(body.contains("harness explain:"), "{body}");
    assert!(body.contains("EBPF_INSUFFICIENT_BUFFER"), "{body}");
    let (msg, body) = failure_of(&report, "github.com/cilium/ebpf", "TestPlain");
    assert_eq!(msg, "Failed");
    assert!(!body.contains("harness explain"), "{body}");
    let (msg, _) = failure_of(&report, "github.com/cilium/ebpf/link", "TestMain");
    assert_eq!(
        msg,
        "Failed: 0x80070490 = ERROR_NOT_FOUND (Win32 error 1168)"
    );

    let md = std::fs::read_to_string(tmp.path().join("summary.md")).unwrap();
    assert!(
        md.contains("- **explain** Errno(119): errno 119 is ENOBUFS in Windows' errno.h (Linux's ENOBUFS is 105)"),
        "{md}"
    );
    assert!(
        md.contains("  - **explain** 0x80070490: Win32 error 1168 (0x490) is ERROR_NOT_FOUND"),
        "{md}"
    );
    assert_eq!(md.matches("**explain**").count(), 2, "{md}");

    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(tmp.path().join("summary.json")).unwrap())
            .unwrap();
    let failed = json["failed"].as_array().unwrap();
    let batch = failed.iter().find(|f| f["test"] == "TestMapBatch").unwrap();
    assert_eq!(batch["explanations"][0]["name"], "ENOBUFS");
    assert_eq!(batch["explanations"][0]["errno"]["linux"], 105);
    let plain = failed.iter().find(|f| f["test"] == "TestPlain").unwrap();
    assert!(plain.get("explanations").is_none(), "{plain}");

    let console = suites::render_console(&rec.execution, &w.summary);
    assert!(
        console.contains("    explain: Errno(119): errno 119 is ENOBUFS in Windows' errno.h"),
        "{console}"
    );
    assert!(console.contains("    explain: 0x80070490: "), "{console}");
}
