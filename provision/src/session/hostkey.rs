//! Host key pinning in an OpenSSH-format `known_hosts` file kept in harness state.
//!
//! The first key a guest presents is recorded; a different key later is refused unless the
//! caller accepts it (`--accept-new-host-key`), or harness itself re-created the VM and called
//! [`forget`]. The format is OpenSSH's so `harness ssh` can pass the same file to the system
//! client as `UserKnownHostsFile`.

use std::fs;
use std::io;
use std::path::Path;

/// The host pattern OpenSSH uses for `host:port`.
pub fn host_pattern(host: &str, port: u16) -> String {
    if port == 22 {
        host.to_string()
    } else {
        format!("[{host}]:{port}")
    }
}

/// The result of comparing a presented key with the pins.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PinCheck {
    /// Same key as pinned.
    Match,
    /// Nothing pinned for this host yet.
    New,
    /// A different key (or key type) is pinned: `type base64`.
    Changed { pinned: String },
}

/// Compares `key` (`type base64`) with what `known_hosts` text pins for `pattern`.
pub fn check_text(text: &str, pattern: &str, key: &str) -> PinCheck {
    let mut pinned = None;
    for (host, k) in entries(text) {
        if host == pattern {
            if k == key {
                return PinCheck::Match;
            }
            pinned.get_or_insert(k);
        }
    }
    match pinned {
        Some(p) => PinCheck::Changed { pinned: p },
        None => PinCheck::New,
    }
}

/// `known_hosts` text with every entry for `pattern` replaced by `key` (or removed if `None`).
pub fn replace_text(text: &str, pattern: &str, key: Option<&str>) -> String {
    let mut out = String::new();
    for line in text.lines() {
        let host = line.split_whitespace().next().unwrap_or("");
        if host.split(',').any(|h| h == pattern) {
            continue;
        }
        out.push_str(line);
        out.push('\n');
    }
    if let Some(k) = key {
        out.push_str(&format!("{pattern} {k}\n"));
    }
    out
}

/// `(host pattern, "type base64")` for every usable line (comma lists expanded).
fn entries(text: &str) -> Vec<(String, String)> {
    let mut v = Vec::new();
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with('@') {
            continue;
        }
        let mut it = line.split_whitespace();
        let (Some(hosts), Some(ty), Some(b64)) = (it.next(), it.next(), it.next()) else {
            continue;
        };
        for h in hosts.split(',') {
            v.push((h.to_string(), format!("{ty} {b64}")));
        }
    }
    v
}

/// Checks `key` against the file (a missing file pins nothing).
pub fn check(path: &Path, host: &str, port: u16, key: &str) -> io::Result<PinCheck> {
    let text = match fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == io::ErrorKind::NotFound => String::new(),
        Err(e) => return Err(e),
    };
    Ok(check_text(&text, &host_pattern(host, port), key))
}

/// Records `key` as the pin for `host:port`, replacing any earlier pin.
pub fn pin(path: &Path, host: &str, port: u16, key: &str) -> io::Result<()> {
    update(path, host, port, Some(key))
}

/// Drops the pin of `host:port` (harness re-created the VM, so a new key is expected).
pub fn forget(path: &Path, host: &str, port: u16) -> io::Result<()> {
    update(path, host, port, None)
}

fn update(path: &Path, host: &str, port: u16, key: Option<&str>) -> io::Result<()> {
    let text = match fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == io::ErrorKind::NotFound => String::new(),
        Err(e) => return Err(e),
    };
    let new = replace_text(&text, &host_pattern(host, port), key);
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    fs::create_dir_all(dir)?;
    let mut tmp = tempfile::NamedTempFile::new_in(dir)?;
    io::Write::write_all(&mut tmp, new.as_bytes())?;
    tmp.persist(path).map_err(|e| e.error)?;
    Ok(())
}

/// OpenSSH's name for a libssh2 host key type.
pub fn key_type_name(t: ssh2::HostKeyType) -> &'static str {
    match t {
        ssh2::HostKeyType::Rsa => "ssh-rsa",
        ssh2::HostKeyType::Dss => "ssh-dss",
        ssh2::HostKeyType::Ecdsa256 => "ecdsa-sha2-nistp256",
        ssh2::HostKeyType::Ecdsa384 => "ecdsa-sha2-nistp384",
        ssh2::HostKeyType::Ecdsa521 => "ecdsa-sha2-nistp521",
        ssh2::HostKeyType::Ed25519 => "ssh-ed25519",
        ssh2::HostKeyType::Unknown => "unknown",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns() {
        assert_eq!(host_pattern("10.0.0.1", 22), "10.0.0.1");
        assert_eq!(host_pattern("127.0.0.1", 2222), "[127.0.0.1]:2222");
    }

    #[test]
    fn checks() {
        let text = "# comment\n[127.0.0.1]:2222 ssh-ed25519 AAAA1\nother,[127.0.0.1]:3333 ssh-ed25519 BBBB\n";
        let cases = [
            ("[127.0.0.1]:2222", "ssh-ed25519 AAAA1", PinCheck::Match),
            (
                "[127.0.0.1]:2222",
                "ssh-ed25519 ZZZZ",
                PinCheck::Changed {
                    pinned: "ssh-ed25519 AAAA1".into(),
                },
            ),
            (
                "[127.0.0.1]:2222",
                "ssh-rsa AAAA1",
                PinCheck::Changed {
                    pinned: "ssh-ed25519 AAAA1".into(),
                },
            ),
            ("[127.0.0.1]:3333", "ssh-ed25519 BBBB", PinCheck::Match),
            ("[127.0.0.1]:4444", "ssh-ed25519 AAAA1", PinCheck::New),
        ];
        for (pat, key, want) in cases {
            assert_eq!(check_text(text, pat, key), want, "{pat} {key}");
        }
    }

    #[test]
    fn replace_keeps_others() {
        let text = "[h]:1 ssh-ed25519 A\n[h]:2 ssh-ed25519 B\n";
        assert_eq!(
            replace_text(text, "[h]:1", Some("ssh-ed25519 C")),
            "[h]:2 ssh-ed25519 B\n[h]:1 ssh-ed25519 C\n"
        );
        assert_eq!(replace_text(text, "[h]:2", None), "[h]:1 ssh-ed25519 A\n");
    }

    #[test]
    fn file_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("state/known_hosts");
        assert_eq!(check(&p, "h", 2, "ssh-ed25519 A").unwrap(), PinCheck::New);
        pin(&p, "h", 2, "ssh-ed25519 A").unwrap();
        assert_eq!(check(&p, "h", 2, "ssh-ed25519 A").unwrap(), PinCheck::Match);
        assert!(matches!(
            check(&p, "h", 2, "ssh-ed25519 B").unwrap(),
            PinCheck::Changed { .. }
        ));
        forget(&p, "h", 2).unwrap();
        assert_eq!(check(&p, "h", 2, "ssh-ed25519 B").unwrap(), PinCheck::New);
    }
}
