//! The run's state: the fold in progress plus the raw stream, fed from both modes.

use super::*;
use crate::event::{Action, ERROR_MARK, HARNESS_MARK, TestEvent, now_rfc3339, parse_line};
use crate::exec::{ExecError, ExecOutcome};
use crate::model::{Execution, PackageStatus, TIMEOUT_MARK};
use crate::timing::Clock;
use std::path::PathBuf;
use std::time::Duration;

/// The fold in progress plus the raw stream, fed from both modes.
pub(crate) struct State<'o> {
    pub(crate) ex: Execution,
    pub(crate) events: Vec<String>,
    pub(crate) other: Vec<String>,
    pub(crate) obs: &'o mut dyn Observer,
    pub(crate) lost: Option<String>,
    pub(crate) error: Option<String>,
    pub(crate) package_dirs: Vec<(String, String)>,
    /// Core files fetched from the target (package, host path).
    pub(crate) cores: Vec<(String, PathBuf)>,
    pub(crate) warnings: Vec<String>,
    pub(crate) clock: Clock,
    pub(crate) uploaded_bytes: u64,
    /// Test binaries built so far and to build in this run (progress over build batches).
    pub(crate) build_progress: (usize, usize),
    /// The target crashed and is not back yet: what crashed it (see [`crate::crash`]).
    pub(crate) crashed: Option<String>,
    /// Every crash of this run, oldest first.
    pub(crate) crashes: Vec<String>,
    /// The packages the current segment of the run covers (listed, after sharding).
    pub(crate) planned: Vec<String>,
    /// After a crash: the packages of the current segment (reruns stay inside it).
    pub(crate) segment: Option<std::collections::BTreeSet<String>>,
}

impl State<'_> {
    pub(crate) fn line(&mut self, raw: &str) {
        match parse_line(raw) {
            Some(ev) => {
                self.ex.apply(&ev);
                self.events.push(raw.trim_end().to_string());
                self.obs.on_event(&RunEvent::Event(&ev), &self.ex);
            }
            None => {
                if !raw.trim().is_empty() {
                    self.other.push(raw.to_string());
                    self.obs.on_event(&RunEvent::Output(raw), &self.ex);
                }
            }
        }
    }

    pub(crate) fn emit(&mut self, ev: TestEvent) {
        self.line(&ev.to_line());
    }

    /// A problem the run's results must show (summary warnings, console), e.g. a file that could
    /// not be uploaded.
    pub(crate) fn warn(&mut self, text: &str) {
        self.note(&format!("{HARNESS_MARK}warning: {text}"));
        self.warnings.push(text.to_string());
    }

    /// A harness note for the console and `output.txt` (not an event).
    pub(crate) fn note(&mut self, text: &str) {
        tracing::warn!("{text}");
        self.other.push(text.to_string());
        self.obs.on_event(&RunEvent::Output(text), &self.ex);
    }

    /// Records as "not run" the expected root tests that the package's latest run never started.
    pub(crate) fn not_run(&mut self, pkg: &str, expected: &[String]) {
        for e in crate::probe::not_run_events(&self.ex, pkg, expected) {
            self.emit(e);
        }
    }

    pub(crate) fn phase(&mut self, p: &str) {
        self.obs.on_event(&RunEvent::Phase(p), &self.ex);
    }

    pub(crate) fn is_running(&self, pkg: &str) -> bool {
        self.ex
            .package(pkg)
            .is_some_and(|p| p.status == PackageStatus::Running)
    }

    /// Ends a package that got no terminal event, saying why; `elapsed` is its wall time when
    /// known (else the model takes it from the events' times).
    pub(crate) fn close(&mut self, pkg: &str, mark: &str, why: &str, elapsed: Option<Duration>) {
        if !self.is_running(pkg) {
            return;
        }
        self.emit(TestEvent::synth_output(pkg, None, &format!("{mark}{why}")));
        let mut e = TestEvent::synth(Action::Fail, pkg, None);
        e.elapsed = elapsed.map(|d| (d.as_secs_f64() * 1000.0).round() / 1000.0);
        self.emit(e);
    }

    /// Records a package that could not run because of the infrastructure.
    pub(crate) fn errored(&mut self, pkg: &str, why: &str) {
        self.errored_after(pkg, why, None);
    }

    pub(crate) fn errored_after(&mut self, pkg: &str, why: &str, elapsed: Option<Duration>) {
        if !self.is_running(pkg) {
            self.emit(TestEvent::synth(Action::Start, pkg, None));
        }
        self.close(pkg, ERROR_MARK, why, elapsed);
    }

    pub(crate) fn no_test_files(&mut self, pkg: &str) {
        self.emit(TestEvent::synth(Action::Start, pkg, None));
        self.emit(TestEvent::synth_output(
            pkg,
            None,
            &format!("?   \t{pkg}\t[no test files]"),
        ));
        let mut e = TestEvent::synth(Action::Skip, pkg, None);
        e.elapsed = Some(0.0);
        self.emit(e);
    }

    pub(crate) fn build_failed(&mut self, pkg: &str, output: &[String]) {
        for l in output {
            let mut e = TestEvent {
                time: Some(now_rfc3339()),
                action: Action::BuildOutput,
                ..Default::default()
            };
            e.import_path = Some(pkg.to_string());
            e.output = Some(format!("{l}\n"));
            self.emit(e);
        }
        let e = TestEvent {
            time: Some(now_rfc3339()),
            action: Action::BuildFail,
            import_path: Some(pkg.to_string()),
            ..Default::default()
        };
        self.emit(e);
        self.emit(TestEvent::synth(Action::Start, pkg, None));
        self.emit(TestEvent::synth_output(
            pkg,
            None,
            &format!("FAIL\t{pkg} [build failed]"),
        ));
        let mut f = TestEvent::synth(Action::Fail, pkg, None);
        f.failed_build = Some(pkg.to_string());
        self.emit(f);
    }

    /// Applies the outcome of running one package's tests, which took `took` (wall time).
    pub(crate) fn settle(
        &mut self,
        pkg: &str,
        res: Result<ExecOutcome, ExecError>,
        timeout: Duration,
        took: Option<Duration>,
    ) {
        match res {
            Err(ExecError::TargetCrashed { reason }) => self.crashed_under(pkg, &reason, took),
            Err(e) if e.is_target_lost() => {
                let msg = e.to_string();
                self.errored_after(pkg, &msg, took);
                self.lost = Some(msg);
            }
            Err(e) => self.errored_after(pkg, &e.to_string(), took),
            Ok(o) if o.timed_out => self.close(
                pkg,
                TIMEOUT_MARK,
                &format!(
                    "the package ran longer than its timeout of {}s; its process tree was killed",
                    timeout.as_secs()
                ),
                took,
            ),
            Ok(o) if o.cancelled => {
                self.errored_after(pkg, "cancelled by the user (Ctrl-C)", took);
                self.error
                    .get_or_insert_with(|| "cancelled by the user (Ctrl-C)".into());
            }
            Ok(o) => {
                let code = o
                    .exit_code
                    .map_or("a signal".to_string(), |c| format!("code {c}"));
                self.close(
                    pkg,
                    HARNESS_MARK,
                    &format!(
                        "the test process exited with {code} without reporting a package result"
                    ),
                    took,
                );
            }
        }
    }
}
