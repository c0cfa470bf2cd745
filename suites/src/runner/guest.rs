//! Guest mode: sync the module's source (vendored) and run `go test -json` with the guest's Go.

use super::*;
use crate::cas::{self, TreeSync};
use crate::event::HARNESS_MARK;
use crate::exec::{ExecError, ExecOutcome, ExecRequest, Executor, TargetOs};
use crate::flags::GoTestFlags;
use crate::gotool::{GoError, ListedPackage};
use crate::guest_probe::{guest_keep_defined, guest_list};
use crate::stage::Stager;
use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

/// Whether the module has dependencies and no `vendor` directory of its own.
pub(crate) fn needs_vendor(module: &Path) -> bool {
    !module.join("vendor").exists()
        && std::fs::read_to_string(module.join("go.mod"))
            .is_ok_and(|t| t.lines().any(|l| l.trim_start().starts_with("require")))
}

pub(crate) fn is_git(p: &Path) -> bool {
    p.components().any(|c| c.as_os_str() == ".git")
}

pub(crate) fn run_guest(
    exec: &mut dyn Executor,
    opts: &RunOptions,
    flags: &GoTestFlags,
    st: &mut State<'_>,
) -> Result<(), SuiteError> {
    let mut f = flags.clone();
    let timeout_s = opts.suite.package_timeout.max(1);
    if f.get("timeout").is_none() {
        f.set("timeout", &format!("{timeout_s}s"));
    }
    st.phase("uploading");
    let remote = exec.remote_dir(&format!("suite-{}-src", opts.suite_name));
    // The staged source and vendored dependencies, kept until the run ends.
    let work = staging_dir("harness-vendor-")?;
    let Some(patterns) = upload(exec, opts, &mut f, &remote, work.path(), st)? else {
        return Ok(());
    };

    st.phase("running");
    let run = GuestRun {
        opts,
        env: test_env(opts),
        remote,
        guest_go: opts.suite.guest_go.clone(),
        timeout: Duration::from_secs(timeout_s),
    };
    let run_start = Instant::now();
    run.first_runs(exec, st, &f, &patterns);
    st.clock.span("run", run_start, Instant::now());
    run.reruns(exec, st, &f);
    Ok(())
}

/// Uploads the module's source and, for an offline guest, its vendored dependencies (staged in
/// `work`); returns the packages to run, or `None` when there is nothing to run: no packages,
/// or the upload failed (its packages are then recorded errored).
fn upload(
    exec: &mut dyn Executor,
    opts: &RunOptions,
    f: &mut GoTestFlags,
    remote: &str,
    work: &Path,
    st: &mut State<'_>,
) -> Result<Option<Vec<String>>, SuiteError> {
    let os = exec.os();
    let vendor_dir = work.join("vendor");
    let source_dir = work.join("source");
    stage_source(opts, os, &source_dir, st)?;
    let want_vendor = opts.suite.vendor && needs_vendor(&opts.module_dir);
    let upload_start = Instant::now();
    let vendor_to = want_vendor.then_some(vendor_dir.as_path());
    let host = upload_while_listing(exec, opts, f, remote, &source_dir, vendor_to);
    st.clock.span("list", upload_start, host.list_end);
    let uploaded = host.uploaded.map(|b| st.uploaded_bytes += b);
    let patterns = plan(opts, os, remote, host.listed, st)?;
    if patterns.is_empty() {
        return Ok(None);
    }
    let uploaded =
        uploaded.and_then(|()| upload_vendor(exec, f, remote, &vendor_dir, host.vendored, st));
    st.clock.span("upload", upload_start, Instant::now());
    if let Err(e) = uploaded {
        if !e.is_crash() {
            let msg = e.to_string();
            for p in &patterns {
                st.errored(p, &msg);
            }
        }
        st.target_error(&e);
        return Ok(None);
    }
    Ok(Some(patterns))
}

/// Copies the module, without its `.git`, to `source_dir`.
fn stage_source(
    opts: &RunOptions,
    os: TargetOs,
    source_dir: &Path,
    st: &mut State<'_>,
) -> Result<(), SuiteError> {
    let mut stager = Stager::new(&opts.module_dir, os, &|r| !is_git(r));
    stager
        .dir(&opts.module_dir, source_dir, &is_git)
        .map_err(|e| SuiteError::Staging {
            path: source_dir.to_path_buf(),
            source: e,
        })?;
    for w in std::mem::take(&mut stager.warnings) {
        st.warn(&w);
    }
    Ok(())
}

/// What the host did while the source uploaded, and how the upload went.
struct HostSide {
    listed: Result<Vec<ListedPackage>, GoError>,
    list_end: Instant,
    vendored: Option<Result<bool, GoError>>,
    uploaded: Result<u64, ExecError>,
}

/// Uploads the staged source while the host lists the packages (if it has Go: this tells how
/// many packages to expect, which a lost target needs to mark the rest errored, and sharding
/// cannot work without it) and vendors the dependencies into `vendor_to`, if given (an offline
/// guest gets them that way).
fn upload_while_listing(
    exec: &mut dyn Executor,
    opts: &RunOptions,
    f: &GoTestFlags,
    remote: &str,
    source_dir: &Path,
    vendor_to: Option<&Path>,
) -> HostSide {
    let go = host_go(
        opts,
        vec![
            ("GOOS".to_string(), exec.os().goos().to_string()),
            ("GOARCH".to_string(), exec.arch()),
        ],
    );
    let native_go = host_go(opts, Vec::new());
    std::thread::scope(|s| {
        let host_side = s.spawn(|| {
            let listed = go.list(&opts.suite.packages, &f.build_args());
            let list_end = Instant::now();
            let vendored = vendor_to.map(|d| native_go.vendor(d));
            (listed, vendored, list_end)
        });
        let uploaded = upload_tree(exec, source_dir, remote);
        let (listed, vendored, list_end) = host_side
            .join()
            .expect("host-side preparation does not panic");
        HostSide {
            listed,
            list_end,
            vendored,
            uploaded,
        }
    })
}

/// Syncs the host folder `local` to `remote` on the target; returns the bytes sent.
fn upload_tree(exec: &mut dyn Executor, local: &Path, remote: &str) -> Result<u64, ExecError> {
    TreeSync::open(exec, remote)
        .and_then(|mut sync| cas::upload(exec, sync.as_mut(), local, remote, &|_| true, true))
}

/// The packages to run: the host's listing (sharded) when there is one, else the suite's
/// patterns as they are. With a listing, announces the plan and records where each package
/// runs on the target.
fn plan(
    opts: &RunOptions,
    os: TargetOs,
    remote: &str,
    listed: Result<Vec<ListedPackage>, GoError>,
    st: &mut State<'_>,
) -> Result<Vec<String>, SuiteError> {
    let listed = match listed {
        Ok(l) => select(opts, l),
        Err(e @ GoError::NoSuchPackage { .. }) => return Err(e.into()),
        Err(_) if opts.shard.is_none() => return Ok(opts.suite.packages.clone()),
        Err(_) => return Err(SuiteError::ShardNeedsGo),
    };
    st.planned = listed.iter().map(|p| p.import_path.clone()).collect();
    st.obs.on_event(
        &RunEvent::Planned {
            packages: listed.len(),
        },
        &st.ex,
    );
    for p in &listed {
        let rel = rel_dir(&opts.module_dir, &p.dir);
        st.package_dirs
            .push((p.import_path.clone(), os.join(remote, &rel)));
    }
    Ok(st.planned.clone())
}

/// Uploads the dependencies the host vendored, and has `go test` use them (`-mod=vendor`
/// unless the suite sets `-mod`); a failed vendoring is only a note.
fn upload_vendor(
    exec: &mut dyn Executor,
    f: &mut GoTestFlags,
    remote: &str,
    vendor_dir: &Path,
    vendored: Option<Result<bool, GoError>>,
    st: &mut State<'_>,
) -> Result<(), ExecError> {
    match vendored {
        Some(Ok(true)) => {
            if !f.has_build("mod") {
                f.build.push(("mod".into(), Some("vendor".into())));
            }
            let dest = exec.os().join(remote, "vendor");
            upload_tree(exec, vendor_dir, &dest).map(|b| st.uploaded_bytes += b)
        }
        Some(Err(e)) => {
            let note =
                format!("{HARNESS_MARK}could not vendor the dependencies for the guest: {e}");
            tracing::warn!("{note}");
            st.other.push(note);
            Ok(())
        }
        _ => Ok(()),
    }
}

/// Guest mode's `go test` runs, in the uploaded source.
struct GuestRun<'a> {
    opts: &'a RunOptions,
    env: Vec<(String, String)>,
    /// The source folder on the target.
    remote: String,
    guest_go: String,
    /// Each package's timeout.
    timeout: Duration,
}

impl GuestRun<'_> {
    /// A request to run `argv` in the source folder.
    fn request(&self, argv: Vec<String>, timeout: Duration, dump_on_timeout: bool) -> ExecRequest {
        ExecRequest {
            argv,
            env: self.env.clone(),
            cwd: Some(self.remote.clone()),
            timeout,
            cancel: self.opts.cancel.clone(),
            dump_on_timeout,
        }
    }

    /// A question to `go test` (its tests, its binary's flags), which may have to build first.
    fn probe(&self, argv: Vec<String>) -> ExecRequest {
        self.request(argv, GUEST_BUILD_ALLOWANCE, false)
    }

    /// The first run: all packages in one `go test`, or with repro targets one package at a
    /// time, each with its target's `-run`. Each run lists the tests first, so that the listed
    /// tests it never reaches are recorded as not run.
    fn first_runs(
        &self,
        exec: &mut dyn Executor,
        st: &mut State<'_>,
        f: &GoTestFlags,
        patterns: &[String],
    ) {
        let one_by_one = self.opts.targets.is_some();
        let runs: Vec<(GoTestFlags, &[String], Duration)> = if one_by_one {
            let budget = self.timeout + GUEST_BUILD_ALLOWANCE;
            patterns
                .iter()
                .map(|p| {
                    (
                        first_run_flags(self.opts, f, p),
                        std::slice::from_ref(p),
                        budget,
                    )
                })
                .collect()
        } else {
            let budget = self.timeout * (patterns.len().max(1) as u32) + GUEST_BUILD_ALLOWANCE;
            vec![(f.clone(), patterns, budget)]
        };
        let req = |argv| self.probe(argv);
        for (run_flags, pkgs, budget) in runs {
            if one_by_one && stop_reason(self.opts, st).is_some() {
                break;
            }
            let listed = guest_list(exec, st, &req, &self.guest_go, &run_flags, pkgs);
            self.go_test(exec, st, &run_flags, pkgs, budget);
            for (pkg, tests) in listed {
                st.not_run(&pkg, &tests);
            }
        }
    }

    /// The rerun rounds: each failed package on its own, with only the pass-through flags its
    /// test binary defines.
    fn reruns(&self, exec: &mut dyn Executor, st: &mut State<'_>, f: &GoTestFlags) {
        let os = exec.os();
        let req = |argv| self.probe(argv);
        let mut defined = BTreeMap::new();
        rerun_rounds(self.opts, os, st, &mut |st, targets, trace_log| {
            for t in targets {
                if stop_reason(self.opts, st).is_some() {
                    break;
                }
                let mut rf = rerun_flags(f, t, trace_log);
                let pkg = &t.package;
                guest_keep_defined(exec, st, &req, &self.guest_go, pkg, &mut rf, &mut defined);
                let rerun_start = Instant::now();
                let budget = self.timeout + GUEST_BUILD_ALLOWANCE;
                self.go_test(exec, st, &rf, std::slice::from_ref(pkg), budget);
                st.clock.span("rerun", rerun_start, Instant::now());
                if let Some(tests) = &t.tests {
                    st.not_run(pkg, tests);
                }
            }
        });
    }

    /// One `go test -json` of `pkgs` within `budget`: ends the packages it left running,
    /// records what happened to the target, and errors the packages it never started.
    fn go_test(
        &self,
        exec: &mut dyn Executor,
        st: &mut State<'_>,
        f: &GoTestFlags,
        pkgs: &[String],
        budget: Duration,
    ) {
        let mut argv = vec![
            self.guest_go.clone(),
            "test".to_string(),
            "-json".to_string(),
        ];
        argv.extend(f.go_test_args());
        argv.extend(pkgs.iter().cloned());
        argv.extend(f.go_test_trailer());
        let req = self.request(argv, budget, true);
        let res = exec.run(&req, &mut |_, line| st.line(&String::from_utf8_lossy(line)));
        let unfinished: Vec<String> = st
            .ex
            .packages
            .iter()
            .filter(|p| st.is_running(&p.name))
            .map(|p| p.name.clone())
            .collect();
        if let Ok(o) = &res
            && unfinished.is_empty()
        {
            failed_without_a_test(st, o);
        }
        for p in &unfinished {
            let outcome = res.as_ref().map(|o| *o).map_err(clone_exec_error);
            st.settle(p, outcome, self.timeout, None);
        }
        if let Err(e) = &res {
            st.target_error(e);
        }
        if let Some(why) = not_run_reason(&res, budget) {
            for p in pkgs {
                if st.ex.package(p).is_none() && !p.contains("...") {
                    st.errored(p, &why);
                }
            }
        }
    }
}

/// A `go test` that failed with neither a failing test nor a package left running (a bad flag,
/// a broken pattern): the run's error says so, with the last lines it printed.
fn failed_without_a_test(st: &mut State<'_>, o: &ExecOutcome) {
    let Some(code) = o.exit_code.filter(|&c| c != 0) else {
        return;
    };
    if st.ex.packages.iter().any(|p| p.has_failures()) {
        return;
    }
    let tail: Vec<&String> = st.other.iter().rev().take(10).collect();
    let tail: Vec<String> = tail.into_iter().rev().cloned().collect();
    st.error.get_or_insert_with(|| {
        format!(
            "`go test` exited with code {code} without a failing test: {}",
            tail.join(" | ")
        )
    });
}

/// Why the packages of a `go test` that ended early were not run; `None` after a crash (they
/// are left for the segment after it) or a normal end.
fn not_run_reason(res: &Result<ExecOutcome, ExecError>, budget: Duration) -> Option<String> {
    match res {
        Err(e) if e.is_crash() => None,
        Err(e) => Some(format!("not run: {e}")),
        Ok(o) if o.timed_out => Some(format!(
            "not run: `go test` exceeded its overall budget of {}s and was killed",
            budget.as_secs()
        )),
        Ok(o) if o.cancelled => Some("not run: cancelled by the user (Ctrl-C)".into()),
        _ => None,
    }
}

pub(crate) fn clone_exec_error(e: &ExecError) -> ExecError {
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
