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
    /// Name of the job that builds the artifact, `*` matches anything and `{configuration}` is
    /// replaced. efW uploads partial artifacts from failed builds, so `main` prefers runs where this
    /// job concluded `success`.
    pub build_job: String,
    /// Release asset name for `release:<version>`; `{configuration}` is replaced.
    pub release_asset: String,
    /// Files that must sit at the build root. Empty means "an efW build" (`setup-ebpf.ps1`,
    /// `install_ebpf.psm1` or `ebpf-for-windows.msi`) or a Linux test-guest build (`setup.sh`).
    /// Extensions name their driver here, e.g. `["ntosebpfext.sys"]`.
    pub expect: Vec<String>,
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
            build_job: "regular / build ({configuration})".into(),
            release_asset: "Build.{configuration}.x64.zip".into(),
            expect: Vec::new(),
        }
    }
}

impl BuildSourceConfig {
    /// The build-job pattern with `{configuration}` filled in.
    pub fn build_job_pattern(&self) -> String {
        self.build_job
            .replace("{configuration}", &self.configuration)
    }

    /// The release asset name with `{configuration}` filled in.
    pub fn release_asset_name(&self) -> String {
        self.release_asset
            .replace("{configuration}", &self.configuration)
    }

    /// `owner`, `name` of [`Self::repo`], or `None` when it is not of that form.
    pub fn owner_name(&self) -> Option<(&str, &str)> {
        let (o, n) = self.repo.split_once('/')?;
        (!o.is_empty() && !n.is_empty() && !n.contains('/')).then_some((o, n))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn templates_and_repo() {
        let c = BuildSourceConfig {
            configuration: "Release".into(),
            ..Default::default()
        };
        assert_eq!(c.build_job_pattern(), "regular / build (Release)");
        assert_eq!(c.release_asset_name(), "Build.Release.x64.zip");
        assert_eq!(c.owner_name(), Some(("microsoft", "ebpf-for-windows")));
        let bad = BuildSourceConfig {
            repo: "a/b/c".into(),
            ..Default::default()
        };
        assert_eq!(bad.owner_name(), None);
    }

    #[test]
    fn unknown_keys_are_rejected() {
        let err = toml_like(r#"{"source":"main","bogus":1}"#);
        assert!(err.contains("bogus"), "{err}");
    }

    fn toml_like(json: &str) -> String {
        serde_json::from_str::<BuildSourceConfig>(json)
            .unwrap_err()
            .to_string()
    }
}
