//! The libssh2 connection: connect (pinned host key, key or agent auth), exec with live line
//! streaming, timeouts and cancellation that kill the remote process tree, and reconnects.
//!
//! libssh2 settings follow what was measured (crates.md §2): `TCP_NODELAY`; blocking calls bounded
//! by `set_timeout`; exec streams in non-blocking mode, reading stdout and stderr in turn so
//! neither window can fill and deadlock; keepalives sent from our own loop (libssh2's blocking
//! waits report a due keepalive as a timeout, so keepalives are off during blocking calls); a
//! connection silent for three keepalive intervals is dead. On any connection error the libssh2
//! session is discarded; the next call opens a new one.

use std::io::{ErrorKind, Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

use base64::Engine as _;
use serde::de::DeserializeOwned;

use super::hang;
use super::hostkey::{self, PinCheck};
use super::script::{self, Script, builtin};
use super::wrap;
use super::{
    Endpoint, ExitStatus, GuestOs, Output, RemoteCommand, SessionError, SessionOptions, Stream,
};

/// Bound of every blocking libssh2 call (channel open, SFTP request, writes).
pub(crate) const BLOCKING_TIMEOUT: Duration = Duration::from_secs(60);
/// How long the kill of a timed-out command may take.
const KILL_TIMEOUT: Duration = Duration::from_secs(20);
/// Bound of each probe run while waiting for a restarted sshd or a rebooted guest.
const PROBE_TIMEOUT: Duration = Duration::from_secs(30);

/// Stops the command running in a [`Session`]: its remote process tree is killed and the call
/// returns [`SessionError::Cancelled`]. Sticky until reset, so a Ctrl-C also refuses every later
/// command. The same type as every other cancel flag ([`hostproc::Cancel`]).
pub type CancelHandle = hostproc::Cancel;

/// One guest session. Not `Sync`: libssh2 is not thread-safe across channels of one session, so
/// use one `Session` per thread.
pub struct Session {
    ep: Endpoint,
    opts: SessionOptions,
    conn: Option<ssh2::Session>,
    cancel: CancelHandle,
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
enum End {
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

    fn check_cancel(&self, what: &str) -> Result<(), SessionError> {
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
        let mut stdout = String::new();
        let mut stderr = String::new();
        let status = self.exec(cmd, &mut |s, l| {
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
        let mut stdout = String::new();
        let mut stderr = String::new();
        let status = self.exec(&cmd, &mut |s, l| {
            on_line(s, l);
            let buf = if s == Stream::Stdout {
                &mut stdout
            } else {
                &mut stderr
            };
            buf.push_str(l);
            buf.push('\n');
        })?;
        script::parse_result(script.name, status.code, &stdout, &stderr)
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

    /// Restarts sshd in the guest so that new sessions see a new environment, then reconnects
    /// with backoff until a fresh session answers and `check` returns true, all within
    /// `deadline`. Windows: `Restart-Service sshd` from a process outside the session; the new
    /// session must come from a new sshd process. Linux: `linux_restart_command`.
    pub fn restart_sshd(
        &mut self,
        check: &mut dyn FnMut(&mut Session) -> Result<bool, SessionError>,
        deadline: Duration,
    ) -> Result<(), SessionError> {
        let until = Instant::now() + deadline;
        let old_pid = match self.ep.os {
            GuestOs::Windows => {
                match self.run_script_with(
                    &builtin::RESTART_SSHD_WINDOWS,
                    &[],
                    Some(PROBE_TIMEOUT),
                    &mut |_, _| {},
                ) {
                    Ok(v) => v.get("old_sshd_pid").and_then(|p| p.as_u64()),
                    // The restart may already have taken the session down: carry on and see.
                    Err(e) if e.is_connection_error() => {
                        tracing::info!("connection dropped while triggering the sshd restart: {e}");
                        None
                    }
                    Err(e) => return Err(e),
                }
            }
            GuestOs::Linux => {
                let cmd = wrap::shell(GuestOs::Linux, &self.opts.linux_restart_command)
                    .timeout(PROBE_TIMEOUT);
                match self.exec_capture(&cmd) {
                    Ok(out) if out.status.success() => None,
                    Ok(out) => {
                        return Err(SessionError::ScriptFailed {
                            script: format!(
                                "sshd restart command `{}`",
                                self.opts.linux_restart_command
                            ),
                            code: out.status.code,
                            error: None,
                            stdout_tail: script::tail(&out.stdout),
                            stderr_tail: script::tail(&out.stderr),
                        });
                    }
                    Err(e) if e.is_connection_error() => None,
                    Err(e) => return Err(e),
                }
            }
        };
        self.disconnect();
        let mut fresh = |s: &mut Session| -> Result<bool, SessionError> {
            if let Some(old) = old_pid {
                let probe = s.run_script_with(
                    &builtin::PROBE_WINDOWS,
                    &[],
                    Some(PROBE_TIMEOUT),
                    &mut |_, _| {},
                )?;
                if probe.get("sshd_pid").and_then(|p| p.as_u64()) == Some(old) {
                    return Ok(false);
                }
            }
            check(s)
        };
        self.wait_back(
            until,
            deadline,
            "a fresh sshd session that passes the check",
            &mut fresh,
        )
    }

    /// The guest's boot id (Linux: `/proc/sys/kernel/random/boot_id`; Windows: the last boot
    /// time): it changes when the guest reboots, e.g. after a crash.
    pub fn boot_id(&mut self) -> Result<String, SessionError> {
        let probe = match self.ep.os {
            GuestOs::Windows => builtin::PROBE_WINDOWS,
            GuestOs::Linux => builtin::PROBE_LINUX,
        };
        let v = self.run_script_with(&probe, &[], Some(PROBE_TIMEOUT), &mut |_, _| {})?;
        Ok(v["boot_id"].as_str().unwrap_or_default().to_string())
    }

    /// Reboots the guest, waits for it to go down and come back (a new boot id), within
    /// `deadline`.
    pub fn reboot(&mut self, deadline: Duration) -> Result<(), SessionError> {
        let until = Instant::now() + deadline;
        let (script, probe) = match self.ep.os {
            GuestOs::Windows => (builtin::REBOOT_WINDOWS, builtin::PROBE_WINDOWS),
            GuestOs::Linux => (builtin::REBOOT_LINUX, builtin::PROBE_LINUX),
        };
        let before = self.run_script_with(&probe, &[], Some(PROBE_TIMEOUT), &mut |_, _| {})?;
        let old_boot = before.get("boot_id").cloned().unwrap_or_default();
        match self.run_script_with(&script, &[], Some(PROBE_TIMEOUT), &mut |_, _| {}) {
            Ok(_) => {}
            Err(e) if e.is_connection_error() => {}
            Err(e) => return Err(e),
        }
        self.disconnect();
        let mut rebooted = |s: &mut Session| -> Result<bool, SessionError> {
            let now = s.run_script_with(&probe, &[], Some(PROBE_TIMEOUT), &mut |_, _| {})?;
            Ok(now.get("boot_id").cloned().unwrap_or_default() != old_boot)
        };
        self.wait_back(
            until,
            deadline,
            "the guest to reboot (new boot id)",
            &mut rebooted,
        )
    }

    /// Reconnects with backoff until `pred` holds on a fresh connection, or `until`.
    fn wait_back(
        &mut self,
        until: Instant,
        deadline: Duration,
        waiting_for: &str,
        pred: &mut dyn FnMut(&mut Session) -> Result<bool, SessionError>,
    ) -> Result<(), SessionError> {
        let mut backoff = Duration::from_millis(100);
        let mut last = String::from("no attempt made");
        loop {
            self.check_cancel(&format!("waiting for {waiting_for}"))?;
            let now = Instant::now();
            if now >= until {
                return Err(SessionError::NotBack {
                    endpoint: self.ep.to_string(),
                    deadline,
                    waiting_for: waiting_for.to_string(),
                    last,
                });
            }
            let attempt = self
                .opts
                .connect_timeout
                .min(until - now)
                .max(Duration::from_millis(200));
            match open(&self.ep, &self.opts, attempt) {
                Ok(conn) => {
                    self.conn = Some(conn);
                    match pred(self) {
                        Ok(true) => return Ok(()),
                        Ok(false) => {
                            last = format!("connected, but still waiting for {waiting_for}")
                        }
                        Err(e @ SessionError::Cancelled { .. }) => return Err(e),
                        Err(e) => last = e.to_string(),
                    }
                    self.disconnect();
                }
                Err(e @ (SessionError::HostKeyChanged { .. } | SessionError::Auth { .. })) => {
                    return Err(e);
                }
                Err(e) => last = e.to_string(),
            }
            tracing::debug!(endpoint = %self.ep, "not back yet: {last}");
            let left = until.saturating_duration_since(Instant::now());
            std::thread::sleep(backoff.min(left));
            backoff = (backoff * 2).min(Duration::from_secs(2));
        }
    }

    /// Opens a channel, runs `line`, optionally feeds stdin, and streams output into `sink`.
    fn stream(
        &mut self,
        line: &str,
        what: &str,
        timeout: Option<Duration>,
        stdin: Option<Feed<'_>>,
        sink: &mut LineSink<'_>,
        dump_on_timeout: bool,
    ) -> Result<End, SessionError> {
        let started = Instant::now();
        let os = self.ep.os;
        let keepalive = self.opts.keepalive;
        let cancel = self.cancel.clone();
        let endpoint = self.ep.to_string();
        let sess = self.ssh()?.clone();
        let lost = |during: &str, e: &dyn std::fmt::Display| SessionError::ConnectionLost {
            endpoint: endpoint.clone(),
            during: during.to_string(),
            detail: e.to_string(),
        };
        // Blocking part: open the channel and start the command.
        sess.set_blocking(true);
        sess.set_keepalive(true, 0);
        sess.set_timeout(BLOCKING_TIMEOUT.as_millis() as u32);
        let mut ch = sess
            .channel_session()
            .map_err(|e| lost(&format!("opening a channel for {what}"), &e))?;
        ch.exec(line)
            .map_err(|e| lost(&format!("starting {what}"), &e))?;
        if let Some(feed) = stdin {
            feed(&mut ch).map_err(|e| lost(&format!("sending input to {what}"), &e))?;
        }
        ch.send_eof()
            .map_err(|e| lost(&format!("closing the input of {what}"), &e))?;

        // Non-blocking part: read both streams in turn, keepalives, deadlines.
        sess.set_blocking(false);
        sess.set_keepalive(true, keepalive.as_secs().max(1) as u32);
        let dead_after = keepalive * 3 + Duration::from_secs(5);
        let mut deadline = timeout.map(|t| started + t);
        // After a timeout with `dump_on_timeout`: the dump step ran, the command has a short
        // grace to print (or exit), then it is killed as timed out whatever it did.
        let mut dumped = false;
        let fd = sess.as_raw_fd();
        let mut buf = vec![0u8; 64 * 1024];
        let mut last_rx = Instant::now();
        let mut next_keepalive = Instant::now() + keepalive;
        let end = loop {
            let mut progressed = false;
            for stream in [Stream::Stdout, Stream::Stderr] {
                for _ in 0..16 {
                    let r = match stream {
                        Stream::Stdout => ch.read(&mut buf),
                        Stream::Stderr => ch.stderr().read(&mut buf),
                    };
                    match r {
                        Ok(0) => break,
                        Ok(n) => {
                            sink.push(stream, &buf[..n]);
                            progressed = true;
                            last_rx = Instant::now();
                        }
                        Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                        Err(e) => {
                            give_up(&sess);
                            return Err(lost(&format!("reading the output of {what}"), &e));
                        }
                    }
                }
            }
            if ch.eof() {
                break dumped.then_some(End::TimedOut { killed: false });
            }
            if progressed {
                continue;
            }
            let now = Instant::now();
            if cancel.is_cancelled() {
                break Some(End::Cancelled { killed: false });
            }
            if deadline.is_some_and(|d| now >= d) {
                if dump_on_timeout && !dumped {
                    dumped = true;
                    let note = hang::dump_blocking(&sess, os, sink.pid, timeout);
                    sink.push(Stream::Stderr, format!("{note}\n").as_bytes());
                    sess.set_blocking(false);
                    sess.set_keepalive(true, keepalive.as_secs().max(1) as u32);
                    deadline = Some(Instant::now() + hang::GRACE);
                    last_rx = Instant::now();
                    continue;
                }
                break Some(End::TimedOut { killed: false });
            }
            if now >= next_keepalive {
                match sess.keepalive_send() {
                    Ok(secs) => next_keepalive = now + Duration::from_secs(u64::from(secs.max(1))),
                    Err(e) if would_block(&e) => next_keepalive = now + Duration::from_secs(1),
                    Err(e) => {
                        give_up(&sess);
                        return Err(lost(&format!("sending a keepalive during {what}"), &e));
                    }
                }
            }
            if now.duration_since(last_rx) > dead_after {
                give_up(&sess);
                return Err(lost(
                    &format!("running {what}"),
                    &format!("nothing received for {:?} despite keepalives", dead_after),
                ));
            }
            if wait_socket(fd, &sess, Duration::from_millis(100)) {
                last_rx = Instant::now();
            }
        };
        if let Some(mut end) = end {
            restore_blocking(&sess);
            // Kill the tree first (a second channel), so the close below does not wait for it.
            let killed = match sink.pid {
                Some(pid) => kill_tree_blocking(&sess, os, pid),
                None => Err("the guest never reported a process id".to_string()),
            };
            match &killed {
                Ok(()) => tracing::info!("{what}: killed the remote process tree"),
                Err(e) => tracing::warn!(
                    "{what}: could not kill the remote process tree ({e}); dropping the connection"
                ),
            }
            sess.set_timeout(if killed.is_ok() { 5000 } else { 1000 });
            let _ = ch.close();
            if killed.is_ok() {
                let _ = ch.wait_close();
            }
            drop(ch);
            sess.set_timeout(BLOCKING_TIMEOUT.as_millis() as u32);
            if let End::TimedOut { killed: k } | End::Cancelled { killed: k } = &mut end {
                *k = killed.is_ok();
            }
            return Ok(end);
        }
        // EOF: wait for the close (bounded) to get the exit status.
        let close_by = Instant::now() + Duration::from_secs(10);
        loop {
            match ch.wait_close() {
                Ok(()) => break,
                Err(e) if would_block(&e) => {
                    if Instant::now() >= close_by {
                        break;
                    }
                    wait_socket(fd, &sess, Duration::from_millis(100));
                }
                Err(e) => {
                    give_up(&sess);
                    return Err(lost(&format!("waiting for {what} to exit"), &e));
                }
            }
        }
        let signal = ch.exit_signal().ok().and_then(|s| s.exit_signal);
        let code = ch.exit_status().unwrap_or(-1);
        restore_blocking(&sess);
        drop(ch);
        Ok(End::Exited(match signal {
            Some(sig) => 128 + signal_number(&sig),
            None => code,
        }))
    }

    /// Runs `line` with `feed` writing its stdin (blocking, 1 MiB writes), streaming output.
    pub(crate) fn exec_with_stdin(
        &mut self,
        cmd: &RemoteCommand,
        feed: &mut dyn FnMut(&mut ssh2::Channel) -> std::io::Result<()>,
        on_line: &mut dyn FnMut(Stream, &str),
    ) -> Result<ExitStatus, SessionError> {
        self.exec_inner(cmd, Some(feed), on_line)
    }

    fn exec_inner(
        &mut self,
        cmd: &RemoteCommand,
        feed: Option<Feed<'_>>,
        on_line: &mut dyn FnMut(Stream, &str),
    ) -> Result<ExitStatus, SessionError> {
        let inv = wrap::invocation(self.ep.os, cmd)?;
        let what = describe(self.ep.os, cmd);
        let timeout = cmd.timeout.or(self.opts.default_command_timeout);
        self.check_cancel(&what)?;
        let mut send_source = |ch: &mut ssh2::Channel| -> std::io::Result<()> {
            ch.write_all(inv.stdin.as_deref().unwrap_or("").as_bytes())
        };
        let mut sink = LineSink::new(on_line);
        let result = match (feed, inv.stdin.is_some()) {
            (Some(_), true) => {
                return Err(SessionError::InvalidCommand {
                    reason: format!(
                        "{what} is too long for a Windows command line and also needs stdin"
                    ),
                });
            }
            (Some(f), false) => self.stream(
                &inv.command_line,
                &what,
                timeout,
                Some(f),
                &mut sink,
                cmd.dump_on_timeout,
            ),
            (None, true) => self.stream(
                &inv.command_line,
                &what,
                timeout,
                Some(&mut send_source),
                &mut sink,
                cmd.dump_on_timeout,
            ),
            (None, false) => self.stream(
                &inv.command_line,
                &what,
                timeout,
                None,
                &mut sink,
                cmd.dump_on_timeout,
            ),
        };
        sink.flush();
        let (killed, err) = match result {
            Ok(End::Exited(code)) => return Ok(ExitStatus { code }),
            Ok(End::TimedOut { killed }) => (
                killed,
                SessionError::Timeout {
                    what,
                    after: timeout.unwrap_or_default(),
                },
            ),
            Ok(End::Cancelled { killed }) => (killed, SessionError::Cancelled { what }),
            Err(e) => (false, e),
        };
        if !killed {
            self.drop_conn();
        }
        Err(err)
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        self.disconnect();
    }
}

/// Whether the peer has closed (or reset) the socket, without blocking or consuming data.
fn peer_closed(fd: i32) -> bool {
    let mut b = [0u8; 1];
    // SAFETY: a 1-byte peek into a local buffer on a socket we own.
    let n = unsafe {
        libc::recv(
            fd,
            b.as_mut_ptr().cast(),
            1,
            libc::MSG_PEEK | libc::MSG_DONTWAIT,
        )
    };
    if n == 0 {
        return true;
    }
    n < 0 && {
        let e = std::io::Error::last_os_error().raw_os_error();
        e != Some(libc::EAGAIN) && e != Some(libc::EWOULDBLOCK) && e != Some(libc::EINTR)
    }
}

/// Runs the kill command for the tree of `pid` on its own channel (blocking, bounded).
fn kill_tree_blocking(sess: &ssh2::Session, os: GuestOs, pid: u32) -> Result<(), String> {
    let line = wrap::command_line(os, &wrap::kill_tree(os, pid)).map_err(|e| e.to_string())?;
    sess.set_timeout(KILL_TIMEOUT.as_millis() as u32);
    let r = (|| -> Result<(), ssh2::Error> {
        let mut ch = sess.channel_session()?;
        ch.exec(&line)?;
        ch.send_eof()?;
        let mut sink = Vec::new();
        let _ = ch.read_to_end(&mut sink);
        let _ = ch.stderr().read_to_end(&mut sink);
        ch.wait_close()?;
        Ok(())
    })();
    sess.set_timeout(BLOCKING_TIMEOUT.as_millis() as u32);
    r.map_err(|e| e.to_string())
}

/// libssh2 errors that mean the transport failed (timeout, socket), not the protocol.
fn is_transport_error(e: &ssh2::Error) -> bool {
    matches!(
        e.code(),
        // TIMEOUT, SOCKET_SEND, SOCKET_DISCONNECT, SOCKET_TIMEOUT, SOCKET_RECV, BANNER_RECV
        ssh2::ErrorCode::Session(-9 | -7 | -13 | -30 | -43 | -2)
    )
}

/// libssh2's "try again" in non-blocking mode.
fn would_block(e: &ssh2::Error) -> bool {
    e.code() == ssh2::ErrorCode::Session(-37)
}

/// After a connection error: blocking again with a short bound, so freeing the channel and the
/// session (which may try to send a close on a dead path) cannot hang.
fn give_up(sess: &ssh2::Session) {
    restore_blocking(sess);
    sess.set_timeout(1000);
}

fn restore_blocking(sess: &ssh2::Session) {
    sess.set_blocking(true);
    sess.set_keepalive(true, 0);
}

/// Waits until libssh2's socket is ready in the direction libssh2 is blocked on; returns whether
/// data arrived.
fn wait_socket(fd: i32, sess: &ssh2::Session, timeout: Duration) -> bool {
    let dirs = sess.block_directions();
    let mut events = libc::POLLIN;
    if matches!(
        dirs,
        ssh2::BlockDirections::Outbound | ssh2::BlockDirections::Both
    ) {
        events |= libc::POLLOUT;
    }
    let mut pfd = libc::pollfd {
        fd,
        events,
        revents: 0,
    };
    // SAFETY: one valid pollfd for the duration of the call.
    let n = unsafe { libc::poll(&mut pfd, 1, timeout.as_millis() as i32) };
    n > 0 && (pfd.revents & libc::POLLIN) != 0
}

/// Opens, verifies and authenticates one SSH connection, all bounded by `timeout`.
fn open(
    ep: &Endpoint,
    opts: &SessionOptions,
    timeout: Duration,
) -> Result<ssh2::Session, SessionError> {
    let endpoint = ep.to_string();
    let connect_err = |detail: String| SessionError::Connect {
        endpoint: endpoint.clone(),
        detail,
    };
    let addrs: Vec<_> = (ep.host.as_str(), ep.port)
        .to_socket_addrs()
        .map_err(|e| connect_err(format!("cannot resolve {}: {e}", ep.host)))?
        .collect();
    let mut last = None;
    let mut tcp = None;
    for a in &addrs {
        match TcpStream::connect_timeout(a, timeout) {
            Ok(s) => {
                tcp = Some(s);
                break;
            }
            Err(e) => last = Some(e),
        }
    }
    let tcp = tcp.ok_or_else(|| {
        connect_err(
            last.map(|e| e.to_string())
                .unwrap_or_else(|| "no address".into()),
        )
    })?;
    tcp.set_nodelay(true)
        .map_err(|e| connect_err(format!("TCP_NODELAY: {e}")))?;
    let mut sess = ssh2::Session::new().map_err(|e| connect_err(e.to_string()))?;
    sess.set_tcp_stream(tcp);
    sess.set_timeout(timeout.as_millis().max(1) as u32);
    // Prefer one stable host key type, so the pin does not flip between algorithms.
    let _ = sess.method_pref(
        ssh2::MethodType::HostKey,
        "ssh-ed25519,ecdsa-sha2-nistp256,ecdsa-sha2-nistp384,ecdsa-sha2-nistp521,rsa-sha2-512,rsa-sha2-256,ssh-rsa",
    );
    for mt in [ssh2::MethodType::CryptCs, ssh2::MethodType::CryptSc] {
        let _ = sess.method_pref(
            mt,
            "aes128-gcm@openssh.com,aes256-gcm@openssh.com,aes128-ctr,aes256-ctr,chacha20-poly1305@openssh.com",
        );
    }
    sess.handshake().map_err(|e| SessionError::Handshake {
        endpoint: endpoint.clone(),
        detail: e.to_string(),
    })?;

    let (key, ty) = sess.host_key().ok_or_else(|| SessionError::Handshake {
        endpoint: endpoint.clone(),
        detail: "no host key".into(),
    })?;
    let presented = format!(
        "{} {}",
        hostkey::key_type_name(ty),
        base64::engine::general_purpose::STANDARD.encode(key)
    );
    let io = |e| {
        SessionError::io(
            format!(
                "reading the pinned host keys in {}",
                opts.known_hosts.display()
            ),
            e,
        )
    };
    match hostkey::check(&opts.known_hosts, &ep.host, ep.port, &presented).map_err(io)? {
        PinCheck::Match => {}
        PinCheck::New => {
            tracing::info!(endpoint = %endpoint, "pinning host key {presented}");
            hostkey::pin(&opts.known_hosts, &ep.host, ep.port, &presented).map_err(io)?;
        }
        PinCheck::Changed { pinned } if opts.accept_new_host_key => {
            tracing::warn!(endpoint = %endpoint, "host key changed from {pinned}; accepting {presented} as asked");
            hostkey::pin(&opts.known_hosts, &ep.host, ep.port, &presented).map_err(io)?;
        }
        PinCheck::Changed { pinned } => {
            return Err(SessionError::HostKeyChanged {
                endpoint,
                pinned,
                presented,
                known_hosts: opts.known_hosts.clone(),
            });
        }
    }

    // A timeout or socket error during auth (a guest still booting behind QEMU's port forward)
    // is a connection problem worth retrying, not a rejected key.
    let auth_failure = |e: &ssh2::Error, rejected: SessionError| {
        if is_transport_error(e) {
            SessionError::Connect {
                endpoint: endpoint.clone(),
                detail: format!("authentication did not complete: {e}"),
            }
        } else {
            rejected
        }
    };
    let auth_err = |how: String, detail: String| SessionError::Auth {
        endpoint: endpoint.clone(),
        user: ep.user.clone(),
        how,
        detail,
    };
    match &ep.identity {
        Some(key) => {
            let how = format!("key {}", key.display());
            if !key.exists() {
                return Err(auth_err(how, "the key file does not exist".into()));
            }
            sess.userauth_pubkey_file(&ep.user, None, key, None)
                .map_err(|e| auth_failure(&e, auth_err(how, e.to_string())))?;
        }
        None => sess
            .userauth_agent(&ep.user)
            .map_err(|e| auth_failure(&e, auth_err("SSH agent".into(), e.to_string())))?,
    }
    if !sess.authenticated() {
        return Err(auth_err(
            "publickey".into(),
            "the server did not accept the key".into(),
        ));
    }
    sess.set_timeout(BLOCKING_TIMEOUT.as_millis() as u32);
    sess.set_keepalive(true, 0);
    Ok(sess)
}

/// A short description of a command for messages.
fn describe(os: GuestOs, cmd: &RemoteCommand) -> String {
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

fn signal_number(name: &str) -> i32 {
    match name {
        "HUP" => 1,
        "INT" => 2,
        "QUIT" => 3,
        "ABRT" => 6,
        "KILL" => 9,
        "SEGV" => 11,
        "PIPE" => 13,
        "ALRM" => 14,
        "TERM" => 15,
        _ => 0,
    }
}

/// Splits byte chunks into lines per stream; strips the pid marker from stderr.
struct LineSink<'a> {
    on_line: &'a mut dyn FnMut(Stream, &str),
    out: Vec<u8>,
    err: Vec<u8>,
    pid: Option<u32>,
    seen_first_err: bool,
}

impl<'a> LineSink<'a> {
    fn new(on_line: &'a mut dyn FnMut(Stream, &str)) -> Self {
        LineSink {
            on_line,
            out: Vec::new(),
            err: Vec::new(),
            pid: None,
            seen_first_err: false,
        }
    }

    fn push(&mut self, stream: Stream, data: &[u8]) {
        let buf = match stream {
            Stream::Stdout => &mut self.out,
            Stream::Stderr => &mut self.err,
        };
        buf.extend_from_slice(data);
        let Some(last_nl) = buf.iter().rposition(|&b| b == b'\n') else {
            return;
        };
        let complete: Vec<u8> = buf.drain(..=last_nl).collect();
        for line in complete[..complete.len() - 1].split(|&b| b == b'\n') {
            self.emit(stream, line);
        }
    }

    fn emit(&mut self, stream: Stream, line: &[u8]) {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let text = String::from_utf8_lossy(line);
        if stream == Stream::Stderr && !self.seen_first_err {
            self.seen_first_err = true;
            if let Some(pid) = wrap::parse_pid_marker(&text) {
                self.pid = Some(pid);
                return;
            }
        }
        (self.on_line)(stream, &text);
    }

    fn flush(&mut self) {
        for stream in [Stream::Stdout, Stream::Stderr] {
            let rest = std::mem::take(match stream {
                Stream::Stdout => &mut self.out,
                Stream::Stderr => &mut self.err,
            });
            if !rest.is_empty() {
                self.emit(stream, &rest);
            }
        }
    }
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
