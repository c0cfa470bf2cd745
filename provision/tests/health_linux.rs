//! The Linux guest doctor for real: `facts.sh` runs through a real sshd on loopback, on this
//! machine, and what it reports is compared with what the test sees itself. This host has no
//! bpffs mounted on /sys/fs/bpf (the failing case); the passing case of every check is a unit
//! test of the verdicts (`provision::health::linux`).

use std::path::Path;
use std::process::Command;

use provision::health::{self, DoctorOptions, Status};
use provision::session::{Endpoint, GuestOs, Session, SessionOptions};
use testsupport::sshd::Sshd;

fn session(sshd: &Sshd, dir: &Path) -> Session {
    let ep = Endpoint {
        host: sshd.host().into(),
        port: sshd.port(),
        user: sshd.user(),
        identity: Some(sshd.client_key()),
        os: GuestOs::Linux,
    };
    Session::connect(&ep, &SessionOptions::new(dir.join("known_hosts"))).expect("connect")
}

fn sh(cmd: &str) -> String {
    let out = Command::new("sh").args(["-c", cmd]).output().unwrap();
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

fn options(min_free_mib: u64) -> DoctorOptions {
    DoctorOptions {
        min_free_mib,
        efw: false,
        install_dir: String::new(),
        extensions: Vec::new(),
    }
}

#[test]
fn the_doctor_reports_this_machine_as_it_is() {
    let sshd = Sshd::start().expect("sshd");
    let tmp = tempfile::tempdir().unwrap();
    let mut s = session(&sshd, tmp.path());
    let r = health::guest_doctor(&mut s, &options(1)).unwrap();
    let get = |n: &str| r.checks.iter().find(|c| c.name == n).unwrap().clone();

    let kernel = sh("uname -r");
    assert_eq!(r.guest_build.as_deref(), Some(kernel.as_str()));
    assert_eq!(get("kernel").detail, format!("Linux {kernel}"));

    let mounts = std::fs::read_to_string("/proc/mounts").unwrap();
    let bpffs = mounts.lines().any(|l| {
        let f: Vec<&str> = l.split_whitespace().collect();
        f.get(1) == Some(&"/sys/fs/bpf") && f.get(2) == Some(&"bpf")
    });
    let b = get("bpffs");
    if bpffs {
        assert_eq!(b.status, Status::Ok, "{b:?}");
    } else {
        // The failing case, for real: the suites must not start, and the fix says how.
        assert_eq!(b.status, Status::Fail, "{b:?}");
        assert!(b.fix.unwrap().contains("mount -t bpf bpf /sys/fs/bpf"));
        assert!(r.failed());
    }

    let btf = Path::new("/sys/kernel/btf/vmlinux").exists();
    assert_eq!(get("btf").status == Status::Ok, btf, "{:?}", get("btf"));

    // sshd inherited this process's limits, so the session's `ulimit -l` is ours.
    let memlock = sh("ulimit -l");
    let m = get("memlock");
    assert!(m.detail.starts_with(&memlock), "{m:?} vs {memlock}");
    assert_eq!(
        m.status,
        health::linux::judge_memlock(&memlock, &kernel).status
    );

    let d = get("disk");
    assert_eq!(d.status, Status::Ok, "{d:?}");
    assert!(d.detail.contains("free in /tmp"), "{d:?}");

    let bash = Path::new("/bin/bash").exists();
    assert_eq!(get("bash").status == Status::Ok, bash, "{:?}", get("bash"));
}

#[test]
fn a_disk_threshold_above_what_is_free_warns_with_the_key_to_change() {
    let sshd = Sshd::start().expect("sshd");
    let tmp = tempfile::tempdir().unwrap();
    let mut s = session(&sshd, tmp.path());
    // More than any disk here has.
    let r = health::guest_doctor(&mut s, &options(1 << 40)).unwrap();
    let d = r.checks.iter().find(|c| c.name == "disk").unwrap();
    assert_eq!(d.status, Status::Warn, "{d:?}");
    assert!(d.detail.contains("vm.min_free_mib"), "{d:?}");
}

#[test]
fn stopping_etw_sessions_is_a_no_op_on_linux() {
    let sshd = Sshd::start().expect("sshd");
    let tmp = tempfile::tempdir().unwrap();
    let mut s = session(&sshd, tmp.path());
    let c = health::stop_stale_etw(&mut s).unwrap();
    assert!(c.stopped.is_empty() && c.failed.is_empty());
}
