//! Installing the efW runtime and extensions in a guest, verified from a fresh session.
//!
//! The engine is a sequence of one-step guest scripts (`scripts/<os>/install/`, JSON on stdout)
//! orchestrated here; every decision (method, no-op or reinstall, is this result a working
//! runtime?) is a pure function in [`plan`] or [`checks`]. Progress goes out as
//! [`InstallEvent`]s; nothing here prints.
//!
//! Entry points: [`install_runtime`], [`install_extension`], [`remove_extension`],
//! [`list_extensions`], [`installed`].

use std::path::PathBuf;

use serde::Serialize;

use crate::config::{ExtensionConfig, InstallConfig};
use crate::session::{GuestOs, Session};

pub mod checks;
mod engine;
mod error;
pub mod events;
mod extension;
mod guest;
mod linux;
pub mod logs;
pub mod plan;
mod record;
pub mod scripts;
mod windows;

pub use error::InstallError;
pub use events::{InstallEvent, Progress, Step};
pub use record::{
    BuildToInstall, ExtensionState, InstallRecord, InstalledBuild, host_record_path,
    load_host_record, save_host_record,
};
pub use windows::EFW_INSTALL_DIR;

/// How to install, beyond the `[install]` section.
#[derive(Debug, Clone)]
pub struct InstallOptions {
    /// The `[install]` section.
    pub config: InstallConfig,
    /// Reinstall even when the same build is installed and verified.
    pub force: bool,
    /// Host paths where `PsExec64.exe` may be (the configured path, then the cache); the first
    /// that exists is placed beside the installer. Windows only.
    pub psexec_candidates: Vec<PathBuf>,
    /// The run's results folder; install logs go to `<results_dir>/install-logs`.
    pub results_dir: PathBuf,
    /// Set by Ctrl-C: checked between steps.
    pub cancel: Option<hostproc::Cancel>,
}

impl InstallOptions {
    /// Options with defaults for everything but the config and results folder.
    pub fn new(config: InstallConfig, results_dir: impl Into<PathBuf>) -> Self {
        let psexec_candidates = config.psexec.iter().cloned().collect();
        Self {
            config,
            force: false,
            psexec_candidates,
            results_dir: results_dir.into(),
            cancel: None,
        }
    }

    /// Where the install logs go: `<results_dir>/install-logs`.
    pub(crate) fn logs_dir(&self) -> PathBuf {
        self.results_dir.join("install-logs")
    }
}

/// Whether anything changed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "outcome", rename_all = "kebab-case")]
pub enum InstallOutcome {
    /// The same build was installed and still verifies: nothing was done.
    AlreadyInstalled,
    /// The build was installed.
    Installed {
        /// The build it replaced, if harness had recorded one.
        replaced: Option<InstalledBuild>,
    },
}

/// One row of the "what is installed" table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Check {
    /// What was checked.
    pub name: String,
    /// Whether it passed.
    pub ok: bool,
    /// What was seen.
    pub detail: String,
}

/// The result of [`install_runtime`]: what is installed (for host state and `CI_EFW_VERSION`),
/// what was checked, and which logs were kept.
#[derive(Debug, Clone, Serialize)]
pub struct InstallReport {
    /// Whether anything changed.
    pub outcome: InstallOutcome,
    /// What is installed now (also recorded in the guest).
    pub record: InstallRecord,
    /// Verification from a fresh session.
    pub checks: Vec<Check>,
    /// Logs copied into the results folder.
    pub logs: Vec<PathBuf>,
}

/// Installs `build` in the guest behind `session` (Windows or Linux, by the session's OS), or
/// does nothing if the same build is installed and verified (unless `opts.force`). On success
/// the session is a fresh one opened after sshd restarted.
pub fn install_runtime(
    session: &mut Session,
    build: &BuildToInstall,
    opts: &InstallOptions,
    on_event: &mut dyn FnMut(&InstallEvent),
) -> Result<InstallReport, InstallError> {
    let mut progress = Progress::new(on_event);
    let os = session.os();
    let (paths, method) = engine::plan_for(os, build, opts)?;
    let mut rt: Box<dyn engine::Runtime + '_> = match os {
        GuestOs::Windows => Box::new(windows::Windows::new(build, opts, &paths, method)),
        GuestOs::Linux => Box::new(linux::Linux::new(build, opts, &paths)),
    };
    engine::install(
        rt.as_mut(),
        session,
        build,
        opts,
        &paths,
        method,
        &mut progress,
    )
}

/// What harness recorded as installed in the guest, if anything (no verification).
pub fn installed(
    session: &mut Session,
    config: &InstallConfig,
) -> Result<Option<InstallRecord>, InstallError> {
    let os = session.os();
    let scripts = match os {
        GuestOs::Windows => &windows::SCRIPTS,
        GuestOs::Linux => &linux::SCRIPTS,
    };
    let marker = plan::guest_join(os, plan::guest_root(config, os), "installed.json");
    let value: checks::QueryResult = guest::run(
        session,
        Step::Query,
        scripts.query,
        &scripts.query_args(marker),
    )?;
    match value.marker {
        None => Ok(None),
        Some(v) => {
            serde_json::from_value(v.clone())
                .map(Some)
                .map_err(|e| InstallError::BadResult {
                    step: Step::Query,
                    detail: format!("install record {v}: {e}"),
                })
        }
    }
}

/// Installs (or reinstalls) one extension from its unpacked build. Windows guests only.
pub fn install_extension(
    session: &mut Session,
    name: &str,
    config: &ExtensionConfig,
    build: &BuildToInstall,
    install: &InstallConfig,
    on_event: &mut dyn FnMut(&InstallEvent),
) -> Result<ExtensionState, InstallError> {
    let mut progress = Progress::new(on_event);
    extension::install(session, name, config, build, install, &mut progress)
}

/// Removes one extension: its eBPF store entries and its kernel service. Windows guests only.
pub fn remove_extension(
    session: &mut Session,
    name: &str,
    config: &ExtensionConfig,
    on_event: &mut dyn FnMut(&InstallEvent),
) -> Result<ExtensionState, InstallError> {
    let mut progress = Progress::new(on_event);
    extension::remove(session, name, config, &mut progress)
}

/// The state of each configured extension in the guest. Windows guests only.
pub fn list_extensions(
    session: &mut Session,
    configs: &[(String, ExtensionConfig)],
) -> Result<Vec<ExtensionState>, InstallError> {
    extension::list(session, configs)
}

pub(crate) fn now_unix() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}
