//! The `[suites.NAME]` sections: which Go tests to run and how.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// Where test binaries are built.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum RunMode {
    /// `host` when Go is on the host, else `guest`.
    #[default]
    Auto,
    /// Cross-compile test binaries on the host, run them in the guest.
    Host,
    /// Sync the source tree and run `go test -json` with the guest's Go.
    Guest,
}

/// One suite of Go tests.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SuiteConfig {
    /// The Go module on the host; `None` means the current directory when it is a Go module.
    pub path: Option<PathBuf>,
    /// Packages to test.
    pub packages: Vec<String>,
    /// Extra `go test` flags (`-short`, `-count=1`, `-run=…`, `-skip=…`, `-race`).
    pub flags: Vec<String>,
    /// Environment for the tests.
    pub env: BTreeMap<String, String>,
    /// Packages run at once on the target in host mode (like `go test -p`), when the executor
    /// can open more sessions; guest mode leaves this to `go test`.
    pub parallel: u32,
    /// Seconds one package may run before its process tree is killed.
    pub package_timeout: u64,
    /// How many times failed tests are rerun (default 1, as the built-in ebpf-go suite).
    pub rerun_fails: u32,
    /// No reruns when more tests than this failed (a broken setup, not flakes).
    pub rerun_max_failures: u32,
    /// Rerun failures with ebpf-go's `-trace-log`: only on Windows targets, and only to test
    /// binaries that define the flag (default true, as the built-in ebpf-go suite).
    pub trace_log_on_rerun: bool,
    /// Where test binaries are built.
    pub mode: RunMode,
    /// The `go` command in the guest (guest mode), e.g. `C:\\Program Files\\Go\\bin\\go.exe`.
    pub guest_go: String,
    /// On a non-terminal (a CI log), seconds between progress lines while the suite runs.
    pub progress_interval: u64,
    /// Guest mode: vendor the module's dependencies on the host (`go mod vendor`) and upload
    /// them with the source, since the guest has no internet.
    pub vendor: bool,
    /// Host mode on a Linux target: a test binary that hits its timeout also leaves a core file
    /// (run with `GOTRACEBACK=crash` and no core size limit; the guest's `core_pattern` must
    /// write into the working directory), fetched into the results' `dumps/`.
    pub core_dumps: bool,
}

impl Default for SuiteConfig {
    fn default() -> Self {
        Self {
            path: None,
            packages: vec!["./...".into()],
            flags: vec!["-short".into(), "-count=1".into()],
            env: BTreeMap::new(),
            parallel: 2,
            package_timeout: 600,
            rerun_fails: 1,
            rerun_max_failures: 20,
            trace_log_on_rerun: true,
            mode: RunMode::Auto,
            guest_go: "go".into(),
            progress_interval: 30,
            vendor: true,
            core_dumps: false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_fill_missing_keys_and_unknown_keys_are_rejected() {
        let s: SuiteConfig = toml::from_str("packages = [\"./btf\"]\nmode = \"guest\"").unwrap();
        assert_eq!(s.packages, vec!["./btf".to_string()]);
        assert_eq!(
            (s.mode, s.package_timeout, s.guest_go.as_str()),
            (RunMode::Guest, 600, "go")
        );
        let e = toml::from_str::<SuiteConfig>("pakages = []")
            .unwrap_err()
            .to_string();
        assert!(e.contains("pakages"), "{e}");
    }
}
