//! Runs harness against the Linux demo (see `testsupport::demo`): builds the guest, serves the
//! efW-shaped build from the GitHub API stand-in, then runs
//! `harness -c examples/linux-demo/harness.toml <ARGS>` (default `run`) and exits with its code.
//!
//! The harness binary is `$HARNESS_BIN`, else `<target>/debug/harness`.

use std::process::{Command, ExitCode};

use testsupport::demo::{DemoEnv, repo_root};
use testsupport::guest::target_dir;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let args = if args.is_empty() {
        vec!["run".to_string()]
    } else {
        args
    };
    let harness = std::env::var_os("HARNESS_BIN")
        .map(Into::into)
        .unwrap_or_else(|| target_dir().join("debug").join("harness"));
    if !harness.is_file() {
        eprintln!(
            "harness-demo: {} does not exist; build it first with `cargo build -p harness`",
            harness.display()
        );
        return ExitCode::from(2);
    }
    eprintln!(
        "harness-demo: building the Linux guest (cached after the first time) and serving the demo build…"
    );
    let env = match DemoEnv::start() {
        Ok(e) => e,
        Err(e) => {
            eprintln!("harness-demo: cannot prepare the demo: {e}");
            return ExitCode::from(2);
        }
    };
    eprintln!(
        "harness-demo: GitHub API stand-in at {}, run {} with artifact Build-x64-Debug",
        env.github.url(),
        testsupport::demo::RUN_ID
    );
    // Ctrl-C goes to harness (same process group), which stops cleanly; we just wait for it.
    // SAFETY: ignoring SIGINT in this process only; the child resets it on exec.
    unsafe { libc::signal(libc::SIGINT, libc::SIG_IGN) };
    let mut cmd = Command::new(&harness);
    cmd.current_dir(repo_root())
        .arg("-c")
        .arg(env.config())
        .args(&args);
    for (k, v) in env.env() {
        cmd.env(k, v);
    }
    eprintln!(
        "harness-demo: {} -c {} {}",
        harness.display(),
        env.config().display(),
        args.join(" ")
    );
    match cmd.status() {
        Ok(s) => ExitCode::from(s.code().unwrap_or(2) as u8),
        Err(e) => {
            eprintln!("harness-demo: cannot run {}: {e}", harness.display());
            ExitCode::from(2)
        }
    }
}
