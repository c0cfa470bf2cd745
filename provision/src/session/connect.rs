//! Opening the libssh2 connection: TCP with TCP_NODELAY, handshake, pinned host key, key or
//! agent auth, within the connect timeout.
use std::net::{TcpStream, ToSocketAddrs};
use std::time::Duration;

use base64::Engine as _;

use super::hostkey::{self, PinCheck};
use super::ssh::*;
use super::stream::*;
use super::{Endpoint, SessionError, SessionOptions};

/// Opens, verifies and authenticates one SSH connection, all bounded by `timeout`.
pub(super) fn open(
    ep: &Endpoint,
    opts: &SessionOptions,
    timeout: Duration,
) -> Result<ssh2::Session, SessionError> {
    let endpoint = ep.to_string();
    let tcp = tcp_connect(ep, &endpoint, timeout)?;
    let sess = handshake(tcp, &endpoint, timeout)?;
    check_host_key(&sess, ep, &endpoint, opts)?;
    authenticate(&sess, ep, &endpoint)?;
    sess.set_timeout(BLOCKING_TIMEOUT.as_millis() as u32);
    sess.set_keepalive(true, 0);
    Ok(sess)
}

fn connect_err(endpoint: &str, detail: String) -> SessionError {
    SessionError::Connect {
        endpoint: endpoint.to_string(),
        detail,
    }
}

/// The first address of `ep` that accepts a TCP connection within `timeout`, with TCP_NODELAY.
fn tcp_connect(
    ep: &Endpoint,
    endpoint: &str,
    timeout: Duration,
) -> Result<TcpStream, SessionError> {
    let addrs: Vec<_> = (ep.host.as_str(), ep.port)
        .to_socket_addrs()
        .map_err(|e| connect_err(endpoint, format!("cannot resolve {}: {e}", ep.host)))?
        .collect();
    let mut last = None;
    let mut tcp = None;
    for a in &addrs {
        match TcpStream::connect_timeout(a, timeout) {
            Ok(s) => {
                tcp = Some(s);
                break;
            }
            Err(e) => last = Some(e),
        }
    }
    let tcp = tcp.ok_or_else(|| {
        connect_err(
            endpoint,
            last.map(|e| e.to_string())
                .unwrap_or_else(|| "no address".into()),
        )
    })?;
    tcp.set_nodelay(true)
        .map_err(|e| connect_err(endpoint, format!("TCP_NODELAY: {e}")))?;
    Ok(tcp)
}

/// The SSH handshake over `tcp`, preferring one stable host key type (so the pin does not flip
/// between algorithms) and the fast ciphers.
fn handshake(
    tcp: TcpStream,
    endpoint: &str,
    timeout: Duration,
) -> Result<ssh2::Session, SessionError> {
    let mut sess = ssh2::Session::new().map_err(|e| connect_err(endpoint, e.to_string()))?;
    sess.set_tcp_stream(tcp);
    sess.set_timeout(timeout.as_millis().max(1) as u32);
    let _ = sess.method_pref(
        ssh2::MethodType::HostKey,
        "ssh-ed25519,ecdsa-sha2-nistp256,ecdsa-sha2-nistp384,ecdsa-sha2-nistp521,rsa-sha2-512,rsa-sha2-256,ssh-rsa",
    );
    for mt in [ssh2::MethodType::CryptCs, ssh2::MethodType::CryptSc] {
        let _ = sess.method_pref(
            mt,
            "aes128-gcm@openssh.com,aes256-gcm@openssh.com,aes128-ctr,aes256-ctr,chacha20-poly1305@openssh.com",
        );
    }
    sess.handshake().map_err(|e| SessionError::Handshake {
        endpoint: endpoint.to_string(),
        detail: e.to_string(),
    })?;
    Ok(sess)
}

/// Compares the presented host key with the pin: pins a new one, and a changed one only when
/// `accept_new_host_key` says so.
fn check_host_key(
    sess: &ssh2::Session,
    ep: &Endpoint,
    endpoint: &str,
    opts: &SessionOptions,
) -> Result<(), SessionError> {
    let (key, ty) = sess.host_key().ok_or_else(|| SessionError::Handshake {
        endpoint: endpoint.to_string(),
        detail: "no host key".into(),
    })?;
    let presented = format!(
        "{} {}",
        hostkey::key_type_name(ty),
        base64::engine::general_purpose::STANDARD.encode(key)
    );
    let io = |e| {
        SessionError::io(
            format!(
                "reading the pinned host keys in {}",
                opts.known_hosts.display()
            ),
            e,
        )
    };
    match hostkey::check(&opts.known_hosts, &ep.host, ep.port, &presented).map_err(io)? {
        PinCheck::Match => {}
        PinCheck::New => {
            tracing::info!(endpoint = %endpoint, "pinning host key {presented}");
            hostkey::pin(&opts.known_hosts, &ep.host, ep.port, &presented).map_err(io)?;
        }
        PinCheck::Changed { pinned } if opts.accept_new_host_key => {
            tracing::warn!(endpoint = %endpoint, "host key changed from {pinned}; accepting {presented} as asked");
            hostkey::pin(&opts.known_hosts, &ep.host, ep.port, &presented).map_err(io)?;
        }
        PinCheck::Changed { pinned } => {
            return Err(SessionError::HostKeyChanged {
                endpoint: endpoint.to_string(),
                pinned,
                presented,
                known_hosts: opts.known_hosts.clone(),
            });
        }
    }
    Ok(())
}

/// Authenticates as `ep.user` with `ep.identity`, or with the SSH agent.
fn authenticate(sess: &ssh2::Session, ep: &Endpoint, endpoint: &str) -> Result<(), SessionError> {
    // A timeout or socket error during auth (a guest still booting behind QEMU's port forward)
    // is a connection problem worth retrying, not a rejected key.
    let auth_failure = |e: &ssh2::Error, rejected: SessionError| {
        if is_transport_error(e) {
            connect_err(endpoint, format!("authentication did not complete: {e}"))
        } else {
            rejected
        }
    };
    let auth_err = |how: String, detail: String| SessionError::Auth {
        endpoint: endpoint.to_string(),
        user: ep.user.clone(),
        how,
        detail,
    };
    match &ep.identity {
        Some(key) => {
            let how = format!("key {}", key.display());
            if !key.exists() {
                return Err(auth_err(how, "the key file does not exist".into()));
            }
            sess.userauth_pubkey_file(&ep.user, None, key, None)
                .map_err(|e| auth_failure(&e, auth_err(how, e.to_string())))?;
        }
        None => sess
            .userauth_agent(&ep.user)
            .map_err(|e| auth_failure(&e, auth_err("SSH agent".into(), e.to_string())))?,
    }
    if !sess.authenticated() {
        return Err(auth_err(
            "publickey".into(),
            "the server did not accept the key".into(),
        ));
    }
    Ok(())
}
