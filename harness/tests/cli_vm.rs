//! `harness up | status | snapshot | down | reset | destroy` with the Linux test guest under
//! QEMU/TCG (one VM), and the lock that keeps a second harness from driving it.

mod common;

use std::path::Path;

use assert_cmd::Command;

fn harness(dir: &Path) -> Command {
    let g = testsupport::guest::linux_guest();
    let key = testsupport::guest::test_key();
    let cfg = dir.join("harness.toml");
    std::fs::write(
        &cfg,
        format!(
            "[vm]\nbackend = \"qemu\"\nos = \"linux\"\nname = \"cli\"\nuser = \"root\"\nidentity = \"{}\"\nmemory_mib = 512\ncpus = 2\n\
             accel = \"tcg\"\nkernel = \"{}\"\ninitrd = \"{}\"\nappend = \"console=ttyS0 quiet panic=-1\"\nready_snapshot = \"ready\"\n\
             boot_timeout = 240\nshutdown_timeout = 60\n",
            key.private.display(),
            g.kernel.display(),
            g.initrd.display()
        ),
    )
    .unwrap();
    let mut c = common::isolated_harness(dir);
    c.arg("-c")
        .arg(&cfg)
        .timeout(std::time::Duration::from_secs(600));
    c
}

fn json(out: &[u8]) -> serde_json::Value {
    serde_json::from_slice(out).unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(out)))
}

#[test]
fn up_status_snapshot_down_destroy() {
    let d = tempfile::tempdir().unwrap();
    let out = harness(d.path())
        .args(["--json", "up", "--vm-only", "--save-snapshot"])
        .assert()
        .success();
    let up = json(&out.get_output().stdout);
    assert_eq!(up["endpoint"]["host"], "127.0.0.1");
    assert_eq!(up["accel"], "tcg");
    let port = up["endpoint"]["port"].as_u64().unwrap();
    assert!(port > 0);

    // `up` returned but the VM keeps running; status sees it and the snapshot.
    let st = json(
        &harness(d.path())
            .args(["--json", "status"])
            .assert()
            .success()
            .get_output()
            .stdout,
    );
    assert_eq!(st["state"], "running");
    assert_eq!(st["endpoint"]["port"], port);
    assert!(
        st["snapshots"]
            .as_array()
            .unwrap()
            .iter()
            .any(|s| s["name"] == "ready"),
        "{st}"
    );
    let text = String::from_utf8(
        harness(d.path())
            .arg("status")
            .assert()
            .success()
            .get_output()
            .stdout
            .clone(),
    )
    .unwrap();
    assert!(
        text.contains("running") && text.contains(&format!("ssh -p {port} root@127.0.0.1")),
        "{text}"
    );

    // A second `up` is a no-op.
    let again = json(
        &harness(d.path())
            .args(["--json", "up", "--vm-only"])
            .assert()
            .success()
            .get_output()
            .stdout,
    );
    assert_eq!(again["already_running"], true);

    let list = String::from_utf8(
        harness(d.path())
            .args(["snapshot", "list"])
            .assert()
            .success()
            .get_output()
            .stdout
            .clone(),
    )
    .unwrap();
    assert!(list.starts_with("ready\t"), "{list}");
    harness(d.path())
        .args(["snapshot", "save", "12"])
        .assert()
        .code(2)
        .stderr(predicates::str::contains("plain number"));

    harness(d.path())
        .arg("down")
        .assert()
        .success()
        .stdout(predicates::str::contains("stopped"));
    let st = json(
        &harness(d.path())
            .args(["--json", "status"])
            .assert()
            .success()
            .get_output()
            .stdout,
    );
    assert_eq!(st["state"], "stopped");

    // Next `up` restores the ready snapshot.
    let up = json(
        &harness(d.path())
            .args(["--json", "up", "--vm-only"])
            .assert()
            .success()
            .get_output()
            .stdout,
    );
    assert_eq!(up["restored_snapshot"], "ready");

    harness(d.path()).arg("reset").assert().success();
    harness(d.path())
        .args(["destroy", "--all"])
        .assert()
        .success();
    let st = json(
        &harness(d.path())
            .args(["--json", "status"])
            .assert()
            .success()
            .get_output()
            .stdout,
    );
    assert_eq!(st["state"], "absent");
    assert!(!d.path().join("state/vms/cli").exists());
    assert!(
        std::fs::read_dir(d.path().join("state/images"))
            .unwrap()
            .next()
            .is_none(),
        "base image left"
    );
}
