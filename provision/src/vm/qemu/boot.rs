//! Bringing a QEMU VM up: the base image, firmware, swtpm, launch, the wait for SSH (boot
//! watchdog and TCG fallback), the ready snapshot (restore or save), login and clock resync.

use super::*;

impl QemuVm {
    /// Base image for this VM; creates the Linux blank base or runs the Windows install.
    pub(super) fn ensure_base(
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

    pub(super) fn firmware_files(&self) -> (PathBuf, PathBuf) {
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

    pub(super) fn start_swtpm(&mut self) -> Result<(), VmError> {
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
    pub(super) fn launch(&mut self, spec: &QemuSpec, base: Option<&Path>) -> Result<(), VmError> {
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
    pub(super) fn exited(&mut self, phase: Phase) -> Option<VmError> {
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
    pub(super) fn timeout_error(
        &self,
        phase: Phase,
        elapsed: Duration,
        limit: Duration,
    ) -> VmError {
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
        cancel: Option<&hostproc::Cancel>,
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
            if let Some(name) = &opts.restore {
                return self.restore_running(rs, name, opts, on_event);
            }
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
            super::super::accel::remember(
                &self.accel_cache(),
                &self.cfg.qemu,
                false,
                &detail,
                "boot watchdog",
            );
            on_event(VmEvent::Warning {
                message: super::super::accel::fallback_warning(&detail),
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

    pub(super) fn up_inner(
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
            None => self.probe_accel(on_event),
        };
        let (base, base_vars) = self.ensure_base(key, opts, on_event)?;
        self.drop_stale_ready_snapshot(&base, opts, on_event)?;
        self.prepare_disk(&base, base_vars.as_deref(), on_event)?;
        let snapshot = self.snapshot_to_start(opts)?;
        let port = self.forward_port()?;
        let spec = self.spec(
            accel,
            port,
            key,
            &self.paths.overlay.clone(),
            Vec::new(),
            snapshot.clone(),
        );
        self.launch(&spec, Some(&base))?;
        let cancel = opts.cancel.as_ref();
        self.wait_for_banner(accel, port, snapshot.is_some(), cancel, on_event)?;
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

    /// The accelerator to boot under (probed, or the remembered verdict), as its own phase.
    fn probe_accel(&self, on_event: &mut dyn FnMut(VmEvent)) -> AccelKind {
        on_event(VmEvent::Started {
            phase: Phase::ProbingAccelerator,
            timeout: super::super::accel::PROBE_KVM_LIMIT + Duration::from_secs(10),
        });
        let t = Instant::now();
        let accel = self.accel(on_event);
        on_event(VmEvent::Finished {
            phase: Phase::ProbingAccelerator,
            elapsed: t.elapsed(),
        });
        accel
    }

    /// The VM's overlay on `base` and, on Windows, its UEFI variables (on the golden image's
    /// `base_vars`, else converted from the firmware's template); existing ones are kept.
    fn prepare_disk(
        &self,
        base: &Path,
        base_vars: Option<&Path>,
        on_event: &mut dyn FnMut(VmEvent),
    ) -> Result<(), VmError> {
        on_event(VmEvent::Started {
            phase: Phase::PreparingDisk,
            timeout: Duration::from_secs(120),
        });
        let t = Instant::now();
        if !self.paths.overlay.is_file() {
            image::create_overlay(base, &self.paths.overlay)?;
        }
        if self.cfg.os == GuestOs::Windows && !self.paths.vars.is_file() {
            match base_vars {
                Some(bv) => image::create_overlay(bv, &self.paths.vars)?,
                None => image::convert_to_qcow2(&self.firmware_files().1, &self.paths.vars)?,
            }
        }
        on_event(VmEvent::Finished {
            phase: Phase::PreparingDisk,
            elapsed: t.elapsed(),
        });
        Ok(())
    }

    /// The snapshot to start from: the one asked for (it must exist), none for a cold boot,
    /// else the configured ready snapshot if the overlay has it.
    fn snapshot_to_start(&self, opts: &UpOptions) -> Result<Option<String>, VmError> {
        Ok(match (&opts.restore, opts.cold) {
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
        })
    }

    /// Waits until the guest's SSH port on `port` sends its banner, booting or `restoring` the
    /// snapshot; under `auto` with KVM the boot watchdog turns a stalled guest into
    /// [`VmError::Stalled`].
    fn wait_for_banner(
        &mut self,
        accel: AccelKind,
        port: u16,
        restoring: bool,
        cancel: Option<&hostproc::Cancel>,
        on_event: &mut dyn FnMut(VmEvent),
    ) -> Result<(), VmError> {
        let (first_phase, first_limit) = if restoring {
            (
                Phase::RestoringSnapshot,
                Duration::from_secs(self.cfg.snapshot_timeout),
            )
        } else {
            (Phase::Booting, Duration::from_secs(self.cfg.boot_timeout))
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
        Ok(())
    }

    /// "waiting for SSH": a real login (key accepted), retried until `ssh_timeout`.
    pub(crate) fn login(
        &mut self,
        ep: &Endpoint,
        cancel: Option<&hostproc::Cancel>,
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
    pub(super) fn resync_clock(
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
}
