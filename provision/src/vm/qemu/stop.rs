//! Stopping a QEMU VM: power off over ACPI/SSH, kill, reset to the ready snapshot, destroy.

use super::*;

impl QemuVm {
    /// Kill QEMU and swtpm of this VM now (ours or a detached one found via run.json).
    pub(super) fn kill_now(&mut self) {
        if let Some(mut p) = self.qemu.take() {
            p.kill();
        }
        if let Some(mut p) = self.swtpm.take() {
            p.kill();
        }
        if let Some(rs) = RunState::read(&self.paths.run_state) {
            if is_our_qemu(rs.pid, &self.paths.qmp) {
                process::kill_group(rs.pid);
                process::wait_gone(rs.pid, Duration::from_secs(10));
            }
            if let Some(t) = rs.swtpm_pid
                && std::fs::read(format!("/proc/{t}/cmdline")).is_ok_and(|c| {
                    super::super::state::cmdline_names_socket(&c, &self.paths.swtpm_sock)
                })
            {
                process::kill_group(t);
                process::wait_gone(t, Duration::from_secs(5));
            }
        }
        let _ = std::fs::remove_file(&self.paths.run_state);
        let _ = std::fs::remove_file(&self.paths.qmp);
        let _ = std::fs::remove_file(&self.paths.qmp_events);
        let _ = std::fs::remove_file(&self.paths.swtpm_sock);
        let _ = std::fs::remove_file(&self.paths.vnc);
        let _ = std::fs::remove_file(&self.paths.vnc_password);
    }

    /// ACPI power button, wait up to `shutdown_timeout`, then kill. Returns false if already stopped.
    pub fn down(&mut self, on_event: &mut dyn FnMut(VmEvent)) -> Result<bool, VmError> {
        let Some(rs) = self.running() else {
            self.kill_now();
            on_event(VmEvent::Note {
                message: format!("VM '{}' is not running", self.cfg.name),
            });
            return Ok(false);
        };
        let limit = Duration::from_secs(self.cfg.shutdown_timeout);
        let t = Instant::now();
        on_event(VmEvent::Started {
            phase: Phase::ShuttingDown,
            timeout: limit,
        });
        // Linux guests: sync and power off over SSH first (minimal initramfs guests ignore the
        // ACPI power button), bounded; then the power button; then kill.
        let mut gone = false;
        let mut why = Vec::new();
        if self.cfg.os == GuestOs::Linux {
            let ssh_limit = limit.min(SSH_POWEROFF_LIMIT);
            match self.poweroff_over_ssh(&rs) {
                Ok(()) => gone = self.wait_exit(&rs, t, t.elapsed() + ssh_limit, on_event),
                Err(e) => why.push(format!("poweroff over SSH failed ({e})")),
            }
            if !gone && why.is_empty() {
                why.push(format!(
                    "the guest did not power off within {} s of `poweroff` over SSH",
                    ssh_limit.as_secs()
                ));
            }
        }
        if !gone {
            match Qmp::connect(&self.paths.qmp, Duration::from_secs(5))
                .and_then(|mut q| q.system_powerdown())
            {
                Ok(()) => {
                    gone = self.wait_exit(&rs, t, limit, on_event);
                    if !gone {
                        why.push(format!(
                            "the guest did not power off within {} s of the ACPI power button",
                            limit.as_secs()
                        ));
                    }
                }
                Err(e) => why.push(format!("the power button could not be pressed ({e})")),
            }
        }
        if !gone {
            on_event(VmEvent::Warning {
                message: format!("{}; killing QEMU", why.join("; ")),
            });
        }
        self.kill_now();
        on_event(VmEvent::Finished {
            phase: Phase::ShuttingDown,
            elapsed: t.elapsed(),
        });
        Ok(true)
    }

    /// `sync` and power off the guest over SSH; the connection may drop while it does.
    pub(super) fn poweroff_over_ssh(&self, rs: &RunState) -> Result<(), VmError> {
        let Some(key) = keys::existing(&self.cfg, &self.dirs.state) else {
            return Err(VmError::Config("no SSH key for this VM".into()));
        };
        let mut o = self.session_options();
        o.accept_new_host_key = false;
        o.connect_timeout = Duration::from_secs(5);
        let mut s = Session::connect(&self.endpoint(rs.ssh_port, &key), &o)?;
        let cmd = shell(
            GuestOs::Linux,
            "sync; (sleep 0.2; poweroff -f 2>/dev/null || echo o > /proc/sysrq-trigger) >/dev/null 2>&1 &",
        )
        .timeout(Duration::from_secs(10));
        s.exec_capture(&cmd)?;
        Ok(())
    }

    /// Wait until QEMU exits, at most until `deadline` after `t`; a `Waiting` event each second.
    pub(super) fn wait_exit(
        &mut self,
        rs: &RunState,
        t: Instant,
        deadline: Duration,
        on_event: &mut dyn FnMut(VmEvent),
    ) -> bool {
        let mut tick = t.elapsed().as_secs();
        while t.elapsed() < deadline {
            let ours_exited = self.qemu.as_mut().is_some_and(|q| q.try_wait().is_some());
            if ours_exited || !process::alive(rs.pid) {
                return true;
            }
            std::thread::sleep(POLL);
            if t.elapsed().as_secs() > tick {
                tick = t.elapsed().as_secs();
                on_event(VmEvent::Waiting {
                    phase: Phase::ShuttingDown,
                    elapsed: t.elapsed(),
                });
            }
        }
        false
    }

    /// Stop (hard) and throw the overlay away: the next `up` starts from the base image.
    pub fn reset(&mut self) -> Result<bool, VmError> {
        let was_running = self.running().is_some();
        self.kill_now();
        for f in [
            &self.paths.overlay,
            &self.paths.vars,
            &self.paths.dir.join("known_hosts"),
        ] {
            match std::fs::remove_file(f) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(VmError::io("removing the overlay", f)(e)),
            }
        }
        let _ = std::fs::remove_dir_all(&self.paths.tpm_dir);
        Ok(was_running)
    }

    /// Stop and remove all of this VM's state; `all` also removes the base image harness made.
    pub fn destroy(&mut self, all: bool) -> Result<super::super::Destroyed, VmError> {
        let mut done = super::super::Destroyed {
            was_running: self.running().is_some(),
            had_state: has_state(&self.paths.dir),
            base_image_removed: None,
        };
        let base = RunState::read(&self.paths.run_state).and_then(|r| r.base_image);
        self.kill_now();
        let base = base
            .or_else(|| {
                image::info(&self.paths.overlay)
                    .ok()
                    .and_then(|i| i.backing_file)
            })
            .or_else(|| self.derived_base());
        if self.paths.dir.exists() {
            std::fs::remove_dir_all(&self.paths.dir)
                .map_err(VmError::io("removing the VM state", &self.paths.dir))?;
        }
        if let Some(sock_dir) = self.paths.qmp.parent()
            && sock_dir != self.paths.dir
        {
            let _ = std::fs::remove_dir_all(sock_dir);
        }
        if all && let Some(base) = base {
            // Only images harness made (under <state>/images), never a user's configured image.
            if base.starts_with(&self.paths.images) {
                for f in [base.clone(), base.with_extension("vars.qcow2")] {
                    if f.exists() {
                        std::fs::remove_file(&f)
                            .map_err(VmError::io("removing the base image", &f))?;
                        done.base_image_removed.get_or_insert_with(|| base.clone());
                    }
                }
            }
        }
        Ok(done)
    }

    /// The base image harness makes for this configuration, without creating it (for `destroy
    /// --all` after `reset` removed the overlay that points at it).
    pub(super) fn derived_base(&self) -> Option<PathBuf> {
        if self.cfg.image.is_some() {
            return None;
        }
        match self.cfg.os {
            GuestOs::Linux => Some(
                self.paths
                    .images
                    .join(format!("linux-data-{}g.qcow2", self.cfg.data_disk_gib)),
            ),
            GuestOs::Windows => windows::cached_base_path(self),
        }
    }
}
