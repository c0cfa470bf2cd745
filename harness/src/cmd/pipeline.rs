//! `harness up` and `harness run`: their flags, turned into requests for [`crate::pipeline`],
//! and what they print.
//!
//! Each phase is timed and rendered by [`Phases`] (spinner, plain lines, or GitHub Actions
//! groups); failures of the tests exit 1, failures of harness or the infrastructure exit 2.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;

use crate::cmd::{install, vm};
use crate::context::Context;
use crate::phases::Phases;
use crate::pipeline::{self, RunRequest, Selection, SuitesRequest, UpRequest};

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
    pub sel: Selection,
    /// Run on N VMs at once (overlays of the same golden image, named `<name>-1` … `<name>-N`),
    /// the packages split across them by recorded durations, one merged result.
    #[arg(long, value_name = "N", conflicts_with = "shard")]
    pub vms: Option<u32>,
    /// With --vms: a previous results folder whose package durations split the packages
    /// (default: the results dir's `latest`).
    #[arg(long, value_name = "DIR", requires = "vms")]
    pub shard_durations: Option<PathBuf>,
    /// Results folder (default: a new folder under the results dir, linked as `latest`).
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
}

impl UpArgs {
    /// The request these flags make.
    pub fn request(&self) -> UpRequest {
        UpRequest {
            iso: self.iso.clone(),
            efw: self.efw.request(),
            cold: self.cold,
            vm_only: self.vm_only,
            save_snapshot: self.save_snapshot,
            detach: !self.no_detach,
            accept_new_host_key: self.accept_new_host_key,
        }
    }
}

impl RunArgs {
    /// The request these flags make (`--vms` and `--shard-durations` are `run`'s own).
    pub fn request(&self) -> RunRequest {
        RunRequest {
            up: self.up.request(),
            fresh: self.fresh,
            keep: self.keep,
            suites: SuitesRequest {
                suites: self.suites.clone(),
                sel: self.sel.clone(),
                durations: None,
                out: None,
            },
            out: self.out.clone(),
        }
    }
}

pub fn run_up(ctx: &Context, args: &UpArgs) -> anyhow::Result<ExitCode> {
    let mut phases = Phases::new(ctx);
    let ready = pipeline::up(ctx, &args.request(), &mut phases, None)?;
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
        install::print_checks(&r.checks);
    }
    Ok(ExitCode::SUCCESS)
}

pub fn run_run(ctx: &Context, args: &RunArgs) -> anyhow::Result<ExitCode> {
    if let Some(n) = args.vms.filter(|n| *n != 1) {
        return crate::multi::run(ctx, &args.request(), args.shard_durations.as_deref(), n);
    }
    let mut phases = Phases::new(ctx);
    let done = pipeline::run(ctx, &args.request(), &mut phases)?;
    if ctx.json {
        let doc = serde_json::json!({
            "exit_code": done.exit_code,
            "results": done.out,
            "total_seconds": phases.total_seconds(),
            "phases": phases.timings,
            "suites": done.suites,
        });
        println!("{}", serde_json::to_string_pretty(&doc)?);
    } else if ctx.verbosity >= 0 {
        eprintln!("results: {}", done.out.display());
    }
    Ok(ExitCode::from(done.exit_code))
}
