//! What a VM boots from, as a digest. A ready snapshot (RAM and disk) holds only for the kernel,
//! initrd, disk image or Windows base image and the machine settings it was made with; after any
//! of them changes, restoring it would silently test the old guest.

use std::io::Read;
use std::path::Path;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::super::error::VmError;
use crate::config::VmConfig;

/// The inputs that shape a guest, each as a digest or a value.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Identity {
    /// sha256 of the kernel file, if the VM boots one.
    pub kernel: Option<String>,
    /// sha256 of the initrd file.
    pub initrd: Option<String>,
    /// The base disk: path, size and modification time (images are large; harness's own bases
    /// are named by their content).
    pub base: String,
    /// Machine settings that a snapshot depends on.
    pub settings: String,
}

/// What each snapshot harness saved was made from (`<vm dir>/snapshots.json`: name → identity).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Recorded(pub std::collections::BTreeMap<String, Identity>);

fn sha256_file(p: &Path) -> Result<String, VmError> {
    let mut f = std::fs::File::open(p).map_err(VmError::io("reading", p))?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf).map_err(VmError::io("reading", p))?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(base16ct::lower::encode_string(&h.finalize()))
}

impl Identity {
    /// The identity of `cfg` booting from `base`.
    pub fn of(cfg: &VmConfig, base: &Path) -> Result<Identity, VmError> {
        let base = match std::fs::metadata(base) {
            Ok(m) => format!(
                "{} {} bytes, modified {:?}",
                base.display(),
                m.len(),
                m.modified().ok()
            ),
            Err(_) => base.display().to_string(),
        };
        Ok(Identity {
            kernel: cfg.kernel.as_deref().map(sha256_file).transpose()?,
            initrd: cfg.initrd.as_deref().map(sha256_file).transpose()?,
            base,
            settings: format!(
                "os={:?} memory_mib={} cpus={} nic={:?} append={:?} tpm={} firmware={:?}",
                cfg.os, cfg.memory_mib, cfg.cpus, cfg.nic, cfg.append, cfg.tpm, cfg.firmware_code
            ),
        })
    }

    /// What differs from an earlier identity, in words (empty: the same guest) (pure).
    pub fn changes_since(&self, old: &Identity) -> Vec<&'static str> {
        let mut v = Vec::new();
        if self.kernel != old.kernel {
            v.push("the kernel");
        }
        if self.initrd != old.initrd {
            v.push("the initrd");
        }
        if self.base != old.base {
            v.push("the base disk image");
        }
        if self.settings != old.settings {
            v.push("the machine settings");
        }
        v
    }
}

impl Recorded {
    pub fn read(path: &Path) -> Recorded {
        std::fs::read(path)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default()
    }

    pub fn write(&self, path: &Path) -> Result<(), VmError> {
        let tmp = path.with_extension("json.tmp");
        std::fs::write(&tmp, serde_json::to_vec_pretty(self).unwrap_or_default())
            .map_err(VmError::io("recording what a snapshot was made from", &tmp))?;
        std::fs::rename(&tmp, path)
            .map_err(VmError::io("recording what a snapshot was made from", path))
    }
}

/// Why snapshot `name` cannot be trusted to restore this guest, if it cannot (pure).
pub fn stale_reason(name: &str, now: &Identity, made_from: Option<&Identity>) -> Option<String> {
    match made_from {
        Some(old) => {
            let changes = now.changes_since(old);
            (!changes.is_empty()).then(|| {
                format!(
                    "{} changed since the ready snapshot '{name}' was saved",
                    changes.join(", ")
                )
            })
        }
        None => Some(format!(
            "there is no record of what the ready snapshot '{name}' was made from"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_rebuilt_initrd_or_new_settings_make_the_snapshot_stale() {
        let d = tempfile::tempdir().unwrap();
        let (k, i, base) = (d.path().join("k"), d.path().join("i"), d.path().join("b"));
        std::fs::write(&k, "kernel").unwrap();
        std::fs::write(&i, "initrd one").unwrap();
        std::fs::write(&base, "disk").unwrap();
        let cfg = VmConfig {
            os: crate::session::GuestOs::Linux,
            kernel: Some(k.clone()),
            initrd: Some(i.clone()),
            ..Default::default()
        };
        let first = Identity::of(&cfg, &base).unwrap();
        assert_eq!(stale_reason("ready", &first, Some(&first)), None);
        // Same path, new content.
        std::fs::write(&i, "initrd two").unwrap();
        let now = Identity::of(&cfg, &base).unwrap();
        let why = stale_reason("ready", &now, Some(&first)).unwrap();
        assert_eq!(
            why,
            "the initrd changed since the ready snapshot 'ready' was saved"
        );
        let more = VmConfig {
            memory_mib: 4096,
            ..cfg.clone()
        };
        let why =
            stale_reason("ready", &Identity::of(&more, &base).unwrap(), Some(&first)).unwrap();
        assert!(why.contains("the initrd, the machine settings"), "{why}");
        assert!(
            stale_reason("ready", &first, None)
                .unwrap()
                .contains("no record")
        );
    }

    #[test]
    fn recorded_round_trips() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("snapshots.json");
        assert_eq!(Recorded::read(&p), Recorded::default());
        let mut r = Recorded::default();
        r.0.insert(
            "ready".into(),
            Identity {
                kernel: Some("a".into()),
                initrd: None,
                base: "b".into(),
                settings: "s".into(),
            },
        );
        r.write(&p).unwrap();
        assert_eq!(Recorded::read(&p), r);
    }
}
