//! The libssh2 connection: connect (pinned host key, key or agent auth), exec with live line
//! streaming, timeouts and cancellation that kill the remote process tree, and reconnects.
//!
//! libssh2 settings follow what was measured (crates.md §2): `TCP_NODELAY`; blocking calls bounded
//! by `set_timeout`; exec streams in non-blocking mode, reading stdout and stderr in turn so
//! neither window can fill and deadlock; keepalives sent from our own loop (libssh2's blocking
//! waits report a due keepalive as a timeout, so keepalives are off during blocking calls); a
//! connection silent for three keepalive intervals is dead. On any connection error the libssh2
//! session is discarded; the next call opens a new one.

use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

use serde::de::DeserializeOwned;

use super::connect::*;
use super::script::{self, Script};
use super::stream::*;
use super::wrap;
use super::{
    Endpoint, ExitStatus, GuestOs, Output, RemoteCommand, SessionError, SessionOptions, Stream,
};

/// Bound of every blocking libssh2 call (channel open, SFTP request, writes).
pub(crate) const BLOCKING_TIMEOUT: Duration = Duration::from_secs(60);
/// How long the kill of a timed-out command may take.
pub(super) const KILL_TIMEOUT: Duration = Duration::from_secs(20);
/// Bound of each probe run while waiting for a restarted sshd or a rebooted guest.
pub(super) const PROBE_TIMEOUT: Duration = Duration::from_secs(30);

/// Stops the command running in a [`Session`]: its remote process tree is killed and the call
/// returns [`SessionError::Cancelled`]. Sticky until reset, so a Ctrl-C also refuses every later
/// command. The same type as every other cancel flag ([`hostproc::Cancel`]).
pub type CancelHandle = hostproc::Cancel;

/// One guest session. Not `Sync`: libssh2 is not thread-safe across channels of one session, so
/// use one `Session` per thread.
pub struct Session {
    pub(super) ep: Endpoint,
    pub(super) opts: SessionOptions,
    pub(super) conn: Option<ssh2::Session>,
    pub(super) cancel: CancelHandle,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("endpoint", &self.ep.to_string())
            .field("connected", &self.conn.is_some())
            .finish()
    }
}

/// Writes a command's stdin (blocking; the channel is in blocking mode while it runs).
pub(crate) type Feed<'a> = &'a mut dyn FnMut(&mut ssh2::Channel) -> std::io::Result<()>;

/// How a streamed command ended.
pub(super) enum End {
    Exited(i32),
    TimedOut { killed: bool },
    Cancelled { killed: bool },
}

impl Session {
    /// Connects once (bounded by `connect_timeout`).
    pub fn connect(ep: &Endpoint, opts: &SessionOptions) -> Result<Session, SessionError> {
        let conn = open(ep, opts, opts.connect_timeout)?;
        Ok(Session {
            ep: ep.clone(),
            opts: opts.clone(),
            conn: Some(conn),
            cancel: CancelHandle::default(),
        })
    }

    /// Connects, retrying with backoff until `deadline` has passed (a guest that is booting or
    /// whose sshd restarts). A changed host key is not retried.
    pub fn connect_with_retry(
        ep: &Endpoint,
        opts: &SessionOptions,
        deadline: Duration,
    ) -> Result<Session, SessionError> {
        let mut s = Session {
            ep: ep.clone(),
            opts: opts.clone(),
            conn: None,
            cancel: CancelHandle::default(),
        };
        s.wait_back(
            Instant::now() + deadline,
            deadline,
            "SSH to answer",
            &mut |_| Ok(true),
        )?;
        Ok(s)
    }

    /// Uses `cancel` (for example the CLI's Ctrl-C flag) instead of the session's own flag.
    pub fn with_cancel(mut self, cancel: CancelHandle) -> Self {
        self.cancel = cancel;
        self
    }

    pub fn os(&self) -> GuestOs {
        self.ep.os
    }

    pub fn endpoint(&self) -> &Endpoint {
        &self.ep
    }

    pub fn options(&self) -> &SessionOptions {
        &self.opts
    }

    /// A handle that cancels the running (and every later) command from another thread.
    pub fn cancel_handle(&self) -> CancelHandle {
        self.cancel.clone()
    }

    /// The negotiated client→server cipher of the open connection (diagnostics, benchmarks).
    pub fn cipher(&self) -> Option<String> {
        self.conn
            .as_ref()?
            .methods(ssh2::MethodType::CryptCs)
            .map(str::to_string)
    }

    /// Whether a connection is currently open (it is re-opened on demand).
    pub fn is_connected(&self) -> bool {
        self.conn.is_some()
    }

    /// Closes the connection; the next call opens a new one.
    pub fn disconnect(&mut self) {
        if let Some(s) = self.conn.take() {
            s.set_blocking(true);
            s.set_timeout(2000);
            let _ = s.disconnect(None, "harness: closing", None);
        }
    }

    /// Drops the connection and opens a fresh one, retrying until `deadline`.
    pub fn reconnect(&mut self, deadline: Duration) -> Result<(), SessionError> {
        self.disconnect();
        self.wait_back(
            Instant::now() + deadline,
            deadline,
            "SSH to answer",
            &mut |_| Ok(true),
        )
    }

    /// The live libssh2 session, connecting if needed.
    pub(crate) fn ssh(&mut self) -> Result<&ssh2::Session, SessionError> {
        // A connection the server closed while we were idle (sshd restarted, guest rebooted):
        // nothing was sent on it yet, so replace it instead of failing the next command.
        if self
            .conn
            .as_ref()
            .is_some_and(|c| peer_closed(c.as_raw_fd()))
        {
            tracing::info!(endpoint = %self.ep, "the server closed the idle connection; reconnecting");
            self.conn = None;
        }
        if self.conn.is_none() {
            self.conn = Some(open(&self.ep, &self.opts, self.opts.connect_timeout)?);
        }
        Ok(self.conn.as_ref().expect("just connected"))
    }

    /// Forgets the connection after an error (libssh2 state is unknown after one).
    pub(crate) fn drop_conn(&mut self) {
        self.conn = None;
    }

    pub(super) fn check_cancel(&self, what: &str) -> Result<(), SessionError> {
        if self.cancel.is_cancelled() {
            return Err(SessionError::Cancelled {
                what: what.to_string(),
            });
        }
        Ok(())
    }

    /// Runs `cmd`, calling `on_line` for each line of stdout and stderr as it arrives, and
    /// returns its exit status. A timeout or cancel kills the remote process tree.
    pub fn exec(
        &mut self,
        cmd: &RemoteCommand,
        on_line: &mut dyn FnMut(Stream, &str),
    ) -> Result<ExitStatus, SessionError> {
        self.exec_inner(cmd, None, on_line)
    }

    /// Runs `cmd` and returns its output as text (lines joined with `\n`).
    pub fn exec_capture(&mut self, cmd: &RemoteCommand) -> Result<Output, SessionError> {
        self.exec_capture_with(cmd, &mut |_, _| {})
    }

    /// [`Session::exec_capture`] that also hands each line to `on_line` as it arrives.
    fn exec_capture_with(
        &mut self,
        cmd: &RemoteCommand,
        on_line: &mut dyn FnMut(Stream, &str),
    ) -> Result<Output, SessionError> {
        let mut stdout = String::new();
        let mut stderr = String::new();
        let status = self.exec(cmd, &mut |s, l| {
            on_line(s, l);
            let buf = if s == Stream::Stdout {
                &mut stdout
            } else {
                &mut stderr
            };
            buf.push_str(l);
            buf.push('\n');
        })?;
        Ok(Output {
            status,
            stdout,
            stderr,
        })
    }

    /// Runs an embedded script with arguments and returns its JSON result.
    pub fn run_script(
        &mut self,
        script: &Script,
        args: &[(&str, String)],
    ) -> Result<serde_json::Value, SessionError> {
        self.run_script_with(script, args, None, &mut |_, _| {})
    }

    /// [`Session::run_script`] with a timeout and live lines (install logs).
    pub fn run_script_with(
        &mut self,
        script: &Script,
        args: &[(&str, String)],
        timeout: Option<Duration>,
        on_line: &mut dyn FnMut(Stream, &str),
    ) -> Result<serde_json::Value, SessionError> {
        if script.os != self.ep.os {
            return Err(SessionError::InvalidCommand {
                reason: format!(
                    "script {} is for {:?} guests, this guest runs {:?}",
                    script.name, script.os, self.ep.os
                ),
            });
        }
        let mut cmd = script.command(args)?;
        cmd.timeout = timeout.or(self.opts.default_command_timeout);
        let out = self.exec_capture_with(&cmd, on_line)?;
        script::parse_result(script.name, out.status.code, &out.stdout, &out.stderr)
    }

    /// [`Session::run_script`] parsed into a type.
    pub fn run_script_as<T: DeserializeOwned>(
        &mut self,
        script: &Script,
        args: &[(&str, String)],
    ) -> Result<T, SessionError> {
        let v = self.run_script(script, args)?;
        serde_json::from_value(v.clone()).map_err(|e| SessionError::BadScriptOutput {
            script: script.name.to_string(),
            reason: format!("unexpected JSON shape: {e}"),
            stdout_tail: script::tail(&v.to_string()),
        })
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        self.disconnect();
    }
}

/// A short description of a command for messages.
pub(super) fn describe(os: GuestOs, cmd: &RemoteCommand) -> String {
    let text = match os {
        GuestOs::Windows => cmd.argv.join(" "),
        GuestOs::Linux => cmd
            .argv
            .iter()
            .map(|a| wrap::sh_quote(a))
            .collect::<Vec<_>>()
            .join(" "),
    };
    let first = text
        .lines()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("")
        .trim();
    let mut s: String = first.chars().take(80).collect();
    if s.len() < first.len() || text.lines().count() > 1 {
        s.push('…');
    }
    format!("`{s}`")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_sink_splits_strips_cr_and_marker() {
        let mut got = Vec::new();
        let mut f = |s: Stream, l: &str| got.push((s, l.to_string()));
        let mut sink = LineSink::new(&mut f);
        sink.push(Stream::Stderr, b"##harness-pid:77\r\nwarn");
        sink.push(Stream::Stdout, b"a\r\nb");
        sink.push(Stream::Stdout, b"c\n\nd");
        sink.push(Stream::Stderr, b"ing\n##harness-pid:1\n");
        sink.flush();
        let pid = sink.pid;
        drop(sink);
        assert_eq!(pid, Some(77));
        let want = vec![
            (Stream::Stdout, "a".to_string()),
            (Stream::Stdout, "bc".into()),
            (Stream::Stdout, "".into()),
            (Stream::Stderr, "warning".into()),
            (Stream::Stderr, "##harness-pid:1".into()),
            (Stream::Stdout, "d".into()),
        ];
        assert_eq!(got, want);
    }

    #[test]
    fn descriptions_are_short() {
        let long = RemoteCommand::new(["x".repeat(200)]);
        assert!(describe(GuestOs::Windows, &long).chars().count() < 90);
        let multi = RemoteCommand::new(["\nfirst\nsecond"]);
        assert_eq!(describe(GuestOs::Windows, &multi), "`first…`");
        assert_eq!(
            describe(GuestOs::Linux, &RemoteCommand::new(["echo", "a b"])),
            "`echo 'a b'`"
        );
    }
}
