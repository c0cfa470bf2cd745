//! VM lifecycle: bring a test machine to SSH-ready, stop it, reset it, snapshot it.
//!
//! One entry point, [`Vm`], over three backends: `qemu` (harness runs QEMU itself), `libvirt`
//! (an existing domain) and `ssh` (an existing host, no lifecycle). Operations report progress
//! as typed [`VmEvent`]s; the library never prints.
//!
//! ```no_run
//! # use provision::vm::*;
//! # fn f(cfg: &provision::VmConfig) -> Result<(), VmError> {
//! let dirs = VmDirs { state: "/tmp/state".into(), cache: "/tmp/cache".into() };
//! let mut vm = Vm::open(cfg, &dirs)?; // takes the VM lock
//! let up = vm.up(&UpOptions { detach: true, ..Default::default() }, &mut |e| eprintln!("{e:?}"))?;
//! println!("ssh -p {} {}@{}", up.endpoint.port, up.endpoint.user, up.endpoint.host);
//! # Ok(()) }
//! ```

pub mod accel;
pub mod capacity;
pub mod console;
pub mod error;
pub mod events;
pub mod image;
pub mod keys;
pub mod libvirt;
pub mod lock;
pub mod panic_watch;
pub mod process;
pub mod qemu;
pub mod qmp;
pub mod readiness;
pub mod setup;
pub mod ssh;
pub mod state;
mod unmanaged;

use std::path::PathBuf;
use std::time::Duration;

pub use error::VmError;
pub use events::{Phase, VmEvent};
pub use image::SnapshotInfo;
pub use qemu::cmdline::AccelKind;

use crate::config::{BackendKind, VmConfig};
use crate::session::{Endpoint, GuestOs};

/// Directories a VM uses: `state` (VMs, images, keys, locks) and `cache` (downloads).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VmDirs {
    pub state: PathBuf,
    pub cache: PathBuf,
}

/// How `up` behaves.
#[derive(Debug, Clone, Default)]
pub struct UpOptions {
    /// Leave the VM running after the [`Vm`] is dropped (what `harness up` wants). Otherwise the
    /// VM lives exactly as long as the `Vm` value.
    pub detach: bool,
    /// Boot even if the ready snapshot exists.
    pub cold: bool,
    /// Go back to this snapshot (it must exist) instead of using the configured ready snapshot:
    /// start from it, or set a running VM back to it (QEMU `loadvm`, `virsh snapshot-revert`);
    /// `[vm] setup` then runs again. The ssh backend has no snapshots.
    pub restore: Option<String>,
    /// After a cold boot reached SSH, save the configured ready snapshot.
    pub save_ready_snapshot: bool,
    /// Ctrl-C: set to stop waiting; the VM is then killed.
    pub cancel: Option<hostproc::Cancel>,
    /// Windows golden image: `PsExec64.exe` to place where efW's installer looks.
    pub psexec: Option<PathBuf>,
}

/// A VM that answers SSH.
#[derive(Debug, Clone)]
pub struct UpOutcome {
    pub endpoint: Endpoint,
    /// The snapshot the VM was started from, if any.
    pub restored_snapshot: Option<String>,
    pub accel: AccelKind,
    /// Time from the start of `up` to SSH-ready.
    pub elapsed: Duration,
    /// known_hosts file to use with [`crate::session::SessionOptions`] for this VM.
    pub known_hosts: PathBuf,
    /// `up` found the VM running and did nothing.
    pub already_running: bool,
}

/// Lifecycle state shown by `harness status`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum VmState {
    Running,
    Paused,
    /// Has a disk, not running.
    Stopped,
    /// Nothing created yet (or destroyed).
    Absent,
    /// An existing host: harness does not manage its lifecycle.
    Unmanaged,
}

/// The SSH endpoint in a serialisable form.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct EndpointInfo {
    pub host: String,
    pub port: u16,
    pub user: String,
    pub identity: Option<PathBuf>,
    pub os: GuestOs,
}

impl From<Endpoint> for EndpointInfo {
    fn from(e: Endpoint) -> Self {
        EndpointInfo {
            host: e.host,
            port: e.port,
            user: e.user,
            identity: e.identity,
            os: e.os,
        }
    }
}

/// What `harness status` reports.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct VmStatus {
    pub name: String,
    pub backend: &'static str,
    pub state: VmState,
    /// QMP `query-status` (qemu) or `virsh domstate` (libvirt).
    pub qemu_status: Option<String>,
    pub endpoint: Option<EndpointInfo>,
    pub base_image: Option<PathBuf>,
    pub overlay: Option<PathBuf>,
    pub snapshots: Vec<SnapshotInfo>,
    pub accel: Option<String>,
    pub pid: Option<u32>,
    pub serial_log: PathBuf,
    /// The running VM's VNC console (`harness console`); the password is never included.
    pub console: Option<console::Console>,
}

/// What `destroy` found and removed.
#[derive(Debug, Clone, PartialEq, Eq, Default, serde::Serialize)]
pub struct Destroyed {
    /// A running VM was stopped.
    pub was_running: bool,
    /// The VM had state (a disk, keys, logs) that was removed; `false`: nothing to destroy.
    pub had_state: bool,
    /// The base image removed with `all`.
    pub base_image_removed: Option<PathBuf>,
}

/// A shared lock on VM `cfg.name`, held by commands that use the VM without changing its
/// lifecycle (`exec`, `cp`, `ssh`, `test`): they run side by side, while `down`, `reset`,
/// `destroy` and `up` (which take the lock exclusively) are refused until they finish.
pub fn use_lock(cfg: &VmConfig, dirs: &VmDirs) -> Result<lock::VmLock, VmError> {
    let paths = state::VmPaths::new(&dirs.state, &cfg.name);
    lock::VmLock::acquire_mode(&paths.lock, &cfg.name, lock::LockMode::Shared)
}

#[derive(Debug)]
enum Backend {
    Qemu(Box<qemu::QemuVm>),
    Libvirt(libvirt::LibvirtVm),
    Ssh(ssh::SshHost),
}

/// A VM harness drives. Holds the VM's lock for its whole life.
#[derive(Debug)]
pub struct Vm {
    backend: Backend,
    dirs: VmDirs,
    /// `[vm] setup`: run after every boot or snapshot restore.
    setup: Vec<String>,
    _lock: Option<lock::VmLock>,
}

impl Vm {
    /// Open VM `cfg.name`, taking its lock ([`VmError::Busy`] if another harness process has it).
    pub fn open(cfg: &VmConfig, dirs: &VmDirs) -> Result<Vm, VmError> {
        let paths = state::VmPaths::new(&dirs.state, &cfg.name);
        let lock = lock::VmLock::acquire(&paths.lock, &cfg.name)?;
        let mut vm = Self::inspect(cfg, dirs)?;
        vm._lock = Some(lock);
        Ok(vm)
    }

    /// Open without the lock, for read-only questions (`status`, `snapshot list`).
    pub fn inspect(cfg: &VmConfig, dirs: &VmDirs) -> Result<Vm, VmError> {
        let backend = match cfg.backend {
            BackendKind::Qemu => Backend::Qemu(Box::new(qemu::QemuVm::new(cfg, dirs)?)),
            BackendKind::Libvirt => Backend::Libvirt(libvirt::LibvirtVm::new(cfg, dirs)?),
            BackendKind::Ssh => Backend::Ssh(ssh::SshHost::new(cfg, dirs)?),
        };
        Ok(Vm {
            backend,
            dirs: dirs.clone(),
            setup: cfg.setup.clone(),
            _lock: None,
        })
    }

    /// Bring the VM to SSH-ready: create/boot/restore as needed. Idempotent when running, unless
    /// `opts.restore` asks for a snapshot.
    pub fn up(
        &mut self,
        opts: &UpOptions,
        on_event: &mut dyn FnMut(VmEvent),
    ) -> Result<UpOutcome, VmError> {
        let up = match &mut self.backend {
            Backend::Qemu(q) => q.up(opts, on_event),
            Backend::Libvirt(l) => l.up(opts, on_event),
            Backend::Ssh(s) => s.up(opts, on_event),
        }?;
        setup::run(&self.setup, &up, on_event)?;
        Ok(up)
    }

    /// Makes what several VMs of this configuration share (SSH key, KVM verdict, golden image)
    /// so that they can then boot side by side; returns the golden image. qemu backend only.
    pub fn prepare_shared(
        &mut self,
        opts: &UpOptions,
        on_event: &mut dyn FnMut(VmEvent),
    ) -> Result<PathBuf, VmError> {
        match &mut self.backend {
            Backend::Qemu(q) => q.prepare_shared(opts, on_event),
            Backend::Libvirt(_) => Err(VmError::Unsupported {
                backend: "libvirt",
                what: "several VMs at once (--vms); use the qemu backend".into(),
            }),
            Backend::Ssh(_) => Err(ssh::unsupported("several VMs at once (--vms)")),
        }
    }

    /// ACPI powerdown, then kill after `shutdown_timeout`. `Ok(false)` if it was not running.
    pub fn down(&mut self, on_event: &mut dyn FnMut(VmEvent)) -> Result<bool, VmError> {
        match &mut self.backend {
            Backend::Qemu(q) => q.down(on_event),
            Backend::Libvirt(l) => l.down(on_event),
            Backend::Ssh(_) => Err(ssh::unsupported("down")),
        }
    }

    /// Throw away every change since the base image (stops the VM first). `Ok(true)` when a
    /// running VM was stopped to do it.
    pub fn reset(&mut self) -> Result<bool, VmError> {
        match &mut self.backend {
            Backend::Qemu(q) => q.reset(),
            Backend::Libvirt(_) => Err(VmError::Unsupported {
                backend: "libvirt",
                what: "reset (restore a snapshot with `harness snapshot restore` instead)".into(),
            }),
            Backend::Ssh(_) => Err(ssh::unsupported("reset")),
        }
    }

    /// Remove the VM's state; `all` also removes the base image harness built.
    pub fn destroy(&mut self, all: bool) -> Result<Destroyed, VmError> {
        match &mut self.backend {
            Backend::Qemu(q) => q.destroy(all),
            Backend::Libvirt(_) => Err(VmError::Unsupported {
                backend: "libvirt",
                what: "destroy (harness does not delete domains it did not create)".into(),
            }),
            Backend::Ssh(_) => Err(ssh::unsupported("destroy")),
        }
    }

    pub fn status(&mut self) -> Result<VmStatus, VmError> {
        match &mut self.backend {
            Backend::Qemu(q) => q.status(),
            Backend::Libvirt(l) => l.status(),
            Backend::Ssh(s) => s.status(),
        }
    }

    /// Save RAM + disk of the running VM.
    pub fn snapshot_save(
        &mut self,
        name: &str,
        on_event: &mut dyn FnMut(VmEvent),
    ) -> Result<(), VmError> {
        match &mut self.backend {
            Backend::Qemu(q) => q.snapshot_save(name, on_event),
            Backend::Libvirt(l) => l.snapshot_save(name),
            Backend::Ssh(_) => Err(ssh::unsupported("snapshots")),
        }
    }

    pub fn snapshot_list(&mut self) -> Result<Vec<SnapshotInfo>, VmError> {
        match &mut self.backend {
            Backend::Qemu(q) => q.snapshot_list(),
            Backend::Libvirt(l) => l.snapshot_list(),
            Backend::Ssh(_) => Err(ssh::unsupported("snapshots")),
        }
    }

    pub fn snapshot_delete(&mut self, name: &str) -> Result<(), VmError> {
        match &mut self.backend {
            Backend::Qemu(q) => q.snapshot_delete(name),
            Backend::Libvirt(l) => l.snapshot_delete(name),
            Backend::Ssh(_) => Err(ssh::unsupported("snapshots")),
        }
    }

    /// The VNC console of the running VM (`None`: it runs with `console = "none"`).
    pub fn console(&mut self) -> Result<Option<console::Console>, VmError> {
        match &mut self.backend {
            Backend::Qemu(q) => q.console(),
            Backend::Libvirt(_) => Err(VmError::Unsupported {
                backend: "libvirt",
                what: "`harness console` (open the domain's display with `virt-viewer DOMAIN`)"
                    .into(),
            }),
            Backend::Ssh(_) => Err(ssh::unsupported("a console")),
        }
    }

    /// Save the running VM's screen to `path`; returns the file written (PNG, or PPM on old QEMU).
    pub fn screendump(&mut self, path: &std::path::Path) -> Result<PathBuf, VmError> {
        match &mut self.backend {
            Backend::Qemu(q) => q.screendump(path),
            Backend::Libvirt(_) => Err(VmError::Unsupported {
                backend: "libvirt",
                what: "`harness screenshot` (use `virsh screenshot DOMAIN FILE`)".into(),
            }),
            Backend::Ssh(_) => Err(ssh::unsupported("screenshots")),
        }
    }

    /// The SSH endpoint of the running VM (`None` when stopped); for `harness exec/cp/ssh`.
    pub fn endpoint(&mut self) -> Result<Option<Endpoint>, VmError> {
        match &mut self.backend {
            Backend::Qemu(q) => q.running_endpoint(),
            Backend::Libvirt(l) => Ok(l.status()?.endpoint.map(|e| Endpoint {
                host: e.host,
                port: e.port,
                user: e.user,
                identity: e.identity,
                os: e.os,
            })),
            Backend::Ssh(s) => Ok(Some(s.endpoint())),
        }
    }

    /// known_hosts file to pin this VM's host key in. QEMU VMs get their own (their forwarded
    /// port changes on every start and their key belongs to their disk); others share the
    /// state-wide one.
    pub fn known_hosts(&self) -> PathBuf {
        match &self.backend {
            Backend::Qemu(q) => q.session_options().known_hosts,
            Backend::Libvirt(_) | Backend::Ssh(_) => {
                crate::session::endpoint::known_hosts_path(&self.dirs.state)
            }
        }
    }

    /// Starts the crash watch on the running VM (qemu backend: its second QMP monitor); `None`
    /// for backends without one (libvirt, ssh: a crash there shows as a dropped connection and
    /// a new boot id).
    pub fn panic_watch(
        &mut self,
        os: GuestOs,
        on_panic: Box<dyn Fn(panic_watch::GuestPanic) + Send>,
    ) -> Result<Option<panic_watch::PanicWatch>, VmError> {
        match &mut self.backend {
            Backend::Qemu(q) => {
                let sock = q.paths().qmp_events.clone();
                panic_watch::PanicWatch::start(&sock, os, on_panic).map(Some)
            }
            Backend::Libvirt(_) | Backend::Ssh(_) => Ok(None),
        }
    }

    /// The guest's serial console log on the host (qemu backend), for crash reports.
    pub fn serial_log(&self) -> Option<PathBuf> {
        match &self.backend {
            Backend::Qemu(q) => Some(q.paths().serial_log.clone()),
            Backend::Libvirt(_) | Backend::Ssh(_) => None,
        }
    }

    /// Runs `[vm] setup` again in a guest that rebooted on its own (after a crash).
    pub fn rerun_setup(
        &self,
        up: &UpOutcome,
        on_event: &mut dyn FnMut(VmEvent),
    ) -> Result<(), VmError> {
        let mut fresh = up.clone();
        fresh.already_running = false;
        setup::run(&self.setup, &fresh, on_event)
    }

    /// Keep the VM running when this value is dropped (after an `up` without `detach`).
    pub fn detach(&mut self) {
        if let Backend::Qemu(q) = &mut self.backend {
            q.detach();
        }
    }
}
