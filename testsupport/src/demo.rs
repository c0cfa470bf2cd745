//! The embedded default: the whole pipeline on a fresh Linux machine, no Windows ISO needed.
//!
//! [`DemoEnv::start`] builds the small Linux guest, packs `examples/linux-demo/build` as an
//! efW-shaped CI artifact (outer zip → `build-Debug.zip` → `Debug/`), and serves it from the GitHub
//! API stand-in as the newest scheduled `cicd.yml` run. `examples/linux-demo/harness.toml` then
//! drives provision → artifacts → install → suites → results against it; the environment
//! [`DemoEnv::env`] returns supplies what is specific to this machine (kernel, initrd, API URL,
//! token). The quick start (`cargo run -p testsupport --bin harness-demo`) and harness's
//! end-to-end tests both use it.

use std::path::{Path, PathBuf};

use crate::github::{GithubStandIn, RunSpec, efw_artifact_zip};
use crate::guest::{LinuxGuest, linux_guest};

/// The id of the demo's scheduled run (its artifact is what `source = "main"` resolves to).
pub const RUN_ID: u64 = 4242;

/// The repository root.
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("testsupport lives in the workspace")
        .to_path_buf()
}

/// `examples/linux-demo`.
pub fn demo_dir() -> PathBuf {
    repo_root().join("examples").join("linux-demo")
}

/// The efW-shaped build's files (relative name, contents), read from `examples/linux-demo/build`.
pub fn build_files() -> std::io::Result<Vec<(String, Vec<u8>)>> {
    let dir = demo_dir().join("build");
    let mut files = Vec::new();
    for entry in std::fs::read_dir(&dir)? {
        let entry = entry?;
        if entry.file_type()?.is_file() {
            files.push((
                entry.file_name().to_string_lossy().into_owned(),
                std::fs::read(entry.path())?,
            ));
        }
    }
    files.sort();
    Ok(files)
}

/// A running demo environment: the guest's files and the stand-in serving the build.
pub struct DemoEnv {
    pub guest: &'static LinuxGuest,
    pub github: GithubStandIn,
    /// The artifact id of the served build.
    pub artifact_id: u64,
}

impl DemoEnv {
    /// Builds (or reuses) the guest and starts the stand-in with the demo build.
    pub fn start() -> std::io::Result<DemoEnv> {
        let guest = linux_guest();
        let github = GithubStandIn::start();
        github.add_run(RunSpec::new(RUN_ID));
        let zip = efw_artifact_zip("Debug", &build_files()?);
        let artifact_id = github.add_artifact_zip(RUN_ID, "Build-x64-Debug", zip);
        Ok(DemoEnv {
            guest,
            github,
            artifact_id,
        })
    }

    /// The environment that completes `examples/linux-demo/harness.toml` on this machine.
    pub fn env(&self) -> Vec<(String, String)> {
        vec![
            (
                "HARNESS_VM_KERNEL".into(),
                self.guest.kernel.display().to_string(),
            ),
            (
                "HARNESS_VM_INITRD".into(),
                self.guest.initrd.display().to_string(),
            ),
            ("HARNESS_GITHUB_API_URL".into(), self.github.url()),
            ("GITHUB_TOKEN".into(), self.github.token().to_string()),
        ]
    }

    /// The demo's config file.
    pub fn config(&self) -> PathBuf {
        demo_dir().join("harness.toml")
    }
}
