//! `harness run --vms N`: N VMs on one host, each an overlay of the same golden image.
//!
//! 1. refuse an N the host cannot hold ([`provision::vm::capacity`]);
//! 2. make what the VMs share once (SSH key, KVM verdict, golden image), then
//! 3. run `up → doctor → suites (shard i/N) → down` on VM `<name>-i` in its own thread, with its
//!    own context (name, free SSH port, VM dir, ready snapshot, lock), session and executor, its
//!    progress lines tagged `[<name>-i]`;
//! 4. merge each suite's shard folders with the code `report merge` uses, keeping each VM's
//!    folder and naming who ran what (`vms.json`, the merged provenance).
//!
//! A VM that fails (boot, install, doctor, suites) is reported; its shard's packages are recorded
//! as not run ([`suites::unrun`]), and the run fails.
//!
//! Layout of the results folder: `<name>-i/` (each VM's own run: `phases.json`, `doctor.json`,
//! `tests/` or `<suite>/`), the merged `tests/` or `<suite>/`, `vms.json` and `phases.json`.

mod merge;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context as _;
use provision::vm::capacity::{self, VmShape};
use provision::vm::{UpOptions, Vm};

use crate::context::Context;
use crate::phases::{PhaseTiming, Phases};
use crate::pipeline::{self, RunRequest};

pub use merge::recorded_durations;

/// One VM's part of the run (an entry of `vms.json`).
#[derive(Debug, Clone, serde::Serialize)]
pub struct VmRun {
    pub name: String,
    /// `i/N`.
    pub shard: String,
    /// Its folder in the results.
    pub dir: PathBuf,
    /// Why its work stopped early (boot, install, doctor or suites); `None`: it ran its shard.
    pub error: Option<String>,
    /// Its phases (`provision` says how it came up, the accelerator and its SSH port).
    pub phases: Vec<PhaseTiming>,
    /// Packages of its shard by suite, and whether they ran.
    pub suites: BTreeMap<String, merge::Share>,
    /// New crash dumps found in its guest after the suites (any fails the run).
    pub dumps: usize,
}

/// The VMs' names: `<name>-1` … `<name>-N`.
pub fn vm_names(base: &str, n: u32) -> Vec<String> {
    (1..=n).map(|i| format!("{base}-{i}")).collect()
}

/// Whether the host can hold `n` VMs as configured; the error names the most it can.
fn check_capacity(ctx: &Context, n: u32) -> anyhow::Result<()> {
    if ctx.config.vm.backend != provision::BackendKind::Qemu {
        anyhow::bail!(
            "--vms needs [vm] backend = \"qemu\" (harness runs each VM as an overlay of one golden image); this config uses another backend: drop --vms, or switch the backend"
        );
    }
    let host = capacity::host_resources().context("reading the host's memory and CPUs")?;
    let shape = VmShape {
        memory_mib: u64::from(ctx.config.vm.memory_mib),
        cpus: u64::from(ctx.config.vm.cpus),
    };
    capacity::check(host, shape, n)?;
    Ok(())
}

/// `harness run --vms N` (N ≠ 1).
pub fn run(
    ctx: &Context,
    args: &RunRequest,
    shard_durations: Option<&Path>,
    n: u32,
) -> anyhow::Result<ExitCode> {
    if n == 0 {
        anyhow::bail!("--vms 0 runs nothing; ask for at least 1 VM");
    }
    check_capacity(ctx, n)?;
    // Before a new run folder becomes `latest`: the durations of the last run.
    let durations = match shard_durations {
        Some(d) => Some(recorded_durations(d).context("reading --shard-durations")?),
        None => {
            let latest = ctx.paths.results.join("latest");
            latest.is_dir().then(|| recorded_durations(&latest).ok())
        }
        .flatten(),
    };
    let names = vm_names(&ctx.config.vm.name, n);
    let vctxs: Vec<Context> = names.iter().map(|name| ctx.for_vm(name)).collect();
    if args.fresh {
        for v in &vctxs {
            let mut vm = Vm::open(&v.config.vm, &v.vm_dirs()).context("opening the VM")?;
            vm.reset()
                .with_context(|| format!("resetting VM '{}' (--fresh)", v.config.vm.name))?;
        }
    }
    let out = match &args.out {
        Some(d) => d.clone(),
        None => suites::new_run_dir(&ctx.paths.results, "run")?,
    };
    std::fs::create_dir_all(&out).with_context(|| format!("creating {}", out.display()))?;
    let mut phases = Phases::new(ctx);
    let result = run_all(ctx, args, &vctxs, durations, &mut phases, &out);
    pipeline::write_timings(&out, &phases.timings, phases.total_seconds())?;
    let (code, runs, merged) = result?;
    if ctx.json {
        let doc = serde_json::json!({
            "exit_code": code,
            "results": out,
            "total_seconds": phases.total_seconds(),
            "phases": phases.timings,
            "vms": runs,
            "suites": merged.iter().map(|r| serde_json::json!({
                "suite": r.name, "dir": r.written.dir, "summary": r.written.summary
            })).collect::<Vec<_>>(),
        });
        println!("{}", serde_json::to_string_pretty(&doc)?);
    } else if ctx.verbosity >= 0 {
        for r in &runs {
            match &r.error {
                None => eprintln!("[{}] shard {}: ran", r.name, r.shard),
                Some(e) => eprintln!("[{}] shard {}: FAILED: {e}", r.name, r.shard),
            }
        }
        eprintln!("results: {}", out.display());
    }
    Ok(ExitCode::from(code))
}

type Outcome = (u8, Vec<VmRun>, Vec<crate::pipeline::SuiteResult>);

/// prepare → vms (side by side) → merge → results.
fn run_all(
    ctx: &Context,
    args: &RunRequest,
    vctxs: &[Context],
    durations: Option<BTreeMap<String, f64>>,
    phases: &mut Phases,
    out: &Path,
) -> anyhow::Result<Outcome> {
    phases.run("prepare", || {
        let golden = prepare_shared(ctx, args, &vctxs[0])?;
        Ok(((), format!("golden image {}", golden.display())))
    })?;
    let n = vctxs.len() as u32;
    let runs = phases.run("vms", || {
        let runs: Vec<VmRun> = std::thread::scope(|s| {
            let handles: Vec<_> = vctxs
                .iter()
                .enumerate()
                .map(|(i, v)| {
                    let shard = suites::Shard {
                        index: i as u32 + 1,
                        total: n,
                    };
                    let mut args = args.clone();
                    args.suites.sel.shard = Some(shard);
                    args.suites.durations = durations.clone();
                    s.spawn(move || one_vm(v, &args, out))
                })
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().expect("a VM's thread does not panic"))
                .collect()
        });
        let failed: Vec<&str> = runs
            .iter()
            .filter(|r| r.error.is_some())
            .map(|r| r.name.as_str())
            .collect();
        let detail = if failed.is_empty() {
            format!("{n} VMs ran their shards")
        } else {
            format!("failed: {}", failed.join(", "))
        };
        Ok((runs, detail))
    })?;
    if runs.iter().any(|r| r.error.is_some())
        && let Some(t) = phases.timings.last_mut()
    {
        t.ok = false; // its results are merged below, but the phase did not do its job
    }
    let mut runs = runs;
    let merged = phases.always("merge", || {
        let m = merge::merge_all(ctx, args, &mut runs, out)?;
        let detail = m
            .iter()
            .map(|r| format!("{}: {}", r.name, r.written.summary.totals.counts()))
            .collect::<Vec<_>>()
            .join("; ");
        Ok((m, detail))
    })?;
    merge::write_vms_json(out, &runs)?;
    phases.run("results", || {
        pipeline::report(ctx, &merged)?;
        Ok(((), format!("{}", out.display())))
    })?;
    let mut code = crate::pipeline::worst_exit(&merged);
    if runs.iter().any(|r| r.dumps > 0) {
        code = code.max(1);
    }
    if runs.iter().any(|r| r.error.is_some()) {
        code = code.max(2);
    }
    Ok((code, runs, merged))
}

/// Makes the SSH key, the KVM verdict and the golden image once, so the VMs can boot side by
/// side without racing to create them.
fn prepare_shared(ctx: &Context, args: &RunRequest, first: &Context) -> anyhow::Result<PathBuf> {
    let mut cfg = first.config.vm.clone();
    if args.up.iso.is_some() {
        cfg.iso = args.up.iso.clone();
    }
    if cfg.os == provision::GuestOs::Windows {
        cfg.iso = crate::iso::resolve(ctx, cfg.iso.as_deref())?;
    }
    let mut vm = Vm::open(&cfg, &ctx.vm_dirs()).context("opening the first VM")?;
    let opts = UpOptions {
        cancel: Some(ctx.cancel.clone()),
        psexec: ctx.config.install.psexec.clone(),
        ..Default::default()
    };
    vm.prepare_shared(&opts, &mut |e| ctx.show_vm(&e))
        .context("preparing the golden image the VMs share")
}

/// One VM's whole run, in its own thread: its pipeline, then `down` (unless --keep).
fn one_vm(v: &Context, args: &RunRequest, out: &Path) -> VmRun {
    let name = v.config.vm.name.clone();
    let dir = out.join(&name);
    let shard = args
        .suites
        .sel
        .shard
        .map(|s| s.to_string())
        .unwrap_or_default();
    let mut phases = Phases::new(v);
    let result = std::fs::create_dir_all(&dir)
        .with_context(|| format!("creating {}", dir.display()))
        .and_then(|_| pipeline::test_on_vm(v, args, &mut phases, &dir));
    let dumps = result.as_ref().map_or(0, |(_, d)| *d);
    let mut error = result.err().map(|e| format!("{e:#}"));
    if !args.keep {
        let down = phases.always("down", || {
            let mut vm = Vm::open(&v.config.vm, &v.vm_dirs()).context("opening the VM")?;
            let was_up = vm.down(&mut |_| {})?;
            Ok((
                (),
                if was_up {
                    "powered off"
                } else {
                    "was not running"
                }
                .to_string(),
            ))
        });
        if let (Err(e), None) = (down, &error) {
            error = Some(format!("stopping VM '{name}' after its shard: {e:#}"));
        }
    }
    if let Err(e) = pipeline::write_timings(&dir, &phases.timings, phases.total_seconds()) {
        tracing::warn!("{e:#}");
    }
    VmRun {
        name,
        shard,
        dir,
        error,
        phases: phases.timings,
        suites: BTreeMap::new(),
        dumps,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vms_are_named_after_the_configured_vm() {
        assert_eq!(vm_names("linux", 2), ["linux-1", "linux-2"]);
        assert!(vm_names("x", 0).is_empty());
    }

    #[test]
    fn each_vm_gets_its_own_name_port_and_tag() {
        let d = tempfile::tempdir().unwrap();
        let mut ctx = Context::for_test(d.path());
        ctx.config.vm.port = 2222;
        let v = ctx.for_vm("w-2");
        assert_eq!(v.config.vm.name, "w-2");
        assert_eq!(v.config.vm.port, 0, "each VM picks a free loopback port");
        assert_eq!(v.tag(), "[w-2] ");
        assert!(!v.progress(), "no spinners when VMs print side by side");
        assert_eq!(ctx.tag(), "");
        v.cancel.cancel();
        assert!(ctx.cancel.is_cancelled(), "Ctrl-C reaches every VM");
    }

    #[test]
    fn refuses_other_backends_and_zero() {
        let d = tempfile::tempdir().unwrap();
        let mut ctx = Context::for_test(d.path());
        ctx.config.vm.backend = provision::BackendKind::Ssh;
        let e = check_capacity(&ctx, 2).unwrap_err().to_string();
        assert!(e.contains("backend = \"qemu\""), "{e}");
    }
}
