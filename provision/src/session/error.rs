//! What can go wrong talking to a guest, each with what to do next.

use std::path::PathBuf;
use std::time::Duration;

/// Errors of [`super::Session`]. Every message names the endpoint or step and the next action.
#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    #[error(
        "cannot connect to {endpoint}: {detail}; check that the VM is running and sshd listens on that port"
    )]
    Connect { endpoint: String, detail: String },

    #[error("SSH handshake with {endpoint} failed: {detail}; is that port really an SSH server?")]
    Handshake { endpoint: String, detail: String },

    #[error(
        "SSH authentication as {user} at {endpoint} failed ({how}): {detail}; check `[vm] user` and `[vm] identity`, and that the public key is in the guest's authorized keys"
    )]
    Auth {
        endpoint: String,
        user: String,
        how: String,
        detail: String,
    },

    #[error(
        "host key of {endpoint} changed: pinned {pinned}, presented {presented} (pins in {}); if the VM was re-created on purpose, re-run with --accept-new-host-key, otherwise something else answers on that address",
        known_hosts.display()
    )]
    HostKeyChanged {
        endpoint: String,
        pinned: String,
        presented: String,
        known_hosts: PathBuf,
    },

    #[error("connection to {endpoint} lost while {during}: {detail}")]
    ConnectionLost {
        endpoint: String,
        during: String,
        detail: String,
    },

    #[error(
        "{what} timed out after {:.1?}; the remote process tree was killed",
        after
    )]
    Timeout { what: String, after: Duration },

    #[error("{what} cancelled; the remote process tree was killed")]
    Cancelled { what: String },

    #[error("SSH error while {what}: {detail}")]
    Ssh { what: String, detail: String },

    #[error(
        "guest script {script} failed with exit code {code}{}\n--- stderr (tail) ---\n{stderr_tail}\n--- stdout (tail) ---\n{stdout_tail}",
        error.as_ref().map(|e| format!(": {e}")).unwrap_or_default()
    )]
    ScriptFailed {
        script: String,
        code: i32,
        /// The `error` field of a JSON object the script printed, if any.
        error: Option<String>,
        stdout_tail: String,
        stderr_tail: String,
    },

    #[error(
        "guest script {script} printed no usable JSON result ({reason}); this is a harness bug, please report it with this output:\n{stdout_tail}"
    )]
    BadScriptOutput {
        script: String,
        reason: String,
        stdout_tail: String,
    },

    #[error("transfer {what} failed: {detail}")]
    Transfer { what: String, detail: String },

    #[error("invalid remote command: {reason}")]
    InvalidCommand { reason: String },

    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },

    #[error(
        "{endpoint} did not come back within {:.0?} ({waiting_for}); last error: {last}",
        deadline
    )]
    NotBack {
        endpoint: String,
        deadline: Duration,
        waiting_for: String,
        last: String,
    },
}

impl SessionError {
    /// Whether the connection itself failed (the session must be discarded and re-opened),
    /// as opposed to the remote command failing.
    pub fn is_connection_error(&self) -> bool {
        matches!(
            self,
            SessionError::Connect { .. }
                | SessionError::Handshake { .. }
                | SessionError::ConnectionLost { .. }
                | SessionError::Ssh { .. }
        )
    }

    pub(crate) fn io(what: impl Into<String>, source: std::io::Error) -> Self {
        SessionError::Io {
            what: what.into(),
            source,
        }
    }
}
