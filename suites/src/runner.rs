//! Running a suite through an executor, in host mode (cross-compiled test binaries, test2json on
//! the host) or guest mode (`go test -json` with the guest's Go), with reruns and shards.
//!
//! Failures of the machinery never vanish: a package killed by its timeout, a target that went
//! away, a build that failed all become events in the stream (marked with `harness: `), so that
//! `events.jsonl` alone reproduces the verdict.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crate::cas::{self, TreeSync};
use crate::config::{RunMode, SuiteConfig};
use crate::event::{Action, ERROR_MARK, HARNESS_MARK, TestEvent, now_rfc3339, parse_line};
use crate::exec::{ExecError, ExecOutcome, ExecRequest, Executor, TargetOs};
use crate::flags::{FlagError, GoTestFlags};
use crate::gotool::{GoError, HostGo, ListedPackage};
use crate::guest_probe::{guest_keep_defined, guest_list};
use crate::model::{Execution, PackageStatus, TIMEOUT_MARK};
use crate::plan::{RerunTarget, Shard, rerun_targets, shard_packages};
use crate::pool::{HostPool, Job};
use crate::results::RunRecord;
use crate::stage::{Stager, in_testdata};
use crate::summary::RunMeta;
use crate::timing::Clock;

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
    pub cancel: Option<Arc<AtomicBool>>,
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

/// The fold in progress plus the raw stream, fed from both modes.
pub(crate) struct State<'o> {
    pub(crate) ex: Execution,
    events: Vec<String>,
    other: Vec<String>,
    obs: &'o mut dyn Observer,
    pub(crate) lost: Option<String>,
    pub(crate) error: Option<String>,
    pub(crate) package_dirs: Vec<(String, String)>,
    /// Core files fetched from the target (package, host path).
    pub(crate) cores: Vec<(String, PathBuf)>,
    warnings: Vec<String>,
    pub(crate) clock: Clock,
    pub(crate) uploaded_bytes: u64,
    /// Test binaries built so far and to build in this run (progress over build batches).
    pub(crate) build_progress: (usize, usize),
    /// The target crashed and is not back yet: what crashed it (see [`crate::crash`]).
    pub(crate) crashed: Option<String>,
    /// Every crash of this run, oldest first.
    pub(crate) crashes: Vec<String>,
    /// The packages the current segment of the run covers (listed, after sharding).
    pub(crate) planned: Vec<String>,
    /// After a crash: the packages of the current segment (reruns stay inside it).
    pub(crate) segment: Option<std::collections::BTreeSet<String>>,
}

impl State<'_> {
    pub(crate) fn line(&mut self, raw: &str) {
        match parse_line(raw) {
            Some(ev) => {
                self.ex.apply(&ev);
                self.events.push(raw.trim_end().to_string());
                self.obs.on_event(&RunEvent::Event(&ev), &self.ex);
            }
            None => {
                if !raw.trim().is_empty() {
                    self.other.push(raw.to_string());
                    self.obs.on_event(&RunEvent::Output(raw), &self.ex);
                }
            }
        }
    }

    fn emit(&mut self, ev: TestEvent) {
        self.line(&ev.to_line());
    }

    /// A problem the run's results must show (summary warnings, console), e.g. a file that could
    /// not be uploaded.
    pub(crate) fn warn(&mut self, text: &str) {
        self.note(&format!("{HARNESS_MARK}warning: {text}"));
        self.warnings.push(text.to_string());
    }

    /// A harness note for the console and `output.txt` (not an event).
    pub(crate) fn note(&mut self, text: &str) {
        tracing::warn!("{text}");
        self.other.push(text.to_string());
        self.obs.on_event(&RunEvent::Output(text), &self.ex);
    }

    /// Records as "not run" the expected root tests that the package's latest run never started.
    pub(crate) fn not_run(&mut self, pkg: &str, expected: &[String]) {
        for e in crate::probe::not_run_events(&self.ex, pkg, expected) {
            self.emit(e);
        }
    }

    pub(crate) fn phase(&mut self, p: &str) {
        self.obs.on_event(&RunEvent::Phase(p), &self.ex);
    }

    pub(crate) fn is_running(&self, pkg: &str) -> bool {
        self.ex
            .package(pkg)
            .is_some_and(|p| p.status == PackageStatus::Running)
    }

    /// Ends a package that got no terminal event, saying why; `elapsed` is its wall time when
    /// known (else the model takes it from the events' times).
    pub(crate) fn close(&mut self, pkg: &str, mark: &str, why: &str, elapsed: Option<Duration>) {
        if !self.is_running(pkg) {
            return;
        }
        self.emit(TestEvent::synth_output(pkg, None, &format!("{mark}{why}")));
        let mut e = TestEvent::synth(Action::Fail, pkg, None);
        e.elapsed = elapsed.map(|d| (d.as_secs_f64() * 1000.0).round() / 1000.0);
        self.emit(e);
    }

    /// Records a package that could not run because of the infrastructure.
    pub(crate) fn errored(&mut self, pkg: &str, why: &str) {
        self.errored_after(pkg, why, None);
    }

    fn errored_after(&mut self, pkg: &str, why: &str, elapsed: Option<Duration>) {
        if !self.is_running(pkg) {
            self.emit(TestEvent::synth(Action::Start, pkg, None));
        }
        self.close(pkg, ERROR_MARK, why, elapsed);
    }

    fn no_test_files(&mut self, pkg: &str) {
        self.emit(TestEvent::synth(Action::Start, pkg, None));
        self.emit(TestEvent::synth_output(
            pkg,
            None,
            &format!("?   \t{pkg}\t[no test files]"),
        ));
        let mut e = TestEvent::synth(Action::Skip, pkg, None);
        e.elapsed = Some(0.0);
        self.emit(e);
    }

    fn build_failed(&mut self, pkg: &str, output: &[String]) {
        for l in output {
            let mut e = TestEvent {
                time: Some(now_rfc3339()),
                action: Action::BuildOutput,
                ..Default::default()
            };
            e.import_path = Some(pkg.to_string());
            e.output = Some(format!("{l}\n"));
            self.emit(e);
        }
        let e = TestEvent {
            time: Some(now_rfc3339()),
            action: Action::BuildFail,
            import_path: Some(pkg.to_string()),
            ..Default::default()
        };
        self.emit(e);
        self.emit(TestEvent::synth(Action::Start, pkg, None));
        self.emit(TestEvent::synth_output(
            pkg,
            None,
            &format!("FAIL\t{pkg} [build failed]"),
        ));
        let mut f = TestEvent::synth(Action::Fail, pkg, None);
        f.failed_build = Some(pkg.to_string());
        self.emit(f);
    }

    /// Applies the outcome of running one package's tests, which took `took` (wall time).
    pub(crate) fn settle(
        &mut self,
        pkg: &str,
        res: Result<ExecOutcome, ExecError>,
        timeout: Duration,
        took: Option<Duration>,
    ) {
        match res {
            Err(ExecError::TargetCrashed { reason }) => self.crashed_under(pkg, &reason, took),
            Err(e) if e.is_target_lost() => {
                let msg = e.to_string();
                self.errored_after(pkg, &msg, took);
                self.lost = Some(msg);
            }
            Err(e) => self.errored_after(pkg, &e.to_string(), took),
            Ok(o) if o.timed_out => self.close(
                pkg,
                TIMEOUT_MARK,
                &format!(
                    "the package ran longer than its timeout of {}s; its process tree was killed",
                    timeout.as_secs()
                ),
                took,
            ),
            Ok(o) if o.cancelled => {
                self.errored_after(pkg, "cancelled by the user (Ctrl-C)", took);
                self.error
                    .get_or_insert_with(|| "cancelled by the user (Ctrl-C)".into());
            }
            Ok(o) => {
                let code = o
                    .exit_code
                    .map_or("a signal".to_string(), |c| format!("code {c}"));
                self.close(
                    pkg,
                    HARNESS_MARK,
                    &format!(
                        "the test process exited with {code} without reporting a package result"
                    ),
                    took,
                );
            }
        }
    }
}

fn cancelled(opts: &RunOptions) -> bool {
    opts.cancel
        .as_ref()
        .is_some_and(|c| c.load(Ordering::SeqCst))
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
fn rerun_flags(base: &GoTestFlags, t: &RerunTarget, trace_log: bool) -> GoTestFlags {
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
    let meta = RunMeta {
        id: String::new(),
        merged_from: Vec::new(),
        suite: opts.suite_name.clone(),
        mode: if mode == RunMode::Guest {
            "guest".into()
        } else {
            "host".into()
        },
        shard: opts.shard.map(|s| s.to_string()),
        started,
        duration_secs: t0.elapsed().as_secs_f64(),
        flags: flags
            .go_test_args()
            .into_iter()
            .chain(flags.go_test_trailer())
            .collect(),
        error: st.lost.clone().or(st.error.clone()),
        warnings: st.warnings.clone(),
        crashes: st.crashes.clone(),
        timings: st.clock.seconds(),
        uploaded_bytes: st.uploaded_bytes,
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

/// With `core_dumps` on a Linux target: a host folder for the run's core files (they move into
/// the results' `dumps/` when written).
fn core_dir(opts: &RunOptions, os: TargetOs, st: &mut State<'_>) -> Option<PathBuf> {
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

fn rel_dir(module: &Path, dir: &Path) -> String {
    let module = module
        .canonicalize()
        .unwrap_or_else(|_| module.to_path_buf());
    let dir = dir.canonicalize().unwrap_or_else(|_| dir.to_path_buf());
    dir.strip_prefix(&module)
        .map(|r| r.to_string_lossy().replace('\\', "/"))
        .unwrap_or_default()
}

fn run_host(
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

    let trace_log = opts.suite.trace_log_on_rerun && os == TargetOs::Windows;
    let rounds = opts.rerun_fails.unwrap_or(opts.suite.rerun_fails);
    for round in 1..=rounds {
        let targets = crate::crash::in_segment(st, rerun_targets(&st.ex));
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
    }
    Ok(())
}

/// More failures than `rerun_max_failures` point at a broken setup, not flakes: reruns would
/// only repeat them (gotestsum's `--rerun-fails-max-failures`). Says so in the output.
fn too_many_to_rerun(opts: &RunOptions, st: &mut State<'_>) -> bool {
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
fn batch_by_name(names: &[String]) -> Vec<Vec<usize>> {
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

/// Whether the module has dependencies and no `vendor` directory of its own.
fn needs_vendor(module: &Path) -> bool {
    !module.join("vendor").exists()
        && std::fs::read_to_string(module.join("go.mod"))
            .is_ok_and(|t| t.lines().any(|l| l.trim_start().starts_with("require")))
}

fn is_git(p: &Path) -> bool {
    p.components().any(|c| c.as_os_str() == ".git")
}

fn run_guest(
    exec: &mut dyn Executor,
    opts: &RunOptions,
    flags: &GoTestFlags,
    st: &mut State<'_>,
) -> Result<(), SuiteError> {
    let os = exec.os();
    let mut f = flags.clone();
    let timeout_s = opts.suite.package_timeout.max(1);
    if f.get("timeout").is_none() {
        f.set("timeout", &format!("{timeout_s}s"));
    }
    let go = host_go(
        opts,
        vec![
            ("GOOS".to_string(), os.goos().to_string()),
            ("GOARCH".to_string(), exec.arch()),
        ],
    );
    // Listing on the host (if it has Go) tells how many packages to expect, which a lost target
    // needs to mark the rest errored; sharding cannot work without it. Vendoring gives an
    // offline guest the module's dependencies. Both run on the host while the source uploads.
    st.phase("uploading");
    let remote = exec.remote_dir(&format!("suite-{}-src", opts.suite_name));
    let vendor_tmp = tempfile::Builder::new()
        .prefix("harness-vendor-")
        .tempdir()
        .map_err(|e| SuiteError::Staging {
            path: std::env::temp_dir(),
            source: e,
        })?;
    let vendor_dir = vendor_tmp.path().join("vendor");
    let source_dir = vendor_tmp.path().join("source");
    let mut stager = Stager::new(&opts.module_dir, os, &|r| !is_git(r));
    stager
        .dir(&opts.module_dir, &source_dir, &is_git)
        .map_err(|e| SuiteError::Staging {
            path: source_dir.clone(),
            source: e,
        })?;
    for w in std::mem::take(&mut stager.warnings) {
        st.warn(&w);
    }
    let want_vendor = opts.suite.vendor && needs_vendor(&opts.module_dir);
    let native_go = host_go(opts, Vec::new());
    let upload_start = Instant::now();
    let (listed, vendored, uploaded, list_end) = std::thread::scope(|s| {
        let host_side = s.spawn(|| {
            let listed = go.list(&opts.suite.packages, &flags.build_args());
            let list_end = Instant::now();
            let vendored = want_vendor.then(|| native_go.vendor(&vendor_dir));
            (listed, vendored, list_end)
        });
        let uploaded = TreeSync::open(exec, &remote).and_then(|mut sync| {
            cas::upload(exec, sync.as_mut(), &source_dir, &remote, &|_| true, true)
        });
        let (listed, vendored, list_end) = host_side
            .join()
            .expect("host-side preparation does not panic");
        (listed, vendored, uploaded, list_end)
    });
    st.clock.span("list", upload_start, list_end);
    let uploaded = uploaded.map(|b| st.uploaded_bytes += b);
    let listed = match listed {
        Ok(l) => Some(select(opts, l)),
        Err(e @ GoError::NoSuchPackage { .. }) => return Err(e.into()),
        Err(_) if opts.shard.is_none() => None,
        Err(_) => return Err(SuiteError::ShardNeedsGo),
    };
    let patterns: Vec<String> = match &listed {
        Some(l) => l.iter().map(|p| p.import_path.clone()).collect(),
        None => opts.suite.packages.clone(),
    };
    if let Some(l) = &listed {
        st.planned = l.iter().map(|p| p.import_path.clone()).collect();
        st.obs
            .on_event(&RunEvent::Planned { packages: l.len() }, &st.ex);
        for p in l {
            let rel = rel_dir(&opts.module_dir, &p.dir);
            st.package_dirs
                .push((p.import_path.clone(), os.join(&remote, &rel)));
        }
    }
    if patterns.is_empty() {
        return Ok(());
    }
    let uploaded = uploaded.and_then(|()| match vendored {
        Some(Ok(true)) => {
            if !f.has_build("mod") {
                f.build.push(("mod".into(), Some("vendor".into())));
            }
            let dest = os.join(&remote, "vendor");
            TreeSync::open(exec, &dest)
                .and_then(|mut sync| {
                    cas::upload(exec, sync.as_mut(), &vendor_dir, &dest, &|_| true, true)
                })
                .map(|b| st.uploaded_bytes += b)
        }
        Some(Err(e)) => {
            let note =
                format!("{HARNESS_MARK}could not vendor the dependencies for the guest: {e}");
            tracing::warn!("{note}");
            st.other.push(note);
            Ok(())
        }
        _ => Ok(()),
    });
    st.clock.span("upload", upload_start, Instant::now());
    if let Err(e) = uploaded {
        if !e.is_crash() {
            let msg = e.to_string();
            for p in &patterns {
                st.errored(p, &msg);
            }
        }
        st.target_error(&e);
        return Ok(());
    }

    st.phase("running");
    let env = test_env(opts);
    let guest_go = opts.suite.guest_go.clone();
    let run_go = |exec: &mut dyn Executor,
                  st: &mut State<'_>,
                  f: &GoTestFlags,
                  pkgs: &[String],
                  budget: Duration| {
        let mut argv = vec![guest_go.clone(), "test".to_string(), "-json".to_string()];
        argv.extend(f.go_test_args());
        argv.extend(pkgs.iter().cloned());
        argv.extend(f.go_test_trailer());
        let req = ExecRequest {
            argv,
            env: env.clone(),
            cwd: Some(remote.clone()),
            timeout: budget,
            cancel: opts.cancel.clone(),
            dump_on_timeout: true,
        };
        let res = exec.run(&req, &mut |_, line| st.line(&String::from_utf8_lossy(line)));
        let started: Vec<String> = st.ex.packages.iter().map(|p| p.name.clone()).collect();
        let unfinished: Vec<String> = started
            .iter()
            .filter(|p| st.is_running(p))
            .cloned()
            .collect();
        match &res {
            Ok(o) if o.exit_code.is_some_and(|c| c != 0) => {
                let failing = st.ex.packages.iter().any(|p| p.has_failures());
                if !failing && unfinished.is_empty() {
                    let tail: Vec<&String> = st.other.iter().rev().take(10).collect();
                    let tail: Vec<String> = tail.into_iter().rev().cloned().collect();
                    st.error.get_or_insert_with(|| {
                        format!(
                            "`go test` exited with code {} without a failing test: {}",
                            o.exit_code.unwrap_or(-1),
                            tail.join(" | ")
                        )
                    });
                }
            }
            _ => {}
        }
        for p in &unfinished {
            st.settle(
                p,
                res.as_ref().map(|o| *o).map_err(clone_exec_error),
                Duration::from_secs(timeout_s),
                None,
            );
        }
        if let Err(e) = &res {
            st.target_error(e);
        }
        let why = match &res {
            // Left for the segment after the crash.
            Err(e) if e.is_crash() => None,
            Err(e) => Some(format!("not run: {e}")),
            Ok(o) if o.timed_out => Some(format!(
                "not run: `go test` exceeded its overall budget of {}s and was killed",
                budget.as_secs()
            )),
            Ok(o) if o.cancelled => Some("not run: cancelled by the user (Ctrl-C)".into()),
            _ => None,
        };
        if let Some(why) = why {
            for p in pkgs {
                if st.ex.package(p).is_none() && !p.contains("...") {
                    st.errored(p, &why);
                }
            }
        }
    };

    let probe_req = |argv: Vec<String>| ExecRequest {
        argv,
        env: env.clone(),
        cwd: Some(remote.clone()),
        timeout: GUEST_BUILD_ALLOWANCE,
        cancel: opts.cancel.clone(),
        dump_on_timeout: false,
    };
    let run_start = Instant::now();
    if opts.targets.is_some() {
        for p in &patterns {
            if stop_reason(opts, st).is_some() {
                break;
            }
            let budget = Duration::from_secs(timeout_s) + GUEST_BUILD_ALLOWANCE;
            let pf = first_run_flags(opts, &f, p);
            let listed = guest_list(
                exec,
                st,
                &probe_req,
                &guest_go,
                &pf,
                std::slice::from_ref(p),
            );
            run_go(exec, st, &pf, std::slice::from_ref(p), budget);
            for (pkg, tests) in listed {
                st.not_run(&pkg, &tests);
            }
        }
    } else {
        let budget =
            Duration::from_secs(timeout_s) * (patterns.len().max(1) as u32) + GUEST_BUILD_ALLOWANCE;
        let listed = guest_list(exec, st, &probe_req, &guest_go, &f, &patterns);
        run_go(exec, st, &f, &patterns, budget);
        for (pkg, tests) in listed {
            st.not_run(&pkg, &tests);
        }
    }
    st.clock.span("run", run_start, Instant::now());

    let trace_log = opts.suite.trace_log_on_rerun && os == TargetOs::Windows;
    let mut defined = BTreeMap::new();
    let rounds = opts.rerun_fails.unwrap_or(opts.suite.rerun_fails);
    for round in 1..=rounds {
        let targets = crate::crash::in_segment(st, rerun_targets(&st.ex));
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
        for t in &targets {
            if stop_reason(opts, st).is_some() {
                break;
            }
            let mut rf = rerun_flags(&f, t, trace_log);
            guest_keep_defined(
                exec,
                st,
                &probe_req,
                &guest_go,
                &t.package,
                &mut rf,
                &mut defined,
            );
            let rerun_start = Instant::now();
            run_go(
                exec,
                st,
                &rf,
                std::slice::from_ref(&t.package),
                Duration::from_secs(timeout_s) + GUEST_BUILD_ALLOWANCE,
            );
            st.clock.span("rerun", rerun_start, Instant::now());
            if let Some(tests) = &t.tests {
                st.not_run(&t.package, tests);
            }
        }
    }
    Ok(())
}

fn clone_exec_error(e: &ExecError) -> ExecError {
    match e {
        ExecError::TargetLost { detail } => ExecError::TargetLost {
            detail: detail.clone(),
        },
        ExecError::TargetCrashed { reason } => ExecError::TargetCrashed {
            reason: reason.clone(),
        },
        other => ExecError::Spawn {
            program: "go test".into(),
            detail: other.to_string(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batches_keep_binary_names_distinct() {
        let names: Vec<String> = ["a.test", "b.test", "a.test", "c.test", "a.test"]
            .map(String::from)
            .to_vec();
        assert_eq!(batch_by_name(&names), vec![vec![0, 1, 3], vec![2], vec![4]]);
        assert!(batch_by_name(&[]).is_empty());
    }
}
