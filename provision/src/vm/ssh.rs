//! An existing host reached over SSH: harness waits for it but never starts, stops or snapshots it.

use std::time::{Duration, Instant};

use super::error::VmError;
use super::events::{Phase, VmEvent};
use super::readiness;
use super::unmanaged;
use super::{UpOptions, UpOutcome, VmDirs, VmState, VmStatus};
use crate::config::VmConfig;
use crate::session::Endpoint;

/// The error for lifecycle operations on an existing host.
pub fn unsupported(what: &str) -> VmError {
    VmError::Unsupported {
        backend: "ssh",
        what: format!(
            "{what}: harness does not manage an existing host's lifecycle; use the qemu or libvirt backend"
        ),
    }
}

/// An existing host.
#[derive(Debug)]
pub struct SshHost {
    cfg: VmConfig,
    dirs: VmDirs,
}

impl SshHost {
    pub fn new(cfg: &VmConfig, dirs: &VmDirs) -> Result<SshHost, VmError> {
        if cfg.host.is_empty() {
            return Err(VmError::Config("backend = \"ssh\" needs `host`".into()));
        }
        Ok(SshHost {
            cfg: cfg.clone(),
            dirs: dirs.clone(),
        })
    }

    pub fn endpoint(&self) -> Endpoint {
        unmanaged::endpoint(&self.cfg, &self.dirs)
    }

    /// Wait (bounded by `boot_timeout`) until the host's sshd sends its banner.
    pub fn up(
        &mut self,
        opts: &UpOptions,
        on_event: &mut dyn FnMut(VmEvent),
    ) -> Result<UpOutcome, VmError> {
        if opts.restore.is_some() {
            return Err(unsupported("snapshots"));
        }
        let started = Instant::now();
        let ep = self.endpoint();
        let addr = format!("{}:{}", ep.host, ep.port);
        let limit = Duration::from_secs(self.cfg.boot_timeout);
        readiness::wait_phase(
            Phase::WaitingForSsh,
            limit,
            Duration::from_secs(1),
            opts.cancel.as_ref(),
            on_event,
            || Ok::<_, VmError>(banner_at(&addr).then_some(())),
        )
        .map_err(|e| {
            unmanaged::wait_failed(
                e,
                Phase::WaitingForSsh,
                "an existing host has no screen harness can capture",
                format!("nothing sent an SSH banner on {addr}"),
            )
        })?;
        Ok(unmanaged::up_outcome(ep, started, &self.dirs, true))
    }

    pub fn status(&mut self) -> Result<VmStatus, VmError> {
        Ok(VmStatus {
            name: self.cfg.name.clone(),
            backend: "ssh",
            state: VmState::Unmanaged,
            qemu_status: None,
            endpoint: Some(self.endpoint().into()),
            base_image: None,
            overlay: None,
            snapshots: Vec::new(),
            accel: None,
            pid: None,
            serial_log: Default::default(),
            console: None,
        })
    }
}

fn banner_at(addr: &str) -> bool {
    use std::net::ToSocketAddrs;
    addr.to_socket_addrs()
        .ok()
        .and_then(|mut a| a.next())
        .is_some_and(|sa| readiness::ssh_banner_at(sa, Duration::from_secs(2)).is_some())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn dirs() -> VmDirs {
        VmDirs {
            state: "/nonexistent-state".into(),
            cache: "/c".into(),
        }
    }

    #[test]
    fn lifecycle_and_snapshots_say_unsupported() {
        let e = unsupported("snapshots").to_string();
        assert!(e.contains("ssh backend does not support snapshots"), "{e}");
    }

    #[test]
    fn up_waits_for_the_banner_of_an_existing_host() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        let t = std::thread::spawn(move || {
            let (mut c, _) = l.accept().unwrap();
            c.write_all(b"SSH-2.0-fake\r\n").unwrap();
        });
        let cfg = VmConfig {
            backend: crate::BackendKind::Ssh,
            host: "127.0.0.1".into(),
            port,
            boot_timeout: 10,
            ..Default::default()
        };
        let mut h = SshHost::new(&cfg, &dirs()).unwrap();
        let o = h.up(&UpOptions::default(), &mut |_| {}).unwrap();
        assert_eq!(
            (o.endpoint.host.as_str(), o.endpoint.port),
            ("127.0.0.1", port)
        );
        t.join().unwrap();
        assert_eq!(h.status().unwrap().state, VmState::Unmanaged);
    }

    #[test]
    fn up_times_out_when_nothing_answers() {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let cfg = VmConfig {
            backend: crate::BackendKind::Ssh,
            host: "127.0.0.1".into(),
            port,
            boot_timeout: 1,
            ..Default::default()
        };
        let e = SshHost::new(&cfg, &dirs())
            .unwrap()
            .up(&UpOptions::default(), &mut |_| {})
            .unwrap_err();
        assert!(matches!(e, VmError::Timeout(_)), "{e}");
    }
}
