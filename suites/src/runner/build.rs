//! Host mode's builds: one `go test -c` per batch of packages with distinct binary names, then
//! whatever that did not produce one package at a time (which also pins a compile error on the
//! right package).

use super::*;
use crate::event::HARNESS_MARK;
use crate::flags::GoTestFlags;
use crate::gotool::{HostGo, ListedPackage};
use std::collections::BTreeMap;
use std::path::Path;

/// A built test binary, relative to the staging root.
#[derive(Debug, Clone)]
pub(crate) struct Built {
    pub pkg: String,
    pub rel_dir: String,
    pub bin: String,
}

/// Builds the test binaries of `pkgs` into `staging`, each in its package's directory; a
/// package that does not build is recorded as a build failure.
pub(crate) fn build_all(
    go: &HostGo,
    opts: &RunOptions,
    flags: &GoTestFlags,
    pkgs: &[&ListedPackage],
    staging: &Path,
    exe: &str,
    st: &mut State<'_>,
) -> Result<Vec<Built>, SuiteError> {
    let jobs = build_jobs(opts, pkgs, exe);
    for j in &jobs {
        let d = staging.join(&j.rel_dir);
        std::fs::create_dir_all(&d).map_err(|e| SuiteError::Staging { path: d, source: e })?;
    }
    let set = BuildSet {
        go,
        build_args: flags.build_args(),
        staging,
        jobs,
    };
    let (done, total) = st.build_progress;
    let mut tally = Tally {
        results: vec![None; set.jobs.len()],
        done,
        total: total.max(done + set.jobs.len()),
    };
    set.in_batches(&mut tally, st);
    set.one_by_one(opts.build_jobs.max(1), &mut tally, st);
    st.build_progress.0 = tally.done;
    let mut built = Vec::new();
    for (job, r) in set.jobs.into_iter().zip(tally.results) {
        match r {
            Some(Ok(())) => built.push(job),
            Some(Err(lines)) => st.build_failed(&job.pkg, &lines),
            None => st.build_failed(&job.pkg, &["build did not run".to_string()]),
        }
    }
    Ok(built)
}

/// What to build for each package: its directory in the staging tree and its binary's name.
fn build_jobs(opts: &RunOptions, pkgs: &[&ListedPackage], exe: &str) -> Vec<Built> {
    pkgs.iter()
        .map(|p| {
            let rel = rel_dir(&opts.module_dir, &p.dir);
            let base = p.import_path.rsplit('/').next().unwrap_or("pkg");
            Built {
                pkg: p.import_path.clone(),
                rel_dir: rel,
                bin: format!("{base}.test{exe}"),
            }
        })
        .collect()
}

/// `go test -c -o OUT BUILD_ARGS… PKGS…`.
fn test_c_args(
    out: String,
    build_args: &[String],
    pkgs: impl IntoIterator<Item = String>,
) -> Vec<String> {
    let mut args = vec!["test".to_string(), "-c".into(), "-o".into(), out];
    args.extend(build_args.iter().cloned());
    args.extend(pkgs);
    args
}

/// What one call of [`build_all`] builds, and how.
struct BuildSet<'a> {
    go: &'a HostGo,
    build_args: Vec<String>,
    staging: &'a Path,
    jobs: Vec<Built>,
}

/// The builds' results so far.
struct Tally {
    /// By job: not built yet, built, or the lines saying why it failed.
    results: Vec<Option<Result<(), Vec<String>>>>,
    /// Test binaries built so far and to build, over all batches of the run.
    done: usize,
    total: usize,
}

impl Tally {
    /// Records the result of job `i`, which builds `package`, and reports it.
    fn finished(
        &mut self,
        st: &mut State<'_>,
        i: usize,
        package: &str,
        result: Result<(), Vec<String>>,
    ) {
        self.done += 1;
        st.obs.on_event(
            &RunEvent::Built {
                done: self.done,
                total: self.total,
                package,
                ok: result.is_ok(),
            },
            &st.ex,
        );
        self.results[i] = Some(result);
    }
}

impl BuildSet<'_> {
    /// The fast path: one `go test -c -o DIR/ PKGS…` per batch of distinct binary names loads
    /// the module once and lets Go build in parallel (several times faster than one `go` per
    /// package). What it does not produce stays unbuilt, for [`BuildSet::one_by_one`].
    fn in_batches(&self, tally: &mut Tally, st: &mut State<'_>) {
        let names: Vec<String> = self.jobs.iter().map(|j| j.bin.clone()).collect();
        for (k, batch) in batch_by_name(&names).into_iter().enumerate() {
            if batch.len() < 2 {
                continue;
            }
            let outdir = self.staging.join(format!(".batch-{k}"));
            let pkgs = batch.iter().map(|&i| self.jobs[i].pkg.clone());
            let args = test_c_args(format!("{}/", outdir.display()), &self.build_args, pkgs);
            if !matches!(self.go.run(&args, BUILD_TIMEOUT), Ok(o) if o.code == Some(0)) {
                let _ = std::fs::remove_dir_all(&outdir);
                continue;
            }
            for &i in &batch {
                let j = &self.jobs[i];
                let dest = self.staging.join(&j.rel_dir).join(&j.bin);
                if std::fs::rename(outdir.join(&j.bin), dest).is_ok() {
                    tally.finished(st, i, &j.pkg, Ok(()));
                }
            }
            let _ = std::fs::remove_dir_all(&outdir);
        }
    }

    /// Builds what is still unbuilt with one `go test -c` per package, `parallel` at a time.
    fn one_by_one(&self, parallel: usize, tally: &mut Tally, st: &mut State<'_>) {
        let pending: Vec<usize> = (0..self.jobs.len())
            .filter(|&i| tally.results[i].is_none())
            .collect();
        let queue = std::sync::Mutex::new(pending.into_iter());
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::scope(|s| {
            for _ in 0..parallel {
                let tx = tx.clone();
                let queue = &queue;
                s.spawn(move || {
                    loop {
                        let Some(i) = queue.lock().expect("queue").next() else {
                            break;
                        };
                        if tx.send((i, self.build_one(&self.jobs[i]))).is_err() {
                            break;
                        }
                    }
                });
            }
            drop(tx);
            for (i, r) in rx {
                tally.finished(st, i, &self.jobs[i].pkg, r);
            }
        });
    }

    /// One package's own `go test -c`: the binary, or the lines saying why there is none.
    fn build_one(&self, job: &Built) -> Result<(), Vec<String>> {
        let out = self.staging.join(&job.rel_dir).join(&job.bin);
        let args = test_c_args(
            out.display().to_string(),
            &self.build_args,
            [job.pkg.clone()],
        );
        match self.go.run(&args, BUILD_TIMEOUT) {
            Ok(o) if o.code == Some(0) && out.is_file() => Ok(()),
            Ok(o) => Err(o.diagnostics(&format!(
                "{HARNESS_MARK}build timed out after {}s",
                BUILD_TIMEOUT.as_secs()
            ))),
            Err(e) => Err(vec![e.to_string()]),
        }
    }
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
