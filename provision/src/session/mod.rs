//! Guest sessions: everything harness does inside a VM goes through one [`Session`].
//!
//! One concern per file: [`wrap`] turns a [`RemoteCommand`] into the exact string sshd runs
//! (PowerShell `-EncodedCommand` on Windows, `sh -c` quoting on Linux); [`hostkey`] pins host keys
//! in an OpenSSH-format `known_hosts` file in harness state; [`script`] holds the embedded
//! one-step scripts and parses their JSON; `ssh` is the libssh2 connection (exec, streaming,
//! timeouts, reconnects); `transfer` moves files (SFTP) and trees (one tar stream);
//! [`endpoint`] derives an [`Endpoint`] from `[vm]`.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

mod connect;
pub mod endpoint;
mod error;
mod hang;
pub mod hostkey;
mod lifecycle;
pub mod script;
mod ssh;
mod stream;
mod transfer;
pub mod wrap;

pub use error::SessionError;
pub use script::Script;
pub use ssh::{CancelHandle, Session};
pub use transfer::{PathKind, TreeStats};

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
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// Host name or address (the qemu backend: `127.0.0.1` with a forwarded port).
    pub host: String,
    pub port: u16,
    /// Login user (an administrator on Windows guests).
    pub user: String,
    /// Private key file; `None` means use the SSH agent.
    pub identity: Option<PathBuf>,
    pub os: GuestOs,
}

impl std::fmt::Display for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}@{}:{}", self.user, self.host, self.port)
    }
}

/// Connection behaviour. Every wait is bounded.
#[derive(Debug, Clone)]
pub struct SessionOptions {
    /// TCP connect + SSH handshake + auth, per attempt.
    pub connect_timeout: Duration,
    /// Interval of SSH keepalives; a connection silent for three intervals is declared dead.
    pub keepalive: Duration,
    /// File recording the pinned host key of each endpoint, in OpenSSH `known_hosts` format
    /// (so `harness ssh` can hand it to the system client as `UserKnownHostsFile`).
    pub known_hosts: PathBuf,
    /// Accept (and record) a host key that differs from the pinned one.
    pub accept_new_host_key: bool,
    /// Timeout of commands that set none (and of scripts); `None` means no limit.
    pub default_command_timeout: Option<Duration>,
    /// Linux guests: how `restart_sshd` makes sshd restart or re-read its configuration.
    pub linux_restart_command: String,
}

impl SessionOptions {
    /// Defaults suited to a VM on loopback: 15 s connect, 15 s keepalive, 1 h command timeout.
    pub fn new(known_hosts: impl Into<PathBuf>) -> Self {
        SessionOptions {
            connect_timeout: Duration::from_secs(15),
            keepalive: Duration::from_secs(15),
            known_hosts: known_hosts.into(),
            accept_new_host_key: false,
            default_command_timeout: Some(Duration::from_secs(3600)),
            linux_restart_command: DEFAULT_LINUX_RESTART.into(),
        }
    }
}

/// Default Linux restart: SIGHUP makes sshd re-execute itself and re-read `sshd_config`.
pub const DEFAULT_LINUX_RESTART: &str =
    "kill -HUP \"$(cat /run/sshd.pid 2>/dev/null || cat /var/run/sshd.pid)\"";

/// Which output stream a line came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    Stdout,
    Stderr,
}

/// A command to run in the guest. For Windows the program is PowerShell source text;
/// for Linux it is an argv that is quoted for `sh -c`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RemoteCommand {
    /// Linux: argv. Windows: a single element holding PowerShell source (several elements are
    /// joined with spaces).
    pub argv: Vec<String>,
    /// Set for this command only (names must be identifiers).
    pub env: BTreeMap<String, String>,
    /// Working directory in the guest.
    pub cwd: Option<String>,
    /// Kill the remote process tree after this long.
    pub timeout: Option<Duration>,
    /// On timeout, dump the hung Go test binaries of the tree before killing it (Linux: SIGQUIT,
    /// a goroutine dump on stderr; Windows: a comsvcs.dll MiniDump into [`HUNG_DUMP_DIR`]).
    pub dump_on_timeout: bool,
}

/// Where Windows guests keep the memory dumps of timed-out test binaries (under the WER
/// LocalDumps folder the golden image sets up, so the dump collection finds them).
pub const HUNG_DUMP_DIR: &str = r"C:\dumps\hung";

impl RemoteCommand {
    /// A command from an argv (Linux) or PowerShell source (Windows, one element).
    pub fn new<I, S>(argv: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        RemoteCommand {
            argv: argv.into_iter().map(Into::into).collect(),
            ..Default::default()
        }
    }

    /// PowerShell source, for Windows guests. On Linux a one-element argv is a program name; for
    /// a shell snippet on either OS use [`wrap::shell`].
    pub fn script(source: impl Into<String>) -> Self {
        Self::new([source.into()])
    }

    /// Adds an environment variable.
    pub fn env(mut self, k: impl Into<String>, v: impl Into<String>) -> Self {
        self.env.insert(k.into(), v.into());
        self
    }

    /// Sets the working directory.
    pub fn cwd(mut self, dir: impl Into<String>) -> Self {
        self.cwd = Some(dir.into());
        self
    }

    /// Sets the timeout after which the remote process tree is killed.
    pub fn timeout(mut self, t: Duration) -> Self {
        self.timeout = Some(t);
        self
    }

    /// Dumps the hung test binaries of the tree before a timeout kills it.
    pub fn dump_on_timeout(mut self) -> Self {
        self.dump_on_timeout = true;
        self
    }
}

/// The outcome of a finished remote command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExitStatus {
    /// The exit code; a command killed by signal N reports 128 + N.
    pub code: i32,
}

impl ExitStatus {
    pub fn success(&self) -> bool {
        self.code == 0
    }
}

/// Captured output of a finished command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Output {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}
