//! The VM's screen for a human (WinDbg in the guest needs one): VNC reachable only from this
//! host, on a Unix socket (default) or a loopback port guarded by a password that lives in the
//! VM's state directory (mode 0600) and is never printed unless asked for.

use std::io::Write as _;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::json;

use super::error::VmError;
use super::qmp::Qmp;
use super::state::VmPaths;
use crate::config::ConsoleKind;

/// The first VNC port: QEMU's `-vnc HOST:N` listens on 5900 + N.
pub const VNC_BASE_PORT: u16 = 5900;
/// VNC passwords are DES keys: QEMU uses at most 8 characters.
pub const PASSWORD_LEN: usize = 8;

/// Where a running VM's console is (recorded in `run.json`, shown by `harness status`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum Console {
    /// VNC on a Unix socket; no password (the socket is only reachable by this user).
    VncUnix { socket: PathBuf },
    /// VNC on a loopback port; the password is in `password_file`.
    VncTcp {
        host: String,
        port: u16,
        password_file: PathBuf,
    },
}

impl Console {
    /// `unix:/path/vnc.sock` or `127.0.0.1:5901`.
    pub fn address(&self) -> String {
        match self {
            Console::VncUnix { socket } => format!("unix:{}", socket.display()),
            Console::VncTcp { host, port, .. } => format!("{host}:{port}"),
        }
    }

    /// A `vnc://` URI for viewers that take one (remote-viewer).
    pub fn uri(&self) -> String {
        match self {
            Console::VncUnix { socket } => format!("vnc+unix://{}", socket.display()),
            Console::VncTcp { host, port, .. } => format!("vnc://{host}:{port}"),
        }
    }

    /// The password of a TCP console (read from its 0600 file); `None` for a Unix socket.
    pub fn password(&self) -> Result<Option<String>, VmError> {
        match self {
            Console::VncUnix { .. } => Ok(None),
            Console::VncTcp { password_file, .. } => read_password(password_file).map(Some),
        }
    }
}

/// QEMU's `-vnc` display number for a port (pure).
pub fn vnc_display(port: u16) -> Result<u16, VmError> {
    port.checked_sub(VNC_BASE_PORT).ok_or_else(|| {
        VmError::Config(format!(
            "console_port = {port}: QEMU's VNC ports start at {VNC_BASE_PORT}; use a port of \
             {VNC_BASE_PORT} or above, or 0 to pick a free one"
        ))
    })
}

/// The port for a TCP console: the configured one, or the first free one in 5900–5999.
pub fn pick_port(configured: u16) -> Result<u16, VmError> {
    if configured != 0 {
        vnc_display(configured)?;
        return Ok(configured);
    }
    (VNC_BASE_PORT..VNC_BASE_PORT + 100)
        .find(|p| std::net::TcpListener::bind(("127.0.0.1", *p)).is_ok())
        .ok_or_else(|| {
            VmError::Config(
                "no free loopback port in 5900-5999 for the VNC console; set [vm] console_port \
                 or use console = \"unix\""
                    .into(),
            )
        })
}

/// The console a new QEMU run of this VM gets (a port is picked for TCP).
pub fn plan(kind: ConsoleKind, port: u16, paths: &VmPaths) -> Result<Option<Console>, VmError> {
    Ok(match kind {
        ConsoleKind::None => None,
        ConsoleKind::Unix => Some(Console::VncUnix {
            socket: paths.vnc.clone(),
        }),
        ConsoleKind::Tcp => Some(Console::VncTcp {
            host: "127.0.0.1".into(),
            port: pick_port(port)?,
            password_file: paths.vnc_password.clone(),
        }),
    })
}

/// Map random bytes to a password of letters and digits (pure).
pub fn password_from_bytes(bytes: &[u8; PASSWORD_LEN]) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz23456789";
    bytes
        .iter()
        .map(|b| ALPHABET[*b as usize % ALPHABET.len()] as char)
        .collect()
}

/// A new random password (from the kernel's random source).
pub fn generate_password() -> Result<String, VmError> {
    let mut bytes = [0u8; PASSWORD_LEN];
    let path = Path::new("/dev/urandom");
    std::fs::File::open(path)
        .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut bytes))
        .map_err(VmError::io(
            "reading random bytes for the VNC password",
            path,
        ))?;
    Ok(password_from_bytes(&bytes))
}

/// Write the password readable by this user only (0600, also when the file existed).
pub fn write_password(path: &Path, password: &str) -> Result<(), VmError> {
    use std::os::unix::fs::PermissionsExt as _;
    let what = "writing the VNC password";
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .map_err(VmError::io(what, path))?;
    f.set_permissions(std::fs::Permissions::from_mode(0o600))
        .and_then(|()| f.write_all(password.as_bytes()))
        .map_err(VmError::io(what, path))
}

pub fn read_password(path: &Path) -> Result<String, VmError> {
    std::fs::read_to_string(path)
        .map(|s| s.trim().to_string())
        .map_err(VmError::io(
            "reading the VNC password (is the VM running with console = \"tcp\"?)",
            path,
        ))
}

/// Give QEMU the VNC password: `set_password`, or `change-vnc-password` on QEMUs without it.
pub fn apply_password(qmp: &mut Qmp, password: &str) -> Result<(), VmError> {
    let first = qmp.execute(
        "set_password",
        Some(json!({ "protocol": "vnc", "password": password })),
    );
    match first {
        Ok(_) => Ok(()),
        Err(e) => qmp
            .execute("change-vnc-password", Some(json!({ "password": password })))
            .map(drop)
            .map_err(|e2| VmError::Qmp {
                command: "set_password".into(),
                detail: format!("{e}; change-vnc-password: {e2}"),
            }),
    }
}

/// For a TCP console: a fresh password, stored, then given to the QEMU behind `qmp_socket`.
pub fn secure(console: &Console, qmp_socket: &Path) -> Result<(), VmError> {
    let Console::VncTcp { password_file, .. } = console else {
        return Ok(());
    };
    let password = generate_password()?;
    write_password(password_file, &password)?;
    let mut q = Qmp::connect(qmp_socket, std::time::Duration::from_secs(10))?;
    apply_password(&mut q, &password)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vnc_ports_map_to_display_numbers() {
        assert_eq!(vnc_display(5900).unwrap(), 0);
        assert_eq!(vnc_display(5907).unwrap(), 7);
        let e = vnc_display(22).unwrap_err().to_string();
        assert!(e.contains("5900 or above"), "{e}");
        assert!(pick_port(80).is_err());
        assert_eq!(pick_port(5999).unwrap(), 5999);
        let p = pick_port(0).unwrap();
        assert!((5900..6000).contains(&p), "{p}");
    }

    #[test]
    fn plan_follows_the_configured_kind() {
        let paths = VmPaths::new(Path::new("/s"), "efw");
        assert_eq!(plan(ConsoleKind::None, 0, &paths).unwrap(), None);
        let unix = plan(ConsoleKind::Unix, 0, &paths).unwrap().unwrap();
        assert_eq!(unix.address(), "unix:/s/vms/efw/vnc.sock");
        assert_eq!(unix.uri(), "vnc+unix:///s/vms/efw/vnc.sock");
        assert_eq!(unix.password().unwrap(), None);
        let tcp = plan(ConsoleKind::Tcp, 5905, &paths).unwrap().unwrap();
        assert_eq!(tcp.address(), "127.0.0.1:5905");
        assert_eq!(tcp.uri(), "vnc://127.0.0.1:5905");
        assert_eq!(
            tcp,
            Console::VncTcp {
                host: "127.0.0.1".into(),
                port: 5905,
                password_file: "/s/vms/efw/vnc-password".into()
            }
        );
        let json = serde_json::to_value(&tcp).unwrap();
        assert_eq!(json["kind"], "vnc-tcp");
    }

    #[test]
    fn passwords_are_eight_distinct_alphanumerics_in_a_private_file() {
        use std::os::unix::fs::PermissionsExt as _;
        assert_eq!(password_from_bytes(&[0; 8]), "AAAAAAAA");
        let a = generate_password().unwrap();
        let b = generate_password().unwrap();
        assert_eq!(a.len(), PASSWORD_LEN);
        assert!(a.chars().all(|c| c.is_ascii_alphanumeric()), "{a}");
        assert_ne!(a, b);
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("vnc-password");
        std::fs::write(&f, "old-and-too-open").unwrap();
        std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o644)).unwrap();
        write_password(&f, &a).unwrap();
        let mode = std::fs::metadata(&f).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert_eq!(read_password(&f).unwrap(), a);
    }
}
