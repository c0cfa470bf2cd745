//! The `[vm]`, `[install]` and `[extensions.NAME]` sections.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::session::{Endpoint, GuestOs};

/// Which kind of machine harness drives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum BackendKind {
    /// A VM that harness creates and runs with QEMU (no root, no libvirt).
    #[default]
    Qemu,
    /// An existing libvirt domain.
    Libvirt,
    /// An existing host reached over SSH; no lifecycle.
    Ssh,
}

/// Accelerator choice for QEMU.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Accel {
    /// KVM when a probe guest really runs under it, else TCG with a warning.
    #[default]
    Auto,
    Kvm,
    Tcg,
}

/// Emulated network card of a QEMU VM.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Nic {
    /// e1000 for Windows (Setup has its driver), virtio-net for Linux.
    #[default]
    Auto,
    Virtio,
    E1000,
}

/// How Windows Setup gets its answer file without waiting for a key press.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum InstallMedia {
    /// Remaster the ISO with xorriso: answer media added, UEFI boots `efisys_noprompt.bin`.
    #[default]
    Remaster,
    /// Boot the ISO as it is, answer media on a second small ISO, and press Enter through QMP.
    Keypress,
}

/// How the QEMU VM's screen is reachable from this host (never from other hosts).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum ConsoleKind {
    /// VNC on a Unix socket in the VM's state directory (only this user can reach it).
    #[default]
    Unix,
    /// VNC on a 127.0.0.1 port, with a random password kept in the VM's state directory.
    Tcp,
    /// No display at all (`-display none` only).
    None,
}

/// The `[vm]` section.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct VmConfig {
    /// `qemu` | `libvirt` | `ssh`.
    pub backend: BackendKind,
    /// `windows` | `linux`.
    pub os: GuestOs,
    /// Name of the VM (state lives under `<state>/vms/<name>`).
    pub name: String,
    /// SSH user in the guest.
    pub user: String,
    /// SSH private key; empty means `~/.ssh/id_ed25519`, else a harness key in state.
    pub identity: Option<PathBuf>,
    /// `ssh` backend: host to reach.
    pub host: String,
    /// `ssh` backend: port (qemu picks a free loopback port when 0).
    pub port: u16,
    /// Memory in MiB.
    pub memory_mib: u32,
    /// Virtual CPUs.
    pub cpus: u32,
    /// Disk size in GiB for a new Windows install.
    pub disk_gib: u32,
    /// `auto` | `kvm` | `tcg`.
    pub accel: Accel,
    /// Windows 11 ISO (en-US): a path, or `url:https://…` (downloaded once, verified against
    /// `iso_sha256`; harness resolves it to a path before provision sees it).
    pub iso: Option<PathBuf>,
    /// SHA-256 of the ISO; required when `iso` is a URL.
    pub iso_sha256: String,
    /// virtio-win ISO; downloaded (pinned, verified) when empty.
    pub virtio_win_iso: Option<PathBuf>,
    /// Add a swtpm TPM 2.0.
    pub tpm: bool,
    /// Linux profile: kernel image.
    pub kernel: Option<PathBuf>,
    /// Linux profile: initramfs.
    pub initrd: Option<PathBuf>,
    /// Linux profile: kernel command line.
    pub append: String,
    /// A ready disk image to boot instead of installing.
    pub image: Option<PathBuf>,
    /// Snapshot that `up` restores when present.
    pub ready_snapshot: String,
    /// Seconds allowed for the unattended Windows install.
    pub install_timeout: u64,
    /// Seconds allowed from QEMU start to the guest answering SSH.
    pub boot_timeout: u64,
    /// Under `accel = "auto"`: seconds a guest may show no progress (serial output, screen
    /// change) under KVM before harness stops it and falls back to TCG; 0 turns the watchdog off.
    pub boot_watchdog: u64,
    /// During `harness run`: watch for guest crashes (QMP `GUEST_PANICKED` on the qemu backend;
    /// a new boot id after a dropped connection on any), bring the guest back, keep the dumps.
    pub crash_watch: bool,
    /// libvirt backend: domain name.
    pub domain: String,
    /// libvirt backend: connection URI.
    pub libvirt_uri: String,
    /// Public key put in the guest's authorized keys; default: `<identity>.pub`.
    pub public_key: Option<PathBuf>,
    /// `auto` | `virtio` | `e1000`.
    pub nic: Nic,
    /// Linux kernel profile: size in GiB of the persistent disk (mounted at /data by the test guest).
    pub data_disk_gib: u32,
    /// Seconds from the SSH port answering until a login works (and the clock is re-synced).
    pub ssh_timeout: u64,
    /// Seconds `down` waits after the ACPI power button before killing QEMU.
    pub shutdown_timeout: u64,
    /// Seconds a snapshot save or restore may take.
    pub snapshot_timeout: u64,
    /// QEMU system emulator to run.
    pub qemu: String,
    /// UEFI firmware code (Secure Boot off); default: Debian's `OVMF_CODE_4M.fd`.
    pub firmware_code: Option<PathBuf>,
    /// UEFI variables template copied per VM; default: Debian's `OVMF_VARS_4M.fd` (no keys enrolled).
    pub firmware_vars: Option<PathBuf>,
    /// Windows edition to install (the image name inside `install.wim`).
    pub windows_edition: String,
    /// Product key given to Setup; default: Microsoft's public generic install key for Pro.
    pub product_key: String,
    /// Windows base setup: a Go toolchain zip (windows-amd64) unpacked to `C:\go` in the golden image.
    pub go_zip: Option<PathBuf>,
    /// Windows base setup: the Windows SDK installer (`winsdksetup.exe`) or the Debugging Tools
    /// MSI, installed silently so the golden image has cdb.exe (`repro --cdb`, `analyze`).
    pub debugging_tools: Option<PathBuf>,
    /// `remaster` | `keypress`: how Setup starts unattended (see [`InstallMedia`]).
    pub install_media: InstallMedia,
    /// Commands run in the guest after every boot or snapshot restore, before the suites (mount
    /// bpffs, debugfs, tracefs, cgroup2; modprobe): `sh -c` lines on Linux, PowerShell on Windows.
    pub setup: Vec<String>,
    /// QEMU backend: the VM's screen over VNC on a Unix socket, a loopback TCP port with a
    /// password, or none (see [`ConsoleKind`]).
    pub console: ConsoleKind,
    /// `console = "tcp"`: the loopback port (5900 or above); 0 picks a free one in 5900–5999.
    pub console_port: u16,
    /// Guest doctor: least free space (MiB) where the tests write (Windows: the system drive,
    /// below it `run` stops before the suites; Linux: /tmp, a warning only).
    pub min_free_mib: u64,
}

impl Default for VmConfig {
    fn default() -> Self {
        Self {
            backend: BackendKind::Qemu,
            os: GuestOs::Windows,
            name: "efw".into(),
            user: "harness".into(),
            identity: None,
            host: "127.0.0.1".into(),
            port: 0,
            memory_mib: 8192,
            cpus: 4,
            disk_gib: 64,
            accel: Accel::Auto,
            iso: None,
            iso_sha256: String::new(),
            virtio_win_iso: None,
            tpm: false,
            kernel: None,
            initrd: None,
            append: "console=ttyS0 quiet".into(),
            image: None,
            ready_snapshot: "ready".into(),
            install_timeout: 7200,
            boot_timeout: 600,
            boot_watchdog: 60,
            crash_watch: true,
            domain: String::new(),
            libvirt_uri: "qemu:///system".into(),
            public_key: None,
            nic: Nic::Auto,
            data_disk_gib: 1,
            ssh_timeout: 300,
            shutdown_timeout: 120,
            snapshot_timeout: 600,
            qemu: "qemu-system-x86_64".into(),
            firmware_code: None,
            firmware_vars: None,
            windows_edition: "Windows 11 Pro".into(),
            product_key: "VK7JG-NPHTM-C97JM-9MPGT-3V66T".into(),
            go_zip: None,
            debugging_tools: None,
            install_media: InstallMedia::Remaster,
            setup: Vec::new(),
            console: ConsoleKind::Unix,
            console_port: 0,
            min_free_mib: 4096,
        }
    }
}

/// How the runtime is installed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum InstallMethod {
    /// What the build supports: `install-psm1`, else `setup-ebpf`; `setup-sh` on Linux.
    #[default]
    Auto,
    /// `setup-ebpf.ps1` (as ebpf-go's docs say).
    SetupEbpf,
    /// `install_ebpf.psm1` → `Install-eBPFComponents` (as ebpf-go's CI does).
    InstallPsm1,
    /// Linux guests: `sh setup.sh`.
    SetupSh,
}

/// The `[install]` section.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct InstallConfig {
    /// `auto` | `setup-ebpf` | `install-psm1` | `setup-sh`.
    pub method: InstallMethod,
    /// Guest directory builds are unpacked under (no spaces: install_ebpf.psm1 breaks on them).
    pub guest_dir: String,
    /// Host path of `PsExec64.exe`, placed next to the installer (the guest may have no internet).
    pub psexec: Option<PathBuf>,
    /// Linux guests: command that must succeed in a fresh session after install.
    pub verify_command: String,
    /// Seconds the install step may take.
    pub timeout: u64,
    /// Linux guests: directory builds are unpacked under, one folder per build.
    pub linux_guest_dir: String,
    /// Seconds allowed for sshd to restart and a fresh session to see the new environment.
    pub restart_timeout: u64,
    /// Where harness downloads Sysinternals PSTools (for PsExec64.exe) when no `psexec` is on the
    /// host; empty: never download.
    pub psexec_url: String,
}

impl Default for InstallConfig {
    fn default() -> Self {
        Self {
            method: InstallMethod::Auto,
            guest_dir: r"C:\harness\efw".into(),
            psexec: None,
            verify_command: String::new(),
            timeout: 1800,
            linux_guest_dir: "/var/tmp/harness/efw".into(),
            restart_timeout: 180,
            psexec_url: "https://download.sysinternals.com/files/PSTools.zip".into(),
        }
    }
}

/// One `[extensions.NAME]` section (ntosebpfext in `config.toml`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ExtensionConfig {
    /// Driver file in the build.
    pub driver: String,
    /// Kernel service name.
    pub service: String,
    /// Service start type (`demand`, `auto`, `system`).
    pub start: String,
    /// Tool that registers the program types in the eBPF store.
    pub export_tool: String,
    /// Install this extension during `harness up`.
    pub enabled: bool,
    /// Program types (GUIDs, or names) that must appear in the eBPF store after the export tool
    /// ran; empty means "at least one program type is registered".
    pub program_types: Vec<String>,
    /// How many times to start the service and wait for Running before giving up.
    pub start_attempts: u32,
}

impl Default for ExtensionConfig {
    fn default() -> Self {
        Self {
            driver: String::new(),
            service: String::new(),
            start: "demand".into(),
            export_tool: String::new(),
            enabled: true,
            program_types: Vec::new(),
            start_attempts: 10,
        }
    }
}

/// Here rather than in `session`, which knows nothing of the configuration.
impl Endpoint {
    /// The endpoint described by `[vm]`. `port` overrides `vm.port` (the qemu backend keeps the
    /// forwarded port in its state).
    pub fn from_config(vm: &VmConfig, state_dir: &Path, port: Option<u16>) -> Endpoint {
        let home = std::env::var_os("HOME").map(PathBuf::from);
        Endpoint {
            host: vm.host.clone(),
            port: port.unwrap_or(vm.port),
            user: vm.user.clone(),
            identity: crate::session::endpoint::pick_identity(
                vm.identity.as_deref(),
                home.as_deref(),
                state_dir,
                &|p| p.exists(),
            ),
            os: vm.os,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
