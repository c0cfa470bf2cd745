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
        "VM '{name}' is in use by {}; wait for it to finish (lock file {})",
        super::lock::describe(holders),
        lock.display()
    )]
    Busy {
        name: String,
        /// The live processes recorded as holding the lock (may be empty if they left no record).
        holders: Vec<super::lock::Holder>,
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

    #[error("{0}")]
    Timeout(Box<ReadinessTimeout>),

    #[error(
        "{phase} under {accel} stalled: {detail}; if KVM half-works on this host, set [vm] accel = \"tcg\"\nserial log: {}",
        serial_log.display()
    )]
    Stalled {
        phase: Phase,
        accel: &'static str,
        detail: String,
        serial_log: PathBuf,
    },

    #[error(
        "[vm] setup command `{command}` failed in the guest (exit {status}): {output}\nFix the command in [vm] setup, or try it with `harness exec -- '{command}'`"
    )]
    Setup {
        command: String,
        status: i32,
        output: String,
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

/// A readiness phase ran out of time: where to look (boxed in [`VmError::Timeout`]).
#[derive(Debug)]
pub struct ReadinessTimeout {
    pub phase: Phase,
    pub elapsed: Duration,
    pub limit: Duration,
    /// PNG (or PPM) of the screen at the timeout, when QEMU could take one.
    pub screendump: Option<PathBuf>,
    pub screendump_error: Option<String>,
    pub serial_log: PathBuf,
    pub serial_tail: String,
    /// The accelerator the guest ran under ("kvm" or "tcg"), when known.
    pub accel: Option<&'static str>,
}

impl std::fmt::Display for ReadinessTimeout {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let shot = match (&self.screendump, &self.screendump_error) {
            (Some(p), _) => p.display().to_string(),
            (None, e) => format!("not taken ({})", e.as_deref().unwrap_or("unknown reason")),
        };
        let (under, fix) = match self.accel {
            Some("kvm") => (
                " under KVM",
                "Look at the screendump to see where the guest is stuck. If it never got past the firmware, KVM may only half-work on this host: set [vm] accel = \"tcg\" (or \"auto\", which checks). Otherwise raise the timeout in [vm].",
            ),
            Some(_) => (
                " under TCG",
                "Look at the screendump to see where the guest is stuck; TCG is slow, so a Windows guest may need a larger timeout in [vm] (or a host with KVM).",
            ),
            None => (
                "",
                "Raise the timeout in [vm] or look at the screendump to see where the guest is stuck.",
            ),
        };
        write!(
            f,
            "{}{under} timed out after {:.0?} (limit {:.0?}); screendump: {shot}; serial log: {}\n--- serial log tail ---\n{}\n{fix}",
            self.phase,
            self.elapsed,
            self.limit,
            self.serial_log.display(),
            self.serial_tail
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn timeout(accel: Option<&'static str>) -> String {
        ReadinessTimeout {
            phase: Phase::Booting,
            elapsed: Duration::from_secs(600),
            limit: Duration::from_secs(600),
            screendump: Some("/s/booting.png".into()),
            screendump_error: None,
            serial_log: "/s/serial.log".into(),
            serial_tail: "Booting from ROM...".into(),
            accel,
        }
        .to_string()
    }

    #[test]
    fn boot_timeouts_name_the_accelerator_and_the_fix() {
        let kvm = timeout(Some("kvm"));
        assert!(kvm.starts_with("booting under KVM timed out"), "{kvm}");
        assert!(kvm.contains("accel = \"tcg\""), "{kvm}");
        let tcg = timeout(Some("tcg"));
        assert!(
            tcg.starts_with("booting under TCG timed out") && !tcg.contains("accel ="),
            "{tcg}"
        );
        assert!(timeout(None).starts_with("booting timed out"));
    }
}
