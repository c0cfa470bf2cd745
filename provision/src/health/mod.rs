//! The guest doctor: is this guest fit to run ebpf-go's tests? Each check says what it saw and,
//! when it fails, the exact fix.
//!
//! The facts come from one-step guest scripts (`scripts/<os>/health/`, JSON on stdout); every
//! verdict is a pure function of those facts ([`windows`], [`linux`]), so a passing and a failing
//! guest are both unit-testable. [`guest_doctor`] gathers and judges; [`stop_stale_etw`] removes
//! the ETW sessions crashed ebpf-go test runs leave behind (they make `-trace-log` fail).

use std::time::Duration;

use serde::Serialize;

use crate::session::{GuestOs, Script, Session, SessionError};

mod error;
pub mod etw;
pub mod linux;
pub mod scripts;
pub mod windows;

pub use error::HealthError;

/// Each guest script may take this long (bcdedit and CIM queries answer in seconds).
pub const SCRIPT_TIMEOUT: Duration = Duration::from_secs(120);

/// The verdict on one item.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Ok,
    /// Worth knowing, but the suites can run (stale ETW sessions, low disk on a RAM-backed root).
    Warn,
    /// The suites would fail or mislead: `harness run` stops before them.
    Fail,
}

/// One line of the guest doctor's report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct GuestCheck {
    /// Short name (`test-signing`, `bpffs`, `program-types ntosebpfext`).
    pub name: String,
    pub status: Status,
    /// What was seen.
    pub detail: String,
    /// The exact fix, when not ok.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fix: Option<String>,
}

impl GuestCheck {
    /// A passing check.
    pub fn ok(name: impl Into<String>, detail: impl Into<String>) -> Self {
        Self::new(name, Status::Ok, detail, None::<String>)
    }

    /// A check with a status and a fix.
    pub fn new(
        name: impl Into<String>,
        status: Status,
        detail: impl Into<String>,
        fix: Option<impl Into<String>>,
    ) -> Self {
        GuestCheck {
            name: name.into(),
            status,
            detail: detail.into(),
            fix: fix.map(Into::into),
        }
    }

    /// A failing check with its fix.
    pub fn fail(
        name: impl Into<String>,
        detail: impl Into<String>,
        fix: impl Into<String>,
    ) -> Self {
        Self::new(name, Status::Fail, detail, Some(fix))
    }

    /// A warning with its fix.
    pub fn warn(
        name: impl Into<String>,
        detail: impl Into<String>,
        fix: impl Into<String>,
    ) -> Self {
        Self::new(name, Status::Warn, detail, Some(fix))
    }
}

/// What the guest doctor found.
#[derive(Debug, Clone, Serialize)]
pub struct GuestReport {
    pub os: GuestOs,
    pub checks: Vec<GuestCheck>,
    /// The OS build for provenance: Windows `CurrentBuild.UBR` (`26100.2605`), Linux `uname -r`.
    pub guest_build: Option<String>,
    /// Stale ETW sessions of crashed ebpf-go runs (Windows), by name.
    pub stale_etw_sessions: Vec<String>,
}

impl GuestReport {
    /// Whether any check failed (then `harness run` stops before the suites).
    pub fn failed(&self) -> bool {
        self.checks.iter().any(|c| c.status == Status::Fail)
    }

    /// The failing checks.
    pub fn failures(&self) -> impl Iterator<Item = &GuestCheck> {
        self.checks.iter().filter(|c| c.status == Status::Fail)
    }
}

/// What to check for.
#[derive(Debug, Clone)]
pub struct DoctorOptions {
    /// Least free space (MiB) where the tests write: below it Windows fails, Linux warns.
    pub min_free_mib: u64,
    /// Whether an efW runtime should be installed (false with `[efw] source = "none"`): the
    /// service, PATH and program-type checks only apply then.
    pub efw: bool,
    /// Windows: efW's install directory (must be on PATH).
    pub install_dir: String,
    /// Windows: each enabled extension and the program types it must have registered.
    pub extensions: Vec<(String, Vec<String>)>,
}

/// Gathers the facts in the guest behind `session` and judges them.
pub fn guest_doctor(
    session: &mut Session,
    opts: &DoctorOptions,
) -> Result<GuestReport, HealthError> {
    match session.os() {
        GuestOs::Windows => windows::doctor(session, opts),
        GuestOs::Linux => linux::doctor(session, opts),
    }
}

/// What [`stop_stale_etw`] did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct EtwCleanup {
    /// Sessions stopped.
    pub stopped: Vec<String>,
    /// Sessions that would not stop, with logman's answer.
    pub failed: Vec<(String, String)>,
}

/// Lists the guest's ETW sessions and stops the stale ones of crashed ebpf-go runs. Windows
/// only; on Linux there is nothing to do.
pub fn stop_stale_etw(session: &mut Session) -> Result<EtwCleanup, HealthError> {
    if session.os() != GuestOs::Windows {
        return Ok(EtwCleanup::default());
    }
    let stale = etw::stale_etw(&run(session, scripts::WIN_ETW_SESSIONS, &[])?)?;
    etw::stop_etw(session, &stale)
}

/// Runs one health script with its timeout and parses its result into `T`.
pub(crate) fn run<T: serde::de::DeserializeOwned>(
    session: &mut Session,
    script: Script,
    args: &[(&str, String)],
) -> Result<T, HealthError> {
    let value = session
        .run_script_with(&script, args, Some(SCRIPT_TIMEOUT), &mut |_, _| {})
        .map_err(|source: SessionError| HealthError::Script {
            script: script.name,
            source,
        })?;
    serde_json::from_value(value.clone()).map_err(|e| HealthError::BadResult {
        script: script.name,
        detail: format!("{e}; got {value}"),
    })
}

/// `bytes` in GiB with one decimal.
pub(crate) fn gib(bytes: u64) -> String {
    format!("{:.1} GiB", bytes as f64 / (1u64 << 30) as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_report_fails_only_on_fail() {
        let mut r = GuestReport {
            os: GuestOs::Linux,
            checks: vec![
                GuestCheck::ok("a", "fine"),
                GuestCheck::warn("b", "meh", "do x"),
            ],
            guest_build: None,
            stale_etw_sessions: vec![],
        };
        assert!(!r.failed());
        r.checks.push(GuestCheck::fail("c", "broken", "do y"));
        assert!(r.failed());
        assert_eq!(
            r.failures().map(|c| c.name.as_str()).collect::<Vec<_>>(),
            ["c"]
        );
        let json = serde_json::to_value(&r).unwrap();
        assert_eq!(json["checks"][0]["status"], "ok");
        assert!(json["checks"][0].get("fix").is_none());
        assert_eq!(json["checks"][2]["fix"], "do y");
    }

    #[test]
    fn gib_has_one_decimal() {
        assert_eq!(gib(3 << 30), "3.0 GiB");
        assert_eq!(gib(1 << 29), "0.5 GiB");
    }
}
