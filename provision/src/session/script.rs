//! One-step guest scripts embedded at build time, and the parsing of their JSON result.
//!
//! Windows logic lives in `.ps1` files (one step each) that print one JSON document on stdout;
//! Rust only passes arguments (`-Name 'value'`, quoted) and parses the result. Linux scripts are
//! `.sh` files run with `sh -c <script> <name> <args…>`, so they read positional `$1…`.

use super::wrap::ps_quote;
use super::{GuestOs, RemoteCommand, SessionError};

/// An embedded guest script.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Script {
    /// File name, for messages (`restart_sshd.ps1`).
    pub name: &'static str,
    pub os: GuestOs,
    /// The script text (from `include_str!`).
    pub source: &'static str,
}

impl Script {
    /// A PowerShell script with a `param(...)` block; arguments are passed by name.
    pub const fn windows(name: &'static str, source: &'static str) -> Self {
        Script {
            name,
            os: GuestOs::Windows,
            source,
        }
    }

    /// A POSIX sh script; arguments are passed by position, in order (names are for messages).
    pub const fn linux(name: &'static str, source: &'static str) -> Self {
        Script {
            name,
            os: GuestOs::Linux,
            source,
        }
    }

    /// The command that runs this script with `args`.
    pub fn command(&self, args: &[(&str, String)]) -> Result<RemoteCommand, SessionError> {
        match self.os {
            GuestOs::Windows => {
                let mut src = format!("& {{\n{}\n}}", self.source);
                for (name, value) in args {
                    if name.is_empty()
                        || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
                    {
                        return Err(SessionError::InvalidCommand {
                            reason: format!(
                                "script {} parameter name {name:?} is not valid",
                                self.name
                            ),
                        });
                    }
                    src.push_str(&format!(" -{name} {}", ps_quote(value)));
                }
                Ok(RemoteCommand::new([src]))
            }
            GuestOs::Linux => {
                let mut argv = vec![
                    "sh".to_string(),
                    "-c".into(),
                    self.source.to_string(),
                    self.name.to_string(),
                ];
                argv.extend(args.iter().map(|(_, v)| v.clone()));
                Ok(RemoteCommand::new(argv))
            }
        }
    }
}

/// Scripts the session itself uses.
pub mod builtin {
    use super::Script;

    /// Boot id, sshd pid, PATH: tells a fresh sshd / a rebooted guest from the old one.
    pub const PROBE_WINDOWS: Script = Script::windows(
        "session/probe.ps1",
        include_str!("../../scripts/windows/session/probe.ps1"),
    );
    /// See [`PROBE_WINDOWS`].
    pub const PROBE_LINUX: Script = Script::linux(
        "session/probe.sh",
        include_str!("../../scripts/linux/session/probe.sh"),
    );
    /// Restarts sshd from a process outside the SSH session (WMI), after a short delay.
    pub const RESTART_SSHD_WINDOWS: Script = Script::windows(
        "session/restart_sshd.ps1",
        include_str!("../../scripts/windows/session/restart_sshd.ps1"),
    );
    /// Reboots the guest after a short delay.
    pub const REBOOT_WINDOWS: Script = Script::windows(
        "session/reboot.ps1",
        include_str!("../../scripts/windows/session/reboot.ps1"),
    );
    /// See [`REBOOT_WINDOWS`].
    pub const REBOOT_LINUX: Script = Script::linux(
        "session/reboot.sh",
        include_str!("../../scripts/linux/session/reboot.sh"),
    );
    /// Sizes of every file under a directory (verifies tree transfers).
    pub const TREE_SIZES_WINDOWS: Script = Script::windows(
        "session/tree_sizes.ps1",
        include_str!("../../scripts/windows/session/tree_sizes.ps1"),
    );
    /// See [`TREE_SIZES_WINDOWS`].
    pub const TREE_SIZES_LINUX: Script = Script::linux(
        "session/tree_sizes.sh",
        include_str!("../../scripts/linux/session/tree_sizes.sh"),
    );

    /// Unpacks an uploaded archive in the home directory into a directory, then deletes it.
    pub const UNTAR_WINDOWS: Script = Script::windows(
        "session/untar.ps1",
        include_str!("../../scripts/windows/session/untar.ps1"),
    );
    /// Packs a directory into an archive in the home directory (or removes it).
    pub const TAR_DIR_WINDOWS: Script = Script::windows(
        "session/tar_dir.ps1",
        include_str!("../../scripts/windows/session/tar_dir.ps1"),
    );

    /// Whether a path is a directory, a file or missing.
    pub const PATH_KIND_WINDOWS: Script = Script::windows(
        "session/path_kind.ps1",
        include_str!("../../scripts/windows/session/path_kind.ps1"),
    );
    /// See [`PATH_KIND_WINDOWS`].
    pub const PATH_KIND_LINUX: Script = Script::linux(
        "session/path_kind.sh",
        include_str!("../../scripts/linux/session/path_kind.sh"),
    );

    /// Before a timed-out command is killed: full memory dumps of the Go test binaries in its
    /// tree (comsvcs.dll MiniDump).
    pub const DUMP_HUNG_WINDOWS: Script = Script::windows(
        "session/dump_hung.ps1",
        include_str!("../../scripts/windows/session/dump_hung.ps1"),
    );
    /// See [`DUMP_HUNG_WINDOWS`]: SIGQUIT to the Go test binaries (a goroutine dump each).
    pub const DUMP_HUNG_LINUX: Script = Script::linux(
        "session/dump_hung.sh",
        include_str!("../../scripts/linux/session/dump_hung.sh"),
    );

    /// Every embedded session script (tests parse them all).
    pub const ALL: &[Script] = &[
        DUMP_HUNG_WINDOWS,
        DUMP_HUNG_LINUX,
        PATH_KIND_WINDOWS,
        PATH_KIND_LINUX,
        UNTAR_WINDOWS,
        TAR_DIR_WINDOWS,
        PROBE_WINDOWS,
        PROBE_LINUX,
        RESTART_SSHD_WINDOWS,
        REBOOT_WINDOWS,
        REBOOT_LINUX,
        TREE_SIZES_WINDOWS,
        TREE_SIZES_LINUX,
    ];
}

const TAIL: usize = 4000;

/// The last `TAIL` bytes of `s` (on a char boundary).
pub fn tail(s: &str) -> String {
    if s.len() <= TAIL {
        return s.to_string();
    }
    let mut start = s.len() - TAIL;
    while !s.is_char_boundary(start) {
        start += 1;
    }
    format!("…{}", &s[start..])
}

/// Decides a script's result from its exit code and output: the last stdout line that parses
/// as JSON is the result; a non-zero exit is [`SessionError::ScriptFailed`] carrying the JSON
/// `error` field if the script printed one.
pub fn parse_result(
    script: &str,
    code: i32,
    stdout: &str,
    stderr: &str,
) -> Result<serde_json::Value, SessionError> {
    let json = stdout
        .lines()
        .rev()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .find_map(|l| {
            serde_json::from_str::<serde_json::Value>(l)
                .ok()
                .filter(|v| v.is_object() || v.is_array())
        });
    if code != 0 {
        let error = json.as_ref().and_then(|v| v.get("error")).map(|e| {
            e.as_str()
                .map(str::to_string)
                .unwrap_or_else(|| e.to_string())
        });
        return Err(SessionError::ScriptFailed {
            script: script.to_string(),
            code,
            error,
            stdout_tail: tail(stdout),
            stderr_tail: tail(stderr),
        });
    }
    json.ok_or_else(|| SessionError::BadScriptOutput {
        script: script.to_string(),
        reason: if stdout.trim().is_empty() {
            "stdout was empty".into()
        } else {
            "no stdout line is a JSON object or array".into()
        },
        stdout_tail: tail(stdout),
    })
}

/// Checks of the script tables each area keeps (`WINDOWS_ALL`, `LINUX_ALL`), for their tests.
#[cfg(test)]
pub(crate) mod table_checks {
    use std::collections::BTreeSet;

    use super::Script;

    /// `scripts` are exactly the files of `scripts/<os>/<area>/` (each named `<area>/<file>`),
    /// and every one documents its JSON output ("Prints").
    pub(crate) fn assert_embedded(os: &str, area: &str, scripts: &[Script]) {
        let dir = format!("{}/scripts/{os}/{area}", env!("CARGO_MANIFEST_DIR"));
        let on_disk: BTreeSet<String> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        let prefix = format!("{area}/");
        let embedded: BTreeSet<String> = scripts
            .iter()
            .map(|s| s.name.trim_start_matches(prefix.as_str()).to_string())
            .collect();
        assert_eq!(
            on_disk, embedded,
            "{os}/{area}: scripts on disk vs embedded"
        );
        for s in scripts {
            assert!(
                s.source.contains("Prints"),
                "{} does not document its JSON output",
                s.name
            );
        }
    }

    /// Every one of `scripts` parses under `sh -n`.
    pub(crate) fn assert_sh_parses(scripts: &[Script]) {
        for s in scripts {
            let out = std::process::Command::new("sh")
                .args(["-n", "-c", s.source])
                .output()
                .expect("run sh -n");
            assert!(
                out.status.success(),
                "{}: {}",
                s.name,
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn results() {
        let ok = parse_result("s", 0, "noise\n{\"a\":1}\n\n", "").unwrap();
        assert_eq!(ok["a"], 1);
        let last_wins = parse_result("s", 0, "{\"a\":1}\r\n{\"a\":2}\r\n", "").unwrap();
        assert_eq!(last_wins["a"], 2);
        let arr = parse_result("s", 0, "[1,2]", "").unwrap();
        assert_eq!(arr[1], 2);
        assert!(matches!(
            parse_result("s", 0, "", ""),
            Err(SessionError::BadScriptOutput { .. })
        ));
        assert!(matches!(
            parse_result("s", 0, "{\"a\":", ""),
            Err(SessionError::BadScriptOutput { .. })
        ));
        assert!(matches!(
            parse_result("s", 0, "42\n", ""),
            Err(SessionError::BadScriptOutput { .. })
        ));
        match parse_result("s", 3, "{\"error\":\"disk full\"}", "boom") {
            Err(SessionError::ScriptFailed {
                code: 3,
                error: Some(e),
                stderr_tail,
                ..
            }) => {
                assert_eq!(e, "disk full");
                assert_eq!(stderr_tail, "boom");
            }
            other => panic!("{other:?}"),
        }
        match parse_result("s", 1, "", "trace") {
            Err(SessionError::ScriptFailed { error: None, .. }) => {}
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn tails_are_bounded() {
        let long = "é".repeat(5000);
        assert!(tail(&long).len() <= TAIL + 4);
    }

    #[test]
    fn windows_arguments_are_named_and_quoted() {
        let s = Script::windows("x.ps1", "param($Path)\nWrite-Output $Path");
        let cmd = s.command(&[("Path", "C:\\it's".into())]).unwrap();
        assert_eq!(
            cmd.argv,
            vec!["& {\nparam($Path)\nWrite-Output $Path\n} -Path 'C:\\it''s'".to_string()]
        );
        assert!(s.command(&[("Bad name", String::new())]).is_err());
    }

    #[test]
    fn linux_arguments_are_positional() {
        let s = Script::linux("x.sh", "echo \"$1\"");
        let cmd = s.command(&[("a", "1 2".into())]).unwrap();
        assert_eq!(cmd.argv, vec!["sh", "-c", "echo \"$1\"", "x.sh", "1 2"]);
    }
}
