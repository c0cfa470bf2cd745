//! What can go wrong installing the runtime or an extension, each with what to do next.

use std::path::PathBuf;

use crate::session::SessionError;

use super::events::Step;

/// Errors of the install engine.
#[derive(Debug, thiserror::Error)]
pub enum InstallError {
    /// The input or configuration cannot work; nothing was changed in the guest.
    #[error("cannot install: {0}")]
    Invalid(String),

    /// A guest session operation failed during a step.
    #[error("{step} failed: {source}")]
    Session {
        /// The step.
        step: Step,
        /// The session error (its message says what to do next).
        #[source]
        source: SessionError,
    },

    /// A step script printed JSON of an unexpected shape.
    #[error(
        "{step}: the guest script's result could not be read ({detail}); this is a harness bug, please report it"
    )]
    BadResult {
        /// The step.
        step: Step,
        /// What did not fit.
        detail: String,
    },

    /// The runtime installer ran, but the result is not a working runtime.
    #[error(
        "installing the efW runtime ({method}) failed: {}\n{}Logs: {}\nNext: read the logs above; \
         `harness install --force` retries from a clean uninstall",
        problems.join("; "),
        excerpt_block(excerpt),
        logs_dir.display()
    )]
    InstallFailed {
        /// Method used.
        method: String,
        /// What is wrong.
        problems: Vec<String>,
        /// Relevant log lines.
        excerpt: Vec<String>,
        /// Where the collected logs are.
        logs_dir: PathBuf,
    },

    /// The previous runtime could not be removed.
    #[error(
        "uninstalling the previous efW runtime failed: {}\n{}Logs: {}\nNext: uninstall it by hand \
         (setup-ebpf.ps1 -Uninstall) or recreate the VM (`harness reset`)",
        problems.join("; "),
        excerpt_block(excerpt),
        logs_dir.display()
    )]
    UninstallFailed {
        /// What is wrong.
        problems: Vec<String>,
        /// Relevant output or log lines.
        excerpt: Vec<String>,
        /// Where the collected logs are.
        logs_dir: PathBuf,
    },

    /// The install finished but a fresh session does not see a working runtime.
    #[error(
        "the efW runtime is installed but not usable from a new SSH session: {}\nLogs: {}",
        problems.join("; "),
        logs_dir.display()
    )]
    VerifyFailed {
        /// What is wrong.
        problems: Vec<String>,
        /// Where the collected logs are.
        logs_dir: PathBuf,
    },

    /// A Linux build's `setup.sh` failed.
    #[error(
        "`sh setup.sh{}` failed with exit code {code} in {dir}\n{}Full log: {}",
        if *uninstall { " --uninstall" } else { "" },
        excerpt_block(excerpt),
        log.as_ref().map(|p| p.display().to_string()).unwrap_or_else(|| "(not collected)".into())
    )]
    SetupShFailed {
        /// Whether it was the uninstall.
        uninstall: bool,
        /// Exit code.
        code: i64,
        /// Guest build directory.
        dir: String,
        /// Relevant log lines.
        excerpt: Vec<String>,
        /// Local copy of the log.
        log: Option<PathBuf>,
    },

    /// PsExec64.exe is needed but not available on the host.
    #[error(
        "PsExec64.exe is needed by efW's installer and the guest may have no internet, but it is not \
         on this host (looked at: {}); download Sysinternals PSTools once and put PsExec64.exe there, \
         or set [install] psexec",
        searched.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", ")
    )]
    PsexecMissing {
        /// Host paths tried.
        searched: Vec<PathBuf>,
    },

    /// An extension step failed.
    #[error("extension {name}: {step} failed: {}\n{}Next: {hint}", problems.join("; "), excerpt_block(excerpt))]
    Extension {
        /// Extension name.
        name: String,
        /// The step.
        step: Step,
        /// What is wrong.
        problems: Vec<String>,
        /// Tool output lines.
        excerpt: Vec<String>,
        /// What to do.
        hint: String,
    },

    /// The caller cancelled (Ctrl-C).
    #[error(
        "install cancelled during {step}; the guest may hold a half-installed runtime: the next \
             `harness install` uninstalls it first"
    )]
    Cancelled {
        /// The step that was running.
        step: Step,
    },
}

fn excerpt_block(lines: &[String]) -> String {
    if lines.is_empty() {
        return String::new();
    }
    let mut s = String::from("--- relevant log lines ---\n");
    for l in lines {
        s.push_str("  ");
        s.push_str(l);
        s.push('\n');
    }
    s
}

impl InstallError {
    pub(crate) fn session(step: Step) -> impl FnOnce(SessionError) -> InstallError {
        move |source| InstallError::Session { step, source }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failure_messages_carry_the_log_excerpt_and_next_step() {
        let e = InstallError::InstallFailed {
            method: "install-psm1".into(),
            problems: vec!["service eBPFCore does not exist".into()],
            excerpt: vec!["MSI (s): Return value 3.".into()],
            logs_dir: PathBuf::from("/r/install-logs"),
        };
        let s = e.to_string();
        assert!(s.contains("service eBPFCore does not exist"), "{s}");
        assert!(s.contains("  MSI (s): Return value 3.\n"), "{s}");
        assert!(s.contains("/r/install-logs"), "{s}");
        assert!(s.contains("--force"), "{s}");
        let e = InstallError::SetupShFailed {
            uninstall: false,
            code: 3,
            dir: "/var/tmp/h/k".into(),
            excerpt: vec!["setup: cannot write".into()],
            log: None,
        };
        assert!(
            e.to_string()
                .starts_with("`sh setup.sh` failed with exit code 3"),
            "{e}"
        );
    }
}
