//! Guest mode: sync the module's source (vendored) and run `go test -json` with the guest's Go.

use super::*;
use crate::cas::{self, TreeSync};
use crate::event::HARNESS_MARK;
use crate::exec::{ExecError, ExecRequest, Executor};
use crate::flags::GoTestFlags;
use crate::gotool::GoError;
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

    let mut defined = BTreeMap::new();
    rerun_rounds(opts, os, st, &mut |st, targets, trace_log| {
        for t in targets {
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
    });
    Ok(())
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
