//! The GitHub token: a newtype that cannot be printed by accident, and where to find it.

use std::fmt;

use std::process::Command;
use std::time::Duration;

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

/// Asks the GitHub CLI, if installed and logged in (its own process group, killed on timeout).
fn token_from_gh() -> Option<Secret> {
    let mut cmd = Command::new("gh");
    cmd.args(["auth", "token"]);
    let out = hostproc::output(cmd, GH_TIMEOUT, None).ok()?;
    if !out.success() {
        tracing::debug!("`gh auth token` gave no token");
        return None;
    }
    let token = Secret::new(out.stdout);
    (!token.expose().is_empty()).then_some(token)
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
