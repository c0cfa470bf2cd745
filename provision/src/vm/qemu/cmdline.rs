//! The QEMU command line, assembled from small pure functions so each choice is unit-tested
//! without booting anything.

use std::path::{Path, PathBuf};

use crate::vm::console::{Console, VNC_BASE_PORT};

/// Accelerator actually used for a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AccelKind {
    Kvm,
    Tcg,
}

impl AccelKind {
    pub fn as_str(self) -> &'static str {
        match self {
            AccelKind::Kvm => "kvm",
            AccelKind::Tcg => "tcg",
        }
    }
}

/// Emulated network card.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NicModel {
    VirtioNet,
    /// Needs no guest driver (Windows Setup, cilium's setup.sh choice).
    E1000,
}

/// Bus of the system disk and CD-ROMs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DiskBus {
    Virtio,
    /// AHCI on q35: Windows Setup has the driver built in.
    Sata,
}

/// UEFI firmware: read-only code plus the per-VM variables store (qcow2, so savevm works).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Firmware {
    pub code: PathBuf,
    pub vars: PathBuf,
}

/// Direct kernel boot (Linux profile).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KernelBoot {
    pub kernel: PathBuf,
    pub initrd: Option<PathBuf>,
    pub append: String,
}

/// Everything decided about one QEMU run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QemuSpec {
    pub name: String,
    pub accel: AccelKind,
    pub memory_mib: u32,
    pub cpus: u32,
    pub firmware: Option<Firmware>,
    /// swtpm control socket: adds a TPM 2.0 (tpm-tis).
    pub tpm_socket: Option<PathBuf>,
    pub pvpanic: bool,
    /// The qcow2 overlay the VM writes to.
    pub disk: PathBuf,
    pub disk_bus: DiskBus,
    /// Read-only CD-ROMs in order (install ISO first: it is the boot device).
    pub cdroms: Vec<PathBuf>,
    pub nic: NicModel,
    pub ssh_port: u16,
    pub qmp_socket: PathBuf,
    /// A second QMP monitor that harness holds open during a run to hear `GUEST_PANICKED`.
    pub events_socket: PathBuf,
    pub serial_log: PathBuf,
    pub kernel: Option<KernelBoot>,
    /// Start from this RAM+disk snapshot (`-loadvm`).
    pub loadvm: Option<String>,
    /// A Windows guest: its RTC keeps local time, and its CPU has `hv-crash`, so a bugcheck
    /// reaches QEMU's `GUEST_PANICKED` with its code and parameters (under KVM; TCG exposes no
    /// Hyper-V leaves and the option is inert).
    pub windows: bool,
    /// The VNC console, if any.
    pub console: Option<Console>,
}

/// QEMU option values separate with commas: a comma inside a path is written twice.
pub fn escape(value: &Path) -> String {
    value.display().to_string().replace(',', ",,")
}

fn s<I: IntoIterator<Item = T>, T: Into<String>>(items: I) -> Vec<String> {
    items.into_iter().map(Into::into).collect()
}

pub fn base_args(spec: &QemuSpec) -> Vec<String> {
    s([
        "-name".to_string(),
        format!("{},process=harness-{}", spec.name, spec.name),
        "-nodefaults".into(),
        "-no-user-config".into(),
        "-display".into(),
        "none".into(),
    ])
}

pub fn machine_args(spec: &QemuSpec) -> Vec<String> {
    let model = if spec.accel == AccelKind::Kvm {
        "host"
    } else {
        "max"
    };
    let cpu = if spec.windows {
        format!("{model},hv-crash")
    } else {
        model.to_string()
    };
    let mut v = s(["-machine", "q35", "-accel", spec.accel.as_str()]);
    v.extend(["-cpu".to_string(), cpu]);
    v
}

pub fn resource_args(spec: &QemuSpec) -> Vec<String> {
    s([
        "-m".to_string(),
        spec.memory_mib.to_string(),
        "-smp".into(),
        spec.cpus.to_string(),
    ])
}

pub fn firmware_args(fw: Option<&Firmware>) -> Vec<String> {
    let Some(fw) = fw else { return Vec::new() };
    s([
        "-drive".to_string(),
        format!(
            "if=pflash,format=raw,unit=0,readonly=on,file={}",
            escape(&fw.code)
        ),
        "-drive".into(),
        format!("if=pflash,format=qcow2,unit=1,file={}", escape(&fw.vars)),
    ])
}

pub fn tpm_args(socket: Option<&Path>) -> Vec<String> {
    let Some(sock) = socket else {
        return Vec::new();
    };
    s([
        "-chardev".to_string(),
        format!("socket,id=chrtpm,path={}", escape(sock)),
        "-tpmdev".into(),
        "emulator,id=tpm0,chardev=chrtpm".into(),
        "-device".into(),
        "tpm-tis,tpmdev=tpm0".into(),
    ])
}

pub fn pvpanic_args(on: bool) -> Vec<String> {
    if on {
        s(["-device", "pvpanic"])
    } else {
        Vec::new()
    }
}

pub fn disk_args(disk: &Path, bus: DiskBus, cdroms: &[PathBuf]) -> Vec<String> {
    let mut v = Vec::new();
    match bus {
        DiskBus::Virtio => {
            v.extend(s([
                "-drive".to_string(),
                format!(
                    "file={},if=none,id=disk0,format=qcow2,discard=unmap",
                    escape(disk)
                ),
            ]));
            v.extend(s(["-device", "virtio-blk-pci,drive=disk0,bootindex=1"]));
        }
        DiskBus::Sata => {
            v.extend(s([
                "-drive".to_string(),
                format!(
                    "file={},if=none,id=disk0,format=qcow2,discard=unmap",
                    escape(disk)
                ),
            ]));
            v.extend(s(["-device", "ide-hd,drive=disk0,bus=ide.0,bootindex=1"]));
        }
    }
    // q35's AHCI controller has six ports; the disk takes ide.0.
    for (i, iso) in cdroms.iter().enumerate() {
        v.extend(s([
            "-drive".to_string(),
            format!(
                "file={},if=none,id=cd{i},media=cdrom,readonly=on",
                escape(iso)
            ),
        ]));
        let boot = if i == 0 { ",bootindex=0" } else { "" };
        v.extend(s([
            "-device".to_string(),
            format!("ide-cd,drive=cd{i},bus=ide.{}{boot}", i + 1),
        ]));
    }
    v
}

pub fn net_args(nic: NicModel, ssh_port: u16) -> Vec<String> {
    let model = match nic {
        NicModel::VirtioNet => "virtio-net-pci",
        NicModel::E1000 => "e1000",
    };
    s([
        "-netdev".to_string(),
        format!("user,id=net0,hostfwd=tcp:127.0.0.1:{ssh_port}-:22"),
        "-device".into(),
        format!("{model},netdev=net0"),
    ])
}

/// QMP (commands), a second QMP monitor for the crash watch, the serial log, the display, and
/// `-action panic=none`: on a guest panic (pvpanic) QEMU reports `GUEST_PANICKED` and lets the
/// guest go on, so Windows writes its memory dump and a Linux kernel with `panic=N` reboots.
pub fn control_args(qmp: &Path, events: &Path, serial_log: &Path) -> Vec<String> {
    s([
        "-qmp".to_string(),
        format!("unix:{},server=on,wait=off", escape(qmp)),
        "-qmp".into(),
        format!("unix:{},server=on,wait=off", escape(events)),
        "-action".into(),
        "panic=none".into(),
        "-serial".into(),
        format!("file:{}", serial_log.display()),
        "-device".into(),
        "VGA".into(),
    ])
}

/// `-vnc`: a Unix socket, or a loopback port that demands the password set through QMP.
pub fn vnc_args(console: Option<&Console>) -> Vec<String> {
    match console {
        None => Vec::new(),
        Some(Console::VncUnix { socket }) => {
            s(["-vnc".to_string(), format!("unix:{}", escape(socket))])
        }
        Some(Console::VncTcp { host, port, .. }) => s([
            "-vnc".to_string(),
            format!("{host}:{},password=on", port.saturating_sub(VNC_BASE_PORT)),
        ]),
    }
}

pub fn kernel_args(k: Option<&KernelBoot>) -> Vec<String> {
    let Some(k) = k else { return Vec::new() };
    let mut v = s(["-kernel".to_string(), k.kernel.display().to_string()]);
    if let Some(i) = &k.initrd {
        v.extend(s(["-initrd".to_string(), i.display().to_string()]));
    }
    v.extend(s(["-append".to_string(), k.append.clone()]));
    v
}

pub fn rtc_args(localtime: bool) -> Vec<String> {
    s([
        "-rtc",
        if localtime {
            "base=localtime"
        } else {
            "base=utc"
        },
    ])
}

pub fn loadvm_args(snapshot: Option<&str>) -> Vec<String> {
    match snapshot {
        Some(n) => s(["-loadvm", n]),
        None => Vec::new(),
    }
}

/// The whole argument list (without the program name).
pub fn args(spec: &QemuSpec) -> Vec<String> {
    [
        base_args(spec),
        machine_args(spec),
        resource_args(spec),
        firmware_args(spec.firmware.as_ref()),
        tpm_args(spec.tpm_socket.as_deref()),
        pvpanic_args(spec.pvpanic),
        disk_args(&spec.disk, spec.disk_bus, &spec.cdroms),
        net_args(spec.nic, spec.ssh_port),
        control_args(&spec.qmp_socket, &spec.events_socket, &spec.serial_log),
        vnc_args(spec.console.as_ref()),
        kernel_args(spec.kernel.as_ref()),
        rtc_args(spec.windows),
        loadvm_args(spec.loadvm.as_deref()),
    ]
    .concat()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn linux() -> QemuSpec {
        QemuSpec {
            name: "t".into(),
            accel: AccelKind::Tcg,
            memory_mib: 512,
            cpus: 2,
            firmware: None,
            tpm_socket: None,
            pvpanic: true,
            disk: "/s/vms/t/disk.qcow2".into(),
            disk_bus: DiskBus::Virtio,
            cdroms: vec![],
            nic: NicModel::VirtioNet,
            ssh_port: 2222,
            qmp_socket: "/s/vms/t/qmp.sock".into(),
            events_socket: "/s/vms/t/qmp-events.sock".into(),
            serial_log: "/s/vms/t/serial.log".into(),
            kernel: Some(KernelBoot {
                kernel: "/k/vmlinuz".into(),
                initrd: Some("/k/initrd.gz".into()),
                append: "console=ttyS0 quiet".into(),
            }),
            loadvm: None,
            windows: false,
            console: None,
        }
    }

    fn has(args: &[String], pair: &[&str]) -> bool {
        args.windows(pair.len())
            .any(|w| w.iter().zip(pair).all(|(a, b)| a == b))
    }

    /// Each of `runs` stands in `args`, in that order of arguments.
    fn assert_has_all(args: &[String], runs: &[&[&str]]) {
        for run in runs {
            assert!(has(args, run), "{run:?} is not in {args:?}");
        }
    }

    #[test]
    fn commas_in_paths_are_doubled() {
        assert_eq!(escape(Path::new("/a,b/c")), "/a,,b/c");
        assert_eq!(
            disk_args(Path::new("/x,y.qcow2"), DiskBus::Virtio, &[])[1],
            "file=/x,,y.qcow2,if=none,id=disk0,format=qcow2,discard=unmap"
        );
    }

    #[test]
    fn accelerator_picks_the_cpu_model() {
        let mut spec = linux();
        assert!(has(&machine_args(&spec), &["-accel", "tcg", "-cpu", "max"]));
        spec.accel = AccelKind::Kvm;
        assert!(has(
            &machine_args(&spec),
            &["-accel", "kvm", "-cpu", "host"]
        ));
        assert!(has(&machine_args(&spec), &["-machine", "q35"]));
        // Windows bugchecks reach GUEST_PANICKED with their code (Hyper-V crash MSRs).
        spec.windows = true;
        assert!(has(&machine_args(&spec), &["-cpu", "host,hv-crash"]));
    }

    #[test]
    fn ssh_is_forwarded_on_loopback_only() {
        let a = net_args(NicModel::E1000, 40022);
        assert!(has(
            &a,
            &[
                "-netdev",
                "user,id=net0,hostfwd=tcp:127.0.0.1:40022-:22",
                "-device",
                "e1000,netdev=net0"
            ]
        ));
        assert_eq!(
            net_args(NicModel::VirtioNet, 1)[3],
            "virtio-net-pci,netdev=net0"
        );
    }

    #[test]
    fn linux_profile_boots_the_kernel_directly() {
        let a = args(&linux());
        assert!(has(
            &a,
            &[
                "-kernel",
                "/k/vmlinuz",
                "-initrd",
                "/k/initrd.gz",
                "-append",
                "console=ttyS0 quiet"
            ]
        ));
        assert!(has(
            &a,
            &["-qmp", "unix:/s/vms/t/qmp.sock,server=on,wait=off"]
        ));
        assert!(has(&a, &["-serial", "file:/s/vms/t/serial.log"]));
        assert!(has(
            &a,
            &["-device", "virtio-blk-pci,drive=disk0,bootindex=1"]
        ));
        assert!(!a.iter().any(|x| x.contains("pflash")));
        assert!(!a.contains(&"-loadvm".to_string()));
        assert!(has(&a, &["-rtc", "base=utc"]));
    }

    #[test]
    fn the_console_is_reachable_only_from_this_host() {
        assert!(vnc_args(None).is_empty());
        assert!(!args(&linux()).contains(&"-vnc".to_string()));
        let unix = Console::VncUnix {
            socket: "/s/vms/a,b/vnc.sock".into(),
        };
        assert_eq!(vnc_args(Some(&unix)), ["-vnc", "unix:/s/vms/a,,b/vnc.sock"]);
        let tcp = Console::VncTcp {
            host: "127.0.0.1".into(),
            port: 5900,
            password_file: "/p".into(),
        };
        assert_eq!(vnc_args(Some(&tcp)), ["-vnc", "127.0.0.1:0,password=on"]);
        let mut spec = linux();
        spec.console = Some(unix);
        let a = args(&spec);
        // The display stays `none` (no window on the host); VNC is an extra listener.
        assert!(has(&a, &["-display", "none"]));
        assert!(has(&a, &["-vnc", "unix:/s/vms/a,,b/vnc.sock"]));
    }

    #[test]
    fn restore_adds_loadvm() {
        let mut spec = linux();
        spec.loadvm = Some("ready".into());
        assert!(has(&args(&spec), &["-loadvm", "ready"]));
    }

    #[test]
    fn windows_gets_firmware_tpm_pvpanic_sata_and_cdroms() {
        let spec = QemuSpec {
            name: "efw".into(),
            accel: AccelKind::Tcg,
            memory_mib: 8192,
            cpus: 4,
            firmware: Some(Firmware {
                code: "/usr/share/OVMF/OVMF_CODE_4M.fd".into(),
                vars: "/s/vms/efw/vars.qcow2".into(),
            }),
            tpm_socket: Some("/s/vms/efw/swtpm.sock".into()),
            pvpanic: true,
            disk: "/s/vms/efw/disk.qcow2".into(),
            disk_bus: DiskBus::Sata,
            cdroms: vec!["/m/win11-auto.iso".into(), "/c/virtio-win.iso".into()],
            nic: NicModel::E1000,
            ssh_port: 40022,
            qmp_socket: "/s/vms/efw/qmp.sock".into(),
            events_socket: "/s/vms/efw/qmp-events.sock".into(),
            serial_log: "/s/vms/efw/serial.log".into(),
            kernel: None,
            loadvm: None,
            windows: true,
            console: Some(Console::VncTcp {
                host: "127.0.0.1".into(),
                port: 5903,
                password_file: "/s/vms/efw/vnc-password".into(),
            }),
        };
        let a = args(&spec);
        assert_has_all(
            &a,
            &[
                &[
                    "-drive",
                    "if=pflash,format=raw,unit=0,readonly=on,file=/usr/share/OVMF/OVMF_CODE_4M.fd",
                ],
                &[
                    "-drive",
                    "if=pflash,format=qcow2,unit=1,file=/s/vms/efw/vars.qcow2",
                ],
                &[
                    "-chardev",
                    "socket,id=chrtpm,path=/s/vms/efw/swtpm.sock",
                    "-tpmdev",
                    "emulator,id=tpm0,chardev=chrtpm",
                    "-device",
                    "tpm-tis,tpmdev=tpm0",
                ],
                &["-device", "pvpanic"],
                &["-device", "ide-hd,drive=disk0,bus=ide.0,bootindex=1"],
                &[
                    "-drive",
                    "file=/m/win11-auto.iso,if=none,id=cd0,media=cdrom,readonly=on",
                    "-device",
                    "ide-cd,drive=cd0,bus=ide.1,bootindex=0",
                ],
                &["-device", "ide-cd,drive=cd1,bus=ide.2"],
                &[
                    "-netdev",
                    "user,id=net0,hostfwd=tcp:127.0.0.1:40022-:22",
                    "-device",
                    "e1000,netdev=net0",
                ],
                &["-rtc", "base=localtime"],
                &["-m", "8192", "-smp", "4"],
                &["-vnc", "127.0.0.1:3,password=on"],
            ],
        );
        assert!(!a.contains(&"-kernel".to_string()));
    }
}
