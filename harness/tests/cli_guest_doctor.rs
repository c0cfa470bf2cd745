//! `harness doctor --guest` and `harness run`'s doctor phase against a real sshd on loopback
//! (`[vm] backend = "ssh"`, Linux guest flavour): the Linux checks run for real on this machine,
//! which has no bpffs mounted on /sys/fs/bpf, so `run` must stop before the suites with the fix.

mod common;

use std::path::Path;
use std::sync::OnceLock;

use assert_cmd::Command;
use testsupport::sshd::Sshd;

fn sshd() -> &'static Sshd {
    static S: OnceLock<Sshd> = OnceLock::new();
    S.get_or_init(|| Sshd::start().expect("starting sshd"))
}

fn harness(dir: &Path, extra: &str) -> Command {
    let s = sshd();
    let cfg = dir.join("harness.toml");
    std::fs::write(
        &cfg,
        format!(
            "[efw]\nsource = \"none\"\n[vm]\nbackend = \"ssh\"\nos = \"linux\"\nhost = \"127.0.0.1\"\nport = {}\nuser = \"{}\"\nidentity = \"{}\"\n{extra}[extensions]\n[suites.unit]\npath = \"{}\"\n",
            s.port(),
            s.user(),
            s.client_key().display(),
            dir.join("no-such-module").display()
        ),
    )
    .unwrap();
    let mut c = common::isolated_harness(dir);
    c.arg("-c").arg(&cfg);
    c
}

fn bpffs_mounted() -> bool {
    std::fs::read_to_string("/proc/mounts")
        .unwrap()
        .lines()
        .any(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            f.get(1) == Some(&"/sys/fs/bpf") && f.get(2) == Some(&"bpf")
        })
}

#[test]
fn doctor_guest_reports_each_check_and_exits_2_when_one_fails() {
    let d = tempfile::tempdir().unwrap();
    let out = harness(d.path(), "")
        .args(["--json", "doctor", "--guest"])
        .timeout(std::time::Duration::from_secs(60))
        .output()
        .unwrap();
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stderr)));
    let names: Vec<&str> = doc["checks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["kernel", "bpffs", "btf", "memlock", "disk", "bash"]);
    let kernel = String::from_utf8(
        std::process::Command::new("uname")
            .arg("-r")
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap();
    assert_eq!(doc["guest_build"], kernel.trim());
    let bpffs = &doc["checks"][1];
    let ok = doc["ok"].as_bool().unwrap();
    assert_eq!(out.status.code(), Some(if ok { 0 } else { 2 }));
    if !bpffs_mounted() {
        assert_eq!(bpffs["status"], "fail");
        assert!(!ok);
        assert!(
            bpffs["fix"]
                .as_str()
                .unwrap()
                .contains("mount -t bpf bpf /sys/fs/bpf")
        );
    }
    // The text form prints the fix under the failing line.
    let text = harness(d.path(), "")
        .args(["doctor", "--guest"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&text.stdout);
    assert!(
        stdout.contains("ok   btf") || stdout.contains("FAIL btf"),
        "{stdout}"
    );
    if !bpffs_mounted() {
        assert!(stdout.contains("FAIL bpffs"), "{stdout}");
        assert!(
            stdout.contains("fix: mount it after every boot"),
            "{stdout}"
        );
    }
}

#[test]
fn run_stops_before_the_suites_with_the_fix_when_the_guest_doctor_fails() {
    if bpffs_mounted() {
        eprintln!("bpffs is mounted here: this machine passes the doctor, nothing to stop");
        return;
    }
    let d = tempfile::tempdir().unwrap();
    let results = d.path().join("results");
    let out = harness(d.path(), "")
        .args(["run", "--keep", "--out"])
        .arg(&results)
        .timeout(std::time::Duration::from_secs(120))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("FAILED doctor"), "{stderr}");
    assert!(stderr.contains("the suites did not start"), "{stderr}");
    assert!(
        stderr.contains("bpffs: no bpf filesystem on /sys/fs/bpf"),
        "{stderr}"
    );
    assert!(stderr.contains("mount -t bpf bpf /sys/fs/bpf"), "{stderr}");
    // The report is in the results folder; no suite ran.
    let doc: serde_json::Value =
        serde_json::from_slice(&std::fs::read(results.join("doctor.json")).unwrap()).unwrap();
    assert_eq!(doc["checks"][1]["name"], "bpffs");
    assert_eq!(doc["checks"][1]["status"], "fail");
    let phases = std::fs::read_to_string(results.join("phases.json")).unwrap();
    assert!(phases.contains("\"doctor\""), "{phases}");
    assert!(!phases.contains("\"suites\""), "{phases}");
    assert!(!results.join("tests").exists());
}
