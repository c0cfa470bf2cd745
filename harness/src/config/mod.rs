//! harness's configuration: the typed model and its layers.
//!
//! Layers, lowest first: built-in defaults (the repository's `config.toml`, embedded) < the config
//! file (`-c/--config`, else `./harness.toml`, else `$XDG_CONFIG_HOME/harness/config.toml`) <
//! environment (`HARNESS_*`) < command-line flags (`--set KEY=VALUE`). Tables of named entries
//! (`[suites.*]`, `[extensions.*]`) are replaced whole by the first layer that defines them, so a
//! file can drop a default suite; every other key merges one by one.
//!
//! Each library owns the type of its own section; this module only composes them.

mod diagnose;
mod layers;
mod validate;

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

pub use layers::{Layered, Origin, Sources, leaf_keys, load};
pub use validate::{Severity, validate};

/// The whole configuration, as `config.toml` documents it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Where harness keeps downloads, VM state and results.
    pub paths: PathsConfig,
    /// GitHub API access (the token comes only from the environment or `gh auth token`).
    pub github: GithubConfig,
    /// Reports kept after a run (the history database).
    pub report: ReportConfig,
    /// Which efW build to install.
    pub efw: artifacts::BuildSourceConfig,
    /// The VM (or host) the tests run on.
    pub vm: provision::VmConfig,
    /// How the efW runtime is installed.
    pub install: provision::InstallConfig,
    /// eBPF extensions installed after the runtime.
    pub extensions: BTreeMap<String, ExtensionEntry>,
    /// Go test suites.
    pub suites: BTreeMap<String, suites::SuiteConfig>,
}

/// `[paths]`: every directory harness writes to. Unset means the XDG location.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct PathsConfig {
    /// Downloads and unpacked builds (default `$XDG_CACHE_HOME/harness`).
    pub cache: Option<PathBuf>,
    /// VM disks, pinned host keys, what is installed (default `$XDG_STATE_HOME/harness`).
    pub state: Option<PathBuf>,
    /// Results folders (default `<state>/results`).
    pub results: Option<PathBuf>,
    /// The history database (default `<state>/history.sqlite`).
    pub history: Option<PathBuf>,
}

/// `[report]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ReportConfig {
    /// Record every run (and every merge) in the history database and write `history.html`.
    pub history: bool,
    /// Runs shown on `history.html`.
    pub history_runs: usize,
}

impl Default for ReportConfig {
    fn default() -> Self {
        Self {
            history: true,
            history_runs: 30,
        }
    }
}

/// `[github]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GithubConfig {
    /// REST API base URL (GitHub Enterprise, or a local stand-in in tests).
    pub api_url: String,
    /// Seconds a server may send nothing (across retries) before a request or download fails.
    pub stall_timeout: u64,
}

impl Default for GithubConfig {
    fn default() -> Self {
        Self {
            api_url: "https://api.github.com".into(),
            stall_timeout: 60,
        }
    }
}

impl GithubConfig {
    /// `stall_timeout` as a duration (at least one second).
    pub fn stall(&self) -> std::time::Duration {
        std::time::Duration::from_secs(self.stall_timeout.max(1))
    }
}

/// `[extensions.NAME]`: where the extension's build comes from, and how it is installed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct ExtensionEntry {
    /// `[extensions.NAME.build]`: the same keys as `[efw]`.
    pub build: artifacts::BuildSourceConfig,
    /// `[extensions.NAME.install]`: driver, service, export tool.
    pub install: provision::ExtensionConfig,
}

/// The repository's `config.toml`: the documented defaults, embedded.
pub const DEFAULTS_TOML: &str = include_str!("../../../config.toml");

/// The sections whose keys `HARNESS_<SECTION>_<KEY>` environment variables may set.
pub(crate) const ENV_SECTIONS: &[&str] = &["paths", "github", "report", "efw", "vm", "install"];

/// Tables whose entries a higher layer replaces whole.
pub(crate) const NAMED_TABLES: &[&str] = &["suites", "extensions"];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_defaults_parse_and_match_the_documented_job() {
        let cfg: Config = toml::from_str(DEFAULTS_TOML).expect("config.toml must be valid");
        assert_eq!(cfg.efw.source, "main");
        assert_eq!(cfg.efw.repo, "microsoft/ebpf-for-windows");
        assert_eq!(cfg.efw.artifact, "Build-x64-Debug");
        assert!(cfg.extensions.contains_key("ntosebpfext"));
        assert_eq!(
            cfg.extensions["ntosebpfext"].install.driver,
            "ntosebpfext.sys"
        );
        assert!(!cfg.suites.is_empty());
    }

    /// Every configuration key, dotted (unset options included).
    fn every_key() -> Vec<String> {
        // Every key of every section (the extension and suite keys through their default
        // entries) appears in config.toml, set or as a commented-out example.
        let cfg: Config = toml::from_str(DEFAULTS_TOML).unwrap();
        let mut table = toml::Table::try_from(&cfg).unwrap();
        // Option keys that are unset do not serialize; list them through a fully set value.
        for (section, keys) in [
            ("paths", &["cache", "state", "results", "history"][..]),
            (
                "vm",
                &[
                    "identity",
                    "iso",
                    "virtio_win_iso",
                    "kernel",
                    "initrd",
                    "image",
                    "public_key",
                    "firmware_code",
                    "firmware_vars",
                    "go_zip",
                    "debugging_tools",
                ][..],
            ),
            ("install", &["psexec"][..]),
        ] {
            for k in keys {
                table[section]
                    .as_table_mut()
                    .unwrap()
                    .insert(k.to_string(), toml::Value::String(String::new()));
            }
        }
        leaf_keys(&table, "")
    }

    #[test]
    fn config_toml_documents_every_key() {
        let mut missing = Vec::new();
        for key in every_key() {
            let last = key.rsplit('.').next().unwrap();
            let documented = DEFAULTS_TOML.lines().any(|l| {
                let l = l.trim_start_matches(['#', ' ']);
                l.starts_with(&format!("{last} =")) || l.starts_with(&format!("{last}="))
            });
            if !documented {
                missing.push(key);
            }
        }
        assert!(
            missing.is_empty(),
            "config.toml does not document: {missing:?}"
        );
    }

    #[test]
    fn the_readme_reference_table_lists_every_key() {
        let readme = include_str!("../../../README.md");
        let missing: Vec<String> = every_key()
            .into_iter()
            .filter(|k| !readme.contains(&format!("| `{k}` |")))
            .collect();
        assert!(
            missing.is_empty(),
            "README.md's configuration reference table lacks: {missing:?}"
        );
    }

    #[test]
    fn every_default_key_in_config_toml_has_a_comment() {
        // Each `key = value` line must be preceded by a comment line (the key's documentation).
        let mut prev_comment = false;
        for (n, line) in DEFAULTS_TOML.lines().enumerate() {
            let t = line.trim();
            if t.starts_with('#') {
                prev_comment = true;
                continue;
            }
            if t.is_empty() || t.starts_with('[') {
                prev_comment = false;
                continue;
            }
            if t.contains('=') && !t.starts_with('"') && !t.starts_with(']') {
                assert!(
                    prev_comment,
                    "config.toml line {}: `{t}` has no comment above it",
                    n + 1
                );
                prev_comment = false;
            }
        }
    }
}
