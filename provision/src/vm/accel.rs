//! KVM or TCG, decided by trying what real guests need rather than by the device node.
//!
//! On some hosts `/dev/kvm` opens and a real-mode boot sector runs under KVM, while a real
//! kernel never gets past its first page faults (nested virtualization without usable nested
//! paging: every guest page fault goes through an outer hypervisor). The probe guest
//! (`probe.asm`) therefore runs on the same machine type and CPU model as real guests, enters
//! long mode with paging and writes 128 MiB, and must finish within [`PROBE_KVM_LIMIT`]; healthy
//! KVM does it in well under a second. The verdict is remembered per QEMU version and host
//! kernel, and a boot that makes no progress under KVM overrides it (see [`remember`]).

use std::ffi::OsStr;
use std::fs::OpenOptions;
use std::path::Path;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::error::VmError;
use super::qemu::cmdline::AccelKind;
use crate::config::Accel;

/// The probe guest's boot sector (assembled from `probe.asm`).
const PROBE_SECTOR: &[u8; 512] = include_bytes!("probe.bin");
/// Exit status QEMU reports when the probe reached its end: (0x31 << 1) | 1.
const PROBE_EXIT: i32 = 99;
/// Healthy KVM finishes the probe in well under a second; TCG takes about one here.
pub const PROBE_KVM_LIMIT: Duration = Duration::from_secs(5);
/// Bumped when the probe changes, so older verdicts are not trusted.
const PROBE_VERSION: u32 = 2;
/// The machine type of every QEMU guest harness runs (see `cmdline::machine_args`).
pub const MACHINE: &str = "q35";

/// What the probe guest does, for messages (what doctor really tested).
pub const PROBE_DESCRIPTION: &str =
    "a q35 guest with -cpu host entering long mode with paging and writing 128 MiB";

/// A remembered verdict about KVM on this host.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Verdict {
    /// QEMU version, host kernel and probe version the verdict holds for.
    pub key: String,
    pub kvm_works: bool,
    /// Why, in a sentence (shown by doctor and in the TCG fallback warning).
    pub detail: String,
    /// "probe" or "boot watchdog": what established the verdict.
    #[serde(default)]
    pub source: String,
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
                (AccelKind::Tcg, Some(fallback_warning(&detail)))
            }
        }
    }
}

/// The warning printed when auto falls back to TCG (pure).
pub fn fallback_warning(detail: &str) -> String {
    format!(
        "KVM is not usable here ({detail}); falling back to TCG software emulation: everything in the guest runs 10-50x slower. Set [vm] accel = \"tcg\" to silence this."
    )
}

/// The key a verdict is remembered under: QEMU's version, the host kernel, the probe version.
pub fn verdict_key(qemu: &str) -> String {
    let version =
        super::process::run_tool(qemu, &[OsStr::new("--version")], Duration::from_secs(10))
            .map(|o| o.lines().next().unwrap_or_default().to_string())
            .unwrap_or_default();
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    format!("{version}|{}|probe-v{PROBE_VERSION}", kernel.trim())
}

/// The remembered verdict for `key`, if any.
pub fn remembered(cache_file: &Path, key: &str) -> Option<Verdict> {
    std::fs::read(cache_file)
        .ok()
        .and_then(|b| serde_json::from_slice::<Verdict>(&b).ok())
        .filter(|v| v.key == key)
}

/// Remember a verdict for this QEMU and host (the probe's, or the boot watchdog's when a
/// remembered "KVM works" proved wrong).
pub fn remember(cache_file: &Path, qemu: &str, kvm_works: bool, detail: &str, source: &str) {
    let v = Verdict {
        key: verdict_key(qemu),
        kvm_works,
        detail: detail.to_string(),
        source: source.to_string(),
    };
    if let Some(parent) = cache_file.parent() {
        let _ = std::fs::create_dir_all(parent);
    }
    let tmp = cache_file.with_extension("tmp");
    if std::fs::write(&tmp, serde_json::to_vec_pretty(&v).unwrap_or_default()).is_ok() {
        let _ = std::fs::rename(&tmp, cache_file);
    }
}

/// Whether guests really run under KVM on this host; remembered in `cache_file`.
pub fn kvm_works(qemu: &str, cache_file: &Path) -> (bool, String) {
    if let Err(why) = open_kvm() {
        return (false, why);
    }
    let key = verdict_key(qemu);
    if let Some(v) = remembered(cache_file, &key) {
        return (v.kvm_works, v.detail);
    }
    let (ok, detail) = match probe(qemu) {
        Ok(r) => r,
        Err(e) => (false, e.to_string()),
    };
    remember(cache_file, qemu, ok, &detail, "probe");
    (ok, detail)
}

fn open_kvm() -> Result<(), String> {
    if !Path::new("/dev/kvm").exists() {
        return Err("/dev/kvm does not exist".into());
    }
    OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/kvm")
        .map(drop)
        .map_err(|e| format!("cannot open /dev/kvm: {e}"))
}

/// The probe disk: the boot sector padded to 1 MiB (SeaBIOS will not boot a 512-byte disk).
fn probe_disk() -> Vec<u8> {
    let mut b = PROBE_SECTOR.to_vec();
    b.resize(1 << 20, 0);
    b
}

/// QEMU arguments of the probe guest under KVM (pure).
pub fn probe_args(disk: &Path) -> Vec<String> {
    [
        "-accel",
        "kvm",
        "-cpu",
        "host",
        "-machine",
        MACHINE,
        "-m",
        "256",
        "-nodefaults",
        "-no-user-config",
        "-display",
        "none",
        "-device",
        "isa-debug-exit,iobase=0xf4,iosize=0x04",
    ]
    .iter()
    .map(|s| s.to_string())
    .chain([
        "-drive".to_string(),
        format!("file={},format=raw,if=virtio", disk.display()),
    ])
    .collect()
}

/// Judge one probe run (pure): `exit` is QEMU's exit code (None: killed at the limit).
pub fn judge(exit: Option<i32>, elapsed: Duration, stderr: &str) -> (bool, String) {
    let secs = elapsed.as_secs_f64();
    match exit {
        Some(PROBE_EXIT) => (
            true,
            format!("{PROBE_DESCRIPTION} finished under KVM in {secs:.1} s"),
        ),
        None => (
            false,
            format!(
                "{PROBE_DESCRIPTION} did not finish under KVM within {} s (healthy KVM takes well under a second): guests would crawl",
                PROBE_KVM_LIMIT.as_secs()
            ),
        ),
        Some(code) => (
            false,
            format!(
                "{PROBE_DESCRIPTION} failed under KVM (exit {code}): {}",
                stderr.lines().next().unwrap_or("no message")
            ),
        ),
    }
}

fn probe(qemu: &str) -> Result<(bool, String), VmError> {
    let dir =
        tempfile::tempdir().map_err(VmError::io("creating a temp dir", std::env::temp_dir()))?;
    let img = dir.path().join("probe.img");
    std::fs::write(&img, probe_disk()).map_err(VmError::io("writing the probe image", &img))?;
    let args = probe_args(&img);
    let args: Vec<&OsStr> = args.iter().map(OsStr::new).collect();
    let t = Instant::now();
    let r = super::process::run_tool(qemu, &args, PROBE_KVM_LIMIT);
    let elapsed = t.elapsed();
    match r {
        Ok(_) => Ok(judge(Some(0), elapsed, "")),
        Err(VmError::Tool { status, stderr, .. }) => {
            let code = status
                .rsplit_once("status: ")
                .and_then(|(_, c)| c.trim_end_matches(')').trim().parse().ok());
            let timed_out = status.contains("timed out") || code.is_none();
            Ok(judge(if timed_out { None } else { code }, elapsed, &stderr))
        }
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn boot_sector_is_bootable_and_exits_through_the_debug_port() {
        assert_eq!(&PROBE_SECTOR[510..], &[0x55, 0xAA]);
        // mov al, 0x31; out 0xf4, al
        assert!(
            PROBE_SECTOR
                .windows(4)
                .any(|w| w == [0xB0, 0x31, 0xE6, 0xF4])
        );
        assert_eq!(probe_disk().len(), 1 << 20);
    }

    /// probe.bin is what probe.asm assembles to (nasm is installed by .ci/install-deps).
    #[test]
    fn probe_bin_matches_its_source() {
        let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/vm/probe.asm");
        let out = tempfile::tempdir().unwrap();
        let bin = out.path().join("probe.bin");
        let r = std::process::Command::new("nasm")
            .args(["-f", "bin"])
            .arg(&src)
            .arg("-o")
            .arg(&bin)
            .status();
        match r {
            Ok(s) => {
                assert!(s.success(), "nasm failed on {}", src.display());
                assert_eq!(std::fs::read(&bin).unwrap(), PROBE_SECTOR.to_vec());
            }
            Err(e) if std::env::var_os("CI").is_none() => {
                eprintln!("skipped: nasm not found ({e}); .ci/install-deps installs it")
            }
            Err(e) => panic!("nasm is required in CI (.ci/install-deps): {e}"),
        }
    }

    #[test]
    fn probe_runs_the_machine_and_cpu_of_real_guests() {
        let a = probe_args(Path::new("/tmp/p.img"));
        let has = |pair: [&str; 2]| a.windows(2).any(|w| w[0] == pair[0] && w[1] == pair[1]);
        assert!(has(["-machine", MACHINE]) && has(["-cpu", "host"]) && has(["-accel", "kvm"]));
    }

    #[test]
    fn judging_a_probe_run() {
        let (ok, d) = judge(Some(PROBE_EXIT), Duration::from_millis(300), "");
        assert!(ok && d.contains("0.3 s"), "{d}");
        let (ok, d) = judge(None, PROBE_KVM_LIMIT, "");
        assert!(
            !ok && d.contains("did not finish") && d.contains("long mode"),
            "{d}"
        );
        let (ok, d) = judge(
            Some(1),
            Duration::from_millis(20),
            "failed to set MSR 0x10a\n",
        );
        assert!(!ok && d.contains("MSR 0x10a"), "{d}");
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

    #[test]
    fn verdicts_are_remembered_per_key() {
        let d = tempfile::tempdir().unwrap();
        let f = d.path().join("accel.json");
        assert!(remembered(&f, "k").is_none());
        let v = Verdict {
            key: "k".into(),
            kvm_works: false,
            detail: "why".into(),
            source: "boot watchdog".into(),
        };
        std::fs::write(&f, serde_json::to_vec(&v).unwrap()).unwrap();
        assert_eq!(remembered(&f, "k"), Some(v));
        assert!(remembered(&f, "other").is_none());
    }
}
