//! An existing libvirt domain (for example one made by cilium's `setup.sh`), driven through
//! `virsh` with a timeout on every call.

use std::ffi::OsStr;
use std::time::{Duration, Instant};

use super::error::VmError;
use super::events::{Phase, VmEvent};
use super::image::{SnapshotInfo, validate_snapshot_name};
use super::process::run_tool;
use super::readiness;
use super::unmanaged;
use super::{UpOptions, UpOutcome, VmDirs, VmState, VmStatus};
use crate::config::VmConfig;
use crate::session::Endpoint;

const VIRSH_TIMEOUT: Duration = Duration::from_secs(60);

/// A libvirt domain.
#[derive(Debug)]
pub struct LibvirtVm {
    cfg: VmConfig,
    dirs: VmDirs,
}

/// `virsh domstate` output → state (pure).
pub fn parse_domstate(out: &str) -> VmState {
    match out.lines().next().unwrap_or("").trim() {
        "running" | "idle" | "in shutdown" | "blocked" => VmState::Running,
        "paused" | "pmsuspended" => VmState::Paused,
        _ => VmState::Stopped,
    }
}

/// First IPv4 address in `virsh domifaddr` output (pure).
pub fn parse_domifaddr(out: &str) -> Option<String> {
    out.lines().find_map(|l| {
        let cols: Vec<&str> = l.split_whitespace().collect();
        let i = cols.iter().position(|c| *c == "ipv4")?;
        let addr = cols.get(i + 1)?;
        Some(addr.split('/').next()?.to_string())
    })
}

/// `virsh snapshot-list --name` output → names (pure).
pub fn parse_snapshot_names(out: &str) -> Vec<String> {
    out.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(str::to_string)
        .collect()
}

impl LibvirtVm {
    pub fn new(cfg: &VmConfig, dirs: &VmDirs) -> Result<LibvirtVm, VmError> {
        if cfg.domain.is_empty() {
            return Err(VmError::Config(
                "backend = \"libvirt\" needs `domain` (the libvirt domain name)".into(),
            ));
        }
        Ok(LibvirtVm {
            cfg: cfg.clone(),
            dirs: dirs.clone(),
        })
    }

    fn virsh(&self, args: &[&str]) -> Result<String, VmError> {
        let mut all: Vec<&OsStr> = vec!["-c".as_ref(), self.cfg.libvirt_uri.as_ref()];
        all.extend(args.iter().map(|a| a.as_ref() as &OsStr));
        run_tool("virsh", &all, VIRSH_TIMEOUT)
    }

    fn state(&self) -> Result<VmState, VmError> {
        Ok(parse_domstate(
            &self.virsh(&["domstate", &self.cfg.domain])?,
        ))
    }

    fn address(&self) -> Option<String> {
        for source in ["lease", "agent", "arp"] {
            if let Ok(out) = self.virsh(&["domifaddr", &self.cfg.domain, "--source", source])
                && let Some(ip) = parse_domifaddr(&out)
            {
                return Some(ip);
            }
        }
        None
    }

    fn endpoint(&self, host: String) -> Endpoint {
        Endpoint {
            host,
            ..unmanaged::endpoint(&self.cfg, &self.dirs)
        }
    }

    pub fn up(
        &mut self,
        opts: &UpOptions,
        on_event: &mut dyn FnMut(VmEvent),
    ) -> Result<UpOutcome, VmError> {
        if let Some(name) = &opts.restore {
            validate_snapshot_name(name)?;
            self.virsh(&["snapshot-revert", &self.cfg.domain, name, "--running"])?;
        }
        let started = Instant::now();
        match self.state()? {
            VmState::Running => {}
            VmState::Paused => drop(self.virsh(&["resume", &self.cfg.domain])?),
            _ => drop(self.virsh(&["start", &self.cfg.domain])?),
        }
        let limit = Duration::from_secs(self.cfg.boot_timeout);
        let port = unmanaged::ssh_port(&self.cfg);
        let ip = readiness::wait_phase(
            Phase::Booting,
            limit,
            Duration::from_secs(2),
            opts.cancel.as_ref(),
            on_event,
            || Ok::<_, VmError>(self.address().filter(|ip| banner(ip, port))),
        )
        .map_err(|e| {
            unmanaged::wait_failed(
                e,
                Phase::Booting,
                "screendumps are taken for the qemu backend only",
                format!(
                    "domain {} has no IPv4 address answering SSH on port {port} (virsh domifaddr)",
                    self.cfg.domain
                ),
            )
        })?;
        let mut o = unmanaged::up_outcome(self.endpoint(ip), started, &self.dirs, false);
        o.restored_snapshot = opts.restore.clone();
        Ok(o)
    }

    pub fn down(&mut self, on_event: &mut dyn FnMut(VmEvent)) -> Result<bool, VmError> {
        if self.state()? == VmState::Stopped {
            return Ok(false);
        }
        self.virsh(&["shutdown", &self.cfg.domain])?;
        let limit = Duration::from_secs(self.cfg.shutdown_timeout);
        let r = readiness::wait_phase(
            Phase::ShuttingDown,
            limit,
            Duration::from_secs(1),
            None,
            on_event,
            || Ok::<_, VmError>((self.state()? == VmState::Stopped).then_some(())),
        );
        if r.is_err() {
            on_event(VmEvent::Warning {
                message: format!(
                    "domain {} did not shut down within {limit:?}; forcing it off",
                    self.cfg.domain
                ),
            });
            self.virsh(&["destroy", &self.cfg.domain])?;
        }
        Ok(true)
    }

    pub fn status(&mut self) -> Result<VmStatus, VmError> {
        let raw = self.virsh(&["domstate", &self.cfg.domain])?;
        let state = parse_domstate(&raw);
        let endpoint = (state == VmState::Running)
            .then(|| self.address())
            .flatten()
            .map(|ip| self.endpoint(ip).into());
        Ok(VmStatus {
            name: self.cfg.domain.clone(),
            backend: "libvirt",
            state,
            qemu_status: Some(raw.trim().to_string()),
            endpoint,
            base_image: None,
            overlay: None,
            snapshots: self.snapshot_list().unwrap_or_default(),
            accel: None,
            pid: None,
            serial_log: Default::default(),
            console: None,
        })
    }

    pub fn snapshot_save(&mut self, name: &str) -> Result<(), VmError> {
        validate_snapshot_name(name)?;
        self.virsh(&["snapshot-create-as", &self.cfg.domain, name])
            .map(drop)
    }

    pub fn snapshot_list(&mut self) -> Result<Vec<SnapshotInfo>, VmError> {
        let out = self.virsh(&["snapshot-list", &self.cfg.domain, "--name"])?;
        Ok(parse_snapshot_names(&out)
            .into_iter()
            .map(|name| SnapshotInfo {
                name,
                vm_state_bytes: 0,
                date_unix: 0,
            })
            .collect())
    }

    pub fn snapshot_delete(&mut self, name: &str) -> Result<(), VmError> {
        validate_snapshot_name(name)?;
        self.virsh(&["snapshot-delete", &self.cfg.domain, name])
            .map(drop)
    }
}

fn banner(host: &str, port: u16) -> bool {
    host.parse::<std::net::IpAddr>().is_ok_and(|ip| {
        readiness::ssh_banner_at(std::net::SocketAddr::new(ip, port), Duration::from_secs(2))
            .is_some()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn domstate_is_parsed() {
        for (out, want) in [
            ("running\n\n", VmState::Running),
            ("shut off\n", VmState::Stopped),
            ("paused\n", VmState::Paused),
            ("in shutdown\n", VmState::Running),
            ("crashed\n", VmState::Stopped),
            ("", VmState::Stopped),
        ] {
            assert_eq!(parse_domstate(out), want, "{out:?}");
        }
    }

    #[test]
    fn domifaddr_gives_the_first_ipv4() {
        let out = " Name       MAC address          Protocol     Address
-------------------------------------------------------------------------------
 vnet3      52:54:00:12:34:56    ipv6         fe80::5054:ff:fe12:3456/64
 vnet3      52:54:00:12:34:56    ipv4         192.168.122.87/24
";
        assert_eq!(parse_domifaddr(out).as_deref(), Some("192.168.122.87"));
        let header_only =
            " Name       MAC address          Protocol     Address\n-----------------------\n\n";
        assert_eq!(parse_domifaddr(header_only), None);
    }

    #[test]
    fn snapshot_names_are_listed() {
        assert_eq!(
            parse_snapshot_names("ready\nclean-install\n\n"),
            vec!["ready", "clean-install"]
        );
        assert!(parse_snapshot_names("\n").is_empty());
    }

    #[test]
    fn a_domain_is_required() {
        let dirs = VmDirs {
            state: "/s".into(),
            cache: "/c".into(),
        };
        let e = LibvirtVm::new(
            &VmConfig {
                backend: crate::BackendKind::Libvirt,
                ..Default::default()
            },
            &dirs,
        )
        .unwrap_err();
        assert!(e.to_string().contains("domain"), "{e}");
    }
}
