//! Host processes, the one way harness starts them: each child leads its own process group
//! (Ctrl-C at the terminal does not reach it; killing the group leaves no orphans), has a
//! timeout, honours a cancel flag within 50 ms, and does not inherit the GitHub token.

use std::io::{BufRead, BufReader, Read};
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// The one cancel flag: Ctrl-C sets it (sticky until [`Cancel::reset`]); long work polls it and
/// stops cleanly. Clones share the flag.
#[derive(Debug, Clone, Default)]
pub struct Cancel(std::sync::Arc<AtomicBool>);

impl Cancel {
    pub fn cancel(&self) {
        self.0.store(true, Ordering::SeqCst);
    }
    pub fn is_cancelled(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }
    pub fn reset(&self) {
        self.0.store(false, Ordering::SeqCst);
    }
}

/// A background thread that is told to stop (its [`Cancel`] raised) and joined when dropped;
/// its body polls the flag it is given.
pub struct Worker {
    stop: Cancel,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Worker {
    /// Starts `body` on a thread named `name`.
    pub fn spawn(
        name: &str,
        body: impl FnOnce(Cancel) + Send + 'static,
    ) -> std::io::Result<Worker> {
        let stop = Cancel::default();
        let flag = stop.clone();
        let thread = std::thread::Builder::new()
            .name(name.into())
            .spawn(move || body(flag))?;
        Ok(Worker {
            stop,
            thread: Some(thread),
        })
    }
}

impl std::fmt::Debug for Worker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Worker").finish_non_exhaustive()
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        self.stop.cancel();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// The one directory walker: every entry under `root` (not `root` itself), symbolic links not
/// followed, in file-name order so that what is built from it is stable.
pub fn walk(root: &std::path::Path) -> walkdir::WalkDir {
    walkdir::WalkDir::new(root)
        .min_depth(1)
        .follow_links(false)
        .sort_by_file_name()
}

/// `path` relative to `root`, `/`-separated (how manifests and guests name files).
pub fn rel_slash(root: &std::path::Path, path: &std::path::Path) -> String {
    path.strip_prefix(root)
        .unwrap_or(path)
        .components()
        .map(|c| c.as_os_str().to_string_lossy())
        .collect::<Vec<_>>()
        .join("/")
}

/// Environment variables holding secrets (the GitHub token) that no child inherits unless a
/// caller passes one on purpose.
pub const SECRET_ENV: &[&str] = &["GITHUB_TOKEN", "GH_TOKEN"];

/// How long to keep reading output after the process is gone, in case a stray grandchild that
/// escaped the process group still holds the pipe.
const DRAIN_LIMIT: Duration = Duration::from_secs(2);

/// Removes [`SECRET_ENV`] from a child's environment.
pub fn scrub(cmd: &mut Command) -> &mut Command {
    for v in SECRET_ENV {
        cmd.env_remove(v);
    }
    cmd
}

/// Removes the [`SECRET_ENV`] variables a child would inherit, keeping any set on `cmd` on
/// purpose (a suite's `env` may pass a token to its tests).
pub fn scrub_inherited(cmd: &mut Command) -> &mut Command {
    for v in SECRET_ENV {
        if !cmd.get_envs().any(|(k, _)| k == *v) {
            cmd.env_remove(v);
        }
    }
    cmd
}

/// SIGKILL the process group led by `pid` (and `pid` itself). Pids 0 and 1 are ignored.
pub fn kill_group(pid: u32) {
    let Ok(pid) = i32::try_from(pid) else { return };
    if pid <= 1 {
        return;
    }
    // SAFETY: kill(2) has no memory-safety preconditions; a stale id only yields ESRCH.
    unsafe {
        libc::kill(-pid, libc::SIGKILL);
        libc::kill(pid, libc::SIGKILL);
    }
}

/// Kills a process group when dropped, so that a panic or an early return leaves no orphans.
#[derive(Debug)]
pub struct GroupGuard {
    pgid: u32,
    armed: bool,
}

impl GroupGuard {
    /// Guards the group led by `pgid` (a child spawned with `process_group(0)`).
    pub fn new(pgid: u32) -> Self {
        Self { pgid, armed: true }
    }

    /// Kills the group now (once; later calls and the drop do nothing).
    pub fn kill(&mut self) {
        if std::mem::take(&mut self.armed) {
            kill_group(self.pgid);
        }
    }
}

impl Drop for GroupGuard {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Which output stream a line came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    Stdout,
    Stderr,
}

/// How a process ended.
#[derive(Debug, Clone, Copy)]
pub struct Outcome {
    /// Its exit status (after a kill: the signal).
    pub status: ExitStatus,
    /// Killed because the timeout expired.
    pub timed_out: bool,
    /// Killed because the cancel flag was set.
    pub cancelled: bool,
}

impl Outcome {
    /// The exit code, `None` when it was killed or died of a signal.
    pub fn code(&self) -> Option<i32> {
        if self.timed_out || self.cancelled {
            None
        } else {
            self.status.code()
        }
    }
}

/// Runs `cmd` (stdin null; stdout and stderr piped, line by line to `on_line` without the
/// newline) in its own process group, without inherited secrets ([`scrub_inherited`]). The
/// group is killed when the leader exits (its helpers go with it), on `timeout`, when `cancel`
/// is set, and if this function unwinds.
pub fn run_lines(
    cmd: Command,
    timeout: Duration,
    cancel: Option<&Cancel>,
    on_line: &mut dyn FnMut(Stream, &[u8]),
) -> std::io::Result<Outcome> {
    Running::start(cmd)?.finish(timeout, cancel, on_line)
}

/// A process started by [`Running::start`]: spawning and waiting fail differently.
pub struct Running {
    cmd: Command,
    child: Child,
    guard: GroupGuard,
    rx: mpsc::Receiver<(Stream, Vec<u8>)>,
}

impl Running {
    /// Spawns `cmd` as [`run_lines`] does; the error is the spawn's.
    pub fn start(mut cmd: Command) -> std::io::Result<Running> {
        scrub_inherited(&mut cmd)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0);
        tracing::debug!(?cmd, "spawning");
        let mut child = cmd.spawn()?;
        let guard = GroupGuard::new(child.id());
        let (tx, rx) = mpsc::channel();
        spawn_reader(
            child.stdout.take().expect("piped"),
            Stream::Stdout,
            tx.clone(),
        );
        spawn_reader(child.stderr.take().expect("piped"), Stream::Stderr, tx);
        Ok(Running {
            cmd,
            child,
            guard,
            rx,
        })
    }

    /// Hands over its output until it ends, is timed out or cancelled (polled every 50 ms).
    pub fn finish(
        self,
        timeout: Duration,
        cancel: Option<&Cancel>,
        on_line: &mut dyn FnMut(Stream, &[u8]),
    ) -> std::io::Result<Outcome> {
        self.finish_with(timeout, cancel, on_line, &mut |_| None)
    }

    /// [`Running::finish`], but at the timeout `on_timeout` is called once first with the
    /// process group's id (e.g. to ask a hung program for a dump). If it returns a grace period,
    /// the group is killed only after it (the outcome is still timed out); `None` kills at once.
    pub fn finish_with(
        mut self,
        timeout: Duration,
        cancel: Option<&Cancel>,
        on_line: &mut dyn FnMut(Stream, &[u8]),
        on_timeout: &mut dyn FnMut(u32) -> Option<Duration>,
    ) -> std::io::Result<Outcome> {
        let mut deadline = Instant::now() + timeout;
        let mut warned = false;
        let (mut timed_out, mut cancelled, mut killed) = (false, false, false);
        let mut status = None;
        let mut drain_until: Option<Instant> = None;
        loop {
            match self.rx.recv_timeout(Duration::from_millis(50)) {
                Ok((s, line)) => on_line(s, &line),
                Err(mpsc::RecvTimeoutError::Disconnected) if status.is_some() => break,
                Err(_) => {}
            }
            if status.is_none() {
                if let Some(st) = self.child.try_wait()? {
                    status = Some(st);
                    // The leader is gone: take its helpers with it, then drain what is buffered.
                    self.guard.kill();
                    drain_until = Some(Instant::now() + DRAIN_LIMIT);
                } else {
                    let cancel = cancel.is_some_and(Cancel::is_cancelled);
                    if !cancel && !warned && Instant::now() >= deadline {
                        warned = true;
                        if let Some(grace) = on_timeout(self.child.id()) {
                            timed_out = true;
                            deadline = Instant::now() + grace;
                        }
                    }
                    if !killed && (cancel || Instant::now() >= deadline) {
                        killed = true;
                        cancelled = cancel;
                        timed_out = timed_out || !cancel;
                        tracing::warn!(cmd = ?self.cmd, timed_out, cancelled, "killing process group");
                        self.guard.kill();
                        // Armed again: the group is killed once more if the leader outlives this.
                        self.guard = GroupGuard::new(self.child.id());
                    }
                }
            }
            if drain_until.is_some_and(|d| Instant::now() >= d) {
                break;
            }
        }
        Ok(Outcome {
            status: status.expect("the loop ends only after the child was reaped"),
            timed_out,
            cancelled,
        })
    }
}

fn spawn_reader<R: Read + Send + 'static>(
    r: R,
    stream: Stream,
    tx: mpsc::Sender<(Stream, Vec<u8>)>,
) {
    std::thread::spawn(move || {
        let mut r = BufReader::with_capacity(64 * 1024, r);
        let mut buf = Vec::with_capacity(256);
        loop {
            buf.clear();
            match r.read_until(b'\n', &mut buf) {
                Ok(0) | Err(_) => break,
                Ok(_) => {
                    if buf.last() == Some(&b'\n') {
                        buf.pop();
                    }
                    if tx.send((stream, buf.clone())).is_err() {
                        break;
                    }
                }
            }
        }
    });
}

/// What a short command printed.
#[derive(Debug, Clone)]
pub struct Output {
    pub stdout: String,
    pub stderr: String,
    pub outcome: Outcome,
}

impl Output {
    /// Whether it exited with code 0 in time.
    pub fn success(&self) -> bool {
        self.outcome.code() == Some(0)
    }
}

/// Runs a short command through [`run_lines`], collecting its output (lines joined by `\n`).
pub fn output(cmd: Command, timeout: Duration, cancel: Option<&Cancel>) -> std::io::Result<Output> {
    let (mut stdout, mut stderr) = (String::new(), String::new());
    let outcome = run_lines(cmd, timeout, cancel, &mut |s, l| {
        let buf = match s {
            Stream::Stdout => &mut stdout,
            Stream::Stderr => &mut stderr,
        };
        buf.push_str(&String::from_utf8_lossy(l));
        buf.push('\n');
    })?;
    Ok(Output {
        stdout,
        stderr,
        outcome,
    })
}

#[cfg(test)]
mod tests {

    #[test]
    fn walk_lists_everything_below_the_root_in_name_order_without_following_links() {
        let d = std::env::temp_dir().join(format!("hostproc-walk-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(d.join("b/c")).unwrap();
        std::fs::create_dir_all(d.join("outside")).unwrap();
        std::fs::write(d.join("b/c/f"), "x").unwrap();
        std::fs::write(d.join("a"), "y").unwrap();
        std::os::unix::fs::symlink(d.join("outside"), d.join("b/link")).unwrap();
        let root = d.join("b");
        let got: Vec<String> = walk(&root)
            .into_iter()
            .map(|e| rel_slash(&root, e.unwrap().path()))
            .collect();
        assert_eq!(got, ["c", "c/f", "link"]);
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn a_worker_is_stopped_and_joined_when_dropped() {
        let done = std::sync::Arc::new(AtomicBool::new(false));
        let d = done.clone();
        let w = Worker::spawn("test-worker", move |stop| {
            while !stop.is_cancelled() {
                std::thread::sleep(Duration::from_millis(5));
            }
            d.store(true, Ordering::SeqCst);
        })
        .unwrap();
        assert!(!done.load(Ordering::SeqCst));
        drop(w);
        assert!(
            done.load(Ordering::SeqCst),
            "drop returns only after the body ended"
        );
    }
    use super::*;

    fn sh(script: &str) -> Command {
        let mut c = Command::new("sh");
        c.args(["-c", script]);
        c
    }

    #[test]
    fn lines_and_exit_code() {
        let o = output(
            sh("echo a; echo b >&2; exit 3"),
            Duration::from_secs(10),
            None,
        )
        .unwrap();
        assert_eq!((o.stdout.as_str(), o.stderr.as_str()), ("a\n", "b\n"));
        assert_eq!(o.outcome.code(), Some(3));
        assert!(!o.success());
    }

    #[test]
    fn timeout_kills_the_whole_group() {
        let dir = std::env::temp_dir().join(format!("hostproc-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let pidfile = dir.join("grandchild");
        let script = format!("sleep 300 & echo $! > {}; wait", pidfile.display());
        let t0 = Instant::now();
        let o = output(sh(&script), Duration::from_millis(300), None).unwrap();
        assert!(o.outcome.timed_out && o.outcome.code().is_none());
        assert!(t0.elapsed() < Duration::from_secs(5), "{:?}", t0.elapsed());
        let pid: i32 = std::fs::read_to_string(&pidfile)
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(5);
        // SAFETY: kill(pid, 0) only probes whether the process exists.
        while unsafe { libc::kill(pid, 0) } == 0 {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            if stat
                .rsplit_once(") ")
                .is_some_and(|(_, r)| r.starts_with('Z'))
            {
                break;
            }
            assert!(Instant::now() < deadline, "the grandchild {pid} survived");
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn cancel_stops_within_a_second() {
        let flag = Cancel::default();
        std::thread::scope(|s| {
            s.spawn(|| {
                std::thread::sleep(Duration::from_millis(200));
                flag.cancel();
            });
            let t0 = Instant::now();
            let o = output(sh("sleep 300"), Duration::from_secs(600), Some(&flag)).unwrap();
            assert!(o.outcome.cancelled && !o.outcome.timed_out);
            assert!(t0.elapsed() < Duration::from_secs(2), "{:?}", t0.elapsed());
        });
    }

    #[test]
    fn secrets_are_not_inherited_but_can_be_passed() {
        let mut c = sh("echo \"[$GITHUB_TOKEN][$GH_TOKEN]\"");
        c.env("GH_TOKEN", "given");
        scrub_inherited(&mut c);
        let envs: Vec<_> = c
            .get_envs()
            .map(|(k, v)| (k.to_owned(), v.map(|v| v.to_owned())))
            .collect();
        assert!(envs.contains(&("GITHUB_TOKEN".into(), None)), "{envs:?}");
        assert!(
            envs.contains(&("GH_TOKEN".into(), Some("given".into()))),
            "{envs:?}"
        );
        let o = output(c, Duration::from_secs(10), None).unwrap();
        assert_eq!(o.stdout, "[][given]\n");
        let mut c = sh("true");
        scrub(c.env("GH_TOKEN", "x"));
        assert!(c.get_envs().all(|(_, v)| v.is_none()));
    }
}
