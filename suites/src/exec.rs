//! The executor seam: the one way suites touches the machine that runs the tests.
//!
//! suites knows nothing of VMs. `harness` backs [`Executor`] with a guest session (SSH);
//! the tests and the benchmark back it with [`crate::LocalExecutor`]. The trait is small and
//! synchronous on purpose: the runner drives one command at a time and reads its output as lines.

use std::path::Path;
use std::time::Duration;

/// The operating system of the target: decides GOOS, the `.exe` suffix and the path style.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TargetOs {
    /// A Linux target (the local machine, or a Linux guest).
    Linux,
    /// A Windows target (the efW guest).
    Windows,
}

impl TargetOs {
    /// The `GOOS` value to cross-compile for this target.
    pub fn goos(self) -> &'static str {
        match self {
            TargetOs::Linux => "linux",
            TargetOs::Windows => "windows",
        }
    }

    /// The suffix of executables on this target.
    pub fn exe_suffix(self) -> &'static str {
        match self {
            TargetOs::Linux => "",
            TargetOs::Windows => ".exe",
        }
    }

    /// Joins a relative path using `/` separators onto a target directory, in the target's style.
    pub fn join(self, base: &str, rel: &str) -> String {
        let sep = match self {
            TargetOs::Linux => '/',
            TargetOs::Windows => '\\',
        };
        let rel = rel.trim_start_matches(['/', '\\']);
        let rel = match self {
            TargetOs::Linux => rel.to_string(),
            TargetOs::Windows => rel.replace('/', "\\"),
        };
        if rel.is_empty() || rel == "." {
            return base.to_string();
        }
        let base = base.trim_end_matches(['/', '\\']);
        format!("{base}{sep}{rel}")
    }
}

/// One command to run on the target.
#[derive(Debug, Clone)]
pub struct ExecRequest {
    /// Program and arguments; never interpreted by a shell on our side.
    pub argv: Vec<String>,
    /// Extra environment variables for the command.
    pub env: Vec<(String, String)>,
    /// Working directory on the target.
    pub cwd: Option<String>,
    /// Wall-clock limit; on expiry the executor kills the whole process tree and reports
    /// `timed_out`.
    pub timeout: Duration,
    /// Set by Ctrl-C; the executor kills the process tree soon after it turns true.
    pub cancel: Option<hostproc::Cancel>,
    /// On timeout, dump the hung Go test binaries before the kill (Linux: SIGQUIT, so Go prints
    /// every goroutine's stack into the output; Windows: a memory dump in the guest) and say so
    /// in the output.
    pub dump_on_timeout: bool,
}

/// Which stream a line came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    /// Standard output.
    Stdout,
    /// Standard error.
    Stderr,
}

/// How a command ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExecOutcome {
    /// The exit code; `None` when the process was killed by a signal or by us.
    pub exit_code: Option<i32>,
    /// The timeout expired and the process tree was killed.
    pub timed_out: bool,
    /// The cancel flag was raised and the process tree was killed.
    pub cancelled: bool,
}

/// Why an executor could not do what was asked.
///
/// The runner treats [`ExecError::TargetLost`] differently from everything else: the remaining
/// packages are marked errored (exit code 2) instead of trying each one against a dead target.
#[derive(Debug, thiserror::Error)]
pub enum ExecError {
    /// The target is gone (connection dropped, VM died); nothing more can run on it.
    #[error(
        "lost the test target: {detail}; check that the guest is still running and reachable, then rerun"
    )]
    TargetLost {
        /// What was observed.
        detail: String,
    },
    /// The target crashed under the command (a guest kernel panic, a Windows bugcheck): the
    /// executor may bring it back ([`Executor::recover`]) so that the run continues.
    #[error("guest crashed ({reason})")]
    TargetCrashed {
        /// What crashed it, e.g. `kernel panic` or `bugcheck 0x0000003b`.
        reason: String,
    },
    /// The command could not be started on the target.
    #[error("could not start `{program}` on the target: {detail}")]
    Spawn {
        /// The program that failed to start.
        program: String,
        /// Why.
        detail: String,
    },
    /// Copying files to the target failed.
    #[error("could not upload {local} to {remote} on the target: {detail}")]
    Upload {
        /// The local tree.
        local: String,
        /// The target directory.
        remote: String,
        /// Why.
        detail: String,
    },
    /// Any other I/O problem while talking to the target.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
}

impl ExecError {
    /// Uploading the tree `local` to `remote` failed, for `detail`.
    pub fn upload(local: &Path, remote: &str, detail: impl std::fmt::Display) -> ExecError {
        ExecError::Upload {
            local: local.display().to_string(),
            remote: remote.to_string(),
            detail: detail.to_string(),
        }
    }

    /// Whether the target is gone, so that nothing else should be attempted on it.
    pub fn is_target_lost(&self) -> bool {
        matches!(self, ExecError::TargetLost { .. })
    }

    /// Whether the target crashed (see [`ExecError::TargetCrashed`]).
    pub fn is_crash(&self) -> bool {
        matches!(self, ExecError::TargetCrashed { .. })
    }
}

/// Decides which entries of a tree are left out of an upload (e.g. `.git`).
/// Receives the path relative to the root of the tree.
pub type UploadFilter<'a> = &'a dyn Fn(&Path) -> bool;

/// The machine the tests run on.
pub trait Executor: Send {
    /// The target's operating system.
    fn os(&self) -> TargetOs;

    /// The target's `GOARCH` (e.g. `amd64`).
    fn arch(&self) -> String {
        "amd64".to_string()
    }

    /// Runs one command to completion, handing each output line (without its line ending) to
    /// `on_line` as it arrives, in arrival order across both streams.
    ///
    /// Must enforce `req.timeout` and `req.cancel` by killing the process tree; a command that
    /// fails is an `Ok` with its exit code, not an `Err`.
    fn run(
        &mut self,
        req: &ExecRequest,
        on_line: &mut dyn FnMut(Stream, &[u8]),
    ) -> Result<ExecOutcome, ExecError>;

    /// Copies the local directory `local` to the target directory `remote` (created, replacing
    /// files of the same name), leaving out every entry for which `skip` returns true.
    fn upload_tree(
        &mut self,
        local: &Path,
        remote: &str,
        skip: UploadFilter<'_>,
    ) -> Result<(), ExecError>;

    /// A scratch directory on the target for `name` (not necessarily existing yet).
    fn remote_dir(&self, name: &str) -> String;

    /// Another executor on the same target that can run commands at the same time from another
    /// thread (e.g. a second SSH session), so that host mode runs packages side by side.
    /// `None` (the default) keeps runs one at a time.
    fn try_clone(&self) -> Option<Box<dyn Executor>> {
        None
    }

    /// Copies the target file `remote` to the host file `local`; returns its size. The default
    /// target cannot send files back.
    fn download(&mut self, remote: &str, local: &Path) -> Result<u64, ExecError> {
        let _ = local;
        Err(ExecError::Io {
            what: format!("fetching {remote} from the target"),
            source: std::io::Error::new(
                std::io::ErrorKind::Unsupported,
                "this target cannot send files back",
            ),
        })
    }

    /// After [`ExecError::TargetCrashed`]: brings the target back (waits for it to reboot, or
    /// restores a snapshot) and keeps what the crash left (dumps, console tail). `Ok` with a note
    /// for the output when commands can run again; the default cannot bring a target back.
    fn recover(&mut self, reason: &str) -> Result<String, ExecError> {
        Err(ExecError::TargetLost {
            detail: format!("guest crashed ({reason}) and this target cannot be brought back"),
        })
    }
}

impl<E: Executor + ?Sized> Executor for Box<E> {
    fn os(&self) -> TargetOs {
        (**self).os()
    }
    fn arch(&self) -> String {
        (**self).arch()
    }
    fn run(
        &mut self,
        req: &ExecRequest,
        on_line: &mut dyn FnMut(Stream, &[u8]),
    ) -> Result<ExecOutcome, ExecError> {
        (**self).run(req, on_line)
    }
    fn upload_tree(
        &mut self,
        local: &Path,
        remote: &str,
        skip: UploadFilter<'_>,
    ) -> Result<(), ExecError> {
        (**self).upload_tree(local, remote, skip)
    }
    fn remote_dir(&self, name: &str) -> String {
        (**self).remote_dir(name)
    }
    fn download(&mut self, remote: &str, local: &Path) -> Result<u64, ExecError> {
        (**self).download(remote, local)
    }
    fn try_clone(&self) -> Option<Box<dyn Executor>> {
        (**self).try_clone()
    }
    fn recover(&mut self, reason: &str) -> Result<String, ExecError> {
        (**self).recover(reason)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn join_follows_target_style() {
        let cases = [
            (TargetOs::Linux, "/tmp/x", "a/b", "/tmp/x/a/b"),
            (TargetOs::Linux, "/tmp/x/", ".", "/tmp/x/"),
            (TargetOs::Linux, "/tmp/x", "", "/tmp/x"),
            (TargetOs::Windows, "C:\\h\\s", "a/b", "C:\\h\\s\\a\\b"),
            (TargetOs::Windows, "C:\\h\\s\\", "pkg", "C:\\h\\s\\pkg"),
            // The module's root package: an empty relative dir before the binary name.
            (TargetOs::Linux, "/tmp/x", "/ebpf.test", "/tmp/x/ebpf.test"),
            (
                TargetOs::Windows,
                "C:\\h",
                "/ebpf.test.exe",
                "C:\\h\\ebpf.test.exe",
            ),
        ];
        for (os, base, rel, want) in cases {
            assert_eq!(os.join(base, rel), want, "{os:?} {base} {rel}");
        }
    }
}
