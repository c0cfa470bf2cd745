//! A small QMP client (JSON over the VM's unix socket): hand-rolled because generated clients
//! break across QEMU versions, and harness needs only a handful of commands.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::error::VmError;

/// A QMP connection in command mode.
#[derive(Debug)]
pub struct Qmp {
    reader: BufReader<UnixStream>,
    writer: UnixStream,
    /// Asynchronous events received while waiting for replies (oldest first).
    pub events: Vec<Value>,
    /// The start of a line [`Qmp::next_event`] was waiting for when its wait ran out.
    partial: String,
}

fn qmp_err(command: &str, detail: impl std::fmt::Display) -> VmError {
    VmError::Qmp {
        command: command.to_string(),
        detail: detail.to_string(),
    }
}

impl Qmp {
    /// Connect (retrying until `timeout`, QEMU creates the socket shortly after start) and
    /// negotiate capabilities.
    pub fn connect(socket: &Path, timeout: Duration) -> Result<Qmp, VmError> {
        let deadline = Instant::now() + timeout;
        let stream = loop {
            match UnixStream::connect(socket) {
                Ok(s) => break s,
                Err(e) if Instant::now() >= deadline => {
                    return Err(qmp_err(
                        "connect",
                        format!("{}: {e}; is the VM running?", socket.display()),
                    ));
                }
                Err(_) => std::thread::sleep(Duration::from_millis(50)),
            }
        };
        stream
            .set_read_timeout(Some(Duration::from_secs(30)))
            .and_then(|()| stream.set_write_timeout(Some(Duration::from_secs(10))))
            .map_err(|e| qmp_err("connect", e))?;
        let writer = stream.try_clone().map_err(|e| qmp_err("connect", e))?;
        let mut qmp = Qmp {
            reader: BufReader::new(stream),
            writer,
            events: Vec::new(),
            partial: String::new(),
        };
        let greeting = qmp.read_message("greeting")?;
        if greeting.get("QMP").is_none() {
            return Err(qmp_err(
                "greeting",
                format!("unexpected greeting {greeting}"),
            ));
        }
        qmp.execute("qmp_capabilities", None)?;
        Ok(qmp)
    }

    /// How long one reply may take (savevm of a large guest takes a while).
    pub fn set_reply_timeout(&mut self, t: Duration) -> Result<(), VmError> {
        self.reader
            .get_ref()
            .set_read_timeout(Some(t))
            .map_err(|e| qmp_err("set timeout", e))
    }

    fn read_message(&mut self, command: &str) -> Result<Value, VmError> {
        let mut line = String::new();
        let n = self
            .reader
            .read_line(&mut line)
            .map_err(|e| qmp_err(command, format!("reading the reply: {e}")))?;
        if n == 0 {
            return Err(qmp_err(command, "QEMU closed the QMP connection"));
        }
        serde_json::from_str(&line).map_err(|e| qmp_err(command, format!("bad JSON {line:?}: {e}")))
    }

    /// Waits up to `wait` for the next asynchronous event (queued ones first); `None` when none
    /// came. A line cut by the wait is kept for the next call.
    pub fn next_event(&mut self, wait: Duration) -> Result<Option<Value>, VmError> {
        if !self.events.is_empty() {
            return Ok(Some(self.events.remove(0)));
        }
        self.set_reply_timeout(wait)?;
        loop {
            match self.reader.read_line(&mut self.partial) {
                Ok(0) => return Err(qmp_err("event", "QEMU closed the QMP connection")),
                Ok(_) if !self.partial.ends_with('\n') => continue,
                Ok(_) => {
                    let line = std::mem::take(&mut self.partial);
                    let m: Value = serde_json::from_str(&line)
                        .map_err(|e| qmp_err("event", format!("bad JSON {line:?}: {e}")))?;
                    if m.get("event").is_some() {
                        return Ok(Some(m));
                    }
                }
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) =>
                {
                    return Ok(None);
                }
                Err(e) => return Err(qmp_err("event", format!("reading: {e}"))),
            }
        }
    }

    /// Run a command and return its `return` value; events seen meanwhile go to [`Qmp::events`].
    pub fn execute(&mut self, command: &str, arguments: Option<Value>) -> Result<Value, VmError> {
        let mut msg = json!({ "execute": command });
        if let Some(a) = arguments {
            msg["arguments"] = a;
        }
        let mut text = msg.to_string();
        text.push('\n');
        self.writer
            .write_all(text.as_bytes())
            .map_err(|e| qmp_err(command, format!("sending: {e}")))?;
        for _ in 0..10_000 {
            let m = self.read_message(command)?;
            if m.get("event").is_some() {
                self.events.push(m);
                continue;
            }
            return parse_reply(command, m);
        }
        Err(qmp_err(command, "no reply among 10000 events"))
    }

    /// `query-status` → e.g. `running`, `paused`, `shutdown`.
    pub fn status(&mut self) -> Result<String, VmError> {
        let v = self.execute("query-status", None)?;
        Ok(v.get("status")
            .and_then(Value::as_str)
            .unwrap_or("unknown")
            .to_string())
    }

    /// Press the ACPI power button.
    pub fn system_powerdown(&mut self) -> Result<(), VmError> {
        self.execute("system_powerdown", None).map(drop)
    }

    /// Ask QEMU to exit now (the reply may be lost as QEMU exits).
    pub fn quit(&mut self) -> Result<(), VmError> {
        match self.execute("quit", None) {
            Ok(_) => Ok(()),
            Err(VmError::Qmp { detail, .. }) if detail.contains("closed") => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Run a human monitor command and fail if it printed an error (HMP reports errors as text).
    pub fn hmp(&mut self, command_line: &str) -> Result<String, VmError> {
        let v = self.execute(
            "human-monitor-command",
            Some(json!({ "command-line": command_line })),
        )?;
        let out = v.as_str().unwrap_or_default().to_string();
        if let Some(err) = hmp_error(&out) {
            return Err(qmp_err(command_line, err));
        }
        Ok(out)
    }

    /// Save the screen to `path`: PNG when QEMU supports it (7.1+), else PPM. Returns the path written.
    pub fn screendump(&mut self, path_png: &Path) -> Result<std::path::PathBuf, VmError> {
        let png = self.execute(
            "screendump",
            Some(json!({ "filename": path_png, "format": "png" })),
        );
        match png {
            Ok(_) => Ok(path_png.to_path_buf()),
            Err(first) => {
                let ppm = path_png.with_extension("ppm");
                self.execute("screendump", Some(json!({ "filename": ppm })))
                    .map(|_| ppm)
                    .map_err(|e| qmp_err("screendump", format!("png: {first}; ppm: {e}")))
            }
        }
    }
}

/// The `return` of a reply, or its `error` as [`VmError::Qmp`].
fn parse_reply(command: &str, m: Value) -> Result<Value, VmError> {
    if let Some(r) = m.get("return") {
        return Ok(r.clone());
    }
    if let Some(e) = m.get("error") {
        let class = e.get("class").and_then(Value::as_str).unwrap_or("Error");
        let desc = e
            .get("desc")
            .and_then(Value::as_str)
            .unwrap_or("no description");
        return Err(qmp_err(command, format!("{class}: {desc}")));
    }
    Err(qmp_err(command, format!("unexpected reply {m}")))
}

/// HMP prints errors as plain text: recognise the forms savevm/loadvm/delvm use.
fn hmp_error(out: &str) -> Option<String> {
    let t = out.trim();
    let lower = t.to_ascii_lowercase();
    let is_err = lower.starts_with("error")
        || lower.contains("error:")
        || lower.starts_with("could not")
        || lower.contains("does not support")
        || lower.contains("not found")
        || lower.starts_with("device '");
    (is_err && !t.is_empty()).then(|| t.to_string())
}

/// A QMP server for tests.
#[cfg(test)]
pub(crate) mod fake {
    use std::io::{BufReader, Write};
    use std::os::unix::net::{UnixListener, UnixStream};
    use std::path::PathBuf;
    use std::thread::JoinHandle;

    /// Listens on a socket in a fresh directory; its one connection gets the QMP greeting, then
    /// `serve` with the connection's writer and reader. Keep the directory while it runs.
    pub(crate) fn server<T: Send + 'static>(
        serve: impl FnOnce(UnixStream, BufReader<UnixStream>) -> T + Send + 'static,
    ) -> (tempfile::TempDir, PathBuf, JoinHandle<T>) {
        let dir = tempfile::tempdir().unwrap();
        let sock = dir.path().join("qmp.sock");
        let listener = UnixListener::bind(&sock).unwrap();
        let server = std::thread::spawn(move || {
            let (s, _) = listener.accept().unwrap();
            let mut w = s.try_clone().unwrap();
            let r = BufReader::new(s);
            writeln!(w, r#"{{"QMP": {{"version": {{}}, "capabilities": []}}}}"#).unwrap();
            serve(w, r)
        });
        (dir, sock, server)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replies_map_to_values_or_errors() {
        assert_eq!(parse_reply("x", json!({"return": {}})).unwrap(), json!({}));
        let e = parse_reply(
            "x",
            json!({"error": {"class": "GenericError", "desc": "nope"}}),
        )
        .unwrap_err();
        assert!(
            e.to_string().contains("QMP x failed: GenericError: nope"),
            "{e}"
        );
        assert!(parse_reply("x", json!({"foo": 1})).is_err());
    }

    #[test]
    fn hmp_errors_are_recognised() {
        assert_eq!(hmp_error(""), None);
        assert_eq!(
            hmp_error("ID        TAG   VM SIZE\n--        ready 300 MiB\n"),
            None
        );
        assert!(
            hmp_error("Error: Device 'pflash1' is writable but does not support snapshots\r\n")
                .is_some()
        );
        assert!(hmp_error("Snapshot 'x' not found\r\n").is_some());
        assert!(hmp_error("Could not open 'x'").is_some());
    }

    #[test]
    fn talks_to_a_fake_qmp_server() {
        let (_dir, sock, server) = fake::server(|mut w, mut r| {
            let mut seen = Vec::new();
            for reply in [
                r#"{"return": {}}"#,
                "{\"event\": \"RESUME\"}\n{\"return\": {\"status\": \"running\", \"running\": true}}",
                r#"{"error": {"class": "GenericError", "desc": "boom"}}"#,
            ] {
                let mut line = String::new();
                r.read_line(&mut line).unwrap();
                seen.push(line);
                writeln!(w, "{reply}").unwrap();
            }
            seen
        });
        let mut q = Qmp::connect(&sock, Duration::from_secs(5)).unwrap();
        assert_eq!(q.status().unwrap(), "running");
        assert_eq!(q.events.len(), 1);
        assert!(
            q.system_powerdown()
                .unwrap_err()
                .to_string()
                .contains("boom")
        );
        let seen = server.join().unwrap();
        assert!(seen[0].contains("qmp_capabilities"));
        assert!(seen[1].contains("query-status"));
        assert!(seen[2].contains("system_powerdown"));
    }
}
