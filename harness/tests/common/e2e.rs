//! What the end-to-end tests share (included with `#[path]` by each e2e test file): the demo
//! environment (the Linux guest built once and cached under `target/`, the GitHub API stand-in),
//! an isolated `harness` command, a bounded wait, and a look for leftover QEMU processes.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use testsupport::demo::{DemoEnv, repo_root};

/// The demo environment, started once per test binary.
pub fn demo() -> &'static DemoEnv {
    static ENV: OnceLock<DemoEnv> = OnceLock::new();
    ENV.get_or_init(|| DemoEnv::start().expect("starting the demo environment"))
}

/// `harness -c <config> …` with an isolated state, cache and home.
pub fn harness(dir: &Path, config: &Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_harness"));
    c.current_dir(repo_root())
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap())
        .env("HOME", dir)
        .env("HARNESS_STATE_DIR", dir.join("state"))
        .env("HARNESS_CACHE_DIR", dir.join("cache"))
        .arg("-c")
        .arg(config);
    for (k, v) in demo().env() {
        c.env(k, v);
    }
    c
}

/// Runs to completion within a bound; returns (exit code, stdout, stderr).
pub fn run(mut c: Command, limit: Duration) -> (i32, String, String) {
    let child = c
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let out = wait_bounded(child, limit);
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

pub fn wait_bounded(mut child: Child, limit: Duration) -> std::process::Output {
    let t0 = Instant::now();
    loop {
        if child.try_wait().unwrap().is_some() {
            return child.wait_with_output().unwrap();
        }
        if t0.elapsed() > limit {
            let _ = child.kill();
            let out = child.wait_with_output().unwrap();
            panic!(
                "harness did not finish within {limit:?}\n--- stderr ---\n{}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

pub fn json(path: &Path) -> serde_json::Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap()
}

pub fn phase<'a>(phases: &'a serde_json::Value, name: &str) -> &'a serde_json::Value {
    phases["phases"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["phase"] == name)
        .unwrap_or_else(|| panic!("no phase {name} in {phases}"))
}

/// QEMU processes whose command line mentions `needle` (the test's state dir).
pub fn qemu_processes(needle: &str) -> Vec<String> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let cmdline = entry.path().join("cmdline");
        if let Ok(bytes) = std::fs::read(&cmdline) {
            let text = String::from_utf8_lossy(&bytes).replace('\0', " ");
            if text.contains("qemu-system") && text.contains(needle) {
                found.push(text);
            }
        }
    }
    found
}
