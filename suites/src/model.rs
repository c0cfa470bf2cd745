//! The model: a test2json stream folded into per-package, per-test state with every attempt.
//!
//! Renderers (JUnit, JSON, Markdown, console) only read this; the runner only feeds it. The fold
//! is deterministic, so folding a saved `events.jsonl` again (e.g. when merging shards) gives the
//! same result as the live run.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use crate::event::{Action, ERROR_MARK, HARNESS_MARK, NOT_RUN_MARK, TestEvent};
pub use crate::totals::{Totals, Verdict};

/// Output line that marks a package killed by the per-package timeout.
pub const TIMEOUT_MARK: &str = "harness: timeout: ";

/// The outcome of one attempt of a test.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    /// Passed.
    Pass,
    /// Failed (reported by Go, or synthesized by the harness).
    Fail,
    /// Skipped.
    Skip,
    /// Still running: no terminal event yet.
    Running,
    /// Listed by the test binary but never started: an earlier test killed the binary. The
    /// harness records it as a `skip` event whose output starts with [`NOT_RUN_MARK`].
    #[serde(rename = "not run")]
    NotRun,
}

/// One run of one test.
#[derive(Debug, Clone, Serialize)]
pub struct Attempt {
    /// How it ended.
    pub outcome: Outcome,
    /// Seconds, as Go reported them (0 for synthesized failures).
    pub elapsed: f64,
    /// Everything the test printed in this attempt.
    pub output: String,
    /// Why the harness declared this attempt failed, when Go never said (panic, timeout, crash).
    pub synthesized: Option<String>,
}

/// One test (or subtest, `Parent/sub`) across all its attempts.
#[derive(Debug, Clone, Serialize)]
pub struct TestState {
    /// The test name as Go prints it.
    pub name: String,
    /// Every attempt, in order.
    pub attempts: Vec<Attempt>,
}

impl TestState {
    /// The outcome that counts: the last attempt's.
    pub fn outcome(&self) -> Outcome {
        self.attempts.last().map_or(Outcome::Running, |a| a.outcome)
    }

    /// Failed at least once and passed in the end.
    pub fn is_flaky(&self) -> bool {
        self.outcome() == Outcome::Pass && self.attempts.iter().any(|a| a.outcome == Outcome::Fail)
    }

    /// The longest attempt, in seconds.
    pub fn max_elapsed(&self) -> f64 {
        self.attempts.iter().map(|a| a.elapsed).fold(0.0, f64::max)
    }

    /// The running attempt, started when the last one has ended (or there is none).
    fn open_attempt(&mut self) -> &mut Attempt {
        if self
            .attempts
            .last()
            .is_none_or(|a| a.outcome != Outcome::Running)
        {
            self.attempts.push(Attempt {
                outcome: Outcome::Running,
                elapsed: 0.0,
                output: String::new(),
                synthesized: None,
            });
        }
        self.attempts.last_mut().expect("pushed above")
    }

    /// The root test this (sub)test belongs to: what `-run` selects.
    pub fn root(&self) -> &str {
        self.name.split('/').next().unwrap_or(&self.name)
    }
}

/// The status of a package as a whole.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PackageStatus {
    /// Started, no terminal event yet.
    Running,
    /// Its last run passed.
    Pass,
    /// Its last run failed.
    Fail,
    /// No test files (or all skipped at package level).
    Skip,
}

/// One package run that failed although none of its tests did (TestMain, init panic, build
/// failure, infrastructure error): rendered as a `TestMain` test case, as gotestsum does.
#[derive(Debug, Clone, Serialize)]
pub struct PackageFailure {
    /// The package output of that run.
    pub output: String,
    /// An infrastructure error rather than a test failure.
    pub error: bool,
}

/// One package across its runs.
#[derive(Debug, Clone, Serialize)]
pub struct PackageState {
    /// The import path.
    pub name: String,
    /// Status of the last run.
    pub status: PackageStatus,
    /// Seconds of the first run, as Go reported them.
    pub elapsed: f64,
    /// How many times the package was started.
    pub runs: u32,
    /// Tests in order of first appearance.
    pub tests: Vec<TestState>,
    /// Package-level output of the current run (not attributed to a test).
    #[serde(skip)]
    pub output: String,
    /// Runs that failed without a failing test.
    pub package_failures: Vec<PackageFailure>,
    /// The infrastructure error, if any (build failed, target lost, could not start).
    pub error: Option<String>,
    /// The package hit its timeout in some run.
    pub timed_out: bool,
    /// The build of this package failed.
    pub build_failed: bool,
    #[serde(skip)]
    index: HashMap<String, usize>,
    #[serde(skip)]
    failed_tests_this_run: usize,
    #[serde(skip)]
    last_run_failed_without_test: bool,
    /// When the current run started, and the time of its latest event (test2json `Time`): the
    /// elapsed time of a run that ended without Go's own figure (crash, timeout, lost target).
    #[serde(skip)]
    run_started: Option<time::OffsetDateTime>,
    #[serde(skip)]
    last_seen: Option<time::OffsetDateTime>,
    /// Tests that started (or ended) in the current run.
    #[serde(skip)]
    seen_this_run: Vec<String>,
}

impl PackageState {
    fn new(name: &str) -> Self {
        PackageState {
            name: name.to_string(),
            status: PackageStatus::Running,
            elapsed: 0.0,
            runs: 0,
            tests: Vec::new(),
            output: String::new(),
            package_failures: Vec::new(),
            error: None,
            timed_out: false,
            build_failed: false,
            index: HashMap::new(),
            failed_tests_this_run: 0,
            last_run_failed_without_test: false,
            run_started: None,
            last_seen: None,
            seen_this_run: Default::default(),
        }
    }

    fn test_mut(&mut self, name: &str) -> &mut TestState {
        let i = *self.index.entry(name.to_string()).or_insert_with(|| {
            self.tests.push(TestState {
                name: name.to_string(),
                attempts: Vec::new(),
            });
            self.tests.len() - 1
        });
        &mut self.tests[i]
    }

    /// Looks a test up by name.
    pub fn test(&self, name: &str) -> Option<&TestState> {
        self.index.get(name).map(|&i| &self.tests[i])
    }

    /// Whether the test started or ended in the package's latest run.
    pub fn ran_this_run(&self, test: &str) -> bool {
        self.seen_this_run.iter().any(|t| t == test)
    }

    /// Tests of the latest run in the order they started.
    pub fn started_this_run(&self) -> &[String] {
        &self.seen_this_run
    }

    /// Why the package failed as a whole: its error, else "build failed" or "failed outside any
    /// test".
    pub fn failure_reason(&self) -> String {
        self.error.clone().unwrap_or_else(|| {
            if self.build_failed {
                "build failed".into()
            } else {
                "failed outside any test".into()
            }
        })
    }

    /// Whether the package's final state is a package-level failure (no failing test to blame).
    pub fn failed_without_test(&self) -> bool {
        self.last_run_failed_without_test
    }

    /// Whether anything in this package ends failed.
    pub fn has_failures(&self) -> bool {
        self.error.is_some()
            || self.last_run_failed_without_test
            || self.tests.iter().any(|t| t.outcome() == Outcome::Fail)
    }

    /// Names of tests currently running (no terminal event yet).
    pub fn running_tests(&self) -> impl Iterator<Item = &str> {
        self.tests
            .iter()
            .filter(|t| t.outcome() == Outcome::Running)
            .map(|t| t.name.as_str())
    }

    /// Declares every still-running test failed, with its last output and `why`.
    fn charge_running(&mut self, why: &str) {
        for t in &mut self.tests {
            if let Some(a) = t.attempts.last_mut()
                && a.outcome == Outcome::Running
            {
                a.outcome = Outcome::Fail;
                // The attempt keeps all its output (the last of it is what matters); the note says
                // why the harness, not Go, declared the failure.
                a.synthesized = Some(format!(
                    "{HARNESS_MARK}{} did not report a result: {why}",
                    t.name
                ));
                self.failed_tests_this_run += 1;
            }
        }
    }

    /// Seconds from the start of the current run to its latest event, from the events' times.
    fn wall_seconds(&self) -> f64 {
        match (self.run_started, self.last_seen) {
            (Some(a), Some(b)) if b > a => (b - a).as_seconds_f64(),
            _ => 0.0,
        }
    }

    /// A new run of the package begins (`start`).
    fn start_run(&mut self, at: Option<time::OffsetDateTime>) {
        self.run_started = at;
        self.seen_this_run.clear();
        self.runs += 1;
        self.status = PackageStatus::Running;
        self.failed_tests_this_run = 0;
        self.output.clear();
    }

    /// Notes that `test` started or ended in the current run.
    fn saw(&mut self, test: &str) {
        if !self.ran_this_run(test) {
            self.seen_this_run.push(test.to_string());
        }
    }

    /// Output of a test: its current attempt's, else the package's.
    fn test_output(&mut self, test: &str, text: &str) {
        let ts = self.test_mut(test);
        match ts.attempts.last_mut() {
            Some(a) => a.output.push_str(text),
            None => self.output.push_str(text),
        }
        if text.starts_with("panic: test timed out after") {
            self.timed_out = true;
        }
    }

    /// Output outside any test, where the harness's error and timeout marks come.
    fn package_output(&mut self, text: &str) {
        if let Some(msg) = text.strip_prefix(ERROR_MARK) {
            self.error.get_or_insert_with(|| msg.trim_end().to_string());
        }
        if text.starts_with(TIMEOUT_MARK) || text.starts_with("panic: test timed out after") {
            self.timed_out = true;
        }
        self.output.push_str(text);
    }

    /// A test's `pass`, `fail` or `skip`: ends its current attempt.
    fn test_ended(&mut self, action: &Action, test: &str, elapsed: Option<f64>) {
        self.saw(test);
        let ts = self.test_mut(test);
        let not_run = ts
            .attempts
            .last()
            .is_some_and(|a| a.outcome == Outcome::Running && a.output.starts_with(NOT_RUN_MARK));
        // A rerun that did not reach a test is a failed attempt (the harness's), so
        // that the attempt counts and the test stays failed; a first run's is "not run".
        let rerun_missed = not_run && ts.attempts.len() > 1;
        let outcome = match action {
            Action::Pass => Outcome::Pass,
            Action::Fail => Outcome::Fail,
            _ if rerun_missed => Outcome::Fail,
            _ if not_run => Outcome::NotRun,
            _ => Outcome::Skip,
        };
        let a = ts.open_attempt();
        if rerun_missed {
            a.synthesized = Some(format!(
                "{ERROR_MARK}this rerun attempt did not run the test (see the package output)"
            ));
        }
        a.outcome = outcome;
        a.elapsed = elapsed.unwrap_or(0.0);
        if outcome == Outcome::Fail {
            self.failed_tests_this_run += 1;
        }
    }

    fn finish(&mut self, action: &Action, elapsed: Option<f64>, failed_build: bool) {
        let why = if let Some(e) = &self.error {
            format!("the run was aborted ({e})")
        } else if self.timed_out {
            "the package hit its timeout and its process tree was killed".to_string()
        } else {
            "the test binary exited before the test finished (panic, os.Exit, crash or timeout)"
                .to_string()
        };
        self.charge_running(&why);
        if self.runs <= 1 {
            self.elapsed = elapsed.unwrap_or_else(|| self.wall_seconds());
        }
        self.status = match action {
            Action::Pass => PackageStatus::Pass,
            Action::Skip => PackageStatus::Skip,
            _ => PackageStatus::Fail,
        };
        if failed_build {
            self.build_failed = true;
        }
        self.last_run_failed_without_test =
            self.status == PackageStatus::Fail && self.failed_tests_this_run == 0;
        if self.last_run_failed_without_test {
            self.package_failures.push(PackageFailure {
                output: std::mem::take(&mut self.output),
                error: self.error.is_some() || self.build_failed,
            });
        }
    }
}

fn parse_time(s: &str) -> Option<time::OffsetDateTime> {
    time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339).ok()
}

/// The folded state of a whole run.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Execution {
    /// Packages in order of first appearance.
    pub packages: Vec<PackageState>,
    /// Compiler output by import path (`build-output` events).
    pub build_output: Vec<(String, String)>,
    #[serde(skip)]
    index: HashMap<String, usize>,
}

impl Execution {
    /// An empty model.
    pub fn new() -> Self {
        Self::default()
    }

    /// Folds a whole stream (e.g. a saved `events.jsonl`) and finalizes it.
    pub fn from_events<'a>(events: impl IntoIterator<Item = &'a TestEvent>) -> Self {
        let mut ex = Self::new();
        for e in events {
            ex.apply(e);
        }
        ex.finalize("the event stream ended before the package finished");
        ex
    }

    fn pkg_mut(&mut self, name: &str) -> &mut PackageState {
        let i = *self.index.entry(name.to_string()).or_insert_with(|| {
            self.packages.push(PackageState::new(name));
            self.packages.len() - 1
        });
        &mut self.packages[i]
    }

    /// Looks a package up.
    pub fn package(&self, name: &str) -> Option<&PackageState> {
        self.index.get(name).map(|&i| &self.packages[i])
    }

    /// Applies one event.
    pub fn apply(&mut self, e: &TestEvent) {
        if matches!(e.action, Action::BuildOutput | Action::BuildFail) {
            self.apply_build(e);
            return;
        }
        let Some(pkg_name) = e.package.as_deref() else {
            return;
        };
        let pkg = self.pkg_mut(pkg_name);
        let at = e.time.as_deref().and_then(parse_time);
        if at.is_some() {
            pkg.last_seen = at;
        }
        let text = || e.output.as_deref().unwrap_or("");
        match (&e.action, e.test.as_deref()) {
            (Action::Start, _) => pkg.start_run(at),
            (Action::Run, Some(t)) => {
                pkg.saw(t);
                pkg.test_mut(t).open_attempt();
            }
            (Action::Output, Some(t)) => pkg.test_output(t, text()),
            (Action::Output, None) => pkg.package_output(text()),
            (action @ (Action::Pass | Action::Fail | Action::Skip), Some(t)) => {
                pkg.test_ended(action, t, e.elapsed);
            }
            (action @ (Action::Pass | Action::Fail | Action::Skip), None) => {
                let action = action.clone();
                pkg.finish(&action, e.elapsed, e.failed_build.is_some());
            }
            _ => {}
        }
    }

    /// Compiler output (`build-output`, `build-fail`), gathered by import path.
    fn apply_build(&mut self, e: &TestEvent) {
        let ip = e.import_path.clone().unwrap_or_default();
        if let Some(o) = &e.output {
            match self.build_output.iter_mut().find(|(p, _)| *p == ip) {
                Some((_, s)) => s.push_str(o),
                None => self.build_output.push((ip, o.clone())),
            }
        }
    }

    /// Closes packages that never got a terminal event (the stream was cut): they fail, and so
    /// do their running tests.
    pub fn finalize(&mut self, why: &str) {
        for p in &mut self.packages {
            if p.status == PackageStatus::Running {
                p.output.push_str(&format!("{HARNESS_MARK}{why}\n"));
                p.finish(&Action::Fail, None, false);
            }
        }
    }

    /// `(package, test)` pairs whose final attempt failed.
    pub fn failed_tests(&self) -> Vec<(&PackageState, &TestState)> {
        self.packages
            .iter()
            .flat_map(|p| {
                p.tests
                    .iter()
                    .filter(|t| t.outcome() == Outcome::Fail)
                    .map(move |t| (p, t))
            })
            .collect()
    }

    /// `(package, test)` pairs the binary listed but never ran.
    pub fn not_run_tests(&self) -> Vec<(&PackageState, &TestState)> {
        self.packages
            .iter()
            .flat_map(|p| {
                p.tests
                    .iter()
                    .filter(|t| t.outcome() == Outcome::NotRun)
                    .map(move |t| (p, t))
            })
            .collect()
    }

    /// Packages whose final state is a failure no test is to blame for.
    pub fn packages_failed_without_test(&self) -> Vec<&PackageState> {
        self.packages
            .iter()
            .filter(|p| p.failed_without_test())
            .collect()
    }

    /// Packages that hit their timeout in some run.
    pub fn timed_out_packages(&self) -> Vec<&PackageState> {
        self.packages.iter().filter(|p| p.timed_out).collect()
    }

    /// `(package, test)` pairs that failed and then passed.
    pub fn flaky_tests(&self) -> Vec<(&PackageState, &TestState)> {
        self.packages
            .iter()
            .flat_map(|p| p.tests.iter().filter(|t| t.is_flaky()).map(move |t| (p, t)))
            .collect()
    }

    /// The `n` slowest tests, slowest first (ties by name, for stable output).
    pub fn slowest(&self, n: usize) -> Vec<(&PackageState, &TestState)> {
        let mut all: Vec<_> = self
            .packages
            .iter()
            .flat_map(|p| p.tests.iter().map(move |t| (p, t)))
            .collect();
        all.sort_by(|a, b| {
            b.1.max_elapsed()
                .total_cmp(&a.1.max_elapsed())
                .then_with(|| (&a.0.name, &a.1.name).cmp(&(&b.0.name, &b.1.name)))
        });
        all.truncate(n);
        all
    }

    /// The test currently running, for the progress line.
    pub fn running_test(&self) -> Option<(&str, &str)> {
        self.packages
            .iter()
            .rev()
            .filter(|p| p.status == PackageStatus::Running)
            .find_map(|p| p.running_tests().last().map(|t| (p.name.as_str(), t)))
    }

    /// Packages with a terminal event.
    pub fn packages_done(&self) -> usize {
        self.packages
            .iter()
            .filter(|p| p.status != PackageStatus::Running)
            .count()
    }
}

#[cfg(test)]
mod tests;
