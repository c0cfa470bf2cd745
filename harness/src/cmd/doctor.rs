//! `harness doctor`.

use std::process::ExitCode;

use crate::context::Context;
use crate::doctor::{self, Status, SystemProbes};

/// Arguments of `harness doctor`.
#[derive(Debug, clap::Args)]
pub struct DoctorArgs {}

pub fn run(ctx: &Context, _args: &DoctorArgs) -> anyhow::Result<ExitCode> {
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
