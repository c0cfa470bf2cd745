//! Running a suite through an executor, in host mode (cross-compiled test binaries, test2json on
//! the host) or guest mode (`go test -json` with the guest's Go), with reruns and shards.
//!
//! Failures of the machinery never vanish: a package killed by its timeout, a target that went
//! away, a build that failed all become events in the stream (marked with `harness: `), so that
//! `events.jsonl` alone reproduces the verdict.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::config::{RunMode, SuiteConfig};
use crate::event::{HARNESS_MARK, TestEvent, now_rfc3339};
use crate::exec::{Executor, TargetOs};
use crate::flags::{FlagError, GoTestFlags};
use crate::gotool::GoError;
use crate::model::Execution;
use crate::plan::{RerunTarget, Shard};
use crate::results::RunRecord;
use crate::summary::RunMeta;
use crate::timing::Clock;

mod build;
mod guest;
mod host;
mod state;

pub(crate) use build::{Built, build_all};
use guest::run_guest;
pub(crate) use host::{host_go, select};
use host::{rel_dir, run_host};
pub(crate) use state::State;

/// How long building one test binary on the host may take.
const BUILD_TIMEOUT: Duration = Duration::from_secs(20 * 60);
/// Allowance for `go test` compiling in the guest, on top of the package timeouts.
const GUEST_BUILD_ALLOWANCE: Duration = Duration::from_secs(10 * 60);

/// Everything a run needs besides the executor.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// The suite's name (results folder, remote directory).
    pub suite_name: String,
    /// The suite's configuration.
    pub suite: SuiteConfig,
    /// The Go module on the host (see [`resolve_module_dir`]).
    pub module_dir: PathBuf,
    /// `--run REGEX`: replaces the suite's `-run`.
    pub run: Option<String>,
    /// `--count N`: replaces the suite's `-count`.
    pub count: Option<u32>,
    /// `--rerun-fails N`: replaces the suite's `rerun_fails`.
    pub rerun_fails: Option<u32>,
    /// `--shard I/N`.
    pub shard: Option<Shard>,
    /// Package durations of a previous run, to balance shards.
    pub shard_durations: Option<BTreeMap<String, f64>>,
    /// Extra `go test` arguments (after `--` on the command line).
    pub extra_args: Vec<String>,
    /// Extra environment for the tests (e.g. `CI_EFW_VERSION` from the installed build).
    pub extra_env: Vec<(String, String)>,
    /// Raised by Ctrl-C.
    pub cancel: Option<hostproc::Cancel>,
    /// The host's `go`.
    pub host_go: String,
    /// Parallel builds on the host.
    pub build_jobs: usize,
    /// Run exactly these tests instead of the suite's packages (`harness repro`): each target's
    /// package with its own `-run`, verbose as always, `count` times.
    pub targets: Option<Vec<RerunTarget>>,
}

impl RunOptions {
    /// Options with defaults for everything but the suite.
    pub fn new(
        suite_name: impl Into<String>,
        suite: SuiteConfig,
        module_dir: impl Into<PathBuf>,
    ) -> Self {
        RunOptions {
            suite_name: suite_name.into(),
            suite,
            module_dir: module_dir.into(),
            run: None,
            count: None,
            rerun_fails: None,
            shard: None,
            shard_durations: None,
            extra_args: Vec::new(),
            extra_env: Vec::new(),
            cancel: None,
            host_go: "go".into(),
            build_jobs: 2,
            targets: None,
        }
    }
}

/// Why a run could not start at all (anything later is recorded in the results instead).
#[derive(Debug, thiserror::Error)]
pub enum SuiteError {
    /// Bad `go test` flags.
    #[error(transparent)]
    Flags(#[from] FlagError),
    /// The host's Go failed (listing, test2json).
    #[error(transparent)]
    Go(#[from] GoError),
    /// No module to test.
    #[error("{0}")]
    Module(String),
    /// Sharding needs the package list, which needs Go on the host.
    #[error(
        "sharding needs Go on the host to list the packages; install Go on the host or drop --shard"
    )]
    ShardNeedsGo,
    /// Preparing the staging tree failed.
    #[error("preparing the test binaries in {path}: {source}")]
    Staging {
        /// Where.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}

/// What the runner reports while it works: a typed stream the CLI renders (progress line,
/// `--verbose` output); the runner itself never prints.
#[derive(Debug)]
pub enum RunEvent<'a> {
    /// A phase began (`listing`, `building`, `uploading`, `running`, `rerunning`).
    Phase(&'a str),
    /// The number of packages to run is known.
    Planned {
        /// Packages.
        packages: usize,
    },
    /// One test binary was built (host mode).
    Built {
        /// Binaries built so far.
        done: usize,
        /// Binaries to build.
        total: usize,
        /// The package.
        package: &'a str,
        /// Whether the build succeeded.
        ok: bool,
    },
    /// A test2json event was folded into the model.
    Event(&'a TestEvent),
    /// A line that was not test2json (go diagnostics, stray stderr).
    Output(&'a str),
    /// A rerun round begins.
    Rerun {
        /// 1-based round.
        round: u32,
        /// What it reruns.
        targets: &'a [RerunTarget],
    },
}

/// Receives [`RunEvent`]s together with the model as it stands.
pub trait Observer {
    /// Called for every event.
    fn on_event(&mut self, event: &RunEvent<'_>, model: &Execution);
}

impl<F: FnMut(&RunEvent<'_>, &Execution)> Observer for F {
    fn on_event(&mut self, event: &RunEvent<'_>, model: &Execution) {
        self(event, model)
    }
}

/// An observer that ignores everything.
pub struct Quiet;

impl Observer for Quiet {
    fn on_event(&mut self, _: &RunEvent<'_>, _: &Execution) {}
}

/// The module to test: the configured path, or the current directory when it is a Go module.
pub fn resolve_module_dir(configured: Option<&Path>) -> Result<PathBuf, SuiteError> {
    let dir = match configured {
        Some(p) => p.to_path_buf(),
        None => std::env::current_dir()
            .map_err(|e| SuiteError::Module(format!("reading the current directory: {e}")))?,
    };
    if !dir.join("go.mod").is_file() {
        return Err(SuiteError::Module(format!(
            "{} is not a Go module (no go.mod); set `path` in the suite's config or run from the library's checkout",
            dir.display()
        )));
    }
    Ok(dir)
}

/// `Auto` becomes `Host` when `go` runs on the host, else `Guest`.
pub fn resolve_mode(mode: RunMode, host_go: &str) -> RunMode {
    match mode {
        RunMode::Auto => {
            let argv = [host_go.to_string(), "version".to_string()];
            let ok = crate::gotool::quick(&argv, std::time::Duration::from_secs(60))
                .is_some_and(|(code, _)| code == Some(0));
            if ok { RunMode::Host } else { RunMode::Guest }
        }
        m => m,
    }
}

/// A temporary folder on the host to stage files in (removed when dropped).
pub(crate) fn staging_dir(prefix: &str) -> Result<tempfile::TempDir, SuiteError> {
    tempfile::Builder::new()
        .prefix(prefix)
        .tempdir()
        .map_err(|e| SuiteError::Staging {
            path: std::env::temp_dir(),
            source: e,
        })
}

pub(crate) fn cancelled(opts: &RunOptions) -> bool {
    opts.cancel
        .as_ref()
        .is_some_and(hostproc::Cancel::is_cancelled)
}

pub(crate) fn test_env(opts: &RunOptions) -> Vec<(String, String)> {
    let mut env: Vec<(String, String)> = opts
        .suite
        .env
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    env.extend(opts.extra_env.iter().cloned());
    env
}

pub(crate) fn flags_for(opts: &RunOptions) -> Result<GoTestFlags, FlagError> {
    let mut all = opts.suite.flags.clone();
    all.extend(opts.extra_args.iter().cloned());
    let mut f = GoTestFlags::parse(&all)?;
    if let Some(r) = &opts.run {
        f.set("run", r);
    }
    if let Some(c) = opts.count {
        f.set("count", &c.to_string());
    }
    Ok(f)
}

/// The flags of a package's first run: the suite's, or a repro target's own `-run`.
pub(crate) fn first_run_flags(opts: &RunOptions, base: &GoTestFlags, pkg: &str) -> GoTestFlags {
    match opts
        .targets
        .as_ref()
        .and_then(|ts| ts.iter().find(|t| t.package == pkg))
    {
        Some(t) => {
            let mut f = rerun_flags(base, t, false);
            if let Some(c) = opts.count {
                f.set("count", &c.to_string());
            }
            f
        }
        None => base.clone(),
    }
}

/// The flags of a rerun: only the target's tests, once; ebpf-go's `-trace-log` when `trace_log`
/// (the suite's `trace_log_on_rerun` on a Windows target: it means nothing elsewhere).
pub(crate) fn rerun_flags(base: &GoTestFlags, t: &RerunTarget, trace_log: bool) -> GoTestFlags {
    let mut f = base.clone();
    match t.run_regex() {
        Some(re) => f.set("run", &re),
        None => f.unset("run"),
    }
    f.set("count", "1");
    if trace_log && !f.passthrough.iter().any(|a| a == "-trace-log") {
        f.passthrough.push("-trace-log".into());
    }
    f
}

/// Runs the suite and returns everything gathered, even when the target was lost midway.
pub fn run(
    exec: &mut dyn Executor,
    opts: &RunOptions,
    obs: &mut dyn Observer,
) -> Result<RunRecord, SuiteError> {
    let started = now_rfc3339();
    let t0 = Instant::now();
    let mode = resolve_mode(opts.suite.mode, &opts.host_go);
    let flags = flags_for(opts)?;
    let mut targeted;
    let opts = match &opts.targets {
        Some(t) => {
            targeted = opts.clone();
            targeted.suite.packages = t.iter().map(|t| t.package.clone()).collect();
            &targeted
        }
        None => opts,
    };
    let mut st = State {
        ex: Execution::new(),
        events: Vec::new(),
        other: Vec::new(),
        obs,
        lost: None,
        error: None,
        package_dirs: Vec::new(),
        cores: Vec::new(),
        warnings: Vec::new(),
        clock: Clock::new(),
        uploaded_bytes: 0,
        build_progress: (0, 0),
        crashed: None,
        crashes: Vec::new(),
        planned: Vec::new(),
        segment: None,
    };
    let mut segment = None;
    loop {
        let seg_opts = crate::crash::segment_options(opts, segment.as_deref());
        let opts = seg_opts.as_ref().unwrap_or(opts);
        match mode {
            RunMode::Guest => run_guest(exec, opts, &flags, &mut st)?,
            _ => run_host(exec, opts, &flags, &mut st)?,
        }
        match crate::crash::after_segment(exec, opts, &mut st) {
            Some(rest) => segment = Some(rest),
            None => break,
        }
    }
    st.ex.finalize("the run ended before the package finished");
    let mode_name = if mode == RunMode::Guest {
        "guest"
    } else {
        "host"
    };
    let meta = RunMeta {
        error: st.lost.clone().or(st.error.clone()),
        warnings: st.warnings.clone(),
        crashes: st.crashes.clone(),
        timings: st.clock.seconds(),
        uploaded_bytes: st.uploaded_bytes,
        ..run_meta(opts, &flags, mode_name, started, t0)
    };
    Ok(RunRecord {
        execution: st.ex,
        events: st.events,
        other_output: st.other,
        meta,
        package_dirs: st.package_dirs,
        cores: st.cores,
    })
}

/// The run facts every record starts from (the suite, its shard, when it started and how long
/// it took, the `go test` flags); the outcome's facts are the caller's to add.
pub(crate) fn run_meta(
    opts: &RunOptions,
    flags: &GoTestFlags,
    mode: &str,
    started: String,
    t0: Instant,
) -> RunMeta {
    RunMeta {
        suite: opts.suite_name.clone(),
        mode: mode.into(),
        shard: opts.shard.map(|s| s.to_string()),
        started,
        duration_secs: t0.elapsed().as_secs_f64(),
        flags: flags
            .go_test_args()
            .into_iter()
            .chain(flags.go_test_trailer())
            .collect(),
        ..Default::default()
    }
}

/// More failures than `rerun_max_failures` point at a broken setup, not flakes: reruns would
/// only repeat them (gotestsum's `--rerun-fails-max-failures`). Says so in the output.
pub(crate) fn too_many_to_rerun(opts: &RunOptions, st: &mut State<'_>) -> bool {
    let failed = st.ex.failed_tests().len();
    let max = opts.suite.rerun_max_failures as usize;
    if failed <= max {
        return false;
    }
    let note = format!(
        "{HARNESS_MARK}{failed} tests failed, more than rerun_max_failures = {max}: not rerunning"
    );
    st.other.push(note.clone());
    st.obs.on_event(&RunEvent::Output(&note), &st.ex);
    true
}

/// The rerun rounds of both modes, written once: each round takes the failures inside the
/// current segment and stops early when there are none, the run must stop, or too many failed;
/// it announces the round, then `rerun` runs the targets the mode's way (with `-trace-log` only
/// on Windows targets).
pub(crate) fn rerun_rounds(
    opts: &RunOptions,
    os: TargetOs,
    st: &mut State<'_>,
    rerun: &mut dyn FnMut(&mut State<'_>, &[RerunTarget], bool),
) {
    let trace_log = opts.suite.trace_log_on_rerun && os == TargetOs::Windows;
    let rounds = opts.rerun_fails.unwrap_or(opts.suite.rerun_fails);
    for round in 1..=rounds {
        let targets = crate::crash::in_segment(st, crate::plan::rerun_targets(&st.ex));
        if targets.is_empty() || stop_reason(opts, st).is_some() || too_many_to_rerun(opts, st) {
            break;
        }
        st.phase("rerunning");
        st.obs.on_event(
            &RunEvent::Rerun {
                round,
                targets: &targets,
            },
            &st.ex,
        );
        rerun(st, &targets, trace_log);
    }
}

pub(crate) fn stop_reason(opts: &RunOptions, st: &mut State<'_>) -> Option<String> {
    if let Some(c) = &st.crashed {
        return Some(format!("not run: guest crashed ({c})"));
    }
    if let Some(l) = &st.lost {
        return Some(format!("not run: {l}"));
    }
    if cancelled(opts) {
        st.error
            .get_or_insert_with(|| "cancelled by the user (Ctrl-C)".into());
        return Some("not run: cancelled by the user (Ctrl-C)".into());
    }
    None
}

#[cfg(test)]
mod tests {

    use super::build::batch_by_name;

    #[test]
    fn batches_keep_binary_names_distinct() {
        let names: Vec<String> = ["a.test", "b.test", "a.test", "c.test", "a.test"]
            .map(String::from)
            .to_vec();
        assert_eq!(batch_by_name(&names), vec![vec![0, 1, 3], vec![2], vec![4]]);
        assert!(batch_by_name(&[]).is_empty());
    }
}
