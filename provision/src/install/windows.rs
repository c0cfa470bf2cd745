//! The Windows steps of the install flow (`engine.rs`): PsExec placed after the upload, the
//! installer, PATH, sshd restart, verification from a fresh session, logs.

use std::path::PathBuf;
use std::time::Duration;

use crate::session::{GuestOs, Session};

use super::checks::{self, InstallResult, LogList, UninstallResult, VerifyResult};
use super::engine::{OsScripts, Runtime, Verified, flush};
use super::error::InstallError;
use super::events::{Progress, Step};
use super::guest::{self, check_cancel, run};
use super::plan::{self, GuestPaths};
use super::record::BuildToInstall;
use super::scripts;
use super::{Check, InstallOptions};
use crate::config::InstallMethod;

/// Where the MSI installs the runtime (and what must be on PATH).
pub const EFW_INSTALL_DIR: &str = r"C:\Program Files\ebpf-for-windows";

/// Log name install_ebpf.psm1 writes under %TEMP% when harness drives it.
const INSTALL_LOG: &str = "harness-efw-install.log";
const UNINSTALL_LOG: &str = "harness-efw-uninstall.log";

pub(super) const SCRIPTS: OsScripts = OsScripts {
    query: scripts::WIN_QUERY,
    forget: scripts::WIN_FORGET,
    prepare_dir: scripts::WIN_PREPARE_DIR,
    record: scripts::WIN_RECORD,
    marker_arg: "Marker",
    dir_arg: "Path",
    record_arg: "Record",
    query_extra: &[("InstallDir", EFW_INSTALL_DIR)],
    detects_runtime: true,
};

/// The Windows steps: install_ebpf.psm1 or setup-ebpf.ps1 through PsExec, PATH, verification
/// of services and `ebpfapi.dll` from a fresh session, logs listed from the guest.
pub(super) struct Windows<'a> {
    build: &'a BuildToInstall,
    opts: &'a InstallOptions,
    method: InstallMethod,
    logs_dir: PathBuf,
    paths: GuestPaths,
    /// The host's PsExec64.exe to place in the build directory (none if the build has one).
    psexec: Option<PathBuf>,
    notices: Vec<String>,
    logs: Vec<PathBuf>,
}

impl<'a> Windows<'a> {
    pub(super) fn new(
        build: &'a BuildToInstall,
        opts: &'a InstallOptions,
        paths: &GuestPaths,
        method: InstallMethod,
    ) -> Self {
        Windows {
            build,
            opts,
            method,
            logs_dir: opts.logs_dir(),
            paths: paths.clone(),
            psexec: None,
            notices: Vec::new(),
            logs: Vec::new(),
        }
    }
}

impl Runtime for Windows<'_> {
    fn scripts(&self) -> &OsScripts {
        &SCRIPTS
    }

    fn check_current(
        &mut self,
        session: &mut Session,
        progress: &mut Progress<'_>,
    ) -> Result<Result<Vec<Check>, String>, InstallError> {
        let v: VerifyResult = progress.step(Step::CheckCurrent, || {
            run(session, Step::CheckCurrent, scripts::WIN_VERIFY, &[])
        })?;
        let problems = checks::judge_verify(&v, EFW_INSTALL_DIR);
        Ok(if problems.is_empty() {
            Ok(verify_table(&v))
        } else {
            Err(format!("does not verify ({})", problems.join("; ")))
        })
    }

    fn preflight(&mut self) -> Result<(), InstallError> {
        // Needed only when installing; checked before anything in the guest changes.
        self.psexec = resolve_psexec(self.build, self.opts)?;
        Ok(())
    }

    fn uninstall(
        &mut self,
        session: &mut Session,
        progress: &mut Progress<'_>,
        dir: &str,
        required: bool,
    ) -> Result<bool, InstallError> {
        uninstall(
            session,
            progress,
            &self.paths,
            dir,
            &self.logs_dir,
            &mut self.notices,
            required,
        )
    }

    fn after_upload(
        &mut self,
        session: &mut Session,
        progress: &mut Progress<'_>,
    ) -> Result<(), InstallError> {
        let Some(p) = &self.psexec else {
            return Ok(());
        };
        check_cancel(&self.opts.cancel, Step::PlacePsexec)?;
        let target = plan::guest_join(GuestOs::Windows, &self.paths.build_dir, "PsExec64.exe");
        progress.step(Step::PlacePsexec, || {
            session
                .upload_file(p, &target)
                .map(|_| ())
                .map_err(InstallError::session(Step::PlacePsexec))
        })
    }

    fn install(
        &mut self,
        session: &mut Session,
        progress: &mut Progress<'_>,
    ) -> Result<(), InstallError> {
        let timeout = Duration::from_secs(self.opts.config.timeout.max(1));
        let (build_dir, logs_dir, method) = (&self.paths.build_dir, &self.logs_dir, self.method);
        let notices = &mut self.notices;
        let result = progress.step(Step::Install, || {
            let r: InstallResult = guest::run_with_timeout(
                session,
                Step::Install,
                scripts::WIN_INSTALL,
                timeout,
                &[
                    ("BuildDir", build_dir.clone()),
                    ("Method", plan::method_name(method).to_string()),
                    ("LogName", INSTALL_LOG.to_string()),
                    ("InstallDir", EFW_INSTALL_DIR.to_string()),
                ],
            )
            .inspect_err(|_| {
                collect_logs(session, build_dir, logs_dir, notices);
            })?;
            let problems = checks::judge_install(&r);
            if problems.is_empty() {
                return Ok(());
            }
            let files = collect_logs(session, build_dir, logs_dir, notices);
            Err(InstallError::InstallFailed {
                method: plan::method_name(method).into(),
                problems,
                excerpt: guest::excerpt(&files, &["msi-install", "install"], &r.output_tail, 12),
                logs_dir: logs_dir.clone(),
            })
        });
        flush(progress, &mut self.notices);
        result?;

        check_cancel(&self.opts.cancel, Step::EnsurePath)?;
        let p: checks::EnsurePathResult = progress.step(Step::EnsurePath, || {
            run(
                session,
                Step::EnsurePath,
                scripts::WIN_ENSURE_PATH,
                &[("Dir", EFW_INSTALL_DIR.to_string())],
            )
        })?;
        if p.changed {
            progress.notice(format!(
                "added {EFW_INSTALL_DIR} to the machine PATH (the MSI had not)"
            ));
        }
        Ok(())
    }

    fn restart_and_verify(
        &mut self,
        session: &mut Session,
        progress: &mut Progress<'_>,
    ) -> Result<Verified, InstallError> {
        let mut fresh: Option<VerifyResult> = None;
        let restart_timeout = Duration::from_secs(self.opts.config.restart_timeout.max(1));
        let restarted = progress.step(Step::RestartSshd, || {
            let mut check = |s: &mut Session| -> Result<bool, crate::session::SessionError> {
                // The first fresh session's view is what ebpf-go's tests will get; judged below.
                let v = s.run_script(&scripts::WIN_VERIFY, &[])?;
                fresh = Some(v.into_verify()?);
                Ok(true)
            };
            session
                .restart_sshd(&mut check, restart_timeout)
                .map_err(InstallError::session(Step::RestartSshd))
        });
        // A failed restart leaves no usable session to collect logs through.
        restarted?;

        let logs_dir = self.logs_dir.clone();
        let verify = progress.step(Step::Verify, || {
            let v = match fresh.take() {
                Some(v) => v,
                None => run(session, Step::Verify, scripts::WIN_VERIFY, &[])?,
            };
            let problems = checks::judge_verify(&v, EFW_INSTALL_DIR);
            if problems.is_empty() {
                Ok(v)
            } else {
                Err(InstallError::VerifyFailed { problems, logs_dir })
            }
        });
        let (build_dir, logs_dir) = (&self.paths.build_dir, &self.logs_dir);
        let notices = &mut self.notices;
        let logs = progress.step(Step::CollectLogs, || {
            Ok::<_, InstallError>(collect_logs(session, build_dir, logs_dir, notices))
        })?;
        self.logs.extend(logs);
        flush(progress, &mut self.notices);
        let verify = verify?;
        Ok(Verified {
            checks: verify_table(&verify),
            runtime_version: verify.runtime_version,
        })
    }

    fn take_logs(&mut self) -> Vec<PathBuf> {
        std::mem::take(&mut self.logs)
    }
}

trait IntoVerify {
    fn into_verify(self) -> Result<VerifyResult, crate::session::SessionError>;
}

impl IntoVerify for serde_json::Value {
    fn into_verify(self) -> Result<VerifyResult, crate::session::SessionError> {
        let text = self.to_string();
        serde_json::from_value(self).map_err(|e| crate::session::SessionError::BadScriptOutput {
            script: scripts::WIN_VERIFY.name.into(),
            reason: e.to_string(),
            stdout_tail: text,
        })
    }
}

/// Runs `uninstall.ps1` with the scripts in `dir` (falling back to the new build's). Returns
/// false when neither directory has an uninstaller yet and `required` is false (the caller
/// retries once the new build is unpacked).
fn uninstall(
    session: &mut Session,
    progress: &mut Progress<'_>,
    paths: &GuestPaths,
    dir: &str,
    logs_dir: &std::path::Path,
    notices: &mut Vec<String>,
    required: bool,
) -> Result<bool, InstallError> {
    let result = progress.step(Step::Uninstall, || {
        let u: UninstallResult = run(
            session,
            Step::Uninstall,
            scripts::WIN_UNINSTALL,
            &[
                ("BuildDir", dir.to_string()),
                ("FallbackDir", paths.build_dir.clone()),
                ("LogName", UNINSTALL_LOG.to_string()),
            ],
        )?;
        let Some(used) = u.dir.clone() else {
            if required {
                return Err(InstallError::UninstallFailed {
                    problems: vec![format!(
                        "neither {dir} nor {} holds setup-ebpf.ps1 or install_ebpf.psm1",
                        paths.build_dir
                    )],
                    excerpt: Vec::new(),
                    logs_dir: logs_dir.to_path_buf(),
                });
            }
            return Ok(false);
        };
        if used != dir {
            notices.push(format!(
                "the previous build's directory {dir} has no uninstaller; uninstalled with the new build's scripts"
            ));
        }
        let problems = checks::judge_uninstall(&u);
        if problems.is_empty() {
            return Ok(true);
        }
        let files = collect_logs(session, &paths.build_dir, logs_dir, notices);
        Err(InstallError::UninstallFailed {
            problems,
            excerpt: guest::excerpt(&files, &["uninstall"], &u.output_tail, 12),
            logs_dir: logs_dir.to_path_buf(),
        })
    });
    flush(progress, notices);
    result
}

/// The first PsExec64.exe found on the host, or none if the build already carries one.
fn resolve_psexec(
    build: &BuildToInstall,
    opts: &InstallOptions,
) -> Result<Option<PathBuf>, InstallError> {
    if let Some(found) = opts.psexec_candidates.iter().find(|p| p.is_file()) {
        return Ok(Some(found.clone()));
    }
    if build.local_dir.join("PsExec64.exe").is_file() {
        return Ok(None);
    }
    Err(InstallError::PsexecMissing {
        searched: opts.psexec_candidates.clone(),
    })
}

/// Lists and downloads the install logs; problems become notices.
fn collect_logs(
    session: &mut Session,
    build_dir: &str,
    logs_dir: &std::path::Path,
    notices: &mut Vec<String>,
) -> Vec<PathBuf> {
    match run::<LogList>(
        session,
        Step::CollectLogs,
        scripts::WIN_LIST_LOGS,
        &[("BuildDir", build_dir.to_string())],
    ) {
        Ok(list) => {
            let paths: Vec<String> = list.files.into_iter().map(|f| f.path).collect();
            let (saved, n) = guest::fetch_logs(session, &paths, logs_dir);
            notices.extend(n);
            saved
        }
        Err(e) => {
            notices.push(format!("could not list install logs: {e}"));
            Vec::new()
        }
    }
}

/// The short table `harness install` prints.
pub(super) fn verify_table(v: &VerifyResult) -> Vec<Check> {
    let mut rows = Vec::new();
    for name in checks::RUNTIME_SERVICES {
        let state = v.services.get(name).cloned().flatten();
        rows.push(Check {
            name: format!("service {name}"),
            ok: state.as_deref() == Some("Running"),
            detail: state.unwrap_or_else(|| "absent".into()),
        });
    }
    rows.push(Check {
        name: "ebpfapi.dll on PATH".into(),
        ok: v.ebpfapi_dll.is_some(),
        detail: v.ebpfapi_dll.clone().unwrap_or_else(|| "not found".into()),
    });
    rows.push(Check {
        name: "efW version".into(),
        // Informational: the build's own version may still be known.
        ok: true,
        detail: v
            .runtime_version
            .clone()
            .unwrap_or_else(|| "unknown".into()),
    });
    rows.push(Check {
        name: "netsh ebpf show programs".into(),
        ok: v.netsh_exit_code == Some(0),
        detail: match v.netsh_exit_code {
            Some(0) => "answers".into(),
            Some(c) => format!("exit code {c}"),
            None => "no exit code".into(),
        },
    });
    rows
}
