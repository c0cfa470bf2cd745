//! Guest sessions: everything harness does inside a VM goes through one [`Session`].
//!
//! INTERFACE CONTRACT (filled in by the guest-sessions work; other modules code against it):
//! the public names and signatures below are what install, suites' executor and the CLI use.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The guest's operating system: decides how commands are wrapped and how trees are unpacked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum GuestOs {
    /// PowerShell via `powershell.exe -EncodedCommand`.
    Windows,
    /// POSIX `sh -c`.
    Linux,
}

/// Where and how to reach a guest over SSH.
#[derive(Debug, Clone)]
pub struct Endpoint {
    pub host: String,
    pub port: u16,
    pub user: String,
    /// Private key file; `None` means use the SSH agent.
    pub identity: Option<PathBuf>,
    pub os: GuestOs,
}

/// Connection behaviour. Every wait is bounded.
#[derive(Debug, Clone)]
pub struct SessionOptions {
    pub connect_timeout: Duration,
    pub keepalive: Duration,
    /// File recording the pinned host key of each endpoint (`host:port` → key).
    pub known_hosts: PathBuf,
    /// Accept (and record) a host key that differs from the pinned one.
    pub accept_new_host_key: bool,
}

/// Which output stream a line came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    Stdout,
    Stderr,
}

/// A command to run in the guest. For Windows the program is PowerShell source text;
/// for Linux it is an argv that is quoted for `sh -c`.
#[derive(Debug, Clone, Default)]
pub struct RemoteCommand {
    /// Linux: argv. Windows: a single element holding PowerShell source.
    pub argv: Vec<String>,
    pub env: BTreeMap<String, String>,
    pub cwd: Option<String>,
    /// Kill the remote process tree after this long.
    pub timeout: Option<Duration>,
}

/// The outcome of a finished remote command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExitStatus {
    pub code: i32,
}

// Planned API of `Session` (implemented in session/ssh.rs by the guest-sessions work):
//
//   Session::connect(ep: &Endpoint, opts: &SessionOptions) -> Result<Session, SessionError>
//   Session::connect_with_retry(ep, opts, deadline: Duration) -> Result<Session, SessionError>
//   session.os() -> GuestOs
//   session.exec(&RemoteCommand, on_line: &mut dyn FnMut(Stream, &str)) -> Result<ExitStatus, SessionError>
//   session.exec_capture(&RemoteCommand) -> Result<Output{status, stdout, stderr}, SessionError>
//   session.run_script(script: &Script, args: &[(&str, String)]) -> Result<serde_json::Value, SessionError>
//        // Windows: an embedded .ps1 (scripts/windows/*.ps1) run via -EncodedCommand with named
//        // parameters; Linux: an embedded .sh run with `sh -s -- args`. The last stdout line
//        // that parses as JSON is the result; a non-zero exit is SessionError::ScriptFailed
//        // carrying stdout/stderr tails and any JSON {"error": ...} the script printed.
//   session.upload_file(local: &Path, remote: &str) / download_file(remote, local)   (SFTP, size-verified)
//   session.upload_tree(local_dir: &Path, remote_dir: &str) / download_tree(remote_dir, local_dir)  (one tar stream)
//   session.restart_sshd(check: &mut dyn FnMut(&mut Session) -> Result<bool, SessionError>, deadline) -> Result<(), SessionError>
//   session.reboot(deadline) -> Result<(), SessionError>
//   session.endpoint() -> &Endpoint
//   session.cancel_handle() -> CancelHandle   (Send + Clone; .cancel() kills the running remote command tree)
