//! The `[efw]` section (and each extension's `[extensions.NAME.build]`): which build to fetch.

use serde::{Deserialize, Serialize};

/// Where a build comes from and how to pick it. Shared by the efW runtime and extensions.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BuildSourceConfig {
    /// `main` | `run:<id>` | `release:<version>` | `file:<path>` | `url:<https://…>`.
    pub source: String,
    /// GitHub repository, `owner/name`.
    pub repo: String,
    /// Workflow file whose runs are searched for `main`.
    pub workflow: String,
    /// Branch whose runs are searched for `main`.
    pub branch: String,
    /// Event of the runs searched for `main` (`schedule`, `push`, …).
    pub event: String,
    /// Artifact name on a workflow run.
    pub artifact: String,
    /// Build configuration inside the artifact (`Debug`, `Release`, `NativeOnlyDebug`, …).
    pub configuration: String,
    /// How many recent runs `main` looks through.
    pub search_runs: u32,
}

impl Default for BuildSourceConfig {
    fn default() -> Self {
        Self {
            source: "main".into(),
            repo: "microsoft/ebpf-for-windows".into(),
            workflow: "cicd.yml".into(),
            branch: "main".into(),
            event: "schedule".into(),
            artifact: "Build-x64-Debug".into(),
            configuration: "Debug".into(),
            search_runs: 20,
        }
    }
}
