//! Deriving an [`Endpoint`] from the `[vm]` section, for every backend.

use std::path::{Path, PathBuf};

use super::{Endpoint, SessionOptions};
use crate::config::VmConfig;

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

impl Endpoint {
    /// The endpoint described by `[vm]`. `port` overrides `vm.port` (the qemu backend keeps the
    /// forwarded port in its state).
    pub fn from_config(vm: &VmConfig, state_dir: &Path, port: Option<u16>) -> Endpoint {
        let home = std::env::var_os("HOME").map(PathBuf::from);
        Endpoint {
            host: vm.host.clone(),
            port: port.unwrap_or(vm.port),
            user: vm.user.clone(),
            identity: pick_identity(vm.identity.as_deref(), home.as_deref(), state_dir, &|p| {
                p.exists()
            }),
            os: vm.os,
        }
    }
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

    #[test]
    fn from_config_uses_port_override() {
        let vm = VmConfig {
            host: "10.1.2.3".into(),
            port: 22,
            user: "me".into(),
            ..Default::default()
        };
        let ep = Endpoint::from_config(&vm, Path::new("/nonexistent"), Some(2222));
        assert_eq!(
            (ep.host.as_str(), ep.port, ep.user.as_str()),
            ("10.1.2.3", 2222, "me")
        );
        assert_eq!(Endpoint::from_config(&vm, Path::new("/x"), None).port, 22);
    }
}
