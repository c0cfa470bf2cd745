//! What the benchmarks share: counts from the environment and the release `harness` binary.

use std::path::PathBuf;
use std::process::Command;

/// `name` from the environment as a count, else `default`.
pub fn env_count(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Builds the release `harness` (quietly) and returns its path.
pub fn release_harness() -> PathBuf {
    let status = Command::new("cargo")
        .current_dir(crate::demo::repo_root())
        .args(["build", "-q", "--release", "-p", "harness"])
        .status()
        .expect("running cargo build");
    assert!(status.success(), "cargo build --release -p harness failed");
    crate::guest::target_dir().join("release/harness")
}
