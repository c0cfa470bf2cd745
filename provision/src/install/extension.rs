//! eBPF extensions (ntosebpfext): a kernel service plus program types in the eBPF store.
//! Order matters: eBPFCore running → service created and Running → export tool → store checked.

use crate::config::{ExtensionConfig, InstallConfig};
use crate::session::{GuestOs, Session};

use super::checks::{self, ExtQuery, ExtRemove, ExtStart, ProgramTypes, ToolRun};
use super::engine;
use super::error::InstallError;
use super::events::{Progress, Step};
use super::guest::run;
use super::plan::{self, GuestPaths};
use super::record::{BuildToInstall, ExtensionState};
use super::scripts;
use super::windows;

/// Seconds `ext_remove.ps1` waits for a deleted service to disappear.
const DELETE_WAIT_SECS: u32 = 20;
/// Milliseconds between start attempts.
const START_DELAY_MS: u32 = 1000;

fn require_windows(session: &Session, name: &str) -> Result<(), InstallError> {
    if session.os() != GuestOs::Windows {
        return Err(InstallError::Invalid(format!(
            "extension {name}: extensions are Windows kernel drivers; this guest runs Linux"
        )));
    }
    Ok(())
}

fn validate(name: &str, cfg: &ExtensionConfig) -> Result<(), InstallError> {
    let missing: Vec<&str> = [
        ("driver", cfg.driver.as_str()),
        ("service", cfg.service.as_str()),
        ("export_tool", cfg.export_tool.as_str()),
    ]
    .iter()
    .filter(|(_, v)| v.trim().is_empty())
    .map(|(k, _)| *k)
    .collect();
    if !missing.is_empty() {
        return Err(InstallError::Invalid(format!(
            "[extensions.{name}.install] lacks {}",
            missing.join(", ")
        )));
    }
    if !matches!(cfg.start.as_str(), "demand" | "auto" | "system" | "boot") {
        return Err(InstallError::Invalid(format!(
            "[extensions.{name}.install] start = \"{}\" is not a service start type (demand, auto, system)",
            cfg.start
        )));
    }
    if cfg
        .service
        .chars()
        .any(|c| !(c.is_ascii_alphanumeric() || c == '_' || c == '-'))
    {
        return Err(InstallError::Invalid(format!(
            "[extensions.{name}.install] service = \"{}\": use letters, digits, '_' or '-'",
            cfg.service
        )));
    }
    Ok(())
}

fn fail(
    name: &str,
    step: Step,
    problems: Vec<String>,
    output: &[String],
    hint: &str,
) -> InstallError {
    InstallError::Extension {
        name: name.into(),
        step,
        problems,
        excerpt: output
            .iter()
            .filter(|l| !l.trim().is_empty())
            .cloned()
            .collect(),
        hint: hint.into(),
    }
}

pub(super) fn install(
    session: &mut Session,
    name: &str,
    cfg: &ExtensionConfig,
    build: &BuildToInstall,
    install: &InstallConfig,
    progress: &mut Progress<'_>,
) -> Result<ExtensionState, InstallError> {
    require_windows(session, name)?;
    validate(name, cfg)?;
    for file in [&cfg.driver, &cfg.export_tool] {
        if !build.local_dir.join(file).is_file() {
            return Err(InstallError::Invalid(format!(
                "extension {name}: the build at {} has no {file}",
                build.local_dir.display()
            )));
        }
    }
    let paths = GuestPaths::new(GuestOs::Windows, &install.guest_dir, build.key())
        .map_err(InstallError::Invalid)?;
    let driver = plan::guest_join(GuestOs::Windows, &paths.build_dir, &cfg.driver);
    let tool = plan::guest_join(GuestOs::Windows, &paths.build_dir, &cfg.export_tool);

    let reinstall = precheck(session, progress, name, cfg)?.status.is_some();
    // The old driver file may be loaded from this very directory: remove the service first.
    if reinstall {
        remove_service(session, progress, name, &cfg.service)?;
    }
    // An extension install has no cancel flag to check between steps.
    let no_cancel = None;
    engine::stage(
        &windows::SCRIPTS,
        session,
        &build.local_dir,
        &paths.build_dir,
        &no_cancel,
        progress,
    )?;
    create_service(session, progress, name, cfg, &driver)?;
    start_service(session, progress, name, cfg)?;
    if reinstall {
        export(session, progress, name, &tool, true)?;
    }
    export(session, progress, name, &tool, false)?;
    let (present, missing) = verify_program_types(session, progress, name, cfg)?;

    Ok(ExtensionState {
        name: name.into(),
        service: cfg.service.clone(),
        status: Some("Running".into()),
        binary_path: Some(driver),
        program_types_present: present,
        program_types_missing: missing,
    })
}

/// The service's state, refusing to go on unless eBPFCore runs.
fn precheck(
    session: &mut Session,
    progress: &mut Progress<'_>,
    name: &str,
    cfg: &ExtensionConfig,
) -> Result<ExtQuery, InstallError> {
    progress.step(Step::ExtPrecheck, || {
        let q: ExtQuery = run(
            session,
            Step::ExtPrecheck,
            scripts::WIN_EXT_QUERY,
            &[("Service", cfg.service.clone())],
        )?;
        if q.ebpfcore.as_deref() != Some("Running") {
            return Err(fail(
                name,
                Step::ExtPrecheck,
                vec![format!(
                    "eBPFCore is {}",
                    q.ebpfcore
                        .as_deref()
                        .map(|s| format!("{s}, not Running"))
                        .unwrap_or_else(|| "not installed".into())
                )],
                &[],
                "install the efW runtime first (`harness install`)",
            ));
        }
        Ok(q)
    })
}

/// `sc.exe create` for the driver at `driver`.
fn create_service(
    session: &mut Session,
    progress: &mut Progress<'_>,
    name: &str,
    cfg: &ExtensionConfig,
    driver: &str,
) -> Result<(), InstallError> {
    progress.step(Step::ExtCreateService, || {
        let r: ToolRun = run(
            session,
            Step::ExtCreateService,
            scripts::WIN_EXT_CREATE,
            &[
                ("Service", cfg.service.clone()),
                ("Driver", driver.to_string()),
                ("Start", cfg.start.clone()),
            ],
        )?;
        if r.exit_code != Some(0) {
            return Err(fail(
                name,
                Step::ExtCreateService,
                vec![format!(
                    "`sc.exe create {}` exited with {}",
                    cfg.service,
                    code(r.exit_code)
                )],
                &r.output,
                "check the service name is free (`sc.exe query`) and the driver path exists",
            ));
        }
        Ok(())
    })
}

/// Starts the service, retrying, until it runs.
fn start_service(
    session: &mut Session,
    progress: &mut Progress<'_>,
    name: &str,
    cfg: &ExtensionConfig,
) -> Result<(), InstallError> {
    progress.step(Step::ExtStartService, || {
        let r: ExtStart = run(session, Step::ExtStartService, scripts::WIN_EXT_START, &[
            ("Service", cfg.service.clone()),
            ("Attempts", cfg.start_attempts.max(1).to_string()),
            ("DelayMilliseconds", START_DELAY_MS.to_string()),
        ])?;
        if r.status.as_deref() != Some("Running") {
            return Err(fail(
                name,
                Step::ExtStartService,
                vec![format!(
                    "service {} did not reach Running after {} attempts (last status {}, last `sc.exe start` {})",
                    cfg.service,
                    r.attempts,
                    r.status.as_deref().unwrap_or("unknown"),
                    code(r.last_exit_code)
                )],
                &r.output,
                "check test signing is on (bcdedit /set TESTSIGNING ON), the driver matches the installed \
                 efW version, and the System event log",
            ));
        }
        Ok(())
    })
}

/// The configured program types are in the eBPF store (some are, when none are configured):
/// which are present and which missing.
fn verify_program_types(
    session: &mut Session,
    progress: &mut Progress<'_>,
    name: &str,
    cfg: &ExtensionConfig,
) -> Result<(Vec<String>, Vec<String>), InstallError> {
    progress.step(Step::ExtVerify, || {
        let t: ProgramTypes = run(session, Step::ExtVerify, scripts::WIN_EXT_PROGRAM_TYPES, &[])?;
        let (present, missing) = checks::match_program_types(&cfg.program_types, &t.program_types);
        if !missing.is_empty() {
            return Err(fail(
                name,
                Step::ExtVerify,
                vec![format!("program types missing from HKLM\\Software\\eBPF: {}", missing.join(", "))],
                &t.program_types.iter().map(|p| format!("registered: {} {}", p.guid, p.name.clone().unwrap_or_default())).collect::<Vec<_>>(),
                "the export tool may not match this efW version (ntosebpfext#152); rerun with `harness ext install`",
            ));
        }
        if cfg.program_types.is_empty() && t.program_types.is_empty() {
            return Err(fail(
                name,
                Step::ExtVerify,
                vec!["no program types are registered under HKLM\\Software\\eBPF after the export tool ran".into()],
                &[],
                "set [extensions.NAME.install] program_types to what the extension provides, and check the export tool's output",
            ));
        }
        Ok((present, missing))
    })
}

fn remove_service(
    session: &mut Session,
    progress: &mut Progress<'_>,
    name: &str,
    service: &str,
) -> Result<(), InstallError> {
    progress.step(Step::ExtRemoveService, || {
        let r: ExtRemove = run(
            session,
            Step::ExtRemoveService,
            scripts::WIN_EXT_REMOVE,
            &[
                ("Service", service.to_string()),
                ("WaitSeconds", DELETE_WAIT_SECS.to_string()),
            ],
        )?;
        let problems = checks::judge_ext_remove(&r, service);
        if !problems.is_empty() {
            return Err(fail(
                name,
                Step::ExtRemoveService,
                problems,
                &r.output,
                "reboot the guest, then retry",
            ));
        }
        Ok(())
    })
}

fn export(
    session: &mut Session,
    progress: &mut Progress<'_>,
    name: &str,
    tool: &str,
    clear: bool,
) -> Result<(), InstallError> {
    let step = if clear {
        Step::ExtExportClear
    } else {
        Step::ExtExport
    };
    progress.step(step, || {
        let r: ToolRun = run(
            session,
            step,
            scripts::WIN_EXT_EXPORT,
            &[("Tool", tool.to_string()), ("Clear", clear.to_string())],
        )?;
        if r.exit_code != Some(0) {
            return Err(fail(
                name,
                step,
                vec![format!(
                    "`{tool}{}` exited with {}",
                    if clear { " --clear" } else { "" },
                    code(r.exit_code)
                )],
                &r.output,
                "the export tools need the VC runtime (ntosebpfext#286); install it in the guest",
            ));
        }
        Ok(())
    })
}

pub(super) fn remove(
    session: &mut Session,
    name: &str,
    cfg: &ExtensionConfig,
    progress: &mut Progress<'_>,
) -> Result<ExtensionState, InstallError> {
    require_windows(session, name)?;
    validate(name, cfg)?;
    let q: ExtQuery = progress.step(Step::Query, || {
        run(
            session,
            Step::Query,
            scripts::WIN_EXT_QUERY,
            &[("Service", cfg.service.clone())],
        )
    })?;
    if q.status.is_none() {
        progress.emit(super::InstallEvent::Skipped {
            reason: format!("extension {name}: service {} does not exist", cfg.service),
        });
    } else {
        // The export tool lives beside the driver the service points at.
        match q.binary_path.as_deref().and_then(driver_dir) {
            Some(dir) => {
                let tool = plan::guest_join(GuestOs::Windows, &dir, &cfg.export_tool);
                export(session, progress, name, &tool, true)?;
            }
            None => progress.notice(format!(
                "extension {name}: cannot tell where the driver is ({:?}); eBPF store entries left in place",
                q.binary_path
            )),
        }
        remove_service(session, progress, name, &cfg.service)?;
    }
    Ok(ExtensionState {
        name: name.into(),
        service: cfg.service.clone(),
        status: None,
        binary_path: None,
        program_types_present: Vec::new(),
        program_types_missing: cfg.program_types.clone(),
    })
}

pub(super) fn list(
    session: &mut Session,
    configs: &[(String, ExtensionConfig)],
) -> Result<Vec<ExtensionState>, InstallError> {
    let Some((name, _)) = configs.first() else {
        return Ok(Vec::new());
    };
    require_windows(session, name)?;
    let types: ProgramTypes = run(session, Step::Query, scripts::WIN_EXT_PROGRAM_TYPES, &[])?;
    let mut out = Vec::new();
    for (name, cfg) in configs {
        let q: ExtQuery = run(
            session,
            Step::Query,
            scripts::WIN_EXT_QUERY,
            &[("Service", cfg.service.clone())],
        )?;
        let (present, missing) =
            checks::match_program_types(&cfg.program_types, &types.program_types);
        out.push(ExtensionState {
            name: name.clone(),
            service: cfg.service.clone(),
            status: q.status,
            binary_path: q.binary_path,
            program_types_present: present,
            program_types_missing: missing,
        });
    }
    Ok(out)
}

/// The directory of a service's ImagePath (`"C:\x\y.sys"`, `\??\C:\x\y.sys`, `C:\x\y.sys`).
pub fn driver_dir(image_path: &str) -> Option<String> {
    let p = image_path.trim().trim_matches('"');
    let p = p.strip_prefix(r"\??\").unwrap_or(p);
    let (dir, file) = p.rsplit_once('\\')?;
    if dir.is_empty() || file.is_empty() || !dir.contains(':') {
        return None;
    }
    Some(dir.to_string())
}

fn code(c: Option<i64>) -> String {
    c.map(|c| format!("exit code {c}"))
        .unwrap_or_else(|| "no exit code".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn driver_dir_table() {
        for (input, want) in [
            (
                r#""C:\harness\efw\k\ntosebpfext.sys""#,
                Some(r"C:\harness\efw\k"),
            ),
            (
                r"\??\C:\harness\efw\k\ntosebpfext.sys",
                Some(r"C:\harness\efw\k"),
            ),
            (r"C:\a b\x.sys", Some(r"C:\a b")),
            (r"system32\drivers\x.sys", None),
            ("", None),
        ] {
            assert_eq!(driver_dir(input).as_deref(), want, "{input}");
        }
    }

    #[test]
    fn config_validation() {
        let good = ExtensionConfig {
            driver: "ntosebpfext.sys".into(),
            service: "ntosebpfext".into(),
            export_tool: "x.exe".into(),
            ..Default::default()
        };
        assert!(validate("n", &good).is_ok());
        let e = validate(
            "n",
            &ExtensionConfig {
                driver: "".into(),
                ..good.clone()
            },
        )
        .unwrap_err();
        assert!(e.to_string().contains("lacks driver"), "{e}");
        let e = validate(
            "n",
            &ExtensionConfig {
                start: "sometimes".into(),
                ..good.clone()
            },
        )
        .unwrap_err();
        assert!(e.to_string().contains("start type"), "{e}");
        let e = validate(
            "n",
            &ExtensionConfig {
                service: "a b".into(),
                ..good
            },
        )
        .unwrap_err();
        assert!(e.to_string().contains("service"), "{e}");
    }
}
