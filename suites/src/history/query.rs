//! Reading a window of runs back, and what `harness report history` says about it (pure).

use std::collections::BTreeMap;
use std::fmt::Write as _;

use rusqlite::params;
use serde::Serialize;

use super::{History, HistoryError};

/// Which runs to look at.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    /// Only runs that started at most this many seconds before `now_unix`.
    pub since_secs: Option<i64>,
    /// Only this suite's runs.
    pub suite: Option<String>,
    /// At most this many runs (the newest).
    pub last_runs: Option<usize>,
    /// The current time (seconds since the epoch).
    pub now_unix: i64,
}

/// A run in a window.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RunInfo {
    /// Run id.
    pub id: String,
    /// Suite.
    pub suite: String,
    /// RFC 3339 start.
    pub started: String,
    /// Wall-clock seconds.
    pub duration_secs: f64,
    /// `passed`, `failed` or `errored`.
    pub verdict: String,
    /// `I/N` when a lone shard.
    pub shard: Option<String>,
    /// harness's version.
    pub harness_version: String,
    /// The efW version.
    pub efw_version: Option<String>,
    /// The efW commit.
    pub efw_sha: Option<String>,
}

/// One test (or package, with an empty test name) in one run.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Cell {
    /// `pass`, `fail`, `skip`, `not run`, `running`.
    pub status: &'static str,
    /// Failed, then passed on rerun.
    pub flaky: bool,
    /// Attempts.
    pub attempts: u32,
    /// Seconds, longest attempt.
    pub elapsed: f64,
}

/// One test across the window's runs.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TestSeries {
    /// Import path.
    pub package: String,
    /// Test name; empty for the package as a whole.
    pub test: String,
    /// One per run of the window, oldest first; `None` where the run did not have it.
    pub cells: Vec<Option<Cell>>,
}

impl TestSeries {
    /// `TestName (package)` or `package (package level)`.
    pub fn label(&self) -> String {
        label(&self.package, &self.test)
    }

    /// `(run index, passed)` of the runs where it passed or failed.
    fn decisive(&self) -> Vec<(usize, bool)> {
        self.cells
            .iter()
            .enumerate()
            .filter_map(|(i, c)| match c.map(|c| c.status) {
                Some("pass") => Some((i, true)),
                Some("fail") => Some((i, false)),
                _ => None,
            })
            .collect()
    }
}

/// Runs, oldest first, and every test seen in them.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Window {
    /// The runs.
    pub runs: Vec<RunInfo>,
    /// Tests, by package then name.
    pub tests: Vec<TestSeries>,
}

const STATUSES: [&str; 5] = ["pass", "fail", "skip", "not run", "running"];

impl History {
    /// The runs `f` selects (shards that a merged run stands for are left out) and their tests.
    pub fn window(&self, f: &Filter) -> Result<Window, HistoryError> {
        let mut stmt = self
            .conn
            .prepare(
                "SELECT id, suite, started, duration_secs, verdict, shard, harness_version, \
                 efw_version, efw_sha FROM runs WHERE superseded_by IS NULL \
                 AND (?1 IS NULL OR started_unix >= ?1) AND (?2 IS NULL OR suite = ?2) \
                 ORDER BY started_unix DESC, started DESC, id DESC LIMIT ?3",
            )
            .map_err(self.err("reading runs"))?;
        let since = f.since_secs.map(|s| f.now_unix - s);
        let limit = f.last_runs.map_or(-1, |n| n as i64);
        let mut runs: Vec<RunInfo> = stmt
            .query_map(params![since, f.suite, limit], |r| {
                Ok(RunInfo {
                    id: r.get(0)?,
                    suite: r.get(1)?,
                    started: r.get(2)?,
                    duration_secs: r.get(3)?,
                    verdict: r.get(4)?,
                    shard: r.get(5)?,
                    harness_version: r.get(6)?,
                    efw_version: r.get(7)?,
                    efw_sha: r.get(8)?,
                })
            })
            .and_then(|rows| rows.collect())
            .map_err(self.err("reading runs"))?;
        runs.reverse();
        let mut tests: BTreeMap<(String, String), Vec<Option<Cell>>> = BTreeMap::new();
        let mut stmt = self
            .conn
            .prepare(
                "SELECT package, test, status, flaky, attempts, elapsed FROM results \
                 WHERE run_id = ?1",
            )
            .map_err(self.err("reading results"))?;
        for (i, run) in runs.iter().enumerate() {
            let rows = stmt
                .query_map(params![run.id], |r| {
                    let status: String = r.get(2)?;
                    Ok((
                        (r.get::<_, String>(0)?, r.get::<_, String>(1)?),
                        Cell {
                            status: STATUSES
                                .iter()
                                .find(|s| **s == status)
                                .copied()
                                .unwrap_or("running"),
                            flaky: r.get(3)?,
                            attempts: r.get(4)?,
                            elapsed: r.get(5)?,
                        },
                    ))
                })
                .and_then(|rows| rows.collect::<Result<Vec<_>, _>>())
                .map_err(self.err("reading results"))?;
            for (key, cell) in rows {
                tests.entry(key).or_insert_with(|| vec![None; runs.len()])[i] = Some(cell);
            }
        }
        Ok(Window {
            runs,
            tests: tests
                .into_iter()
                .map(|((package, test), cells)| TestSeries {
                    package,
                    test,
                    cells,
                })
                .collect(),
        })
    }
}

/// A run, as a report names it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RunRef {
    /// Run id.
    pub id: String,
    /// RFC 3339 start.
    pub started: String,
    /// The efW version it ran against.
    pub efw_version: Option<String>,
}

/// A test whose status changed and stayed changed.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Change {
    /// Import path.
    pub package: String,
    /// Test name; empty for the package as a whole.
    pub test: String,
    /// The first run of the new status.
    pub since: RunRef,
    /// The last run with the old status.
    pub before: RunRef,
    /// Runs in a row with the new status (up to the newest run that ran it).
    pub streak: usize,
}

/// How often a test was flaky.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FlakyRate {
    /// Import path.
    pub package: String,
    /// Test name.
    pub test: String,
    /// Runs in which it passed or failed.
    pub runs: usize,
    /// Runs in which it failed and then passed on rerun.
    pub flaky_runs: usize,
    /// Runs in which it failed in the end.
    pub failed_runs: usize,
    /// `flaky_runs / runs`.
    pub rate: f64,
}

/// A slow test and its trend.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Slow {
    /// Import path.
    pub package: String,
    /// Test name.
    pub test: String,
    /// Seconds in the newest run that ran it.
    pub latest_secs: f64,
    /// Median seconds over the earlier runs (none when it ran only once).
    pub earlier_median_secs: Option<f64>,
    /// `latest / earlier median - 1`, in percent.
    pub trend_pct: Option<f64>,
    /// Seconds in each run that ran it, oldest first.
    pub series: Vec<f64>,
}

/// What `harness report history` shows.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Report {
    /// Runs looked at, oldest first.
    pub runs: Vec<RunInfo>,
    /// Tests that passed before and fail now.
    pub newly_failing: Vec<Change>,
    /// Tests that failed before and pass now.
    pub newly_passing: Vec<Change>,
    /// Tests that were flaky at least once, most often first.
    pub flaky: Vec<FlakyRate>,
    /// The slowest tests of the newest runs.
    pub slowest: Vec<Slow>,
}

fn run_ref(r: &RunInfo) -> RunRef {
    RunRef {
        id: r.id.clone(),
        started: r.started.clone(),
        efw_version: r.efw_version.clone(),
    }
}

/// A status change that stuck: the newest decisive status differs from an earlier one.
fn change(w: &Window, t: &TestSeries, now_passing: bool) -> Option<Change> {
    let d = t.decisive();
    let &(_, last) = d.last()?;
    if last != now_passing {
        return None;
    }
    let streak = d.iter().rev().take_while(|(_, p)| *p == last).count();
    let before = d.len().checked_sub(streak + 1)?;
    Some(Change {
        package: t.package.clone(),
        test: t.test.clone(),
        since: run_ref(&w.runs[d[before + 1].0]),
        before: run_ref(&w.runs[d[before].0]),
        streak,
    })
}

fn median(v: &mut [f64]) -> Option<f64> {
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let m = v.len() / 2;
    Some(if v.len().is_multiple_of(2) {
        (v[m - 1] + v[m]) / 2.0
    } else {
        v[m]
    })
}

fn slow(t: &TestSeries) -> Option<Slow> {
    let series: Vec<f64> = t
        .cells
        .iter()
        .flatten()
        .filter(|c| matches!(c.status, "pass" | "fail"))
        .map(|c| c.elapsed)
        .collect();
    // A test that never took measurable time is not "slow".
    if !series.iter().any(|s| *s > 0.0) {
        return None;
    }
    let (&latest, earlier) = series.split_last()?;
    let earlier_median = median(&mut earlier.to_vec());
    Some(Slow {
        package: t.package.clone(),
        test: t.test.clone(),
        latest_secs: latest,
        earlier_median_secs: earlier_median,
        trend_pct: earlier_median
            .filter(|m| *m > 0.0)
            .map(|m| (latest / m - 1.0) * 100.0),
        series,
    })
}

/// Newly failing and passing tests, flaky rates and the `n_slowest` slowest tests of a window.
pub fn report(w: &Window, n_slowest: usize) -> Report {
    let mut flaky = Vec::new();
    let mut slowest = Vec::new();
    for t in &w.tests {
        if t.test.is_empty() {
            continue;
        }
        let ran: Vec<&Cell> = t
            .cells
            .iter()
            .flatten()
            .filter(|c| matches!(c.status, "pass" | "fail"))
            .collect();
        let flaky_runs = ran.iter().filter(|c| c.flaky).count();
        if flaky_runs > 0 {
            flaky.push(FlakyRate {
                package: t.package.clone(),
                test: t.test.clone(),
                runs: ran.len(),
                flaky_runs,
                failed_runs: ran.iter().filter(|c| c.status == "fail").count(),
                rate: flaky_runs as f64 / ran.len() as f64,
            });
        }
        slowest.extend(slow(t));
    }
    flaky.sort_by(|a, b| {
        b.rate
            .total_cmp(&a.rate)
            .then(b.flaky_runs.cmp(&a.flaky_runs))
            .then_with(|| (&a.package, &a.test).cmp(&(&b.package, &b.test)))
    });
    slowest.sort_by(|a, b| {
        b.latest_secs
            .total_cmp(&a.latest_secs)
            .then_with(|| (&a.package, &a.test).cmp(&(&b.package, &b.test)))
    });
    slowest.truncate(n_slowest);
    Report {
        runs: w.runs.clone(),
        newly_failing: w.tests.iter().filter_map(|t| change(w, t, false)).collect(),
        newly_passing: w.tests.iter().filter_map(|t| change(w, t, true)).collect(),
        flaky,
        slowest,
    }
}

/// `TestName (package)` or `package (package level)`.
pub fn label(package: &str, test: &str) -> String {
    if test.is_empty() {
        format!("{package} (package level)")
    } else {
        format!("{test} ({package})")
    }
}

fn run_text(r: &RunRef) -> String {
    match &r.efw_version {
        Some(v) => format!("{} (efW {v})", r.started),
        None => r.started.clone(),
    }
}

/// The text `harness report history` prints.
pub fn render_text(r: &Report, window: &str) -> String {
    let mut o = String::new();
    let (Some(first), Some(last)) = (r.runs.first(), r.runs.last()) else {
        let _ = writeln!(
            o,
            "No runs recorded {window}. Runs are recorded by `harness test` and `harness report merge`; add old results folders with `harness report import DIR…`."
        );
        return o;
    };
    let _ = writeln!(
        o,
        "{} runs {window}, {} to {}",
        r.runs.len(),
        first.started,
        last.started
    );
    for (title, list) in [
        ("Newly failing", &r.newly_failing),
        ("Newly passing", &r.newly_passing),
    ] {
        let _ = writeln!(o, "{title}: {}", list.len());
        for c in list {
            let _ = writeln!(
                o,
                "    {}: {} run(s) in a row since {}; before: {}",
                label(&c.package, &c.test),
                c.streak,
                run_text(&c.since),
                run_text(&c.before)
            );
        }
    }
    let _ = writeln!(
        o,
        "Flaky (failed, then passed on rerun): {} test(s)",
        r.flaky.len()
    );
    for f in &r.flaky {
        let _ = writeln!(
            o,
            "    {:>5.1}%  flaky in {}/{} runs, failed in {}  {}",
            f.rate * 100.0,
            f.flaky_runs,
            f.runs,
            f.failed_runs,
            label(&f.package, &f.test)
        );
    }
    let _ = writeln!(o, "Slowest (newest run; trend against the earlier median):");
    for s in &r.slowest {
        let trend = match (s.earlier_median_secs, s.trend_pct) {
            (Some(m), Some(p)) => format!("{p:+.0}% vs {m:.2}s"),
            (Some(m), None) => format!("was {m:.2}s"),
            _ => "first run".into(),
        };
        let _ = writeln!(
            o,
            "    {:>8.2}s  {:<18} {}",
            s.latest_secs,
            trend,
            label(&s.package, &s.test)
        );
    }
    o
}
