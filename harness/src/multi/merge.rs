//! Joining the VMs' shards into one result: shards a VM never ran are recorded as not run first,
//! then each suite's folders are merged with [`suites::merge_with`] (what `report merge` does),
//! the merged provenance naming which VM ran which shard.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::Context as _;

use super::VmRun;
use crate::context::Context;
use crate::pipeline::{RunRequest, SuiteResult};

/// One suite's share of a VM (in `vms.json`).
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct Share {
    /// The shard's folder.
    pub dir: PathBuf,
    /// Its packages.
    pub packages: Vec<String>,
    /// Whether the VM ran them (`false`: recorded as not run).
    pub ran: bool,
}

/// Package durations of a previous results folder: its `summary.json` and those of its
/// immediate sub-folders (`tests/`, one per suite), merged.
pub fn recorded_durations(dir: &Path) -> anyhow::Result<BTreeMap<String, f64>> {
    let mut found = BTreeMap::new();
    let mut dirs = vec![dir.to_path_buf()];
    if let Ok(rd) = std::fs::read_dir(dir) {
        let mut subs: Vec<PathBuf> = rd.flatten().map(|e| e.path()).collect();
        subs.sort();
        dirs.extend(subs.into_iter().filter(|p| p.is_dir()));
    }
    let mut any = false;
    for d in dirs {
        if !d.join("summary.json").is_file() {
            continue;
        }
        any = true;
        let s = suites::results::read_summary(&d)?;
        found.extend(s.packages.into_iter().map(|p| (p.name, p.elapsed)));
    }
    if !any {
        anyhow::bail!(
            "{} has no summary.json (nor has any folder in it); point at a results folder of an earlier `harness run` or `harness test`",
            dir.display()
        );
    }
    Ok(found)
}

/// The suites of this run and where each one's folder goes (`tests` for a single suite).
fn suite_layout(ctx: &Context, args: &RunRequest) -> Vec<(String, String)> {
    let names = args.suites.names(ctx);
    let one = names.len() == 1;
    names
        .into_iter()
        .map(|n| {
            let rel = if one { "tests".to_string() } else { n.clone() };
            (n, rel)
        })
        .collect()
}

fn run_options(
    ctx: &Context,
    args: &RunRequest,
    name: &str,
) -> anyhow::Result<(suites::RunOptions, PathBuf)> {
    let mut opts = crate::pipeline::suite_options(ctx, name, &args.suites.sel)?;
    opts.shard_durations = args.suites.durations.clone();
    let module = opts.module_dir.clone();
    Ok((opts, module))
}

/// Writes the folder of a shard its VM never ran: every package not run, saying why.
fn record_not_run(
    ctx: &Context,
    args: &RunRequest,
    suite: &str,
    vm: &str,
    why: &str,
    dir: &Path,
) -> anyhow::Result<()> {
    let (opts, _) = run_options(ctx, args, suite)?;
    let os = match ctx.config.vm.os {
        provision::GuestOs::Windows => suites::TargetOs::Windows,
        provision::GuestOs::Linux => suites::TargetOs::Linux,
    };
    let why = format!(
        "VM '{vm}' did not run shard {}: {why}",
        opts.shard.map(|s| s.to_string()).unwrap_or_default()
    );
    // The qemu backend runs x86-64 guests.
    let rec = match suites::unrun::not_run_record(&opts, os, "amd64", &why) {
        Ok(r) => r,
        Err(e) => suites::RunRecord {
            execution: suites::Execution::new(),
            events: Vec::new(),
            other_output: Vec::new(),
            meta: suites::RunMeta {
                suite: suite.to_string(),
                shard: opts.shard.map(|s| s.to_string()),
                error: Some(format!("{why}; and its packages could not be listed: {e}")),
                ..Default::default()
            },
            package_dirs: Vec::new(),
            cores: Vec::new(),
        },
    };
    let prov = suites::Provenance {
        harness_version: env!("CARGO_PKG_VERSION").to_string(),
        extra: BTreeMap::from([("vm".to_string(), vm.to_string())]),
        ..Default::default()
    };
    suites::write(dir, &rec, &prov).with_context(|| format!("writing {}", dir.display()))?;
    Ok(())
}

/// Merges every suite's shards into `out`, recording first what a VM never ran.
pub fn merge_all(
    ctx: &Context,
    args: &RunRequest,
    runs: &mut [VmRun],
    out: &Path,
) -> anyhow::Result<Vec<SuiteResult>> {
    let mut results = Vec::new();
    for (suite, rel) in suite_layout(ctx, args) {
        let mut dirs = Vec::new();
        for r in runs.iter_mut() {
            let dir = r.dir.join(&rel);
            let ran = dir.join("summary.json").is_file();
            if !ran {
                let why = r
                    .error
                    .clone()
                    .unwrap_or_else(|| "it wrote no results for this suite".into());
                let mut vargs = args.clone();
                vargs.suites.sel.shard = r.shard.parse().ok();
                record_not_run(ctx, &vargs, &suite, &r.name, &why, &dir)?;
            }
            let s = suites::results::read_summary(&dir)?;
            let share = Share {
                dir: dir.clone(),
                packages: s.packages.iter().map(|p| p.name.clone()).collect(),
                ran,
            };
            r.suites.insert(suite.clone(), share);
            dirs.push(dir);
        }
        let who: Vec<(String, String)> = runs
            .iter()
            .map(|r| (r.name.clone(), describe(r, &suite)))
            .collect();
        let merged_dir = out.join(&rel);
        let written = suites::merge_with(&dirs, &merged_dir, &mut |p| {
            p.extra.remove("vm");
            p.extra.insert(
                "vms".into(),
                who.iter()
                    .map(|(n, _)| n.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
            );
            for (n, d) in &who {
                p.extra.insert(format!("vm.{n}"), d.clone());
            }
        })
        .with_context(|| format!("merging the shards of suite `{suite}`"))?;
        let events = suites::results::read_events(&written.dir)?;
        let execution = suites::Execution::from_events(events.iter().map(|(_, e)| e));
        let (_, module_dir) = run_options(ctx, args, &suite)?;
        results.push(SuiteResult {
            name: suite,
            module_dir,
            record: suites::RunRecord {
                execution,
                events: events.into_iter().map(|(l, _)| l).collect(),
                other_output: Vec::new(),
                meta: written.summary.run.clone(),
                package_dirs: Vec::new(),
                cores: Vec::new(),
            },
            written,
        });
    }
    Ok(results)
}

/// `shard 1/2: 3 packages` or `shard 2/2: 2 packages not run (why)`, for the provenance.
fn describe(r: &VmRun, suite: &str) -> String {
    let share = r.suites.get(suite).cloned().unwrap_or_default();
    let pkgs = share.packages.join(" ");
    if share.ran {
        format!("shard {}: {pkgs}", r.shard)
    } else {
        format!("shard {}: not run: {pkgs}", r.shard)
    }
}

/// `vms.json`: who ran which shard, how each VM came up, and what stopped it.
pub fn write_vms_json(out: &Path, runs: &[VmRun]) -> anyhow::Result<()> {
    let p = out.join("vms.json");
    std::fs::write(
        &p,
        serde_json::to_vec_pretty(&serde_json::json!({ "vms": runs }))?,
    )
    .with_context(|| format!("writing {}", p.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_come_from_the_folder_and_its_suites() {
        let d = tempfile::tempdir().unwrap();
        let e = recorded_durations(d.path()).unwrap_err().to_string();
        assert!(e.contains("has no summary.json"), "{e}");
        let write = |dir: &Path, pkg: &str, secs: f64| {
            let events = [
                format!(r#"{{"Action":"start","Package":"{pkg}"}}"#),
                format!(r#"{{"Action":"pass","Package":"{pkg}","Elapsed":{secs}}}"#),
            ];
            let evs: Vec<_> = events
                .iter()
                .filter_map(|l| suites::event::parse_line(l))
                .collect();
            let rec = suites::RunRecord {
                execution: suites::Execution::from_events(&evs),
                events: events.to_vec(),
                other_output: Vec::new(),
                meta: suites::RunMeta::default(),
                package_dirs: Vec::new(),
                cores: Vec::new(),
            };
            suites::write(dir, &rec, &suites::Provenance::default()).unwrap();
        };
        write(&d.path().join("a"), "m/a", 3.0);
        write(&d.path().join("b"), "m/b", 5.0);
        let got = recorded_durations(d.path()).unwrap();
        assert_eq!(
            got,
            BTreeMap::from([("m/a".into(), 3.0), ("m/b".into(), 5.0)])
        );
    }
}
