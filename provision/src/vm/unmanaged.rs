//! What the libvirt and ssh backends share: machines harness does not run itself, so there is no
//! screen to capture and no serial log, and SSH answers on port 22 unless `[vm] port` says
//! otherwise.

use std::time::Instant;

use super::error::{ReadinessTimeout, VmError};
use super::events::Phase;
use super::readiness::WaitError;
use super::{AccelKind, UpOutcome, VmDirs};
use crate::config::VmConfig;
use crate::session::{Endpoint, SessionOptions};

/// The configured SSH port; 22 when `[vm] port` is unset.
pub(super) fn ssh_port(cfg: &VmConfig) -> u16 {
    if cfg.port == 0 { 22 } else { cfg.port }
}

/// The `[vm]` endpoint, on [`ssh_port`].
pub(super) fn endpoint(cfg: &VmConfig, dirs: &VmDirs) -> Endpoint {
    Endpoint::from_config(cfg, &dirs.state, Some(ssh_port(cfg)))
}

/// A wait for the machine that did not end well, as the error: `no_screen` says why there is
/// no screendump, `nothing_answered` stands where a serial log tail would.
pub(super) fn wait_failed(
    e: WaitError<VmError>,
    phase: Phase,
    no_screen: &str,
    nothing_answered: String,
) -> VmError {
    match e {
        WaitError::Failed(e) => e,
        WaitError::Cancelled => VmError::Cancelled { phase },
        WaitError::TimedOut { elapsed, limit } => VmError::Timeout(Box::new(ReadinessTimeout {
            phase,
            elapsed,
            limit,
            screendump: None,
            screendump_error: Some(no_screen.into()),
            serial_log: Default::default(),
            serial_tail: nothing_answered,
            accel: None,
        })),
    }
}

/// The outcome of an `up` (begun at `started`) that found SSH answering at `endpoint`.
pub(super) fn up_outcome(
    endpoint: Endpoint,
    started: Instant,
    dirs: &VmDirs,
    already_running: bool,
) -> UpOutcome {
    UpOutcome {
        endpoint,
        restored_snapshot: None,
        accel: AccelKind::Kvm,
        elapsed: started.elapsed(),
        known_hosts: SessionOptions::in_state(&dirs.state).known_hosts,
        already_running,
    }
}
