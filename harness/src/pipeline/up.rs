//! `up`: provision → artifacts → install → extensions.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context as _;
use provision::GuestOs;
use provision::install::{BuildToInstall, InstallOutcome, InstallReport};
use provision::session::{Session, SessionOptions};
use provision::vm::{UpOptions, UpOutcome, Vm};

use super::install::{EfwRequest, enabled_extensions, install_extensions, install_runtime};
use crate::context::Context;
use crate::phases::Phases;

/// What `up` is asked for.
#[derive(Debug, Clone, Default)]
pub struct UpRequest {
    /// Windows 11 ISO to install from (overrides `[vm] iso`).
    pub iso: Option<PathBuf>,
    /// Which efW build, and how to install it.
    pub efw: EfwRequest,
    /// Boot even if the ready snapshot exists.
    pub cold: bool,
    /// Only bring the VM to SSH-ready: no build, no install.
    pub vm_only: bool,
    /// After a cold boot, save the ready snapshot (always for the full pipeline).
    pub save_snapshot: bool,
    /// Leave the VM running when the `Vm` handle is dropped.
    pub detach: bool,
    /// Accept a guest host key that differs from the pinned one.
    pub accept_new_host_key: bool,
}

/// What `up` leaves behind for `run`.
pub struct Ready {
    /// Held for its lock; dropping it stops a VM started without `detach`.
    pub _vm: Vm,
    pub up: UpOutcome,
    pub session: Option<Session>,
    pub install: Option<InstallReport>,
    /// The efW build `install` installed.
    pub build: Option<BuildToInstall>,
}

/// Opens a session to the VM `up` just made ready.
fn connect(ctx: &Context, up: &UpOutcome, accept_new: bool) -> anyhow::Result<Session> {
    let mut opts = SessionOptions::new(up.known_hosts.clone());
    opts.accept_new_host_key = accept_new;
    let s = Session::connect_with_retry(&up.endpoint, &opts, Duration::from_secs(60))
        .with_context(|| format!("connecting to the guest at {}", up.endpoint))?;
    Ok(s.with_cancel(ctx.cancel.clone()))
}

/// provision → artifacts → install → extensions.
pub fn up(
    ctx: &Context,
    req: &UpRequest,
    phases: &mut Phases,
    results_dir: Option<&Path>,
) -> anyhow::Result<Ready> {
    let (vm, up) = provision(ctx, req, phases)?;
    let mut ready = Ready {
        _vm: vm,
        up,
        session: None,
        install: None,
        build: None,
    };
    if req.vm_only {
        return Ok(ready);
    }
    let mut session = connect(ctx, &ready.up, req.accept_new_host_key)?;
    if req.efw.none(ctx) {
        // A Linux kernel as the target: nothing to fetch or install, CI_EFW_VERSION stays unset.
        phases.run("install", || {
            Ok(((), "skipped: [efw] source = \"none\"".to_string()))
        })?;
    } else {
        let (report, build) = install_efw(ctx, &req.efw, &mut session, phases, results_dir)?;
        ready.install = Some(report);
        ready.build = Some(build);
    }
    ready.session = Some(session);
    Ok(ready)
}

/// The provision phase: the VM up and reachable over SSH.
fn provision(
    ctx: &Context,
    req: &UpRequest,
    phases: &mut Phases,
) -> anyhow::Result<(Vm, UpOutcome)> {
    let opts = UpOptions {
        detach: req.detach,
        cold: req.cold,
        save_ready_snapshot: req.save_snapshot || !req.vm_only,
        psexec: ctx.config.install.psexec.clone(),
        ..Default::default()
    };
    phases.run("provision", || {
        let (vm, up) = bring_up(ctx, req.iso.clone(), &opts)?;
        let how = match (&up.restored_snapshot, up.already_running) {
            (_, true) => "already running".to_string(),
            (Some(s), _) => format!("restored snapshot '{s}'"),
            (None, _) => "booted".to_string(),
        };
        let detail = format!("{how}, {}, ssh {}", up.accel.as_str(), up.endpoint);
        Ok(((vm, up), detail))
    })
}

/// The artifacts, install and extensions phases: the efW build fetched and installed, then the
/// enabled extensions.
fn install_efw(
    ctx: &Context,
    efw: &EfwRequest,
    session: &mut Session,
    phases: &mut Phases,
    results_dir: Option<&Path>,
) -> anyhow::Result<(InstallReport, BuildToInstall)> {
    let build = phases.run("artifacts", || {
        let b = efw.fetch(ctx)?;
        let p = &b.provenance;
        let detail = format!(
            "{} ({}{})",
            p.key,
            p.source,
            p.run_id.map(|r| format!(", run {r}")).unwrap_or_default()
        );
        Ok((b, detail))
    })?;

    let mut printer = super::install::EventPrinter::new(ctx);
    let report = phases.run("install", || {
        let logs = results_dir.map(|d| d.join("install"));
        let r = install_runtime(ctx, session, &build, efw.force, logs.as_deref(), &mut |e| {
            printer.on_event(e)
        })?;
        let what = match &r.outcome {
            InstallOutcome::AlreadyInstalled => "already installed".to_string(),
            InstallOutcome::Installed { replaced: None } => "installed".to_string(),
            InstallOutcome::Installed { replaced: Some(o) } => {
                format!("installed, replaced {}", o.key)
            }
        };
        let version = r
            .record
            .ci_efw_version()
            .map(|v| format!(", version {v}"))
            .unwrap_or_default();
        Ok((r, format!("{what}: {}{version}", build.provenance.key)))
    })?;

    let names = enabled_extensions(ctx);
    if !names.is_empty() {
        phases.run("extensions", || {
            if ctx.config.vm.os != GuestOs::Windows {
                return Ok((
                    (),
                    "skipped: extensions are kernel drivers for Windows guests".into(),
                ));
            }
            let states = install_extensions(ctx, session, &names, None, efw.offline, &mut |e| {
                printer.on_event(e)
            })?;
            Ok((
                (),
                format!("{} installed: {}", states.len(), names.join(", ")),
            ))
        })?;
    }
    Ok((report, build))
}

/// Bring the configured VM up (the provision phase). The VM lock
/// is held while this runs; with `detach` the VM stays up after the returned [`Vm`] is dropped.
fn bring_up(
    ctx: &Context,
    iso: Option<PathBuf>,
    opts: &UpOptions,
) -> anyhow::Result<(Vm, UpOutcome)> {
    let mut cfg = ctx.config.vm.clone();
    if iso.is_some() {
        cfg.iso = iso;
    }
    if cfg.os == provision::GuestOs::Windows && cfg.backend == provision::BackendKind::Qemu {
        cfg.iso = crate::iso::resolve(ctx, cfg.iso.as_deref())?;
    }
    let mut vm = Vm::open(&cfg, &ctx.vm_dirs()).context("opening the VM")?;
    let opts = UpOptions {
        cancel: Some(ctx.cancel.clone()),
        ..opts.clone()
    };
    let up = vm
        .up(&opts, &mut |e| ctx.show_vm(&e))
        .with_context(|| format!("bringing VM '{}' up", cfg.name))?;
    Ok((vm, up))
}
