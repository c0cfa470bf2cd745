//! Turning a [`RemoteCommand`] into the exact string sshd runs. Pure functions, table-tested.
//!
//! Windows: the command is PowerShell source. It is wrapped in a prelude (UTF-8 output,
//! `$ErrorActionPreference='Stop'`, no progress records, env and cwd, exit code propagation)
//! and sent as `powershell.exe … -EncodedCommand <base64 of UTF-16LE>`, so neither sshd's
//! `DefaultShell` (cmd or PowerShell) nor quoting can change what runs.
//! Linux: the argv is quoted for the POSIX login shell sshd starts with `-c`.
//!
//! Both wrappers first print [`PID_MARKER`]`<pid>` on stderr: the id of the process whose tree
//! must be killed on timeout or cancel (Windows: `taskkill /T /F`; Linux: the process group,
//! which sshd created with `setsid` for the session, so `$$` is its id). The session strips that
//! line before the caller sees stderr.

use base64::Engine as _;

use super::{GuestOs, RemoteCommand, SessionError};

/// Prefix of the first stderr line of every wrapped command.
pub const PID_MARKER: &str = "##harness-pid:";

/// The `powershell.exe` invocation for a piece of PowerShell source.
pub fn encoded_powershell(source: &str) -> String {
    let utf16: Vec<u8> = source
        .encode_utf16()
        .flat_map(|u| u.to_le_bytes())
        .collect();
    let b64 = base64::engine::general_purpose::STANDARD.encode(utf16);
    format!(
        "powershell.exe -NoProfile -NonInteractive -ExecutionPolicy Bypass -EncodedCommand {b64}"
    )
}

/// Decodes the argument of `-EncodedCommand` in a command line (used by tests and the stand-in).
pub fn decode_encoded_powershell(command_line: &str) -> Option<String> {
    let mut it = command_line.split_whitespace();
    while let Some(tok) = it.next() {
        if tok.eq_ignore_ascii_case("-EncodedCommand") {
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(it.next()?)
                .ok()?;
            if bytes.len() % 2 != 0 {
                return None;
            }
            let units: Vec<u16> = bytes
                .chunks_exact(2)
                .map(|c| u16::from_le_bytes([c[0], c[1]]))
                .collect();
            return String::from_utf16(&units).ok();
        }
    }
    None
}

/// A PowerShell single-quoted string literal (no interpolation; `'` doubled).
pub fn ps_quote(s: &str) -> String {
    // PowerShell also treats the typographic quotes U+2018..U+201B as single quotes.
    let mut out = String::with_capacity(s.len() + 2);
    out.push('\'');
    for c in s.chars() {
        if matches!(c, '\'' | '\u{2018}' | '\u{2019}' | '\u{201A}' | '\u{201B}') {
            out.push(c);
        }
        out.push(c);
    }
    out.push('\'');
    out
}

/// A POSIX shell single-quoted word.
pub fn sh_quote(s: &str) -> String {
    if !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_./=:,+@%".contains(&b))
    {
        return s.to_string();
    }
    format!("'{}'", s.replace('\'', r"'\''"))
}

fn valid_env_name(k: &str) -> bool {
    let mut b = k.bytes();
    matches!(b.next(), Some(c) if c.is_ascii_alphabetic() || c == b'_')
        && b.all(|c| c.is_ascii_alphanumeric() || c == b'_')
}

fn invalid(reason: String) -> SessionError {
    SessionError::InvalidCommand { reason }
}

/// The PowerShell source that runs `cmd` (before encoding).
pub fn windows_source(cmd: &RemoteCommand) -> Result<String, SessionError> {
    if cmd.argv.is_empty() {
        return Err(invalid("empty command".into()));
    }
    let mut s = String::new();
    s.push_str("$ErrorActionPreference = 'Stop'\n");
    s.push_str("$ProgressPreference = 'SilentlyContinue'\n");
    // UTF-8 output; setting the console encoding can throw when no console is attached, and
    // that must not fail the command.
    s.push_str("try { [Console]::OutputEncoding = New-Object System.Text.UTF8Encoding $false } catch { }\n");
    s.push_str("$OutputEncoding = New-Object System.Text.UTF8Encoding $false\n");
    s.push_str(&format!(
        "[Console]::Error.WriteLine('{PID_MARKER}' + $PID)\n"
    ));
    s.push_str("$global:LASTEXITCODE = 0\n");
    s.push_str("try {\n");
    for (k, v) in &cmd.env {
        if !valid_env_name(k) {
            return Err(invalid(format!(
                "environment variable name {k:?} is not valid"
            )));
        }
        s.push_str(&format!(
            "    [Environment]::SetEnvironmentVariable({}, {})\n",
            ps_quote(k),
            ps_quote(v)
        ));
    }
    if let Some(cwd) = &cmd.cwd {
        s.push_str(&format!(
            "    Set-Location -LiteralPath {}\n",
            ps_quote(cwd)
        ));
    }
    s.push_str("    & {\n");
    s.push_str(&cmd.argv.join(" "));
    s.push_str("\n    }\n");
    s.push_str("} catch {\n");
    s.push_str("    [Console]::Error.WriteLine(($_ | Out-String))\n");
    s.push_str("    exit 1\n");
    s.push_str("}\n");
    s.push_str("exit $LASTEXITCODE\n");
    Ok(s)
}

/// The shell command line for a Linux guest.
pub fn linux_command(cmd: &RemoteCommand) -> Result<String, SessionError> {
    if cmd.argv.is_empty() {
        return Err(invalid("empty command".into()));
    }
    let mut s = format!("echo \"{PID_MARKER}$$\" >&2");
    if let Some(cwd) = &cmd.cwd {
        s.push_str(&format!(" && cd -- {}", sh_quote(cwd)));
    }
    for (k, v) in &cmd.env {
        if !valid_env_name(k) {
            return Err(invalid(format!(
                "environment variable name {k:?} is not valid"
            )));
        }
        s.push_str(&format!(" && {k}={} && export {k}", sh_quote(v)));
    }
    s.push_str(" && exec");
    for a in &cmd.argv {
        s.push(' ');
        s.push_str(&sh_quote(a));
    }
    Ok(s)
}

/// cmd.exe, sshd's default shell on Windows, refuses command lines longer than this.
pub const CMD_EXE_LIMIT: usize = 8191;

/// The fixed program sent as `-EncodedCommand` when the real one is too long for cmd.exe: it
/// reads the real program from stdin as base64 of UTF-8 (ASCII on the wire, so no console code
/// page can mangle it) and runs it.
pub const STDIN_BOOTSTRAP: &str = "$ErrorActionPreference = 'Stop'\n\
$harnessSource = [Text.Encoding]::UTF8.GetString([Convert]::FromBase64String([Console]::In.ReadToEnd().Trim()))\n\
& ([ScriptBlock]::Create($harnessSource))\n\
exit $LASTEXITCODE\n";

/// What to send over SSH for one command: the command line and, if needed, stdin.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invocation {
    pub command_line: String,
    /// Sent on stdin, then EOF (Windows programs too long for the command line).
    pub stdin: Option<String>,
}

/// How PowerShell `source` is sent: inline when the command line fits cmd.exe's limit (with a
/// margin for `cmd.exe /c "…"`), else through [`STDIN_BOOTSTRAP`].
pub fn windows_invocation(source: &str) -> Invocation {
    let direct = encoded_powershell(source);
    if direct.len() <= CMD_EXE_LIMIT - 100 {
        return Invocation {
            command_line: direct,
            stdin: None,
        };
    }
    Invocation {
        command_line: encoded_powershell(STDIN_BOOTSTRAP),
        stdin: Some(base64::engine::general_purpose::STANDARD.encode(source.as_bytes())),
    }
}

/// What is sent over SSH for `cmd` on `os`.
pub fn invocation(os: GuestOs, cmd: &RemoteCommand) -> Result<Invocation, SessionError> {
    match os {
        GuestOs::Windows => Ok(windows_invocation(&windows_source(cmd)?)),
        GuestOs::Linux => Ok(Invocation {
            command_line: linux_command(cmd)?,
            stdin: None,
        }),
    }
}

/// The command line sent over SSH for `cmd` on `os` (commands that fit on one line).
pub fn command_line(os: GuestOs, cmd: &RemoteCommand) -> Result<String, SessionError> {
    Ok(invocation(os, cmd)?.command_line)
}

/// The command that kills the process tree rooted at `pid` (as reported by [`PID_MARKER`]).
/// (Windows PowerShell 5.1 turns a redirected native stderr line into a terminating error under
/// `$ErrorActionPreference = 'Stop'`; taskkill complains when part of the tree is already gone.)
pub fn kill_tree(os: GuestOs, pid: u32) -> RemoteCommand {
    match os {
        GuestOs::Windows => RemoteCommand::new([format!(
            "$ErrorActionPreference = 'Continue'; taskkill.exe /T /F /PID {pid} 2>&1 | Out-Null; $global:LASTEXITCODE = 0"
        )]),
        GuestOs::Linux => RemoteCommand::new([
            "sh".to_string(),
            "-c".to_string(),
            format!("kill -9 -{pid} 2>/dev/null; kill -9 {pid} 2>/dev/null; true"),
        ]),
    }
}

/// The pid in a marker line, if `line` is one.
pub fn parse_pid_marker(line: &str) -> Option<u32> {
    line.trim_end()
        .strip_prefix(PID_MARKER)?
        .trim()
        .parse()
        .ok()
}

/// A shell snippet as a command: PowerShell source on Windows, `sh -c` on Linux.
pub fn shell(os: GuestOs, snippet: &str) -> RemoteCommand {
    match os {
        GuestOs::Windows => RemoteCommand::new([snippet]),
        GuestOs::Linux => RemoteCommand::new(["sh", "-c", snippet]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sh_quoting() {
        let cases = [
            ("plain", "plain"),
            ("", "''"),
            ("a b", "'a b'"),
            ("it's", r"'it'\''s'"),
            ("$HOME", "'$HOME'"),
            ("a;rm -rf /", "'a;rm -rf /'"),
            ("/usr/bin/x=1", "/usr/bin/x=1"),
            ("`x`", "'`x`'"),
        ];
        for (input, want) in cases {
            assert_eq!(sh_quote(input), want, "{input:?}");
        }
    }

    #[test]
    fn sh_quoting_round_trips_through_a_real_shell() {
        let nasty = ["it's", "$(echo pwned)", "a\nb", "\\", "\"q\"", " lead", "*"];
        for s in nasty {
            let out = std::process::Command::new("sh")
                .arg("-c")
                .arg(format!("printf %s {}", sh_quote(s)))
                .output()
                .unwrap();
            assert_eq!(String::from_utf8(out.stdout).unwrap(), s);
        }
    }

    #[test]
    fn ps_quoting() {
        let cases = [
            ("a", "'a'"),
            ("it's", "'it''s'"),
            ("$x `n", "'$x `n'"),
            ("\u{2019}", "'\u{2019}\u{2019}'"),
        ];
        for (input, want) in cases {
            assert_eq!(ps_quote(input), want);
        }
    }

    #[test]
    fn encoded_command_round_trips() {
        let src = "Write-Output 'héllo ✓'\nexit 3";
        let line = encoded_powershell(src);
        assert!(line.starts_with(
            "powershell.exe -NoProfile -NonInteractive -ExecutionPolicy Bypass -EncodedCommand "
        ));
        assert_eq!(decode_encoded_powershell(&line).as_deref(), Some(src));
        assert_eq!(decode_encoded_powershell("cmd /c dir"), None);
    }

    #[test]
    fn windows_source_has_prelude_env_cwd_and_exit() {
        let cmd = RemoteCommand::new(["go test ./..."])
            .env("GOFLAGS", "-count=1")
            .cwd(r"C:\work dir\it's");
        let s = windows_source(&cmd).unwrap();
        assert!(s.starts_with(
            "$ErrorActionPreference = 'Stop'\n$ProgressPreference = 'SilentlyContinue'\n"
        ));
        assert!(s.contains("[Environment]::SetEnvironmentVariable('GOFLAGS', '-count=1')"));
        assert!(s.contains(r"Set-Location -LiteralPath 'C:\work dir\it''s'"));
        assert!(s.contains("go test ./..."));
        assert!(s.trim_end().ends_with("exit $LASTEXITCODE"));
        assert!(s.contains("##harness-pid:"));
    }

    #[test]
    fn linux_command_quotes_argv_env_and_cwd() {
        let cmd = RemoteCommand::new(["printf", "%s\\n", "a b"])
            .env("K", "v w")
            .cwd("/tmp/x y");
        assert_eq!(
            linux_command(&cmd).unwrap(),
            r###"echo "##harness-pid:$$" >&2 && cd -- '/tmp/x y' && K='v w' && export K && exec printf '%s\n' 'a b'"###
        );
    }

    #[test]
    fn bad_commands_are_refused() {
        assert!(linux_command(&RemoteCommand::default()).is_err());
        assert!(windows_source(&RemoteCommand::default()).is_err());
        let bad_env = RemoteCommand::new(["true"]).env("A-B", "x");
        assert!(linux_command(&bad_env).is_err());
        assert!(windows_source(&bad_env).is_err());
    }

    #[test]
    fn long_windows_programs_go_through_stdin() {
        let short = windows_invocation("Write-Output 1");
        assert_eq!(short.stdin, None);
        assert_eq!(
            decode_encoded_powershell(&short.command_line).as_deref(),
            Some("Write-Output 1")
        );
        let long_src = format!("# {}\nWrite-Output 'é'", "x".repeat(5000));
        let long = windows_invocation(&long_src);
        assert!(long.command_line.len() < CMD_EXE_LIMIT - 100);
        assert_eq!(
            decode_encoded_powershell(&long.command_line).as_deref(),
            Some(STDIN_BOOTSTRAP)
        );
        let sent = base64::engine::general_purpose::STANDARD
            .decode(long.stdin.unwrap())
            .unwrap();
        assert_eq!(String::from_utf8(sent).unwrap(), long_src);
    }

    #[test]
    fn pid_markers() {
        assert_eq!(parse_pid_marker("##harness-pid:1234"), Some(1234));
        assert_eq!(parse_pid_marker("##harness-pid:1234\r"), Some(1234));
        assert_eq!(parse_pid_marker("##harness-pid:x"), None);
        assert_eq!(parse_pid_marker("other"), None);
    }

    #[test]
    fn kill_commands() {
        let w = windows_source(&kill_tree(GuestOs::Windows, 42)).unwrap();
        assert!(w.contains("taskkill.exe /T /F /PID 42"));
        let l = linux_command(&kill_tree(GuestOs::Linux, 42)).unwrap();
        assert!(l.contains("kill -9 -42"));
    }
}
