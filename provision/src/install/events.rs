//! Progress as typed events: the install engine never prints; the CLI (bars, `--json`) and tests
//! consume these.

use std::fmt;
use std::time::{Duration, Instant};

/// One step of a runtime or extension install, in the order they usually happen.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Step {
    /// Read the guest's install record and service states.
    Query,
    /// Check the installed build still works (the no-op path).
    CheckCurrent,
    /// Empty the build's guest directory.
    PrepareDir,
    /// Send the build as one archive and unpack it.
    Upload,
    /// Put `PsExec64.exe` beside the installer.
    PlacePsexec,
    /// Remove the previously installed runtime.
    Uninstall,
    /// Run the installer.
    Install,
    /// Make sure the install directory is on the machine PATH.
    EnsurePath,
    /// Restart sshd so new sessions see the new environment, and reconnect.
    RestartSshd,
    /// Check the runtime from a fresh session.
    Verify,
    /// Copy the install logs into the results folder.
    CollectLogs,
    /// Write the install record in the guest.
    Record,
    /// Extension: check eBPFCore is running.
    ExtPrecheck,
    /// Extension: remove an existing service of that name.
    ExtRemoveService,
    /// Extension: `sc.exe create`.
    ExtCreateService,
    /// Extension: start the service and wait for Running.
    ExtStartService,
    /// Extension: clear the eBPF store entries of a previous install.
    ExtExportClear,
    /// Extension: register program types in the eBPF store.
    ExtExport,
    /// Extension: check the program types are in the store.
    ExtVerify,
}

impl Step {
    /// Short human label for progress lines and error messages.
    pub fn label(self) -> &'static str {
        match self {
            Step::Query => "query installed runtime",
            Step::CheckCurrent => "check installed runtime",
            Step::PrepareDir => "prepare build directory",
            Step::Upload => "upload build",
            Step::PlacePsexec => "place PsExec64.exe",
            Step::Uninstall => "uninstall previous runtime",
            Step::Install => "install runtime",
            Step::EnsurePath => "ensure machine PATH",
            Step::RestartSshd => "restart sshd and reconnect",
            Step::Verify => "verify from a fresh session",
            Step::CollectLogs => "collect install logs",
            Step::Record => "record installed build",
            Step::ExtPrecheck => "check eBPFCore is running",
            Step::ExtRemoveService => "remove existing service",
            Step::ExtCreateService => "create kernel service",
            Step::ExtStartService => "start service",
            Step::ExtExportClear => "clear eBPF store entries",
            Step::ExtExport => "register program types",
            Step::ExtVerify => "verify program types",
        }
    }
}

impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.label())
    }
}

/// What the engine reports while it works.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
#[serde(tag = "event", rename_all = "kebab-case")]
pub enum InstallEvent {
    /// A step began.
    StepStarted {
        /// Which step.
        step: Step,
    },
    /// A step ended.
    StepFinished {
        /// Which step.
        step: Step,
        /// Wall-clock time the step took.
        #[serde(with = "secs_f64")]
        elapsed: Duration,
        /// Whether it succeeded.
        ok: bool,
    },
    /// Nothing to do (e.g. the same build is installed and verified).
    Skipped {
        /// Why.
        reason: String,
    },
    /// Something the user should know that is not a failure (e.g. a fallback taken).
    Notice {
        /// The message.
        message: String,
    },
}

mod secs_f64 {
    pub fn serialize<S: serde::Serializer>(
        d: &std::time::Duration,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        s.serialize_f64(d.as_secs_f64())
    }
}

/// Sends events to a caller-supplied sink and times steps, so every step has a matching
/// started/finished pair even when it fails.
pub struct Progress<'a> {
    sink: &'a mut dyn FnMut(&InstallEvent),
}

impl<'a> Progress<'a> {
    /// Wraps a sink.
    pub fn new(sink: &'a mut dyn FnMut(&InstallEvent)) -> Self {
        Self { sink }
    }

    /// Emits an event.
    pub fn emit(&mut self, event: InstallEvent) {
        (self.sink)(&event);
    }

    /// Runs `f` as `step`, emitting started and finished (with elapsed time and outcome).
    pub fn step<T, E>(&mut self, step: Step, f: impl FnOnce() -> Result<T, E>) -> Result<T, E> {
        self.emit(InstallEvent::StepStarted { step });
        let start = Instant::now();
        let result = f();
        self.emit(InstallEvent::StepFinished {
            step,
            elapsed: start.elapsed(),
            ok: result.is_ok(),
        });
        result
    }

    /// Emits a notice.
    pub fn notice(&mut self, message: impl Into<String>) {
        self.emit(InstallEvent::Notice {
            message: message.into(),
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn step_emits_a_started_finished_pair_on_success_and_failure() {
        let mut seen = Vec::new();
        let mut sink = |e: &InstallEvent| seen.push(e.clone());
        {
            let mut p = Progress::new(&mut sink);
            let ok: Result<u8, ()> = p.step(Step::Upload, || Ok(1));
            let bad: Result<u8, &str> = p.step(Step::Install, || Err("boom"));
            assert_eq!(ok, Ok(1));
            assert_eq!(bad, Err("boom"));
        }
        let shape: Vec<(Step, Option<bool>)> = seen
            .iter()
            .map(|e| match e {
                InstallEvent::StepStarted { step } => (*step, None),
                InstallEvent::StepFinished { step, ok, .. } => (*step, Some(*ok)),
                other => panic!("unexpected {other:?}"),
            })
            .collect();
        assert_eq!(
            shape,
            vec![
                (Step::Upload, None),
                (Step::Upload, Some(true)),
                (Step::Install, None),
                (Step::Install, Some(false)),
            ]
        );
    }

    #[test]
    fn events_serialize_with_a_tag_and_seconds() {
        let e = InstallEvent::StepFinished {
            step: Step::RestartSshd,
            elapsed: Duration::from_millis(1500),
            ok: true,
        };
        let v = serde_json::to_value(&e).unwrap();
        assert_eq!(v["event"], "step-finished");
        assert_eq!(v["step"], "restart-sshd");
        assert_eq!(v["elapsed"], 1.5);
    }
}
