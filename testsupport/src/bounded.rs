//! Runs a tool (Chromium, node) the way every test must: in its own process group, with a
//! deadline, and killed with all its children on timeout, on return and on drop.

use std::io::{self, Read};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// What a bounded run produced.
#[derive(Debug)]
pub struct Output {
    /// How it exited.
    pub status: ExitStatus,
    /// Everything on stdout.
    pub stdout: String,
    /// Everything on stderr.
    pub stderr: String,
}

/// Kills the whole process group when dropped.
struct Group(Child);

impl Group {
    fn kill(&mut self) {
        let pgid = self.0.id() as libc::pid_t;
        // SAFETY: kill(2) on our own child's process group; no memory is touched.
        unsafe {
            libc::kill(-pgid, libc::SIGKILL);
        }
    }
}

impl Drop for Group {
    fn drop(&mut self) {
        self.kill();
        let _ = self.0.wait();
    }
}

fn reader(r: Option<impl Read + Send + 'static>) -> JoinHandle<String> {
    std::thread::spawn(move || {
        let mut buf = Vec::new();
        if let Some(mut r) = r {
            let _ = r.read_to_end(&mut buf);
        }
        String::from_utf8_lossy(&buf).into_owned()
    })
}

/// Runs `cmd` (stdin closed) and waits at most `timeout`; whatever the command started is killed
/// when it returns. A run over the deadline is an `io::ErrorKind::TimedOut` error.
pub fn run(cmd: &mut Command, timeout: Duration) -> io::Result<Output> {
    use std::os::unix::process::CommandExt as _;
    cmd.process_group(0)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut g = Group(cmd.spawn()?);
    let out = reader(g.0.stdout.take());
    let err = reader(g.0.stderr.take());
    let deadline = Instant::now() + timeout;
    let status = loop {
        if let Some(s) = g.0.try_wait()? {
            break s;
        }
        if Instant::now() >= deadline {
            drop(g);
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!("{cmd:?} did not finish in {timeout:?}; it was killed"),
            ));
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    // Children left behind (a browser's helpers) would hold the pipes open.
    g.kill();
    Ok(Output {
        status,
        stdout: out.join().unwrap_or_default(),
        stderr: err.join().unwrap_or_default(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn output_and_timeout() {
        let o = run(
            Command::new("sh").args(["-c", "echo out; echo err >&2"]),
            Duration::from_secs(10),
        )
        .unwrap();
        assert!(o.status.success());
        assert_eq!((o.stdout.as_str(), o.stderr.as_str()), ("out\n", "err\n"));
        let t0 = Instant::now();
        // The grandchild keeps the pipe open: it must be killed too, or this would hang.
        let e = run(
            Command::new("sh").args(["-c", "sleep 30 & sleep 30"]),
            Duration::from_millis(300),
        )
        .unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::TimedOut);
        assert!(t0.elapsed() < Duration::from_secs(5));
    }
}
