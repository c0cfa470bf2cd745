//! Compiles the transcript stand-in shell (standin/main.rs, std only) with the same rustc, so
//! tests in any crate find it at `testsupport::standin::exe()` without a separate build step.

use std::env;
use std::path::PathBuf;
use std::process::Command;

fn main() {
    println!("cargo:rerun-if-changed=standin/main.rs");
    println!("cargo:rerun-if-changed=build.rs");
    let out = PathBuf::from(env::var_os("OUT_DIR").expect("OUT_DIR"));
    let exe = out.join("harness-standin");
    let rustc = env::var_os("RUSTC").unwrap_or_else(|| "rustc".into());
    let status = Command::new(rustc)
        .args([
            "--edition",
            "2024",
            "-O",
            "--crate-name",
            "harness_standin",
            "-o",
        ])
        .arg(&exe)
        .arg("standin/main.rs")
        .status()
        .expect("running rustc for the stand-in shell");
    assert!(status.success(), "compiling standin/main.rs failed");
    println!("cargo:rustc-env=HARNESS_STANDIN_EXE={}", exe.display());
}
