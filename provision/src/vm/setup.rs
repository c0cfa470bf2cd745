//! `[vm] setup`: commands run in the guest after every boot or snapshot restore, before anything
//! else uses it (mount bpffs, debugfs, tracefs and cgroup2; modprobe), like vimto's `setup`.

use std::time::{Duration, Instant};

use super::UpOutcome;
use super::error::VmError;
use super::events::{Phase, VmEvent};
use crate::session::wrap::shell;
use crate::session::{Session, SessionOptions};

/// How long one setup command may run.
pub const SETUP_COMMAND_TIMEOUT: Duration = Duration::from_secs(300);

/// Run `commands` in order in the guest `up` made ready; the first failure stops with its output.
pub fn run(
    commands: &[String],
    up: &UpOutcome,
    on_event: &mut dyn FnMut(VmEvent),
) -> Result<(), VmError> {
    if commands.is_empty() || up.already_running {
        return Ok(());
    }
    let t = Instant::now();
    on_event(VmEvent::Started {
        phase: Phase::Setup,
        timeout: SETUP_COMMAND_TIMEOUT * commands.len() as u32,
    });
    let opts = SessionOptions::new(up.known_hosts.clone());
    let mut s = Session::connect_with_retry(&up.endpoint, &opts, Duration::from_secs(60))?;
    for command in commands {
        let out = s.exec_capture(&shell(up.endpoint.os, command).timeout(SETUP_COMMAND_TIMEOUT))?;
        if !out.status.success() {
            return Err(VmError::Setup {
                command: command.clone(),
                status: out.status.code,
                output: format!("{}{}", out.stdout, out.stderr).trim().to_string(),
            });
        }
    }
    on_event(VmEvent::Finished {
        phase: Phase::Setup,
        elapsed: t.elapsed(),
    });
    Ok(())
}
