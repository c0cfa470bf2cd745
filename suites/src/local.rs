//! [`LocalExecutor`]: the local machine as the test target (tests, benchmark, Linux CI).

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::exec::{ExecError, ExecOutcome, ExecRequest, Executor, Stream, TargetOs, UploadFilter};

/// Environment variables holding secrets (the GitHub token) that host commands run for a suite
/// (`go`, test binaries) do not inherit.
pub use hostproc::SECRET_ENV;

/// Runs commands on this machine, each in its own process group, killed on timeout, on cancel
/// and when dropped mid-run (through [`hostproc`]).
#[derive(Debug)]
pub struct LocalExecutor {
    base: PathBuf,
}

impl LocalExecutor {
    /// An executor whose scratch directories live under `base`.
    pub fn new(base: impl Into<PathBuf>) -> Self {
        Self { base: base.into() }
    }
}

impl Executor for LocalExecutor {
    fn os(&self) -> TargetOs {
        TargetOs::Linux
    }

    fn arch(&self) -> String {
        match std::env::consts::ARCH {
            "x86_64" => "amd64".into(),
            "aarch64" => "arm64".into(),
            other => other.into(),
        }
    }

    fn run(
        &mut self,
        req: &ExecRequest,
        on_line: &mut dyn FnMut(Stream, &[u8]),
    ) -> Result<ExecOutcome, ExecError> {
        let Some((program, args)) = req.argv.split_first() else {
            return Err(ExecError::Spawn {
                program: String::new(),
                detail: "empty command line".into(),
            });
        };
        let mut cmd = Command::new(program);
        // The GitHub token harness may hold is no business of go or the tests (a suite's `env`
        // can still pass one on purpose: hostproc keeps what is set explicitly).
        cmd.args(args).envs(req.env.iter().map(|(k, v)| (k, v)));
        if let Some(cwd) = &req.cwd {
            cmd.current_dir(cwd);
        }
        tracing::debug!(argv = ?req.argv, cwd = ?req.cwd, "local exec");
        let running = hostproc::Running::start(cmd).map_err(|e| ExecError::Spawn {
            program: program.clone(),
            detail: e.to_string(),
        })?;
        let cancel = req.cancel.as_ref();
        let dump = req.dump_on_timeout;
        // Both callbacks print: the dump note must come before the dump it announces.
        let on_line = std::cell::RefCell::new(on_line);
        let outcome = running
            .finish_with(
                req.timeout,
                cancel,
                &mut |s, l| {
                    (on_line.borrow_mut())(
                        match s {
                            hostproc::Stream::Stdout => Stream::Stdout,
                            hostproc::Stream::Stderr => Stream::Stderr,
                        },
                        l,
                    )
                },
                &mut |pgid| {
                    // Ask hung Go test binaries for their goroutines before the kill.
                    dump.then(|| {
                        let note = crate::hang::quit_test_binaries(pgid as i32, req.timeout);
                        (on_line.borrow_mut())(Stream::Stderr, note.as_bytes());
                        crate::hang::GRACE
                    })
                },
            )
            .map_err(|e| ExecError::Io {
                what: format!("waiting for `{program}`"),
                source: e,
            })?;
        Ok(ExecOutcome {
            exit_code: outcome.code(),
            timed_out: outcome.timed_out,
            cancelled: outcome.cancelled,
        })
    }

    fn upload_tree(
        &mut self,
        local: &Path,
        remote: &str,
        skip: UploadFilter<'_>,
    ) -> Result<(), ExecError> {
        let err = |detail: String| ExecError::upload(local, remote, detail);
        copy_tree(local, Path::new(remote), Path::new(""), skip).map_err(|e| err(e.to_string()))
    }

    fn remote_dir(&self, name: &str) -> String {
        self.base.join(name).display().to_string()
    }

    fn download(&mut self, remote: &str, local: &Path) -> Result<u64, ExecError> {
        std::fs::copy(remote, local).map_err(|e| ExecError::Io {
            what: format!("copying {remote} to {}", local.display()),
            source: e,
        })
    }

    fn try_clone(&self) -> Option<Box<dyn Executor>> {
        Some(Box::new(LocalExecutor::new(self.base.clone())))
    }
}

fn copy_tree(src: &Path, dst: &Path, rel: &Path, skip: UploadFilter<'_>) -> std::io::Result<()> {
    std::fs::create_dir_all(dst)?;
    for entry in std::fs::read_dir(src)? {
        let entry = entry?;
        let rel = rel.join(entry.file_name());
        if skip(&rel) {
            continue;
        }
        let ty = entry.file_type()?;
        let to = dst.join(entry.file_name());
        if ty.is_dir() {
            copy_tree(&entry.path(), &to, &rel, skip)?;
        } else if ty.is_symlink() {
            let target = std::fs::read_link(entry.path())?;
            let _ = std::fs::remove_file(&to);
            std::os::unix::fs::symlink(target, &to)?;
        } else {
            crate::stage::copy_keeping_mtime(&entry.path(), &to)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, Instant};

    fn req(argv: &[&str], timeout_ms: u64) -> ExecRequest {
        ExecRequest {
            argv: argv.iter().map(|s| s.to_string()).collect(),
            env: vec![("HARNESS_T".into(), "v1".into())],
            cwd: None,
            timeout: Duration::from_millis(timeout_ms),
            cancel: None,
            dump_on_timeout: false,
        }
    }

    #[test]
    fn runs_and_collects_lines_in_order() {
        let mut ex = LocalExecutor::new(std::env::temp_dir());
        let mut lines = Vec::new();
        let out = ex
            .run(
                &req(
                    &[
                        "sh",
                        "-c",
                        "echo a; echo \"$HARNESS_T\" >&2; printf 'no-newline'; exit 3",
                    ],
                    10_000,
                ),
                &mut |s, l| lines.push((s, String::from_utf8_lossy(l).into_owned())),
            )
            .unwrap();
        assert_eq!(
            out,
            ExecOutcome {
                exit_code: Some(3),
                timed_out: false,
                cancelled: false
            }
        );
        let texts: Vec<_> = lines.iter().map(|(_, l)| l.as_str()).collect();
        assert!(
            texts.contains(&"a") && texts.contains(&"v1") && texts.contains(&"no-newline"),
            "{lines:?}"
        );
    }

    #[test]
    fn timeout_kills_the_whole_group() {
        let dir = tempfile::tempdir().unwrap();
        let pidfile = dir.path().join("pid");
        let script = format!("sleep 60 & echo $! > {}; wait", pidfile.display());
        let mut ex = LocalExecutor::new(dir.path());
        let t0 = Instant::now();
        let out = ex
            .run(&req(&["sh", "-c", &script], 300), &mut |_, _| {})
            .unwrap();
        assert!(out.timed_out && out.exit_code.is_none(), "{out:?}");
        assert!(t0.elapsed() < Duration::from_secs(5));
        let pid: i32 = std::fs::read_to_string(&pidfile)
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        // The grandchild must be gone (reaped by init, or a zombie at worst, never sleeping).
        let mut gone = false;
        for _ in 0..50 {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            if stat.is_empty() || stat.contains(") Z ") {
                gone = true;
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        assert!(gone, "grandchild {pid} survived the timeout");
    }

    #[test]
    fn cancel_flag_stops_the_command() {
        let flag = hostproc::Cancel::default();
        flag.cancel();
        let mut r = req(&["sleep", "30"], 30_000);
        r.cancel = Some(flag);
        let out = LocalExecutor::new("/tmp").run(&r, &mut |_, _| {}).unwrap();
        assert!(out.cancelled && !out.timed_out);
    }

    #[test]
    fn missing_program_is_a_spawn_error() {
        let e = LocalExecutor::new("/tmp")
            .run(&req(&["/nonexistent/prog"], 1000), &mut |_, _| {})
            .unwrap_err();
        assert!(
            matches!(e, ExecError::Spawn { .. }) && !e.is_target_lost(),
            "{e}"
        );
    }

    #[test]
    fn upload_skips_filtered_entries() {
        let src = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(src.path().join(".git")).unwrap();
        std::fs::create_dir_all(src.path().join("a/testdata")).unwrap();
        std::fs::write(src.path().join(".git/HEAD"), "x").unwrap();
        std::fs::write(src.path().join("a/testdata/f"), "data").unwrap();
        let dst = tempfile::tempdir().unwrap();
        let remote = dst.path().join("up").display().to_string();
        LocalExecutor::new(dst.path())
            .upload_tree(src.path(), &remote, &|p: &Path| p == Path::new(".git"))
            .unwrap();
        assert_eq!(
            std::fs::read_to_string(dst.path().join("up/a/testdata/f")).unwrap(),
            "data"
        );
        assert!(!dst.path().join("up/.git").exists());
    }
}
