use super::*;
use crate::event::parse_line;

fn fold(lines: &[&str]) -> Execution {
    let evs: Vec<TestEvent> = lines.iter().map(|l| parse_line(l).expect(l)).collect();
    Execution::from_events(&evs)
}

#[test]
fn pass_fail_skip_and_counts() {
    let ex = fold(&[
        r#"{"Action":"start","Package":"p"}"#,
        r#"{"Action":"run","Package":"p","Test":"TestA"}"#,
        r#"{"Action":"pass","Package":"p","Test":"TestA","Elapsed":0.25}"#,
        r#"{"Action":"run","Package":"p","Test":"TestB"}"#,
        r#"{"Action":"output","Package":"p","Test":"TestB","Output":"boom\n"}"#,
        r#"{"Action":"fail","Package":"p","Test":"TestB","Elapsed":1}"#,
        r#"{"Action":"run","Package":"p","Test":"TestC"}"#,
        r#"{"Action":"skip","Package":"p","Test":"TestC"}"#,
        r#"{"Action":"fail","Package":"p","Elapsed":1.5}"#,
    ]);
    let t = ex.totals();
    assert_eq!(
        (t.tests, t.passed, t.failed, t.skipped, t.flaky),
        (3, 1, 1, 1, 0)
    );
    assert_eq!(ex.verdict(), Verdict::Failed);
    let p = ex.package("p").unwrap();
    assert!(!p.failed_without_test());
    assert_eq!(p.test("TestB").unwrap().attempts[0].output, "boom\n");
    assert_eq!(p.elapsed, 1.5);
}

#[test]
fn unfinished_tests_are_charged_when_the_package_fails() {
    let ex = fold(&[
        r#"{"Action":"start","Package":"p"}"#,
        r#"{"Action":"run","Package":"p","Test":"TestHang"}"#,
        r#"{"Action":"output","Package":"p","Test":"TestHang","Output":"sleeping\n"}"#,
        r#"{"Action":"output","Package":"p","Output":"harness: timeout: killed after 3s\n"}"#,
        r#"{"Action":"fail","Package":"p"}"#,
    ]);
    let p = ex.package("p").unwrap();
    let a = &p.test("TestHang").unwrap().attempts[0];
    assert_eq!(a.outcome, Outcome::Fail);
    let note = a.synthesized.as_deref().unwrap();
    assert!(
        note.contains("timeout") && note.contains("did not report"),
        "{note}"
    );
    assert_eq!(a.output, "sleeping\n");
    assert!(p.timed_out && !p.failed_without_test());
    assert_eq!(ex.verdict(), Verdict::Failed);
}

#[test]
fn a_package_ended_by_the_harness_keeps_its_wall_time() {
    let ex = fold(&[
        r#"{"Time":"2026-12-01T10:00:00Z","Action":"start","Package":"p"}"#,
        r#"{"Time":"2026-12-01T10:00:01Z","Action":"run","Package":"p","Test":"TestHang"}"#,
        r#"{"Time":"2026-12-01T10:00:42.5Z","Action":"output","Package":"p","Output":"harness: timeout: killed\n"}"#,
        r#"{"Time":"2026-12-01T10:00:42.5Z","Action":"fail","Package":"p"}"#,
        r#"{"Time":"2026-12-01T10:01:00Z","Action":"start","Package":"q"}"#,
        r#"{"Time":"2026-12-01T10:01:03Z","Action":"run","Package":"q","Test":"TestCut"}"#,
    ]);
    assert_eq!(ex.package("p").unwrap().elapsed, 42.5);
    assert_eq!(ex.package("q").unwrap().elapsed, 3.0, "a cut stream too");
}

#[test]
fn a_cut_stream_fails_running_packages() {
    let ex = fold(&[
        r#"{"Action":"start","Package":"p"}"#,
        r#"{"Action":"run","Package":"p","Test":"TestX"}"#,
    ]);
    assert_eq!(ex.totals().failed, 1);
    assert_eq!(ex.package("p").unwrap().status, PackageStatus::Fail);
}

#[test]
fn reruns_make_attempts_and_flaky() {
    let ex = fold(&[
        r#"{"Action":"start","Package":"p"}"#,
        r#"{"Action":"run","Package":"p","Test":"TestF"}"#,
        r#"{"Action":"fail","Package":"p","Test":"TestF"}"#,
        r#"{"Action":"fail","Package":"p"}"#,
        r#"{"Action":"start","Package":"p"}"#,
        r#"{"Action":"run","Package":"p","Test":"TestF"}"#,
        r#"{"Action":"pass","Package":"p","Test":"TestF"}"#,
        r#"{"Action":"pass","Package":"p"}"#,
    ]);
    let t = ex.totals();
    assert_eq!(
        (t.tests, t.passed, t.failed, t.flaky, t.attempts),
        (1, 1, 0, 1, 2)
    );
    assert_eq!(ex.verdict(), Verdict::Passed);
}

#[test]
fn package_failure_without_test_and_errors() {
    let ex = fold(&[
        r#"{"Action":"start","Package":"p"}"#,
        r#"{"Action":"output","Package":"p","Output":"TestMain exploded\n"}"#,
        r#"{"Action":"fail","Package":"p"}"#,
        r#"{"Action":"start","Package":"q"}"#,
        r#"{"Action":"output","Package":"q","Output":"harness: error: lost the test target\n"}"#,
        r#"{"Action":"fail","Package":"q"}"#,
    ]);
    let p = ex.package("p").unwrap();
    assert!(p.failed_without_test() && p.package_failures[0].output.contains("exploded"));
    assert!(!p.package_failures[0].error);
    let q = ex.package("q").unwrap();
    assert_eq!(q.error.as_deref(), Some("lost the test target"));
    assert_eq!(ex.verdict(), Verdict::Errored);
    assert_eq!(ex.totals().packages_errored, 1);
}

#[test]
fn build_failures_are_errors() {
    let ex = fold(&[
        r#"{"ImportPath":"p","Action":"build-output","Output":"x.go:1: syntax error\n"}"#,
        r#"{"ImportPath":"p","Action":"build-fail"}"#,
        r#"{"Action":"start","Package":"p"}"#,
        r#"{"Action":"fail","Package":"p","FailedBuild":"p"}"#,
    ]);
    assert!(ex.package("p").unwrap().build_failed);
    assert_eq!(ex.verdict(), Verdict::Errored);
    assert_eq!(ex.build_output[0].1, "x.go:1: syntax error\n");
}
