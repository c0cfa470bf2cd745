//! `run`: up → doctor → suites → results → down, on one VM (`run --vms N` runs the middle of it,
//! [`test_on_vm`], once per VM).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use provision::vm::Vm;

use super::suites::{SuiteResult, SuitesRequest, print_results, run_suites, worst_exit};
use super::up::{Ready, UpRequest, up};
use crate::context::Context;
use crate::gha;
use crate::phases::{PhaseTiming, Phases};
use crate::render::Event;

/// What `run` is asked for.
#[derive(Debug, Clone, Default)]
pub struct RunRequest {
    /// How to bring the VM up (always the full pipeline, never detached from the handle).
    pub up: UpRequest,
    /// Reset the VM to its golden image first.
    pub fresh: bool,
    /// Leave the VM running afterwards.
    pub keep: bool,
    /// The suites, the selection and the balancing durations; `out` is ignored (see below).
    pub suites: SuitesRequest,
    /// Results folder (default: a new folder under the results dir, linked as `latest`).
    pub out: Option<PathBuf>,
}

/// What a run ended with.
pub struct RunOutcome {
    /// 0 passed, 1 test failures (or new crash dumps), 2 harness or infrastructure failure.
    pub exit_code: u8,
    /// The results folder.
    pub out: PathBuf,
    /// Each suite's summary, for `--json`.
    pub suites: Vec<serde_json::Value>,
}

/// The whole pipeline on the configured VM; `phases.json` is written whatever happens, and the
/// VM is stopped unless `keep`.
pub fn run(ctx: &Context, req: &RunRequest, phases: &mut Phases) -> anyhow::Result<RunOutcome> {
    if req.fresh {
        let mut vm = Vm::open(&ctx.config.vm, &ctx.vm_dirs()).context("opening the VM")?;
        let stopped = vm
            .reset()
            .context("resetting the VM to its golden image (--fresh)")?;
        if stopped {
            let note = format!(
                "VM '{}' was running: stopped it to reset it to its golden image (--fresh)",
                ctx.config.vm.name
            );
            ctx.output().emit(&Event::Notice(&note));
        }
    }
    let out = match &req.out {
        Some(d) => d.clone(),
        None => suites::new_run_dir(&ctx.paths.results, "run")?,
    };
    std::fs::create_dir_all(&out).with_context(|| format!("creating {}", out.display()))?;

    let result = run_pipeline(ctx, req, phases, &out);
    // Whatever happened, leave the VM in a known state and write what we have.
    let down = (!req.keep).then(|| {
        phases.always("down", || {
            let mut vm = Vm::open(&ctx.config.vm, &ctx.vm_dirs()).context("opening the VM")?;
            let was_up = vm.down(&mut |_| {})?;
            let how = if was_up {
                "powered off"
            } else {
                "was not running"
            };
            Ok(((), how.to_string()))
        })
    });
    write_timings(&out, &phases.timings, phases.total_seconds())?;
    let (exit_code, suites) = result?;
    if let Some(Err(e)) = down {
        return Err(e.context("stopping the VM after the run"));
    }
    Ok(RunOutcome {
        exit_code,
        out,
        suites,
    })
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

fn run_pipeline(
    ctx: &Context,
    req: &RunRequest,
    phases: &mut Phases,
    out: &Path,
) -> anyhow::Result<(u8, Vec<serde_json::Value>)> {
    let (results, dumps) = test_on_vm(ctx, req, phases, out)?;
    phases.run("results", || {
        report(ctx, &results)?;
        Ok(((), format!("{}", out.display())))
    })?;
    let docs = results
        .iter()
        .map(|r| serde_json::json!({"suite": r.name, "dir": r.written.dir, "summary": r.written.summary}))
        .collect();
    let code = worst_exit(&results);
    // New dumps in the guest fail the run, as efW's CI does.
    Ok((if dumps > 0 { code.max(1) } else { code }, docs))
}

/// up → doctor → suites on the configured VM, results written under `out` but not yet
/// reported (one VM of `--vms N` runs exactly this); also how many new crash dumps the guest
/// holds (they fail the run).
pub fn test_on_vm(
    ctx: &Context,
    req: &RunRequest,
    phases: &mut Phases,
    out: &Path,
) -> anyhow::Result<(Vec<SuiteResult>, usize)> {
    // The VM must survive this function so `down` can stop it cleanly (or --keep keep it).
    let up_req = UpRequest {
        detach: true,
        vm_only: false,
        ..req.up.clone()
    };
    let ready = up(ctx, &up_req, phases, Some(out))?;
    let Ready {
        _vm: vm,
        up: up_outcome,
        session,
        build,
        ..
    } = ready;
    let mut session = session.expect("full up opens a session");
    let names = req.suites.names(ctx);
    // Before the suites: is the guest fit for them? Stops here, with the fixes, when not.
    let trace_log =
        crate::guest_doctor::wants_trace_log(&ctx.config, &names, &req.suites.sel.extra);
    let doctor = phases.run("doctor", || {
        let source = req.up.efw.source.as_deref();
        crate::guest_doctor::run_phase(ctx, &mut session, source, trace_log, out)
    })?;
    let mut prov = suites::Provenance {
        harness_version: env!("CARGO_PKG_VERSION").to_string(),
        ..Default::default()
    };
    crate::guest::fill_provenance(ctx, &mut prov);
    if super::efw_none(req.up.efw.source.as_deref().unwrap_or("")) {
        // --source none on the command line: no runtime, whatever an older install recorded.
        prov.efw_source = None;
        prov.efw_run_id = None;
        prov.efw_sha = None;
        prov.efw_version = None;
        prov.extra.remove("efw_build_key");
    }
    prov.guest_build = doctor.guest_build.clone();
    let since = suites::event::now_rfc3339();
    let reinstall = build.map(|b| super::install::reinstall_hook(ctx, b, &out.join("install")));
    let (mut exec, guard, _watch) =
        crate::crash::watch(ctx, vm, up_outcome, session, out, since, reinstall);
    let suites_req = SuitesRequest {
        out: Some(if names.len() > 1 {
            out.to_path_buf()
        } else {
            out.join("tests")
        }),
        ..req.suites.clone()
    };
    let results = phases.run("suites", || {
        let r = run_suites(ctx, &mut exec, &prov, &suites_req)?;
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
fn suite_timings(results: &[SuiteResult]) -> (BTreeMap<String, f64>, u64) {
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
pub fn report(ctx: &Context, results: &[SuiteResult]) -> anyhow::Result<()> {
    if !ctx.json {
        print_results(ctx, results)?;
    }
    for r in results {
        for (pkg, t) in r.record.execution.failed_tests() {
            let output = t.attempts.last().map_or("", |a| a.output.as_str());
            ctx.output().emit(&Event::TestFailed {
                dir: &package_rel_dir(&r.module_dir, &pkg.name),
                test: &t.name,
                output,
            });
        }
    }
    if gha::active() {
        for r in results {
            let md = std::fs::read_to_string(r.written.dir.join("summary.md")).unwrap_or_default();
            gha::append_step_summary(&md).context("appending to $GITHUB_STEP_SUMMARY")?;
        }
    }
    Ok(())
}

pub fn write_timings(out: &Path, timings: &[PhaseTiming], total: f64) -> anyhow::Result<()> {
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
            SuiteResult {
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
