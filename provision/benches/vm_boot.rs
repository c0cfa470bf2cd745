//! Linux test guest under QEMU (TCG here): cold boot to SSH-ready and snapshot restore to
//! SSH-ready, median of 5 each. Run: `cargo bench -p provision --bench vm_boot`.

use std::time::Duration;

use provision::vm::{UpOptions, Vm, VmDirs};
use provision::{BackendKind, GuestOs, VmConfig};

const RUNS: usize = 5;

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let guest = testsupport::guest::linux_guest();
    let key = testsupport::guest::test_key();
    let tmp = tempfile::tempdir().expect("temp dir");
    let dirs = VmDirs {
        state: tmp.path().join("state"),
        cache: tmp.path().join("cache"),
    };
    let cfg = VmConfig {
        backend: BackendKind::Qemu,
        os: GuestOs::Linux,
        name: "bench".into(),
        user: "root".into(),
        identity: Some(key.private.clone()),
        memory_mib: 512,
        cpus: 2,
        kernel: Some(guest.kernel.clone()),
        initrd: Some(guest.initrd.clone()),
        append: "console=ttyS0 quiet panic=-1".into(),
        ready_snapshot: "ready".into(),
        boot_timeout: 300,
        ..Default::default()
    };
    let mut vm = Vm::open(&cfg, &dirs).expect("open VM");
    let mut cold = Vec::new();
    for i in 0..RUNS {
        let up = vm
            .up(
                &UpOptions {
                    cold: true,
                    save_ready_snapshot: i == RUNS - 1,
                    ..Default::default()
                },
                &mut |_| {},
            )
            .expect("cold boot");
        // The last run also saves the ready snapshot: time to SSH-ready is measured before that.
        println!(
            "cold boot {}: {:.2?} ({})",
            i + 1,
            up.elapsed,
            up.accel.as_str()
        );
        cold.push(up.elapsed);
        vm.down(&mut |_| {}).expect("down");
    }
    let mut restore = Vec::new();
    for i in 0..RUNS {
        let up = vm.up(&UpOptions::default(), &mut |_| {}).expect("restore");
        assert_eq!(up.restored_snapshot.as_deref(), Some("ready"));
        println!("snapshot restore {}: {:.2?}", i + 1, up.elapsed);
        restore.push(up.elapsed);
        vm.down(&mut |_| {}).expect("down");
    }
    println!(
        "median cold boot to SSH-ready:        {:.2?} (target <= 20 s)",
        median(cold)
    );
    println!(
        "median snapshot restore to SSH-ready: {:.2?} (target <= 3 s)",
        median(restore)
    );
    vm.destroy(true).expect("destroy");
}
