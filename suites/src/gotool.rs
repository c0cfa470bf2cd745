//! The host's Go toolchain: listing packages, cross-compiling test binaries, and the test2json
//! converter that turns a test binary's `-test.v=test2json` output into real test2json events.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use serde::Deserialize;

use crate::exec::{ExecRequest, Executor, Stream};
use crate::local::LocalExecutor;

/// A problem with the host's Go toolchain.
#[derive(Debug, thiserror::Error)]
pub enum GoError {
    /// `go` is missing or failed.
    #[error(
        "`{cmd}` failed in {dir}: {detail}; check that Go is installed on the host and that the suite's path is a Go module"
    )]
    Command {
        /// The command line.
        cmd: String,
        /// Where it ran.
        dir: String,
        /// Its output or error.
        detail: String,
    },
    /// Packages the suite names that `go list` cannot load (no such directory, no module
    /// provides it): the suite's `packages` are wrong, not Go.
    #[error(
        "{}; fix `packages` in the suite's config (`go list ./...` in {dir} shows the module's packages)",
        missing.iter().map(|(p, e)| format!("package `{p}` cannot be loaded: {e}")).collect::<Vec<_>>().join("; ")
    )]
    NoSuchPackage {
        /// The module directory.
        dir: String,
        /// Each package (as the suite names it) with go list's reason.
        missing: Vec<(String, String)>,
    },
    /// The cancel flag (Ctrl-C) stopped it.
    #[error("`{cmd}` was cancelled (Ctrl-C)")]
    Cancelled {
        /// The command line.
        cmd: String,
    },
}

/// One package from `go list -json`.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "PascalCase")]
pub struct ListedPackage {
    /// Import path.
    pub import_path: String,
    /// Directory on the host (empty when the package could not be found).
    #[serde(default)]
    pub dir: PathBuf,
    /// Package name.
    #[serde(default)]
    pub name: String,
    /// `_test.go` files of the package itself.
    #[serde(default)]
    pub test_go_files: Vec<String>,
    /// `_test.go` files of the external test package.
    #[serde(default)]
    pub x_test_go_files: Vec<String>,
    /// Why `go list` could not load the package (`-e` reports it here instead of failing).
    #[serde(default)]
    pub error: Option<ListError>,
}

/// `go list`'s `Error` field.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "PascalCase")]
pub struct ListError {
    /// The message.
    #[serde(default)]
    pub err: String,
}

impl ListedPackage {
    /// Whether `go test` would build a test binary for it.
    pub fn has_tests(&self) -> bool {
        !self.test_go_files.is_empty() || !self.x_test_go_files.is_empty()
    }
}

/// How many times [`HostGo::test2json_path`] asks before it gives up.
const TEST2JSON_ATTEMPTS: u32 = 8;

/// The host's `go`, run through a local executor (own process group, timeout, cancel).
#[derive(Debug, Clone)]
pub struct HostGo {
    /// The `go` program.
    pub go: String,
    /// The module directory commands run in.
    pub dir: PathBuf,
    /// Environment for every command (GOOS, GOARCH, CGO_ENABLED…).
    pub env: Vec<(String, String)>,
    /// Raised by Ctrl-C.
    pub cancel: Option<hostproc::Cancel>,
}

/// Output and exit code of a host command.
#[derive(Debug, Clone)]
pub struct HostOutput {
    /// Exit code (`None` when killed).
    pub code: Option<i32>,
    /// Standard output lines.
    pub stdout: Vec<String>,
    /// Standard error lines.
    pub stderr: Vec<String>,
    /// Killed by the timeout.
    pub timed_out: bool,
    /// Killed because the cancel flag was raised.
    pub cancelled: bool,
}

impl HostOutput {
    /// What a failed command said: its standard error, then its standard output, then
    /// `timeout_note` when its timeout killed it.
    pub fn diagnostics(self, timeout_note: &str) -> Vec<String> {
        let mut lines = self.stderr;
        lines.extend(self.stdout);
        if self.timed_out {
            lines.push(timeout_note.to_string());
        }
        lines
    }
}

impl HostGo {
    /// Runs `go ARGS…`.
    pub fn run(&self, args: &[String], timeout: Duration) -> Result<HostOutput, GoError> {
        let mut argv = vec![self.go.clone()];
        argv.extend(args.iter().cloned());
        let req = ExecRequest {
            argv: argv.clone(),
            env: self.env.clone(),
            cwd: Some(self.dir.display().to_string()),
            timeout,
            cancel: self.cancel.clone(),
            dump_on_timeout: false,
        };
        let mut out = HostOutput {
            code: None,
            stdout: Vec::new(),
            stderr: Vec::new(),
            timed_out: false,
            cancelled: false,
        };
        let outcome = LocalExecutor::new(std::env::temp_dir())
            .run(&req, &mut |s, l| {
                let l = String::from_utf8_lossy(l).into_owned();
                match s {
                    Stream::Stdout => out.stdout.push(l),
                    Stream::Stderr => out.stderr.push(l),
                }
            })
            .map_err(|e| self.err(&argv, e.to_string()))?;
        out.code = outcome.exit_code;
        out.timed_out = outcome.timed_out;
        out.cancelled = outcome.cancelled;
        Ok(out)
    }

    fn err(&self, argv: &[String], detail: String) -> GoError {
        GoError::Command {
            cmd: argv.join(" "),
            dir: self.dir.display().to_string(),
            detail,
        }
    }

    fn run_ok(&self, args: &[String], timeout: Duration) -> Result<HostOutput, GoError> {
        let out = self.run(args, timeout)?;
        if out.code != Some(0) {
            let mut argv = vec![self.go.clone()];
            argv.extend(args.iter().cloned());
            if out.cancelled {
                return Err(GoError::Cancelled {
                    cmd: argv.join(" "),
                });
            }
            let detail = if out.timed_out {
                format!("timed out after {}s", timeout.as_secs())
            } else {
                let tail: Vec<&String> = out.stderr.iter().rev().take(20).collect();
                tail.into_iter()
                    .rev()
                    .cloned()
                    .collect::<Vec<_>>()
                    .join("\n")
            };
            return Err(self.err(&argv, detail));
        }
        Ok(out)
    }

    /// Lists the packages matching `patterns` (with this `HostGo`'s GOOS/GOARCH build tags).
    pub fn list(
        &self,
        patterns: &[String],
        build_flags: &[String],
    ) -> Result<Vec<ListedPackage>, GoError> {
        let mut args = vec![
            "list".to_string(),
            "-e".into(),
            "-json=ImportPath,Dir,Name,TestGoFiles,XTestGoFiles,Error".into(),
        ];
        args.extend(
            build_flags
                .iter()
                .filter(|f| f.starts_with("-tags") || f.starts_with("-mod"))
                .cloned(),
        );
        args.extend(patterns.iter().cloned());
        let out = self.run_ok(&args, Duration::from_secs(300))?;
        let text = out.stdout.join("\n");
        let listed = serde_json::Deserializer::from_str(&text)
            .into_iter::<ListedPackage>()
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| self.err(&args, format!("unexpected `go list` output: {e}")))?;
        self.found(listed)
    }

    /// The listed packages, or [`GoError::NoSuchPackage`] naming every one `go list` could not
    /// find. A package that exists but does not compile is kept: building it reports why.
    fn found(&self, listed: Vec<ListedPackage>) -> Result<Vec<ListedPackage>, GoError> {
        let missing: Vec<(String, String)> = listed
            .iter()
            .filter(|p| p.dir.as_os_str().is_empty())
            .map(|p| {
                let why = p
                    .error
                    .as_ref()
                    .map_or("go list found no directory", |e| e.err.as_str());
                (
                    p.import_path.clone(),
                    why.replace('\n', " ").replace('\t', ""),
                )
            })
            .collect();
        if missing.is_empty() {
            Ok(listed)
        } else {
            Err(GoError::NoSuchPackage {
                dir: self.dir.display().to_string(),
                missing,
            })
        }
    }

    /// The path of the test2json tool (built on first use by `go tool`).
    ///
    /// Since Go 1.24 the tool lives in the build cache. While another `go` is writing that
    /// entry (two runs sharing one GOCACHE), `go tool -n` prints a "DO NOT USE - …" marker
    /// instead of a path; such answers are asked again, a bounded number of times.
    pub fn test2json_path(&self) -> Result<PathBuf, GoError> {
        let args = vec!["tool".to_string(), "-n".into(), "test2json".into()];
        let mut last = String::new();
        for attempt in 0..TEST2JSON_ATTEMPTS {
            if attempt > 0 {
                // Short enough for Ctrl-C; the next `go` run checks the cancel flag.
                std::thread::sleep(Duration::from_millis(250));
            }
            let out = self.run_ok(&args, Duration::from_secs(300))?;
            last = out
                .stdout
                .iter()
                .map(|l| l.trim())
                .find(|l| !l.is_empty())
                .unwrap_or_default()
                .to_string();
            let path = PathBuf::from(&last);
            if path.is_file() {
                return Ok(path);
            }
        }
        Err(self.err(
            &args,
            format!(
                "printed {last:?}, not the path of a built tool ({TEST2JSON_ATTEMPTS} tries); \
                 run `go tool -n test2json` by hand, or clear the build cache with `go clean -cache`"
            ),
        ))
    }

    /// `go mod vendor -o OUT`: the module's dependencies as a vendor tree, for a guest without
    /// internet. `Ok(false)` when there was nothing to vendor.
    pub fn vendor(&self, out: &Path) -> Result<bool, GoError> {
        let args = vec![
            "mod".to_string(),
            "vendor".into(),
            "-o".into(),
            out.display().to_string(),
        ];
        self.run_ok(&args, Duration::from_secs(600))?;
        Ok(out.join("modules.txt").is_file())
    }

    /// `go version`, for provenance.
    pub fn version(&self) -> Option<String> {
        self.run(&["version".to_string()], Duration::from_secs(60))
            .ok()?
            .stdout
            .first()
            .cloned()
    }
}

/// The git commit of the tree at `dir`, for provenance (`None` outside git).
pub fn git_commit(dir: &Path) -> Option<String> {
    let argv = ["git", "-C", &dir.display().to_string(), "rev-parse", "HEAD"].map(String::from);
    quick(&argv, Duration::from_secs(30))
        .filter(|(code, _)| *code == Some(0))
        .map(|(_, out)| out.trim().to_string())
}

/// Runs a short host command with a timeout (killed with its process group when it expires, no
/// GitHub token in its environment); its exit code and stdout.
pub fn quick(argv: &[String], timeout: Duration) -> Option<(Option<i32>, String)> {
    let req = ExecRequest {
        argv: argv.to_vec(),
        env: Vec::new(),
        cwd: None,
        timeout,
        cancel: None,
        dump_on_timeout: false,
    };
    let mut out = String::new();
    let outcome = LocalExecutor::new(std::env::temp_dir())
        .run(&req, &mut |s, l| {
            if s == Stream::Stdout {
                out.push_str(&String::from_utf8_lossy(l));
                out.push('\n');
            }
        })
        .ok()?;
    (!outcome.timed_out).then_some((outcome.exit_code, out))
}

/// A running `test2json -t -p PKG` child: feed it the test binary's lines, get events back.
pub struct Converter {
    child: Child,
    stdin: Option<ChildStdin>,
    rx: mpsc::Receiver<String>,
    /// Gets a message when test2json's output has ended.
    done: mpsc::Receiver<String>,
}

impl Converter {
    /// Starts the converter for package `pkg`; events are collected for [`Converter::ready`].
    pub fn start(test2json: &Path, pkg: &str) -> std::io::Result<Self> {
        let (tx, rx) = mpsc::channel();
        let mut c = Self::start_with_sink(test2json, pkg, move |l| {
            let _ = tx.send(l);
        })?;
        c.rx = rx;
        Ok(c)
    }

    /// Starts the converter for package `pkg`, handing each event to `sink` as soon as
    /// test2json prints it (so that a test that starts and then stays silent shows at once).
    pub fn start_with_sink(
        test2json: &Path,
        pkg: &str,
        sink: impl Fn(String) + Send + 'static,
    ) -> std::io::Result<Self> {
        let mut child = Command::new(test2json)
            .env_remove(crate::local::SECRET_ENV[0])
            .env_remove(crate::local::SECRET_ENV[1])
            .args(["-t", "-p", pkg])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .process_group(0)
            .spawn()?;
        let stdin = child.stdin.take();
        let stdout = child.stdout.take().expect("piped");
        let (done_tx, done) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                sink(line);
            }
            let _ = done_tx.send(String::new());
        });
        let (_, rx) = mpsc::channel();
        Ok(Converter {
            child,
            stdin,
            rx,
            done,
        })
    }

    /// Feeds one line of the test binary's output.
    pub fn feed(&mut self, line: &[u8]) {
        if let Some(w) = self.stdin.as_mut()
            && (w.write_all(line).is_err() || w.write_all(b"\n").is_err())
        {
            self.stdin = None;
        }
    }

    /// Events converted so far, without waiting.
    pub fn ready(&mut self) -> Vec<String> {
        self.rx.try_iter().collect()
    }

    /// Ends the input and returns the remaining events (waits at most 30 s for test2json to
    /// finish; with a sink, they went to the sink).
    pub fn finish(mut self) -> Vec<String> {
        self.stdin = None;
        let _ = self.done.recv_timeout(Duration::from_secs(30));
        self.rx.try_iter().collect()
    }
}

impl Drop for Converter {
    fn drop(&mut self) {
        self.stdin = None;
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    /// A stand-in `go` whose `tool -n test2json` answers `marker` the first `bad` times, then
    /// the path of a real file.
    fn fake_go(dir: &Path, bad: u32, marker: &str) -> HostGo {
        let tool = dir.join("test2json");
        std::fs::write(&tool, "").unwrap();
        let script = dir.join("go");
        std::fs::write(
            &script,
            format!(
                "#!/bin/sh\nn=$(cat {d}/count 2>/dev/null || echo 0)\necho $((n+1)) > {d}/count\n\
                 if [ \"$n\" -lt {bad} ]; then echo '{marker}'; else echo {t}; fi\n",
                d = dir.display(),
                t = tool.display()
            ),
        )
        .unwrap();
        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
        HostGo {
            go: script.display().to_string(),
            dir: dir.to_path_buf(),
            env: vec![],
            cancel: None,
        }
    }

    #[test]
    fn test2json_path_asks_again_while_another_go_writes_the_cache_entry() {
        let d = tempfile::tempdir().unwrap();
        let go = fake_go(d.path(), 2, "DO NOT USE - invalid binary cache entry");
        assert_eq!(go.test2json_path().unwrap(), d.path().join("test2json"));
        let asked = std::fs::read_to_string(d.path().join("count")).unwrap();
        assert_eq!(asked.trim(), "3");
    }

    #[test]
    fn test2json_path_gives_up_with_what_go_printed() {
        let d = tempfile::tempdir().unwrap();
        let go = fake_go(d.path(), 100, "DO NOT USE - missing binary cache entry");
        let e = go.test2json_path().unwrap_err().to_string();
        assert!(e.contains("DO NOT USE - missing binary cache entry"), "{e}");
        assert!(e.contains("go clean -cache"), "{e}");
    }
}
