//! The default backend: harness runs QEMU itself (no root, no libvirt daemon).
//!
//! Disk model: a read-only base image (the golden Windows install, a configured Linux image, or
//! a blank data disk for the kernel+initrd profile) under `<state>/images/`, and one qcow2
//! overlay per VM that holds every write and every RAM snapshot. `reset` deletes the overlay.

pub mod cmdline;
pub mod identity;
mod snapshot;
mod stop;
mod watchdog;
mod windows;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::AtomicBool;
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

    /// Session options for this VM: its own known_hosts (ports are ephemeral, the host key
    /// belongs to this VM's disk), accepting the key a freshly created disk presents.
    pub fn session_options(&self) -> SessionOptions {
        let mut o = SessionOptions::new(self.paths.dir.join("known_hosts"));
        o.accept_new_host_key = true;
        o.connect_timeout = Duration::from_secs(10);
        o
    }

    /// Base image for this VM; creates the Linux blank base or runs the Windows install.
    fn ensure_base(
        &mut self,
        key: &SshKey,
        opts: &UpOptions,
        on_event: &mut dyn FnMut(VmEvent),
    ) -> Result<(PathBuf, Option<PathBuf>), VmError> {
        std::fs::create_dir_all(&self.paths.images).map_err(VmError::io(
            "creating the images directory",
            &self.paths.images,
        ))?;
        match self.cfg.os {
            GuestOs::Linux => {
                if let Some(img) = &self.cfg.image {
                    if !img.is_file() {
                        return Err(VmError::Config(format!(
                            "[vm] image {} does not exist",
                            img.display()
                        )));
                    }
                    return Ok((img.clone(), None));
                }
                let base = self
                    .paths
                    .images
                    .join(format!("linux-data-{}g.qcow2", self.cfg.data_disk_gib));
                if !base.is_file() {
                    let tmp = base.with_extension(format!("tmp{}", std::process::id()));
                    image::create_blank(&tmp, self.cfg.data_disk_gib)?;
                    image::freeze(&tmp)?;
                    std::fs::rename(&tmp, &base)
                        .map_err(VmError::io("storing the base image", &base))?;
                }
                Ok((base, None))
            }
            GuestOs::Windows => windows::ensure_base(self, key, opts, on_event),
        }
    }

    fn firmware_files(&self) -> (PathBuf, PathBuf) {
        (
            self.cfg
                .firmware_code
                .clone()
                .unwrap_or_else(|| DEFAULT_OVMF_CODE.into()),
            self.cfg
                .firmware_vars
                .clone()
                .unwrap_or_else(|| DEFAULT_OVMF_VARS.into()),
        )
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

    fn start_swtpm(&mut self) -> Result<(), VmError> {
        std::fs::create_dir_all(&self.paths.tpm_dir).map_err(VmError::io(
            "creating the TPM state directory",
            &self.paths.tpm_dir,
        ))?;
        let _ = std::fs::remove_file(&self.paths.swtpm_sock);
        let mut cmd = Command::new("swtpm");
        cmd.args(["socket", "--tpm2", "--terminate", "--tpmstate"])
            .arg(format!("dir={}", self.paths.tpm_dir.display()))
            .arg("--ctrl")
            .arg(format!(
                "type=unixio,path={}",
                self.paths.swtpm_sock.display()
            ));
        let p = Process::spawn(cmd, &self.paths.swtpm_log)?;
        let deadline = Instant::now() + Duration::from_secs(10);
        while !self.paths.swtpm_sock.exists() {
            if Instant::now() > deadline {
                return Err(VmError::Config(format!(
                    "swtpm did not create its socket within 10 s; see {}",
                    self.paths.swtpm_log.display()
                )));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        self.swtpm = Some(p);
        Ok(())
    }

    /// Start QEMU for `spec` (plus the configured console) and record the run state.
    fn launch(&mut self, spec: &QemuSpec, base: Option<&Path>) -> Result<(), VmError> {
        let mut spec = spec.clone();
        spec.console = console::plan(self.cfg.console, self.cfg.console_port, &self.paths)?;
        let spec = &spec;
        if self.cfg.tpm {
            self.start_swtpm()?;
        }
        let _ = std::fs::remove_file(&self.paths.qmp);
        let _ = std::fs::remove_file(&self.paths.qmp_events);
        let _ = std::fs::remove_file(&self.paths.vnc);
        let _ = std::fs::write(&self.paths.qemu_log, "");
        let mut cmd = Command::new(&self.cfg.qemu);
        cmd.args(cmdline::args(spec));
        let p = Process::spawn(cmd, &self.paths.qemu_log)?;
        RunState {
            pid: p.pid(),
            swtpm_pid: self.swtpm.as_ref().map(Process::pid),
            ssh_port: spec.ssh_port,
            accel: spec.accel.as_str().into(),
            base_image: base.map(Path::to_path_buf),
            restored_snapshot: spec.loadvm.clone(),
            started: now_unix(),
            console: spec.console.clone(),
        }
        .write(&self.paths.run_state)?;
        self.qemu = Some(p);
        self.accel_used = Some(spec.accel);
        if let Some(c) = &spec.console
            && let Err(e) = console::secure(c, &self.paths.qmp)
        {
            // A port console without its password must not stay up.
            let e = self.exited(Phase::Booting).unwrap_or(e);
            self.kill_now();
            return Err(e);
        }
        Ok(())
    }

    /// QEMU died: the error carries its log.
    fn exited(&mut self, phase: Phase) -> Option<VmError> {
        let status = self.qemu.as_mut()?.try_wait()?;
        Some(VmError::QemuExited {
            phase,
            status: status.to_string(),
            stderr: process::tail(&self.paths.qemu_log, 15),
            qemu_log: self.paths.qemu_log.clone(),
            serial_log: self.paths.serial_log.clone(),
        })
    }

    /// The timeout error, with a screendump and the serial log tail.
    fn timeout_error(&self, phase: Phase, elapsed: Duration, limit: Duration) -> VmError {
        let shot = self.paths.screendumps.join(format!(
            "{}-{}.png",
            phase.label().replace(' ', "-"),
            now_unix()
        ));
        let (screendump, screendump_error) =
            match Qmp::connect(&self.paths.qmp, Duration::from_secs(5))
                .and_then(|mut q| q.screendump(&shot))
            {
                Ok(p) => (Some(p), None),
                Err(e) => (None, Some(e.to_string())),
            };
        VmError::Timeout(Box::new(crate::vm::error::ReadinessTimeout {
            phase,
            elapsed,
            limit,
            screendump,
            screendump_error,
            serial_log: self.paths.serial_log.clone(),
            serial_tail: process::tail(&self.paths.serial_log, 20),
            accel: self.accel_used.map(AccelKind::as_str),
        }))
    }

    /// Wait in `phase` until `check` yields, QEMU dies, the limit passes, or Ctrl-C.
    pub(crate) fn wait<T>(
        &mut self,
        phase: Phase,
        limit: Duration,
        cancel: Option<&AtomicBool>,
        on_event: &mut dyn FnMut(VmEvent),
        mut check: impl FnMut(&mut Self) -> Result<Option<T>, VmError>,
    ) -> Result<T, VmError> {
        let me = std::cell::RefCell::new(self);
        let r = readiness::wait_phase(phase, limit, POLL, cancel, on_event, || {
            let mut me = me.borrow_mut();
            if let Some(e) = me.exited(phase) {
                return Err(e);
            }
            check(&mut me)
        });
        let me = me.into_inner();
        match r {
            Ok(v) => Ok(v),
            Err(WaitError::Failed(e)) => Err(e),
            Err(WaitError::Cancelled) => Err(VmError::Cancelled { phase }),
            Err(WaitError::TimedOut { elapsed, limit }) => {
                Err(me.timeout_error(phase, elapsed, limit))
            }
        }
    }

    /// What every VM of this configuration shares, made once before several boot side by side
    /// (`harness run --vms N`): the SSH key, the KVM verdict and the golden (base) image.
    pub fn prepare_shared(
        &mut self,
        opts: &UpOptions,
        on_event: &mut dyn FnMut(VmEvent),
    ) -> Result<PathBuf, VmError> {
        let key = keys::resolve(&self.cfg, &self.dirs.state)?;
        self.accel(on_event);
        Ok(self.ensure_base(&key, opts, on_event)?.0)
    }

    /// Bring the VM to SSH-ready (see [`super::Vm::up`]).
    pub fn up(
        &mut self,
        opts: &UpOptions,
        on_event: &mut dyn FnMut(VmEvent),
    ) -> Result<UpOutcome, VmError> {
        let key = keys::resolve(&self.cfg, &self.dirs.state)?;
        if let Some(rs) = self.running() {
            on_event(VmEvent::Note {
                message: format!("VM '{}' is already running (pid {})", self.cfg.name, rs.pid),
            });
            return Ok(UpOutcome {
                endpoint: self.endpoint(rs.ssh_port, &key),
                restored_snapshot: None,
                accel: if rs.accel == "kvm" {
                    AccelKind::Kvm
                } else {
                    AccelKind::Tcg
                },
                elapsed: Duration::ZERO,
                known_hosts: self.session_options().known_hosts,
                already_running: true,
            });
        }
        let started = Instant::now();
        let mut r = self.up_inner(opts, &key, on_event, started, None);
        if let Err(VmError::Stalled { detail, .. }) = &r
            && self.cfg.accel == Accel::Auto
        {
            // A remembered (or fresh) "KVM works" proved wrong: remember that, boot under TCG.
            let detail = format!("a guest stalled under KVM: {detail}");
            self.kill_now();
            super::accel::remember(
                &self.accel_cache(),
                &self.cfg.qemu,
                false,
                &detail,
                "boot watchdog",
            );
            on_event(VmEvent::Warning {
                message: super::accel::fallback_warning(&detail),
            });
            r = self.up_inner(opts, &key, on_event, started, Some(AccelKind::Tcg));
        }
        match r {
            Ok(o) => {
                if opts.detach {
                    self.detach();
                }
                Ok(o)
            }
            Err(e) => {
                self.kill_now();
                Err(e)
            }
        }
    }

    fn up_inner(
        &mut self,
        opts: &UpOptions,
        key: &SshKey,
        on_event: &mut dyn FnMut(VmEvent),
        started: Instant,
        forced: Option<AccelKind>,
    ) -> Result<UpOutcome, VmError> {
        self.paths.create()?;
        let _ = std::fs::remove_file(&self.paths.run_state);
        let accel = match forced {
            Some(a) => a,
            None => {
                on_event(VmEvent::Started {
                    phase: Phase::ProbingAccelerator,
                    timeout: super::accel::PROBE_KVM_LIMIT + Duration::from_secs(10),
                });
                let t = Instant::now();
                let accel = self.accel(on_event);
                on_event(VmEvent::Finished {
                    phase: Phase::ProbingAccelerator,
                    elapsed: t.elapsed(),
                });
                accel
            }
        };
        let (base, base_vars) = self.ensure_base(key, opts, on_event)?;
        self.drop_stale_ready_snapshot(&base, opts, on_event)?;
        on_event(VmEvent::Started {
            phase: Phase::PreparingDisk,
            timeout: Duration::from_secs(120),
        });
        let t = Instant::now();
        if !self.paths.overlay.is_file() {
            image::create_overlay(&base, &self.paths.overlay)?;
        }
        if self.cfg.os == GuestOs::Windows && !self.paths.vars.is_file() {
            match &base_vars {
                Some(bv) => image::create_overlay(bv, &self.paths.vars)?,
                None => image::convert_to_qcow2(&self.firmware_files().1, &self.paths.vars)?,
            }
        }
        on_event(VmEvent::Finished {
            phase: Phase::PreparingDisk,
            elapsed: t.elapsed(),
        });
        let snapshot = match (&opts.restore, opts.cold) {
            (Some(name), _) => {
                image::validate_snapshot_name(name)?;
                if !self.has_snapshot(name)? {
                    return Err(VmError::Snapshot {
                        name: name.clone(),
                        detail: format!("not found in {}", self.paths.overlay.display()),
                    });
                }
                Some(name.clone())
            }
            (None, true) => None,
            (None, false) => {
                let r = &self.cfg.ready_snapshot;
                (!r.is_empty() && self.has_snapshot(r)?).then(|| r.clone())
            }
        };
        let port = if self.cfg.port != 0 {
            self.cfg.port
        } else {
            free_port()?
        };
        let spec = self.spec(
            accel,
            port,
            key,
            &self.paths.overlay.clone(),
            Vec::new(),
            snapshot.clone(),
        );
        self.launch(&spec, Some(&base))?;
        let cancel = opts.cancel.as_deref();
        let boot_limit = Duration::from_secs(self.cfg.boot_timeout);
        let first_phase = if snapshot.is_some() {
            Phase::RestoringSnapshot
        } else {
            Phase::Booting
        };
        let first_limit = if snapshot.is_some() {
            Duration::from_secs(self.cfg.snapshot_timeout)
        } else {
            boot_limit
        };
        let mut watch = (self.cfg.accel == Accel::Auto
            && accel == AccelKind::Kvm
            && self.cfg.boot_watchdog > 0)
            .then(|| {
                watchdog::BootWatch::new(
                    Duration::from_secs(self.cfg.boot_watchdog),
                    &self.paths.serial_log,
                    &self.paths.qmp,
                    &self.paths.screendumps,
                )
            });
        let serial_log = self.paths.serial_log.clone();
        self.wait(first_phase, first_limit, cancel, on_event, |_| {
            if let Some(banner) = readiness::ssh_banner(port, Duration::from_secs(2)) {
                return Ok(Some(banner));
            }
            if let Some(w) = watch.as_mut() {
                w.check().map_err(|detail| VmError::Stalled {
                    phase: first_phase,
                    accel: accel.as_str(),
                    detail,
                    serial_log: serial_log.clone(),
                })?;
            }
            Ok(None)
        })?;
        let endpoint = self.endpoint(port, key);
        let mut session = self.login(&endpoint, cancel, on_event)?;
        if snapshot.is_some() {
            self.resync_clock(&mut session, on_event)?;
        }
        drop(session);
        let elapsed = started.elapsed();
        if snapshot.is_none() && opts.save_ready_snapshot && !self.cfg.ready_snapshot.is_empty() {
            let name = self.cfg.ready_snapshot.clone();
            self.snapshot_save(&name, on_event)?;
        }
        Ok(UpOutcome {
            endpoint,
            restored_snapshot: snapshot,
            accel,
            elapsed,
            known_hosts: self.session_options().known_hosts,
            already_running: false,
        })
    }

    /// "waiting for SSH": a real login (key accepted), retried until `ssh_timeout`.
    pub(crate) fn login(
        &mut self,
        ep: &Endpoint,
        cancel: Option<&AtomicBool>,
        on_event: &mut dyn FnMut(VmEvent),
    ) -> Result<Session, VmError> {
        let opts = self.session_options();
        let mut last = String::new();
        let limit = Duration::from_secs(self.cfg.ssh_timeout);
        let r = self.wait(
            Phase::WaitingForSsh,
            limit,
            cancel,
            on_event,
            |_| match Session::connect(ep, &opts) {
                Ok(s) => Ok(Some(s)),
                Err(e) => {
                    last = e.to_string();
                    Ok(None)
                }
            },
        );
        match r {
            Err(VmError::Timeout(mut t)) => {
                t.serial_tail = format!("{}\n--- last SSH error ---\n{last}", t.serial_tail);
                Err(VmError::Timeout(t))
            }
            other => other,
        }
    }

    /// After a snapshot restore the guest clock is where it was at save time: set it to now.
    fn resync_clock(
        &mut self,
        session: &mut Session,
        on_event: &mut dyn FnMut(VmEvent),
    ) -> Result<(), VmError> {
        let t = Instant::now();
        on_event(VmEvent::Started {
            phase: Phase::ResyncingClock,
            timeout: Duration::from_secs(60),
        });
        let cmd = shell(self.cfg.os, &clock_script(self.cfg.os, now_unix()))
            .timeout(Duration::from_secs(60));
        let out = session.exec_capture(&cmd)?;
        if !out.status.success() {
            on_event(VmEvent::Warning {
                message: format!(
                    "could not resync the guest clock (exit {}): {}",
                    out.status.code,
                    out.stderr.trim()
                ),
            });
        }
        on_event(VmEvent::Finished {
            phase: Phase::ResyncingClock,
            elapsed: t.elapsed(),
        });
        Ok(())
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
