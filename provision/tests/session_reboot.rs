//! `Session::reboot` against a real (small) Linux guest under QEMU: the guest goes down and the
//! session comes back on a new boot id. One guest boot plus one reboot (~30 s under TCG).

use std::time::{Duration, Instant};

use provision::session::{Endpoint, GuestOs, RemoteCommand, Session, SessionOptions};
use testsupport::guest::{BootOptions, RunningGuest, test_key};

#[test]
fn reboot_waits_for_the_guest_to_come_back() {
    let guest = RunningGuest::boot(&BootOptions::default())
        .unwrap_or_else(|e| panic!("booting the guest: {e}"));
    let state = tempfile::tempdir().unwrap();
    let ep = Endpoint {
        host: "127.0.0.1".into(),
        port: guest.port,
        user: "root".into(),
        identity: Some(test_key().private.clone()),
        os: GuestOs::Linux,
    };
    let mut opts = SessionOptions::new(state.path().join("known_hosts"));
    opts.connect_timeout = Duration::from_secs(10);
    let mut s = Session::connect_with_retry(&ep, &opts, Duration::from_secs(60)).unwrap();
    let boot_id = |s: &mut Session| {
        s.exec_capture(&RemoteCommand::new([
            "cat",
            "/proc/sys/kernel/random/boot_id",
        ]))
        .unwrap()
        .stdout
    };
    let before = boot_id(&mut s);
    let start = Instant::now();
    s.reboot(Duration::from_secs(240)).unwrap_or_else(|e| {
        panic!(
            "{e}\n--- serial ---\n{}",
            testsupport::guest::tail(&guest.serial_log, 40)
        )
    });
    eprintln!(
        "guest rebooted and answered again after {:?}",
        start.elapsed()
    );
    let after = boot_id(&mut s);
    assert_ne!(before, after, "same boot id: the guest did not reboot");
}
