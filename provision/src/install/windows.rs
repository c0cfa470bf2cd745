//! The Windows install sequence: query → (check current) → upload → PsExec → uninstall old →
//! install → PATH → restart sshd → verify from a fresh session → logs → record.

use std::path::PathBuf;
use std::time::Duration;

use crate::session::{GuestOs, Session};

use super::checks::{self, InstallResult, LogList, QueryResult, UninstallResult, VerifyResult};
use super::error::InstallError;
use super::events::{InstallEvent, Progress, Step};
use super::guest::{self, check_cancel, run};
use super::plan::{self, BuildLayout, GuestPaths, Plan};
use super::record::{BuildToInstall, InstallRecord};
use super::scripts;
use super::{Check, InstallOptions, InstallOutcome, InstallReport, now_unix};

/// Where the MSI installs the runtime (and what must be on PATH).
pub const EFW_INSTALL_DIR: &str = r"C:\Program Files\ebpf-for-windows";

/// Log name install_ebpf.psm1 writes under %TEMP% when harness drives it.
const INSTALL_LOG: &str = "harness-efw-install.log";
const UNINSTALL_LOG: &str = "harness-efw-uninstall.log";

pub(super) fn install(
    session: &mut Session,
    build: &BuildToInstall,
    opts: &InstallOptions,
    progress: &mut Progress<'_>,
) -> Result<InstallReport, InstallError> {
    let cfg = &opts.config;
    let paths = GuestPaths::new(GuestOs::Windows, &cfg.guest_dir, build.key())
        .map_err(InstallError::Invalid)?;
    let layout = BuildLayout::of_dir(&build.local_dir);
    let method =
        plan::choose_method(cfg.method, GuestOs::Windows, layout).map_err(InstallError::Invalid)?;
    let logs_dir = opts.results_dir.join("install-logs");

    check_cancel(&opts.cancel, Step::Query)?;
    let q: QueryResult = progress.step(Step::Query, || {
        run(
            session,
            Step::Query,
            scripts::WIN_QUERY,
            &[
                ("Marker", paths.marker.clone()),
                ("InstallDir", EFW_INSTALL_DIR.to_string()),
            ],
        )
    })?;
    let current = parse_record(q.marker.as_ref(), progress);

    let mut decision = plan::decide(
        current.as_ref(),
        q.runtime_present(),
        build.key(),
        opts.force,
        None,
    );
    if decision == Plan::CheckCurrent {
        let v: VerifyResult = progress.step(Step::CheckCurrent, || {
            run(session, Step::CheckCurrent, scripts::WIN_VERIFY, &[])
        })?;
        let problems = checks::judge_verify(&v, EFW_INSTALL_DIR);
        if problems.is_empty() {
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
                checks: verify_table(&v),
                logs: Vec::new(),
            });
        }
        progress.notice(format!(
            "build {} is recorded as installed but does not verify ({}); reinstalling",
            build.key(),
            problems.join("; ")
        ));
        decision = plan::decide(
            current.as_ref(),
            q.runtime_present(),
            build.key(),
            opts.force,
            Some(false),
        );
    }
    let Plan::Install {
        replace,
        unknown_runtime,
    } = decision
    else {
        unreachable!("decide returns Install once the current build was checked")
    };

    // Needed only when installing; checked before anything in the guest changes.
    let psexec = resolve_psexec(build, opts)?;

    // From here on an install may be half done: drop the record first, so a failure is never
    // mistaken for the old build still being installed.
    check_cancel(&opts.cancel, Step::Uninstall)?;
    run::<serde_json::Value>(
        session,
        Step::Uninstall,
        scripts::WIN_FORGET,
        &[("Marker", paths.marker.clone())],
    )?;
    let mut notices = Vec::new();
    let mut uninstalled = !(replace.is_some() || unknown_runtime);
    // The runtime may hold files of this very directory (install_ebpf.psm1 registers
    // sample_ebpf_ext.sys from it): uninstall before the directory is replaced.
    let same_dir = replace
        .as_ref()
        .map_or(unknown_runtime, |r| r.guest_dir == paths.build_dir);
    if !uninstalled && same_dir {
        uninstalled = uninstall(
            session,
            progress,
            &paths,
            &paths.build_dir,
            &logs_dir,
            &mut notices,
            false,
        )?;
    }

    check_cancel(&opts.cancel, Step::PrepareDir)?;
    progress.step(Step::PrepareDir, || {
        run::<serde_json::Value>(
            session,
            Step::PrepareDir,
            scripts::WIN_PREPARE_DIR,
            &[("Path", paths.build_dir.clone())],
        )
    })?;
    check_cancel(&opts.cancel, Step::Upload)?;
    progress.step(Step::Upload, || {
        session
            .upload_tree(&build.local_dir, &paths.build_dir)
            .map(|_| ())
            .map_err(InstallError::session(Step::Upload))
    })?;
    if let Some(p) = &psexec {
        check_cancel(&opts.cancel, Step::PlacePsexec)?;
        let target = plan::guest_join(GuestOs::Windows, &paths.build_dir, "PsExec64.exe");
        progress.step(Step::PlacePsexec, || {
            session
                .upload_file(p, &target)
                .map(|_| ())
                .map_err(InstallError::session(Step::PlacePsexec))
        })?;
    }

    if !uninstalled {
        check_cancel(&opts.cancel, Step::Uninstall)?;
        let old_dir = replace
            .as_ref()
            .map(|r| r.guest_dir.clone())
            .unwrap_or_else(|| paths.build_dir.clone());
        uninstall(
            session,
            progress,
            &paths,
            &old_dir,
            &logs_dir,
            &mut notices,
            true,
        )?;
    }

    check_cancel(&opts.cancel, Step::Install)?;
    let timeout = Duration::from_secs(cfg.timeout.max(1));
    let result = progress.step(Step::Install, || {
        let r: InstallResult = guest::run_with_timeout(
            session,
            Step::Install,
            scripts::WIN_INSTALL,
            timeout,
            &[
                ("BuildDir", paths.build_dir.clone()),
                ("Method", plan::method_name(method).to_string()),
                ("LogName", INSTALL_LOG.to_string()),
                ("InstallDir", EFW_INSTALL_DIR.to_string()),
            ],
        )
        .inspect_err(|_| {
            collect_logs(session, &paths.build_dir, &logs_dir, &mut notices);
        })?;
        let problems = checks::judge_install(&r);
        if problems.is_empty() {
            return Ok(());
        }
        let files = collect_logs(session, &paths.build_dir, &logs_dir, &mut notices);
        Err(InstallError::InstallFailed {
            method: plan::method_name(method).into(),
            problems,
            excerpt: guest::excerpt(&files, &["msi-install", "install"], &r.output_tail, 12),
            logs_dir: logs_dir.clone(),
        })
    });
    flush(progress, &mut notices);
    result?;

    check_cancel(&opts.cancel, Step::EnsurePath)?;
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

    check_cancel(&opts.cancel, Step::RestartSshd)?;
    let mut fresh: Option<VerifyResult> = None;
    let restarted = progress.step(Step::RestartSshd, || {
        let mut check = |s: &mut Session| -> Result<bool, crate::session::SessionError> {
            // The first fresh session's view is what ebpf-go's tests will get; judge it below.
            let v = s.run_script(&scripts::WIN_VERIFY, &[])?;
            fresh = Some(v.into_verify()?);
            Ok(true)
        };
        session
            .restart_sshd(&mut check, Duration::from_secs(cfg.restart_timeout.max(1)))
            .map_err(InstallError::session(Step::RestartSshd))
    });
    // A failed restart leaves no usable session to collect logs through.
    restarted?;

    let verify = progress.step(Step::Verify, || {
        let v = match fresh.take() {
            Some(v) => v,
            None => run(session, Step::Verify, scripts::WIN_VERIFY, &[])?,
        };
        let problems = checks::judge_verify(&v, EFW_INSTALL_DIR);
        if problems.is_empty() {
            Ok(v)
        } else {
            Err(problems)
        }
        .map_err(|problems| InstallError::VerifyFailed {
            problems,
            logs_dir: logs_dir.clone(),
        })
    });
    let logs = progress.step(Step::CollectLogs, || {
        Ok::<_, InstallError>(collect_logs(
            session,
            &paths.build_dir,
            &logs_dir,
            &mut notices,
        ))
    })?;
    flush(progress, &mut notices);
    let verify = verify?;

    let record = InstallRecord {
        build: build.provenance.clone(),
        method,
        guest_dir: paths.build_dir.clone(),
        installed_at: now_unix(),
        harness_version: env!("CARGO_PKG_VERSION").into(),
        runtime_version: verify.runtime_version.clone(),
    };
    let json = serde_json::to_string(&record).expect("record serializes");
    progress.step(Step::Record, || {
        run::<serde_json::Value>(
            session,
            Step::Record,
            scripts::WIN_RECORD,
            &[("Marker", paths.marker.clone()), ("Record", json.clone())],
        )
    })?;
    Ok(InstallReport {
        outcome: InstallOutcome::Installed {
            replaced: replace.map(|r| r.build),
        },
        record,
        checks: verify_table(&verify),
        logs,
    })
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

fn parse_record(
    marker: Option<&serde_json::Value>,
    progress: &mut Progress<'_>,
) -> Option<InstallRecord> {
    let m = marker?;
    match serde_json::from_value::<InstallRecord>(m.clone()) {
        Ok(r) => Some(r),
        Err(e) => {
            progress.notice(format!(
                "ignoring an unreadable install record in the guest ({e})"
            ));
            None
        }
    }
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

fn flush(progress: &mut Progress<'_>, notices: &mut Vec<String>) {
    for n in notices.drain(..) {
        progress.notice(n);
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
