//! What can go wrong running the guest doctor, each with what to do next.

use crate::session::SessionError;

/// Errors gathering the guest's facts (a failing *check* is not an error: it is in the report).
#[derive(Debug, thiserror::Error)]
pub enum HealthError {
    /// A health script could not run, or exited non-zero.
    #[error("the guest doctor's {script} failed: {source}")]
    Script {
        /// The script.
        script: &'static str,
        /// The session error (its message says what to do next).
        #[source]
        source: SessionError,
    },

    /// A health script printed JSON of an unexpected shape.
    #[error(
        "the guest doctor could not read the result of {script} ({detail}); this is a harness bug, please report it"
    )]
    BadResult {
        /// The script.
        script: &'static str,
        /// What did not fit.
        detail: String,
    },
}
