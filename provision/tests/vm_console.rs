//! The VM console for real: one Linux test guest under TCG with `console = "tcp"` (a loopback
//! VNC port guarded by the password harness sets through QMP), an RFB handshake with the right
//! and a wrong password, a screendump; and the default Unix-socket console on a QEMU that boots
//! nothing (`-S -machine none`), through the same command-line function.

mod vm_common;

use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt as _;
use std::time::Duration;

use provision::ConsoleKind;
use provision::vm::console::{Console, read_password};
use provision::vm::qemu::cmdline;
use provision::vm::{UpOptions, Vm};
use vm_common::*;

const BANNER: &[u8; 12] = b"RFB 003.008\n";

/// Read the server's banner, answer with the same version, return the offered security types.
fn rfb_security_types(s: &mut (impl Read + Write)) -> Vec<u8> {
    let mut banner = [0u8; 12];
    s.read_exact(&mut banner).unwrap();
    assert_eq!(&banner, BANNER, "{:?}", String::from_utf8_lossy(&banner));
    s.write_all(BANNER).unwrap();
    let mut n = [0u8; 1];
    s.read_exact(&mut n).unwrap();
    assert!(n[0] > 0, "the server refused the connection");
    let mut types = vec![0u8; n[0] as usize];
    s.read_exact(&mut types).unwrap();
    types
}

fn read_u32(s: &mut impl Read) -> u32 {
    let mut b = [0u8; 4];
    s.read_exact(&mut b).unwrap();
    u32::from_be_bytes(b)
}

/// ClientInit (shared) → ServerInit: the framebuffer size and the desktop name.
fn rfb_init(s: &mut (impl Read + Write)) -> (u16, u16, String) {
    s.write_all(&[1]).unwrap();
    let mut head = [0u8; 24];
    s.read_exact(&mut head).unwrap();
    let w = u16::from_be_bytes([head[0], head[1]]);
    let h = u16::from_be_bytes([head[2], head[3]]);
    let len = u32::from_be_bytes([head[20], head[21], head[22], head[23]]) as usize;
    let mut name = vec![0u8; len];
    s.read_exact(&mut name).unwrap();
    (w, h, String::from_utf8_lossy(&name).into_owned())
}

/// VNC authentication's response: the challenge DES-encrypted with the password, each key byte
/// bit-reversed (RFC 6143 §7.2.2). DES through the openssl tool (its legacy provider).
fn vnc_response(password: &str, challenge: &[u8; 16]) -> Vec<u8> {
    let mut key = [0u8; 8];
    for (k, b) in key.iter_mut().zip(password.bytes()) {
        *k = b.reverse_bits();
    }
    let hex: String = key.iter().map(|b| format!("{b:02x}")).collect();
    let mut child = std::process::Command::new("openssl")
        .args(["enc", "-des-ecb", "-nopad", "-provider", "legacy"])
        .args(["-provider", "default", "-K", &hex])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("openssl (for DES) on PATH");
    child.stdin.take().unwrap().write_all(challenge).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success() && out.stdout.len() == 16, "{out:?}");
    out.stdout
}

/// VNC authentication with `password`; returns the SecurityResult (0 = accepted).
fn vnc_auth(s: &mut (impl Read + Write), password: &str) -> u32 {
    let types = rfb_security_types(s);
    assert_eq!(
        types,
        [2],
        "a port console must offer only VNC authentication"
    );
    s.write_all(&[2]).unwrap();
    let mut challenge = [0u8; 16];
    s.read_exact(&mut challenge).unwrap();
    s.write_all(&vnc_response(password, &challenge)).unwrap();
    read_u32(s)
}

fn tcp(port: u16) -> std::net::TcpStream {
    let s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    s
}

#[test]
fn a_booted_guest_has_a_password_protected_loopback_console_and_screendumps() {
    let tmp = tempfile::tempdir().unwrap();
    let dirs = dirs(tmp.path());
    let mut cfg = linux_cfg("console");
    cfg.accel = provision::Accel::Tcg;
    cfg.console = ConsoleKind::Tcp;
    let mut vm = Vm::open(&cfg, &dirs).unwrap();
    vm.up(&UpOptions::default(), &mut |_| {}).unwrap();

    let st = vm.status().unwrap();
    let Some(Console::VncTcp {
        host,
        port,
        password_file,
    }) = st.console.clone()
    else {
        panic!("status shows no TCP console: {st:?}");
    };
    assert_eq!(host, "127.0.0.1");
    assert!((5900..6000).contains(&port), "{port}");
    assert_eq!(vm.console().unwrap(), st.console);
    let json = serde_json::to_value(&st).unwrap();
    assert_eq!(json["console"]["kind"], "vnc-tcp", "{json}");
    let mode = std::fs::metadata(&password_file)
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    let password = read_password(&password_file).unwrap();
    assert_eq!(password.len(), 8);
    assert!(!json.to_string().contains(&password), "status leaks it");

    // The right password gets the framebuffer; a wrong one is refused.
    let mut s = tcp(port);
    assert_eq!(vnc_auth(&mut s, &password), 0, "right password refused");
    let (w, h, name) = rfb_init(&mut s);
    assert!(w >= 320 && h >= 200, "{w}x{h}");
    assert!(name.contains("console"), "desktop name {name:?}");
    drop(s);
    let mut s = tcp(port);
    assert_ne!(vnc_auth(&mut s, "wrong-pw"), 0, "wrong password accepted");
    drop(s);

    let shot = tmp.path().join("shots/now.png");
    std::fs::create_dir_all(shot.parent().unwrap()).unwrap();
    let written = vm.screendump(&shot).unwrap();
    let bytes = std::fs::read(&written).unwrap();
    assert_eq!(written, shot, "QEMU 7.1+ writes PNG");
    assert!(bytes.starts_with(b"\x89PNG\r\n\x1a\n"), "not a PNG");

    vm.down(&mut |_| {}).unwrap();
    assert!(!password_file.exists(), "the password outlived the VM");
    assert_eq!(vm.status().unwrap().console, None);
}

#[test]
fn the_default_unix_socket_console_speaks_rfb_without_a_password() {
    let tmp = tempfile::tempdir().unwrap();
    let sock = tmp.path().join("vnc.sock");
    let console = Console::VncUnix {
        socket: sock.clone(),
    };
    // A QEMU that boots nothing: paused (-S), no machine; only its VNC server matters.
    let mut cmd = std::process::Command::new("qemu-system-x86_64");
    cmd.args(["-S", "-nodefaults", "-no-user-config", "-display", "none"])
        .args(["-machine", "none"])
        .args(cmdline::vnc_args(Some(&console)))
        .stdin(std::process::Stdio::null());
    let mut qemu = provision::vm::process::Process::spawn(cmd, &tmp.path().join("qemu.log"))
        .expect("qemu-system-x86_64");
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let mut s = loop {
        match std::os::unix::net::UnixStream::connect(&sock) {
            Ok(s) => break s,
            Err(e) if std::time::Instant::now() > deadline => {
                panic!(
                    "no VNC socket: {e}; {:?}",
                    std::fs::read_to_string(tmp.path().join("qemu.log"))
                )
            }
            Err(_) => std::thread::sleep(Duration::from_millis(50)),
        }
    };
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    assert_eq!(
        rfb_security_types(&mut s),
        [1],
        "Unix socket: security None"
    );
    s.write_all(&[1]).unwrap();
    assert_eq!(read_u32(&mut s), 0, "SecurityResult");
    let (_, _, name) = rfb_init(&mut s);
    assert!(name.contains("QEMU"), "{name:?}");
    qemu.kill();
}
