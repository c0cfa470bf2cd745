//! Which SSH key pair reaches the guest: configured, else `~/.ssh/id_ed25519`, else a harness
//! key pair generated once in the state directory.

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::error::VmError;
use crate::config::VmConfig;

/// A private key file and its public line (put in the guest's authorized keys).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SshKey {
    pub private: PathBuf,
    pub public: String,
}

/// Where each candidate comes from, in order of preference (pure: no file access).
pub fn candidates(
    cfg: &VmConfig,
    home: Option<&Path>,
    state_dir: &Path,
) -> Vec<(PathBuf, PathBuf)> {
    let mut v = Vec::new();
    if let Some(id) = &cfg.identity {
        let public = cfg.public_key.clone().unwrap_or_else(|| with_pub(id));
        v.push((id.clone(), public));
        return v;
    }
    if let Some(home) = home {
        let id = home.join(".ssh/id_ed25519");
        v.push((id.clone(), with_pub(&id)));
    }
    let id = state_dir.join("ssh/id_ed25519");
    v.push((id.clone(), with_pub(&id)));
    v
}

fn with_pub(p: &Path) -> PathBuf {
    let mut s = p.as_os_str().to_owned();
    s.push(".pub");
    PathBuf::from(s)
}

/// The key pair `resolve` would pick, if it already exists (never generates one: for read-only
/// questions like `status`).
pub fn existing(cfg: &VmConfig, state_dir: &Path) -> Option<SshKey> {
    let home = std::env::var_os("HOME").map(PathBuf::from);
    candidates(cfg, home.as_deref(), state_dir)
        .into_iter()
        .find(|(private, public)| private.is_file() && public.is_file())
        .and_then(|(private, public)| {
            let line = std::fs::read_to_string(&public).ok()?;
            Some(SshKey {
                private,
                public: line.trim().to_string(),
            })
        })
}

/// Resolve the key pair, generating the harness key when nothing else exists.
pub fn resolve(cfg: &VmConfig, state_dir: &Path) -> Result<SshKey, VmError> {
    let home = std::env::var_os("HOME").map(PathBuf::from);
    let cands = candidates(cfg, home.as_deref(), state_dir);
    for (i, (private, public)) in cands.iter().enumerate() {
        let last = i + 1 == cands.len();
        if private.is_file() && public.is_file() {
            let line = std::fs::read_to_string(public)
                .map_err(VmError::io("reading the SSH public key", public))?;
            return Ok(SshKey {
                private: private.clone(),
                public: line.trim().to_string(),
            });
        }
        if cfg.identity.is_some() {
            return Err(VmError::Config(format!(
                "[vm] identity {} or its public key {} does not exist; fix the path or remove the setting to use a harness key",
                private.display(),
                public.display()
            )));
        }
        if last {
            if let Some(parent) = private.parent() {
                std::fs::create_dir_all(parent)
                    .map_err(VmError::io("creating the harness key directory", parent))?;
            }
            super::process::run_tool(
                "ssh-keygen",
                &[
                    "-q".as_ref(),
                    "-t".as_ref(),
                    "ed25519".as_ref(),
                    "-N".as_ref(),
                    "".as_ref(),
                    "-C".as_ref(),
                    "harness".as_ref(),
                    "-f".as_ref(),
                    private.as_os_str(),
                ],
                Duration::from_secs(30),
            )?;
            let line = std::fs::read_to_string(public)
                .map_err(VmError::io("reading the SSH public key", public))?;
            return Ok(SshKey {
                private: private.clone(),
                public: line.trim().to_string(),
            });
        }
    }
    unreachable!("the state-dir candidate is always last")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn configured_identity_wins_then_home_then_state() {
        let mut cfg = VmConfig::default();
        let c = candidates(&cfg, Some(Path::new("/home/u")), Path::new("/st"));
        assert_eq!(
            c,
            vec![
                (
                    PathBuf::from("/home/u/.ssh/id_ed25519"),
                    PathBuf::from("/home/u/.ssh/id_ed25519.pub")
                ),
                (
                    PathBuf::from("/st/ssh/id_ed25519"),
                    PathBuf::from("/st/ssh/id_ed25519.pub")
                ),
            ]
        );
        cfg.identity = Some("/k/id".into());
        assert_eq!(
            candidates(&cfg, Some(Path::new("/home/u")), Path::new("/st")),
            vec![("/k/id".into(), "/k/id.pub".into())]
        );
        cfg.public_key = Some("/k/other.pub".into());
        assert_eq!(
            candidates(&cfg, None, Path::new("/st"))[0].1,
            PathBuf::from("/k/other.pub")
        );
    }

    #[test]
    fn a_missing_configured_identity_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = VmConfig {
            identity: Some(dir.path().join("nope")),
            ..Default::default()
        };
        assert_eq!(existing(&cfg, dir.path()), None);
        let e = resolve(&cfg, dir.path()).unwrap_err().to_string();
        assert!(e.contains("identity") && e.contains("nope"), "{e}");
    }

    #[test]
    fn a_configured_identity_is_read_with_its_public_key() {
        let dir = tempfile::tempdir().unwrap();
        let id = dir.path().join("k");
        std::fs::write(&id, "private").unwrap();
        std::fs::write(dir.path().join("k.pub"), "ssh-ed25519 AAAA me\n").unwrap();
        let cfg = VmConfig {
            identity: Some(id.clone()),
            ..Default::default()
        };
        assert_eq!(
            existing(&cfg, dir.path()),
            Some(resolve(&cfg, dir.path()).unwrap())
        );
        assert_eq!(
            resolve(&cfg, dir.path()).unwrap(),
            SshKey {
                private: id,
                public: "ssh-ed25519 AAAA me".into()
            }
        );
    }
}
