//! The Linux guest equivalent: a build's entry point is `setup.sh` at its root (`sh setup.sh`,
//! uninstall `sh setup.sh --uninstall`); verification is the configured command, run in a fresh
//! session after sshd restarted. It exercises the whole flow, restart included, without Windows.

use std::path::PathBuf;
use std::time::Duration;

use crate::session::{GuestOs, Session, SessionError, wrap};

use super::checks::SetupShResult;
use super::engine::{self, OsScripts, Runtime, flush};
use super::error::InstallError;
use super::events::{Progress, Step};
use super::guest::{self, run};
use super::plan::{self, GuestPaths};
use super::record::BuildToInstall;
use super::scripts;
use super::{Check, InstallOptions};

const SETUP_LOG: &str = "harness-setup.log";
const UNINSTALL_LOG: &str = "harness-uninstall.log";

/// The verify command's outcome.
struct Ran {
    code: i32,
    output: String,
}

pub(super) const SCRIPTS: OsScripts = OsScripts {
    query: scripts::LINUX_QUERY,
    forget: scripts::LINUX_FORGET,
    prepare_dir: scripts::LINUX_PREPARE_DIR,
    record: scripts::LINUX_RECORD,
    marker_arg: "marker",
    dir_arg: "dir",
    record_arg: "record",
    query_extra: &[],
    detects_runtime: false,
};

/// The Linux steps: `sh setup.sh` and the configured verify command.
pub(super) struct Linux<'a> {
    build: &'a BuildToInstall,
    opts: &'a InstallOptions,
    build_dir: String,
    logs_dir: PathBuf,
    logs: Vec<PathBuf>,
}

impl<'a> Linux<'a> {
    pub(super) fn new(
        build: &'a BuildToInstall,
        opts: &'a InstallOptions,
        paths: &GuestPaths,
    ) -> Self {
        Linux {
            build,
            opts,
            build_dir: paths.build_dir.clone(),
            logs_dir: opts.logs_dir(),
            logs: Vec::new(),
        }
    }

    fn verify_timeout(&self) -> Duration {
        Duration::from_secs(self.opts.config.timeout.max(1))
    }
}

impl Runtime for Linux<'_> {
    fn scripts(&self) -> &OsScripts {
        &SCRIPTS
    }

    fn check_current(
        &mut self,
        session: &mut Session,
        progress: &mut Progress<'_>,
    ) -> Result<Result<Vec<Check>, String>, InstallError> {
        let command = &self.opts.config.verify_command;
        let timeout = self.verify_timeout();
        let v = progress.step(Step::CheckCurrent, || {
            verify_command(session, command, timeout)
                .map_err(InstallError::session(Step::CheckCurrent))
        })?;
        Ok(if v.code == 0 {
            Ok(vec![verify_row(command, &v)])
        } else {
            Err(format!("its verify command fails (exit code {})", v.code))
        })
    }

    fn uninstall(
        &mut self,
        session: &mut Session,
        progress: &mut Progress<'_>,
        dir: &str,
        required: bool,
    ) -> Result<bool, InstallError> {
        let fallback = (dir != self.build_dir).then_some(self.build_dir.as_str());
        uninstall(
            session,
            progress,
            dir,
            fallback,
            required,
            &self.logs_dir,
            &mut self.logs,
        )
    }

    fn install(
        &mut self,
        session: &mut Session,
        progress: &mut Progress<'_>,
    ) -> Result<(), InstallError> {
        let log = plan::guest_join(GuestOs::Linux, &self.build_dir, SETUP_LOG);
        let (build_dir, logs_dir) = (&self.build_dir, &self.logs_dir);
        let mut notices = Vec::new();
        let installed = progress.step(Step::Install, || {
            let r: SetupShResult = run(
                session,
                Step::Install,
                scripts::LINUX_RUN_SETUP,
                &[
                    ("dir", build_dir.clone()),
                    ("log", log.clone()),
                    ("action", "install".into()),
                ],
            )?;
            let (saved, n) = guest::fetch_logs(session, std::slice::from_ref(&log), logs_dir);
            notices.extend(n);
            if r.exit_code != 0 {
                return Err(InstallError::SetupShFailed {
                    uninstall: false,
                    code: r.exit_code,
                    dir: build_dir.clone(),
                    excerpt: guest::excerpt(&saved, &[], &[], 12),
                    log: saved.first().cloned(),
                });
            }
            Ok(saved)
        });
        flush(progress, &mut notices);
        self.logs.extend(installed?);
        Ok(())
    }

    fn restart_and_verify(
        &mut self,
        session: &mut Session,
        progress: &mut Progress<'_>,
    ) -> Result<engine::Verified, InstallError> {
        let cfg = &self.opts.config;
        let timeout = self.verify_timeout();
        // sshd re-reads its configuration in place on SIGHUP (same pid), so a session that
        // answers right after the trigger may still be served with the old configuration: keep
        // reconnecting until the verify command passes, bounded by restart_timeout, and report
        // its last outcome.
        let mut fresh: Option<Ran> = None;
        let restarted = progress.step(Step::RestartSshd, || {
            let mut check = |s: &mut Session| -> Result<bool, SessionError> {
                let v = verify_command(s, &cfg.verify_command, timeout)?;
                let ok = v.code == 0;
                fresh = Some(v);
                Ok(ok)
            };
            session
                .restart_sshd(&mut check, Duration::from_secs(cfg.restart_timeout.max(1)))
                .map_err(InstallError::session(Step::RestartSshd))
        });
        let failed = |v: &Ran| {
            verify_failed(
                &cfg.verify_command,
                v,
                cfg.restart_timeout,
                self.logs_dir.clone(),
            )
        };
        if let Err(e) = restarted {
            // The guest came back but never passed the check: a verification failure.
            return Err(match fresh.take() {
                Some(v) if v.code != 0 => failed(&v),
                _ => e,
            });
        }
        let verified = progress.step(Step::Verify, || {
            let v = match fresh.take() {
                Some(v) => v,
                None => verify_command(session, &cfg.verify_command, timeout)
                    .map_err(InstallError::session(Step::Verify))?,
            };
            if v.code == 0 { Ok(v) } else { Err(failed(&v)) }
        })?;
        Ok(engine::Verified {
            checks: vec![verify_row(&cfg.verify_command, &verified)],
            runtime_version: version_file(&self.build.local_dir),
        })
    }

    fn take_logs(&mut self) -> Vec<PathBuf> {
        std::mem::take(&mut self.logs)
    }
}

/// `sh setup.sh --uninstall` in the old build's directory; if it has no setup.sh, with the new
/// build's (`fallback`). Without a setup.sh anywhere: `Ok(false)`, or an error if `required`.
fn uninstall(
    session: &mut Session,
    progress: &mut Progress<'_>,
    old_dir: &str,
    fallback: Option<&str>,
    required: bool,
    logs_dir: &std::path::Path,
    logs: &mut Vec<PathBuf>,
) -> Result<bool, InstallError> {
    let mut notices = Vec::new();
    let result = progress.step(Step::Uninstall, || {
        let mut dir = old_dir.to_string();
        let mut log = plan::guest_join(GuestOs::Linux, &dir, UNINSTALL_LOG);
        let args = |d: &str, l: &str| [("dir", d.to_string()), ("log", l.to_string()), ("action", "uninstall".to_string())];
        let mut r: SetupShResult = run(session, Step::Uninstall, scripts::LINUX_RUN_SETUP, &args(&dir, &log))?;
        let missing = |r: &SetupShResult| r.exit_code == 127 && r.log.is_none();
        if missing(&r)
            && let Some(f) = fallback
        {
            notices.push(format!("the previous build's directory {old_dir} has no setup.sh; uninstalling with the new build's"));
            dir = f.to_string();
            log = plan::guest_join(GuestOs::Linux, &dir, UNINSTALL_LOG);
            r = run(session, Step::Uninstall, scripts::LINUX_RUN_SETUP, &args(&dir, &log))?;
        }
        if missing(&r) && !required {
            return Ok(false);
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
        Ok(true)
    });
    flush(progress, &mut notices);
    result
}

/// Runs the configured verify command; an empty command only proves a session answers.
fn verify_command(
    session: &mut Session,
    command: &str,
    timeout: Duration,
) -> Result<Ran, SessionError> {
    let cmd = if command.trim().is_empty() {
        "true"
    } else {
        command
    };
    let out = session.exec_capture(&wrap::shell(GuestOs::Linux, cmd).timeout(timeout))?;
    Ok(Ran {
        code: out.status.code,
        output: format!("{}{}", out.stdout, out.stderr),
    })
}

fn verify_row(command: &str, v: &Ran) -> Check {
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

fn verify_failed(command: &str, v: &Ran, waited: u64, logs_dir: PathBuf) -> InstallError {
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
