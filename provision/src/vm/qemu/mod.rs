//! The default backend: harness runs QEMU itself (no root, no libvirt daemon).
//!
//! Disk model: a read-only base image (the golden Windows install, a configured Linux image, or
//! a blank data disk for the kernel+initrd profile) under `<state>/images/`, and one qcow2
//! overlay per VM that holds every write and every RAM snapshot. `reset` deletes the overlay.

mod boot;
pub mod cmdline;
pub mod identity;
mod snapshot;
mod stop;
mod watchdog;
mod windows;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use self::cmdline::{AccelKind, DiskBus, Firmware, KernelBoot, NicModel, QemuSpec};
use super::console;
use super::error::VmError;
use super::events::{Phase, VmEvent};
use super::image::{self, SnapshotInfo};
use super::keys::{self, SshKey};
use super::process::{self, Process};
use super::qmp::Qmp;
use super::readiness::{self, WaitError};
use super::state::{RunState, VmPaths, is_our_qemu};
use super::{UpOptions, UpOutcome, VmDirs, VmState, VmStatus};
use crate::config::{Accel, Nic, VmConfig};
use crate::session::wrap::shell;
use crate::session::{Endpoint, GuestOs, Session, SessionOptions};

const DEFAULT_OVMF_CODE: &str = "/usr/share/OVMF/OVMF_CODE_4M.fd";
const DEFAULT_OVMF_VARS: &str = "/usr/share/OVMF/OVMF_VARS_4M.fd";
const POLL: Duration = Duration::from_millis(250);
/// How long `down` waits for a Linux guest after `poweroff` over SSH.
const SSH_POWEROFF_LIMIT: Duration = Duration::from_secs(20);

/// The QEMU backend of one VM.
#[derive(Debug)]
pub struct QemuVm {
    cfg: VmConfig,
    dirs: VmDirs,
    paths: VmPaths,
    qemu: Option<Process>,
    swtpm: Option<Process>,
    /// The accelerator of the QEMU this handle started (for error messages).
    accel_used: Option<AccelKind>,
}

/// Reject combinations that cannot work, with a sentence the user understands (pure).
pub fn validate(cfg: &VmConfig) -> Result<(), VmError> {
    let err = |m: &str| Err(VmError::Config(m.to_string()));
    if cfg.name.is_empty()
        || !cfg
            .name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
    {
        return err("name must be non-empty and use only letters, digits, '-', '_' and '.'");
    }
    if cfg.memory_mib < 128 {
        return err("memory_mib must be at least 128");
    }
    if cfg.cpus == 0 {
        return err("cpus must be at least 1");
    }
    match cfg.os {
        GuestOs::Linux => {
            if cfg.kernel.is_none() && cfg.image.is_none() {
                return err("os = \"linux\" needs either `kernel` (+ `initrd`) or `image`");
            }
            if cfg.kernel.is_none() && cfg.initrd.is_some() {
                return err("`initrd` needs `kernel`");
            }
            if cfg.tpm {
                return err("tpm = true is only supported for os = \"windows\"");
            }
        }
        GuestOs::Windows => {
            if cfg.kernel.is_some() || cfg.initrd.is_some() {
                return err(
                    "`kernel`/`initrd` are for os = \"linux\"; Windows installs from `iso`",
                );
            }
        }
    }
    Ok(())
}

/// Name of the frozen Windows base image for an ISO digest and the settings that shape the
/// install (pure).
pub fn windows_base_name(iso_sha256: &str, cfg: &VmConfig) -> String {
    use sha2::{Digest, Sha256};
    let mut settings = format!(
        "{}|{}|{}|{}|{}|{}|{}",
        cfg.windows_edition,
        cfg.user,
        cfg.disk_gib,
        cfg.product_key,
        cfg.tpm,
        cfg.go_zip
            .as_ref()
            .map(|p| p.display().to_string())
            .unwrap_or_default(),
        crate::media::unattend::TEMPLATE_VERSION
    );
    // Only when set, so that images made without it keep their names.
    if let Some(d) = &cfg.debugging_tools {
        settings.push_str(&format!("|debuggers:{}", d.display()));
    }
    let h = base16ct::lower::encode_string(&Sha256::digest(settings.as_bytes()));
    format!(
        "windows-{}-{}",
        &iso_sha256[..16.min(iso_sha256.len())],
        &h[..12]
    )
}

/// NIC model for the configured choice and OS (pure).
pub fn nic_model(nic: Nic, os: GuestOs) -> NicModel {
    match (nic, os) {
        (Nic::Virtio, _) => NicModel::VirtioNet,
        (Nic::E1000, _) => NicModel::E1000,
        (Nic::Auto, GuestOs::Windows) => NicModel::E1000,
        (Nic::Auto, GuestOs::Linux) => NicModel::VirtioNet,
    }
}

/// Kernel command line: the configured one plus the authorized key for harness's test guest
/// (`harness.key=`; other kernels ignore unknown dotted parameters), and `panic=-1` (reboot at
/// once after a kernel panic, so the run can go on) unless the configured line sets `panic=`.
pub fn kernel_append(configured: &str, public_key: &str) -> String {
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::STANDARD.encode(public_key.trim());
    let reboot = if configured
        .split_whitespace()
        .any(|w| w.starts_with("panic="))
    {
        ""
    } else {
        " panic=-1"
    };
    format!("{}{reboot} harness.key={b64}", configured.trim())
        .trim()
        .to_string()
}

/// Guest command that sets the clock to `unix_seconds` (after a snapshot restore) (pure).
pub fn clock_script(os: GuestOs, unix_seconds: u64) -> String {
    match os {
        GuestOs::Linux => format!("date -u -s @{unix_seconds} >/dev/null"),
        GuestOs::Windows => format!(
            "Set-Date -Date ([DateTimeOffset]::FromUnixTimeSeconds({unix_seconds}).LocalDateTime) | Out-Null\nw32tm /resync /nowait 2>$null | Out-Null\nexit 0"
        ),
    }
}

fn free_port() -> Result<u16, VmError> {
    let l = std::net::TcpListener::bind("127.0.0.1:0")
        .map_err(VmError::io("finding a free port", "127.0.0.1:0"))?;
    Ok(l.local_addr()
        .map_err(VmError::io("finding a free port", "127.0.0.1:0"))?
        .port())
}

fn now_unix() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

impl QemuVm {
    pub fn new(cfg: &VmConfig, dirs: &VmDirs) -> Result<QemuVm, VmError> {
        validate(cfg)?;
        Ok(QemuVm {
            cfg: cfg.clone(),
            dirs: dirs.clone(),
            paths: VmPaths::new(&dirs.state, &cfg.name),
            qemu: None,
            swtpm: None,
            accel_used: None,
        })
    }

    pub fn paths(&self) -> &VmPaths {
        &self.paths
    }

    /// The recorded run state if that QEMU is really still running.
    pub fn running(&mut self) -> Option<RunState> {
        let rs = RunState::read(&self.paths.run_state)?;
        if let Some(q) = self.qemu.as_mut()
            && q.pid() == rs.pid
            && q.try_wait().is_some()
        {
            return None;
        }
        is_our_qemu(rs.pid, &self.paths.qmp).then_some(rs)
    }

    fn endpoint(&self, port: u16, key: &SshKey) -> Endpoint {
        Endpoint {
            host: "127.0.0.1".into(),
            port,
            user: self.cfg.user.clone(),
            identity: Some(key.private.clone()),
            os: self.cfg.os,
        }
    }

    /// The host port forwarded to the guest's SSH: `[vm] port`, else a free one.
    fn forward_port(&self) -> Result<u16, VmError> {
        if self.cfg.port != 0 {
            Ok(self.cfg.port)
        } else {
            free_port()
        }
    }

    /// Session options for this VM: its own known_hosts (ports are ephemeral, the host key
    /// belongs to this VM's disk), accepting the key a freshly created disk presents.
    pub fn session_options(&self) -> SessionOptions {
        let mut o = SessionOptions::new(self.paths.dir.join("known_hosts"));
        o.accept_new_host_key = true;
        o.connect_timeout = Duration::from_secs(10);
        o
    }

    /// The QEMU spec for a run of this VM (disk and ports already decided).
    fn spec(
        &self,
        accel: AccelKind,
        ssh_port: u16,
        key: &SshKey,
        disk: &Path,
        cdroms: Vec<PathBuf>,
        loadvm: Option<String>,
    ) -> QemuSpec {
        let windows = self.cfg.os == GuestOs::Windows;
        QemuSpec {
            name: self.cfg.name.clone(),
            accel,
            memory_mib: self.cfg.memory_mib,
            cpus: self.cfg.cpus,
            firmware: windows.then(|| Firmware {
                code: self.firmware_files().0,
                vars: self.paths.vars.clone(),
            }),
            tpm_socket: self.cfg.tpm.then(|| self.paths.swtpm_sock.clone()),
            pvpanic: true,
            disk: disk.to_path_buf(),
            disk_bus: if windows {
                DiskBus::Sata
            } else {
                DiskBus::Virtio
            },
            cdroms,
            nic: nic_model(self.cfg.nic, self.cfg.os),
            ssh_port,
            qmp_socket: self.paths.qmp.clone(),
            events_socket: self.paths.qmp_events.clone(),
            serial_log: self.paths.serial_log.clone(),
            kernel: self.cfg.kernel.as_ref().map(|k| KernelBoot {
                kernel: k.clone(),
                initrd: self.cfg.initrd.clone(),
                append: kernel_append(&self.cfg.append, &key.public),
            }),
            loadvm,
            windows,
            console: None,
        }
    }

    /// Where the KVM verdict for this host is remembered.
    pub fn accel_cache(&self) -> PathBuf {
        self.dirs.state.join("accel-probe.json")
    }

    fn accel(&self, on_event: &mut dyn FnMut(VmEvent)) -> AccelKind {
        let cache = self.accel_cache();
        let qemu = self.cfg.qemu.clone();
        let (kind, warning) =
            super::accel::decide(self.cfg.accel, || super::accel::kvm_works(&qemu, &cache));
        if let Some(w) = warning {
            tracing::debug!("{w}");
            on_event(VmEvent::Warning { message: w });
        }
        kind
    }

    /// Endpoint of the running VM, if it runs.
    pub fn running_endpoint(&mut self) -> Result<Option<Endpoint>, VmError> {
        let Some(rs) = self.running() else {
            return Ok(None);
        };
        let key = keys::resolve(&self.cfg, &self.dirs.state)?;
        Ok(Some(self.endpoint(rs.ssh_port, &key)))
    }

    /// Leave QEMU (and swtpm) running when this handle is dropped.
    pub fn detach(&mut self) {
        if let Some(p) = self.qemu.take() {
            p.detach();
        }
        if let Some(p) = self.swtpm.take() {
            p.detach();
        }
    }

    pub fn status(&mut self) -> Result<VmStatus, VmError> {
        let rs = self.running();
        let (state, qmp_status) = match &rs {
            Some(_) => {
                let s = Qmp::connect(&self.paths.qmp, Duration::from_secs(3))
                    .and_then(|mut q| q.status())
                    .ok();
                (
                    if s.as_deref() == Some("paused") {
                        VmState::Paused
                    } else {
                        VmState::Running
                    },
                    s,
                )
            }
            None if self.paths.overlay.is_file() => (VmState::Stopped, None),
            None => (VmState::Absent, None),
        };
        let info = self
            .paths
            .overlay
            .is_file()
            .then(|| image::info(&self.paths.overlay))
            .transpose()?;
        let key = keys::existing(&self.cfg, &self.dirs.state);
        Ok(VmStatus {
            name: self.cfg.name.clone(),
            backend: "qemu",
            state,
            qemu_status: qmp_status,
            endpoint: match (&rs, &key) {
                (Some(r), Some(k)) => Some(self.endpoint(r.ssh_port, k).into()),
                _ => None,
            },
            base_image: info.as_ref().and_then(|i| i.backing_file.clone()),
            overlay: self
                .paths
                .overlay
                .is_file()
                .then(|| self.paths.overlay.clone()),
            snapshots: info.map(|i| i.snapshots).unwrap_or_default(),
            accel: rs.as_ref().map(|r| r.accel.clone()),
            pid: rs.as_ref().map(|r| r.pid),
            serial_log: self.paths.serial_log.clone(),
            console: rs.as_ref().and_then(|r| r.console.clone()),
        })
    }

    /// The console of the running VM; `None` when it runs with `console = "none"`.
    pub fn console(&mut self) -> Result<Option<console::Console>, VmError> {
        match self.running() {
            Some(rs) => Ok(rs.console),
            None => Err(VmError::NotRunning {
                name: self.cfg.name.clone(),
            }),
        }
    }

    /// Save the running VM's screen to `path` (PNG; PPM on QEMUs older than 7.1).
    pub fn screendump(&mut self, path: &Path) -> Result<PathBuf, VmError> {
        let mut q = self.qmp()?;
        q.set_reply_timeout(Duration::from_secs(30))?;
        q.screendump(path)
    }
}

impl Drop for QemuVm {
    fn drop(&mut self) {
        // Not detached: this process owned the VM, so it goes with us (no orphans).
        if self.qemu.is_some() {
            self.kill_now();
        }
    }
}

/// Whether a VM directory holds anything besides the lock and its holder records (which merely
/// asking about the VM creates).
fn has_state(dir: &Path) -> bool {
    std::fs::read_dir(dir).is_ok_and(|entries| {
        entries
            .flatten()
            .any(|e| !matches!(e.file_name().to_str(), Some("lock" | "users")))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn linux_cfg() -> VmConfig {
        VmConfig {
            os: GuestOs::Linux,
            name: "t".into(),
            kernel: Some("/k".into()),
            ..Default::default()
        }
    }

    #[test]
    fn invalid_combinations_are_rejected_with_a_reason() {
        validate(&linux_cfg()).unwrap();
        validate(&VmConfig::default()).unwrap();
        let cases = [
            (
                VmConfig {
                    os: GuestOs::Linux,
                    ..Default::default()
                },
                "needs either `kernel`",
            ),
            (
                VmConfig {
                    initrd: Some("/i".into()),
                    kernel: None,
                    image: Some("/d".into()),
                    ..linux_cfg()
                },
                "`initrd` needs `kernel`",
            ),
            (
                VmConfig {
                    tpm: true,
                    ..linux_cfg()
                },
                "tpm = true",
            ),
            (
                VmConfig {
                    kernel: Some("/k".into()),
                    ..Default::default()
                },
                "Windows installs from `iso`",
            ),
            (
                VmConfig {
                    name: "a/b".into(),
                    ..Default::default()
                },
                "name must",
            ),
            (
                VmConfig {
                    cpus: 0,
                    ..Default::default()
                },
                "cpus",
            ),
        ];
        for (cfg, want) in cases {
            let e = validate(&cfg).unwrap_err().to_string();
            assert!(e.contains(want), "{e} should mention {want}");
        }
    }

    #[test]
    fn nic_follows_the_os_unless_configured() {
        assert_eq!(nic_model(Nic::Auto, GuestOs::Windows), NicModel::E1000);
        assert_eq!(nic_model(Nic::Auto, GuestOs::Linux), NicModel::VirtioNet);
        assert_eq!(
            nic_model(Nic::Virtio, GuestOs::Windows),
            NicModel::VirtioNet
        );
        assert_eq!(nic_model(Nic::E1000, GuestOs::Linux), NicModel::E1000);
    }

    #[test]
    fn kernel_append_carries_the_key() {
        let a = kernel_append("console=ttyS0 quiet ", "ssh-ed25519 AAAA x\n");
        assert!(
            a.starts_with("console=ttyS0 quiet panic=-1 harness.key="),
            "{a}"
        );
        assert_eq!(a.split(' ').count(), 4, "{a}");
        let own = kernel_append("console=ttyS0 panic=30", "k");
        assert!(
            own.starts_with("console=ttyS0 panic=30 harness.key="),
            "{own}"
        );
    }

    #[test]
    fn windows_base_name_changes_with_iso_and_settings() {
        let cfg = VmConfig::default();
        let a = windows_base_name("aaaaaaaaaaaaaaaaaaaaaaaa", &cfg);
        assert!(a.starts_with("windows-aaaaaaaaaaaaaaaa-"), "{a}");
        assert_ne!(a, windows_base_name("bbbbbbbbbbbbbbbbbbbb", &cfg));
        assert_ne!(
            a,
            windows_base_name(
                "aaaaaaaaaaaaaaaaaaaaaaaa",
                &VmConfig {
                    user: "other".into(),
                    ..Default::default()
                }
            )
        );
        assert_eq!(
            a,
            windows_base_name("aaaaaaaaaaaaaaaaaaaaaaaa", &VmConfig::default())
        );
        let with_debuggers = VmConfig {
            debugging_tools: Some("/dl/winsdksetup.exe".into()),
            ..Default::default()
        };
        assert_ne!(
            a,
            windows_base_name("aaaaaaaaaaaaaaaaaaaaaaaa", &with_debuggers),
            "an image with the Debugging Tools is another image"
        );
    }
}
