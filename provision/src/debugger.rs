//! CDB (the console debugger of the Windows SDK's Debugging Tools) in a Windows guest: find
//! `cdb.exe`, run it non-interactively with a timeout that kills its process tree, and build its
//! command lines (`repro --cdb`, `analyze`). Guest-side logic lives in
//! `scripts/windows/debugger/*.ps1`.

use std::path::Path;
use std::time::Duration;

use serde::Deserialize;

use crate::session::{Session, SessionError};

embedded_scripts!(
    "windows",
    "debugger",
    /// Every debugger script (for the grammar check in tests).
    WINDOWS_ALL = [
        WIN_FIND_CDB: "find_cdb.ps1",
        WIN_RUN_CDB: "run_cdb.ps1",
        WIN_INSTALL_DEBUGGING_TOOLS: "install_debugging_tools.ps1",
    ]
);

/// How long the Debugging Tools installer may take in the guest.
pub const INSTALL_TIMEOUT: Duration = Duration::from_secs(1500);

/// The silent installer command line of the Debugging Tools (Windows SDK setup).
pub const INSTALL_HINT: &str =
    "winsdksetup.exe /features OptionId.WindowsDesktopDebuggers /quiet /norestart";

/// What went wrong with CDB in the guest.
#[derive(Debug, thiserror::Error)]
pub enum DebuggerError {
    #[error(
        "cdb.exe is not in the guest (looked in {}); install the Windows SDK's Debugging Tools \
         in the guest (`{INSTALL_HINT}`), or set `[vm] debugging_tools` to that installer on \
         the host so a new golden image installs them (then `harness reset` and `harness up`)",
        .searched.join(", ")
    )]
    CdbMissing { searched: Vec<String> },
    #[error("a debugger step in the guest failed: {0}")]
    Session(#[from] SessionError),
}

#[derive(Debug, Deserialize)]
struct Found {
    path: Option<String>,
    #[serde(default)]
    searched: Vec<String>,
}

/// Where `cdb.exe` is in the guest: the usual Windows Kits locations, then PATH.
pub fn find_cdb(session: &mut Session) -> Result<String, DebuggerError> {
    let f: Found = session.run_script_as(&WIN_FIND_CDB, &[])?;
    match f.path.filter(|p| !p.trim().is_empty()) {
        Some(p) => Ok(p),
        None => Err(DebuggerError::CdbMissing {
            searched: f.searched,
        }),
    }
}

/// Uploads the Debugging Tools installer (`[vm] debugging_tools`) into `guest_dir` and runs it
/// silently (the golden image's base setup). Returns where cdb.exe landed.
pub fn install_debugging_tools(
    session: &mut Session,
    installer: &Path,
    guest_dir: &str,
) -> Result<String, DebuggerError> {
    let name = installer
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "winsdksetup.exe".into());
    let guest = format!("{}\\{name}", guest_dir.trim_end_matches(['\\', '/']));
    session.upload_file(installer, &guest)?;
    let v = session.run_script_with(
        &WIN_INSTALL_DEBUGGING_TOOLS,
        &[("Installer", guest)],
        Some(INSTALL_TIMEOUT),
        &mut |_, _| {},
    )?;
    Ok(v.get("cdb")
        .and_then(|c| c.as_str())
        .unwrap_or_default()
        .to_string())
}

/// The CDB commands with a final `q` so that CDB never waits for input (pure).
pub fn with_quit(commands: &str) -> String {
    let trimmed = commands.trim().trim_end_matches(';').trim_end();
    let last = trimmed.rsplit(';').next().unwrap_or("").trim();
    if matches!(last, "q" | "qq" | "qd") {
        trimmed.to_string()
    } else if trimmed.is_empty() {
        "q".to_string()
    } else {
        format!("{trimmed}; q")
    }
}

/// CDB's arguments to run `binary args…` with `commands` (pure). No `-g`: the commands run at
/// the initial breakpoint, so `bu ebpfapi!bpf; g` is set before the test starts; `-G` skips the
/// final breakpoint at process exit.
pub fn run_args(commands: &str, binary: &str, args: &[String]) -> Vec<String> {
    let mut v = vec![
        "-G".to_string(),
        "-c".to_string(),
        with_quit(commands),
        binary.to_string(),
    ];
    v.extend(args.iter().cloned());
    v
}

/// CDB's arguments to analyse a crash dump (pure).
pub fn analyze_args(dump: &str) -> Vec<String> {
    vec![
        "-z".to_string(),
        dump.to_string(),
        "-c".to_string(),
        "!analyze -v; q".to_string(),
    ]
}

/// One argument quoted for a Windows command line as the C runtime parses it (pure).
pub fn quote_windows_arg(arg: &str) -> String {
    if !arg.is_empty() && !arg.contains([' ', '\t', '"']) {
        return arg.to_string();
    }
    let mut out = String::from("\"");
    let mut backslashes = 0;
    for c in arg.chars() {
        match c {
            '\\' => backslashes += 1,
            '"' => {
                out.push_str(&"\\".repeat(backslashes * 2 + 1));
                out.push('"');
                backslashes = 0;
            }
            _ => {
                out.push_str(&"\\".repeat(backslashes));
                out.push(c);
                backslashes = 0;
            }
        }
    }
    out.push_str(&"\\".repeat(backslashes * 2));
    out.push('"');
    out
}

/// A whole Windows command line from arguments (pure).
pub fn windows_command_line(args: &[String]) -> String {
    args.iter()
        .map(|a| quote_windows_arg(a))
        .collect::<Vec<_>>()
        .join(" ")
}

/// One CDB run in the guest.
#[derive(Debug, Clone)]
pub struct CdbRun<'a> {
    pub cdb: &'a str,
    pub args: Vec<String>,
    /// The working directory (the test's package directory).
    pub dir: &'a str,
    /// `_NT_SYMBOL_PATH` for CDB.
    pub symbol_path: &'a str,
    /// After this CDB and everything it started are killed.
    pub timeout: Duration,
}

/// What CDB printed, and how it ended.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
pub struct CdbOutput {
    pub exit_code: Option<i32>,
    pub timed_out: bool,
    #[serde(default)]
    pub output: String,
}

impl CdbOutput {
    /// The text to save: CDB's output, and a last line when the timeout killed it.
    pub fn text(&self, timeout: Duration) -> String {
        let mut t = self.output.clone();
        if !t.is_empty() && !t.ends_with('\n') {
            t.push('\n');
        }
        if self.timed_out {
            t.push_str(&format!(
                "[harness: cdb did not finish within {} s; its process tree was killed]\n",
                timeout.as_secs()
            ));
        }
        t
    }

    /// Writes [`CdbOutput::text`] to `path` (creating its directory).
    pub fn save(&self, path: &Path, timeout: Duration) -> std::io::Result<()> {
        if let Some(d) = path.parent() {
            std::fs::create_dir_all(d)?;
        }
        std::fs::write(path, self.text(timeout))
    }
}

/// Runs CDB in the guest; the session's own timeout is a minute longer than CDB's.
pub fn run(session: &mut Session, r: &CdbRun<'_>) -> Result<CdbOutput, DebuggerError> {
    let args = [
        ("Cdb", r.cdb.to_string()),
        ("CommandLine", windows_command_line(&r.args)),
        ("Dir", r.dir.to_string()),
        ("SymbolPath", r.symbol_path.to_string()),
        ("TimeoutSeconds", r.timeout.as_secs().max(1).to_string()),
    ];
    let v = session.run_script_with(
        &WIN_RUN_CDB,
        &args,
        Some(r.timeout + Duration::from_secs(60)),
        &mut |_, _| {},
    )?;
    serde_json::from_value(v.clone()).map_err(|e| {
        DebuggerError::Session(SessionError::BadScriptOutput {
            script: WIN_RUN_CDB.name.to_string(),
            reason: format!("unexpected JSON shape: {e}"),
            stdout_tail: crate::session::script::tail(&v.to_string()),
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_debugger_script_is_embedded_and_documents_its_output() {
        crate::session::script::table_checks::assert_embedded("windows", "debugger", WINDOWS_ALL);
    }

    #[test]
    fn the_commands_always_end_in_quit() {
        assert_eq!(
            with_quit("bu ebpfapi!bpf; g; kb"),
            "bu ebpfapi!bpf; g; kb; q"
        );
        assert_eq!(
            with_quit("bu ebpfapi!bpf; g; kb; q"),
            "bu ebpfapi!bpf; g; kb; q"
        );
        assert_eq!(with_quit("g;qd;"), "g;qd");
        assert_eq!(with_quit("  "), "q");
        assert_eq!(with_quit("g; kb; qq "), "g; kb; qq");
    }

    #[test]
    fn run_and_analyze_command_lines() {
        let a = run_args(
            "bu ebpfapi!bpf; g; kb",
            r"C:\harness\efw\gh-1\link.test.exe",
            &["-test.run".into(), "^TestLink$".into(), "-test.v".into()],
        );
        assert_eq!(
            windows_command_line(&a),
            r#"-G -c "bu ebpfapi!bpf; g; kb; q" C:\harness\efw\gh-1\link.test.exe -test.run ^TestLink$ -test.v"#
        );
        assert!(!a.contains(&"-g".to_string()));
        assert_eq!(
            windows_command_line(&analyze_args(r"C:\dumps\my crash.dmp")),
            r#"-z "C:\dumps\my crash.dmp" -c "!analyze -v; q""#
        );
    }

    #[test]
    fn windows_quoting_follows_the_c_runtime() {
        assert_eq!(quote_windows_arg(""), r#""""#);
        assert_eq!(quote_windows_arg(r"C:\a b\"), r#""C:\a b\\""#);
        assert_eq!(quote_windows_arg(r#"say "hi""#), r#""say \"hi\"""#);
        assert_eq!(quote_windows_arg(r#"a\"b"#), r#""a\\\"b""#);
        assert_eq!(quote_windows_arg(r"C:\x\y.exe"), r"C:\x\y.exe");
    }

    #[test]
    fn a_timeout_is_said_in_the_saved_text() {
        let o = CdbOutput {
            exit_code: None,
            timed_out: true,
            output: "0:000> g".into(),
        };
        let t = o.text(Duration::from_secs(300));
        assert!(
            t.starts_with("0:000> g\n[harness: cdb did not finish within 300 s"),
            "{t}"
        );
        let ok = CdbOutput {
            exit_code: Some(0),
            timed_out: false,
            output: "done\n".into(),
        };
        assert_eq!(ok.text(Duration::from_secs(1)), "done\n");
    }
}
