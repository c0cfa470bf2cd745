//! KVM or TCG: decided by running a tiny guest under KVM (the device node can exist while
//! guests still fail), cached per QEMU version and host kernel.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::error::VmError;
use super::qemu::cmdline::AccelKind;
use crate::config::Accel;

/// A 512-byte boot sector: `mov al,0x31; out 0xf4,al; hlt` → QEMU exits with (0x31<<1)|1 = 99.
fn probe_boot_sector() -> Vec<u8> {
    let mut b = vec![0xB0, 0x31, 0xE6, 0xF4, 0xF4, 0xEB, 0xFD];
    b.resize(510, 0);
    b.extend([0x55, 0xAA]);
    b
}

const PROBE_EXIT: i32 = 99;

/// The cached verdict.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Verdict {
    key: String,
    kvm_works: bool,
    detail: String,
}

/// Which accelerator to use given the configured choice and the probe's verdict (pure).
pub fn decide(
    configured: Accel,
    kvm_works: impl FnOnce() -> (bool, String),
) -> (AccelKind, Option<String>) {
    match configured {
        Accel::Tcg => (AccelKind::Tcg, None),
        Accel::Kvm => (AccelKind::Kvm, None),
        Accel::Auto => {
            let (ok, detail) = kvm_works();
            if ok {
                (AccelKind::Kvm, None)
            } else {
                (
                    AccelKind::Tcg,
                    Some(format!(
                        "KVM is not usable here ({detail}); falling back to TCG software emulation: everything in the guest runs 10-50x slower. Set [vm] accel = \"tcg\" to silence this."
                    )),
                )
            }
        }
    }
}

/// Whether a guest really runs under KVM on this host; cached in `cache_file`.
pub fn kvm_works(qemu: &str, cache_file: &Path) -> (bool, String) {
    if !Path::new("/dev/kvm").exists() {
        return (false, "/dev/kvm does not exist".into());
    }
    let version = super::process::scrub(&mut Command::new(qemu))
        .arg("--version")
        .output()
        .map(|o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .next()
                .unwrap_or_default()
                .to_string()
        })
        .unwrap_or_default();
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let key = format!("{version}|{}", kernel.trim());
    if let Some(v) = std::fs::read(cache_file)
        .ok()
        .and_then(|b| serde_json::from_slice::<Verdict>(&b).ok())
        && v.key == key
    {
        return (v.kvm_works, v.detail);
    }
    let (kvm_works, detail) = match probe(qemu) {
        Ok(r) => r,
        Err(e) => (false, e.to_string()),
    };
    let v = Verdict {
        key,
        kvm_works,
        detail: detail.clone(),
    };
    if let Some(parent) = cache_file.parent() {
        let _ = std::fs::create_dir_all(parent);
    }
    let _ = std::fs::write(
        cache_file,
        serde_json::to_vec_pretty(&v).unwrap_or_default(),
    );
    (kvm_works, detail)
}

fn probe(qemu: &str) -> Result<(bool, String), VmError> {
    let dir =
        tempfile::tempdir().map_err(VmError::io("creating a temp dir", std::env::temp_dir()))?;
    let img = dir.path().join("probe.img");
    std::fs::write(&img, probe_boot_sector())
        .map_err(VmError::io("writing the probe image", &img))?;
    let drive = format!("file={},format=raw,if=ide", img.display());
    let argv = [
        "-accel",
        "kvm",
        "-cpu",
        "host",
        "-machine",
        "pc",
        "-nodefaults",
        "-no-user-config",
        "-display",
        "none",
        "-device",
        "isa-debug-exit,iobase=0xf4,iosize=0x04",
        "-drive",
        &drive,
    ];
    let args: Vec<&std::ffi::OsStr> = argv.iter().map(|s| s.as_ref()).collect();
    match super::process::run_tool(qemu, &args, Duration::from_secs(20)) {
        Err(VmError::Tool { status, stderr, .. })
            if status.contains(&format!("status: {PROBE_EXIT}")) =>
        {
            let _ = stderr;
            Ok((true, "probe guest ran under KVM".into()))
        }
        Err(VmError::Tool { status, stderr, .. }) => Ok((
            false,
            format!(
                "probe guest failed under KVM ({status}): {}",
                stderr.lines().next().unwrap_or("")
            ),
        )),
        Err(e) => Err(e),
        Ok(_) => Ok((
            false,
            "probe guest exited 0 instead of through the debug-exit port".into(),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn boot_sector_is_bootable() {
        let b = probe_boot_sector();
        assert_eq!(b.len(), 512);
        assert_eq!(&b[510..], &[0x55, 0xAA]);
    }

    #[test]
    fn decision_table() {
        let never = || -> (bool, String) { panic!("must not probe") };
        assert_eq!(decide(Accel::Tcg, never), (AccelKind::Tcg, None));
        assert_eq!(decide(Accel::Kvm, never), (AccelKind::Kvm, None));
        assert_eq!(
            decide(Accel::Auto, || (true, String::new())),
            (AccelKind::Kvm, None)
        );
        let (k, warn) = decide(Accel::Auto, || (false, "MSR 0x10a".into()));
        assert_eq!(k, AccelKind::Tcg);
        let warn = warn.unwrap();
        assert!(warn.contains("MSR 0x10a") && warn.contains("TCG"), "{warn}");
    }
}
