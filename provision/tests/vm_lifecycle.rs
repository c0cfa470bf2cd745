//! The QEMU backend end to end with the Linux test guest under TCG: up → exec, lock contention,
//! snapshot save/restore, down, up from the ready snapshot, reset, destroy. One VM, in order.

mod vm_common;

use provision::vm::{Phase, UpOptions, Vm, VmError, VmEvent, VmState};
use vm_common::*;

fn finished(events: &[VmEvent], phase: Phase) -> bool {
    events
        .iter()
        .any(|e| matches!(e, VmEvent::Finished { phase: p, .. } if *p == phase))
}

#[test]
fn lifecycle_of_one_vm() {
    let tmp = tempfile::tempdir().unwrap();
    let dirs = dirs(tmp.path());
    let mut cfg = linux_cfg("life");
    let vm_dir = dirs.state.join("vms/life");

    // up → exec works; a file on the persistent disk.
    let mut vm = Vm::open(&cfg, &dirs).unwrap();
    let (events, mut rec) = recorder();
    let up = vm.up(&UpOptions::default(), &mut rec).unwrap();
    eprintln!(
        "cold boot to SSH-ready: {:.1?} ({:?})",
        up.elapsed, up.accel
    );
    {
        let ev = events.lock().unwrap();
        assert!(
            finished(&ev, Phase::Booting) && finished(&ev, Phase::WaitingForSsh),
            "{ev:?}"
        );
        if up.accel == provision::vm::AccelKind::Tcg && cfg.accel == provision::Accel::Auto {
            assert!(
                ev.iter()
                    .any(|e| matches!(e, VmEvent::Warning { message } if message.contains("TCG"))),
                "no TCG warning: {ev:?}"
            );
        }
    }
    assert_eq!(up.endpoint.host, "127.0.0.1");
    let mut s = session(&up);
    assert_eq!(
        sh(&mut s, "echo one > /data/a && sync && cat /data/a"),
        (0, "one".into())
    );

    // Another harness process (here: a second open) cannot drive the same VM.
    match Vm::open(&cfg, &dirs) {
        // Holders other than this process are named; this one is the only holder.
        Err(VmError::Busy { name, holders, .. }) => {
            assert_eq!(name, cfg.name);
            assert!(holders.is_empty(), "{holders:?}");
        }
        other => panic!("expected Busy, got {other:?}"),
    }

    let st = vm.status().unwrap();
    assert_eq!(st.state, VmState::Running);
    assert_eq!(st.endpoint.as_ref().map(|e| e.port), Some(up.endpoint.port));
    assert!(st.base_image.is_some() && st.overlay.is_some());
    let qemu_pid = st.pid.unwrap();

    // Snapshot save/restore (disk + RAM). The guest clock is set back to 2001 first: a restore
    // without the clock re-sync would bring that back.
    assert_eq!(
        sh(&mut s, "date -u -s @1000000000 >/dev/null && date +%Y"),
        (0, "2001".into())
    );
    vm.snapshot_save("s1", &mut |_| {}).unwrap();
    assert_eq!(
        sh(&mut s, "echo two > /data/b && sync && ls /data"),
        (0, "a\nb\nlost+found".into())
    );
    drop(s);
    let restored = vm.up(&restore("s1"), &mut |_| {}).unwrap();
    let mut s = session(&restored);
    assert_eq!(sh(&mut s, "ls /data"), (0, "a\nlost+found".into()));
    // The clock was re-synced after the restore.
    let (_, guest_now) = sh(&mut s, "date +%s");
    let host_now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    assert!(
        (guest_now.parse::<i64>().unwrap() - host_now).abs() < 30,
        "guest clock {guest_now}, host {host_now}"
    );
    drop(s);
    let snaps = vm.snapshot_list().unwrap();
    assert!(
        snaps.iter().any(|x| x.name == "s1" && x.vm_state_bytes > 0),
        "{snaps:?}"
    );

    // down: ACPI powerdown; QEMU leaves no process.
    let (events, mut rec) = recorder();
    assert!(vm.down(&mut rec).unwrap());
    assert!(
        !events
            .lock()
            .unwrap()
            .iter()
            .any(|e| matches!(e, VmEvent::Warning { .. })),
        "guest did not power off cleanly"
    );
    assert!(
        !std::path::Path::new(&format!("/proc/{qemu_pid}")).exists()
            || !provision::vm::process::alive(qemu_pid)
    );
    assert_no_processes(&vm_dir);
    assert_eq!(vm.status().unwrap().state, VmState::Stopped);
    assert!(!vm.down(&mut |_| {}).unwrap(), "second down is a no-op");

    // up restores the configured ready snapshot: SSH-ready without a boot.
    drop(vm);
    cfg.ready_snapshot = "s1".into();
    let mut vm = Vm::open(&cfg, &dirs).unwrap();
    let (events, mut rec) = recorder();
    let up = vm.up(&UpOptions::default(), &mut rec).unwrap();
    eprintln!("snapshot restore to SSH-ready: {:.1?}", up.elapsed);
    assert_eq!(up.restored_snapshot.as_deref(), Some("s1"));
    assert!(finished(&events.lock().unwrap(), Phase::RestoringSnapshot));
    assert!(finished(&events.lock().unwrap(), Phase::ResyncingClock));
    let mut s = session(&up);
    let (_, guest_now) = sh(&mut s, "date +%s");
    assert!(
        guest_now.parse::<i64>().unwrap() > 1_700_000_000,
        "clock not re-synced: {guest_now}"
    );
    assert_eq!(
        sh(&mut s, "cat /data/a; ls /data"),
        (0, "one\na\nlost+found".into())
    );
    drop(s);

    // reset: the overlay (with its snapshots) is gone; the next up boots clean.
    assert!(
        vm.reset().unwrap(),
        "reset reports that it stopped the running VM"
    );
    assert_no_processes(&vm_dir);
    assert!(vm.snapshot_list().unwrap().is_empty());
    let up = vm.up(&UpOptions::default(), &mut |_| {}).unwrap();
    assert_eq!(up.restored_snapshot, None);
    let mut s = session(&up);
    assert_eq!(sh(&mut s, "ls /data"), (0, "lost+found".into()));
    drop(s);

    // destroy: state and processes gone.
    let gone = vm.destroy(false).unwrap();
    assert!(gone.had_state && gone.was_running, "{gone:?}");
    assert!(!vm_dir.exists());
    assert_no_processes(&vm_dir);
    assert_eq!(vm.status().unwrap().state, VmState::Absent);
}

/// `up` options that go back to snapshot `name`.
fn restore(name: &str) -> UpOptions {
    UpOptions {
        restore: Some(name.into()),
        ..Default::default()
    }
}
