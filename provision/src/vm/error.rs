//! What can go wrong driving a VM; every message says what failed, why, and what to do next.

use std::path::PathBuf;
use std::time::Duration;

use super::events::Phase;

/// Errors of [`super::Vm`].
#[derive(Debug, thiserror::Error)]
pub enum VmError {
    #[error("invalid [vm] configuration: {0}")]
    Config(String),

    #[error(
        "VM '{name}' is being driven by another harness process{}; wait for it to finish (lock file {})",
        holder.map(|p| format!(" (pid {p})")).unwrap_or_default(),
        lock.display()
    )]
    Busy {
        name: String,
        holder: Option<u32>,
        lock: PathBuf,
    },

    #[error("cannot start {program}: {source}; is it installed (see .ci/install-deps)?")]
    Spawn {
        program: String,
        #[source]
        source: std::io::Error,
    },

    #[error("{program} {args} failed ({status}): {stderr}")]
    Tool {
        program: String,
        args: String,
        status: String,
        stderr: String,
    },

    #[error(
        "QEMU exited ({status}) during {phase}: {stderr}\nQEMU log: {}\nserial log: {}",
        qemu_log.display(),
        serial_log.display()
    )]
    QemuExited {
        phase: Phase,
        status: String,
        stderr: String,
        qemu_log: PathBuf,
        serial_log: PathBuf,
    },

    #[error(
        "{phase} timed out after {:.0?} (limit {:.0?}); screendump: {}; serial log: {}\n--- serial log tail ---\n{serial_tail}\nRaise the timeout in [vm] or look at the screendump to see where the guest is stuck.",
        elapsed,
        limit,
        screendump.as_ref().map(|p| p.display().to_string()).unwrap_or_else(|| format!("not taken ({})", screendump_error.as_deref().unwrap_or("unknown reason"))),
        serial_log.display()
    )]
    Timeout {
        phase: Phase,
        elapsed: Duration,
        limit: Duration,
        screendump: Option<PathBuf>,
        screendump_error: Option<String>,
        serial_log: PathBuf,
        serial_tail: String,
    },

    #[error("{phase} cancelled (Ctrl-C); QEMU was stopped")]
    Cancelled { phase: Phase },

    #[error("QMP {command} failed: {detail}")]
    Qmp { command: String, detail: String },

    #[error("VM '{name}' is not running; start it with `harness up`")]
    NotRunning { name: String },

    #[error("VM '{name}' is running; {what}")]
    Running { name: String, what: String },

    #[error("the {backend} backend does not support {what}")]
    Unsupported { backend: &'static str, what: String },

    #[error("snapshot '{name}': {detail}")]
    Snapshot { name: String, detail: String },

    #[error("guest session: {0}")]
    Session(#[from] crate::session::SessionError),

    #[error("{what} ({}): {source}", path.display())]
    Io {
        what: String,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

impl VmError {
    pub(crate) fn io(
        what: impl Into<String>,
        path: impl Into<PathBuf>,
    ) -> impl FnOnce(std::io::Error) -> VmError {
        let what = what.into();
        let path = path.into();
        move |source| VmError::Io { what, path, source }
    }
}
