//! The VM lock between harness processes, `destroy` of nothing, and the token kept from QEMU;
//! no VM boots here (a stand-in `qemu` script at most).

mod common;

use std::path::{Path, PathBuf};

use assert_cmd::Command;
use predicates::prelude::*;
use provision::vm::lock::{LockMode, VmLock};

/// A qemu-backend Linux VM named `lockvm` whose kernel and initrd are placeholders; `qemu` is
/// the emulator to run.
fn harness(dir: &Path, qemu: &str) -> Command {
    std::fs::write(dir.join("kernel"), "k").unwrap();
    std::fs::write(dir.join("initrd"), "i").unwrap();
    let cfg = dir.join("harness.toml");
    std::fs::write(
        &cfg,
        format!(
            "[vm]\nbackend = \"qemu\"\nos = \"linux\"\nname = \"lockvm\"\nuser = \"root\"\naccel = \"tcg\"\n\
             memory_mib = 256\ncpus = 1\nkernel = \"{}\"\ninitrd = \"{}\"\nqemu = \"{qemu}\"\nboot_timeout = 20\n",
            dir.join("kernel").display(),
            dir.join("initrd").display()
        ),
    )
    .unwrap();
    let mut c = common::isolated_harness(dir);
    c.arg("-c")
        .arg(&cfg)
        .timeout(std::time::Duration::from_secs(120));
    c
}

fn lock_path(dir: &Path) -> PathBuf {
    dir.join("state/vms/lockvm/lock")
}

#[test]
fn destructive_commands_refuse_while_another_process_uses_the_vm() {
    let d = tempfile::tempdir().unwrap();
    // This test process stands for `harness test` using the VM.
    let user = VmLock::acquire_mode(&lock_path(d.path()), "lockvm", LockMode::Shared).unwrap();
    let me = format!("(pid {})", std::process::id());
    for cmd in ["reset", "down", "destroy"] {
        harness(d.path(), "qemu-system-x86_64")
            .arg(cmd)
            .assert()
            .code(2)
            .stderr(predicate::str::contains(format!(
                "refusing to {cmd} VM 'lockvm'"
            )))
            .stderr(predicate::str::contains(me.as_str()))
            .stderr(predicate::str::contains("--force"));
    }
    // --force goes ahead, and says whom it overrides.
    harness(d.path(), "qemu-system-x86_64")
        .args(["reset", "--force"])
        .assert()
        .success()
        .stderr(predicate::str::contains(me.as_str()))
        .stdout(predicate::str::contains("reset"));
    drop(user);
    harness(d.path(), "qemu-system-x86_64")
        .arg("reset")
        .assert()
        .success();
    // While a command drives the VM (exclusive), `reset` is refused as well.
    let driver = VmLock::acquire(&lock_path(d.path()), "lockvm").unwrap();
    harness(d.path(), "qemu-system-x86_64")
        .arg("reset")
        .assert()
        .code(2)
        .stderr(predicate::str::contains(me.as_str()));
    drop(driver);
}

#[test]
fn destroying_a_vm_that_does_not_exist_says_so() {
    let d = tempfile::tempdir().unwrap();
    harness(d.path(), "qemu-system-x86_64")
        .arg("destroy")
        .assert()
        .success()
        .stdout(predicate::str::contains(
            "does not exist: nothing to destroy",
        ))
        .stdout(predicate::str::contains("destroyed").not());
    let out = harness(d.path(), "qemu-system-x86_64")
        .args(["--json", "destroy"])
        .assert()
        .success();
    let doc: serde_json::Value = serde_json::from_slice(&out.get_output().stdout).unwrap();
    assert_eq!(doc["destroyed"], false, "{doc}");
}

#[test]
fn qemu_does_not_inherit_the_github_token() {
    let d = tempfile::tempdir().unwrap();
    let seen = d.path().join("qemu-env");
    let fake = d.path().join("fake-qemu");
    std::fs::write(
        &fake,
        format!(
            "#!/bin/sh\necho \"token=${{GITHUB_TOKEN:-none}} gh=${{GH_TOKEN:-none}} home=$HOME\" > {}\nexit 1\n",
            seen.display()
        ),
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&fake, std::fs::Permissions::from_mode(0o755)).unwrap();
    harness(d.path(), &fake.display().to_string())
        .env("GITHUB_TOKEN", "ghp_not_for_qemu")
        .env("GH_TOKEN", "gho_not_for_qemu")
        .args(["up", "--vm-only"])
        .assert()
        .code(2);
    let text = std::fs::read_to_string(&seen).expect("the stand-in qemu ran");
    assert_eq!(
        text.trim(),
        format!("token=none gh=none home={}", d.path().display())
    );
}
