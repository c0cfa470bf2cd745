//! What the CLI tests share: a `harness` command isolated from the developer's own config, state,
//! cache, home and token.

use std::path::Path;

use assert_cmd::Command;

/// `harness` run in `dir`, with a clean environment whose home, XDG config, state and cache all
/// live under `dir`.
pub fn isolated_harness(dir: &Path) -> Command {
    let mut c = Command::cargo_bin("harness").unwrap();
    c.current_dir(dir)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap())
        .env("HOME", dir)
        .env("XDG_CONFIG_HOME", dir.join("xdg-config"))
        .env("HARNESS_STATE_DIR", dir.join("state"))
        .env("HARNESS_CACHE_DIR", dir.join("cache"));
    c
}
