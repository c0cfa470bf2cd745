//! The runtime install flow, once for every guest OS: query → check the recorded build → forget
//! the record → uninstall what is there → prepare the directory → upload → install → restart sshd
//! and verify from a fresh session → record. What differs per OS sits behind [`Runtime`]
//! (`windows.rs`, `linux.rs`); the order, cancellation points and the record live here, and so
//! does [`stage`] (prepare the directory, upload), which extensions (`extension.rs`) reuse.

use std::path::{Path, PathBuf};

use crate::session::{GuestOs, Script, Session};

use super::checks::QueryResult;
use super::error::InstallError;
use super::events::{InstallEvent, Progress, Step};
use super::guest::{check_cancel, run};
use super::plan::{self, GuestPaths, Plan};
use super::record::{BuildToInstall, InstallRecord};
use super::{Check, InstallOptions, InstallOutcome, InstallReport, now_unix};
use crate::config::InstallMethod;

/// The step scripts that only differ by OS in name and argument spelling.
pub(super) struct OsScripts {
    /// Reads the record (argument `marker`) and, on Windows, signs of a runtime.
    pub query: Script,
    /// Deletes the record (argument `marker`).
    pub forget: Script,
    /// Empties or creates the build directory (argument `dir`).
    pub prepare_dir: Script,
    /// Writes the record (arguments `marker`, `record`).
    pub record: Script,
    /// Argument names for the marker, the directory and the record, in the script's spelling.
    pub marker_arg: &'static str,
    pub dir_arg: &'static str,
    pub record_arg: &'static str,
    /// Extra query arguments.
    pub query_extra: &'static [(&'static str, &'static str)],
    /// Whether the query can see a runtime installed without a record.
    pub detects_runtime: bool,
}

impl OsScripts {
    /// The query's arguments for the record at `marker`.
    pub(super) fn query_args(&self, marker: String) -> Vec<(&'static str, String)> {
        let mut args = vec![(self.marker_arg, marker)];
        args.extend(self.query_extra.iter().map(|(k, v)| (*k, v.to_string())));
        args
    }
}

/// What a fresh session saw after the install.
pub(super) struct Verified {
    pub checks: Vec<Check>,
    pub runtime_version: Option<String>,
}

/// The OS-specific steps of a runtime install.
pub(super) trait Runtime {
    fn scripts(&self) -> &OsScripts;
    /// Checks the recorded (same) build: its checks when it works, else why not (for a notice
    /// "build K is recorded as installed but <why>; reinstalling").
    fn check_current(
        &mut self,
        s: &mut Session,
        p: &mut Progress<'_>,
    ) -> Result<Result<Vec<Check>, String>, InstallError>;
    /// Checks made before anything in the guest changes.
    fn preflight(&mut self) -> Result<(), InstallError> {
        Ok(())
    }
    /// Uninstalls the runtime with the scripts in `dir` (or the new build's). Without
    /// `required`, `Ok(false)` means no uninstaller is there yet (retried after the upload).
    fn uninstall(
        &mut self,
        s: &mut Session,
        p: &mut Progress<'_>,
        dir: &str,
        required: bool,
    ) -> Result<bool, InstallError>;
    /// What follows the upload of the build directory.
    fn after_upload(
        &mut self,
        _s: &mut Session,
        _p: &mut Progress<'_>,
    ) -> Result<(), InstallError> {
        Ok(())
    }
    /// Runs the installer.
    fn install(&mut self, s: &mut Session, p: &mut Progress<'_>) -> Result<(), InstallError>;
    /// Restarts sshd and verifies from a fresh session.
    fn restart_and_verify(
        &mut self,
        s: &mut Session,
        p: &mut Progress<'_>,
    ) -> Result<Verified, InstallError>;
    /// The logs copied into the results folder so far.
    fn take_logs(&mut self) -> Vec<PathBuf>;
}

/// Where the build goes in the guest and how it is installed there: what the OS steps need
/// before anything runs.
pub(super) fn plan_for(
    os: GuestOs,
    build: &BuildToInstall,
    opts: &InstallOptions,
) -> Result<(GuestPaths, InstallMethod), InstallError> {
    let cfg = &opts.config;
    let paths = GuestPaths::new(os, plan::guest_root(cfg, os), build.key())
        .map_err(InstallError::Invalid)?;
    let layout = plan::BuildLayout::of_dir(&build.local_dir);
    let method = plan::choose_method(cfg.method, os, layout).map_err(InstallError::Invalid)?;
    Ok((paths, method))
}

/// Installs `build` through `rt`.
pub(super) fn install(
    rt: &mut dyn Runtime,
    session: &mut Session,
    build: &BuildToInstall,
    opts: &InstallOptions,
    paths: &GuestPaths,
    method: InstallMethod,
    p: &mut Progress<'_>,
) -> Result<InstallReport, InstallError> {
    let cancel = &opts.cancel;
    check_cancel(cancel, Step::Query)?;
    let replacing = match decide(rt, session, build, opts, paths, p)? {
        Decision::AlreadyInstalled(report) => return Ok(*report),
        Decision::Install(replacing) => replacing,
    };
    rt.preflight()?;

    // From here on an install may be half done: drop the record first, so that a failure is
    // never mistaken for the old build still being installed.
    check_cancel(cancel, Step::Uninstall)?;
    let sc = rt.scripts();
    run::<serde_json::Value>(
        session,
        Step::Uninstall,
        sc.forget,
        &[(sc.marker_arg, paths.marker.clone())],
    )?;
    let old_dir = replacing.old_dir(paths);
    // The runtime may hold files of this very directory: uninstall before it is replaced.
    let mut uninstalled = old_dir.is_none();
    if old_dir.as_deref() == Some(paths.build_dir.as_str()) {
        uninstalled = rt.uninstall(session, p, &paths.build_dir, false)?;
    }
    stage(
        rt.scripts(),
        session,
        &build.local_dir,
        &paths.build_dir,
        cancel,
        p,
    )?;
    rt.after_upload(session, p)?;
    if let (false, Some(dir)) = (uninstalled, &old_dir) {
        check_cancel(cancel, Step::Uninstall)?;
        rt.uninstall(session, p, dir, true)?;
    }

    check_cancel(cancel, Step::Install)?;
    rt.install(session, p)?;
    check_cancel(cancel, Step::RestartSshd)?;
    let verified = rt.restart_and_verify(session, p)?;
    let record = InstallRecord {
        build: build.provenance.clone(),
        method,
        guest_dir: paths.build_dir.clone(),
        installed_at: now_unix(),
        harness_version: env!("CARGO_PKG_VERSION").into(),
        runtime_version: verified.runtime_version,
    };
    write_record(rt.scripts(), session, paths, &record, p)?;
    Ok(InstallReport {
        outcome: InstallOutcome::Installed {
            replaced: replacing.record.map(|r| r.build),
        },
        record,
        checks: verified.checks,
        logs: rt.take_logs(),
    })
}

/// Whether to install at all, and what the install replaces.
enum Decision {
    /// The recorded build is the wanted one and still verifies.
    AlreadyInstalled(Box<InstallReport>),
    Install(Replacing),
}

/// What an install replaces.
struct Replacing {
    /// The recorded build, uninstalled with its own scripts.
    record: Option<Box<InstallRecord>>,
    /// A runtime without a record, uninstalled with the new build's scripts.
    unknown_runtime: bool,
}

impl Replacing {
    /// The directory whose scripts uninstall what is there, if anything is.
    fn old_dir(&self, paths: &GuestPaths) -> Option<String> {
        self.record
            .as_ref()
            .map(|r| r.guest_dir.clone())
            .or_else(|| self.unknown_runtime.then(|| paths.build_dir.clone()))
    }
}

/// Queries the guest and decides; a recorded build of the same key is checked first, and one
/// that no longer verifies is reinstalled (with a notice saying why).
fn decide(
    rt: &mut dyn Runtime,
    session: &mut Session,
    build: &BuildToInstall,
    opts: &InstallOptions,
    paths: &GuestPaths,
    p: &mut Progress<'_>,
) -> Result<Decision, InstallError> {
    let (current, runtime_present) = query(rt.scripts(), session, paths, p)?;
    let decision = plan::decide(
        current.as_ref(),
        runtime_present,
        build.key(),
        opts.force,
        None,
    );
    let (record, unknown_runtime) = match (decision, current) {
        (
            Plan::Install {
                replace,
                unknown_runtime,
            },
            _,
        ) => (replace, unknown_runtime),
        (Plan::CheckCurrent | Plan::NothingToDo, Some(record)) => {
            match rt.check_current(session, p)? {
                Ok(checks) => {
                    let report = already_installed(record, checks, p);
                    return Ok(Decision::AlreadyInstalled(Box::new(report)));
                }
                Err(why) => {
                    p.notice(format!(
                        "build {} is recorded as installed but {why}; reinstalling",
                        build.key()
                    ));
                    (Some(Box::new(record)), false)
                }
            }
        }
        // `decide` checks only a recorded build; without one, install as if new.
        (Plan::CheckCurrent | Plan::NothingToDo, None) => (None, runtime_present),
    };
    Ok(Decision::Install(Replacing {
        record,
        unknown_runtime,
    }))
}

/// Empties (or creates) the build directory in the guest, then uploads the build into it.
pub(super) fn stage(
    sc: &OsScripts,
    session: &mut Session,
    local_dir: &Path,
    build_dir: &str,
    cancel: &Option<hostproc::Cancel>,
    p: &mut Progress<'_>,
) -> Result<(), InstallError> {
    check_cancel(cancel, Step::PrepareDir)?;
    p.step(Step::PrepareDir, || {
        run::<serde_json::Value>(
            session,
            Step::PrepareDir,
            sc.prepare_dir,
            &[(sc.dir_arg, build_dir.to_string())],
        )
    })?;
    check_cancel(cancel, Step::Upload)?;
    p.step(Step::Upload, || {
        session
            .upload_tree(local_dir, build_dir)
            .map(|_| ())
            .map_err(InstallError::session(Step::Upload))
    })
}

/// Writes the install record in the guest.
fn write_record(
    sc: &OsScripts,
    session: &mut Session,
    paths: &GuestPaths,
    record: &InstallRecord,
    p: &mut Progress<'_>,
) -> Result<(), InstallError> {
    let json = serde_json::to_string(record).expect("record serializes");
    let args = [(sc.marker_arg, paths.marker.clone()), (sc.record_arg, json)];
    p.step(Step::Record, || {
        run::<serde_json::Value>(session, Step::Record, sc.record, &args)
    })?;
    Ok(())
}

/// The recorded build (an unreadable record becomes a notice) and whether a runtime is there.
fn query(
    sc: &OsScripts,
    session: &mut Session,
    paths: &GuestPaths,
    p: &mut Progress<'_>,
) -> Result<(Option<InstallRecord>, bool), InstallError> {
    let args = sc.query_args(paths.marker.clone());
    let q: QueryResult = p.step(Step::Query, || run(session, Step::Query, sc.query, &args))?;
    let current = match q.marker.as_ref() {
        None => None,
        Some(m) => match serde_json::from_value::<InstallRecord>(m.clone()) {
            Ok(r) => Some(r),
            Err(e) => {
                p.notice(format!(
                    "ignoring an unreadable install record in the guest ({e})"
                ));
                None
            }
        },
    };
    Ok((current, sc.detects_runtime && q.runtime_present()))
}

fn already_installed(
    record: InstallRecord,
    checks: Vec<Check>,
    p: &mut Progress<'_>,
) -> InstallReport {
    p.emit(InstallEvent::Skipped {
        reason: format!(
            "build {} is already installed and verified",
            record.build.key
        ),
    });
    InstallReport {
        outcome: InstallOutcome::AlreadyInstalled,
        record,
        checks,
        logs: Vec::new(),
    }
}

/// Emits and clears collected notices.
pub(super) fn flush(p: &mut Progress<'_>, notices: &mut Vec<String>) {
    for n in notices.drain(..) {
        p.notice(n);
    }
}
