//! Where a VM's files live (`<state>/vms/<name>/`) and what a running VM records about itself.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::error::VmError;

/// Unix socket paths are limited to 108 bytes; longer ones move to the temp dir.
const MAX_SOCKET_PATH: usize = 100;

/// Files of one VM. Everything but the base image lives in `dir`, so `destroy` is one removal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VmPaths {
    pub dir: PathBuf,
    pub lock: PathBuf,
    /// [`RunState`] of the running QEMU (absent when stopped).
    pub run_state: PathBuf,
    pub qmp: PathBuf,
    /// The second QMP monitor, for the crash watch ([`crate::vm::panic_watch`]).
    pub qmp_events: PathBuf,
    pub serial_log: PathBuf,
    /// QEMU's own stderr.
    pub qemu_log: PathBuf,
    /// The qcow2 overlay the VM writes to; `reset` deletes it.
    pub overlay: PathBuf,
    /// Per-VM UEFI variables (qcow2 so RAM snapshots work).
    pub vars: PathBuf,
    pub tpm_dir: PathBuf,
    pub swtpm_sock: PathBuf,
    pub swtpm_log: PathBuf,
    /// VNC console socket (`[vm] console = "unix"`).
    pub vnc: PathBuf,
    /// Password of a TCP VNC console (mode 0600).
    pub vnc_password: PathBuf,
    /// Screendumps taken on timeouts.
    pub screendumps: PathBuf,
    /// Unattended install media (Windows).
    pub media_dir: PathBuf,
    /// Directory of shared base images (`<state>/images`).
    pub images: PathBuf,
}

impl VmPaths {
    /// Paths for VM `name` under the harness state directory.
    pub fn new(state_dir: &Path, name: &str) -> VmPaths {
        let dir = state_dir.join("vms").join(name);
        let socket = |file: &str| {
            let p = dir.join(file);
            if p.as_os_str().len() <= MAX_SOCKET_PATH {
                return p;
            }
            let h = Sha256::digest(p.as_os_str().as_encoded_bytes());
            std::env::temp_dir()
                .join(format!(
                    "harness-{}",
                    &base16ct::lower::encode_string(&h)[..12]
                ))
                .join(file)
        };
        VmPaths {
            lock: dir.join("lock"),
            run_state: dir.join("run.json"),
            qmp: socket("qmp.sock"),
            qmp_events: socket("qmp-events.sock"),
            serial_log: dir.join("serial.log"),
            qemu_log: dir.join("qemu.log"),
            overlay: dir.join("disk.qcow2"),
            vars: dir.join("vars.qcow2"),
            tpm_dir: dir.join("tpm"),
            swtpm_sock: socket("swtpm.sock"),
            vnc: socket("vnc.sock"),
            vnc_password: dir.join("vnc-password"),
            swtpm_log: dir.join("swtpm.log"),
            screendumps: dir.join("screendumps"),
            media_dir: dir.join("media"),
            images: state_dir.join("images"),
            dir,
        }
    }

    /// Create the VM directory and, if sockets moved to the temp dir, theirs.
    pub fn create(&self) -> Result<(), VmError> {
        for d in [&self.dir, &self.screendumps] {
            std::fs::create_dir_all(d)
                .map_err(VmError::io("creating the VM state directory", d))?;
        }
        for s in [&self.qmp, &self.swtpm_sock, &self.vnc] {
            if let Some(parent) = s.parent() {
                std::fs::create_dir_all(parent)
                    .map_err(VmError::io("creating the socket directory", parent))?;
            }
        }
        Ok(())
    }
}

/// What a running QEMU VM records in `run.json` so later harness processes can find it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunState {
    pub pid: u32,
    pub swtpm_pid: Option<u32>,
    /// Loopback port forwarded to the guest's port 22.
    pub ssh_port: u16,
    /// `kvm` or `tcg`.
    pub accel: String,
    pub base_image: Option<PathBuf>,
    /// Snapshot the VM was started from, if any.
    pub restored_snapshot: Option<String>,
    /// Unix seconds when QEMU was started.
    pub started: u64,
    /// The VNC console of this run (absent with `console = "none"` and in older records).
    #[serde(default)]
    pub console: Option<super::console::Console>,
}

impl RunState {
    /// Read `run.json`; `None` when absent or unreadable (treated as stopped).
    pub fn read(path: &Path) -> Option<RunState> {
        serde_json::from_slice(&std::fs::read(path).ok()?).ok()
    }

    /// Write `run.json` atomically.
    pub fn write(&self, path: &Path) -> Result<(), VmError> {
        let tmp = path.with_extension("json.tmp");
        let text = serde_json::to_vec_pretty(self).expect("RunState serialises");
        std::fs::write(&tmp, text).map_err(VmError::io("writing the VM run state", &tmp))?;
        std::fs::rename(&tmp, path).map_err(VmError::io("writing the VM run state", path))
    }
}

/// Whether `pid` is alive and is the QEMU that owns `qmp_socket` (guards against reused pids).
pub fn is_our_qemu(pid: u32, qmp_socket: &Path) -> bool {
    let Ok(cmdline) = std::fs::read(format!("/proc/{pid}/cmdline")) else {
        return false;
    };
    cmdline_names_socket(&cmdline, qmp_socket)
}

/// Whether a NUL-separated `/proc/<pid>/cmdline` mentions the QMP socket path.
pub fn cmdline_names_socket(cmdline: &[u8], qmp_socket: &Path) -> bool {
    let needle = qmp_socket.as_os_str().as_encoded_bytes();
    !needle.is_empty()
        && cmdline
            .split(|&b| b == 0)
            .any(|arg| arg.windows(needle.len()).any(|w| w == needle))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_live_under_vms_name_and_long_sockets_move_to_tmp() {
        let p = VmPaths::new(Path::new("/s"), "efw");
        assert_eq!(p.dir, Path::new("/s/vms/efw"));
        assert_eq!(p.qmp, Path::new("/s/vms/efw/qmp.sock"));
        assert_eq!(p.vnc, Path::new("/s/vms/efw/vnc.sock"));
        assert_eq!(p.images, Path::new("/s/images"));
        let long = "/x".repeat(60);
        let p = VmPaths::new(Path::new(&long), "efw");
        assert!(
            p.qmp.starts_with(std::env::temp_dir()),
            "{}",
            p.qmp.display()
        );
        assert!(p.qmp.as_os_str().len() < 108);
        assert_ne!(p.qmp, VmPaths::new(Path::new(&(long + "y")), "efw").qmp);
    }

    #[test]
    fn cmdline_match_needs_the_socket_path() {
        let cmd = b"qemu-system-x86_64\0-qmp\0unix:/s/vms/a/qmp.sock,server=on,wait=off\0";
        assert!(cmdline_names_socket(cmd, Path::new("/s/vms/a/qmp.sock")));
        assert!(!cmdline_names_socket(cmd, Path::new("/s/vms/b/qmp.sock")));
        assert!(!cmdline_names_socket(
            b"bash\0",
            Path::new("/s/vms/a/qmp.sock")
        ));
    }

    #[test]
    fn run_state_round_trips() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("run.json");
        assert_eq!(RunState::read(&p), None);
        let s = RunState {
            pid: 7,
            swtpm_pid: None,
            ssh_port: 2222,
            accel: "tcg".into(),
            base_image: None,
            restored_snapshot: Some("ready".into()),
            started: 1,
            console: Some(crate::vm::console::Console::VncUnix {
                socket: "/s/vms/t/vnc.sock".into(),
            }),
        };
        s.write(&p).unwrap();
        assert_eq!(RunState::read(&p), Some(s));
    }
}
