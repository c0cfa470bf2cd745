//! `harness report`: work on results folders after the fact, and on the history database.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use suites::history::{self, Filter, History};

use crate::context::Context;
use crate::pipeline::record_history;

/// `harness report` subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum ReportCmd {
    /// Merge the results folders of shards into one, equal to an unsharded run. Exits like
    /// `harness test` would have for the merged result (0 passed, 1 failures, 2 errors).
    Merge(MergeArgs),
    /// What the history database says: tests newly failing and newly passing, each test's flaky
    /// rate, the slowest tests and their trend.
    History(HistoryArgs),
    /// Add existing results folders to the history database (a folder already there is
    /// skipped, so importing twice counts nothing twice).
    Import(ImportArgs),
}

/// Arguments of `harness report merge`.
#[derive(Debug, clap::Args)]
pub struct MergeArgs {
    /// The shards' results folders.
    #[arg(required = true, value_name = "DIR")]
    pub dirs: Vec<PathBuf>,
    /// Where to write the merged folder.
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
}

/// Arguments of `harness report history`.
#[derive(Debug, clap::Args)]
pub struct HistoryArgs {
    /// Only runs that started this long ago or later: a whole number and a unit (s, m, h, d, w),
    /// e.g. 14d.
    #[arg(long, value_name = "AGE")]
    pub since: Option<String>,
    /// Only this suite's runs.
    #[arg(long, value_name = "NAME")]
    pub suite: Option<String>,
    /// At most this many runs (the newest).
    #[arg(long, value_name = "N")]
    pub last: Option<usize>,
    /// How many of the slowest tests to list.
    #[arg(long, value_name = "N", default_value_t = 10)]
    pub slowest: usize,
    /// Also write the history page (status over the runs, durations) to this file.
    #[arg(long, value_name = "FILE")]
    pub html: Option<PathBuf>,
}

/// Arguments of `harness report import`.
#[derive(Debug, clap::Args)]
pub struct ImportArgs {
    /// Results folders, or folders of results folders (e.g. the results base).
    #[arg(required = true, value_name = "DIR")]
    pub dirs: Vec<PathBuf>,
}

pub fn run(ctx: &Context, cmd: &ReportCmd) -> anyhow::Result<ExitCode> {
    match cmd {
        ReportCmd::Merge(a) => merge(ctx, a),
        ReportCmd::History(a) => show_history(ctx, a),
        ReportCmd::Import(a) => import(ctx, a),
    }
}

fn merge(ctx: &Context, a: &MergeArgs) -> anyhow::Result<ExitCode> {
    let w = suites::merge(&a.dirs, &a.out).with_context(|| {
        format!(
            "merging {} results folders into {}",
            a.dirs.len(),
            a.out.display()
        )
    })?;
    record_history(ctx, &w.dir);
    let s = &w.summary;
    if ctx.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({"dir": w.dir, "summary": s}))?
        );
    } else {
        let t = &s.totals;
        println!(
            "merged {} folders: {:?}: {} tests in {} packages, {}, {} flaky",
            a.dirs.len(),
            s.verdict,
            t.tests,
            t.packages,
            t.counts(),
            t.flaky
        );
        println!("results: {}", w.dir.display());
        println!("report: {}", w.dir.join("index.html").display());
    }
    Ok(ExitCode::from(s.exit_code))
}

fn open(ctx: &Context) -> anyhow::Result<History> {
    History::open(&ctx.paths.history).context("opening the history database")
}

fn show_history(ctx: &Context, a: &HistoryArgs) -> anyhow::Result<ExitCode> {
    let since_secs = a.since.as_deref().map(history::parse_since).transpose()?;
    let h = open(ctx)?;
    let filter = Filter {
        since_secs,
        suite: a.suite.clone(),
        last_runs: a.last,
        now_unix: history::now_unix(),
    };
    let w = h.window(&filter).context("reading the history database")?;
    let r = history::report(&w, a.slowest);
    if let Some(f) = &a.html {
        let title = a.suite.as_deref().unwrap_or("all suites");
        std::fs::write(f, suites::html::render_history(&w, &r, title))
            .with_context(|| format!("writing {}", f.display()))?;
    }
    if ctx.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({
                "database": h.path(),
                "since": a.since,
                "suite": a.suite,
                "report": r,
            }))?
        );
    } else {
        let mut window = match &a.since {
            Some(s) => format!("in the last {s}"),
            None => "recorded".to_string(),
        };
        if let Some(s) = &a.suite {
            window.push_str(&format!(" of suite {s}"));
        }
        print!("{}", history::render_text(&r, &window));
        if let Some(f) = &a.html {
            println!("history page: {}", f.display());
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn import(ctx: &Context, a: &ImportArgs) -> anyhow::Result<ExitCode> {
    let mut h = open(ctx)?;
    let mut done = Vec::new();
    for d in &a.dirs {
        let folders = history::results_folders(d)
            .with_context(|| format!("looking for results folders in {}", d.display()))?;
        if folders.is_empty() {
            anyhow::bail!(
                "{} holds no results folder (no summary.json in it or its subfolders); pass folders written by `harness test` or `harness report merge`",
                d.display()
            );
        }
        for f in folders {
            let i = h
                .import_dir(&f)
                .with_context(|| format!("importing {}", f.display()))?;
            if !ctx.json {
                let what = match (&i.superseded_by, i.new) {
                    (_, false) => "already recorded".to_string(),
                    (Some(m), true) => format!("added; a shard of merged run {m}"),
                    (None, true) => format!("added, {} rows", i.rows),
                };
                println!("{}: run {} ({}): {what}", f.display(), i.run_id, i.suite);
            }
            done.push(i);
        }
    }
    if ctx.json {
        println!(
            "{}",
            serde_json::to_string_pretty(
                &serde_json::json!({"database": h.path(), "imported": done})
            )?
        );
    } else {
        let new = done.iter().filter(|i| i.new).count();
        println!(
            "{new} new run(s), {} already recorded; database: {}",
            done.len() - new,
            h.path().display()
        );
    }
    Ok(ExitCode::SUCCESS)
}
