//! Sessions surviving (and reporting) sshd restarts, a dead sshd and a changed host key.
//! These tests disturb the server, so this binary has its own sshd and runs them in sequence.

use std::time::{Duration, Instant};

use provision::session::{Endpoint, GuestOs, RemoteCommand, Session, SessionError, SessionOptions};
use testsupport::sshd::Sshd;

fn sh(snippet: &str) -> RemoteCommand {
    RemoteCommand::new(["sh", "-c", snippet])
}

#[test]
fn restarts_dead_server_and_changed_host_key() {
    let mut sshd = Sshd::start().expect("starting sshd");
    let state = tempfile::tempdir().unwrap();
    let ep = Endpoint {
        host: sshd.host().into(),
        port: sshd.port(),
        user: sshd.user(),
        identity: Some(sshd.client_key()),
        os: GuestOs::Linux,
    };
    let mut opts = SessionOptions::new(state.path().join("known_hosts"));
    opts.connect_timeout = Duration::from_secs(3);
    opts.linux_restart_command = format!("kill -HUP \"$(cat {})\"", sshd.pid_file().display());
    let mut s = Session::connect(&ep, &opts).unwrap();

    // 1. sshd restarted (sessions killed) in the middle of a command: the command fails with a
    //    connection error at once, and the next command reconnects on its own.
    let start = Instant::now();
    let err = s
        .exec(&sh("echo started; sleep 30"), &mut |_, l| {
            if l == "started" {
                sshd.restart().unwrap();
            }
        })
        .unwrap_err();
    assert!(err.is_connection_error(), "{err}");
    assert!(
        start.elapsed() < Duration::from_secs(10),
        "noticed the drop after {:?}",
        start.elapsed()
    );
    assert!(!s.is_connected());
    let out = s.exec_capture(&sh("echo back")).unwrap();
    assert_eq!(out.stdout, "back\n");

    // 1b. sshd restarted while the session is idle: the next command just works.
    assert!(s.is_connected());
    sshd.restart().unwrap();
    let out = s.exec_capture(&sh("echo fresh")).unwrap();
    assert_eq!(out.stdout, "fresh\n");

    // 2. restart_sshd: the new environment is seen by a fresh session, within the bound.
    sshd.set_env(&[("HARNESS_MARK", "v2")]).unwrap();
    let old = s
        .exec_capture(&sh("echo \"${HARNESS_MARK:-unset}\""))
        .unwrap();
    assert_eq!(old.stdout.trim(), "unset");
    let start = Instant::now();
    let mut checks = 0;
    s.restart_sshd(
        &mut |s| {
            checks += 1;
            Ok(s.exec_capture(&sh("echo \"${HARNESS_MARK:-unset}\""))?
                .stdout
                .trim()
                == "v2")
        },
        Duration::from_secs(20),
    )
    .unwrap();
    assert!(checks >= 1);
    assert!(start.elapsed() < Duration::from_secs(20));
    // A check that never passes ends with a clear error at the deadline.
    let start = Instant::now();
    let err = s
        .restart_sshd(&mut |_| Ok(false), Duration::from_secs(3))
        .unwrap_err();
    assert!(matches!(err, SessionError::NotBack { .. }), "{err}");
    assert!(
        start.elapsed() < Duration::from_secs(6),
        "{:?}",
        start.elapsed()
    );

    // 3. sshd down for a while, then back: reconnect with backoff.
    let port = sshd.port();
    let t = std::thread::spawn(move || {
        sshd.restart_after(Duration::from_secs(2)).unwrap();
        sshd
    });
    std::thread::sleep(Duration::from_millis(300));
    let start = Instant::now();
    s.reconnect(Duration::from_secs(15)).unwrap();
    let mut sshd = t.join().unwrap();
    assert!(
        start.elapsed() >= Duration::from_millis(500),
        "reconnected before sshd was back?"
    );
    assert_eq!(s.exec_capture(&sh("echo ok")).unwrap().stdout, "ok\n");

    // 4. sshd killed and not coming back: a clear error within the bound.
    sshd.kill();
    let start = Instant::now();
    let err = s.exec_capture(&sh("echo never")).unwrap_err();
    assert!(err.is_connection_error(), "{err}");
    let err = s.reconnect(Duration::from_secs(3)).unwrap_err();
    let took = start.elapsed();
    assert!(took < Duration::from_secs(6), "gave up after {took:?}");
    let msg = err.to_string();
    assert!(
        msg.contains(&format!("127.0.0.1:{port}")) && msg.contains("did not come back"),
        "{msg}"
    );

    // 5. The host key changed (a re-created VM): refused, and not retried.
    sshd.regenerate_host_key().unwrap();
    sshd.start_again().unwrap();
    let start = Instant::now();
    let err = Session::connect_with_retry(&ep, &opts, Duration::from_secs(20)).unwrap_err();
    assert!(matches!(err, SessionError::HostKeyChanged { .. }), "{err}");
    assert!(err.to_string().contains("--accept-new-host-key"));
    assert!(
        start.elapsed() < Duration::from_secs(5),
        "a changed key must not be retried"
    );
    // After harness re-creates the VM it forgets the pin, and the new key is accepted.
    provision::session::hostkey::forget(&opts.known_hosts, &ep.host, ep.port).unwrap();
    let mut s2 = Session::connect(&ep, &opts).unwrap();
    assert!(s2.exec_capture(&sh("true")).unwrap().status.success());
}
