//! Crash forensics in a guest: which crash dumps appeared since a time (Windows: the kernel dump,
//! minidumps, WER LocalDumps and the dumps of timed-out test binaries under `C:\dumps`; the
//! bugcheck from the System log), fetching them to the host, and the serial console's tail.
//! Guest-side logic lives in `scripts/windows/forensics/*.ps1`. Linux guests keep no dumps of
//! their own here: a kernel panic's record is the serial console, which the host already has.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::session::{GuestOs, Session, SessionError};

embedded_scripts!(
    "windows",
    "forensics",
    /// Every forensics script (for the grammar check in tests).
    WINDOWS_ALL = [WIN_LIST_DUMPS: "list_dumps.ps1"]
);

/// The WER LocalDumps folder the golden image configures (and where hung test binaries are
/// dumped, under `hung\`).
pub const WINDOWS_DUMP_DIR: &str = r"C:\dumps";

/// A dump file in the guest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GuestDump {
    pub path: String,
    pub bytes: u64,
    /// Last write, UTC, ISO 8601.
    pub modified: String,
    /// `kernel`, `minidump` or `user`.
    pub kind: String,
}

/// What [`list_new`] found.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewDumps {
    pub dumps: Vec<GuestDump>,
    /// The last bugcheck the System log recorded since then, e.g. `0x0000003b (0x…, …)`.
    pub bugcheck: Option<String>,
}

/// The dumps written in the guest after `since` (UTC, RFC 3339). Linux guests: none.
pub fn list_new(session: &mut Session, since: &str) -> Result<NewDumps, SessionError> {
    match session.os() {
        GuestOs::Linux => Ok(NewDumps::default()),
        GuestOs::Windows => session.run_script_as(
            &WIN_LIST_DUMPS,
            &[
                ("Since", since.to_string()),
                ("Dir", WINDOWS_DUMP_DIR.to_string()),
            ],
        ),
    }
}

/// One dump fetched (or not) into the results.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Fetched {
    pub dump: GuestDump,
    /// Where it was saved on the host.
    pub local: Option<PathBuf>,
    /// Why it was not.
    pub error: Option<String>,
}

/// Copies each dump into `dest` (created), named after its guest file with its kind in front.
pub fn fetch(session: &mut Session, dumps: &[GuestDump], dest: &Path) -> Vec<Fetched> {
    let mut out = Vec::new();
    for d in dumps {
        let name = d.path.rsplit(['\\', '/']).next().unwrap_or("dump");
        let local = dest.join(format!("{}-{name}", d.kind));
        let r = std::fs::create_dir_all(dest)
            .map_err(|e| format!("creating {}: {e}", dest.display()))
            .and_then(|()| {
                session
                    .download_file(&d.path, &local)
                    .map_err(|e| e.to_string())
            });
        out.push(match r {
            Ok(_) => Fetched {
                dump: d.clone(),
                local: Some(local),
                error: None,
            },
            Err(e) => Fetched {
                dump: d.clone(),
                local: None,
                error: Some(e),
            },
        });
    }
    out
}

/// The last `lines` lines of a (serial console) log, lossily decoded; empty when unreadable.
pub fn tail(path: &Path, lines: usize) -> String {
    let Ok(bytes) = std::fs::read(path) else {
        return String::new();
    };
    let text = String::from_utf8_lossy(&bytes);
    let all: Vec<&str> = text.lines().collect();
    let start = all.len().saturating_sub(lines);
    let mut t = all[start..].join("\n");
    t.push('\n');
    t
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tail_keeps_the_last_lines() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("serial.log");
        std::fs::write(&p, "a\nb\nc\r\nKernel panic - not syncing\n").unwrap();
        assert_eq!(tail(&p, 2), "c\nKernel panic - not syncing\n");
        assert_eq!(tail(&d.path().join("missing"), 5), "");
    }

    #[test]
    fn the_script_result_parses() {
        let v: NewDumps = serde_json::from_str(
            r#"{"dumps":[{"path":"C:\\Windows\\MEMORY.DMP","bytes":5,"modified":"2026-01-01T00:00:00Z","kind":"kernel"}],"bugcheck":"0x0000003b (0xc0000005)"}"#,
        )
        .unwrap();
        assert_eq!(v.dumps[0].kind, "kernel");
        assert_eq!(v.bugcheck.as_deref(), Some("0x0000003b (0xc0000005)"));
    }
}
