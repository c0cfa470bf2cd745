//! Host mode: cross-compile the test binaries on the host, stage and upload them with their
//! testdata, and run them on the target (pipelined, see [`crate::pipeline`]).

use super::*;
use crate::event::HARNESS_MARK;
use crate::exec::{Executor, TargetOs};
use crate::flags::{FlagError, GoTestFlags};
use crate::gotool::{HostGo, ListedPackage};
use crate::plan::shard_packages;
use crate::pool::{HostPool, Job};
use crate::stage::{Stager, in_testdata};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// With `core_dumps` on a Linux target: a host folder for the run's core files (they move into
/// the results' `dumps/` when written).
pub(crate) fn core_dir(opts: &RunOptions, os: TargetOs, st: &mut State<'_>) -> Option<PathBuf> {
    if !opts.suite.core_dumps {
        return None;
    }
    if os != TargetOs::Linux {
        st.warn("core_dumps applies to Linux targets only (Windows targets get a MiniDump of a hung test binary)");
        return None;
    }
    match tempfile::Builder::new().prefix("harness-cores-").tempdir() {
        Ok(d) => Some(d.keep()),
        Err(e) => {
            st.warn(&format!(
                "core_dumps: no folder for core files on the host: {e}"
            ));
            None
        }
    }
}

pub(crate) fn host_go(opts: &RunOptions, env: Vec<(String, String)>) -> HostGo {
    HostGo {
        go: opts.host_go.clone(),
        dir: opts.module_dir.clone(),
        env,
        cancel: opts.cancel.clone(),
    }
}

pub(crate) fn select(opts: &RunOptions, listed: Vec<ListedPackage>) -> Vec<ListedPackage> {
    match opts.shard {
        None => listed,
        Some(shard) => {
            let names: Vec<String> = listed.iter().map(|p| p.import_path.clone()).collect();
            let mine = shard_packages(&names, shard, opts.shard_durations.as_ref());
            listed
                .into_iter()
                .filter(|p| mine.contains(&p.import_path))
                .collect()
        }
    }
}

/// A built test binary, relative to the staging root.
#[derive(Debug, Clone)]
pub(crate) struct Built {
    pub pkg: String,
    pub rel_dir: String,
    pub bin: String,
}

pub(crate) fn rel_dir(module: &Path, dir: &Path) -> String {
    let module = module
        .canonicalize()
        .unwrap_or_else(|_| module.to_path_buf());
    let dir = dir.canonicalize().unwrap_or_else(|_| dir.to_path_buf());
    dir.strip_prefix(&module)
        .map(|r| r.to_string_lossy().replace('\\', "/"))
        .unwrap_or_default()
}

pub(crate) fn run_host(
    exec: &mut dyn Executor,
    opts: &RunOptions,
    flags: &GoTestFlags,
    st: &mut State<'_>,
) -> Result<(), SuiteError> {
    if flags.has_build("race") {
        return Err(FlagError::RaceInHostMode.into());
    }
    let os = exec.os();
    let target_env = vec![
        ("GOOS".to_string(), os.goos().to_string()),
        ("GOARCH".to_string(), exec.arch()),
        ("CGO_ENABLED".to_string(), "0".to_string()),
    ];
    let go = host_go(opts, target_env);
    st.phase("listing");
    // `go tool -n test2json` may build the tool: do it while `go list` runs.
    let native_go = host_go(opts, Vec::new());
    let list_start = Instant::now();
    let (listed, test2json) = std::thread::scope(|s| {
        let t2j = s.spawn(|| native_go.test2json_path());
        let listed = go.list(&opts.suite.packages, &flags.build_args());
        (listed, t2j.join().expect("test2json lookup does not panic"))
    });
    st.clock.span("list", list_start, Instant::now());
    let listed = select(opts, listed?);
    let test2json = test2json?;
    st.planned = listed.iter().map(|p| p.import_path.clone()).collect();
    st.obs.on_event(
        &RunEvent::Planned {
            packages: listed.len(),
        },
        &st.ex,
    );

    let staging = tempfile::Builder::new()
        .prefix("harness-suite-")
        .tempdir()
        .map_err(|e| SuiteError::Staging {
            path: std::env::temp_dir(),
            source: e,
        })?;
    let (with_tests, without): (Vec<_>, Vec<_>) = listed.iter().partition(|p| p.has_tests());

    let mut stager = Stager::new(&opts.module_dir, os, &in_testdata);
    stager
        .testdata(staging.path())
        .map_err(|e| SuiteError::Staging {
            path: staging.path().to_path_buf(),
            source: e,
        })?;
    for w in stager.warnings {
        st.warn(&w);
    }
    let testdata = crate::pipeline::testdata_roots(staging.path());
    for p in &without {
        st.no_test_files(&p.import_path);
    }

    let remote = exec.remote_dir(&format!("suite-{}", opts.suite_name));
    // One more session uploads while the others run; without it, upload then run.
    let uploader = exec.try_clone();
    // More sessions on the target, when the executor can open them, run packages side by side
    // as `go test -p` would.
    let mut extra: Vec<Box<dyn Executor>> = (1..opts.suite.parallel.max(1))
        .map_while(|_| exec.try_clone())
        .collect();
    let mut execs: Vec<&mut dyn Executor> = vec![exec];
    execs.extend(extra.iter_mut().map(|e| e.as_mut() as &mut dyn Executor));
    let pool = HostPool {
        os,
        remote: &remote,
        env: test_env(opts),
        timeout: Duration::from_secs(opts.suite.package_timeout.max(1)),
        cancel: opts.cancel.clone(),
        test2json: &test2json,
        defined: Default::default(),
        cores: core_dir(opts, os, st),
    };
    let pipe = crate::pipeline::Pipe {
        go: &go,
        opts,
        flags,
        staging: staging.path(),
        exe: os.exe_suffix(),
        remote: &remote,
        pool: &pool,
        testdata,
    };
    st.phase("building");
    let built = match uploader {
        Some(mut up) => crate::pipeline::run(&pipe, &with_tests, up.as_mut(), &mut execs, st)?,
        None => match crate::pipeline::in_sequence(&pipe, &with_tests, &mut execs, st)? {
            Some(b) => b,
            None => return Ok(()),
        },
    };

    rerun_rounds(opts, os, st, &mut |st, targets, trace_log| {
        let jobs: Vec<Job> = targets
            .iter()
            .filter_map(|t| {
                let b = built.iter().find(|b| b.pkg == t.package)?;
                Some(Job {
                    built: b.clone(),
                    flags: rerun_flags(flags, t, trace_log),
                    expected: t.tests.clone(),
                })
            })
            .collect();
        pool.run(&mut execs, jobs, "rerun", opts, st);
    });
    Ok(())
}

pub(crate) fn build_all(
    go: &HostGo,
    opts: &RunOptions,
    flags: &GoTestFlags,
    pkgs: &[&ListedPackage],
    staging: &Path,
    exe: &str,
    st: &mut State<'_>,
) -> Result<Vec<Built>, SuiteError> {
    let jobs: Vec<(usize, String, String, String)> = pkgs
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let rel = rel_dir(&opts.module_dir, &p.dir);
            let base = p
                .import_path
                .rsplit('/')
                .next()
                .unwrap_or("pkg")
                .to_string();
            (i, p.import_path.clone(), rel, format!("{base}.test{exe}"))
        })
        .collect();
    for (_, _, rel, _) in &jobs {
        let d = staging.join(rel);
        std::fs::create_dir_all(&d).map_err(|e| SuiteError::Staging { path: d, source: e })?;
    }
    let build_args = flags.build_args();
    let mut results: Vec<Option<Result<(), Vec<String>>>> = vec![None; jobs.len()];
    // Built so far and to build, over all batches of the run.
    let mut done = st.build_progress.0;
    let total = st.build_progress.1.max(done + jobs.len());
    // Fast path: one `go test -c -o DIR/ PKGS…` per batch of distinct binary names loads the
    // module once and lets Go build in parallel (several times faster than one `go` per
    // package). Whatever it does not produce is built one by one below, which also pins a
    // compile error on the right package.
    let names: Vec<String> = jobs.iter().map(|j| j.3.clone()).collect();
    for (k, batch) in batch_by_name(&names).into_iter().enumerate() {
        if batch.len() < 2 {
            continue;
        }
        let outdir = staging.join(format!(".batch-{k}"));
        let mut args = vec![
            "test".to_string(),
            "-c".into(),
            "-o".into(),
            format!("{}/", outdir.display()),
        ];
        args.extend(build_args.iter().cloned());
        args.extend(batch.iter().map(|&i| jobs[i].1.clone()));
        if !matches!(go.run(&args, BUILD_TIMEOUT), Ok(o) if o.code == Some(0)) {
            let _ = std::fs::remove_dir_all(&outdir);
            continue;
        }
        for &i in &batch {
            let (_, pkg, rel, bin) = &jobs[i];
            if std::fs::rename(outdir.join(bin), staging.join(rel).join(bin)).is_ok() {
                done += 1;
                results[i] = Some(Ok(()));
                st.obs.on_event(
                    &RunEvent::Built {
                        done,
                        total,
                        package: pkg,
                        ok: true,
                    },
                    &st.ex,
                );
            }
        }
        let _ = std::fs::remove_dir_all(&outdir);
    }
    let pending: Vec<&(usize, String, String, String)> =
        jobs.iter().filter(|j| results[j.0].is_none()).collect();
    let queue = std::sync::Mutex::new(pending.into_iter());
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::scope(|s| {
        for _ in 0..opts.build_jobs.max(1) {
            let tx = tx.clone();
            let queue = &queue;
            let build_args = &build_args;
            s.spawn(move || {
                loop {
                    let Some((i, pkg, rel, bin)) = queue.lock().expect("queue").next() else {
                        break;
                    };
                    let out = staging.join(rel).join(bin);
                    let mut args = vec![
                        "test".to_string(),
                        "-c".into(),
                        "-o".into(),
                        out.display().to_string(),
                    ];
                    args.extend(build_args.iter().cloned());
                    args.push(pkg.clone());
                    let r = match go.run(&args, BUILD_TIMEOUT) {
                        Ok(o) if o.code == Some(0) && out.is_file() => Ok(()),
                        Ok(o) => {
                            let mut lines = o.stderr;
                            lines.extend(o.stdout);
                            if o.timed_out {
                                lines.push(format!(
                                    "{HARNESS_MARK}build timed out after {}s",
                                    BUILD_TIMEOUT.as_secs()
                                ));
                            }
                            Err(lines)
                        }
                        Err(e) => Err(vec![e.to_string()]),
                    };
                    if tx.send((*i, r)).is_err() {
                        break;
                    }
                }
            });
        }
        drop(tx);
        for (i, r) in rx {
            done += 1;
            let ok = r.is_ok();
            st.obs.on_event(
                &RunEvent::Built {
                    done,
                    total,
                    package: &jobs[i].1,
                    ok,
                },
                &st.ex,
            );
            results[i] = Some(r);
        }
    });
    st.build_progress.0 = done;
    let mut built = Vec::new();
    for ((_, pkg, rel, bin), r) in jobs.into_iter().zip(results) {
        match r {
            Some(Ok(())) => built.push(Built {
                pkg,
                rel_dir: rel,
                bin,
            }),
            Some(Err(lines)) => st.build_failed(&pkg, &lines),
            None => st.build_failed(&pkg, &["build did not run".to_string()]),
        }
    }
    Ok(built)
}

/// Splits package indexes into batches whose binary names are distinct (the k-th package of each
/// name goes to batch k), since `go test -c -o DIR/` names binaries after the last path element.
pub(crate) fn batch_by_name(names: &[String]) -> Vec<Vec<usize>> {
    let mut seen: BTreeMap<&str, usize> = BTreeMap::new();
    let mut batches: Vec<Vec<usize>> = Vec::new();
    for (i, n) in names.iter().enumerate() {
        let k = seen.entry(n.as_str()).or_insert(0);
        if batches.len() <= *k {
            batches.push(Vec::new());
        }
        batches[*k].push(i);
        *k += 1;
    }
    batches
}
