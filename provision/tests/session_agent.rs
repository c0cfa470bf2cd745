//! Key auth through the SSH agent (`[vm] identity` unset): a real ssh-agent holding the test key.
//! Its own binary because it sets `SSH_AUTH_SOCK` for the process.

use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use provision::session::{Endpoint, GuestOs, RemoteCommand, Session, SessionError, SessionOptions};
use testsupport::sshd::Sshd;

/// Kills the agent's process group when the test ends, pass or fail.
struct Agent(std::process::Child);

impl Drop for Agent {
    fn drop(&mut self) {
        // SAFETY: kill(2) on the process group of our own child.
        unsafe { libc::kill(-(self.0.id() as i32), libc::SIGKILL) };
        let _ = self.0.wait();
    }
}

#[test]
fn agent_auth() {
    let sshd = Sshd::start().expect("starting sshd");
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("agent.sock");
    let agent = Agent(
        Command::new("ssh-agent")
            .arg("-D")
            .arg("-a")
            .arg(&sock)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0)
            .spawn()
            .expect("starting ssh-agent"),
    );
    let start = Instant::now();
    while !sock.exists() {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "ssh-agent socket never appeared"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let state = tempfile::tempdir().unwrap();
    let opts = SessionOptions::new(state.path().join("known_hosts"));
    let ep = Endpoint {
        host: sshd.host().into(),
        port: sshd.port(),
        user: sshd.user(),
        identity: None,
        os: GuestOs::Linux,
    };
    // SAFETY: the only test in this binary; no other thread reads the environment now.
    unsafe { std::env::set_var("SSH_AUTH_SOCK", &sock) };

    // An empty agent: a clear auth error that names the agent.
    let err = Session::connect(&ep, &opts).unwrap_err();
    assert!(matches!(err, SessionError::Auth { .. }), "{err}");
    assert!(err.to_string().contains("SSH agent"), "{err}");

    let added = Command::new("ssh-add")
        .arg(sshd.client_key())
        .env("SSH_AUTH_SOCK", &sock)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(
        added.status.success(),
        "{}",
        String::from_utf8_lossy(&added.stderr)
    );
    let mut s = Session::connect(&ep, &opts).unwrap();
    let out = s
        .exec_capture(&RemoteCommand::new(["echo", "via agent"]))
        .unwrap();
    assert_eq!(out.stdout, "via agent\n");
    drop(agent);
}
