//! The one error type of this crate: every variant says what failed, why, and what to do next.

use std::path::PathBuf;

/// Everything that can go wrong while finding, downloading, verifying, caching or unpacking a build.
#[derive(Debug, thiserror::Error)]
pub enum ArtifactError {
    /// The `--source` text could not be understood.
    #[error(
        "invalid build source {spec:?}: {why}. Use one of: main, run:<id>, release:<version>, file:<path>, url:<https://…>"
    )]
    BadSource { spec: String, why: String },

    /// Artifact downloads need a token even for public repositories.
    #[error(
        "downloading GitHub Actions artifacts needs a token, even for public repositories. Set GITHUB_TOKEN or GH_TOKEN, or log in with `gh auth login`. A fine-grained token with \"Actions: read\" on {repo} is enough (https://github.com/settings/personal-access-tokens/new)"
    )]
    MissingToken { repo: String },

    /// GitHub refused the request because of the token (missing scope, expired, revoked).
    #[error(
        "GitHub refused {what} (HTTP {status}: {message}). Check that the token is valid and has \"Actions: read\" access to {repo}"
    )]
    Unauthorized {
        status: u16,
        what: String,
        message: String,
        repo: String,
    },

    /// The API rate limit is exhausted; says when it resets.
    #[error(
        "GitHub API rate limit reached (HTTP {status}) while {what}; it resets at {reset} (in {wait_secs} s). Retry after that, or set GITHUB_TOKEN for a higher limit"
    )]
    RateLimited {
        status: u16,
        what: String,
        reset: String,
        wait_secs: u64,
    },

    /// A run, artifact, release or asset does not exist.
    #[error("{what} not found ({url}). {hint}")]
    NotFound {
        what: String,
        url: String,
        hint: String,
    },

    /// The artifact exists but GitHub has deleted its content.
    #[error(
        "artifact {name} (id {id}) of run {run_id} has expired; GitHub keeps build artifacts only a few days. Use a newer run (--source main), a release, or --offline with a cached build"
    )]
    Expired { name: String, id: u64, run_id: u64 },

    /// No run in the search window has a usable artifact.
    #[error("no usable build found: {0}")]
    NoBuild(String),

    /// An HTTP status that is neither success nor one of the cases above.
    #[error("HTTP {status} from {url} while {what}: {message}")]
    Http {
        status: u16,
        url: String,
        what: String,
        message: String,
    },

    /// The server could not be reached (DNS, refused, timeout) even after retries.
    #[error(
        "cannot reach {url} while {what}: {message}. Check the network, or use --offline to take the newest cached build"
    )]
    Network {
        url: String,
        what: String,
        message: String,
    },

    /// A server went silent (no byte, no answer) for longer than the stall allowance.
    #[error(
        "{host} sent nothing for {secs} s while {what}, so it was given up. Retry later, raise [github] stall_timeout for a slow link, or use --offline to take the newest cached build"
    )]
    Stalled {
        host: String,
        what: String,
        secs: u64,
    },

    /// The disk filled up; the partial file was deleted.
    #[error(
        "no space left in {} while {what}: it needs {} there (a build needs its download size again to unpack), and {} is free. The partial files were deleted; free space there (`harness artifacts prune` drops old builds) or set [paths] cache to a larger disk",
        dir.display(),
        needed.map_or("an unknown amount (the size is not known)".to_string(), |n| format!("about {}", crate::space::human(n))),
        available.map_or("an unknown amount".to_string(), crate::space::human)
    )]
    NoSpace {
        what: String,
        dir: PathBuf,
        needed: Option<u64>,
        available: Option<u64>,
    },

    /// Another process holds the cache lock for longer than the wait allowed.
    #[error(
        "the build cache {} is locked by {holder}; gave up after waiting {waited_secs} s. Wait for that command to finish (or stop it), then retry",
        path.display()
    )]
    CacheLocked {
        path: PathBuf,
        holder: String,
        waited_secs: u64,
    },

    /// A response did not have the expected shape.
    #[error("unexpected response from {url} while {what}: {why}")]
    Protocol {
        url: String,
        what: String,
        why: String,
    },

    /// The downloaded bytes do not match the digest GitHub published (or `url:…#sha256=` gave).
    #[error(
        "digest mismatch for {what}: expected sha256 {expected}, the download is {actual}. The file was deleted; retry, and if it persists the upload is corrupt (or the expected digest is wrong)"
    )]
    DigestMismatch {
        what: String,
        expected: String,
        actual: String,
    },

    /// A zip that is corrupt, truncated, or hostile (path traversal, symlinks, bombs).
    #[error("refusing to unpack {path}: {why}. Nothing was extracted")]
    BadArchive { path: PathBuf, why: String },

    /// The unpacked content is not the kind of build the caller expects.
    #[error("{what} is not {kind}: expected {expected} at its root, found {found}")]
    NotABuild {
        what: String,
        kind: String,
        expected: String,
        found: String,
    },

    /// `--offline` (or GitHub unreachable) and nothing suitable in the cache.
    #[error(
        "no cached build for {what} in {cache}. Run `harness artifacts fetch` once while GitHub is reachable"
    )]
    NotCached { what: String, cache: PathBuf },

    /// The user pressed Ctrl-C (or the caller set the cancel flag).
    #[error("cancelled; a partial download is kept and will be resumed next time")]
    Cancelled,

    /// A local file-system operation failed.
    #[error("{what} {path}: {source}")]
    Io {
        what: String,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

impl ArtifactError {
    /// Wraps an I/O error with the operation and path it concerns.
    pub fn io(what: impl Into<String>, path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        ArtifactError::Io {
            what: what.into(),
            path: path.into(),
            source,
        }
    }

    /// Whether this failure means GitHub could not be reached at all (so a cached build may stand in).
    pub fn is_unreachable(&self) -> bool {
        matches!(
            self,
            ArtifactError::Network { .. } | ArtifactError::Stalled { .. }
        )
    }
}

/// Shorthand used across the crate.
pub type Result<T, E = ArtifactError> = std::result::Result<T, E>;
