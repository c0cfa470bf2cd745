//! Shared helpers of the vm_* integration tests (included with `mod vm_common;`).
#![allow(dead_code)]

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use provision::session::{Endpoint, Session, SessionOptions};
use provision::vm::{UpOutcome, VmDirs, VmEvent};
use provision::{BackendKind, GuestOs, VmConfig};

/// A `[vm]` section for the test guest from `testsupport::guest`.
pub fn linux_cfg(name: &str) -> VmConfig {
    let g = testsupport::guest::linux_guest();
    let key = testsupport::guest::test_key();
    VmConfig {
        backend: BackendKind::Qemu,
        os: GuestOs::Linux,
        name: name.into(),
        user: "root".into(),
        identity: Some(key.private.clone()),
        memory_mib: 512,
        cpus: 2,
        kernel: Some(g.kernel.clone()),
        initrd: Some(g.initrd.clone()),
        append: "console=ttyS0 quiet panic=-1".into(),
        ready_snapshot: String::new(),
        boot_timeout: 240,
        ssh_timeout: 120,
        shutdown_timeout: 60,
        snapshot_timeout: 240,
        ..Default::default()
    }
}

pub fn dirs(root: &Path) -> VmDirs {
    VmDirs {
        state: root.join("state"),
        cache: root.join("cache"),
    }
}

/// Collects events for assertions (and shows them with --nocapture).
pub fn recorder() -> (Arc<Mutex<Vec<VmEvent>>>, impl FnMut(VmEvent)) {
    let events = Arc::new(Mutex::new(Vec::new()));
    let e2 = events.clone();
    (events, move |e: VmEvent| {
        eprintln!("event: {e:?}");
        e2.lock().unwrap().push(e);
    })
}

pub fn session(up: &UpOutcome) -> Session {
    let mut o = SessionOptions::new(up.known_hosts.clone());
    o.accept_new_host_key = true;
    Session::connect_with_retry(&up.endpoint, &o, Duration::from_secs(60))
        .expect("SSH session to the guest")
}

pub fn sh(s: &mut Session, script: &str) -> (i32, String) {
    let out = s
        .exec_capture(
            &provision::session::wrap::shell(GuestOs::Linux, script)
                .timeout(Duration::from_secs(60)),
        )
        .expect("exec in the guest");
    (out.status.code, out.stdout.trim().to_string())
}

pub fn ep_port(e: &Endpoint) -> u16 {
    e.port
}

/// Live processes whose command line mentions `needle` (e.g. a VM state directory).
pub fn processes_mentioning(needle: &Path) -> Vec<u32> {
    let needle = needle.as_os_str().as_encoded_bytes().to_vec();
    let me = std::process::id();
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| *pid != me)
        .filter(|pid| {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            let zombie = stat
                .rsplit_once(')')
                .is_some_and(|(_, r)| r.trim_start().starts_with('Z'));
            !zombie
                && std::fs::read(format!("/proc/{pid}/cmdline"))
                    .is_ok_and(|c| c.windows(needle.len()).any(|w| w == needle.as_slice()))
        })
        .collect()
}

/// Wait (bounded) until no process mentions `needle`.
pub fn assert_no_processes(needle: &Path) {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !processes_mentioning(needle).is_empty() && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(
        processes_mentioning(needle),
        Vec::<u32>::new(),
        "processes left behind for {}",
        needle.display()
    );
}
