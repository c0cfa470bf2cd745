//! Headless Chromium (Debian's `chromium` package, from `.ci/install-deps`) for tests of the
//! HTML report: a screenshot and the rendered DOM of a local file, with every network feature
//! that has a switch turned off and every host name unresolvable.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::bounded;

/// How long one Chromium run may take (a cold start on a loaded 2-core machine takes ~5 s).
const TIMEOUT: Duration = Duration::from_secs(90);

/// A Chromium with its own throw-away profile.
pub struct Chromium {
    exe: PathBuf,
    profile: tempfile::TempDir,
}

/// The `chromium` on PATH, if any.
pub fn find() -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join("chromium"))
        .find(|p| p.is_file())
}

impl Chromium {
    /// Chromium from PATH; `None` when it is not installed.
    pub fn new() -> Option<Chromium> {
        Some(Chromium {
            exe: find()?,
            profile: tempfile::tempdir().ok()?,
        })
    }

    fn command(&self) -> Command {
        let mut c = Command::new(&self.exe);
        c.args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            "--no-default-browser-check",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-extensions",
            "--disable-default-apps",
            "--disable-domain-reliability",
            "--disable-breakpad",
            "--dns-prefetch-disable",
            "--no-proxy-server",
            "--host-resolver-rules=MAP * ~NOTFOUND",
            "--hide-scrollbars",
            "--force-device-scale-factor=1",
        ])
        .arg(format!("--user-data-dir={}", self.profile.path().display()))
        .env("HOME", self.profile.path());
        c
    }

    fn url(file: &Path) -> String {
        let abs = std::fs::canonicalize(file).unwrap_or_else(|_| file.to_path_buf());
        format!("file://{}", abs.display())
    }

    /// Renders `file` into the PNG `png`, `width` × `height` pixels.
    pub fn screenshot(
        &self,
        file: &Path,
        png: &Path,
        width: u32,
        height: u32,
    ) -> Result<(), String> {
        let mut c = self.command();
        c.arg(format!("--screenshot={}", png.display()))
            .arg(format!("--window-size={width},{height}"))
            .arg(Self::url(file));
        let o = bounded::run(&mut c, TIMEOUT).map_err(|e| e.to_string())?;
        if !o.status.success() || !png.is_file() {
            return Err(format!(
                "chromium --screenshot exited {}: {}",
                o.status,
                o.stderr
                    .lines()
                    .rev()
                    .take(5)
                    .collect::<Vec<_>>()
                    .join("\n")
            ));
        }
        Ok(())
    }

    /// The DOM of `file` after rendering, serialized.
    pub fn dump_dom(&self, file: &Path) -> Result<String, String> {
        let mut c = self.command();
        c.arg("--dump-dom").arg(Self::url(file));
        let o = bounded::run(&mut c, TIMEOUT).map_err(|e| e.to_string())?;
        if !o.status.success() {
            return Err(format!(
                "chromium --dump-dom exited {}: {}",
                o.status, o.stderr
            ));
        }
        Ok(o.stdout)
    }
}
