//! What kind of build an unpacked directory holds, and whether it is what the caller expects.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{ArtifactError, Result};

/// Which install entry points a build has at its root.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Layout {
    /// `setup-ebpf.ps1`: efW's one-shot installer script.
    pub setup_ebpf_ps1: bool,
    /// `install_ebpf.psm1`: the module behind it (what cilium's CI imports).
    pub install_ebpf_psm1: bool,
    /// `ebpf-for-windows.msi`.
    pub msi: bool,
    /// `setup.sh`: the Linux test-guest stand-in for an efW build (installed with `sh setup.sh`).
    pub setup_sh: bool,
    /// Number of entries at the root.
    pub root_entries: usize,
}

impl Layout {
    /// Reads the root of `dir` (names compared case-insensitively, as Windows would).
    pub fn detect(dir: &Path) -> std::io::Result<Layout> {
        let names = root_names(dir)?;
        let has = |n: &str| names.iter().any(|x| x.eq_ignore_ascii_case(n));
        Ok(Layout {
            setup_ebpf_ps1: has("setup-ebpf.ps1"),
            install_ebpf_psm1: has("install_ebpf.psm1"),
            msi: has("ebpf-for-windows.msi"),
            setup_sh: has("setup.sh"),
            root_entries: names.len(),
        })
    }

    /// An efW runtime build.
    pub fn is_efw(&self) -> bool {
        self.setup_ebpf_ps1 || self.install_ebpf_psm1 || self.msi
    }
}

fn root_names(dir: &Path) -> std::io::Result<Vec<String>> {
    let mut names: Vec<String> = std::fs::read_dir(dir)?
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    Ok(names)
}

/// Checks `dir` against `expect` (see `BuildSourceConfig::expect`) and returns its layout.
pub fn check_build(dir: &Path, expect: &[String], what: &str) -> Result<Layout> {
    let layout = Layout::detect(dir)
        .map_err(|e| ArtifactError::io("cannot read build directory", dir, e))?;
    let names = root_names(dir).unwrap_or_default();
    let ok = if expect.is_empty() {
        layout.is_efw() || layout.setup_sh
    } else {
        expect
            .iter()
            .all(|want| names.iter().any(|n| n.eq_ignore_ascii_case(want)))
    };
    if ok {
        return Ok(layout);
    }
    let (kind, expected) = if expect.is_empty() {
        (
            "an eBPF for Windows build",
            "setup-ebpf.ps1, install_ebpf.psm1 or ebpf-for-windows.msi (or setup.sh for a Linux test guest)".to_string(),
        )
    } else {
        ("the expected build", expect.join(", "))
    };
    let mut found: Vec<String> = names.iter().take(12).cloned().collect();
    if names.len() > found.len() {
        found.push(format!("… ({} entries)", names.len()));
    }
    Err(ArtifactError::NotABuild {
        what: what.to_string(),
        kind: kind.into(),
        expected,
        found: if found.is_empty() {
            "nothing".into()
        } else {
            found.join(", ")
        },
    })
}

/// For an already-unpacked local directory: the directory itself, or `<configuration>/` or
/// `x64/<configuration>/` inside it (msbuild's output layout), whichever holds the build.
pub fn find_build_root(dir: &Path, configuration: &str, expect: &[String]) -> Option<PathBuf> {
    [
        dir.to_path_buf(),
        dir.join(configuration),
        dir.join("x64").join(configuration),
    ]
    .into_iter()
    .find(|d| d.is_dir() && check_build(d, expect, "").is_ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detects_and_checks() {
        let t = tempfile::tempdir().unwrap();
        let d = t.path();
        std::fs::write(d.join("README.txt"), "x").unwrap();
        let err = check_build(d, &[], "file:x").unwrap_err().to_string();
        assert!(
            err.contains("setup-ebpf.ps1") && err.contains("README.txt"),
            "{err}"
        );
        std::fs::write(d.join("Install_eBPF.psm1"), "x").unwrap();
        let l = check_build(d, &[], "x").unwrap();
        assert!(l.install_ebpf_psm1 && l.is_efw() && !l.msi && l.root_entries == 2);
        let err = check_build(d, &["ntosebpfext.sys".into()], "ext")
            .unwrap_err()
            .to_string();
        assert!(err.contains("expected ntosebpfext.sys"), "{err}");
        std::fs::write(d.join("ntosebpfext.sys"), "x").unwrap();
        assert!(check_build(d, &["ntosebpfext.sys".into()], "ext").is_ok());
        let linux = tempfile::tempdir().unwrap();
        std::fs::write(linux.path().join("setup.sh"), "x").unwrap();
        assert!(check_build(linux.path(), &[], "x").unwrap().setup_sh);
    }

    #[test]
    fn finds_msbuild_output_root() {
        let t = tempfile::tempdir().unwrap();
        let deep = t.path().join("x64").join("Debug");
        std::fs::create_dir_all(&deep).unwrap();
        std::fs::write(deep.join("setup-ebpf.ps1"), "x").unwrap();
        assert_eq!(find_build_root(t.path(), "Debug", &[]), Some(deep));
        assert_eq!(find_build_root(t.path(), "Release", &[]), None);
    }
}
