//! Running a command over the session's channel: non-blocking streaming of stdout and stderr by
//! line, stdin feeds, keepalives, timeouts and cancellation that kill the remote process tree.
use std::io::{ErrorKind, Read, Write};
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

use super::hang;
use super::ssh::*;
use super::wrap;
use super::{ExitStatus, GuestOs, RemoteCommand, SessionError, Stream};

impl Session {
    /// Opens a channel, runs `line`, optionally feeds stdin, and streams output into `sink`.
    pub(super) fn stream(
        &mut self,
        line: &str,
        what: &str,
        timeout: Option<Duration>,
        stdin: Option<Feed<'_>>,
        sink: &mut LineSink<'_>,
        dump_on_timeout: bool,
    ) -> Result<End, SessionError> {
        let started = Instant::now();
        let watch = Watch {
            os: self.ep.os,
            keepalive: self.opts.keepalive,
            cancel: self.cancel.clone(),
            timeout,
            deadline: timeout.map(|t| started + t),
            dump_on_timeout,
        };
        let endpoint = self.ep.to_string();
        let sess = self.ssh()?.clone();
        let mut run = Running::start(sess, endpoint, what, line, stdin)?;
        match run.pump(&watch, sink)? {
            Some(end) => Ok(run.kill(watch.os, sink.pid, end)),
            None => run.wait_exit(),
        }
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

    pub(super) fn exec_inner(
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
        let stdin: Option<Feed<'_>> = match (feed, inv.stdin.is_some()) {
            (Some(_), true) => {
                return Err(SessionError::InvalidCommand {
                    reason: format!(
                        "{what} is too long for a Windows command line and also needs stdin"
                    ),
                });
            }
            (Some(f), false) => Some(f),
            (None, true) => Some(&mut send_source),
            (None, false) => None,
        };
        let result = self.stream(
            &inv.command_line,
            &what,
            timeout,
            stdin,
            &mut sink,
            cmd.dump_on_timeout,
        );
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

/// What ends a streaming command early: its timeout (with the hung-test dump first, if asked)
/// and the cancel flag; and how often to prove the connection alive.
struct Watch {
    os: GuestOs,
    keepalive: Duration,
    cancel: CancelHandle,
    timeout: Option<Duration>,
    deadline: Option<Instant>,
    dump_on_timeout: bool,
}

/// A command started on its own channel of the connection.
struct Running<'w> {
    // Declared before `sess`: the channel is freed first, as when both were locals.
    ch: ssh2::Channel,
    sess: ssh2::Session,
    endpoint: String,
    what: &'w str,
}

impl<'w> Running<'w> {
    /// The blocking part: opens the channel, starts `line`, feeds its stdin and closes it.
    fn start(
        sess: ssh2::Session,
        endpoint: String,
        what: &'w str,
        line: &str,
        stdin: Option<Feed<'_>>,
    ) -> Result<Self, SessionError> {
        let lost = |during: String, e: &ssh2::Error| connection_lost(&endpoint, during, e);
        sess.set_blocking(true);
        sess.set_keepalive(true, 0);
        sess.set_timeout(BLOCKING_TIMEOUT.as_millis() as u32);
        let mut ch = sess
            .channel_session()
            .map_err(|e| lost(format!("opening a channel for {what}"), &e))?;
        ch.exec(line)
            .map_err(|e| lost(format!("starting {what}"), &e))?;
        if let Some(feed) = stdin {
            feed(&mut ch)
                .map_err(|e| connection_lost(&endpoint, format!("sending input to {what}"), &e))?;
        }
        ch.send_eof()
            .map_err(|e| lost(format!("closing the input of {what}"), &e))?;
        Ok(Running {
            ch,
            sess,
            endpoint,
            what,
        })
    }

    /// The connection failed while `during`: blocking again with a short bound, so freeing the
    /// channel cannot hang, and the error.
    fn lost(&self, during: String, e: &dyn std::fmt::Display) -> SessionError {
        give_up(&self.sess);
        connection_lost(&self.endpoint, during, e)
    }

    /// The non-blocking part: reads both streams in turn, sends keepalives, watches the deadline
    /// and the cancel flag. `None` at EOF; otherwise how the command is to end (killed).
    fn pump(&mut self, w: &Watch, sink: &mut LineSink<'_>) -> Result<Option<End>, SessionError> {
        non_blocking(&self.sess, w.keepalive);
        let dead_after = w.keepalive * 3 + Duration::from_secs(5);
        let mut deadline = w.deadline;
        // After a timeout with `dump_on_timeout`: the dump step ran, the command has a short
        // grace to print (or exit), then it is killed as timed out whatever it did.
        let mut dumped = false;
        let fd = self.sess.as_raw_fd();
        let mut buf = vec![0u8; 64 * 1024];
        let mut last_rx = Instant::now();
        let mut next_keepalive = Instant::now() + w.keepalive;
        loop {
            let progressed = self.read_available(&mut buf, sink, &mut last_rx)?;
            if self.ch.eof() {
                return Ok(dumped.then_some(End::TimedOut { killed: false }));
            }
            if progressed {
                continue;
            }
            let now = Instant::now();
            if w.cancel.is_cancelled() {
                return Ok(Some(End::Cancelled { killed: false }));
            }
            if deadline.is_some_and(|d| now >= d) {
                if w.dump_on_timeout && !dumped {
                    dumped = true;
                    let note = hang::dump_blocking(&self.sess, w.os, sink.pid, w.timeout);
                    sink.push(Stream::Stderr, format!("{note}\n").as_bytes());
                    non_blocking(&self.sess, w.keepalive);
                    deadline = Some(Instant::now() + hang::GRACE);
                    last_rx = Instant::now();
                    continue;
                }
                return Ok(Some(End::TimedOut { killed: false }));
            }
            if now >= next_keepalive {
                next_keepalive = self.keepalive(now)?;
            }
            if now.duration_since(last_rx) > dead_after {
                return Err(self.lost(
                    format!("running {}", self.what),
                    &format!("nothing received for {:?} despite keepalives", dead_after),
                ));
            }
            if wait_socket(fd, &self.sess, Duration::from_millis(100)) {
                last_rx = Instant::now();
            }
        }
    }

    /// Reads what stdout and stderr hold now (at most 16 chunks each) into `sink`; returns
    /// whether anything came.
    fn read_available(
        &mut self,
        buf: &mut [u8],
        sink: &mut LineSink<'_>,
        last_rx: &mut Instant,
    ) -> Result<bool, SessionError> {
        let mut progressed = false;
        for stream in [Stream::Stdout, Stream::Stderr] {
            for _ in 0..16 {
                let r = match stream {
                    Stream::Stdout => self.ch.read(buf),
                    Stream::Stderr => self.ch.stderr().read(buf),
                };
                match r {
                    Ok(0) => break,
                    Ok(n) => {
                        sink.push(stream, &buf[..n]);
                        progressed = true;
                        *last_rx = Instant::now();
                    }
                    Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                    Err(e) => {
                        return Err(self.lost(format!("reading the output of {}", self.what), &e));
                    }
                }
            }
        }
        Ok(progressed)
    }

    /// Sends a keepalive; returns when the next one is due.
    fn keepalive(&self, now: Instant) -> Result<Instant, SessionError> {
        match self.sess.keepalive_send() {
            Ok(secs) => Ok(now + Duration::from_secs(u64::from(secs.max(1)))),
            Err(e) if would_block(&e) => Ok(now + Duration::from_secs(1)),
            Err(e) => Err(self.lost(format!("sending a keepalive during {}", self.what), &e)),
        }
    }

    /// Kills the command's remote tree first (on a second channel, so that closing this one
    /// does not wait for it), then closes the channel; `end` says whether the kill worked.
    fn kill(self, os: GuestOs, pid: Option<u32>, mut end: End) -> End {
        let Running {
            mut ch, sess, what, ..
        } = self;
        restore_blocking(&sess);
        let killed = match pid {
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
        end
    }

    /// After EOF: waits (bounded) for the channel to close, for the exit status.
    fn wait_exit(mut self) -> Result<End, SessionError> {
        let fd = self.sess.as_raw_fd();
        let close_by = Instant::now() + Duration::from_secs(10);
        loop {
            match self.ch.wait_close() {
                Ok(()) => break,
                Err(e) if would_block(&e) => {
                    if Instant::now() >= close_by {
                        break;
                    }
                    wait_socket(fd, &self.sess, Duration::from_millis(100));
                }
                Err(e) => {
                    return Err(self.lost(format!("waiting for {} to exit", self.what), &e));
                }
            }
        }
        let signal = self.ch.exit_signal().ok().and_then(|s| s.exit_signal);
        let code = self.ch.exit_status().unwrap_or(-1);
        let Running { ch, sess, .. } = self;
        restore_blocking(&sess);
        drop(ch);
        Ok(End::Exited(match signal {
            Some(sig) => 128 + signal_number(&sig),
            None => code,
        }))
    }
}

fn connection_lost(endpoint: &str, during: String, e: &dyn std::fmt::Display) -> SessionError {
    SessionError::ConnectionLost {
        endpoint: endpoint.to_string(),
        during,
        detail: e.to_string(),
    }
}

/// Non-blocking mode with libssh2's own keepalive timer at `keepalive` (we send them ourselves).
fn non_blocking(sess: &ssh2::Session, keepalive: Duration) {
    sess.set_blocking(false);
    sess.set_keepalive(true, keepalive.as_secs().max(1) as u32);
}

/// Whether the peer has closed (or reset) the socket, without blocking or consuming data.
pub(super) fn peer_closed(fd: i32) -> bool {
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
pub(super) fn kill_tree_blocking(
    sess: &ssh2::Session,
    os: GuestOs,
    pid: u32,
) -> Result<(), String> {
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
pub(super) fn is_transport_error(e: &ssh2::Error) -> bool {
    matches!(
        e.code(),
        // TIMEOUT, SOCKET_SEND, SOCKET_DISCONNECT, SOCKET_TIMEOUT, SOCKET_RECV, BANNER_RECV
        ssh2::ErrorCode::Session(-9 | -7 | -13 | -30 | -43 | -2)
    )
}

/// libssh2's "try again" in non-blocking mode.
pub(super) fn would_block(e: &ssh2::Error) -> bool {
    e.code() == ssh2::ErrorCode::Session(-37)
}

/// After a connection error: blocking again with a short bound, so freeing the channel and the
/// session (which may try to send a close on a dead path) cannot hang.
pub(super) fn give_up(sess: &ssh2::Session) {
    restore_blocking(sess);
    sess.set_timeout(1000);
}

pub(super) fn restore_blocking(sess: &ssh2::Session) {
    sess.set_blocking(true);
    sess.set_keepalive(true, 0);
}

/// Waits until libssh2's socket is ready in the direction libssh2 is blocked on; returns whether
/// data arrived.
pub(super) fn wait_socket(fd: i32, sess: &ssh2::Session, timeout: Duration) -> bool {
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

pub(super) fn signal_number(name: &str) -> i32 {
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
pub(super) struct LineSink<'a> {
    pub(super) on_line: &'a mut dyn FnMut(Stream, &str),
    pub(super) out: Vec<u8>,
    pub(super) err: Vec<u8>,
    pub(super) pid: Option<u32>,
    pub(super) seen_first_err: bool,
}

impl<'a> LineSink<'a> {
    pub(super) fn new(on_line: &'a mut dyn FnMut(Stream, &str)) -> Self {
        LineSink {
            on_line,
            out: Vec::new(),
            err: Vec::new(),
            pid: None,
            seen_first_err: false,
        }
    }

    pub(super) fn push(&mut self, stream: Stream, data: &[u8]) {
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

    pub(super) fn emit(&mut self, stream: Stream, line: &[u8]) {
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

    pub(super) fn flush(&mut self) {
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
