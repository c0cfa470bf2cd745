//! Checks across keys that types alone cannot express, each with a sentence a user understands.

use provision::{BackendKind, GuestOs};

use super::Config;

/// How bad a problem is: errors stop `config check` and every command that needs the key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Error,
    Warning,
}

/// One problem with the configuration as a whole.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Problem {
    pub severity: Severity,
    pub key: String,
    pub message: String,
}

fn err(key: &str, message: impl Into<String>) -> Problem {
    Problem {
        severity: Severity::Error,
        key: key.into(),
        message: message.into(),
    }
}

fn warn(key: &str, message: impl Into<String>) -> Problem {
    Problem {
        severity: Severity::Warning,
        key: key.into(),
        message: message.into(),
    }
}

/// Every cross-key problem in a configuration.
pub fn validate(cfg: &Config) -> Vec<Problem> {
    let vm = &cfg.vm;
    let mut out = backend_problems(vm);
    out.extend(machine_problems(vm));
    out.extend(zero_timeouts(cfg));
    if vm.os == GuestOs::Windows && cfg.install.guest_dir.contains(' ') {
        out.push(err(
            "install.guest_dir",
            "must not contain spaces: efW's install_ebpf.psm1 breaks on them",
        ));
    }
    out.extend(iso_problems(vm));
    out.extend(source_problems(cfg));
    for (name, suite) in &cfg.suites {
        if suite.packages.is_empty() {
            out.push(err(
                &format!("suites.{name}.packages"),
                "lists no packages (use [\"./...\"] for all)",
            ));
        }
    }
    out
}

/// What the backend needs to reach or make the guest.
fn backend_problems(vm: &provision::VmConfig) -> Vec<Problem> {
    let mut out = Vec::new();
    match vm.backend {
        BackendKind::Ssh => {
            if vm.host.trim().is_empty() {
                out.push(err("vm.host", "the ssh backend needs vm.host"));
            }
            if vm.port == 0 {
                out.push(err(
                    "vm.port",
                    "the ssh backend needs vm.port (22 for a normal sshd)",
                ));
            }
        }
        BackendKind::Libvirt => {
            if vm.domain.trim().is_empty() {
                out.push(err(
                    "vm.domain",
                    "the libvirt backend needs vm.domain (see `virsh list --all`)",
                ));
            }
        }
        BackendKind::Qemu => match vm.os {
            GuestOs::Linux => {
                if vm.image.is_none() && (vm.kernel.is_none() || vm.initrd.is_none()) {
                    out.push(err(
                        "vm.kernel",
                        "a Linux guest needs vm.kernel and vm.initrd, or vm.image",
                    ));
                }
            }
            GuestOs::Windows => {
                if vm.iso.is_none() && vm.image.is_none() {
                    out.push(warn(
                        "vm.iso",
                        "no Windows ISO configured: creating the VM needs vm.iso (or --iso); reusing an existing golden image does not",
                    ));
                }
            }
        },
    }
    out
}

/// The virtual machine itself: memory, CPUs, console port, TPM.
fn machine_problems(vm: &provision::VmConfig) -> Vec<Problem> {
    let mut out = Vec::new();
    if vm.memory_mib < 256 {
        out.push(err(
            "vm.memory_mib",
            "at least 256 MiB; Windows 11 wants 4096 or more",
        ));
    } else if vm.os == GuestOs::Windows && vm.memory_mib < 4096 {
        out.push(warn("vm.memory_mib", "Windows 11 wants at least 4096 MiB"));
    }
    if vm.cpus == 0 {
        out.push(err("vm.cpus", "at least 1 CPU"));
    }
    if vm.console_port != 0 && vm.console_port < provision::vm::console::VNC_BASE_PORT {
        out.push(err(
            "vm.console_port",
            "QEMU's VNC ports start at 5900: use 5900 or above, or 0 to pick a free one",
        ));
    }
    if vm.tpm && vm.os == GuestOs::Linux {
        out.push(err(
            "vm.tpm",
            "tpm = true is only supported for os = \"windows\"; set vm.tpm = false for a Linux guest",
        ));
    }
    out
}

/// `[vm] iso` as a URL needs its digest; the digest must look like one.
fn iso_problems(vm: &provision::VmConfig) -> Vec<Problem> {
    let mut out = Vec::new();
    if let crate::iso::IsoSpec::Url(url) = crate::iso::IsoSpec::of(vm.iso.as_deref())
        && let Some(why) = crate::iso::url_problem(&url, vm.iso_sha256.trim())
    {
        out.push(err("vm.iso", &why));
    }
    if !vm.iso_sha256.is_empty() && !crate::iso::is_sha256(vm.iso_sha256.trim()) {
        out.push(err("vm.iso_sha256", "must be 64 hex digits (a SHA-256)"));
    }
    out
}

/// The form of every build source (`[efw] source` may also be `none`).
fn source_problems(cfg: &Config) -> Vec<Problem> {
    let efw = std::iter::once(("efw.source".to_string(), &cfg.efw.source))
        .filter(|(_, source)| !crate::pipeline::efw_none(source));
    let extensions = cfg
        .extensions
        .iter()
        .map(|(n, e)| (format!("extensions.{n}.build.source"), &e.build.source));
    efw.chain(extensions)
        .filter_map(|(name, source)| source_problem(source).map(|msg| err(&name, msg)))
        .collect()
}

/// Every timeout of 0 seconds: it would fail at once (or, for `package_timeout`, be raised to a
/// second without a word).
fn zero_timeouts(cfg: &Config) -> Vec<Problem> {
    let vm = &cfg.vm;
    let mut timeouts = vec![
        ("vm.install_timeout".to_string(), vm.install_timeout),
        ("vm.boot_timeout".into(), vm.boot_timeout),
        ("vm.ssh_timeout".into(), vm.ssh_timeout),
        ("vm.shutdown_timeout".into(), vm.shutdown_timeout),
        ("vm.snapshot_timeout".into(), vm.snapshot_timeout),
        ("install.timeout".into(), cfg.install.timeout),
        (
            "install.restart_timeout".into(),
            cfg.install.restart_timeout,
        ),
    ];
    timeouts.extend(
        cfg.suites
            .iter()
            .map(|(n, s)| (format!("suites.{n}.package_timeout"), s.package_timeout)),
    );
    timeouts
        .into_iter()
        .filter(|(_, secs)| *secs == 0)
        .map(|(key, _)| {
            err(
                &key,
                "is 0 seconds, so it would expire at once; give a number of seconds of at least 1 (the default is in config.toml)",
            )
        })
        .collect()
}

/// Checks the form of a source spec; resolving it is the artifacts crate's job.
fn source_problem(s: &str) -> Option<String> {
    let ok = s == "main"
        || s.strip_prefix("run:")
            .is_some_and(|id| !id.is_empty() && id.bytes().all(|b| b.is_ascii_digit()))
        || s.strip_prefix("release:").is_some_and(|v| !v.is_empty())
        || s.strip_prefix("file:").is_some_and(|p| !p.is_empty())
        || s.strip_prefix("url:")
            .is_some_and(|u| u.starts_with("https://") || u.starts_with("http://"));
    (!ok).then(|| {
        format!("`{s}` is not a build source; use main, run:<id>, release:<version>, file:<path> or url:<https://…>")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn defaults() -> Config {
        toml::from_str(super::super::DEFAULTS_TOML).unwrap()
    }

    fn keys(p: &[Problem], sev: Severity) -> Vec<String> {
        p.iter()
            .filter(|p| p.severity == sev)
            .map(|p| p.key.clone())
            .collect()
    }

    #[test]
    fn defaults_have_no_errors_only_the_missing_iso_warning() {
        let p = validate(&defaults());
        assert!(keys(&p, Severity::Error).is_empty(), "{p:?}");
        assert_eq!(keys(&p, Severity::Warning), vec!["vm.iso"]);
    }

    #[test]
    fn table_of_cross_key_rules() {
        type Edit = fn(&mut Config);
        let cases: &[(Edit, &str)] = &[
            (
                |c| {
                    c.vm.backend = BackendKind::Ssh;
                    c.vm.port = 0
                },
                "vm.port",
            ),
            (
                |c| {
                    c.vm.backend = BackendKind::Ssh;
                    c.vm.port = 22;
                    c.vm.host = " ".into()
                },
                "vm.host",
            ),
            (|c| c.vm.backend = BackendKind::Libvirt, "vm.domain"),
            (|c| c.vm.os = GuestOs::Linux, "vm.kernel"),
            (|c| c.vm.cpus = 0, "vm.cpus"),
            (|c| c.vm.console_port = 22, "vm.console_port"),
            (
                |c| {
                    c.vm.os = GuestOs::Linux;
                    c.vm.kernel = Some("k".into());
                    c.vm.initrd = Some("i".into());
                    c.vm.tpm = true
                },
                "vm.tpm",
            ),
            (|c| c.vm.boot_timeout = 0, "vm.boot_timeout"),
            (
                |c| c.vm.iso = Some("url:https://mirror/win.iso".into()),
                "vm.iso",
            ),
            (|c| c.vm.iso_sha256 = "abc".into(), "vm.iso_sha256"),
            (|c| c.vm.install_timeout = 0, "vm.install_timeout"),
            (|c| c.vm.ssh_timeout = 0, "vm.ssh_timeout"),
            (|c| c.vm.shutdown_timeout = 0, "vm.shutdown_timeout"),
            (|c| c.vm.snapshot_timeout = 0, "vm.snapshot_timeout"),
            (|c| c.install.timeout = 0, "install.timeout"),
            (|c| c.install.restart_timeout = 0, "install.restart_timeout"),
            (
                |c| c.suites.get_mut("ebpf-go").unwrap().package_timeout = 0,
                "suites.ebpf-go.package_timeout",
            ),
            (|c| c.vm.memory_mib = 100, "vm.memory_mib"),
            (
                |c| c.install.guest_dir = r"C:\Program Files\x".into(),
                "install.guest_dir",
            ),
            (|c| c.efw.source = "latest".into(), "efw.source"),
            (|c| c.efw.source = "run:abc".into(), "efw.source"),
            (|c| c.efw.source = "url:ftp://x".into(), "efw.source"),
            (
                |c| c.extensions.get_mut("ntosebpfext").unwrap().build.source = "nightly".into(),
                "extensions.ntosebpfext.build.source",
            ),
            (
                |c| c.suites.get_mut("ebpf-go").unwrap().packages.clear(),
                "suites.ebpf-go.packages",
            ),
        ];
        for (edit, key) in cases {
            let mut c = defaults();
            edit(&mut c);
            let errs = keys(&validate(&c), Severity::Error);
            assert_eq!(errs, vec![key.to_string()], "editing for {key}");
        }
    }

    #[test]
    fn good_sources() {
        for s in [
            "main",
            "run:123",
            "release:1.0.0",
            "file:/x.zip",
            "url:https://h/x.zip",
        ] {
            assert_eq!(source_problem(s), None, "{s}");
        }
    }
}
