//! Host mode's runner of test binaries: one or more sessions on the target run the binaries side
//! by side; each binary is first asked for its tests (`-test.list`, so that tests it never
//! reaches are reported "not run") and, when pass-through flags are set, for its flags (`-h`,
//! once per binary, so that a flag goes only to binaries that define it).

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crate::event::HARNESS_MARK;
use crate::exec::{ExecError, ExecOutcome, ExecRequest, Executor, Stream, TargetOs};
use crate::flags::GoTestFlags;
use crate::gotool::Converter;
use crate::probe;
use crate::runner::{Built, RunOptions, State, stop_reason};

/// How long asking a binary for its tests or flags may take.
const PROBE_TIMEOUT: Duration = Duration::from_secs(120);

/// One run of one test binary.
pub(crate) struct Job {
    /// The binary.
    pub built: Built,
    /// Its flags (pass-through flags are filtered against the binary's own).
    pub flags: GoTestFlags,
    /// The root tests this run must run: `None` lists them from the binary first.
    pub expected: Option<Vec<String>>,
}

/// Runs host-mode test binaries on one or more sessions of the target, converting each
/// binary's output with its own test2json and folding everything on the calling thread.
pub(crate) struct HostPool<'a> {
    pub os: TargetOs,
    pub remote: &'a str,
    pub env: Vec<(String, String)>,
    pub timeout: Duration,
    pub cancel: Option<hostproc::Cancel>,
    pub test2json: &'a Path,
    /// Flags each binary defines, by package: asked once per build.
    pub defined: Mutex<HashMap<String, BTreeSet<String>>>,
    /// `core_dumps` on a Linux target: the host folder fetched core files go to.
    pub cores: Option<PathBuf>,
}

impl Drop for HostPool<'_> {
    /// The core folder goes when no core file went into it (the results move those out later,
    /// and their folder with them).
    fn drop(&mut self) {
        if let Some(dir) = &self.cores {
            let _ = std::fs::remove_dir(dir);
        }
    }
}

/// Runs a test binary (`$0`, its arguments after) with no core size limit and says which core
/// files it left in its working directory (stale ones are removed first).
const CORE_WRAPPER: &str = r#"rm -f core core.[0-9]*
ulimit -c unlimited 2>/dev/null || ulimit -c "$(ulimit -H -c)" 2>/dev/null
"$0" "$@"; rc=$?
n=0
for f in core core.[0-9]*; do [ -f "$f" ] && n=1 && echo "harness: core file $PWD/$f" >&2; done
if [ "$rc" -gt 128 ] && [ "$n" = 0 ]; then
  echo "harness: no core file in $PWD (core size limit $(ulimit -c), kernel.core_pattern $(cat /proc/sys/kernel/core_pattern 2>/dev/null))" >&2
fi
exit $rc"#;

/// The line [`CORE_WRAPPER`] prints for each core file.
const CORE_LINE: &[u8] = b"harness: core file ";

/// Why asking a binary failed: the target is gone, or anything else (a note).
enum ProbeError {
    Lost(ExecError),
    Other(String),
}

impl std::fmt::Display for ProbeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ProbeError::Lost(e) => write!(f, "{e}"),
            ProbeError::Other(s) => f.write_str(s),
        }
    }
}

/// What a worker reports to the folding thread.
pub(crate) enum WorkerMsg {
    Line(String),
    Note(String),
    Done(Done),
    NoConverter(String, String),
    /// A core file of this package, fetched to the host.
    Core(String, PathBuf),
    /// The pipeline's uploader sent these packages' binaries (and, the first time, testdata).
    Uploaded {
        bytes: u64,
        start: Instant,
        end: Instant,
    },
    /// The pipeline's uploader could not send these packages.
    UploadFailed(Vec<String>, ExecError),
}

/// A finished run of one binary.
pub(crate) struct Done {
    pub pkg: String,
    pub res: Result<ExecOutcome, ExecError>,
    pub expected: Option<Vec<String>>,
    pub elapsed: Duration,
}

impl HostPool<'_> {
    fn binary(&self, b: &Built) -> String {
        self.os
            .join(self.remote, &format!("{}/{}", b.rel_dir, b.bin))
    }

    fn request(&self, b: &Built, args: Vec<String>, timeout: Duration) -> ExecRequest {
        let mut argv = vec![self.binary(b)];
        argv.extend(args);
        ExecRequest {
            argv,
            env: self.env.clone(),
            cwd: Some(self.os.join(self.remote, &b.rel_dir)),
            timeout,
            cancel: self.cancel.clone(),
            dump_on_timeout: false,
        }
    }

    /// Runs the binary with `args` and returns its output lines, or why that failed.
    fn ask(
        &self,
        exec: &mut dyn Executor,
        b: &Built,
        args: &[&str],
        stdout_only: bool,
    ) -> Result<(Option<i32>, Vec<String>), ProbeError> {
        let req = self.request(
            b,
            args.iter().map(|a| a.to_string()).collect(),
            PROBE_TIMEOUT,
        );
        let mut lines = Vec::new();
        let out = exec
            .run(&req, &mut |s, l| {
                if !stdout_only || s == Stream::Stdout {
                    lines.push(String::from_utf8_lossy(l).into_owned());
                }
            })
            .map_err(|e| {
                if e.is_target_lost() || e.is_crash() {
                    ProbeError::Lost(e)
                } else {
                    ProbeError::Other(e.to_string())
                }
            })?;
        if out.timed_out || out.cancelled {
            return Err(ProbeError::Other(format!(
                "`{} {}` did not finish",
                b.bin,
                args.join(" ")
            )));
        }
        Ok((out.exit_code, lines))
    }

    /// The binary's root tests for this run, or a note saying why they are unknown.
    fn list(
        &self,
        exec: &mut dyn Executor,
        b: &Built,
        f: &GoTestFlags,
    ) -> Result<Vec<String>, ProbeError> {
        let pattern = probe::list_pattern(f);
        match self.ask(exec, b, &["-test.list", &pattern], true) {
            Ok((Some(0), lines)) => Ok(probe::parse_test_list(&lines, f)),
            Ok((code, lines)) => Err(ProbeError::Other(format!(
                "`{} -test.list` exited with {code:?}: {}",
                b.bin,
                lines.last().map(String::as_str).unwrap_or("")
            ))),
            Err(e) => Err(e),
        }
    }

    /// Drops the pass-through flags the binary does not define; says which.
    fn filter_flags(
        &self,
        exec: &mut dyn Executor,
        b: &Built,
        f: &mut GoTestFlags,
    ) -> Result<Option<String>, ExecError> {
        if f.passthrough.is_empty() {
            return Ok(None);
        }
        let cached = self.defined.lock().expect("cache").get(&b.pkg).cloned();
        let defined = match cached {
            Some(d) => d,
            None => match self.ask(exec, b, &["-h"], false) {
                Ok((_, lines)) => {
                    let d = probe::parse_flag_names(&lines);
                    self.defined
                        .lock()
                        .expect("cache")
                        .insert(b.pkg.clone(), d.clone());
                    d
                }
                Err(ProbeError::Lost(e)) => return Err(e),
                Err(e) => {
                    return Ok(Some(format!(
                        "{HARNESS_MARK}could not ask {} for its flags ({e}); passing {} as given",
                        b.pkg,
                        f.passthrough.join(" ")
                    )));
                }
            },
        };
        let dropped = probe::keep_defined(f, &defined);
        Ok((!dropped.is_empty()).then(|| {
            format!(
                "{HARNESS_MARK}{} does not define {}: not passed to its test binary",
                b.pkg,
                dropped.join(" ")
            )
        }))
    }

    /// One job on one session: probe, run, convert. True when the target is lost.
    pub(crate) fn work(
        &self,
        exec: &mut dyn Executor,
        job: Job,
        tx: &std::sync::mpsc::Sender<WorkerMsg>,
    ) -> bool {
        let Job {
            built,
            mut flags,
            mut expected,
        } = job;
        let b = &built;
        let lost = |e: ExecError| {
            let _ = tx.send(WorkerMsg::Done(Done {
                pkg: b.pkg.clone(),
                res: Err(e),
                expected: None,
                elapsed: Duration::ZERO,
            }));
            true
        };
        match self.filter_flags(exec, b, &mut flags) {
            Ok(Some(note)) => {
                let _ = tx.send(WorkerMsg::Note(note));
            }
            Ok(None) => {}
            Err(e) => return lost(e),
        }
        if expected.is_none() {
            match self.list(exec, b, &flags) {
                Ok(l) => expected = Some(l),
                Err(ProbeError::Lost(e)) => return lost(e),
                Err(e) => {
                    let _ = tx.send(WorkerMsg::Note(format!(
                        "{HARNESS_MARK}could not list the tests of {}: {e}; tests it never reaches will not be reported",
                        b.pkg
                    )));
                }
            }
        }
        let sink = tx.clone();
        let conv = Converter::start_with_sink(self.test2json, &b.pkg, move |l| {
            let _ = sink.send(WorkerMsg::Line(l));
        });
        let mut conv = match conv {
            Ok(c) => c,
            Err(e) => {
                let why = format!(
                    "could not start test2json ({}): {e}",
                    self.test2json.display()
                );
                let _ = tx.send(WorkerMsg::NoConverter(b.pkg.clone(), why));
                return false;
            }
        };
        let mut args = vec![
            "-test.v=test2json".to_string(),
            "-test.paniconexit0".to_string(),
        ];
        args.extend(flags.binary_args());
        let t0 = Instant::now();
        let mut req = self.request(b, args, self.timeout);
        req.dump_on_timeout = true;
        if self.cores.is_some() {
            req.env.push(("GOTRACEBACK".into(), "crash".into()));
            let mut argv = vec!["sh".into(), "-c".into(), CORE_WRAPPER.into()];
            argv.append(&mut req.argv);
            req.argv = argv;
        }
        let mut cores = Vec::new();
        let res = exec.run(&req, &mut |_, line| {
            if let Some(p) = line.strip_prefix(CORE_LINE) {
                cores.push(String::from_utf8_lossy(p).into_owned());
            }
            conv.feed(line)
        });
        conv.finish();
        let lost = matches!(&res, Err(e) if e.is_target_lost() || e.is_crash());
        if let (Some(dir), false) = (&self.cores, lost) {
            self.fetch_cores(exec, &b.pkg, &cores, dir, tx);
        }
        let _ = tx.send(WorkerMsg::Done(Done {
            pkg: b.pkg.clone(),
            res,
            expected,
            elapsed: t0.elapsed(),
        }));
        lost
    }

    /// Fetches the core files a run left into `dir`, removing them from the target.
    fn fetch_cores(
        &self,
        exec: &mut dyn Executor,
        pkg: &str,
        cores: &[String],
        dir: &Path,
        tx: &std::sync::mpsc::Sender<WorkerMsg>,
    ) {
        for remote in cores {
            // Numbered: a rerun that hangs again leaves another core of the same name.
            let n = std::fs::read_dir(dir).map_or(0, |d| d.count()) + 1;
            let name = format!("{n:03}-{}.core", pkg.replace(['/', '\\', ':'], "_"));
            let local = dir.join(name);
            let note = match exec.download(remote, &local) {
                Ok(n) => {
                    let _ = tx.send(WorkerMsg::Core(pkg.to_string(), local));
                    format!("{HARNESS_MARK}kept the core file of {pkg} ({n} bytes)")
                }
                Err(e) => format!("{HARNESS_MARK}could not fetch the core file {remote}: {e}"),
            };
            let _ = tx.send(WorkerMsg::Note(note));
            let rm = ExecRequest {
                argv: vec!["rm".into(), "-f".into(), remote.clone()],
                env: Vec::new(),
                cwd: None,
                timeout: Duration::from_secs(30),
                cancel: self.cancel.clone(),
                dump_on_timeout: false,
            };
            let _ = exec.run(&rm, &mut |_, _| {});
        }
    }

    /// Applies one worker message to the run's state.
    /// Runs count towards the sub-phase `phase` (`run` or `rerun`).
    pub(crate) fn fold(&self, msg: WorkerMsg, phase: &str, st: &mut State<'_>) {
        match msg {
            WorkerMsg::Line(l) => st.line(&l),
            WorkerMsg::Note(n) => st.note(&n),
            WorkerMsg::Done(d) => {
                let end = Instant::now();
                st.clock.span(phase, end - d.elapsed, end);
                st.settle(&d.pkg, d.res, self.timeout, Some(d.elapsed));
                if let Some(expected) = &d.expected {
                    st.not_run(&d.pkg, expected);
                }
            }
            WorkerMsg::NoConverter(pkg, why) => st.errored(&pkg, &why),
            WorkerMsg::Core(pkg, path) => st.cores.push((pkg, path)),
            WorkerMsg::Uploaded { bytes, start, end } => {
                st.uploaded_bytes += bytes;
                st.clock.span("upload", start, end);
            }
            WorkerMsg::UploadFailed(pkgs, e) => {
                // After a crash they are left for the next segment.
                if !e.is_crash() {
                    let msg = e.to_string();
                    for p in &pkgs {
                        st.errored(p, &msg);
                    }
                }
                st.target_error(&e);
            }
        }
    }

    /// Runs the jobs on the sessions and folds what they report.
    pub fn run(
        &self,
        execs: &mut [&mut dyn Executor],
        jobs: Vec<Job>,
        phase: &str,
        opts: &RunOptions,
        st: &mut State<'_>,
    ) {
        let queue = Mutex::new(std::collections::VecDeque::from(jobs));
        let stop = AtomicBool::new(stop_reason(opts, st).is_some());
        let (tx, rx) = std::sync::mpsc::channel::<WorkerMsg>();
        std::thread::scope(|s| {
            for exec in execs.iter_mut() {
                let tx = tx.clone();
                let (queue, stop) = (&queue, &stop);
                s.spawn(move || {
                    while !stop.load(Ordering::SeqCst) {
                        let Some(job) = queue.lock().expect("queue").pop_front() else {
                            break;
                        };
                        if self.work(&mut **exec, job, &tx) {
                            stop.store(true, Ordering::SeqCst);
                        }
                    }
                });
            }
            drop(tx);
            for msg in rx {
                self.fold(msg, phase, st);
                if stop_reason(opts, st).is_some() {
                    stop.store(true, Ordering::SeqCst);
                }
            }
        });
        if st.crashed.is_some() {
            return; // the next segment runs what is left
        }
        for job in queue.into_inner().expect("queue") {
            let why = stop_reason(opts, st).unwrap_or_else(|| "not run".into());
            st.errored(&job.built.pkg, &why);
        }
    }
}
