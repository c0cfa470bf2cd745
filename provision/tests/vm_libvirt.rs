//! The libvirt backend against a stand-in `virsh` (a shell script on PATH that keeps the domain
//! state in a file and records its calls) and a loopback "guest" that sends an SSH banner.

use std::io::Write;
use std::net::TcpListener;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use provision::vm::{UpOptions, Vm, VmDirs, VmState};
use provision::{BackendKind, GuestOs, VmConfig};

const FAKE_VIRSH: &str = r#"#!/bin/sh
# stand-in virsh: -c URI CMD DOMAIN [ARGS]
dir=$(dirname "$0")
echo "$*" >> "$dir/calls.log"
shift 2
cmd=$1; dom=$2
[ "$dom" = "win11" ] || { echo "error: failed to get domain '$dom'" >&2; exit 1; }
case "$cmd" in
  domstate) cat "$dir/state"; echo ;;
  start) echo running > "$dir/state"; echo "Domain '$dom' started" ;;
  shutdown) echo "shut off" > "$dir/state"; echo "Domain '$dom' is being shutdown" ;;
  destroy) echo "shut off" > "$dir/state" ;;
  domifaddr)
    [ "$(cat "$dir/state")" = running ] || exit 0
    echo " Name       MAC address          Protocol     Address"
    echo "-------------------------------------------------------------------------------"
    echo " vnet0      52:54:00:8a:2b:3c    ipv4         127.0.0.1/8" ;;
  snapshot-create-as) echo "$3" >> "$dir/snapshots" ;;
  snapshot-list) cat "$dir/snapshots" 2>/dev/null; echo ;;
  snapshot-delete) grep -vx "$3" "$dir/snapshots" > "$dir/s.tmp"; mv "$dir/s.tmp" "$dir/snapshots" ;;
  snapshot-revert) grep -qx "$3" "$dir/snapshots" || { echo "error: snapshot not found" >&2; exit 1; } ;;
  *) echo "unknown $cmd" >&2; exit 1 ;;
esac
"#;

fn install_fake_virsh(dir: &Path) {
    let bin = dir.join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    let virsh = bin.join("virsh");
    std::fs::write(&virsh, FAKE_VIRSH).unwrap();
    std::fs::set_permissions(&virsh, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::write(bin.join("state"), "shut off").unwrap();
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    // SAFETY: this test binary has one test; no other thread reads the environment meanwhile.
    unsafe { std::env::set_var("PATH", path) };
}

#[test]
fn libvirt_domain_is_started_found_snapshotted_and_shut_down() {
    let d = tempfile::tempdir().unwrap();
    install_fake_virsh(d.path());
    let guest = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = guest.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for c in guest.incoming().flatten() {
            let mut c = c;
            let _ = c.write_all(b"SSH-2.0-OpenSSH_for_Windows_9.5\r\n");
        }
    });
    let cfg = VmConfig {
        backend: BackendKind::Libvirt,
        os: GuestOs::Windows,
        domain: "win11".into(),
        libvirt_uri: "qemu:///session".into(),
        port,
        boot_timeout: 30,
        shutdown_timeout: 10,
        ..Default::default()
    };
    let dirs = VmDirs {
        state: d.path().join("state"),
        cache: d.path().join("cache"),
    };
    let mut vm = Vm::open(&cfg, &dirs).unwrap();
    assert_eq!(vm.status().unwrap().state, VmState::Stopped);

    let up = vm.up(&UpOptions::default(), &mut |_| {}).unwrap();
    assert_eq!(
        (up.endpoint.host.as_str(), up.endpoint.port),
        ("127.0.0.1", port)
    );
    assert_eq!(up.endpoint.os, GuestOs::Windows);
    let st = vm.status().unwrap();
    assert_eq!(st.state, VmState::Running);
    assert_eq!(st.backend, "libvirt");

    vm.snapshot_save("ready", &mut |_| {}).unwrap();
    assert_eq!(
        vm.snapshot_list()
            .unwrap()
            .iter()
            .map(|s| s.name.as_str())
            .collect::<Vec<_>>(),
        ["ready"]
    );
    let r = vm.up(&restore("ready"), &mut |_| {}).unwrap();
    assert_eq!(r.restored_snapshot.as_deref(), Some("ready"));
    assert!(
        vm.up(&restore("nope"), &mut |_| {})
            .unwrap_err()
            .to_string()
            .contains("snapshot not found")
    );
    vm.snapshot_delete("ready").unwrap();
    assert!(vm.snapshot_list().unwrap().is_empty());

    assert!(vm.down(&mut |_| {}).unwrap());
    assert_eq!(vm.status().unwrap().state, VmState::Stopped);
    assert!(!vm.down(&mut |_| {}).unwrap());
    assert!(
        vm.reset()
            .unwrap_err()
            .to_string()
            .contains("libvirt backend does not support reset")
    );

    let calls = std::fs::read_to_string(d.path().join("bin/calls.log")).unwrap();
    assert!(
        calls.lines().all(|l| l.starts_with("-c qemu:///session ")),
        "{calls}"
    );
    for want in [
        "start win11",
        "domifaddr win11 --source lease",
        "snapshot-create-as win11 ready",
        "snapshot-revert win11 ready --running",
        "shutdown win11",
    ] {
        assert!(calls.contains(want), "missing `{want}` in\n{calls}");
    }
}

/// `up` options that go back to snapshot `name`.
fn restore(name: &str) -> UpOptions {
    UpOptions {
        restore: Some(name.into()),
        ..Default::default()
    }
}
