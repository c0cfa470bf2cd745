//! The Linux guest equivalent: a build's entry point is `setup.sh` at its root (`sh setup.sh`,
//! uninstall `sh setup.sh --uninstall`); verification is the configured command, run in a fresh
//! session after sshd restarted. It exercises the whole flow, restart included, without Windows.

use std::path::PathBuf;
use std::time::Duration;

use crate::session::{GuestOs, Session, SessionError, wrap};

use super::checks::{QueryResult, SetupShResult};
use super::error::InstallError;
use super::events::{InstallEvent, Progress, Step};
use super::guest::{self, check_cancel, run};
use super::plan::{self, BuildLayout, GuestPaths, Plan};
use super::record::{BuildToInstall, InstallRecord};
use super::scripts;
use super::{Check, InstallOptions, InstallOutcome, InstallReport, now_unix};

const SETUP_LOG: &str = "harness-setup.log";
const UNINSTALL_LOG: &str = "harness-uninstall.log";

/// The verify command's outcome.
struct Verified {
    code: i32,
    output: String,
}

pub(super) fn install(
    session: &mut Session,
    build: &BuildToInstall,
    opts: &InstallOptions,
    progress: &mut Progress<'_>,
) -> Result<InstallReport, InstallError> {
    let cfg = &opts.config;
    let paths = GuestPaths::new(GuestOs::Linux, &cfg.linux_guest_dir, build.key())
        .map_err(InstallError::Invalid)?;
    let layout = BuildLayout::of_dir(&build.local_dir);
    let method =
        plan::choose_method(cfg.method, GuestOs::Linux, layout).map_err(InstallError::Invalid)?;
    let logs_dir = opts.results_dir.join("install-logs");
    let verify_timeout = Duration::from_secs(cfg.timeout.max(1));

    check_cancel(&opts.cancel, Step::Query)?;
    let q: QueryResult = progress.step(Step::Query, || {
        run(
            session,
            Step::Query,
            scripts::LINUX_QUERY,
            &[("marker", paths.marker.clone())],
        )
    })?;
    let current = match q
        .marker
        .as_ref()
        .map(|m| serde_json::from_value::<InstallRecord>(m.clone()))
    {
        Some(Ok(r)) => Some(r),
        Some(Err(e)) => {
            progress.notice(format!(
                "ignoring an unreadable install record in the guest ({e})"
            ));
            None
        }
        None => None,
    };

    let mut decision = plan::decide(current.as_ref(), false, build.key(), opts.force, None);
    if decision == Plan::CheckCurrent {
        let v = progress.step(Step::CheckCurrent, || {
            verify_command(session, &cfg.verify_command, verify_timeout)
                .map_err(InstallError::session(Step::CheckCurrent))
        })?;
        if v.code == 0 {
            let record = current.clone().expect("CheckCurrent implies a record");
            progress.emit(InstallEvent::Skipped {
                reason: format!(
                    "build {} is already installed and verified",
                    record.build.key
                ),
            });
            return Ok(InstallReport {
                outcome: InstallOutcome::AlreadyInstalled,
                record,
                checks: vec![verify_row(&cfg.verify_command, &v)],
                logs: Vec::new(),
            });
        }
        progress.notice(format!(
            "build {} is recorded as installed but its verify command fails (exit code {}); reinstalling",
            build.key(),
            v.code
        ));
        decision = plan::decide(
            current.as_ref(),
            false,
            build.key(),
            opts.force,
            Some(false),
        );
    }
    let Plan::Install { replace, .. } = decision else {
        unreachable!("decide returns Install once the current build was checked")
    };

    check_cancel(&opts.cancel, Step::PrepareDir)?;
    // Same key reinstalled: uninstall with the files still in place before the directory is emptied.
    let same_dir = replace
        .as_ref()
        .is_some_and(|r| r.guest_dir == paths.build_dir);
    run::<serde_json::Value>(
        session,
        Step::Uninstall,
        scripts::LINUX_FORGET,
        &[("marker", paths.marker.clone())],
    )?;
    let mut logs = Vec::new();
    if let (Some(old), true) = (&replace, same_dir) {
        uninstall(
            session,
            progress,
            &old.guest_dir,
            None,
            &logs_dir,
            &mut logs,
        )?;
    }
    progress.step(Step::PrepareDir, || {
        run::<serde_json::Value>(
            session,
            Step::PrepareDir,
            scripts::LINUX_PREPARE_DIR,
            &[("dir", paths.build_dir.clone())],
        )
    })?;
    check_cancel(&opts.cancel, Step::Upload)?;
    progress.step(Step::Upload, || {
        session
            .upload_tree(&build.local_dir, &paths.build_dir)
            .map(|_| ())
            .map_err(InstallError::session(Step::Upload))
    })?;
    if let (Some(old), false) = (&replace, same_dir) {
        check_cancel(&opts.cancel, Step::Uninstall)?;
        uninstall(
            session,
            progress,
            &old.guest_dir,
            Some(&paths.build_dir),
            &logs_dir,
            &mut logs,
        )?;
    }

    check_cancel(&opts.cancel, Step::Install)?;
    let log = plan::guest_join(GuestOs::Linux, &paths.build_dir, SETUP_LOG);
    let mut notices = Vec::new();
    let installed = progress.step(Step::Install, || {
        let r: SetupShResult = run(
            session,
            Step::Install,
            scripts::LINUX_RUN_SETUP,
            &[
                ("dir", paths.build_dir.clone()),
                ("log", log.clone()),
                ("action", "install".into()),
            ],
        )?;
        let (saved, n) = guest::fetch_logs(session, std::slice::from_ref(&log), &logs_dir);
        notices.extend(n);
        if r.exit_code != 0 {
            return Err(InstallError::SetupShFailed {
                uninstall: false,
                code: r.exit_code,
                dir: paths.build_dir.clone(),
                excerpt: guest::excerpt(&saved, &[], &[], 12),
                log: saved.first().cloned(),
            });
        }
        Ok(saved)
    });
    for n in notices.drain(..) {
        progress.notice(n);
    }
    logs.extend(installed?);

    check_cancel(&opts.cancel, Step::RestartSshd)?;
    // sshd re-reads its configuration in place on SIGHUP (same pid), so a session that answers
    // right after the trigger may still be served with the old configuration: keep reconnecting
    // until the verify command passes, bounded by restart_timeout, and report its last outcome.
    let mut fresh: Option<Verified> = None;
    let restarted = progress.step(Step::RestartSshd, || {
        let mut check = |s: &mut Session| -> Result<bool, SessionError> {
            let v = verify_command(s, &cfg.verify_command, verify_timeout)?;
            let ok = v.code == 0;
            fresh = Some(v);
            Ok(ok)
        };
        session
            .restart_sshd(&mut check, Duration::from_secs(cfg.restart_timeout.max(1)))
            .map_err(InstallError::session(Step::RestartSshd))
    });
    if let Err(e) = restarted {
        // The guest came back but never passed the check: that is a verification failure.
        return Err(match fresh.take() {
            Some(v) if v.code != 0 => verify_failed(
                &cfg.verify_command,
                &v,
                cfg.restart_timeout,
                logs_dir.clone(),
            ),
            _ => e,
        });
    }
    let verified = progress.step(Step::Verify, || {
        let v = match fresh.take() {
            Some(v) => v,
            None => verify_command(session, &cfg.verify_command, verify_timeout)
                .map_err(InstallError::session(Step::Verify))?,
        };
        if v.code == 0 {
            Ok(v)
        } else {
            Err(verify_failed(
                &cfg.verify_command,
                &v,
                cfg.restart_timeout,
                logs_dir.clone(),
            ))
        }
    })?;

    let record = InstallRecord {
        build: build.provenance.clone(),
        method,
        guest_dir: paths.build_dir.clone(),
        installed_at: now_unix(),
        harness_version: env!("CARGO_PKG_VERSION").into(),
        runtime_version: version_file(&build.local_dir),
    };
    let json = serde_json::to_string(&record).expect("record serializes");
    progress.step(Step::Record, || {
        run::<serde_json::Value>(
            session,
            Step::Record,
            scripts::LINUX_RECORD,
            &[("marker", paths.marker.clone()), ("record", json.clone())],
        )
    })?;
    Ok(InstallReport {
        outcome: InstallOutcome::Installed {
            replaced: replace.map(|r| r.build),
        },
        record,
        checks: vec![verify_row(&cfg.verify_command, &verified)],
        logs,
    })
}

/// `sh setup.sh --uninstall` in the old build's directory; if it is gone, with the new build's
/// setup.sh (`fallback`).
fn uninstall(
    session: &mut Session,
    progress: &mut Progress<'_>,
    old_dir: &str,
    fallback: Option<&str>,
    logs_dir: &std::path::Path,
    logs: &mut Vec<PathBuf>,
) -> Result<(), InstallError> {
    let mut notices = Vec::new();
    let result = progress.step(Step::Uninstall, || {
        let mut dir = old_dir.to_string();
        let mut log = plan::guest_join(GuestOs::Linux, &dir, UNINSTALL_LOG);
        let args = |d: &str, l: &str| [("dir", d.to_string()), ("log", l.to_string()), ("action", "uninstall".to_string())];
        let mut r: SetupShResult = run(session, Step::Uninstall, scripts::LINUX_RUN_SETUP, &args(&dir, &log))?;
        if r.exit_code == 127
            && r.log.is_none()
            && let Some(f) = fallback
        {
            notices.push(format!("the previous build's directory {old_dir} has no setup.sh; uninstalling with the new build's"));
            dir = f.to_string();
            log = plan::guest_join(GuestOs::Linux, &dir, UNINSTALL_LOG);
            r = run(session, Step::Uninstall, scripts::LINUX_RUN_SETUP, &args(&dir, &log))?;
        }
        let saved = if r.log.is_some() {
            let (saved, n) = guest::fetch_logs(session, std::slice::from_ref(&log), logs_dir);
            notices.extend(n);
            saved
        } else {
            Vec::new()
        };
        logs.extend(saved.iter().cloned());
        if r.exit_code != 0 {
            return Err(InstallError::SetupShFailed {
                uninstall: true,
                code: r.exit_code,
                dir,
                excerpt: guest::excerpt(&saved, &[], &[], 12),
                log: saved.first().cloned(),
            });
        }
        Ok(())
    });
    for n in notices {
        progress.notice(n);
    }
    result
}

/// Runs the configured verify command; an empty command only proves a session answers.
fn verify_command(
    session: &mut Session,
    command: &str,
    timeout: Duration,
) -> Result<Verified, SessionError> {
    let cmd = if command.trim().is_empty() {
        "true"
    } else {
        command
    };
    let out = session.exec_capture(&wrap::shell(GuestOs::Linux, cmd).timeout(timeout))?;
    Ok(Verified {
        code: out.status.code,
        output: format!("{}{}", out.stdout, out.stderr),
    })
}

fn verify_row(command: &str, v: &Verified) -> Check {
    Check {
        name: if command.trim().is_empty() {
            "fresh session answers".into()
        } else {
            format!("verify: {command}")
        },
        ok: v.code == 0,
        detail: tail(&v.output, 1),
    }
}

fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    lines[lines.len().saturating_sub(n)..].join(" | ")
}

/// A Linux build may carry its version in `VERSION` at its root (what `CI_EFW_VERSION` needs;
/// a CI-style build has no version in its name).
fn version_file(dir: &std::path::Path) -> Option<String> {
    let text = std::fs::read_to_string(dir.join("VERSION")).ok()?;
    let v = text.lines().next()?.trim();
    (!v.is_empty() && v.len() < 64).then(|| v.to_string())
}

fn verify_failed(command: &str, v: &Verified, waited: u64, logs_dir: PathBuf) -> InstallError {
    InstallError::VerifyFailed {
        problems: vec![format!(
            "the verify command `{command}` exited with {} in new SSH sessions after sshd restarted \
             (retried for up to {waited} s); output: {}",
            v.code,
            tail(&v.output, 10)
        )],
        logs_dir,
    }
}
