//! Counts over a folded run and the verdict they amount to.

use serde::{Deserialize, Serialize};

use crate::model::{Execution, Outcome, PackageState};

/// Counts over the whole run.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Totals {
    /// Packages with test files (packages without any are counted in `packages_no_tests`).
    pub packages: usize,
    /// Packages without test files: listed, nothing to run.
    #[serde(default)]
    pub packages_no_tests: usize,
    /// Packages that end with something failed.
    pub packages_failed: usize,
    /// Packages with an infrastructure error.
    pub packages_errored: usize,
    /// Distinct tests (subtests included).
    pub tests: usize,
    /// Tests whose final attempt passed (flaky ones included).
    pub passed: usize,
    /// Tests whose final attempt failed.
    pub failed: usize,
    /// Tests skipped.
    pub skipped: usize,
    /// Tests the binary listed but never ran, because an earlier test killed it.
    #[serde(default)]
    pub not_run: usize,
    /// Tests that failed and then passed on a rerun.
    pub flaky: usize,
    /// Attempts over all tests (≥ tests when reruns happened).
    pub attempts: usize,
}

/// What a run amounts to, as the process exit code says it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    /// Everything passed (flaky tests included): exit 0.
    Passed,
    /// Some test or package failed: exit 1.
    Failed,
    /// The harness or the infrastructure failed (target lost, build failed): exit 2.
    Errored,
}

impl Totals {
    /// "P passed, F failed, S skipped", plus ", N not run" when a binary died before some of its
    /// tests: the counts of every one-line report, so that they always add up to `tests`.
    pub fn counts(&self) -> String {
        let not_run = if self.not_run > 0 {
            format!(", {} not run", self.not_run)
        } else {
            String::new()
        };
        format!(
            "{} passed, {} failed, {} skipped{not_run}",
            self.passed, self.failed, self.skipped
        )
    }
}

impl Verdict {
    /// The documented exit code: 0 passed, 1 test failures, 2 harness/infrastructure failure.
    pub fn exit_code(self) -> u8 {
        match self {
            Verdict::Passed => 0,
            Verdict::Failed => 1,
            Verdict::Errored => 2,
        }
    }
}

impl PackageState {
    /// A package that had no test files: skipped at package level with no test seen.
    pub fn has_no_test_files(&self) -> bool {
        self.status == crate::model::PackageStatus::Skip && self.tests.is_empty()
    }
}

impl Execution {
    /// Counts.
    pub fn totals(&self) -> Totals {
        let mut t = Totals::default();
        for p in &self.packages {
            if p.has_no_test_files() {
                t.packages_no_tests += 1;
            } else {
                t.packages += 1;
            }
            if p.has_failures() {
                t.packages_failed += 1;
            }
            if p.error.is_some() || p.build_failed {
                t.packages_errored += 1;
            }
            for test in &p.tests {
                t.tests += 1;
                t.attempts += test.attempts.len();
                match test.outcome() {
                    Outcome::Pass => t.passed += 1,
                    Outcome::Fail | Outcome::Running => t.failed += 1,
                    Outcome::Skip => t.skipped += 1,
                    Outcome::NotRun => t.not_run += 1,
                }
                if test.is_flaky() {
                    t.flaky += 1;
                }
            }
        }
        t
    }

    /// The verdict, and so the exit code.
    pub fn verdict(&self) -> Verdict {
        let t = self.totals();
        if t.packages_errored > 0 {
            Verdict::Errored
        } else if t.packages_failed > 0 || t.failed > 0 || t.not_run > 0 {
            Verdict::Failed
        } else {
            Verdict::Passed
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::event::{TestEvent, parse_line};
    use crate::model::Execution;

    #[test]
    fn counts_name_not_run_tests_only_when_there_are_some() {
        let mut t = super::Totals {
            tests: 10,
            passed: 5,
            failed: 2,
            skipped: 3,
            ..Default::default()
        };
        assert_eq!(t.counts(), "5 passed, 2 failed, 3 skipped");
        t.tests = 14;
        t.not_run = 4;
        assert_eq!(t.counts(), "5 passed, 2 failed, 3 skipped, 4 not run");
    }

    #[test]
    fn packages_without_test_files_are_counted_apart() {
        let lines = [
            r#"{"Action":"start","Package":"a"}"#,
            r#"{"Action":"run","Package":"a","Test":"TestA"}"#,
            r#"{"Action":"pass","Package":"a","Test":"TestA"}"#,
            r#"{"Action":"pass","Package":"a"}"#,
            r#"{"Action":"start","Package":"b"}"#,
            r#"{"Action":"output","Package":"b","Output":"?   \tb\t[no test files]\n"}"#,
            r#"{"Action":"skip","Package":"b"}"#,
        ];
        let evs: Vec<TestEvent> = lines.iter().map(|l| parse_line(l).unwrap()).collect();
        let t = Execution::from_events(&evs).totals();
        assert_eq!((t.packages, t.packages_no_tests, t.tests), (1, 1, 1));
    }
}
