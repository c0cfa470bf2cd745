//! What is installed: the input build, its provenance, and the record kept in the guest.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::config::InstallMethod;

/// Where an installed build came from. The lead fills it from the artifacts crate's build
/// metadata (provision does not depend on artifacts); suites read `version` to set
/// `CI_EFW_VERSION`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(default)]
pub struct InstalledBuild {
    /// Stable build key, used as the guest directory name (letters, digits, `.`, `_`, `-`).
    pub key: String,
    /// The source spec it was fetched by (`main`, `run:<id>`, `release:<v>`, `file:<path>`, …).
    pub source: String,
    /// `owner/name` of the repository, when it came from GitHub.
    pub repo: Option<String>,
    /// Workflow run id, for CI artifacts.
    pub run_id: Option<u64>,
    /// Commit the build was made from.
    pub head_sha: Option<String>,
    /// efW version, when known.
    pub version: Option<String>,
}

/// A build on the host, unpacked, ready to be sent to the guest.
#[derive(Debug, Clone)]
pub struct BuildToInstall {
    /// The unpacked build directory (installer files at its root).
    pub local_dir: PathBuf,
    /// Provenance, recorded in the guest on success.
    pub provenance: InstalledBuild,
}

impl BuildToInstall {
    /// The build key (guest directory name).
    pub fn key(&self) -> &str {
        &self.provenance.key
    }
}

/// The record harness writes in the guest after a verified install, and reads back to decide
/// whether an install is a no-op.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InstallRecord {
    /// The build.
    pub build: InstalledBuild,
    /// The method that installed it (never `auto`).
    pub method: InstallMethod,
    /// The guest directory the build was unpacked in (its scripts uninstall it later).
    pub guest_dir: String,
    /// Seconds since the Unix epoch, guest-independent (taken on the host).
    pub installed_at: u64,
    /// harness version that installed it.
    pub harness_version: String,
    /// The runtime version found in the guest after install (CI builds carry no version).
    #[serde(default)]
    pub runtime_version: Option<String>,
}

impl InstallRecord {
    /// The value for ebpf-go's `CI_EFW_VERSION` (it must parse as `x.y.z`): the build's version,
    /// else the version found in the guest.
    pub fn ci_efw_version(&self) -> Option<String> {
        [
            self.build.version.as_deref(),
            self.runtime_version.as_deref(),
        ]
        .into_iter()
        .flatten()
        .find_map(normalize_version)
    }
}

/// `v0.21.0`, `Release-v0.21.0`, `0.21.0.0`, `1.0.0-rc1` → `0.21.0`, `0.21.0`, `0.21.0`,
/// `1.0.0-rc1`; anything without three numeric components → `None`.
pub fn normalize_version(s: &str) -> Option<String> {
    let s = s.trim();
    let s = s.strip_prefix("Release-").unwrap_or(s);
    let s = s
        .strip_prefix('v')
        .or_else(|| s.strip_prefix('V'))
        .unwrap_or(s);
    let (core, suffix) = match s.find('-') {
        Some(i) => (&s[..i], &s[i..]),
        None => (s, ""),
    };
    let parts: Vec<&str> = core.split('.').collect();
    if parts.len() < 3
        || !parts
            .iter()
            .all(|p| !p.is_empty() && p.chars().all(|c| c.is_ascii_digit()))
    {
        return None;
    }
    Some(format!("{}.{}.{}{suffix}", parts[0], parts[1], parts[2]))
}

/// One extension as installed in the guest (for `ext list` and host state).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExtensionState {
    /// Config name (`ntosebpfext`).
    pub name: String,
    /// Kernel service name.
    pub service: String,
    /// Service status (`Running`, `Stopped`, …), `None` when the service does not exist.
    pub status: Option<String>,
    /// The service's binary path, when it exists.
    pub binary_path: Option<String>,
    /// Program types (GUIDs) from the config that are present in the eBPF store.
    pub program_types_present: Vec<String>,
    /// Program types (GUIDs) from the config that are missing from the eBPF store.
    pub program_types_missing: Vec<String>,
}

/// Where the host keeps the install record of a VM: `<state>/vms/<vm>/installed.json`. Suites
/// read it to set `CI_EFW_VERSION`; `harness repro` to check the same build is installed.
pub fn host_record_path(state_dir: &std::path::Path, vm_name: &str) -> PathBuf {
    state_dir.join("vms").join(vm_name).join("installed.json")
}

/// Saves the record atomically (temp file + rename).
pub fn save_host_record(path: &std::path::Path, record: &InstallRecord) -> std::io::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let tmp = path.with_extension("json.tmp");
    let text = serde_json::to_string_pretty(record).map_err(std::io::Error::other)?;
    std::fs::write(&tmp, text)?;
    std::fs::rename(&tmp, path)
}

/// Reads the record; `Ok(None)` when nothing was installed yet.
pub fn load_host_record(path: &std::path::Path) -> std::io::Result<Option<InstallRecord>> {
    match std::fs::read_to_string(path) {
        Ok(text) => serde_json::from_str(&text).map(Some).map_err(|e| {
            std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("{}: {e}", path.display()),
            )
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_record_round_trips_and_absent_is_none() {
        let dir = tempfile::tempdir().unwrap();
        let path = host_record_path(dir.path(), "efw");
        assert_eq!(load_host_record(&path).unwrap(), None);
        let rec = InstallRecord {
            build: InstalledBuild {
                key: "gh-artifact-1".into(),
                source: "main".into(),
                run_id: Some(7),
                version: Some("0.21.0".into()),
                ..Default::default()
            },
            method: InstallMethod::InstallPsm1,
            guest_dir: r"C:\harness\efw\gh-artifact-1".into(),
            installed_at: 1,
            harness_version: "0.1.0".into(),
            runtime_version: None,
        };
        save_host_record(&path, &rec).unwrap();
        assert_eq!(load_host_record(&path).unwrap(), Some(rec));
        std::fs::write(&path, "{").unwrap();
        assert!(load_host_record(&path).is_err());
    }

    #[test]
    fn versions_for_ci_efw_version() {
        for (input, want) in [
            ("0.21.0", Some("0.21.0")),
            ("v1.4.0", Some("1.4.0")),
            ("Release-v0.21.1", Some("0.21.1")),
            ("0.21.0.0", Some("0.21.0")),
            ("1.0.0-rc1", Some("1.0.0-rc1")),
            ("main", None),
            ("1.2", None),
            ("", None),
        ] {
            assert_eq!(normalize_version(input).as_deref(), want, "{input}");
        }
        let mut rec = InstallRecord {
            build: InstalledBuild::default(),
            method: InstallMethod::InstallPsm1,
            guest_dir: String::new(),
            installed_at: 0,
            harness_version: String::new(),
            runtime_version: Some("0.22.0.0".into()),
        };
        assert_eq!(rec.ci_efw_version().as_deref(), Some("0.22.0"));
        rec.build.version = Some("v1.0.0".into());
        assert_eq!(rec.ci_efw_version().as_deref(), Some("1.0.0"));
        rec.build.version = Some("weird".into());
        assert_eq!(rec.ci_efw_version().as_deref(), Some("0.22.0"));
    }
}
