//! `harness doctor` (the host) and `harness doctor --guest` (the running guest).

use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context as _;

use crate::context::Context;
use crate::doctor::{self, Status, SystemProbes};

/// Arguments of `harness doctor`.
#[derive(Debug, clap::Args)]
pub struct DoctorArgs {
    /// Check the running guest instead of the host: test signing, Secure Boot, Memory
    /// Integrity, eBPF services, PATH, program types, stale ETW sessions, disk, build (Windows);
    /// bpffs, BTF, memlock, disk (Linux).
    #[arg(long)]
    pub guest: bool,
}

pub fn run(ctx: &Context, args: &DoctorArgs) -> anyhow::Result<ExitCode> {
    if args.guest {
        return run_guest(ctx);
    }
    let checks = doctor::diagnose(&ctx.config, &ctx.paths.cache, &SystemProbes);
    let failed = doctor::failed(&checks);
    if ctx.json {
        let doc =
            serde_json::json!({"ok": !failed, "backend": ctx.config.vm.backend, "checks": checks});
        println!("{}", serde_json::to_string_pretty(&doc)?);
    } else {
        for c in &checks {
            let mark = match c.status {
                Status::Ok => "ok     ",
                Status::Warn => "warn   ",
                Status::Missing => "missing",
                Status::Broken => "broken ",
            };
            let req = if c.required && c.status != Status::Ok {
                " (required)"
            } else {
                ""
            };
            println!("{mark} {:<13} {}{req}", c.name, c.detail);
            if let Some(fix) = &c.fix {
                println!("        {:<13} fix: {fix}", "");
            }
        }
        if failed {
            println!(
                "\nsomething the configured backend ({}) needs is missing or broken: see the fixes above",
                serde_json::to_value(ctx.config.vm.backend)?
                    .as_str()
                    .unwrap_or("?")
            );
        }
    }
    Ok(if failed {
        ExitCode::from(2)
    } else {
        ExitCode::SUCCESS
    })
}

/// `harness doctor --guest`: the guest doctor on the running VM (or `[vm] backend = "ssh"` host).
fn run_guest(ctx: &Context) -> anyhow::Result<ExitCode> {
    let _lock = crate::guest::hold_vm(ctx)?;
    let mut session = crate::guest::session(ctx, false, Duration::from_secs(30))?;
    let report = provision::health::guest_doctor(
        &mut session,
        &crate::guest_doctor::options(&ctx.config, None),
    )
    .context("checking the guest (the guest doctor)")?;
    if ctx.json {
        let doc = serde_json::json!({
            "ok": !report.failed(),
            "os": report.os,
            "guest_build": report.guest_build,
            "stale_etw_sessions": report.stale_etw_sessions,
            "checks": report.checks,
        });
        println!("{}", serde_json::to_string_pretty(&doc)?);
    } else {
        print!("{}", crate::guest_doctor::render(&report));
        if report.failed() {
            println!(
                "\nthe guest is not fit for the tests: see the fixes above (`harness run` stops before the suites)"
            );
        }
    }
    Ok(if report.failed() {
        ExitCode::from(2)
    } else {
        ExitCode::SUCCESS
    })
}
