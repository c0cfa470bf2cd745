//! Transcript stand-in shell for the test user (sshd `ForceCommand standin DIR`).
//!
//! Plays a Windows guest without Windows: decodes the `-EncodedCommand` (UTF-16LE base64) of
//! each `powershell.exe` command line, appends it to `DIR/transcript.jsonl`, and answers from
//! the rules in `DIR/rules` (written by `testsupport::standin`): stdout, stderr, exit code, a
//! delay, or dropping the connection. Two Windows behaviours are built in: the harness wrapper's
//! `##harness-pid:` line is answered with this process's pid, and `taskkill.exe /T /F /PID N`
//! really kills N. SFTP requests are passed to the real sftp-server, starting in `DIR/home`
//! (the guest user's profile directory).
//!
//! Standard library only: the testsupport build script compiles it with plain rustc.

use std::env;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{self, Command};
use std::time::Duration;

fn b64_decode(s: &str) -> Option<Vec<u8>> {
    fn val(c: u8) -> Option<u32> {
        Some(match c {
            b'A'..=b'Z' => (c - b'A') as u32,
            b'a'..=b'z' => (c - b'a' + 26) as u32,
            b'0'..=b'9' => (c - b'0' + 52) as u32,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        })
    }
    let bytes: Vec<u8> = s.bytes().filter(|&c| c != b'=').collect();
    let mut out = Vec::with_capacity(bytes.len() * 3 / 4);
    for chunk in bytes.chunks(4) {
        let mut acc = 0u32;
        for (i, &c) in chunk.iter().enumerate() {
            acc |= val(c)? << (18 - 6 * i);
        }
        let n = chunk.len();
        if n < 2 {
            return None;
        }
        out.push((acc >> 16) as u8);
        if n > 2 {
            out.push((acc >> 8) as u8);
        }
        if n > 3 {
            out.push(acc as u8);
        }
    }
    Some(out)
}

fn decode_powershell(raw: &str) -> Option<String> {
    let mut it = raw.split_whitespace();
    while let Some(t) = it.next() {
        if t.eq_ignore_ascii_case("-EncodedCommand") {
            let b = b64_decode(it.next()?)?;
            if b.len() % 2 != 0 {
                return None;
            }
            let u: Vec<u16> = b
                .chunks_exact(2)
                .map(|c| u16::from_le_bytes([c[0], c[1]]))
                .collect();
            return String::from_utf16(&u).ok();
        }
    }
    None
}

fn json_str(s: &str) -> String {
    let mut o = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => o.push_str("\\\""),
            '\\' => o.push_str("\\\\"),
            '\n' => o.push_str("\\n"),
            '\r' => o.push_str("\\r"),
            '\t' => o.push_str("\\t"),
            c if (c as u32) < 0x20 => o.push_str(&format!("\\u{:04x}", c as u32)),
            c => o.push(c),
        }
    }
    o.push('"');
    o
}

struct Rule {
    needle: String,
    times: u64,
    action: String,
    stdout: Vec<u8>,
    stderr: Vec<u8>,
    code: i32,
    sleep_ms: u64,
}

fn parse_rules(text: &str) -> Vec<Rule> {
    text.lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split('\t').collect();
            if f.len() != 7 {
                return None;
            }
            Some(Rule {
                needle: String::from_utf8(b64_decode(f[0])?).ok()?,
                times: f[1].parse().ok()?,
                action: f[2].to_string(),
                stdout: b64_decode(f[3])?,
                stderr: b64_decode(f[4])?,
                code: f[5].parse().ok()?,
                sleep_ms: f[6].parse().ok()?,
            })
        })
        .collect()
}

fn main() {
    let dir = PathBuf::from(env::args().nth(1).unwrap_or_else(|| {
        eprintln!("standin: usage: standin DIR");
        process::exit(96)
    }));
    let raw = env::var("SSH_ORIGINAL_COMMAND").unwrap_or_default();
    if raw == "internal-sftp" || raw.ends_with("sftp-server") {
        // SFTP starts in DIR/home (the "user profile"), so relative paths stay in the test's dir.
        let home = dir.join("home");
        let _ = fs::create_dir_all(&home);
        let e = Command::new("/usr/lib/openssh/sftp-server")
            .arg("-d")
            .arg(&home)
            .exec();
        eprintln!("standin: cannot run sftp-server: {e}");
        process::exit(96);
    }
    let mut decoded = decode_powershell(&raw);
    // harness's stdin bootstrap (programs too long for cmd.exe): the real program is base64 of
    // UTF-8 on stdin.
    let via_stdin = decoded
        .as_deref()
        .is_some_and(|d| d.contains("[Console]::In.ReadToEnd()"));
    if via_stdin {
        let mut b64 = String::new();
        let _ = io::stdin().read_to_string(&mut b64);
        decoded = b64_decode(b64.trim()).and_then(|b| String::from_utf8(b).ok());
    }
    let text = decoded.clone().unwrap_or_else(|| raw.clone());

    let rule = match record_and_match(&dir, &raw, decoded.as_deref(), via_stdin, &text) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("standin: {e}");
            process::exit(96)
        }
    };

    if text.contains("##harness-pid:") {
        eprintln!("##harness-pid:{}", process::id());
    }
    if let Some(pid) = text.split("taskkill.exe /T /F /PID ").nth(1) {
        let pid: String = pid.chars().take_while(|c| c.is_ascii_digit()).collect();
        let _ = Command::new("kill").arg("-9").arg(&pid).status();
        if rule.is_none() {
            process::exit(0);
        }
    }
    let Some(rule) = rule else {
        eprintln!(
            "standin: no rule matches: {}",
            text.lines().last().unwrap_or("")
        );
        process::exit(97);
    };
    std::thread::sleep(Duration::from_millis(rule.sleep_ms));
    if rule.action == "drop" {
        // Kill the sshd process serving this session: the client sees the connection drop.
        let _ = Command::new("kill")
            .arg("-9")
            .arg(std::os::unix::process::parent_id().to_string())
            .status();
        std::thread::sleep(Duration::from_secs(5));
        process::exit(255);
    }
    let _ = io::stdout().write_all(&rule.stdout);
    let _ = io::stdout().flush();
    let _ = io::stderr().write_all(&rule.stderr);
    process::exit(rule.code);
}

fn record_and_match(
    dir: &Path,
    raw: &str,
    decoded: Option<&str>,
    via_stdin: bool,
    text: &str,
) -> io::Result<Option<Rule>> {
    let lock = File::create(dir.join("lock"))?;
    lock.lock()?;
    let transcript = dir.join("transcript.jsonl");
    let seq = fs::read_to_string(&transcript)
        .map(|t| t.lines().count())
        .unwrap_or(0);
    let mut line = format!(
        "{{\"seq\":{seq},\"via_stdin\":{via_stdin},\"raw\":{}",
        json_str(raw)
    );
    match decoded {
        Some(d) => line.push_str(&format!(",\"decoded\":{}}}\n", json_str(d))),
        None => line.push_str(",\"decoded\":null}\n"),
    }
    OpenOptions::new()
        .create(true)
        .append(true)
        .open(&transcript)?
        .write_all(line.as_bytes())?;

    let mut rules_text = String::new();
    if let Ok(mut f) = File::open(dir.join("rules")) {
        f.read_to_string(&mut rules_text)?;
    }
    let rules = parse_rules(&rules_text);
    let used_path = dir.join("used");
    let mut used: Vec<u64> = fs::read_to_string(&used_path)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.parse().ok())
        .collect();
    used.resize(rules.len(), 0);
    let mut chosen = None;
    for (i, r) in rules.into_iter().enumerate() {
        if text.contains(&r.needle) && (r.times == 0 || used[i] < r.times) {
            used[i] += 1;
            chosen = Some(r);
            break;
        }
    }
    let body: String = used.iter().map(|u| format!("{u}\n")).collect();
    fs::write(&used_path, body)?;
    Ok(chosen)
}
