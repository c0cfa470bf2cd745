//! The suites phase: the configured suites run on an executor, a results folder written for
//! each. `harness test` runs it on its own, `harness run` after `up`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use suites::model::Execution;
use suites::{Executor, RunEvent, RunOptions, Shard};

use crate::context::Context;
use crate::render::{Event, Output};

/// Which suites to run, how, and where their results go.
#[derive(Debug, Clone, Default)]
pub struct SuitesRequest {
    /// Suite names (empty: every configured suite).
    pub suites: Vec<String>,
    pub sel: Selection,
    /// Package durations that balance the shards.
    pub durations: Option<BTreeMap<String, f64>>,
    /// Results folder (default: a new one under the results dir); with several suites, one
    /// subfolder per suite.
    pub out: Option<PathBuf>,
}

impl SuitesRequest {
    /// The suites to run: those asked for, else every configured one.
    pub fn names(&self, ctx: &Context) -> Vec<String> {
        if self.suites.is_empty() {
            ctx.config.suites.keys().cloned().collect()
        } else {
            self.suites.clone()
        }
    }
}

/// Which tests, how often, which shard: the flags `harness test` and `harness run` share.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct Selection {
    /// Run only tests matching this regular expression (replaces the suite's `-run`).
    #[arg(long, value_name = "REGEX")]
    pub run: Option<String>,
    /// Run each test N times (replaces the suite's `-count`).
    #[arg(long, value_name = "N")]
    pub count: Option<u32>,
    /// Rerun failed tests up to N times (replaces the suite's `rerun_fails`).
    #[arg(long, value_name = "N")]
    pub rerun_fails: Option<u32>,
    /// Run the I-th of N deterministic shards of the packages, e.g. `2/4`.
    #[arg(long, value_name = "I/N")]
    pub shard: Option<Shard>,
    /// Extra `go test` arguments, after `--`.
    #[arg(last = true, value_name = "GO TEST ARGS")]
    pub extra: Vec<String>,
}

/// The run options of the configured suite `name` (its module resolved, `~` expanded), with the
/// selection's flags and Ctrl-C applied.
pub fn suite_options(ctx: &Context, name: &str, sel: &Selection) -> anyhow::Result<RunOptions> {
    let suite = ctx
        .config
        .suites
        .get(name)
        .with_context(|| format!("no suite named `{name}`"))?
        .clone();
    let module = suite_module(name, &suite)?;
    let mut opts = RunOptions::new(name, suite, &module);
    opts.run = sel.run.clone();
    opts.count = sel.count;
    opts.rerun_fails = sel.rerun_fails;
    opts.shard = sel.shard;
    opts.extra_args = sel.extra.clone();
    opts.cancel = Some(ctx.cancel.clone());
    Ok(opts)
}

/// The Go module of suite `name`: its `path` (`~` expanded), else the current directory.
pub fn suite_module(name: &str, suite: &suites::SuiteConfig) -> anyhow::Result<PathBuf> {
    suites::resolve_module_dir(
        suite
            .path
            .as_deref()
            .map(crate::context::expand_home)
            .as_deref(),
    )
    .with_context(|| format!("suite `{name}`"))
}

/// The executor for this run: this host with `--local`, else the configured guest over SSH,
/// with provenance from what harness installed there.
pub fn executor(
    ctx: &Context,
    local: bool,
) -> anyhow::Result<(Box<dyn Executor>, suites::Provenance)> {
    let mut prov = suites::Provenance {
        harness_version: env!("CARGO_PKG_VERSION").to_string(),
        ..Default::default()
    };
    if local {
        prov.guest_os = Some(format!("{} (local host)", std::env::consts::OS));
        let dir = ctx.paths.state.join("local-target");
        return Ok((Box::new(suites::LocalExecutor::new(dir)), prov));
    }
    let session = crate::guest::session(ctx, false, std::time::Duration::from_secs(60))?;
    crate::guest::fill_provenance(ctx, &mut prov);
    Ok((Box::new(crate::guest::SessionExecutor::new(session)), prov))
}

/// Turns a suite's run events into its live status line and notes for the renderer (a
/// spinner on a terminal, a ticker line every `progress_interval` seconds in a log), with the
/// test output to stream when verbose.
pub struct Progress {
    out: Output,
    planned: Option<usize>,
    phase: String,
}

impl Progress {
    fn line(&self, ex: &Execution) -> String {
        let t = ex.totals();
        // Packages without test files count neither in the total nor as done.
        let total = self.planned.map_or("?".to_string(), |n| {
            (n - t.packages_no_tests.min(n)).to_string()
        });
        let running = ex
            .running_test()
            .map(|(p, t)| format!(" · running {t} ({p})"))
            .unwrap_or_default();
        format!(
            "packages {}/{total} · {}{running}",
            ex.packages_done() - t.packages_no_tests,
            t.counts()
        )
    }

    fn show(&self, msg: String) {
        self.out.emit(&Event::SuiteStatus {
            phase: &self.phase,
            status: &msg,
        });
    }
}

impl Drop for Progress {
    /// The suite is over, also when it failed.
    fn drop(&mut self) {
        self.out.emit(&Event::SuiteFinished);
    }
}

pub fn durations(dir: &Path) -> anyhow::Result<std::collections::BTreeMap<String, f64>> {
    let s = suites::results::read_summary(dir)?;
    Ok(s.packages
        .into_iter()
        .map(|p| (p.name, p.elapsed))
        .collect())
}

/// One suite's results, as written to its folder.
pub struct SuiteResult {
    pub name: String,
    pub module_dir: PathBuf,
    pub record: suites::RunRecord,
    pub written: suites::Written,
}

/// The run's exit code: the worst of the suites' (0 passed, 1 test failures, 2 infrastructure).
pub fn worst_exit(results: &[SuiteResult]) -> u8 {
    results
        .iter()
        .map(|r| r.written.summary.exit_code)
        .max()
        .unwrap_or(0)
}

/// Runs the selected suites on `exec` and writes a results folder for each.
pub fn run_suites(
    ctx: &Context,
    exec: &mut dyn Executor,
    base_prov: &suites::Provenance,
    req: &SuitesRequest,
) -> anyhow::Result<Vec<SuiteResult>> {
    let names = req.names(ctx);
    if names.is_empty() {
        anyhow::bail!("no suites configured; add a [suites.NAME] section to the config");
    }
    for n in &names {
        if !ctx.config.suites.contains_key(n) {
            let known: Vec<&String> = ctx.config.suites.keys().collect();
            anyhow::bail!("no suite named `{n}`; configured suites: {known:?}");
        }
    }
    let shard_durations = req.durations.clone();
    let mut results = Vec::new();
    for name in &names {
        let mut opts = suite_options(ctx, name, &req.sel)?;
        opts.shard_durations = shard_durations.clone();
        let module = opts.module_dir.clone();
        if let Some(v) = &base_prov.efw_version
            && !opts.suite.env.contains_key("CI_EFW_VERSION")
        {
            opts.extra_env.push(("CI_EFW_VERSION".into(), v.clone()));
        }
        let mut prov = base_prov.clone();
        prov.library_commit = suites::gotool::git_commit(&module);
        let host_go = suites::gotool::HostGo {
            go: opts.host_go.clone(),
            dir: module.clone(),
            env: Vec::new(),
            cancel: None,
        };
        if let Some(v) = host_go.version() {
            prov.extra.insert("host_go".into(), v);
        }

        let out = ctx.output().clone();
        out.emit(&Event::SuiteStarted {
            suite: name,
            interval: std::time::Duration::from_secs(opts.suite.progress_interval.max(1)),
        });
        let mut progress = Progress {
            out,
            planned: None,
            phase: "starting".into(),
        };
        let record = suites::run(exec, &opts, &mut progress)
            .with_context(|| format!("running suite `{name}`"))?;
        drop(progress);

        let dir = match &req.out {
            Some(d) if names.len() > 1 => d.join(name),
            Some(d) => d.clone(),
            None => suites::new_run_dir(&ctx.paths.results, name)?,
        };
        let written = suites::write(&dir, &record, &prov)
            .with_context(|| format!("writing results to {}", dir.display()))?;
        record_history(ctx, &written.dir);
        results.push(SuiteResult {
            name: name.clone(),
            module_dir: module,
            record,
            written,
        });
    }
    Ok(results)
}

impl suites::Observer for Progress {
    fn on_event(&mut self, e: &RunEvent<'_>, ex: &Execution) {
        match e {
            RunEvent::Phase(p) => {
                self.phase = p.to_string();
                self.show(if ex.packages.is_empty() {
                    format!("{p}…")
                } else {
                    self.line(ex)
                });
            }
            RunEvent::Planned { packages } => self.planned = Some(*packages),
            RunEvent::Built {
                done,
                total,
                package,
                ok,
            } => {
                if !ok {
                    let note = format!("build failed: {package}");
                    self.out.emit(&Event::SuiteNote(&note));
                }
                self.show(format!(
                    "built {done}/{total} test binaries (last: {package})"
                ));
            }
            RunEvent::Rerun { round, targets } => {
                let n: usize = targets
                    .iter()
                    .map(|t| t.tests.as_ref().map_or(1, Vec::len))
                    .sum();
                let note = format!(
                    "rerun {round}: {n} failed test(s) in {} package(s)",
                    targets.len()
                );
                self.out.emit(&Event::SuiteNote(&note));
            }
            RunEvent::Event(ev) => {
                if let Some(o) = &ev.output {
                    self.out.emit(&Event::TestOutput(o));
                }
                if ev.action.is_terminal() || ev.action == suites::event::Action::Run {
                    self.show(self.line(ex));
                }
            }
            RunEvent::Output(l) => self.out.emit(&Event::TestOutput(&format!("{l}\n"))),
        }
    }
}

/// Prints each suite's console summary (or one JSON document).
pub fn print_results(ctx: &Context, results: &[SuiteResult]) -> anyhow::Result<()> {
    if ctx.json {
        let docs: Vec<_> = results
            .iter()
            .map(|r| serde_json::json!({"suite": r.name, "dir": r.written.dir, "summary": r.written.summary}))
            .collect();
        println!(
            "{}",
            serde_json::to_string_pretty(
                &serde_json::json!({"exit_code": worst_exit(results), "suites": docs})
            )?
        );
    } else {
        for r in results {
            print!(
                "{}",
                suites::render_console(&r.record.execution, &r.written.summary)
            );
            let s = &r.written.summary;
            if !s.timings.is_empty() {
                println!(
                    "timings: {}",
                    suites::timing::render(&s.timings, s.uploaded_bytes)
                );
            }
            println!("results: {}", r.written.dir.display());
            println!("report: {}", r.written.dir.join("index.html").display());
        }
    }
    Ok(())
}

/// Records a results folder in the history database and writes its `history.html`, unless
/// `[report] history = false`. A failure is a warning: the run's results stand without it.
pub fn record_history(ctx: &Context, dir: &Path) {
    if !ctx.config.report.history {
        return;
    }
    let db = &ctx.paths.history;
    match suites::history::record_with_page(db, dir, ctx.config.report.history_runs) {
        Ok(i) => {
            tracing::info!(run = %i.run_id, db = %db.display(), "recorded in the history database")
        }
        Err(e) => {
            tracing::warn!("not recorded in the history database: {e}");
            if !ctx.json {
                eprintln!(
                    "warning: the run was not recorded in the history database ({e}); its results folder is complete; set [report] history = false to stop recording"
                );
            }
        }
    }
}
