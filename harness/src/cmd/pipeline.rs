//! `harness up` and `harness run`: the pipeline, phase by phase.
//!
//! up:  provision → artifacts → install → extensions
//! run: up → doctor (the guest doctor) → suites → results → down (unless --keep)
//!
//! Each phase is timed and rendered by [`Phases`] (spinner, plain lines, or GitHub Actions
//! groups); failures of the tests exit 1, failures of harness or the infrastructure exit 2.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context as _;
use clap::Args;
use provision::GuestOs;
use provision::install::{InstallOutcome, InstallReport};
use provision::session::{Session, SessionOptions};
use provision::vm::{UpOptions, UpOutcome, Vm, VmDirs};

use crate::cmd::{install, test, vm};
use crate::context::Context;
use crate::gha;
use crate::phases::{PhaseTiming, Phases};

/// `harness up`
#[derive(Debug, Clone, Default, Args)]
pub struct UpArgs {
    /// Windows 11 ISO to install from (overrides `[vm] iso`).
    #[arg(long, value_name = "PATH")]
    pub iso: Option<PathBuf>,
    #[command(flatten)]
    pub efw: install::EfwArgs,
    /// Boot even if the ready snapshot exists.
    #[arg(long)]
    pub cold: bool,
    /// Only bring the VM to SSH-ready: no build, no install.
    #[arg(long)]
    pub vm_only: bool,
    /// After a cold boot, save the ready snapshot (`[vm] ready_snapshot`) so the next `up` is
    /// fast (always on for the full pipeline).
    #[arg(long)]
    pub save_snapshot: bool,
    /// Stop the VM again when this command ends (default: leave it running).
    #[arg(long)]
    pub no_detach: bool,
    /// Accept a guest host key that differs from the pinned one.
    #[arg(long)]
    pub accept_new_host_key: bool,
}

/// `harness run`
#[derive(Debug, Clone, Args)]
pub struct RunArgs {
    #[command(flatten)]
    pub up: UpArgs,
    /// Reset the VM to its golden image first (throws away every change, snapshots included).
    #[arg(long)]
    pub fresh: bool,
    /// Leave the VM running afterwards (default: `down`).
    #[arg(long)]
    pub keep: bool,
    /// Suites to run (default: every configured suite).
    #[arg(long = "suite", value_name = "NAME")]
    pub suites: Vec<String>,
    #[command(flatten)]
    pub sel: test::Selection,
    /// Run on N VMs at once (overlays of the same golden image, named `<name>-1` … `<name>-N`),
    /// the packages split across them by recorded durations, one merged result.
    #[arg(long, value_name = "N", conflicts_with = "shard")]
    pub vms: Option<u32>,
    /// With --vms: a previous results folder whose package durations split the packages
    /// (default: the results dir's `latest`).
    #[arg(long, value_name = "DIR", requires = "vms")]
    pub shard_durations: Option<PathBuf>,
    /// Package durations already read (set by `--vms` for each VM's shard).
    #[arg(skip)]
    pub durations: Option<BTreeMap<String, f64>>,
    /// Results folder (default: a new folder under the results dir, linked as `latest`).
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
}

pub(crate) fn vm_dirs(ctx: &Context) -> VmDirs {
    VmDirs {
        state: ctx.paths.state.clone(),
        cache: ctx.paths.cache.clone(),
    }
}

/// What `up` leaves behind for `run`.
pub struct Ready {
    /// Held for its lock; dropping it stops a VM started without `detach`.
    pub _vm: Vm,
    pub up: UpOutcome,
    pub session: Option<Session>,
    pub install: Option<InstallReport>,
}

/// Opens a session to the VM `up` just made ready.
fn connect(ctx: &Context, up: &UpOutcome, accept_new: bool) -> anyhow::Result<Session> {
    let mut opts = SessionOptions::new(up.known_hosts.clone());
    opts.accept_new_host_key = accept_new;
    let s = Session::connect_with_retry(&up.endpoint, &opts, Duration::from_secs(60))
        .with_context(|| format!("connecting to the guest at {}", up.endpoint))?;
    Ok(s.with_cancel(ctx.cancel.clone()))
}

/// Whether a build source spec is `none`: no efW runtime (ebpf-go's Linux suite on a kernel).
pub fn efw_none(source: &str) -> bool {
    source.trim().eq_ignore_ascii_case("none")
}

/// provision → artifacts → install → extensions.
pub fn up(
    ctx: &Context,
    args: &UpArgs,
    phases: &mut Phases,
    results_dir: Option<&Path>,
) -> anyhow::Result<Ready> {
    let (vm, up) = provision(ctx, args, phases)?;
    let mut ready = Ready {
        _vm: vm,
        up,
        session: None,
        install: None,
    };
    if args.vm_only {
        return Ok(ready);
    }
    let mut session = connect(ctx, &ready.up, args.accept_new_host_key)?;
    if args.efw.none(ctx) {
        // A Linux kernel as the target: nothing to fetch or install, CI_EFW_VERSION stays unset.
        phases.run("install", |_| {
            Ok(((), "skipped: [efw] source = \"none\"".to_string()))
        })?;
    } else {
        let report = install_efw(ctx, &args.efw, &mut session, phases, results_dir)?;
        ready.install = Some(report);
    }
    ready.session = Some(session);
    Ok(ready)
}

/// The provision phase: the VM up and reachable over SSH.
fn provision(ctx: &Context, args: &UpArgs, phases: &mut Phases) -> anyhow::Result<(Vm, UpOutcome)> {
    let opts = UpOptions {
        detach: !args.no_detach,
        cold: args.cold,
        save_ready_snapshot: args.save_snapshot || !args.vm_only,
        psexec: ctx.config.install.psexec.clone(),
        ..Default::default()
    };
    phases.run("provision", |_| {
        let (vm, up) = vm::bring_up(ctx, args.iso.clone(), &opts, false)?;
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
    efw: &install::EfwArgs,
    session: &mut Session,
    phases: &mut Phases,
    results_dir: Option<&Path>,
) -> anyhow::Result<InstallReport> {
    let build = phases.run("artifacts", |_| {
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

    let mut printer = install::EventPrinter::new(ctx);
    let report = phases.run("install", |_| {
        let logs = results_dir.map(|d| d.join("install"));
        let r =
            install::install_runtime(ctx, session, &build, efw.force, logs.as_deref(), &mut |e| {
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

    let names = install::enabled_extensions(ctx);
    if !names.is_empty() {
        phases.run("extensions", |_| {
            if ctx.config.vm.os != GuestOs::Windows {
                return Ok((
                    (),
                    "skipped: extensions are kernel drivers for Windows guests".into(),
                ));
            }
            let states =
                install::install_extensions(ctx, session, &names, None, efw.offline, &mut |e| {
                    printer.on_event(e)
                })?;
            Ok((
                (),
                format!("{} installed: {}", states.len(), names.join(", ")),
            ))
        })?;
    }
    Ok(report)
}

pub fn run_up(ctx: &Context, args: &UpArgs) -> anyhow::Result<ExitCode> {
    let mut phases = Phases::new(ctx);
    let ready = up(ctx, args, &mut phases, None)?;
    let ep = &ready.up.endpoint;
    if ctx.json {
        let mut doc = vm::outcome_json(&ready.up);
        doc["installed"] = serde_json::to_value(ready.install.as_ref().map(|r| &r.record))?;
        doc["phases"] = serde_json::to_value(&phases.timings)?;
        println!("{}", serde_json::to_string_pretty(&doc)?);
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "VM '{}' is ready ({}): `harness ssh`, or ssh -p {} {}@{}",
        ctx.config.vm.name,
        ready.up.accel.as_str(),
        ep.port,
        ep.user,
        ep.host
    );
    if let Some(r) = &ready.install {
        let b = &r.record.build;
        println!(
            "efW: {} ({}{}{})",
            b.key,
            b.source,
            b.run_id.map(|id| format!(", run {id}")).unwrap_or_default(),
            r.record
                .ci_efw_version()
                .map(|v| format!(", version {v}"))
                .unwrap_or_default()
        );
        for c in &r.checks {
            println!(
                "  {} {:<28} {}",
                if c.ok { "ok" } else { "!!" },
                c.name,
                c.detail
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// The `package_dir` for annotations: the import path relative to the module's path.
fn package_rel_dir(module_dir: &Path, import_path: &str) -> String {
    let module = std::fs::read_to_string(module_dir.join("go.mod"))
        .ok()
        .and_then(|t| {
            t.lines().find_map(|l| {
                l.trim()
                    .strip_prefix("module ")
                    .map(|m| m.trim().trim_matches('"').to_string())
            })
        })
        .unwrap_or_default();
    import_path
        .strip_prefix(&module)
        .map(|r| r.trim_start_matches('/').to_string())
        .unwrap_or_else(|| import_path.to_string())
}

pub fn run_run(ctx: &Context, args: &RunArgs) -> anyhow::Result<ExitCode> {
    if let Some(n) = args.vms.filter(|n| *n != 1) {
        return crate::multi::run(ctx, args, n);
    }
    if args.fresh {
        let mut vm = Vm::open(&ctx.config.vm, &vm_dirs(ctx)).context("opening the VM")?;
        let stopped = vm
            .reset()
            .context("resetting the VM to its golden image (--fresh)")?;
        if stopped && !ctx.json {
            eprintln!(
                "VM '{}' was running: stopped it to reset it to its golden image (--fresh)",
                ctx.config.vm.name
            );
        }
    }
    let mut phases = Phases::new(ctx);
    let out = match &args.out {
        Some(d) => d.clone(),
        None => suites::new_run_dir(&ctx.paths.results, "run")?,
    };
    std::fs::create_dir_all(&out).with_context(|| format!("creating {}", out.display()))?;

    let result = run_pipeline(ctx, args, &mut phases, &out);
    // Whatever happened, leave the VM in a known state and write what we have.
    let down = if args.keep {
        None
    } else {
        Some(phases.always("down", |_| {
            let mut vm = Vm::open(&ctx.config.vm, &vm_dirs(ctx)).context("opening the VM")?;
            let was_up = vm.down(&mut |_| {})?;
            Ok((
                (),
                if was_up {
                    "powered off".into()
                } else {
                    "was not running".into()
                },
            ))
        }))
    };
    write_timings(&out, &phases.timings, phases.total_seconds())?;
    let code = result?;
    if let Some(Err(e)) = down {
        return Err(e.context("stopping the VM after the run"));
    }
    if ctx.json {
        let (exit_code, suites) = code;
        let doc = serde_json::json!({
            "exit_code": exit_code,
            "results": out,
            "total_seconds": phases.total_seconds(),
            "phases": phases.timings,
            "suites": suites,
        });
        println!("{}", serde_json::to_string_pretty(&doc)?);
        return Ok(ExitCode::from(exit_code));
    }
    if ctx.verbosity >= 0 {
        eprintln!("results: {}", out.display());
    }
    Ok(ExitCode::from(code.0))
}

fn run_pipeline(
    ctx: &Context,
    args: &RunArgs,
    phases: &mut Phases,
    out: &Path,
) -> anyhow::Result<(u8, Vec<serde_json::Value>)> {
    let (results, dumps) = test_on_vm(ctx, args, phases, out)?;
    phases.run("results", |_| {
        report(ctx, &results)?;
        Ok(((), format!("{}", out.display())))
    })?;
    let docs = results
        .iter()
        .map(|r| serde_json::json!({"suite": r.name, "dir": r.written.dir, "summary": r.written.summary}))
        .collect();
    let code = test::worst_exit(&results);
    // New dumps in the guest fail the run, as efW's CI does.
    Ok((if dumps > 0 { code.max(1) } else { code }, docs))
}

/// up → doctor → suites on the configured VM, results written under `out` but not yet
/// reported (one VM of `--vms N` runs exactly this); also how many new crash dumps the guest
/// holds (they fail the run).
pub(crate) fn test_on_vm(
    ctx: &Context,
    args: &RunArgs,
    phases: &mut Phases,
    out: &Path,
) -> anyhow::Result<(Vec<test::SuiteResult>, usize)> {
    // The VM must survive this function so `down` can stop it cleanly (or --keep keep it).
    let up_args = UpArgs {
        no_detach: false,
        vm_only: false,
        ..args.up.clone()
    };
    let ready = up(ctx, &up_args, phases, Some(out))?;
    let Ready {
        _vm: vm,
        up: up_outcome,
        session,
        ..
    } = ready;
    let mut session = session.expect("full up opens a session");
    let names: Vec<String> = if args.suites.is_empty() {
        ctx.config.suites.keys().cloned().collect()
    } else {
        args.suites.clone()
    };
    // Before the suites: is the guest fit for them? Stops here, with the fixes, when not.
    let trace_log = crate::guest_doctor::wants_trace_log(&ctx.config, &names, &args.sel.extra);
    let doctor = phases.run("doctor", |_| {
        let source = args.up.efw.source.as_deref();
        crate::guest_doctor::run_phase(ctx, &mut session, source, trace_log, out)
    })?;
    let mut prov = suites::Provenance {
        harness_version: env!("CARGO_PKG_VERSION").to_string(),
        ..Default::default()
    };
    crate::guest::fill_provenance(ctx, &mut prov);
    if efw_none(args.up.efw.source.as_deref().unwrap_or("")) {
        // --source none on the command line: no runtime, whatever an older install recorded.
        prov.efw_source = None;
        prov.efw_run_id = None;
        prov.efw_sha = None;
        prov.efw_version = None;
        prov.extra.remove("efw_build_key");
    }
    prov.guest_build = doctor.guest_build.clone();
    let since = suites::event::now_rfc3339();
    let (mut exec, guard, _watch) = crate::crash::watch(ctx, vm, up_outcome, session, out, since);
    let test_args = test::TestArgs {
        suites: names.clone(),
        sel: args.sel.clone(),
        shard_durations: None,
        durations: args.durations.clone(),
        out: Some(if names.len() > 1 {
            out.to_path_buf()
        } else {
            out.join("tests")
        }),
        local: false,
    };
    let results = phases.run("suites", |_| {
        let r = test::run_suites(ctx, &mut exec, &prov, &test_args)?;
        let t: Vec<String> = r
            .iter()
            .map(|r| {
                let s = &r.written.summary;
                let errored = match s.totals.packages_errored {
                    0 => String::new(),
                    n => format!(", {n} package(s) errored"),
                };
                format!(
                    "{}: {}{errored} [{}]",
                    r.name,
                    s.totals.counts(),
                    suites::timing::render(&s.timings, s.uploaded_bytes)
                )
            })
            .collect();
        Ok((r, t.join("; ")))
    })?;
    if let Some(last) = phases.timings.last_mut() {
        let (timings, bytes) = suite_timings(&results);
        last.timings = Some(timings);
        last.uploaded_bytes = Some(bytes);
    }
    let dumps = crate::crash::final_dumps(ctx, guard.as_deref(), &mut exec);
    Ok((results, dumps))
}

/// The suites' sub-phase times (summed over the suites, which run one after the other) and the
/// bytes they sent, for `phases.json`.
fn suite_timings(results: &[test::SuiteResult]) -> (BTreeMap<String, f64>, u64) {
    let mut timings = BTreeMap::new();
    let mut bytes = 0;
    for r in results {
        let s = &r.written.summary;
        for (k, v) in &s.timings {
            *timings.entry(k.clone()).or_insert(0.0f64) += v;
        }
        bytes += s.uploaded_bytes;
    }
    (timings, bytes)
}

/// Console summary, GitHub Actions annotations and step summary.
pub(crate) fn report(ctx: &Context, results: &[test::SuiteResult]) -> anyhow::Result<()> {
    if !ctx.json {
        test::print_results(ctx, results)?;
    }
    if gha::active() {
        for r in results {
            for (pkg, t) in r.record.execution.failed_tests() {
                let output: String = t
                    .attempts
                    .last()
                    .map(|a| a.output.clone())
                    .unwrap_or_default();
                println!(
                    "{}",
                    gha::error_annotation(
                        &package_rel_dir(&r.module_dir, &pkg.name),
                        &t.name,
                        &output
                    )
                );
            }
            let md = std::fs::read_to_string(r.written.dir.join("summary.md")).unwrap_or_default();
            gha::append_step_summary(&md).context("appending to $GITHUB_STEP_SUMMARY")?;
        }
    }
    Ok(())
}

pub(crate) fn write_timings(out: &Path, timings: &[PhaseTiming], total: f64) -> anyhow::Result<()> {
    let doc = serde_json::json!({"total_seconds": total, "phases": timings});
    let p = out.join("phases.json");
    std::fs::write(&p, serde_json::to_vec_pretty(&doc)?)
        .with_context(|| format!("writing {}", p.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn phases_json_has_the_suites_sub_phases_and_bytes() {
        let result = |name: &str, upload: f64, bytes: u64| {
            let meta = suites::RunMeta {
                suite: name.into(),
                timings: BTreeMap::from([("build".into(), 2.0), ("upload".into(), upload)]),
                uploaded_bytes: bytes,
                ..Default::default()
            };
            let summary = suites::summary::summarize(
                &suites::Execution::new(),
                &meta,
                &suites::Provenance::default(),
                &BTreeMap::new(),
            );
            test::SuiteResult {
                name: name.into(),
                module_dir: PathBuf::new(),
                record: suites::RunRecord {
                    execution: suites::Execution::new(),
                    events: Vec::new(),
                    other_output: Vec::new(),
                    meta,
                    package_dirs: Vec::new(),
                    cores: Vec::new(),
                },
                written: suites::Written {
                    dir: PathBuf::new(),
                    summary,
                },
            }
        };
        let (timings, bytes) = suite_timings(&[result("a", 1.5, 10), result("b", 0.5, 0)]);
        assert_eq!(timings["build"], 4.0);
        assert_eq!(timings["upload"], 2.0);
        assert_eq!(bytes, 10);
        let out = tempfile::tempdir().unwrap();
        let phase = PhaseTiming {
            phase: "suites".into(),
            seconds: 7.0,
            ok: true,
            detail: String::new(),
            timings: Some(timings),
            uploaded_bytes: Some(bytes),
        };
        write_timings(out.path(), &[phase], 7.0).unwrap();
        let doc: serde_json::Value =
            serde_json::from_slice(&std::fs::read(out.path().join("phases.json")).unwrap())
                .unwrap();
        assert_eq!(doc["phases"][0]["timings"]["upload"], 2.0);
        assert_eq!(doc["phases"][0]["uploaded_bytes"], 10);
    }

    #[test]
    fn package_dirs_relative_to_the_module() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(
            d.path().join("go.mod"),
            "module github.com/cilium/ebpf\n\ngo 1.22\n",
        )
        .unwrap();
        assert_eq!(
            package_rel_dir(d.path(), "github.com/cilium/ebpf/link"),
            "link"
        );
        assert_eq!(package_rel_dir(d.path(), "github.com/cilium/ebpf"), "");
        assert_eq!(package_rel_dir(d.path(), "other.org/x"), "other.org/x");
    }
}
