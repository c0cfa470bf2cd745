//! Snapshots of a QEMU VM (RAM and disk, in its qcow2 overlay) over QMP, and the record of what
//! the ready snapshot was made from.

use super::*;

impl QemuVm {
    pub(super) fn snapshot_record(&self) -> PathBuf {
        self.paths.dir.join("snapshots.json")
    }

    /// A ready snapshot made from another kernel, initrd, image or machine settings is deleted
    /// (with the overlay, when the base image itself changed), so `up` boots cold and saves a new
    /// one instead of silently testing the old guest.
    pub(super) fn drop_stale_ready_snapshot(
        &mut self,
        base: &Path,
        opts: &UpOptions,
        on_event: &mut dyn FnMut(VmEvent),
    ) -> Result<(), VmError> {
        let ready = self.cfg.ready_snapshot.clone();
        if ready.is_empty() || opts.restore.is_some() || !self.has_snapshot(&ready)? {
            return Ok(());
        }
        let now = identity::Identity::of(&self.cfg, base)?;
        let mut recorded = identity::Recorded::read(&self.snapshot_record());
        let made_from = recorded.0.get(&ready);
        let Some(why) = identity::stale_reason(&ready, &now, made_from) else {
            return Ok(());
        };
        let base_changed = made_from.is_some_and(|m| m.base != now.base);
        on_event(VmEvent::Warning {
            message: format!("{why}: booting cold and replacing it"),
        });
        if base_changed {
            // The overlay's writes sit on the old base: start over from the new one.
            for f in [&self.paths.overlay, &self.paths.vars] {
                if f.exists() {
                    std::fs::remove_file(f)
                        .map_err(VmError::io("removing the stale overlay", f))?;
                }
            }
        } else {
            image::delete_snapshot(&self.paths.overlay, &ready)?;
            if self.paths.vars.is_file() {
                let _ = image::delete_snapshot(&self.paths.vars, &ready);
            }
        }
        recorded.0.remove(&ready);
        recorded.write(&self.snapshot_record())?;
        Ok(())
    }

    pub(super) fn has_snapshot(&self, name: &str) -> Result<bool, VmError> {
        if !self.paths.overlay.is_file() {
            return Ok(false);
        }
        Ok(image::info(&self.paths.overlay)?
            .snapshots
            .iter()
            .any(|s| s.name == name))
    }

    pub(super) fn qmp(&mut self) -> Result<Qmp, VmError> {
        if self.running().is_none() {
            return Err(VmError::NotRunning {
                name: self.cfg.name.clone(),
            });
        }
        let mut q = Qmp::connect(&self.paths.qmp, Duration::from_secs(5))?;
        q.set_reply_timeout(Duration::from_secs(self.cfg.snapshot_timeout))?;
        Ok(q)
    }

    /// Save RAM + disk of the running VM under `name` (replacing one of the same name).
    pub fn snapshot_save(
        &mut self,
        name: &str,
        on_event: &mut dyn FnMut(VmEvent),
    ) -> Result<(), VmError> {
        image::validate_snapshot_name(name)?;
        let mut q = self.qmp()?;
        let t = Instant::now();
        on_event(VmEvent::Started {
            phase: Phase::SavingSnapshot,
            timeout: Duration::from_secs(self.cfg.snapshot_timeout),
        });
        q.hmp(&format!("savevm {name}"))
            .map_err(|e| VmError::Snapshot {
                name: name.into(),
                detail: e.to_string(),
            })?;
        on_event(VmEvent::Finished {
            phase: Phase::SavingSnapshot,
            elapsed: t.elapsed(),
        });
        if let Some(base) = RunState::read(&self.paths.run_state).and_then(|r| r.base_image) {
            let mut recorded = identity::Recorded::read(&self.snapshot_record());
            recorded
                .0
                .insert(name.to_string(), identity::Identity::of(&self.cfg, &base)?);
            recorded.write(&self.snapshot_record())?;
        }
        Ok(())
    }

    /// `up` with `restore` in a running VM: `loadvm` of snapshot `name`, then log in again.
    pub(super) fn restore_running(
        &mut self,
        rs: RunState,
        name: &str,
        opts: &UpOptions,
        on_event: &mut dyn FnMut(VmEvent),
    ) -> Result<UpOutcome, VmError> {
        image::validate_snapshot_name(name)?;
        let started = Instant::now();
        let mut q = self.qmp()?;
        let limit = Duration::from_secs(self.cfg.snapshot_timeout);
        on_event(VmEvent::Started {
            phase: Phase::RestoringSnapshot,
            timeout: limit,
        });
        q.hmp(&format!("loadvm {name}"))
            .map_err(|e| VmError::Snapshot {
                name: name.into(),
                detail: e.to_string(),
            })?;
        on_event(VmEvent::Finished {
            phase: Phase::RestoringSnapshot,
            elapsed: started.elapsed(),
        });
        let key = keys::resolve(&self.cfg, &self.dirs.state)?;
        let ep = self.endpoint(rs.ssh_port, &key);
        let mut session = self.login(&ep, opts.cancel.as_ref(), on_event)?;
        self.resync_clock(&mut session, on_event)?;
        Ok(UpOutcome {
            endpoint: ep,
            restored_snapshot: Some(name.to_string()),
            accel: if rs.accel == "kvm" {
                AccelKind::Kvm
            } else {
                AccelKind::Tcg
            },
            elapsed: started.elapsed(),
            known_hosts: self.session_options().known_hosts,
            // Set back, not left as it was: `[vm] setup` runs again.
            already_running: false,
        })
    }

    pub fn snapshot_list(&mut self) -> Result<Vec<SnapshotInfo>, VmError> {
        if !self.paths.overlay.is_file() {
            return Ok(Vec::new());
        }
        Ok(image::info(&self.paths.overlay)?.snapshots)
    }

    pub fn snapshot_delete(&mut self, name: &str) -> Result<(), VmError> {
        image::validate_snapshot_name(name)?;
        if !self.snapshot_list()?.iter().any(|s| s.name == name) {
            return Err(VmError::Snapshot {
                name: name.into(),
                detail: "no such snapshot (see `harness snapshot list`)".into(),
            });
        }
        if self.running().is_some() {
            let mut q = self.qmp()?;
            q.hmp(&format!("delvm {name}"))
                .map_err(|e| VmError::Snapshot {
                    name: name.into(),
                    detail: e.to_string(),
                })?;
            return Ok(());
        }
        image::delete_snapshot(&self.paths.overlay, name)?;
        if self.paths.vars.is_file() {
            let _ = image::delete_snapshot(&self.paths.vars, name);
        }
        Ok(())
    }
}
