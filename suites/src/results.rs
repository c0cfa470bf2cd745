//! The results folder: writing it, reading it back, and merging shard folders.
//!
//! Layout: `junit.xml`, `events.jsonl` (the test2json stream, harness-made events included, so
//! that folding it again gives the same model), `summary.json`, `summary.md`, `failures/*.log`
//! (output of each failed test), `harness-output.log` (lines that were not test2json),
//! `dumps/*.goroutines.txt` (the goroutine dump of each test binary killed by its timeout, and
//! with `core_dumps` its core file, `dumps/<package>-core*.core`),
//! `index.html` (the self-contained HTML report, [`crate::html`]) and, once the run is in the
//! history database, `history.html`.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use crate::event::{TestEvent, parse_line};
use crate::junit;
use crate::model::{Execution, TestState};
use crate::plan::FailedTests;
use crate::summary::{Provenance, RunMeta, Summary, render_markdown, summarize};

/// A problem with a results folder.
#[derive(Debug, thiserror::Error)]
pub enum ResultsError {
    /// Reading or writing a file failed.
    #[error("{action} {path}: {source}")]
    Io {
        /// What was being done.
        action: &'static str,
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A file has unexpected content.
    #[error("{path} is not a valid {what}: {detail}; point at a folder written by `harness test`")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// What it should be.
        what: &'static str,
        /// Why it is not.
        detail: String,
    },
    /// Nothing to merge.
    #[error(
        "no results folders to merge; pass the shard folders, e.g. `harness report merge out/shard-1 out/shard-2 --out merged`"
    )]
    NothingToMerge,
}

fn io<'a>(
    action: &'static str,
    path: &'a Path,
) -> impl FnOnce(std::io::Error) -> ResultsError + 'a {
    move |source| ResultsError::Io {
        action,
        path: path.to_path_buf(),
        source,
    }
}

/// Everything a run produced, ready to be written.
#[derive(Debug, Clone)]
pub struct RunRecord {
    /// The folded model.
    pub execution: Execution,
    /// The event stream as JSON lines (raw as received, plus harness-made events).
    pub events: Vec<String>,
    /// Output lines that were not events (go diagnostics, stray stderr).
    pub other_output: Vec<String>,
    /// Run facts.
    pub meta: RunMeta,
    /// Where each package ran on the target (import path, directory), e.g. for `repro --shell`.
    pub package_dirs: Vec<(String, String)>,
    /// Core files of test binaries that hit their timeout (`core_dumps`): (package, the file
    /// on the host, moved into `dumps/` by [`write`]).
    pub cores: Vec<(String, PathBuf)>,
}

/// Paths of what [`write`] produced.
#[derive(Debug, Clone)]
pub struct Written {
    /// The folder.
    pub dir: PathBuf,
    /// The summary as written to `summary.json`.
    pub summary: Summary,
}

/// A fresh, uniquely named folder `base/<suite>-<UTC time>` and the `base/latest` link to it.
pub fn new_run_dir(base: &Path, suite: &str) -> Result<PathBuf, ResultsError> {
    std::fs::create_dir_all(base).map_err(io("creating", base))?;
    let stamp = time::OffsetDateTime::now_utc()
        .format(time::macros::format_description!(
            "[year][month][day]-[hour][minute][second]"
        ))
        .unwrap_or_default();
    let safe: String = suite
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    for n in 0..1000 {
        let name = if n == 0 {
            format!("{safe}-{stamp}")
        } else {
            format!("{safe}-{stamp}-{n}")
        };
        let dir = base.join(&name);
        match std::fs::create_dir(&dir) {
            Ok(()) => {
                let link = base.join("latest");
                let _ = std::fs::remove_file(&link);
                std::os::unix::fs::symlink(&name, &link).map_err(io("linking", &link))?;
                return Ok(dir);
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(io("creating", &dir)(e)),
        }
    }
    Err(ResultsError::Invalid {
        path: base.to_path_buf(),
        what: "results base",
        detail: "too many runs in one second".into(),
    })
}

fn file_name_part(s: &str) -> String {
    let mut out: String = s
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') {
                c
            } else {
                '_'
            }
        })
        .collect();
    out.truncate(80);
    out
}

/// Writes the results folder `dir` (created if needed).
pub fn write(
    dir: &Path,
    rec: &RunRecord,
    provenance: &Provenance,
) -> Result<Written, ResultsError> {
    std::fs::create_dir_all(dir).map_err(io("creating", dir))?;
    let ex = &rec.execution;
    let files = write_failure_logs(dir, ex)?;
    let mut meta = rec.meta.clone();
    if meta.id.is_empty() {
        meta.id = new_run_id(&meta);
    }
    let summary = summarize(ex, &meta, provenance, &files);
    write_goroutine_dumps(dir, &rec.events)?;
    keep_cores(dir, &rec.cores)?;
    write_streams(dir, rec)?;
    write_reports(dir, rec, &summary)?;
    Ok(Written {
        dir: dir.to_path_buf(),
        summary,
    })
}

/// `failures/NNN-<package>-<test>.log`, every attempt of each failed test; returns the file of
/// each `(package, test)`.
fn write_failure_logs(
    dir: &Path,
    ex: &Execution,
) -> Result<BTreeMap<(String, String), String>, ResultsError> {
    let mut files = BTreeMap::new();
    let failed = ex.failed_tests();
    if failed.is_empty() {
        return Ok(files);
    }
    let fdir = dir.join("failures");
    std::fs::create_dir_all(&fdir).map_err(io("creating", &fdir))?;
    for (i, (p, t)) in failed.iter().enumerate() {
        let name = format!(
            "{:03}-{}-{}.log",
            i + 1,
            file_name_part(&p.name),
            file_name_part(&t.name)
        );
        let path = fdir.join(&name);
        std::fs::write(&path, attempts_text(t)).map_err(io("writing", &path))?;
        files.insert((p.name.clone(), t.name.clone()), format!("failures/{name}"));
    }
    Ok(files)
}

/// Every attempt's output, each under a `=== attempt N of M: OUTCOME` line.
fn attempts_text(t: &TestState) -> String {
    let mut text = String::new();
    for (n, a) in t.attempts.iter().enumerate() {
        text.push_str(&format!(
            "=== attempt {} of {}: {:?}\n",
            n + 1,
            t.attempts.len(),
            a.outcome
        ));
        text.push_str(&a.output);
        if let Some(s) = &a.synthesized {
            text.push_str(s);
            text.push('\n');
        }
    }
    text
}

/// `dumps/NNN-<package>.goroutines.txt`: the goroutine dumps in the event stream.
fn write_goroutine_dumps(dir: &Path, events: &[String]) -> Result<(), ResultsError> {
    let dumps = crate::dumps::goroutine_dumps(events);
    if dumps.is_empty() {
        return Ok(());
    }
    let ddir = dir.join("dumps");
    std::fs::create_dir_all(&ddir).map_err(io("creating", &ddir))?;
    for (i, (pkg, text)) in dumps.iter().enumerate() {
        let path = ddir.join(format!(
            "{:03}-{}.goroutines.txt",
            i + 1,
            file_name_part(pkg)
        ));
        std::fs::write(&path, text).map_err(io("writing", &path))?;
    }
    Ok(())
}

/// Moves the core files into `dumps/`, and their temporary folders away.
fn keep_cores(dir: &Path, cores: &[(String, PathBuf)]) -> Result<(), ResultsError> {
    for (pkg, core) in cores {
        let ddir = dir.join("dumps");
        std::fs::create_dir_all(&ddir).map_err(io("creating", &ddir))?;
        let name = core.file_name().unwrap_or_default();
        let path = ddir.join(name);
        // A rename within one filesystem; else a copy. Either way the host's temp folder goes.
        if std::fs::rename(core, &path).is_err() {
            if let Err(e) = std::fs::copy(core, &path) {
                tracing::warn!(
                    "could not keep the core file of {pkg} ({}): {e}",
                    core.display()
                );
            }
            let _ = std::fs::remove_file(core);
        }
        if let Some(parent) = core.parent() {
            let _ = std::fs::remove_dir(parent);
        }
    }
    Ok(())
}

/// `events.jsonl` and, when there were any, the other lines in `harness-output.log`.
fn write_streams(dir: &Path, rec: &RunRecord) -> Result<(), ResultsError> {
    let path = dir.join("events.jsonl");
    let mut f =
        std::io::BufWriter::new(std::fs::File::create(&path).map_err(io("creating", &path))?);
    for l in &rec.events {
        f.write_all(l.as_bytes())
            .and_then(|_| f.write_all(b"\n"))
            .map_err(io("writing", &path))?;
    }
    f.flush().map_err(io("writing", &path))?;

    if !rec.other_output.is_empty() {
        let path = dir.join("harness-output.log");
        std::fs::write(&path, rec.other_output.join("\n") + "\n").map_err(io("writing", &path))?;
    }
    Ok(())
}

/// `junit.xml`, `summary.json`, `summary.md` and `index.html`.
fn write_reports(dir: &Path, rec: &RunRecord, summary: &Summary) -> Result<(), ResultsError> {
    let ex = &rec.execution;
    let path = dir.join("junit.xml");
    let xml = junit::render(ex, &rec.meta.suite)
        .to_string()
        .map_err(|e| ResultsError::Invalid {
            path: path.clone(),
            what: "JUnit report",
            detail: e.to_string(),
        })?;
    std::fs::write(&path, xml).map_err(io("writing", &path))?;

    let path = dir.join("summary.json");
    std::fs::write(
        &path,
        serde_json::to_string_pretty(summary).expect("summary serializes") + "\n",
    )
    .map_err(io("writing", &path))?;
    let path = dir.join("summary.md");
    std::fs::write(&path, render_markdown(ex, summary)).map_err(io("writing", &path))?;
    write_index(dir, ex, summary, false)
}

/// A new run id: the start time and a hash of what makes this run unique on this machine.
fn new_run_id(meta: &RunMeta) -> String {
    use sha2::Digest as _;
    let now = time::OffsetDateTime::now_utc();
    let mut h = sha2::Sha256::new();
    for part in [
        meta.suite.as_str(),
        meta.shard.as_deref().unwrap_or(""),
        meta.started.as_str(),
        &now.unix_timestamp_nanos().to_string(),
        &std::process::id().to_string(),
    ] {
        h.update(part.as_bytes());
        h.update([0]);
    }
    let hex = base16ct::lower::encode_string(&h.finalize());
    let stamp = now
        .format(time::macros::format_description!(
            "[year][month][day]T[hour][minute][second]"
        ))
        .unwrap_or_default();
    format!("{stamp}-{}", &hex[..12])
}

/// The run id of a results folder: `run.id` from its `summary.json`, or, for folders written
/// before runs had ids, `sum-` and a hash of that file (the same folder always gets the same id).
pub fn folder_run_id(dir: &Path) -> Result<String, ResultsError> {
    use sha2::Digest as _;
    let s = read_summary(dir)?;
    if !s.run.id.is_empty() {
        return Ok(s.run.id);
    }
    let path = dir.join("summary.json");
    let bytes = std::fs::read(&path).map_err(io("reading", &path))?;
    let hex = base16ct::lower::encode_string(&sha2::Sha256::digest(&bytes));
    Ok(format!("sum-{}", &hex[..16]))
}

/// Writes `index.html`, linking `history.html` when `history` is set.
fn write_index(
    dir: &Path,
    ex: &Execution,
    summary: &Summary,
    history: bool,
) -> Result<(), ResultsError> {
    let path = dir.join("index.html");
    std::fs::write(&path, crate::html::render_index(ex, summary, history))
        .map_err(io("writing", &path))
}

/// Writes `history.html` into a results folder and writes its `index.html` again (from the
/// folder's own `summary.json` and `events.jsonl`) with a link to it.
pub fn add_history_page(dir: &Path, history_html: &str) -> Result<(), ResultsError> {
    let path = dir.join("history.html");
    std::fs::write(&path, history_html).map_err(io("writing", &path))?;
    let summary = read_summary(dir)?;
    let events: Vec<TestEvent> = read_events(dir)?.into_iter().map(|(_, e)| e).collect();
    write_index(dir, &Execution::from_events(&events), &summary, true)
}

/// Reads `events.jsonl` of a results folder.
pub fn read_events(dir: &Path) -> Result<Vec<(String, TestEvent)>, ResultsError> {
    let path = dir.join("events.jsonl");
    let text = std::fs::read_to_string(&path).map_err(io("reading", &path))?;
    Ok(text
        .lines()
        .filter_map(|l| parse_line(l).map(|e| (l.to_string(), e)))
        .collect())
}

/// Reads `summary.json` of a results folder.
pub fn read_summary(dir: &Path) -> Result<Summary, ResultsError> {
    let path = dir.join("summary.json");
    let text = std::fs::read_to_string(&path).map_err(io("reading", &path))?;
    serde_json::from_str(&text).map_err(|e| ResultsError::Invalid {
        path,
        what: "summary.json",
        detail: e.to_string(),
    })
}

/// The failed tests recorded in a results folder or a `junit.xml` file, for `harness repro`,
/// with the provenance when a `summary.json` sits next to it.
pub fn read_failures(path: &Path) -> Result<(FailedTests, Option<Provenance>), ResultsError> {
    let (xml_path, dir) = if path.is_dir() {
        (path.join("junit.xml"), path.to_path_buf())
    } else {
        (
            path.to_path_buf(),
            path.parent().map(Path::to_path_buf).unwrap_or_default(),
        )
    };
    let xml = std::fs::read_to_string(&xml_path).map_err(io("reading", &xml_path))?;
    let report = junit::read(&xml).map_err(|e| ResultsError::Invalid {
        path: xml_path.clone(),
        what: "JUnit report",
        detail: e.to_string(),
    })?;
    let provenance = read_summary(&dir).ok().map(|s| s.provenance);
    Ok((junit::failed_tests(&report), provenance))
}

/// Merges shard folders into one folder at `out`, equal to what an unsharded run would have
/// written: the event streams are concatenated and folded again; the provenance and run facts
/// come from the first shard, the duration is the longest shard's, errors are kept.
pub fn merge(dirs: &[PathBuf], out: &Path) -> Result<Written, ResultsError> {
    merge_with(dirs, out, &mut |_| {})
}

/// [`merge`], letting the caller complete the merged provenance (the first folder's) before it
/// is written, e.g. with which VM ran which shard.
pub fn merge_with(
    dirs: &[PathBuf],
    out: &Path,
    provenance: &mut dyn FnMut(&mut Provenance),
) -> Result<Written, ResultsError> {
    let first = dirs.first().ok_or(ResultsError::NothingToMerge)?;
    let mut events = Vec::new();
    let mut lines = Vec::new();
    let mut other = Vec::new();
    let base = read_summary(first)?;
    let mut meta = base.run.clone();
    meta.shard = None;
    meta.id = String::new();
    meta.merged_from = Vec::new();
    let mut errors = Vec::new();
    for d in dirs {
        let s = read_summary(d)?;
        meta.merged_from.push(folder_run_id(d)?);
        meta.duration_secs = meta.duration_secs.max(s.run.duration_secs);
        // Shards run side by side: the longest span of each sub-phase, all the bytes sent.
        for (k, v) in &s.timings {
            let t = meta.timings.entry(k.clone()).or_insert(0.0);
            *t = t.max(*v);
        }
        meta.uploaded_bytes += s.uploaded_bytes;
        if let Some(e) = s.run.error {
            errors.push(e);
        }
        for (l, e) in read_events(d)? {
            lines.push(l);
            events.push(e);
        }
        if let Ok(t) = std::fs::read_to_string(d.join("harness-output.log")) {
            other.extend(t.lines().map(str::to_string));
        }
    }
    meta.error = (!errors.is_empty()).then(|| errors.join("; "));
    let execution = Execution::from_events(&events);
    let rec = RunRecord {
        execution,
        events: lines,
        other_output: other,
        meta,
        package_dirs: Vec::new(),
        cores: Vec::new(),
    };
    let mut prov = base.provenance;
    provenance(&mut prov);
    write(out, &rec, &prov)
}
