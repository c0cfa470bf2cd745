//! Host mode: cross-compile the test binaries on the host, stage and upload them with their
//! testdata, and run them on the target (pipelined, see [`crate::pipeline`]).

use super::*;
use crate::exec::{Executor, TargetOs};
use crate::flags::{FlagError, GoTestFlags};
use crate::gotool::{HostGo, ListedPackage};
use crate::plan::shard_packages;
use crate::pool::{HostPool, Job};
use crate::stage::{Stager, in_testdata};
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
    let go = host_go(opts, crate::debug::target_env(os, &exec.arch()));
    let (listed, test2json) = list_packages(&go, opts, flags, st)?;

    let staging = staging_dir("harness-suite-")?;
    let (with_tests, without): (Vec<_>, Vec<_>) = listed.iter().partition(|p| p.has_tests());
    let testdata = stage_testdata(opts, os, staging.path(), st)?;
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
        let jobs = rerun_jobs(&built, flags, targets, trace_log);
        pool.run(&mut execs, jobs, "rerun", opts, st);
    });
    Ok(())
}

/// Lists the packages to run (after sharding) and finds test2json at the same time (`go tool
/// -n test2json` may build the tool), then announces how many packages there are.
fn list_packages(
    go: &HostGo,
    opts: &RunOptions,
    flags: &GoTestFlags,
    st: &mut State<'_>,
) -> Result<(Vec<ListedPackage>, PathBuf), SuiteError> {
    st.phase("listing");
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
    Ok((listed, test2json))
}

/// Copies the module's testdata trees into `staging`; returns where they are in it.
fn stage_testdata(
    opts: &RunOptions,
    os: TargetOs,
    staging: &Path,
    st: &mut State<'_>,
) -> Result<Vec<PathBuf>, SuiteError> {
    let mut stager = Stager::new(&opts.module_dir, os, &in_testdata);
    stager.testdata(staging).map_err(|e| SuiteError::Staging {
        path: staging.to_path_buf(),
        source: e,
    })?;
    for w in stager.warnings {
        st.warn(&w);
    }
    Ok(crate::pipeline::testdata_roots(staging))
}

/// A rerun round's jobs: each target's binary from the first round, with the rerun's flags.
fn rerun_jobs(
    built: &[Built],
    flags: &GoTestFlags,
    targets: &[RerunTarget],
    trace_log: bool,
) -> Vec<Job> {
    targets
        .iter()
        .filter_map(|t| {
            let b = built.iter().find(|b| b.pkg == t.package)?;
            Some(Job {
                built: b.clone(),
                flags: rerun_flags(flags, t, trace_log),
                expected: t.tests.clone(),
            })
        })
        .collect()
}
