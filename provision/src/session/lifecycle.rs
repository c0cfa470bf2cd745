//! Session lifecycle steps on the guest: restart sshd (so PATH changes reach new sessions), the
//! boot id, reboot and wait for it to come back.
use std::time::{Duration, Instant};

use super::connect::*;
use super::script::{self, builtin};
use super::ssh::*;
use super::wrap;
use super::{GuestOs, SessionError};

impl Session {
    /// Restarts sshd in the guest so that new sessions see a new environment, then reconnects
    /// with backoff until a fresh session answers and `check` returns true, all within
    /// `deadline`. Windows: `Restart-Service sshd` from a process outside the session; the new
    /// session must come from a new sshd process. Linux: `linux_restart_command`.
    pub fn restart_sshd(
        &mut self,
        check: &mut dyn FnMut(&mut Session) -> Result<bool, SessionError>,
        deadline: Duration,
    ) -> Result<(), SessionError> {
        let until = Instant::now() + deadline;
        let old_pid = match self.ep.os {
            GuestOs::Windows => {
                match self.run_script_with(
                    &builtin::RESTART_SSHD_WINDOWS,
                    &[],
                    Some(PROBE_TIMEOUT),
                    &mut |_, _| {},
                ) {
                    Ok(v) => v.get("old_sshd_pid").and_then(|p| p.as_u64()),
                    // The restart may already have taken the session down: carry on and see.
                    Err(e) if e.is_connection_error() => {
                        tracing::info!("connection dropped while triggering the sshd restart: {e}");
                        None
                    }
                    Err(e) => return Err(e),
                }
            }
            GuestOs::Linux => {
                let cmd = wrap::shell(GuestOs::Linux, &self.opts.linux_restart_command)
                    .timeout(PROBE_TIMEOUT);
                match self.exec_capture(&cmd) {
                    Ok(out) if out.status.success() => None,
                    Ok(out) => {
                        return Err(SessionError::ScriptFailed {
                            script: format!(
                                "sshd restart command `{}`",
                                self.opts.linux_restart_command
                            ),
                            code: out.status.code,
                            error: None,
                            stdout_tail: script::tail(&out.stdout),
                            stderr_tail: script::tail(&out.stderr),
                        });
                    }
                    Err(e) if e.is_connection_error() => None,
                    Err(e) => return Err(e),
                }
            }
        };
        self.disconnect();
        let mut fresh = |s: &mut Session| -> Result<bool, SessionError> {
            if let Some(old) = old_pid {
                let probe = s.run_script_with(
                    &builtin::PROBE_WINDOWS,
                    &[],
                    Some(PROBE_TIMEOUT),
                    &mut |_, _| {},
                )?;
                if probe.get("sshd_pid").and_then(|p| p.as_u64()) == Some(old) {
                    return Ok(false);
                }
            }
            check(s)
        };
        self.wait_back(
            until,
            deadline,
            "a fresh sshd session that passes the check",
            &mut fresh,
        )
    }

    /// The guest's boot id (Linux: `/proc/sys/kernel/random/boot_id`; Windows: the last boot
    /// time): it changes when the guest reboots, e.g. after a crash.
    pub fn boot_id(&mut self) -> Result<String, SessionError> {
        let probe = match self.ep.os {
            GuestOs::Windows => builtin::PROBE_WINDOWS,
            GuestOs::Linux => builtin::PROBE_LINUX,
        };
        let v = self.run_script_with(&probe, &[], Some(PROBE_TIMEOUT), &mut |_, _| {})?;
        Ok(v["boot_id"].as_str().unwrap_or_default().to_string())
    }

    /// Reboots the guest, waits for it to go down and come back (a new boot id), within
    /// `deadline`.
    pub fn reboot(&mut self, deadline: Duration) -> Result<(), SessionError> {
        let until = Instant::now() + deadline;
        let (script, probe) = match self.ep.os {
            GuestOs::Windows => (builtin::REBOOT_WINDOWS, builtin::PROBE_WINDOWS),
            GuestOs::Linux => (builtin::REBOOT_LINUX, builtin::PROBE_LINUX),
        };
        let before = self.run_script_with(&probe, &[], Some(PROBE_TIMEOUT), &mut |_, _| {})?;
        let old_boot = before.get("boot_id").cloned().unwrap_or_default();
        match self.run_script_with(&script, &[], Some(PROBE_TIMEOUT), &mut |_, _| {}) {
            Ok(_) => {}
            Err(e) if e.is_connection_error() => {}
            Err(e) => return Err(e),
        }
        self.disconnect();
        let mut rebooted = |s: &mut Session| -> Result<bool, SessionError> {
            let now = s.run_script_with(&probe, &[], Some(PROBE_TIMEOUT), &mut |_, _| {})?;
            Ok(now.get("boot_id").cloned().unwrap_or_default() != old_boot)
        };
        self.wait_back(
            until,
            deadline,
            "the guest to reboot (new boot id)",
            &mut rebooted,
        )
    }

    /// Reconnects with backoff until `pred` holds on a fresh connection, or `until`.
    pub(super) fn wait_back(
        &mut self,
        until: Instant,
        deadline: Duration,
        waiting_for: &str,
        pred: &mut dyn FnMut(&mut Session) -> Result<bool, SessionError>,
    ) -> Result<(), SessionError> {
        let mut backoff = Duration::from_millis(100);
        let mut last = String::from("no attempt made");
        loop {
            self.check_cancel(&format!("waiting for {waiting_for}"))?;
            let now = Instant::now();
            if now >= until {
                return Err(SessionError::NotBack {
                    endpoint: self.ep.to_string(),
                    deadline,
                    waiting_for: waiting_for.to_string(),
                    last,
                });
            }
            let attempt = self
                .opts
                .connect_timeout
                .min(until - now)
                .max(Duration::from_millis(200));
            match open(&self.ep, &self.opts, attempt) {
                Ok(conn) => {
                    self.conn = Some(conn);
                    match pred(self) {
                        Ok(true) => return Ok(()),
                        Ok(false) => {
                            last = format!("connected, but still waiting for {waiting_for}")
                        }
                        Err(e @ SessionError::Cancelled { .. }) => return Err(e),
                        Err(e) => last = e.to_string(),
                    }
                    self.disconnect();
                }
                Err(e @ (SessionError::HostKeyChanged { .. } | SessionError::Auth { .. })) => {
                    return Err(e);
                }
                Err(e) => last = e.to_string(),
            }
            tracing::debug!(endpoint = %self.ep, "not back yet: {last}");
            let left = until.saturating_duration_since(Instant::now());
            std::thread::sleep(backoff.min(left));
            backoff = (backoff * 2).min(Duration::from_secs(2));
        }
    }
}
