//! The GitHub token: a newtype that cannot be printed by accident, and where to find it.

use std::fmt;
use std::io::Read;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// A token whose `Debug` and `Display` print `***`, so it never lands in logs or error messages.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a token; surrounding whitespace (a trailing newline from a file or `gh`) is dropped.
    pub fn new(token: impl Into<String>) -> Self {
        Secret(token.into().trim().to_string())
    }

    /// The token itself, for the one place that builds the `Authorization` header.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

/// How long `gh auth token` may take before we give up on it.
const GH_TIMEOUT: Duration = Duration::from_secs(5);

/// The token from `GITHUB_TOKEN`, else `GH_TOKEN`, else `gh auth token` (bounded by a timeout).
/// `None` when none is available; artifact downloads then fail with a message saying how to get one.
pub fn token_from_env() -> Option<Secret> {
    token_from_vars(|k| std::env::var(k).ok()).or_else(token_from_gh)
}

/// The environment-variable part of [`token_from_env`], with the lookup injected so it can be tested.
pub fn token_from_vars(lookup: impl Fn(&str) -> Option<String>) -> Option<Secret> {
    ["GITHUB_TOKEN", "GH_TOKEN"]
        .iter()
        .filter_map(|k| lookup(k))
        .map(Secret::new)
        .find(|s| !s.expose().is_empty())
}

/// Asks the GitHub CLI, if installed and logged in. Runs in its own process group, killed on timeout.
fn token_from_gh() -> Option<Secret> {
    use std::os::unix::process::CommandExt;
    let mut child = Command::new("gh")
        .args(["auth", "token"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .process_group(0)
        .spawn()
        .ok()?;
    let start = Instant::now();
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break Some(status),
            Ok(None) if start.elapsed() < GH_TIMEOUT => {
                std::thread::sleep(Duration::from_millis(20))
            }
            _ => break None,
        }
    };
    let Some(status) = status.filter(|s| s.success()) else {
        // Kill the whole group so no helper `gh` spawned is left behind.
        kill_group(child.id());
        let _ = child.kill();
        let _ = child.wait();
        tracing::debug!("`gh auth token` gave no token");
        return None;
    };
    let _ = status;
    let mut out = String::new();
    child.stdout.take()?.read_to_string(&mut out).ok()?;
    let token = Secret::new(out);
    (!token.expose().is_empty()).then_some(token)
}

/// Sends SIGKILL to the process group led by `pid`.
fn kill_group(pid: u32) {
    if let Ok(pid) = i32::try_from(pid) {
        // SAFETY: kill(2) with a negative pid signals the process group created at spawn;
        // a stale group id only yields ESRCH.
        unsafe {
            libc::kill(-pid, libc::SIGKILL);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_never_prints() {
        let s = Secret::new("ghp_supersecret\n");
        assert_eq!(format!("{s}"), "***");
        assert_eq!(format!("{s:?}"), "***");
        assert_eq!(format!("{:?}", Some(s.clone())), "Some(***)");
        assert_eq!(s.expose(), "ghp_supersecret");
    }

    #[test]
    fn env_lookup_order_and_empty_values() {
        type Vars<'a> = &'a [(&'a str, &'a str)];
        let cases: &[(Vars, Option<&str>)] = &[
            (&[], None),
            (&[("GITHUB_TOKEN", "a"), ("GH_TOKEN", "b")], Some("a")),
            (&[("GH_TOKEN", "b")], Some("b")),
            (&[("GITHUB_TOKEN", "  "), ("GH_TOKEN", "b")], Some("b")),
            (&[("GITHUB_TOKEN", "")], None),
        ];
        for (vars, want) in cases {
            let got = token_from_vars(|k| {
                vars.iter()
                    .find(|(n, _)| *n == k)
                    .map(|(_, v)| v.to_string())
            });
            assert_eq!(got.as_ref().map(Secret::expose), *want, "{vars:?}");
        }
    }
}
