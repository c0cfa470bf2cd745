//! A timed-out command's last words: before its process tree is killed, the Go test binaries in
//! it are dumped (Linux: SIGQUIT, so Go prints every goroutine's stack on stderr; Windows: a full
//! memory dump with the built-in comsvcs.dll MiniDump). The step runs on a second channel of the
//! same connection; what it did becomes one `harness:` line on the command's stderr.

use std::io::Read;
use std::time::Duration;

use serde::Deserialize;

use super::script::builtin;
use super::{GuestOs, HUNG_DUMP_DIR, wrap};

/// How long the command may keep printing (or exit) after the dump step before it is killed.
pub(crate) const GRACE: Duration = Duration::from_secs(10);
/// Bound of the dump step itself (a full dump of a large process takes a while).
const STEP_TIMEOUT: Duration = Duration::from_secs(150);

#[derive(Debug, Deserialize)]
struct Signalled {
    pid: u32,
    exe: String,
}

#[derive(Debug, Deserialize)]
struct Dump {
    pid: u32,
    name: String,
    path: String,
    #[serde(default)]
    bytes: u64,
    error: Option<String>,
}

#[derive(Debug, Deserialize)]
struct Report {
    #[serde(default)]
    signalled: Vec<Signalled>,
    #[serde(default)]
    dumps: Vec<Dump>,
}

/// Runs the dump step for the tree of `pid` and says what it did (one line, `harness: …`).
pub(crate) fn dump_blocking(
    sess: &ssh2::Session,
    os: GuestOs,
    pid: Option<u32>,
    timeout: Option<Duration>,
) -> String {
    let after = timeout.map_or(String::new(), |t| format!(" after {}s", t.as_secs()));
    let Some(pid) = pid else {
        return format!(
            "harness: timed out{after}; no dump: the guest never reported the process id"
        );
    };
    let stdout = command(os, pid).and_then(|line| side_channel(sess, &line));
    describe(os, &after, stdout)
}

fn command(os: GuestOs, pid: u32) -> Result<String, String> {
    let cmd = match os {
        GuestOs::Linux => builtin::DUMP_HUNG_LINUX.command(&[("pgid", pid.to_string())]),
        GuestOs::Windows => builtin::DUMP_HUNG_WINDOWS.command(&[
            ("Root", pid.to_string()),
            ("Dir", HUNG_DUMP_DIR.to_string()),
        ]),
    }
    .map_err(|e| e.to_string())?;
    wrap::command_line(os, &cmd).map_err(|e| e.to_string())
}

/// Runs `line` on a new channel (blocking, bounded) and returns its stdout.
fn side_channel(sess: &ssh2::Session, line: &str) -> Result<String, String> {
    sess.set_blocking(true);
    sess.set_keepalive(true, 0);
    sess.set_timeout(STEP_TIMEOUT.as_millis() as u32);
    let r = (|| -> Result<String, ssh2::Error> {
        let mut ch = sess.channel_session()?;
        ch.exec(line)?;
        ch.send_eof()?;
        let mut out = Vec::new();
        let _ = ch.read_to_end(&mut out);
        let mut err = Vec::new();
        let _ = ch.stderr().read_to_end(&mut err);
        ch.wait_close()?;
        Ok(String::from_utf8_lossy(&out).into_owned())
    })();
    sess.set_timeout(super::ssh::BLOCKING_TIMEOUT.as_millis() as u32);
    r.map_err(|e| e.to_string())
}

/// The note for the command's output, from the step's stdout (its last JSON line).
pub(crate) fn describe(os: GuestOs, after: &str, stdout: Result<String, String>) -> String {
    let report = stdout.and_then(|s| {
        s.lines()
            .rev()
            .find_map(|l| serde_json::from_str::<Report>(l.trim()).ok())
            .ok_or_else(|| format!("the dump step printed no result: {}", s.trim()))
    });
    let r = match report {
        Ok(r) => r,
        Err(e) => return format!("harness: timed out{after}; the hang dump failed: {e}"),
    };
    match os {
        GuestOs::Linux if r.signalled.is_empty() => format!(
            "harness: timed out{after}; no Go test binary (*.test) in the process group to dump"
        ),
        GuestOs::Linux => {
            let who: Vec<String> = r
                .signalled
                .iter()
                .map(|s| format!("{} (pid {})", s.exe, s.pid))
                .collect();
            format!(
                "harness: timed out{after}; sent SIGQUIT to {} for a goroutine dump",
                who.join(", ")
            )
        }
        GuestOs::Windows if r.dumps.is_empty() => format!(
            "harness: timed out{after}; no Go test binary (*.test.exe) in the process tree to dump"
        ),
        GuestOs::Windows => {
            let each: Vec<String> = r
                .dumps
                .iter()
                .map(|d| match &d.error {
                    Some(e) => format!("{} (pid {}): no dump: {e}", d.name, d.pid),
                    None => format!(
                        "{} (pid {}) → {} ({} bytes)",
                        d.name, d.pid, d.path, d.bytes
                    ),
                })
                .collect();
            format!(
                "harness: timed out{after}; memory dump of {}",
                each.join("; ")
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notes_say_what_was_dumped() {
        let linux = describe(
            GuestOs::Linux,
            " after 5s",
            Ok(r#"{"signalled":[{"pid":7,"exe":"/tmp/h/hang.test"}]}"#.into()),
        );
        assert_eq!(
            linux,
            "harness: timed out after 5s; sent SIGQUIT to /tmp/h/hang.test (pid 7) for a goroutine dump"
        );
        let none = describe(GuestOs::Linux, "", Ok("{\"signalled\":[]}\n".into()));
        assert!(none.contains("no Go test binary"), "{none}");
        let win = describe(
            GuestOs::Windows,
            "",
            Ok(r#"{"dumps":[{"pid":9,"name":"hang.test.exe","path":"C:\\dumps\\hung\\h.dmp","bytes":10,"error":null},{"pid":10,"name":"b.test.exe","path":"C:\\x","bytes":0,"error":"denied"}]}"#.into()),
        );
        assert!(
            win.contains(r"hang.test.exe (pid 9) → C:\dumps\hung\h.dmp (10 bytes)"),
            "{win}"
        );
        assert!(
            win.contains("b.test.exe (pid 10): no dump: denied"),
            "{win}"
        );
        let failed = describe(GuestOs::Windows, "", Err("channel closed".into()));
        assert!(
            failed.contains("the hang dump failed: channel closed"),
            "{failed}"
        );
    }
}
