//! The test2json event: what `go test -json` and `go tool test2json` print, one per line.

use serde::{Deserialize, Serialize};

/// Prefix of output lines the harness adds itself (synthesized failures, errors). The model keys
/// on [`ERROR_MARK`] to tell infrastructure errors from test failures when re-reading a stream.
pub const HARNESS_MARK: &str = "harness: ";
/// Prefix of the package output line that records an infrastructure error (exit code 2).
pub const ERROR_MARK: &str = "harness: error: ";

/// Prefix of the output of a test that the binary listed but never ran (an earlier test killed
/// the binary); the test's `skip` event that follows makes it "not run" in the model.
pub const NOT_RUN_MARK: &str = "harness: not run: ";

/// One test2json event. Field names follow Go's `test2json` exactly so that `events.jsonl`
/// stays readable by gotestsum and friends.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct TestEvent {
    /// RFC 3339 time, present with `test2json -t` and `go test -json`.
    #[serde(rename = "Time", skip_serializing_if = "Option::is_none", default)]
    pub time: Option<String>,
    /// What happened.
    #[serde(rename = "Action")]
    pub action: Action,
    /// The package import path (absent on `build-*` events).
    #[serde(rename = "Package", skip_serializing_if = "Option::is_none", default)]
    pub package: Option<String>,
    /// The test name, `Parent/sub` for subtests; absent for package-level events.
    #[serde(rename = "Test", skip_serializing_if = "Option::is_none", default)]
    pub test: Option<String>,
    /// Seconds, on pass/fail/skip.
    #[serde(rename = "Elapsed", skip_serializing_if = "Option::is_none", default)]
    pub elapsed: Option<f64>,
    /// One line of output (with its newline), on `output` and `build-output`.
    #[serde(rename = "Output", skip_serializing_if = "Option::is_none", default)]
    pub output: Option<String>,
    /// Go ≥ 1.24: the package being built, on `build-output` / `build-fail`.
    #[serde(
        rename = "ImportPath",
        skip_serializing_if = "Option::is_none",
        default
    )]
    pub import_path: Option<String>,
    /// Go ≥ 1.24: on a package `fail` caused by a build failure, the failing import path.
    #[serde(
        rename = "FailedBuild",
        skip_serializing_if = "Option::is_none",
        default
    )]
    pub failed_build: Option<String>,
    /// Newer Go: `frame`, `error`, … on some output events.
    #[serde(
        rename = "OutputType",
        skip_serializing_if = "Option::is_none",
        default
    )]
    pub output_type: Option<String>,
}

/// The `Action` of an event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum Action {
    /// The test binary is about to run (package level).
    Start,
    /// A test started.
    Run,
    /// A parallel test paused.
    Pause,
    /// A paused test continued.
    Cont,
    /// Passed (terminal).
    Pass,
    /// Failed (terminal).
    Fail,
    /// Skipped (terminal).
    Skip,
    /// Benchmark output.
    Bench,
    /// One line of output.
    #[default]
    Output,
    /// Compiler output for `ImportPath`.
    BuildOutput,
    /// The build of `ImportPath` failed.
    BuildFail,
    /// An action this version does not know; kept so that newer Go does not break parsing.
    #[serde(other)]
    Unknown,
}

impl Action {
    /// Whether the action ends a test or a package.
    pub fn is_terminal(&self) -> bool {
        matches!(self, Action::Pass | Action::Fail | Action::Skip)
    }
}

/// Parses one line of a test2json stream. Lines that are not events (stray stderr, blank lines,
/// `go` diagnostics) give `None`: they are logged by the caller, never fatal.
pub fn parse_line(line: &str) -> Option<TestEvent> {
    let t = line.trim();
    if !t.starts_with('{') {
        return None;
    }
    serde_json::from_str(t).ok()
}

/// The current time in test2json's format, for synthesized events.
pub fn now_rfc3339() -> String {
    time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

impl TestEvent {
    /// A package-level or test-level event made by the harness.
    pub fn synth(action: Action, package: &str, test: Option<&str>) -> Self {
        TestEvent {
            time: Some(now_rfc3339()),
            action,
            package: Some(package.to_string()),
            test: test.map(str::to_string),
            ..Default::default()
        }
    }

    /// An output event made by the harness.
    pub fn synth_output(package: &str, test: Option<&str>, text: &str) -> Self {
        let mut e = Self::synth(Action::Output, package, test);
        e.output = Some(if text.ends_with('\n') {
            text.to_string()
        } else {
            format!("{text}\n")
        });
        e
    }

    /// The JSON line for `events.jsonl`.
    pub fn to_line(&self) -> String {
        serde_json::to_string(self).expect("events serialize")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_real_lines() {
        let cases: &[(&str, Option<Action>)] = &[
            (
                r#"{"Time":"2026-11-26T00:39:16.4Z","Action":"run","Package":"p","Test":"TestA"}"#,
                Some(Action::Run),
            ),
            (
                r#"{"Action":"output","Package":"p","Test":"T","Output":"x\n","OutputType":"frame"}"#,
                Some(Action::Output),
            ),
            (
                r#"{"ImportPath":"p [p.test]","Action":"build-fail"}"#,
                Some(Action::BuildFail),
            ),
            (r#"{"Action":"attr","Package":"p"}"#, Some(Action::Unknown)),
            ("# p\nnot json", None),
            ("", None),
            ("{broken", None),
        ];
        for (line, want) in cases {
            assert_eq!(parse_line(line).map(|e| e.action), *want, "{line}");
        }
    }

    #[test]
    fn round_trips_without_adding_fields() {
        let line = r#"{"Time":"t","Action":"pass","Package":"p","Test":"T","Elapsed":0.5}"#;
        assert_eq!(parse_line(line).unwrap().to_line(), line);
    }
}
