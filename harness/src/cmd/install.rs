//! `harness install` (the efW runtime) and `harness ext install|remove|list` (extensions).
//!
//! Thin: flags become an [`EfwRequest`], the install itself is [`crate::pipeline`]'s; this prints
//! its events and result.

use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Args, Subcommand};

use provision::install::{self, ExtensionState, InstallEvent, InstallOutcome, InstallReport};

use crate::cmd::guest::{ConnectArgs, connect};
use crate::context::Context;
use crate::pipeline::{
    EfwRequest, EventPrinter, enabled_extensions, install_extensions, install_runtime,
};

/// Arguments of `harness install`.
#[derive(Debug, Args)]
pub struct InstallArgs {
    #[command(flatten)]
    pub connect: ConnectArgs,
    #[command(flatten)]
    pub efw: EfwArgs,
}

/// Which efW build to install, and how (`harness install`, `up`, `run`).
#[derive(Debug, Clone, Default, Args)]
pub struct EfwArgs {
    /// Which efW build: main, run:<id>, release:<version>, file:<zip or dir>, url:<https://…>
    /// (default: `[efw] source`).
    #[arg(long, value_name = "SPEC")]
    pub source: Option<String>,
    /// Reinstall efW even if the same build is installed and verified.
    #[arg(long)]
    pub force: bool,
    /// Use only cached builds; never touch the network.
    #[arg(long)]
    pub offline: bool,
}

impl EfwArgs {
    /// The request these flags make.
    pub fn request(&self) -> EfwRequest {
        EfwRequest {
            source: self.source.clone(),
            force: self.force,
            offline: self.offline,
        }
    }
}

/// `harness ext …`.
#[derive(Debug, Subcommand)]
pub enum ExtCmd {
    /// Install (or reinstall) extensions: the named one, or every enabled one.
    Install {
        #[command(flatten)]
        connect: ConnectArgs,
        /// Extension name (`[extensions.NAME]`).
        name: Option<String>,
        /// Build source for this install (default: `[extensions.NAME.build] source`).
        #[arg(long, value_name = "SPEC")]
        source: Option<String>,
        /// Use only cached builds.
        #[arg(long)]
        offline: bool,
    },
    /// Remove extensions: the named one, or every configured one.
    Remove {
        #[command(flatten)]
        connect: ConnectArgs,
        /// Extension name.
        name: Option<String>,
    },
    /// Show each configured extension's service and program types in the guest.
    List {
        #[command(flatten)]
        connect: ConnectArgs,
    },
}

/// `harness install`.
pub fn run(ctx: &Context, args: &InstallArgs) -> anyhow::Result<ExitCode> {
    if args.efw.request().none(ctx) {
        anyhow::bail!(
            "nothing to install: the efW source is \"none\" (set [efw] source or pass --source main, run:<id>, …)"
        );
    }
    let build = args
        .efw
        .request()
        .fetch(ctx)
        .context("fetching the efW build")?;
    let _vm_in_use = crate::guest::hold_vm(ctx)?;
    let mut session = connect(ctx, &args.connect)?;
    let mut printer = EventPrinter::new(ctx);
    let force = args.efw.force;
    let report = install_runtime(ctx, &mut session, &build, force, None, &mut |e| {
        printer.on_event(e)
    })?;
    if ctx.json {
        let doc = serde_json::json!({ "report": report, "events": printer.events });
        println!("{}", serde_json::to_string_pretty(&doc)?);
    } else {
        print_report(&report);
    }
    Ok(ExitCode::SUCCESS)
}

/// `harness ext …`.
pub fn run_ext(ctx: &Context, cmd: &ExtCmd) -> anyhow::Result<ExitCode> {
    // Bad names are reported before anything touches the network or the guest.
    let (names, connect_args) = match cmd {
        ExtCmd::Install { name, connect, .. } => (chosen(ctx, name.as_deref(), true)?, connect),
        ExtCmd::Remove { name, connect } => (chosen(ctx, name.as_deref(), false)?, connect),
        ExtCmd::List { connect } => (Vec::new(), connect),
    };
    let _vm_in_use = crate::guest::hold_vm(ctx)?;
    let mut session = connect(ctx, connect_args)?;
    match cmd {
        ExtCmd::Install {
            source, offline, ..
        } => {
            let mut printer = EventPrinter::new(ctx);
            let states = install_extensions(
                ctx,
                &mut session,
                &names,
                source.as_deref(),
                *offline,
                &mut |e| printer.on_event(e),
            )?;
            print_states(ctx, &states, &printer.events)?;
        }
        ExtCmd::Remove { .. } => {
            let mut states = Vec::new();
            let mut printer = EventPrinter::new(ctx);
            for n in &names {
                let cfg = &ctx.config.extensions[n].install;
                states.push(install::remove_extension(&mut session, n, cfg, &mut |e| {
                    printer.on_event(e)
                })?);
            }
            print_states(ctx, &states, &printer.events)?;
        }
        ExtCmd::List { .. } => {
            let configs: Vec<_> = ctx
                .config
                .extensions
                .iter()
                .map(|(n, e)| (n.clone(), e.install.clone()))
                .collect();
            let states = install::list_extensions(&mut session, &configs)?;
            print_states(ctx, &states, &[])?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn chosen(ctx: &Context, name: Option<&str>, only_enabled: bool) -> anyhow::Result<Vec<String>> {
    match name {
        Some(n) if ctx.config.extensions.contains_key(n) => Ok(vec![n.to_string()]),
        Some(n) => anyhow::bail!(
            "no extension `{n}` in the configuration (configured: {}); add an [extensions.{n}] section",
            ctx.config
                .extensions
                .keys()
                .cloned()
                .collect::<Vec<_>>()
                .join(", ")
        ),
        None if only_enabled => Ok(enabled_extensions(ctx)),
        None => Ok(ctx.config.extensions.keys().cloned().collect()),
    }
}

fn print_report(report: &InstallReport) {
    let r = &report.record;
    let what = match &report.outcome {
        InstallOutcome::AlreadyInstalled => "already installed".to_string(),
        InstallOutcome::Installed { replaced: None } => "installed".to_string(),
        InstallOutcome::Installed {
            replaced: Some(old),
        } => format!("installed (replaced {})", old.key),
    };
    println!("efW runtime {what}: {}", r.build.key);
    let opt = |v: &Option<String>| v.clone().unwrap_or_else(|| "-".into());
    println!("  source   {}", r.build.source);
    println!(
        "  run id   {}",
        r.build.run_id.map_or("-".into(), |v| v.to_string())
    );
    println!("  head sha {}", opt(&r.build.head_sha));
    println!("  version  {}", opt(&r.build.version));
    println!("  method   {}", install::plan::method_name(r.method));
    println!("  in guest {}", r.guest_dir);
    print_checks(&report.checks);
    if let Some(dir) = report.logs.first().and_then(|p| p.parent()) {
        println!("  logs     {}", dir.display());
    }
}

/// The install's checks, one line each (`install`, `up`).
pub fn print_checks(checks: &[install::Check]) {
    for c in checks {
        let mark = if c.ok { "ok" } else { "FAIL" };
        println!("  {mark:<4} {:<28} {}", c.name, c.detail);
    }
}

fn print_states(
    ctx: &Context,
    states: &[ExtensionState],
    events: &[InstallEvent],
) -> anyhow::Result<()> {
    if ctx.json {
        let doc = serde_json::json!({ "extensions": states, "events": events });
        println!("{}", serde_json::to_string_pretty(&doc)?);
        return Ok(());
    }
    if states.is_empty() {
        println!("no extensions configured");
    }
    for s in states {
        println!(
            "{:<14} service {:<14} {:<10} program types: {} present{}",
            s.name,
            s.service,
            s.status.as_deref().unwrap_or("absent"),
            s.program_types_present.len(),
            if s.program_types_missing.is_empty() {
                String::new()
            } else {
                format!(", missing {}", s.program_types_missing.join(", "))
            }
        );
    }
    Ok(())
}
