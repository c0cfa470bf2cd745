//! Host mode as a pipeline: build → upload → run per batch of packages. The calling thread builds
//! batches of growing size (2, 4, 8, … packages, so the first binaries are ready early) and folds
//! what the other threads report; an uploader sends each batch's binaries (the first time with
//! every testdata directory) through its own session; `parallel` runners start a package as soon
//! as its binary and testdata are on the target.

use std::collections::BTreeSet;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, mpsc};
use std::time::Instant;

use crate::cas::{self, TreeSync};
use crate::exec::Executor;
use crate::flags::GoTestFlags;
use crate::gotool::{HostGo, ListedPackage};
use crate::pool::{HostPool, Job, WorkerMsg};
use crate::runner::{
    Built, RunOptions, State, SuiteError, build_all, first_run_flags, stop_reason,
};
use crate::stage::in_testdata;

/// What the pipeline works with.
pub(crate) struct Pipe<'a> {
    pub go: &'a HostGo,
    pub opts: &'a RunOptions,
    pub flags: &'a GoTestFlags,
    pub staging: &'a Path,
    pub exe: &'a str,
    pub remote: &'a str,
    pub pool: &'a HostPool<'a>,
    /// The staged testdata trees (relative to `staging`), sent with the first batch.
    pub testdata: Vec<PathBuf>,
}

/// Batches of 2, 4, 8, … packages covering `0..n`.
pub(crate) fn batches(n: usize) -> Vec<Range<usize>> {
    let mut out = Vec::new();
    let (mut start, mut size) = (0, 2);
    while start < n {
        let end = (start + size).min(n);
        out.push(start..end);
        start = end;
        size *= 2;
    }
    out
}

/// Builds, uploads and runs `pkgs`; returns what was built (for reruns).
pub(crate) fn run(
    p: &Pipe<'_>,
    pkgs: &[&ListedPackage],
    uploader: &mut dyn Executor,
    execs: &mut [&mut dyn Executor],
    st: &mut State<'_>,
) -> Result<Vec<Built>, SuiteError> {
    let stop = AtomicBool::new(stop_reason(p.opts, st).is_some());
    let (up_tx, up_rx) = mpsc::channel::<Vec<Built>>();
    let (job_tx, job_rx) = mpsc::channel::<Job>();
    let job_rx = Mutex::new(job_rx);
    let (tx, rx) = mpsc::channel::<WorkerMsg>();
    let mut all: Vec<Built> = Vec::new();
    let mut pending: BTreeSet<String> = BTreeSet::new();
    st.build_progress = (0, pkgs.len());
    std::thread::scope(|s| -> Result<(), SuiteError> {
        {
            let (tx, stop) = (tx.clone(), &stop);
            s.spawn(move || upload_loop(p, uploader, up_rx, job_tx, tx, stop));
        }
        for exec in execs.iter_mut() {
            let (tx, job_rx, stop) = (tx.clone(), &job_rx, &stop);
            s.spawn(move || {
                loop {
                    let Ok(job) = job_rx.lock().expect("jobs").recv() else {
                        break;
                    };
                    // After a stop the rest are drained; the folder marks them not run.
                    if !stop.load(Ordering::SeqCst) && p.pool.work(&mut **exec, job, &tx) {
                        stop.store(true, Ordering::SeqCst);
                    }
                }
            });
        }
        drop(tx);
        let fold = |msg: WorkerMsg, st: &mut State<'_>, pending: &mut BTreeSet<String>| {
            match &msg {
                WorkerMsg::Done(d) => {
                    pending.remove(&d.pkg);
                }
                WorkerMsg::NoConverter(pkg, _) => {
                    pending.remove(pkg);
                }
                WorkerMsg::UploadFailed(pkgs, _) => {
                    for pkg in pkgs {
                        pending.remove(pkg);
                    }
                }
                _ => {}
            }
            p.pool.fold(msg, "run", st);
            if stop_reason(p.opts, st).is_some() {
                stop.store(true, Ordering::SeqCst);
            }
        };
        for range in batches(pkgs.len()) {
            if stop.load(Ordering::SeqCst) {
                break;
            }
            let start = Instant::now();
            let built = build_all(p.go, p.opts, p.flags, &pkgs[range], p.staging, p.exe, st)?;
            st.clock.span("build", start, Instant::now());
            for b in &built {
                pending.insert(b.pkg.clone());
                st.package_dirs.push((b.pkg.clone(), st_dir(p, b)));
            }
            all.extend(built.iter().cloned());
            if !built.is_empty() {
                let _ = up_tx.send(built);
            }
            while let Ok(msg) = rx.try_recv() {
                fold(msg, st, &mut pending);
            }
        }
        drop(up_tx);
        st.phase("running");
        for msg in rx {
            fold(msg, st, &mut pending);
        }
        Ok(())
    })?;
    if st.crashed.is_none() {
        for pkg in pending {
            let why = stop_reason(p.opts, st).unwrap_or_else(|| "not run".into());
            st.errored(&pkg, &why);
        }
    }
    Ok(all)
}

fn st_dir(p: &Pipe<'_>, b: &Built) -> String {
    p.pool.os.join(p.remote, &b.rel_dir)
}

/// Host mode on an executor that cannot open a second session: build everything, upload it,
/// then run. `None` when the upload failed (the packages are marked errored).
pub(crate) fn in_sequence(
    p: &Pipe<'_>,
    pkgs: &[&ListedPackage],
    execs: &mut [&mut dyn Executor],
    st: &mut State<'_>,
) -> Result<Option<Vec<Built>>, SuiteError> {
    let build_start = Instant::now();
    let built = build_all(p.go, p.opts, p.flags, pkgs, p.staging, p.exe, st)?;
    st.clock.span("build", build_start, Instant::now());
    st.phase("uploading");
    let upload_start = Instant::now();
    let exec = &mut *execs[0];
    let uploaded = TreeSync::open(exec, p.remote).and_then(|mut sync| {
        cas::upload(
            exec,
            sync.as_mut(),
            p.staging,
            p.remote,
            &in_testdata,
            false,
        )
    });
    st.clock.span("upload", upload_start, Instant::now());
    if let Err(e) = uploaded.map(|b| st.uploaded_bytes += b) {
        if !e.is_crash() {
            let msg = e.to_string();
            for b in &built {
                st.errored(&b.pkg, &msg);
            }
            st.error = Some(msg);
        }
        st.target_error(&e);
        return Ok(None);
    }
    st.phase("running");
    for b in &built {
        st.package_dirs
            .push((b.pkg.clone(), p.pool.os.join(p.remote, &b.rel_dir)));
    }
    let jobs: Vec<Job> = built
        .iter()
        .map(|b| Job {
            built: b.clone(),
            flags: first_run_flags(p.opts, p.flags, &b.pkg),
            expected: None,
        })
        .collect();
    p.pool.run(execs, jobs, "run", p.opts, st);
    Ok(Some(built))
}

/// Sends each batch (and whatever queued up behind it) to the target, then hands its packages
/// to the runners.
fn upload_loop(
    p: &Pipe<'_>,
    exec: &mut dyn Executor,
    batches: mpsc::Receiver<Vec<Built>>,
    jobs: mpsc::Sender<Job>,
    tx: mpsc::Sender<WorkerMsg>,
    stop: &AtomicBool,
) {
    let mut sync: Option<Option<TreeSync>> = None;
    let mut first = true;
    while let Ok(mut batch) = batches.recv() {
        while let Ok(more) = batches.try_recv() {
            batch.extend(more);
        }
        if stop.load(Ordering::SeqCst) {
            continue;
        }
        let start = Instant::now();
        let mut rels: Vec<PathBuf> = batch
            .iter()
            .map(|b| Path::new(&b.rel_dir).join(&b.bin))
            .collect();
        if first {
            rels.extend(p.testdata.iter().cloned());
        }
        let sent = match &mut sync {
            Some(s) => Ok(s),
            None => TreeSync::open(exec, p.remote).map(|s| sync.insert(s)),
        }
        .and_then(|s| push(exec, s.as_mut(), p, &rels));
        match sent {
            Ok(bytes) => {
                first = false;
                let _ = tx.send(WorkerMsg::Uploaded {
                    bytes,
                    start,
                    end: Instant::now(),
                });
                for b in batch {
                    let flags = first_run_flags(p.opts, p.flags, &b.pkg);
                    let _ = jobs.send(Job {
                        built: b,
                        flags,
                        expected: None,
                    });
                }
            }
            Err(e) => {
                if e.is_target_lost() || e.is_crash() {
                    stop.store(true, Ordering::SeqCst);
                }
                let pkgs = batch.into_iter().map(|b| b.pkg).collect();
                let _ = tx.send(WorkerMsg::UploadFailed(pkgs, e));
            }
        }
    }
}

/// Sends `rels` of the staging tree: through the store, or (no store) as a filtered tree.
fn push(
    exec: &mut dyn Executor,
    sync: Option<&mut TreeSync>,
    p: &Pipe<'_>,
    rels: &[PathBuf],
) -> Result<u64, crate::exec::ExecError> {
    if let Some(s) = sync {
        return s.push(exec, p.staging, rels, &in_testdata, false);
    }
    let keep = |r: &Path| rels.iter().any(|x| x.starts_with(r) || r.starts_with(x));
    exec.upload_tree(p.staging, p.remote, &|r| !keep(r))?;
    Ok(rels
        .iter()
        .map(|r| {
            let full = p.staging.join(r);
            if full.is_dir() {
                cas::tree_bytes(&full)
            } else {
                std::fs::metadata(&full).map_or(0, |m| m.len())
            }
        })
        .sum())
}

/// The testdata trees staged under `staging` (top-most `testdata` entries), relative to it.
pub(crate) fn testdata_roots(staging: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut walk = hostproc::walk(staging).into_iter();
    while let Some(e) = walk.next() {
        // An unreadable directory holds no testdata we could send anyway.
        let Ok(e) = e else { continue };
        if e.file_name() == "testdata" {
            out.push(
                e.path()
                    .strip_prefix(staging)
                    .unwrap_or(e.path())
                    .to_path_buf(),
            );
            if e.file_type().is_dir() {
                walk.skip_current_dir();
            }
        }
    }
    out.sort();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batches_grow_and_cover_everything() {
        assert_eq!(batches(0), Vec::<Range<usize>>::new());
        assert_eq!(batches(1), vec![0..1]);
        assert_eq!(batches(26), vec![0..2, 2..6, 6..14, 14..26]);
    }

    #[test]
    fn testdata_roots_are_the_top_most() {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(d.path().join("a/testdata/x/testdata")).unwrap();
        std::fs::create_dir_all(d.path().join("b/c")).unwrap();
        std::fs::write(d.path().join("b/c/c.test"), "").unwrap();
        std::fs::create_dir_all(d.path().join("testdata")).unwrap();
        assert_eq!(
            testdata_roots(d.path()),
            vec![PathBuf::from("a/testdata"), PathBuf::from("testdata")]
        );
    }
}
