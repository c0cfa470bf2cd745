//! Disk images through `qemu-img`: blank bases, overlays on read-only bases, snapshot listings.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::error::VmError;
use super::process::run_tool;

const QEMU_IMG: &str = "qemu-img";
const TOOL_TIMEOUT: Duration = Duration::from_secs(120);

/// A RAM+disk snapshot stored in a VM's overlay.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SnapshotInfo {
    pub name: String,
    /// Size of the saved RAM/device state (0 for disk-only snapshots).
    pub vm_state_bytes: u64,
    /// Unix seconds when it was taken.
    pub date_unix: i64,
}

/// The fields of `qemu-img info --output=json` harness uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageInfo {
    pub format: String,
    pub virtual_size: u64,
    pub backing_file: Option<PathBuf>,
    pub snapshots: Vec<SnapshotInfo>,
}

#[derive(Deserialize)]
struct RawInfo {
    format: String,
    #[serde(rename = "virtual-size")]
    virtual_size: u64,
    #[serde(rename = "backing-filename")]
    backing: Option<PathBuf>,
    #[serde(default)]
    snapshots: Vec<RawSnapshot>,
}

#[derive(Deserialize)]
struct RawSnapshot {
    name: String,
    #[serde(rename = "vm-state-size", default)]
    vm_state_size: u64,
    #[serde(rename = "date-sec", default)]
    date_sec: i64,
}

/// Parse `qemu-img info --output=json`.
pub(crate) fn parse_info(json: &str) -> Result<ImageInfo, String> {
    let raw: RawInfo =
        serde_json::from_str(json).map_err(|e| format!("unexpected qemu-img info output: {e}"))?;
    Ok(ImageInfo {
        format: raw.format,
        virtual_size: raw.virtual_size,
        backing_file: raw.backing,
        snapshots: raw
            .snapshots
            .into_iter()
            .map(|s| SnapshotInfo {
                name: s.name,
                vm_state_bytes: s.vm_state_size,
                date_unix: s.date_sec,
            })
            .collect(),
    })
}

/// Image facts; works while QEMU has the image open (`-U`, read-only).
pub fn info(path: &Path) -> Result<ImageInfo, VmError> {
    let out = run_tool(
        QEMU_IMG,
        &[
            "info".as_ref(),
            "-U".as_ref(),
            "--output=json".as_ref(),
            path.as_os_str(),
        ],
        TOOL_TIMEOUT,
    )?;
    parse_info(&out).map_err(|detail| VmError::Tool {
        program: QEMU_IMG.into(),
        args: format!("info {}", path.display()),
        status: "ok".into(),
        stderr: detail,
    })
}

/// A new empty qcow2 disk.
pub fn create_blank(path: &Path, size_gib: u32) -> Result<(), VmError> {
    let size = format!("{size_gib}G");
    run_tool(
        QEMU_IMG,
        &[
            "create".as_ref(),
            "-q".as_ref(),
            "-f".as_ref(),
            "qcow2".as_ref(),
            path.as_os_str(),
            size.as_ref(),
        ],
        TOOL_TIMEOUT,
    )
    .map(drop)
}

/// A qcow2 overlay whose reads fall through to `base` (which is never written).
pub fn create_overlay(base: &Path, overlay: &Path) -> Result<(), VmError> {
    let fmt = info(base)?.format;
    let base_abs =
        std::path::absolute(base).map_err(VmError::io("resolving the base image path", base))?;
    let args: [&OsStr; 9] = [
        "create".as_ref(),
        "-q".as_ref(),
        "-f".as_ref(),
        "qcow2".as_ref(),
        "-b".as_ref(),
        base_abs.as_os_str(),
        "-F".as_ref(),
        fmt.as_ref(),
        overlay.as_os_str(),
    ];
    run_tool(QEMU_IMG, &args, TOOL_TIMEOUT).map(drop)
}

/// Convert a raw firmware variables file to qcow2 (so savevm can snapshot it).
pub fn convert_to_qcow2(src: &Path, dest: &Path) -> Result<(), VmError> {
    let args: [&OsStr; 6] = [
        "convert".as_ref(),
        "-q".as_ref(),
        "-O".as_ref(),
        "qcow2".as_ref(),
        src.as_os_str(),
        dest.as_os_str(),
    ];
    run_tool(QEMU_IMG, &args, TOOL_TIMEOUT).map(drop)
}

/// Delete an internal snapshot of a stopped VM's image.
pub fn delete_snapshot(path: &Path, name: &str) -> Result<(), VmError> {
    let args: [&OsStr; 4] = [
        "snapshot".as_ref(),
        "-d".as_ref(),
        name.as_ref(),
        path.as_os_str(),
    ];
    run_tool(QEMU_IMG, &args, TOOL_TIMEOUT).map(drop)
}

/// Make a finished base image read-only, so nothing but an overlay can ever change it.
pub fn freeze(path: &Path) -> Result<(), VmError> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o444))
        .map_err(VmError::io("freezing the base image", path))
}

/// Snapshot names: letters, digits, `.`, `_`, `-`; not purely numeric (QEMU reads those as ids).
pub fn validate_snapshot_name(name: &str) -> Result<(), VmError> {
    let ok_chars = name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
    let detail = if name.is_empty() || name.len() > 64 {
        "must be 1 to 64 characters"
    } else if !ok_chars {
        "may contain only letters, digits, '.', '_' and '-'"
    } else if name.chars().all(|c| c.is_ascii_digit()) {
        "must not be a plain number (QEMU would take it for a snapshot id)"
    } else {
        return Ok(());
    };
    Err(VmError::Snapshot {
        name: name.to_string(),
        detail: detail.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn info_json_is_parsed() {
        let json = r#"{
            "snapshots": [{"icount": 0, "vm-state-size": 123456, "date-sec": 1700000000, "date-nsec": 1,
                           "vm-clock-sec": 12, "vm-clock-nsec": 0, "id": "1", "name": "ready"}],
            "virtual-size": 1073741824, "filename": "disk.qcow2", "format": "qcow2",
            "backing-filename": "/s/images/base.qcow2", "backing-filename-format": "qcow2"
        }"#;
        let i = parse_info(json).unwrap();
        assert_eq!(i.format, "qcow2");
        assert_eq!(i.virtual_size, 1 << 30);
        assert_eq!(
            i.backing_file.as_deref(),
            Some(Path::new("/s/images/base.qcow2"))
        );
        assert_eq!(
            i.snapshots,
            vec![SnapshotInfo {
                name: "ready".into(),
                vm_state_bytes: 123456,
                date_unix: 1700000000
            }]
        );
        let bare = parse_info(r#"{"virtual-size": 1, "format": "raw"}"#).unwrap();
        assert!(bare.snapshots.is_empty() && bare.backing_file.is_none());
        assert!(parse_info("not json").is_err());
    }

    #[test]
    fn snapshot_names_are_checked() {
        for ok in ["ready", "pre-install_2", "v1.0"] {
            validate_snapshot_name(ok).unwrap();
        }
        for bad in ["", "12", "a b", "x;rm", &"a".repeat(65)] {
            assert!(validate_snapshot_name(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn overlays_leave_the_frozen_base_alone() {
        let dir = tempfile::tempdir().unwrap();
        let base = dir.path().join("base.qcow2");
        create_blank(&base, 1).unwrap();
        freeze(&base).unwrap();
        let ov = dir.path().join("ov.qcow2");
        create_overlay(&base, &ov).unwrap();
        let i = info(&ov).unwrap();
        assert_eq!(i.backing_file.as_deref(), Some(base.as_path()));
        assert_eq!(i.virtual_size, 1 << 30);
        assert!(std::fs::metadata(&base).unwrap().permissions().readonly());
    }
}
