//! Boots the Linux test guest once and checks the contract other tests rely on.

use std::time::Duration;

use testsupport::guest::{self, BootOptions, RunningGuest};

fn sh(g: &RunningGuest, cmd: &str) -> (i32, String) {
    let out = g.ssh(cmd).output().expect("running ssh");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).trim().to_string()
            + &String::from_utf8_lossy(&out.stderr),
    )
}

#[test]
fn guest_boots_to_ssh_and_keeps_its_contract() {
    let g = RunningGuest::boot(&BootOptions {
        timeout: Duration::from_secs(240),
        ..Default::default()
    })
    .unwrap_or_else(|e| panic!("{e}"));
    eprintln!("guest SSH-ready after {:.1?}", g.boot_time);

    let (code, out) = sh(
        &g,
        "id -u && uname -r && grep ' /data ' /proc/mounts && tar --help 2>&1 | head -1",
    );
    assert_eq!(code, 0, "{out}");
    assert!(out.starts_with("0\n"), "{out}");
    assert!(out.contains(&guest::linux_guest().kernel_version), "{out}");
    assert!(out.contains("/dev/vda /data "), "{out}");

    // The environment-file contract: a SetEnv line plus the restart command reach new sessions.
    let (code, out) = sh(
        &g,
        &format!(
            "echo 'SetEnv HARNESS_PROOF=42' > {} && {}",
            guest::SSHD_ENV_FILE,
            guest::RESTART_SSHD
        ),
    );
    assert_eq!(code, 0, "{out}");
    let mut seen = String::new();
    for _ in 0..20 {
        let (_, out) = sh(&g, "echo v=$HARNESS_PROOF");
        seen = out;
        if seen.contains("v=42") {
            break;
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    assert!(
        seen.contains("v=42"),
        "new session did not see SetEnv after restart: {seen}"
    );

    // SFTP works (scp uses it by default).
    let local = g.dir().join("up.txt");
    std::fs::write(&local, "hello").unwrap();
    let st = std::process::Command::new("scp")
        .args(["-P", &g.port.to_string(), "-i"])
        .arg(&guest::test_key().private)
        .args([
            "-o",
            "BatchMode=yes",
            "-o",
            "StrictHostKeyChecking=no",
            "-o",
            "UserKnownHostsFile=/dev/null",
            "-o",
            "LogLevel=ERROR",
        ])
        .arg(&local)
        .arg("root@127.0.0.1:/data/up.txt")
        .status()
        .unwrap();
    assert!(st.success());
    assert_eq!(sh(&g, "cat /data/up.txt").1, "hello");
    assert!(
        std::fs::read_to_string(&g.serial_log)
            .unwrap()
            .contains(guest::READY_MARKER)
    );
}
