//! Linux-flavoured sessions against a real OpenSSH server on loopback (one sshd for this binary).

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use provision::session::{
    Endpoint, GuestOs, RemoteCommand, Session, SessionError, SessionOptions, Stream,
};
use testsupport::sshd::Sshd;

struct Fixture {
    sshd: Sshd,
    state: tempfile::TempDir,
}

fn fixture() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| Fixture {
        sshd: Sshd::start().expect("starting sshd"),
        state: tempfile::tempdir().unwrap(),
    })
}

fn endpoint(f: &Fixture) -> Endpoint {
    Endpoint {
        host: f.sshd.host().into(),
        port: f.sshd.port(),
        user: f.sshd.user(),
        identity: Some(f.sshd.client_key()),
        os: GuestOs::Linux,
    }
}

fn session() -> Session {
    let f = fixture();
    let opts = SessionOptions::new(f.state.path().join("known_hosts"));
    Session::connect(&endpoint(f), &opts).unwrap_or_else(|e| panic!("{e}\n{}", f.sshd.log()))
}

fn sh(snippet: &str) -> RemoteCommand {
    RemoteCommand::new(["sh", "-c", snippet])
}

#[test]
fn exit_codes_and_stream_separation() {
    let mut s = session();
    let mut lines = Vec::new();
    let st = s
        .exec(
            &sh("echo out1; echo err1 >&2; echo out2; exit 7"),
            &mut |st, l| lines.push((st, l.to_string())),
        )
        .unwrap();
    assert_eq!(st.code, 7);
    let out: Vec<_> = lines
        .iter()
        .filter(|(s, _)| *s == Stream::Stdout)
        .map(|(_, l)| l.as_str())
        .collect();
    let err: Vec<_> = lines
        .iter()
        .filter(|(s, _)| *s == Stream::Stderr)
        .map(|(_, l)| l.as_str())
        .collect();
    assert_eq!(out, ["out1", "out2"]);
    assert_eq!(err, ["err1"], "the pid marker must not reach the caller");
    let ok = s.exec_capture(&RemoteCommand::new(["true"])).unwrap();
    assert!(ok.status.success());
    let killed = s.exec_capture(&sh("kill -TERM $$")).unwrap();
    assert_eq!(killed.status.code, 128 + 15);
}

#[test]
fn lines_stream_while_the_command_runs() {
    let mut s = session();
    let start = Instant::now();
    let mut first_at = None;
    let st = s
        .exec(&sh("echo first; sleep 2; echo second"), &mut |_, l| {
            if l == "first" {
                first_at = Some(start.elapsed());
            }
        })
        .unwrap();
    assert!(st.success());
    let first_at = first_at.expect("saw the first line");
    assert!(
        first_at < Duration::from_millis(1500),
        "first line came after {first_at:?}: not streamed"
    );
    assert!(start.elapsed() >= Duration::from_secs(2));
}

#[test]
fn env_cwd_and_quoting() {
    let mut s = session();
    let dir = tempfile::tempdir().unwrap();
    let odd = dir.path().join("with space's");
    std::fs::create_dir(&odd).unwrap();
    let cmd = RemoteCommand::new([
        "sh",
        "-c",
        "pwd; printf '%s|' \"$A\" \"$B\" \"$1\"",
        "argv0",
        "$(not run) 'q'",
    ])
    .env("A", "x y")
    .env("B", "it's $HOME")
    .cwd(odd.to_str().unwrap());
    let out = s.exec_capture(&cmd).unwrap();
    assert!(out.status.success(), "{out:?}");
    assert_eq!(
        out.stdout,
        format!("{}\nx y|it's $HOME|$(not run) 'q'|\n", odd.display())
    );
    let missing = s
        .exec_capture(&RemoteCommand::new(["true"]).cwd("/nonexistent/dir"))
        .unwrap();
    assert_ne!(missing.status.code, 0);
}

#[test]
fn hundred_megabytes_of_output() {
    let mut s = session();
    // 100 MiB: 1,638,400 lines of 63 chars + newline.
    let cmd = sh(
        "yes 'abcdefghijklmnopqrstuvwxyzabcdefghijklmnopqrstuvwxyz0123456789a' | head -n 1638400; echo done >&2",
    );
    let (mut bytes, mut lines, mut err) = (0u64, 0u64, Vec::new());
    let start = Instant::now();
    let st = s
        .exec(&cmd, &mut |st, l| match st {
            Stream::Stdout => {
                bytes += l.len() as u64 + 1;
                lines += 1;
            }
            Stream::Stderr => err.push(l.to_string()),
        })
        .unwrap();
    assert!(st.success());
    assert_eq!(lines, 1_638_400);
    assert_eq!(bytes, 100 * 1024 * 1024);
    assert_eq!(err, ["done"]);
    eprintln!("100 MiB of output streamed in {:?}", start.elapsed());
}

#[test]
fn timeout_kills_the_remote_process_tree() {
    let mut s = session();
    let marker = format!("/tmp/harness-timeout-{}", std::process::id());
    // A child and a grandchild that would outlive a plain channel close.
    let cmd = sh(&format!(
        "(sleep 60; touch {marker}) & sleep 61; touch {marker}"
    ))
    .timeout(Duration::from_secs(1));
    let start = Instant::now();
    let err = s.exec(&cmd, &mut |_, _| {}).unwrap_err();
    assert!(matches!(err, SessionError::Timeout { .. }), "{err}");
    assert!(
        start.elapsed() < Duration::from_secs(10),
        "took {:?}",
        start.elapsed()
    );
    // No process with our marker in its command line survives.
    let left = s
        .exec_capture(&sh(&format!(
            "ps -eo args | grep -c '[t]ouch {marker}' || true"
        )))
        .unwrap();
    assert_eq!(
        left.stdout.trim(),
        "0",
        "remote processes survived the timeout"
    );
    assert!(!Path::new(&marker).exists());
}

#[test]
fn cancel_handle_kills_the_command() {
    let mut s = session();
    let handle = s.cancel_handle();
    let t = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(500));
        handle.cancel();
    });
    let start = Instant::now();
    let err = s.exec(&sh("sleep 30"), &mut |_, _| {}).unwrap_err();
    t.join().unwrap();
    assert!(matches!(err, SessionError::Cancelled { .. }), "{err}");
    assert!(start.elapsed() < Duration::from_secs(10));
    // Sticky until reset.
    assert!(matches!(
        s.exec_capture(&RemoteCommand::new(["true"])),
        Err(SessionError::Cancelled { .. })
    ));
    s.cancel_handle().reset();
    assert!(
        s.exec_capture(&RemoteCommand::new(["true"]))
            .unwrap()
            .status
            .success()
    );
}

#[test]
fn linux_scripts_return_json() {
    let mut s = session();
    let v = s
        .run_script(&provision::session::script::builtin::PROBE_LINUX, &[])
        .unwrap();
    assert!(v["boot_id"].as_str().is_some_and(|b| b.len() > 10), "{v}");
    let failing = provision::session::Script::linux(
        "fail.sh",
        "echo '{\"error\":\"no disk\"}'; echo trace >&2; exit 4",
    );
    match s.run_script(&failing, &[]) {
        Err(SessionError::ScriptFailed {
            code: 4,
            error: Some(e),
            stderr_tail,
            ..
        }) => {
            assert_eq!(e, "no disk");
            assert_eq!(stderr_tail.trim(), "trace");
        }
        other => panic!("{other:?}"),
    }
    let args = provision::session::Script::linux(
        "args.sh",
        "printf '{\"a\":\"%s\",\"b\":\"%s\"}\\n' \"$1\" \"$2\"",
    );
    let v = s
        .run_script(&args, &[("a", "x y".into()), ("b", "it's".into())])
        .unwrap();
    assert_eq!(
        (v["a"].as_str(), v["b"].as_str()),
        (Some("x y"), Some("it's"))
    );
}

#[test]
fn single_files_over_sftp() {
    let mut s = session();
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src.bin");
    let data: Vec<u8> = (0..3_500_000u32)
        .map(|i| (i.wrapping_mul(2654435761) >> 24) as u8)
        .collect();
    std::fs::write(&src, &data).unwrap();
    let remote = dir.path().join("remote.bin");
    assert_eq!(
        s.upload_file(&src, remote.to_str().unwrap()).unwrap(),
        data.len() as u64
    );
    assert_eq!(std::fs::read(&remote).unwrap(), data);
    let back = dir.path().join("sub/back.bin");
    assert_eq!(
        s.download_file(remote.to_str().unwrap(), &back).unwrap(),
        data.len() as u64
    );
    assert_eq!(std::fs::read(&back).unwrap(), data);
    let err = s
        .download_file("/nonexistent/file", &dir.path().join("x"))
        .unwrap_err();
    assert!(err.to_string().contains("/nonexistent/file"), "{err}");
    assert!(!dir.path().join("x").exists());
}

/// ~100 MiB in 5,000 files over 50 directories, deterministic contents.
fn make_tree(root: &Path, files: usize, total: usize) -> BTreeMap<String, Vec<u8>> {
    let mut m = BTreeMap::new();
    let per = total / files;
    for i in 0..files {
        let rel = format!("d{:02}/f{i:05}.bin", i % 50);
        let size = per + (i % 7) * 13 - 39;
        let mut v = Vec::with_capacity(size);
        let mut x = i as u32 ^ 0x9e37_79b9;
        for _ in 0..size {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            v.push(x as u8);
        }
        let p = root.join(&rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(&p, &v).unwrap();
        m.insert(rel, v);
    }
    m
}

#[test]
fn tree_upload_and_download_100mb_5000_files() {
    let mut s = session();
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    let want = make_tree(&src, 5000, 100 * 1024 * 1024);
    let remote = dir.path().join("remote dir");
    let t = Instant::now();
    let up = s.upload_tree(&src, remote.to_str().unwrap()).unwrap();
    eprintln!(
        "upload_tree: {} files, {} bytes in {:?}",
        up.files,
        up.bytes,
        t.elapsed()
    );
    assert_eq!(up.files, 5000);
    for (rel, data) in &want {
        assert_eq!(&std::fs::read(remote.join(rel)).unwrap(), data, "{rel}");
    }
    let back = dir.path().join("back");
    let t = Instant::now();
    let down = s.download_tree(remote.to_str().unwrap(), &back).unwrap();
    eprintln!("download_tree: {} files in {:?}", down.files, t.elapsed());
    assert_eq!(down, up);
    for (rel, data) in &want {
        assert_eq!(&std::fs::read(back.join(rel)).unwrap(), data, "{rel}");
    }
}

#[test]
fn host_key_is_pinned_on_first_use() {
    let f = fixture();
    let state = tempfile::tempdir().unwrap();
    let kh = state.path().join("ssh/known_hosts");
    let opts = SessionOptions::new(&kh);
    drop(Session::connect(&endpoint(f), &opts).unwrap());
    let text = std::fs::read_to_string(&kh).unwrap();
    assert_eq!(
        text.trim(),
        format!(
            "[127.0.0.1]:{} {}",
            f.sshd.port(),
            f.sshd.host_public_key().unwrap()
        )
    );
    // A different pinned key is refused with the way out in the message.
    std::fs::write(&kh, format!("[127.0.0.1]:{} ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOtherKeyOtherKeyOtherKeyOtherKeyOtherKey\n", f.sshd.port())).unwrap();
    let err = Session::connect(&endpoint(f), &opts).unwrap_err();
    assert!(matches!(err, SessionError::HostKeyChanged { .. }), "{err}");
    assert!(err.to_string().contains("--accept-new-host-key"), "{err}");
    let mut accept = opts.clone();
    accept.accept_new_host_key = true;
    drop(Session::connect(&endpoint(f), &accept).unwrap());
    assert!(
        std::fs::read_to_string(&kh)
            .unwrap()
            .contains(&f.sshd.host_public_key().unwrap())
    );
}

#[test]
fn bad_key_gives_an_auth_error() {
    let f = fixture();
    let mut ep = endpoint(f);
    ep.identity = Some("/nonexistent/key".into());
    let opts = SessionOptions::new(f.state.path().join("known_hosts"));
    let err = Session::connect(&ep, &opts).unwrap_err();
    assert!(matches!(err, SessionError::Auth { .. }), "{err}");
    assert!(err.to_string().contains("/nonexistent/key"));
}

/// A loopback relay that can be frozen: bytes stop flowing both ways but the sockets stay open,
/// like a VM that hangs or a network path that dies silently.
struct FreezableProxy {
    port: u16,
    frozen: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl FreezableProxy {
    fn start(target: u16) -> FreezableProxy {
        use std::io::{Read, Write};
        use std::sync::atomic::Ordering;
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let frozen = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let f = frozen.clone();
        std::thread::spawn(move || {
            let (client, _) = listener.accept().unwrap();
            let server = std::net::TcpStream::connect(("127.0.0.1", target)).unwrap();
            for (mut from, mut to) in [
                (client.try_clone().unwrap(), server.try_clone().unwrap()),
                (server, client),
            ] {
                let f = f.clone();
                std::thread::spawn(move || {
                    let mut buf = [0u8; 65536];
                    // Bounded: the relay ends with its sockets, at the latest when the test exits.
                    loop {
                        while f.load(Ordering::SeqCst) {
                            std::thread::sleep(Duration::from_millis(50));
                        }
                        match from.read(&mut buf) {
                            Ok(0) | Err(_) => break,
                            Ok(n) => {
                                if f.load(Ordering::SeqCst) {
                                    // Swallow what arrived while freezing.
                                    continue;
                                }
                                if to.write_all(&buf[..n]).is_err() {
                                    break;
                                }
                            }
                        }
                    }
                });
            }
        });
        FreezableProxy { port, frozen }
    }
}

#[test]
fn a_silently_dead_connection_is_detected_within_the_keepalive_bound() {
    let f = fixture();
    let proxy = FreezableProxy::start(f.sshd.port());
    let mut ep = endpoint(f);
    ep.port = proxy.port;
    let mut opts = SessionOptions::new(tempfile::tempdir().unwrap().path().join("known_hosts"));
    opts.keepalive = Duration::from_secs(1);
    let mut s = Session::connect(&ep, &opts).unwrap();
    let frozen = proxy.frozen.clone();
    let start = Instant::now();
    let err = s
        .exec(&sh("echo started; sleep 60"), &mut |_, l| {
            if l == "started" {
                frozen.store(true, std::sync::atomic::Ordering::SeqCst);
            }
        })
        .unwrap_err();
    let took = start.elapsed();
    assert!(matches!(err, SessionError::ConnectionLost { .. }), "{err}");
    assert!(err.to_string().contains("despite keepalives"), "{err}");
    // 3 keepalive intervals + 5 s, plus the bounded teardown.
    assert!(took < Duration::from_secs(15), "detected after {took:?}");
    assert!(!s.is_connected());
}
