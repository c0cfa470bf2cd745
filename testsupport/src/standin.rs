//! The transcript stand-in shell, driven from a test: write rules, read the transcript.
//!
//! Start an [`crate::sshd::Sshd`] with `force_command: Some(standin.force_command())`; every
//! command the client sends is then decoded (PowerShell `-EncodedCommand`), recorded, and
//! answered from the rules, first match wins (see `standin/main.rs`).

use std::fs::{self, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use base64::Engine as _;

/// The compiled stand-in program.
pub fn exe() -> PathBuf {
    PathBuf::from(env!("HARNESS_STANDIN_EXE"))
}

/// How the stand-in answers a matching command.
#[derive(Debug, Clone, Default)]
pub struct Reply {
    pub stdout: String,
    pub stderr: String,
    pub code: i32,
    /// Wait this long before answering (timeouts, cancellation).
    pub delay: Duration,
    /// Kill the sshd process serving the session instead of answering.
    pub drop_connection: bool,
}

impl Reply {
    /// Exit 0 with this stdout.
    pub fn stdout(s: impl Into<String>) -> Reply {
        Reply {
            stdout: s.into(),
            ..Default::default()
        }
    }
    /// Exit 0 printing `v` as one JSON line (CRLF, as Windows does).
    pub fn json(v: &serde_json::Value) -> Reply {
        Reply::stdout(format!("{v}\r\n"))
    }
    /// Exit `code` with this stdout and stderr.
    pub fn fail(code: i32, stdout: impl Into<String>, stderr: impl Into<String>) -> Reply {
        Reply {
            stdout: stdout.into(),
            stderr: stderr.into(),
            code,
            ..Default::default()
        }
    }
    /// Drop the connection.
    pub fn drop_connection() -> Reply {
        Reply {
            drop_connection: true,
            ..Default::default()
        }
    }
    /// The same reply after `d`.
    pub fn after(mut self, d: Duration) -> Reply {
        self.delay = d;
        self
    }
}

/// One recorded command.
#[derive(Debug, Clone, serde::Deserialize)]
pub struct Entry {
    pub seq: u64,
    /// The command line as sshd received it.
    pub raw: String,
    /// The decoded `-EncodedCommand` source, if it was one (for a program sent through the stdin
    /// bootstrap: the program read from stdin).
    pub decoded: Option<String>,
    /// The program came through harness's stdin bootstrap (too long for cmd.exe).
    #[serde(default)]
    pub via_stdin: bool,
}

impl Entry {
    /// The decoded source, or the raw line.
    pub fn text(&self) -> &str {
        self.decoded.as_deref().unwrap_or(&self.raw)
    }
}

/// A rules + transcript directory for the stand-in.
#[derive(Debug)]
pub struct Standin {
    dir: tempfile::TempDir,
}

impl Standin {
    pub fn new() -> io::Result<Standin> {
        let dir = tempfile::Builder::new()
            .prefix("harness-standin-")
            .tempdir()?;
        fs::write(dir.path().join("rules"), "")?;
        Ok(Standin { dir })
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Where SFTP sessions start (the stand-in's "user profile"); relative SFTP paths land here.
    pub fn home(&self) -> PathBuf {
        self.dir.path().join("home")
    }

    /// The `ForceCommand` value that runs the stand-in with this directory.
    pub fn force_command(&self) -> String {
        format!("{} {}", exe().display(), self.dir.path().display())
    }

    /// Answers every command containing `needle` with `reply` (rules are tried in order).
    pub fn on(&self, needle: &str, reply: Reply) -> &Self {
        self.on_times(needle, 0, reply)
    }

    /// Answers the first `times` commands containing `needle` (0 = always).
    pub fn on_times(&self, needle: &str, times: u64, reply: Reply) -> &Self {
        let b = |s: &[u8]| base64::engine::general_purpose::STANDARD.encode(s);
        let line = format!(
            "{}\t{times}\t{}\t{}\t{}\t{}\t{}\n",
            b(needle.as_bytes()),
            if reply.drop_connection {
                "drop"
            } else {
                "reply"
            },
            b(reply.stdout.as_bytes()),
            b(reply.stderr.as_bytes()),
            reply.code,
            reply.delay.as_millis()
        );
        OpenOptions::new()
            .append(true)
            .open(self.dir.path().join("rules"))
            .and_then(|mut f| f.write_all(line.as_bytes()))
            .expect("writing a stand-in rule");
        self
    }

    /// Every command recorded so far, in order.
    pub fn transcript(&self) -> Vec<Entry> {
        fs::read_to_string(self.dir.path().join("transcript.jsonl"))
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).expect("stand-in transcript line"))
            .collect()
    }
}
