//! `harness up | down | destroy | reset | status | snapshot …`: thin wrappers over
//! `provision::vm`. Progress comes from the library's typed events, which go to the context's
//! renderer ([`crate::render`]).

use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Args, Subcommand};
use provision::vm::{UpOptions, UpOutcome, Vm, VmError, VmState, VmStatus};

use crate::context::Context;

/// `harness down`
#[derive(Debug, Args)]
pub struct DownArgs {
    /// Stop the VM even while another harness command (exec, test, …) is using it.
    #[arg(long)]
    pub force: bool,
}

/// `harness destroy`
#[derive(Debug, Args)]
pub struct DestroyArgs {
    /// Also delete the base image harness built (the next `up` reinstalls).
    #[arg(long)]
    pub all: bool,
    /// Destroy the VM even while another harness command (exec, test, …) is using it.
    #[arg(long)]
    pub force: bool,
}

/// `harness reset`
#[derive(Debug, Args)]
pub struct ResetArgs {
    /// Reset the VM even while another harness command (exec, test, …) is using it.
    #[arg(long)]
    pub force: bool,
}

/// `harness status`
#[derive(Debug, Args)]
pub struct StatusArgs {}

/// `harness snapshot …`
#[derive(Debug, Subcommand)]
pub enum SnapshotCmd {
    /// Save RAM + disk of the running VM as NAME.
    Save { name: String },
    /// Go back to NAME (starts the VM from it when stopped).
    Restore { name: String },
    /// List snapshots.
    List,
    /// Delete NAME.
    Delete { name: String },
}

/// Sends `e` to the context's renderer: the `on_event` of the VM's operations.
pub fn outcome_json(up: &UpOutcome) -> serde_json::Value {
    serde_json::json!({
        "endpoint": provision::vm::EndpointInfo::from(up.endpoint.clone()),
        "restored_snapshot": up.restored_snapshot,
        "accel": up.accel.as_str(),
        "elapsed_seconds": up.elapsed.as_secs_f64(),
        "already_running": up.already_running,
        "known_hosts": up.known_hosts,
    })
}

fn print_json(v: &serde_json::Value) {
    println!("{}", serde_json::to_string_pretty(v).unwrap_or_default());
}

/// Opens the VM for a command that stops or removes it (`down`, `reset`, `destroy`): with the
/// lock held exclusively, so it never pulls the VM away from a command using it. While one is,
/// this refuses and names it; `force` goes ahead anyway, with a warning.
fn open_to_change(ctx: &Context, command: &str, force: bool) -> anyhow::Result<Vm> {
    match Vm::open(&ctx.config.vm, &ctx.vm_dirs()) {
        Ok(vm) => Ok(vm),
        Err(VmError::Busy { holders, lock, .. }) => {
            let who = provision::vm::lock::describe(&holders);
            let name = &ctx.config.vm.name;
            if !force {
                anyhow::bail!(
                    "refusing to {command} VM '{name}': it is in use by {who} (lock file {}), and `harness {command}` would pull the VM away from under it; wait for that to finish, or pass --force to {command} anyway",
                    lock.display()
                );
            }
            eprintln!(
                "warning: VM '{name}' is in use by {who}; --force: running `harness {command}` anyway"
            );
            Ok(Vm::inspect(&ctx.config.vm, &ctx.vm_dirs())?)
        }
        Err(e) => Err(anyhow::Error::new(e).context("opening the VM")),
    }
}

pub fn run_down(ctx: &Context, args: &DownArgs) -> anyhow::Result<ExitCode> {
    let mut vm = open_to_change(ctx, "down", args.force)?;
    let stopped = vm
        .down(&mut |e| ctx.show_vm(&e))
        .context("stopping the VM")?;
    if ctx.json {
        print_json(&serde_json::json!({ "stopped": stopped }));
    } else if stopped {
        println!("VM '{}' stopped", ctx.config.vm.name);
    } else {
        println!("VM '{}' was not running", ctx.config.vm.name);
    }
    Ok(ExitCode::SUCCESS)
}

pub fn run_destroy(ctx: &Context, args: &DestroyArgs) -> anyhow::Result<ExitCode> {
    let mut vm = open_to_change(ctx, "destroy", args.force)?;
    let done = vm.destroy(args.all).context("destroying the VM")?;
    let name = &ctx.config.vm.name;
    if ctx.json {
        print_json(&serde_json::json!({
            "vm": name,
            "destroyed": done.had_state,
            "was_running": done.was_running,
            "base_image_removed": done.base_image_removed,
        }));
        return Ok(ExitCode::SUCCESS);
    }
    match (done.had_state, &done.base_image_removed) {
        (false, None) => println!("VM '{name}' does not exist: nothing to destroy"),
        (false, Some(b)) => println!(
            "VM '{name}' did not exist; removed its base image {}",
            b.display()
        ),
        (true, base) => println!(
            "VM '{name}' destroyed{}{}",
            if done.was_running {
                " (it was running and has been stopped)"
            } else {
                ""
            },
            base.as_ref()
                .map(|b| format!("; base image {} removed", b.display()))
                .unwrap_or_default()
        ),
    }
    Ok(ExitCode::SUCCESS)
}

pub fn run_reset(ctx: &Context, args: &ResetArgs) -> anyhow::Result<ExitCode> {
    let mut vm = open_to_change(ctx, "reset", args.force)?;
    let stopped = vm.reset().context("resetting the VM")?;
    let name = &ctx.config.vm.name;
    if ctx.json {
        print_json(&serde_json::json!({ "reset": name, "stopped_running_vm": stopped }));
    } else {
        if stopped {
            println!("VM '{name}' was running: stopped it (powered off, not shut down cleanly)");
        }
        println!("VM '{name}' reset: the next `harness up` starts from the base image");
    }
    Ok(ExitCode::SUCCESS)
}

/// Text form of `harness status`.
pub fn status_text(s: &VmStatus) -> String {
    let state = match s.state {
        VmState::Running => "running",
        VmState::Paused => "paused",
        VmState::Stopped => "stopped",
        VmState::Absent => "absent (run `harness up`)",
        VmState::Unmanaged => "existing host (not managed by harness)",
    };
    let mut out = format!("VM '{}' ({} backend): {state}\n", s.name, s.backend);
    if let Some(e) = &s.endpoint {
        out.push_str(&format!(
            "  ssh:        ssh -p {} {}@{}\n",
            e.port, e.user, e.host
        ));
    }
    if let Some(c) = &s.console {
        out.push_str(&format!(
            "  console:    {} (`harness console`)\n",
            c.address()
        ));
    }
    if let Some(a) = &s.accel {
        out.push_str(&format!("  accel:      {a}\n"));
    }
    if let Some(p) = s.pid {
        out.push_str(&format!("  pid:        {p}\n"));
    }
    if let Some(b) = &s.base_image {
        out.push_str(&format!("  base image: {}\n", b.display()));
    }
    if let Some(o) = &s.overlay {
        out.push_str(&format!("  overlay:    {}\n", o.display()));
    }
    if s.snapshots.is_empty() {
        out.push_str("  snapshots:  none\n");
    } else {
        out.push_str("  snapshots:\n");
        for sn in &s.snapshots {
            out.push_str(&format!(
                "    {} ({} MiB of RAM state)\n",
                sn.name,
                sn.vm_state_bytes / (1 << 20)
            ));
        }
    }
    out
}

pub fn run_status(ctx: &Context, _args: &StatusArgs) -> anyhow::Result<ExitCode> {
    let mut vm = Vm::inspect(&ctx.config.vm, &ctx.vm_dirs())?;
    let s = vm.status().context("reading the VM status")?;
    if ctx.json {
        print_json(&serde_json::to_value(&s)?);
    } else {
        print!("{}", status_text(&s));
    }
    Ok(ExitCode::SUCCESS)
}

pub fn run_snapshot(ctx: &Context, cmd: &SnapshotCmd) -> anyhow::Result<ExitCode> {
    let d = ctx.vm_dirs();
    match cmd {
        SnapshotCmd::List => {
            let mut vm = Vm::inspect(&ctx.config.vm, &d)?;
            let list = vm.snapshot_list()?;
            if ctx.json {
                print_json(&serde_json::to_value(&list)?);
            } else if list.is_empty() {
                println!("no snapshots");
            } else {
                for s in list {
                    println!("{}\t{} MiB RAM state", s.name, s.vm_state_bytes / (1 << 20));
                }
            }
        }
        SnapshotCmd::Save { name } => {
            let mut vm = Vm::open(&ctx.config.vm, &d)?;
            vm.snapshot_save(name, &mut |e| ctx.show_vm(&e))
                .with_context(|| format!("saving snapshot '{name}'"))?;
            if ctx.json {
                print_json(&serde_json::json!({ "saved": name }));
            } else {
                println!("snapshot '{name}' saved");
            }
        }
        SnapshotCmd::Restore { name } => {
            let mut vm = Vm::open(&ctx.config.vm, &d)?;
            let opts = UpOptions {
                detach: true,
                restore: Some(name.clone()),
                cancel: Some(ctx.cancel.clone()),
                ..Default::default()
            };
            let up = vm
                .up(&opts, &mut |e| ctx.show_vm(&e))
                .with_context(|| format!("restoring snapshot '{name}'"))?;
            vm.detach();
            if ctx.json {
                print_json(&outcome_json(&up));
            } else {
                println!(
                    "snapshot '{name}' restored: ssh -p {} {}@{}",
                    up.endpoint.port, up.endpoint.user, up.endpoint.host
                );
            }
        }
        SnapshotCmd::Delete { name } => {
            let mut vm = Vm::open(&ctx.config.vm, &d)?;
            vm.snapshot_delete(name)
                .with_context(|| format!("deleting snapshot '{name}'"))?;
            if ctx.json {
                print_json(&serde_json::json!({ "deleted": name }));
            } else {
                println!("snapshot '{name}' deleted");
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
