//! Deriving an [`Endpoint`] from the `[vm]` section, for every backend.

use std::path::{Path, PathBuf};

use super::SessionOptions;

/// The key harness generates for guests it creates, under the state directory.
pub fn harness_key_path(state_dir: &Path) -> PathBuf {
    state_dir.join("ssh").join("id_ed25519")
}

/// The pinned host keys (OpenSSH `known_hosts` format), under the state directory.
pub fn known_hosts_path(state_dir: &Path) -> PathBuf {
    state_dir.join("ssh").join("known_hosts")
}

/// Expands a leading `~/` with `home`.
fn expand_home(p: &Path, home: Option<&Path>) -> PathBuf {
    match (p.strip_prefix("~"), home) {
        (Ok(rest), Some(h)) => h.join(rest),
        _ => p.to_path_buf(),
    }
}

/// Picks the identity: `[vm] identity` if set, else `~/.ssh/id_ed25519` if it exists, else
/// harness's own key in state if it exists, else `None` (the SSH agent). Pure: `exists` decides.
pub fn pick_identity(
    configured: Option<&Path>,
    home: Option<&Path>,
    state_dir: &Path,
    exists: &dyn Fn(&Path) -> bool,
) -> Option<PathBuf> {
    if let Some(p) = configured.filter(|p| !p.as_os_str().is_empty()) {
        return Some(expand_home(p, home));
    }
    if let Some(h) = home {
        let user_key = h.join(".ssh").join("id_ed25519");
        if exists(&user_key) {
            return Some(user_key);
        }
    }
    let ours = harness_key_path(state_dir);
    exists(&ours).then_some(ours)
}

impl SessionOptions {
    /// Defaults with the pinned host keys kept in `state_dir`.
    pub fn in_state(state_dir: &Path) -> Self {
        SessionOptions::new(known_hosts_path(state_dir))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identity_choice() {
        let home = Path::new("/home/u");
        let state = Path::new("/state");
        let none = |_: &Path| false;
        let all = |_: &Path| true;
        let only_ours = |p: &Path| p == Path::new("/state/ssh/id_ed25519");
        type Exists<'a> = &'a dyn Fn(&Path) -> bool;
        let cases: Vec<(Option<&Path>, Exists, Option<&str>)> = vec![
            (Some(Path::new("~/k")), &none, Some("/home/u/k")),
            (Some(Path::new("/abs/k")), &none, Some("/abs/k")),
            (Some(Path::new("")), &all, Some("/home/u/.ssh/id_ed25519")),
            (None, &all, Some("/home/u/.ssh/id_ed25519")),
            (None, &only_ours, Some("/state/ssh/id_ed25519")),
            (None, &none, None),
        ];
        for (configured, exists, want) in cases {
            assert_eq!(
                pick_identity(configured, Some(home), state, exists),
                want.map(PathBuf::from),
                "{configured:?}"
            );
        }
    }
}
