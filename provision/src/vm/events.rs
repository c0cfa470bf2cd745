//! Typed progress of VM operations: the library reports, the CLI renders (bars, JSON, CI groups).

use std::time::Duration;

/// A named step of bringing a VM up or down; each has its own timeout.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Phase {
    /// Creating overlays, firmware variables, unattended media.
    PreparingDisk,
    /// Probing whether KVM really runs a guest.
    ProbingAccelerator,
    /// Windows Setup from the ISO until its first reboot into the installed system.
    InstallingWindows,
    /// The installed Windows system's first boot until sshd answers.
    FirstBoot,
    /// Base setup of a fresh install before freezing the golden image.
    BaseSetup,
    /// Kernel/firmware boot until the guest's SSH port answers.
    Booting,
    /// Loading a RAM+disk snapshot.
    RestoringSnapshot,
    /// SSH port answers; waiting for a banner and a login.
    WaitingForSsh,
    /// Setting the guest clock after a snapshot restore.
    ResyncingClock,
    /// `[vm] setup` commands after a boot or restore.
    Setup,
    /// ACPI powerdown until QEMU exits.
    ShuttingDown,
    /// Saving a RAM+disk snapshot.
    SavingSnapshot,
}

impl Phase {
    /// Human name used in messages ("waiting for SSH").
    pub fn label(self) -> &'static str {
        match self {
            Phase::PreparingDisk => "preparing disk",
            Phase::ProbingAccelerator => "probing accelerator",
            Phase::InstallingWindows => "installing Windows",
            Phase::FirstBoot => "first boot",
            Phase::BaseSetup => "base setup",
            Phase::Booting => "booting",
            Phase::RestoringSnapshot => "restoring snapshot",
            Phase::WaitingForSsh => "waiting for SSH",
            Phase::ResyncingClock => "resyncing clock",
            Phase::Setup => "running [vm] setup",
            Phase::ShuttingDown => "shutting down",
            Phase::SavingSnapshot => "saving snapshot",
        }
    }
}

impl std::fmt::Display for Phase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.label())
    }
}

/// One event of a VM operation, in order: `Started`, any `Waiting`, then `Finished` per phase.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
#[serde(tag = "event", rename_all = "kebab-case")]
pub enum VmEvent {
    /// A phase began; it fails after `timeout`.
    Started { phase: Phase, timeout: Duration },
    /// Still in `phase` (sent about once a second, so a UI can show elapsed time).
    Waiting { phase: Phase, elapsed: Duration },
    /// A phase completed.
    Finished { phase: Phase, elapsed: Duration },
    /// Something the user must know (e.g. TCG fallback: everything will be slow).
    Warning { message: String },
    /// A plain note (e.g. "already running", "restored snapshot ready").
    Note { message: String },
}
