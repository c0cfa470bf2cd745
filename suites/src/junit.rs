//! JUnit XML: one renderer of the model (written as gotestsum writes it), and the reader that
//! `repro` and the tests use to read a `junit.xml` back.

use std::time::Duration;

use quick_junit::{NonSuccessKind, Report, TestCase, TestCaseStatus, TestSuite};

use crate::event::HARNESS_MARK;
use crate::explain::{self, Explanation};
use crate::model::{Execution, Outcome, PackageStatus};
use crate::plan::FailedTests;

/// The name gotestsum gives the test case that stands for a package-level failure.
pub const PACKAGE_CASE: &str = "TestMain";

fn secs(s: f64) -> Duration {
    Duration::from_secs_f64(if s.is_finite() && s > 0.0 { s } else { 0.0 })
}

/// The failure message: `word`, then the error codes found in the output in a few words
/// (`Failed: Errno(119) = ENOBUFS (119 on Windows, 105 on Linux)`), so that a CI page showing
/// only the message already says what the code is.
fn failure_message(word: &str, notes: &[Explanation]) -> String {
    if notes.is_empty() {
        return word.to_string();
    }
    let shorts: Vec<String> = notes.iter().map(Explanation::short).collect();
    format!("{word}: {}", shorts.join("; "))
}

/// The output with one explanation line per error code appended.
fn with_explanations(mut text: String, notes: &[Explanation]) -> String {
    if !notes.is_empty() {
        text.push_str(
            "
harness explain:
",
        );
        for n in notes {
            text.push_str(&format!("  {}\n", n.text()));
        }
    }
    text
}

/// Renders the model: one `<testsuite>` per package (name = import path), one `<testcase>` per
/// attempt (name = test name, classname = import path), so that reruns keep every attempt;
/// a package that failed with no failing test gets a `TestMain` case carrying its output, as an
/// `<error>` when the cause is the infrastructure.
pub fn render(ex: &Execution, name: &str) -> Report {
    let mut report = Report::new(name);
    let mut total = 0.0;
    for p in &ex.packages {
        let mut suite = TestSuite::new(p.name.as_str());
        suite.set_time(secs(p.elapsed));
        total += p.elapsed;
        for t in &p.tests {
            for a in &t.attempts {
                let mut text = a.output.clone();
                if let Some(note) = &a.synthesized {
                    text.push_str(note);
                    text.push('\n');
                }
                let status = match a.outcome {
                    Outcome::Pass => TestCaseStatus::success(),
                    Outcome::Skip => {
                        let mut s = TestCaseStatus::skipped();
                        s.set_message("skipped").set_description(text);
                        s
                    }
                    Outcome::NotRun => {
                        let mut s = TestCaseStatus::non_success(NonSuccessKind::Error);
                        let why = text
                            .lines()
                            .next()
                            .unwrap_or("")
                            .trim_start_matches(HARNESS_MARK);
                        s.set_message(why.to_string()).set_description(text);
                        s
                    }
                    Outcome::Fail | Outcome::Running => {
                        let notes = explain::scan(&text);
                        let mut s = TestCaseStatus::non_success(NonSuccessKind::Failure);
                        s.set_message(failure_message("Failed", &notes))
                            .set_description(with_explanations(text, &notes));
                        s
                    }
                };
                let mut case = TestCase::new(t.name.as_str(), status);
                case.set_classname(p.name.as_str())
                    .set_time(secs(a.elapsed));
                suite.add_test_case(case);
            }
        }
        for f in &p.package_failures {
            let kind = if f.error {
                NonSuccessKind::Error
            } else {
                NonSuccessKind::Failure
            };
            let mut s = TestCaseStatus::non_success(kind);
            let mut text = f.output.clone();
            if let Some(e) = &p.error {
                text.push_str(&format!("\n{e}\n"));
            }
            if let Some((_, b)) = ex
                .build_output
                .iter()
                .find(|(ip, _)| ip == &p.name || ip.starts_with(&format!("{} ", p.name)))
            {
                text.push_str(b);
            }
            let notes = explain::scan(&text);
            s.set_message(failure_message(
                if f.error { "Errored" } else { "Failed" },
                &notes,
            ))
            .set_description(with_explanations(text, &notes));
            let mut case = TestCase::new(PACKAGE_CASE, s);
            case.set_classname(p.name.as_str());
            suite.add_test_case(case);
        }
        if p.status == PackageStatus::Skip && p.tests.is_empty() {
            suite.add_property(("go.test.package", "no test files"));
        }
        report.add_test_suite(suite);
    }
    report.set_time(secs(total));
    report
}

/// Reads a `junit.xml` back.
pub fn read(xml: &str) -> Result<Report, quick_junit::DeserializeError> {
    Report::deserialize_from_str(xml)
}

/// The tests whose last test case in the report did not succeed, as `(package, test)`.
pub fn failed_tests(report: &Report) -> FailedTests {
    let mut out = Vec::new();
    for s in &report.test_suites {
        let mut last: Vec<(String, bool)> = Vec::new();
        for c in &s.test_cases {
            let failed = matches!(c.status, TestCaseStatus::NonSuccess { .. });
            let name = c.name.as_str().to_string();
            match last.iter_mut().find(|(n, _)| *n == name) {
                Some(e) => e.1 = failed,
                None => last.push((name, failed)),
            }
        }
        out.extend(
            last.into_iter()
                .filter(|(_, f)| *f)
                .map(|(n, _)| (s.name.as_str().to_string(), n)),
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::parse_line;

    #[test]
    fn renders_attempts_and_reads_back() {
        let lines = [
            r#"{"Action":"start","Package":"p"}"#,
            r#"{"Action":"run","Package":"p","Test":"TestF"}"#,
            r#"{"Action":"output","Package":"p","Test":"TestF","Output":"bad \u0000 ]]> <&> \ufffd\n"}"#,
            r#"{"Action":"fail","Package":"p","Test":"TestF","Elapsed":0.5}"#,
            r#"{"Action":"run","Package":"p","Test":"TestS"}"#,
            r#"{"Action":"skip","Package":"p","Test":"TestS"}"#,
            r#"{"Action":"fail","Package":"p","Elapsed":1}"#,
            r#"{"Action":"start","Package":"p"}"#,
            r#"{"Action":"run","Package":"p","Test":"TestF"}"#,
            r#"{"Action":"pass","Package":"p","Test":"TestF"}"#,
            r#"{"Action":"pass","Package":"p"}"#,
            r#"{"Action":"start","Package":"q"}"#,
            r#"{"Action":"output","Package":"q","Output":"harness: error: lost\n"}"#,
            r#"{"Action":"fail","Package":"q"}"#,
        ];
        let evs: Vec<_> = lines.iter().map(|l| parse_line(l).unwrap()).collect();
        let ex = Execution::from_events(&evs);
        let xml = render(&ex, "fixture").to_string().unwrap();
        assert!(xml.contains("]]&gt;") && !xml.contains('\u{0}'), "{xml}");
        let back = read(&xml).unwrap();
        let p = &back.test_suites[0];
        assert_eq!((p.tests, p.failures, p.skipped), (3, 1, 1));
        let q = &back.test_suites[1];
        assert_eq!((q.tests, q.errors), (1, 1));
        assert_eq!(
            failed_tests(&back),
            vec![("q".to_string(), PACKAGE_CASE.to_string())]
        );
    }
}
