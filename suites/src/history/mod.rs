//! The history database: every run's results in SQLite, one row per test per run, so that
//! `harness report history` can say what newly fails or passes, how flaky each test is and how
//! the slowest tests trend.
//!
//! Runs are keyed by their run id ([`crate::results::folder_run_id`]): recording or importing a
//! results folder twice changes nothing. A merged run (`harness report merge`) supersedes the
//! shard runs it was made of, in whichever order they arrive, so a test is never counted twice.
//! Each package also gets a row with an empty test name: the package outside its tests (`fail`
//! when it did not build, or failed with no failing test to blame), so that a package that stops
//! building shows as newly failing.

mod query;
mod since;
#[cfg(test)]
mod tests;

use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::{Connection, OptionalExtension as _, params};

use crate::event::TestEvent;
use crate::model::{Execution, Outcome, PackageStatus};
use crate::results::{self, ResultsError};
use crate::summary::Summary;

pub use query::{
    Cell, Change, Filter, FlakyRate, Report, RunInfo, RunRef, Slow, TestSeries, Window, label,
    render_text, report,
};
pub use since::parse_since;

/// The schema version this code writes (`PRAGMA user_version`).
const SCHEMA_VERSION: i64 = 1;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS runs (
    id TEXT PRIMARY KEY,
    suite TEXT NOT NULL,
    started TEXT NOT NULL,
    started_unix INTEGER NOT NULL,
    duration_secs REAL NOT NULL,
    verdict TEXT NOT NULL,
    mode TEXT NOT NULL,
    shard TEXT,
    harness_version TEXT NOT NULL,
    efw_source TEXT,
    efw_run_id TEXT,
    efw_sha TEXT,
    efw_version TEXT,
    guest_os TEXT,
    guest_build TEXT,
    library_commit TEXT,
    source_dir TEXT NOT NULL,
    superseded_by TEXT,
    recorded_at INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS runs_started ON runs(started_unix);
CREATE TABLE IF NOT EXISTS run_parts (
    run_id TEXT NOT NULL,
    part_id TEXT NOT NULL,
    PRIMARY KEY (run_id, part_id)
);
CREATE TABLE IF NOT EXISTS results (
    run_id TEXT NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
    package TEXT NOT NULL,
    test TEXT NOT NULL,
    status TEXT NOT NULL,
    flaky INTEGER NOT NULL,
    attempts INTEGER NOT NULL,
    elapsed REAL NOT NULL,
    PRIMARY KEY (run_id, package, test)
);
CREATE INDEX IF NOT EXISTS results_test ON results(package, test);
";

/// A problem with the history database.
#[derive(Debug, thiserror::Error)]
pub enum HistoryError {
    /// SQLite failed.
    #[error(
        "history database {path}: {action}: {source}; if the file is damaged, move it away (a new one is made) and import old results with `harness report import`"
    )]
    Sqlite {
        /// The database file.
        path: PathBuf,
        /// What was being done.
        action: &'static str,
        /// Why.
        #[source]
        source: rusqlite::Error,
    },
    /// Made by a newer harness.
    #[error(
        "history database {path} has schema version {found}, newer than this harness knows ({SCHEMA_VERSION}); use a newer harness or another [paths] history file"
    )]
    TooNew {
        /// The database file.
        path: PathBuf,
        /// Its version.
        found: i64,
    },
    /// Creating the database's folder, or listing a folder to import, failed.
    #[error("{path}: {source}")]
    Io {
        /// The folder.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A results folder could not be read.
    #[error(transparent)]
    Results(#[from] ResultsError),
    /// A `--since` value that is not a duration.
    #[error(
        "--since {input:?} is not a duration: {why}; write a whole number and a unit: 90m, 12h, 14d or 2w"
    )]
    BadSince {
        /// What was given.
        input: String,
        /// What is wrong with it.
        why: &'static str,
    },
}

/// What recording or importing one results folder did.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Imported {
    /// The folder.
    pub dir: PathBuf,
    /// Its run id.
    pub run_id: String,
    /// The suite.
    pub suite: String,
    /// Result rows it holds (tests, plus one per package).
    pub rows: usize,
    /// False when the run was already in the database (nothing was changed).
    pub new: bool,
    /// The merged run that stands for this one, when it is a shard of one.
    pub superseded_by: Option<String>,
}

/// An open history database.
#[derive(Debug)]
pub struct History {
    conn: Connection,
    path: PathBuf,
}

/// One result row: `(package, test, status, flaky, attempts, elapsed)`.
type Row = (String, String, &'static str, bool, usize, f64);

/// How a test or package ended, as stored.
pub fn status_word(o: Outcome) -> &'static str {
    match o {
        Outcome::Pass => "pass",
        Outcome::Fail => "fail",
        Outcome::Skip => "skip",
        Outcome::Running => "running",
        Outcome::NotRun => "not run",
    }
}

fn rows_of(ex: &Execution) -> Vec<Row> {
    let mut rows = Vec::new();
    for p in &ex.packages {
        // The package outside its tests: did it build, start and end without a failure that
        // no test accounts for (TestMain, init panic, crash, lost target)?
        let status = if p.failed_without_test() || p.error.is_some() {
            "fail"
        } else if p.status == PackageStatus::Running {
            "running"
        } else if p.has_no_test_files() {
            "skip"
        } else {
            "pass"
        };
        rows.push((
            p.name.clone(),
            String::new(),
            status,
            false,
            p.runs as usize,
            p.elapsed,
        ));
        for t in &p.tests {
            rows.push((
                p.name.clone(),
                t.name.clone(),
                status_word(t.outcome()),
                t.is_flaky(),
                t.attempts.len(),
                t.max_elapsed(),
            ));
        }
    }
    rows
}

fn sql_err(path: &Path, action: &'static str) -> impl FnOnce(rusqlite::Error) -> HistoryError {
    let path = path.to_path_buf();
    move |source| HistoryError::Sqlite {
        path,
        action,
        source,
    }
}

/// Adds the run; false when it was there already.
fn insert_run(
    tx: &rusqlite::Transaction<'_>,
    dir: &Path,
    run_id: &str,
    started_unix: i64,
    s: &Summary,
) -> rusqlite::Result<bool> {
    let pv = &s.provenance;
    let verdict = serde_json::to_value(s.verdict)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default();
    let n = tx.execute(
        "INSERT OR IGNORE INTO runs (id, suite, started, started_unix, duration_secs, \
         verdict, mode, shard, harness_version, efw_source, efw_run_id, efw_sha, \
         efw_version, guest_os, guest_build, library_commit, source_dir, recorded_at) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18)",
        params![
            run_id,
            s.run.suite,
            s.run.started,
            started_unix,
            s.run.duration_secs,
            verdict,
            s.run.mode,
            s.run.shard,
            pv.harness_version,
            pv.efw_source,
            pv.efw_run_id,
            pv.efw_sha,
            pv.efw_version,
            pv.guest_os,
            pv.guest_build,
            pv.library_commit,
            dir.display().to_string(),
            now_unix(),
        ],
    )?;
    Ok(n == 1)
}

fn insert_rows(tx: &rusqlite::Transaction<'_>, run_id: &str, rows: &[Row]) -> rusqlite::Result<()> {
    let mut ins = tx.prepare(
        "INSERT INTO results (run_id, package, test, status, flaky, attempts, elapsed) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
    )?;
    for (p, t, status, flaky, attempts, elapsed) in rows {
        ins.execute(params![
            run_id,
            p,
            t,
            status,
            flaky,
            *attempts as i64,
            elapsed
        ])?;
    }
    Ok(())
}

/// A merged run supersedes its shards; a shard that arrives after its merged run is
/// superseded at once.
fn link_parts(
    tx: &rusqlite::Transaction<'_>,
    run_id: &str,
    parts: &[String],
) -> rusqlite::Result<()> {
    for part in parts {
        tx.execute(
            "INSERT OR IGNORE INTO run_parts (run_id, part_id) VALUES (?1, ?2)",
            params![run_id, part],
        )?;
        tx.execute(
            "UPDATE runs SET superseded_by = ?1 WHERE id = ?2",
            params![run_id, part],
        )?;
    }
    let whole: Option<String> = tx
        .query_row(
            "SELECT run_id FROM run_parts WHERE part_id = ?1",
            params![run_id],
            |r| r.get(0),
        )
        .optional()?;
    if let Some(w) = whole {
        tx.execute(
            "UPDATE runs SET superseded_by = ?1 WHERE id = ?2",
            params![w, run_id],
        )?;
    }
    Ok(())
}

/// Records the results folder `dir` in the database at `db` and writes its `history.html` (the
/// suite's last `runs` runs).
pub fn record_with_page(db: &Path, dir: &Path, runs: usize) -> Result<Imported, HistoryError> {
    let mut h = History::open(db)?;
    let imp = h.import_dir(dir)?;
    h.write_page(dir, &imp.suite, runs)?;
    Ok(imp)
}

/// The results folders in `dir`: `dir` itself when it holds a `summary.json`, else its
/// subfolders that do (e.g. the results base, `<state>/results`), by name; `latest` links are
/// skipped.
pub fn results_folders(dir: &Path) -> Result<Vec<PathBuf>, HistoryError> {
    if dir.join("summary.json").is_file() {
        return Ok(vec![dir.to_path_buf()]);
    }
    let io = |source| HistoryError::Io {
        path: dir.to_path_buf(),
        source,
    };
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).map_err(io)? {
        let e = e.map_err(io)?;
        if e.file_type().map_err(io)?.is_dir() && e.path().join("summary.json").is_file() {
            out.push(e.path());
        }
    }
    out.sort();
    Ok(out)
}

fn unix_of(rfc3339: &str) -> Option<i64> {
    time::OffsetDateTime::parse(rfc3339, &time::format_description::well_known::Rfc3339)
        .ok()
        .map(|t| t.unix_timestamp())
}

/// Seconds since the epoch, now.
pub fn now_unix() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

impl History {
    /// Opens (creating if needed) the database at `path`. Waits at most 10 s for another
    /// harness that is writing to it.
    pub fn open(path: &Path) -> Result<History, HistoryError> {
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent).map_err(|source| HistoryError::Io {
                path: parent.to_path_buf(),
                source,
            })?;
        }
        let err = |action| sql_err(path, action);
        let conn = Connection::open(path).map_err(err("opening"))?;
        conn.busy_timeout(Duration::from_secs(10))
            .map_err(err("setting the busy timeout"))?;
        let found: i64 = conn
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .map_err(err("reading the schema version"))?;
        if found > SCHEMA_VERSION {
            return Err(HistoryError::TooNew {
                path: path.to_path_buf(),
                found,
            });
        }
        conn.execute_batch(SCHEMA)
            .and_then(|_| conn.pragma_update(None, "user_version", SCHEMA_VERSION))
            .and_then(|_| conn.pragma_update(None, "foreign_keys", true))
            .map_err(err("creating the tables"))?;
        Ok(History {
            conn,
            path: path.to_path_buf(),
        })
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn err(&self, action: &'static str) -> impl FnOnce(rusqlite::Error) -> HistoryError {
        sql_err(&self.path, action)
    }

    /// Records a results folder (as written by `harness test` or `harness report merge`, or an
    /// old one): its `summary.json` and `events.jsonl`. Recording the same run again does
    /// nothing.
    pub fn import_dir(&mut self, dir: &Path) -> Result<Imported, HistoryError> {
        let summary = results::read_summary(dir)?;
        let run_id = results::folder_run_id(dir)?;
        let events: Vec<TestEvent> = results::read_events(dir)?
            .into_iter()
            .map(|(_, e)| e)
            .collect();
        let rows = rows_of(&Execution::from_events(&events));
        let started_unix = unix_of(&summary.run.started)
            .or_else(|| {
                let m = std::fs::metadata(dir.join("summary.json"))
                    .ok()?
                    .modified()
                    .ok()?;
                Some(time::OffsetDateTime::from(m).unix_timestamp())
            })
            .unwrap_or(0);
        self.insert(dir, &run_id, started_unix, &summary, &rows)
    }

    fn insert(
        &mut self,
        dir: &Path,
        run_id: &str,
        started_unix: i64,
        s: &Summary,
        rows: &[Row],
    ) -> Result<Imported, HistoryError> {
        let path = self.path.clone();
        let tx = self
            .conn
            .transaction()
            .map_err(sql_err(&path, "starting a transaction"))?;
        let new = insert_run(&tx, dir, run_id, started_unix, s)
            .map_err(sql_err(&path, "adding the run"))?;
        if new {
            insert_rows(&tx, run_id, rows).map_err(sql_err(&path, "adding results"))?;
            link_parts(&tx, run_id, &s.run.merged_from)
                .map_err(sql_err(&path, "linking the shards of a merged run"))?;
        }
        let (superseded_by, stored): (Option<String>, i64) = tx
            .query_row(
                "SELECT superseded_by, (SELECT count(*) FROM results WHERE run_id = ?1) \
                 FROM runs WHERE id = ?1",
                params![run_id],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .map_err(sql_err(&path, "reading the run back"))?;
        tx.commit().map_err(sql_err(&path, "committing"))?;
        Ok(Imported {
            dir: dir.to_path_buf(),
            run_id: run_id.to_string(),
            suite: s.run.suite.clone(),
            rows: stored as usize,
            new,
            superseded_by,
        })
    }

    /// Writes `history.html` into the results folder `dir` (the last `runs` runs of `suite`) and
    /// links it from the folder's `index.html`.
    pub fn write_page(&self, dir: &Path, suite: &str, runs: usize) -> Result<(), HistoryError> {
        let w = self.window(&Filter {
            suite: Some(suite.to_string()),
            last_runs: Some(runs.max(1)),
            now_unix: now_unix(),
            ..Default::default()
        })?;
        let r = report(&w, 10);
        results::add_history_page(dir, &crate::html::render_history(&w, &r, suite))?;
        Ok(())
    }

    /// Runs in the database (superseded shards included).
    pub fn run_count(&self) -> Result<usize, HistoryError> {
        self.conn
            .query_row("SELECT count(*) FROM runs", [], |r| r.get::<_, i64>(0))
            .map(|n| n as usize)
            .map_err(self.err("counting runs"))
    }
}
