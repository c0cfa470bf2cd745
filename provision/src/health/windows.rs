//! Windows guest checks: the facts each `scripts/windows/health/*.ps1` prints, and the verdicts.
//!
//! Nothing here has run on a real Windows guest: the scripts are tested by transcript
//! (`provision/tests/health_windows.rs`) and parsed by the grammar check; the verdicts are pure.

use std::collections::BTreeMap;

use serde::Deserialize;

use crate::install::checks::{ProgramType, lines, match_program_types};
use crate::session::{GuestOs, Session};

use super::etw::judge_etw;
use super::{DoctorOptions, GuestCheck, GuestReport, HealthError, gib, run, scripts};

/// The services ebpf-go needs running; eBPFSvc (the JIT) only where the build installed it.
pub const REQUIRED_SERVICES: [&str; 2] = ["eBPFCore", "NetEbpfExt"];
/// efW's JIT service: checked when it exists.
pub const JIT_SERVICE: &str = "eBPFSvc";
const HVCI_KEY: &str =
    r"HKLM:\SYSTEM\CurrentControlSet\Control\DeviceGuard\Scenarios\HypervisorEnforcedCodeIntegrity";

/// A native command's exit code and output lines (`bcdedit`, `logman`).
#[derive(Debug, Clone, Default, Deserialize)]
pub struct CommandLines {
    pub exit_code: Option<i64>,
    #[serde(default, deserialize_with = "lines")]
    pub output: Vec<String>,
}

/// `secure_boot.ps1`.
#[derive(Debug, Clone, Deserialize)]
pub struct SecureBoot {
    /// `on`, `off`, `unsupported` (BIOS) or `unknown`.
    pub state: String,
    pub detail: Option<String>,
}

/// `hvci.ps1`.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct Hvci {
    /// The policy's `Enabled` value, if set.
    pub registry_enabled: Option<i64>,
    /// Win32_DeviceGuard SecurityServicesRunning (2 = HVCI).
    #[serde(default)]
    pub services_running: Vec<i64>,
    #[serde(default)]
    pub services_configured: Vec<i64>,
    pub device_guard_error: Option<String>,
}

/// `services.ps1`.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct Services {
    #[serde(default)]
    pub services: BTreeMap<String, Option<String>>,
}

/// `path.ps1`.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct PathFacts {
    #[serde(default)]
    pub machine_path: String,
    #[serde(default)]
    pub session_path: String,
    /// Where ebpfapi.dll resolved through this session's PATH.
    pub ebpfapi_dll: Option<String>,
    #[serde(default)]
    pub dir_has_dll: bool,
}

/// `program_types.ps1`.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct ProgramTypeFacts {
    #[serde(default)]
    pub hklm: Vec<ProgramType>,
    #[serde(default)]
    pub hkcu: Vec<ProgramType>,
}

/// `disk.ps1`.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct Disk {
    #[serde(default)]
    pub drive: String,
    pub free_bytes: Option<u64>,
    pub size_bytes: Option<u64>,
}

/// `build.ps1`.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct Build {
    #[serde(default)]
    pub product_name: String,
    #[serde(default)]
    pub display_version: String,
    #[serde(default)]
    pub current_build: String,
    pub ubr: Option<i64>,
}

/// Everything the Windows scripts report; the efW parts are `None` when no runtime is expected.
#[derive(Debug, Clone, Default)]
pub struct WindowsFacts {
    pub build: Build,
    pub test_signing: CommandLines,
    pub secure_boot: Option<SecureBoot>,
    pub hvci: Hvci,
    pub services: Option<Services>,
    pub path: Option<PathFacts>,
    pub program_types: Option<ProgramTypeFacts>,
    pub etw: CommandLines,
    pub disk: Disk,
}

/// Runs the scripts, in the order the report lists them.
pub(super) fn doctor(
    session: &mut Session,
    opts: &DoctorOptions,
) -> Result<GuestReport, HealthError> {
    let efw = opts.efw;
    let facts = WindowsFacts {
        build: run(session, scripts::WIN_BUILD, &[])?,
        test_signing: run(session, scripts::WIN_TEST_SIGNING, &[])?,
        secure_boot: Some(run(session, scripts::WIN_SECURE_BOOT, &[])?),
        hvci: run(session, scripts::WIN_HVCI, &[])?,
        services: efw
            .then(|| run(session, scripts::WIN_SERVICES, &[]))
            .transpose()?,
        path: efw
            .then(|| {
                let dir = opts.install_dir.clone();
                run(session, scripts::WIN_PATH, &[("Dir", dir)])
            })
            .transpose()?,
        program_types: (efw && !opts.extensions.is_empty())
            .then(|| run(session, scripts::WIN_PROGRAM_TYPES, &[]))
            .transpose()?,
        etw: run(session, scripts::WIN_ETW_SESSIONS, &[])?,
        disk: run(session, scripts::WIN_DISK, &[])?,
    };
    Ok(judge(&facts, opts))
}

/// The report for these facts.
pub fn judge(f: &WindowsFacts, opts: &DoctorOptions) -> GuestReport {
    let (build_check, guest_build) = judge_build(&f.build);
    let mut checks = vec![build_check, judge_test_signing(&f.test_signing)];
    if let Some(s) = &f.secure_boot {
        checks.push(judge_secure_boot(s));
    }
    checks.push(judge_hvci(&f.hvci));
    if let Some(s) = &f.services {
        checks.extend(judge_services(s));
    }
    if let Some(p) = &f.path {
        checks.push(judge_path(p, &opts.install_dir));
    }
    if let Some(t) = &f.program_types {
        checks.extend(judge_program_types(t, &opts.extensions));
    }
    let (etw_check, stale) = judge_etw(&f.etw);
    checks.push(etw_check);
    checks.push(judge_disk(&f.disk, opts.min_free_mib));
    GuestReport {
        os: GuestOs::Windows,
        checks,
        guest_build,
        stale_etw_sessions: stale,
    }
}

/// The build check and the provenance string (`26100.2605`).
pub fn judge_build(b: &Build) -> (GuestCheck, Option<String>) {
    if b.current_build.trim().is_empty() {
        let c = GuestCheck::warn(
            "windows-build",
            "CurrentBuild is not in HKLM:\\SOFTWARE\\Microsoft\\Windows NT\\CurrentVersion",
            "nothing to fix for the tests, but the results' provenance will not record the Windows build",
        );
        return (c, None);
    }
    let build = match b.ubr {
        Some(u) => format!("{}.{u}", b.current_build.trim()),
        None => b.current_build.trim().to_string(),
    };
    let name = [b.product_name.trim(), b.display_version.trim()]
        .iter()
        .filter(|s| !s.is_empty())
        .copied()
        .collect::<Vec<_>>()
        .join(" ");
    let detail = format!("{name}, build {build}")
        .trim_start_matches(", ")
        .to_string();
    (GuestCheck::ok("windows-build", detail), Some(build))
}

/// `testsigning Yes` in `bcdedit /enum {current}`; an absent line means off.
pub fn judge_test_signing(c: &CommandLines) -> GuestCheck {
    const NAME: &str = "test-signing";
    if c.exit_code != Some(0) {
        let said: Vec<&str> = c
            .output
            .iter()
            .map(|l| l.trim())
            .filter(|l| !l.is_empty())
            .take(3)
            .collect();
        let code = c.exit_code.map_or("no exit code".into(), |e| e.to_string());
        return GuestCheck::fail(
            NAME,
            format!(
                "`bcdedit /enum {{current}}` exited with {code}{}{}",
                if said.is_empty() { "" } else { ": " },
                said.join(" ")
            ),
            "bcdedit needs an administrator: make the SSH user ([vm] user) a member of Administrators",
        );
    }
    let value = c.output.iter().find_map(|l| {
        let mut it = l.split_whitespace();
        it.next()
            .filter(|k| k.eq_ignore_ascii_case("testsigning"))
            .map(|_| it.collect::<Vec<_>>().join(" "))
    });
    match value.as_deref() {
        Some(v) if v.eq_ignore_ascii_case("yes") => GuestCheck::ok(NAME, "on"),
        other => GuestCheck::fail(
            NAME,
            format!(
                "test signing is off (bcdedit testsigning: {}): efW's test-signed drivers will not load",
                other.unwrap_or("not set")
            ),
            "in the guest as an administrator: `bcdedit /set testsigning on`, then reboot (Secure Boot must be off); then save the ready snapshot again (`harness up --cold --save-snapshot`)",
        ),
    }
}

/// Secure Boot must be off (test-signed drivers); "not supported" means a BIOS boot: off.
pub fn judge_secure_boot(s: &SecureBoot) -> GuestCheck {
    const NAME: &str = "secure-boot";
    let detail = s.detail.as_deref().unwrap_or("").trim();
    match s.state.as_str() {
        "off" => GuestCheck::ok(NAME, "off"),
        "unsupported" => GuestCheck::ok(NAME, "not supported on this platform (BIOS boot): off"),
        "on" => GuestCheck::fail(
            NAME,
            "Secure Boot is on: test signing cannot be enabled and efW's test-signed drivers will not load",
            "turn Secure Boot off in the VM's firmware: the qemu backend's default OVMF vars (vm.firmware_vars) enroll no keys; for libvirt, use a firmware without Secure Boot (<loader secure='no'>) or disable it in the UEFI setup; then `bcdedit /set testsigning on` and reboot",
        ),
        other => GuestCheck::warn(
            NAME,
            format!("could not tell ({other}: {detail})"),
            "check `Confirm-SecureBootUEFI` or msinfo32's \"Secure Boot State\" in the guest by hand",
        ),
    }
}

/// HVCI must be off: efW disables its JIT under it.
pub fn judge_hvci(h: &Hvci) -> GuestCheck {
    const NAME: &str = "memory-integrity";
    let fix = format!(
        "in the guest as an administrator: `Set-ItemProperty -Path '{HVCI_KEY}' -Name Enabled -Value 0` (or Windows Security > Device security > Core isolation > Memory integrity: Off), then reboot"
    );
    if h.services_running.contains(&2) {
        return GuestCheck::fail(
            NAME,
            "Memory Integrity (HVCI) is running: efW disables its JIT under HVCI, and ebpf-go's tests need the JIT",
            fix,
        );
    }
    if h.registry_enabled == Some(1) {
        return GuestCheck::fail(
            NAME,
            "Memory Integrity (HVCI) is enabled in the registry and runs from the next boot: efW then disables its JIT",
            fix,
        );
    }
    let seen = match &h.device_guard_error {
        Some(e) => format!("Win32_DeviceGuard unavailable: {}", e.trim()),
        None => "not running".into(),
    };
    let reg = match h.registry_enabled {
        Some(v) => format!("Enabled = {v}"),
        None => "policy not set".into(),
    };
    GuestCheck::ok(NAME, format!("off ({reg}; {seen})"))
}

/// eBPFCore and NetEbpfExt running; eBPFSvc running where it is installed.
pub fn judge_services(s: &Services) -> Vec<GuestCheck> {
    let mut out = Vec::new();
    for name in REQUIRED_SERVICES.into_iter().chain([JIT_SERVICE]) {
        let check = format!("service {name}");
        let jit = name == JIT_SERVICE;
        out.push(match s.services.get(name).cloned().flatten() {
            Some(st) if st == "Running" => GuestCheck::ok(check, "Running"),
            None if jit => GuestCheck::ok(check, "not installed (a build without the JIT)"),
            None => GuestCheck::fail(
                check,
                "not installed: the efW runtime is missing or half installed",
                "reinstall efW: `harness install --force`",
            ),
            Some(st) => GuestCheck::fail(
                check,
                format!("{st}, not Running"),
                format!("in the guest: `Start-Service {name}`; if it does not start, reinstall efW: `harness install --force`"),
            ),
        });
    }
    out
}

fn path_has(path: &str, dir: &str) -> bool {
    let norm = |s: &str| {
        s.trim()
            .trim_matches('"')
            .trim_end_matches('\\')
            .to_ascii_lowercase()
    };
    let want = norm(dir);
    path.split(';').any(|e| norm(e) == want)
}

/// The install directory on the machine PATH, in a new session's PATH, and ebpfapi.dll resolving.
pub fn judge_path(p: &PathFacts, dir: &str) -> GuestCheck {
    const NAME: &str = "path";
    if !path_has(&p.machine_path, dir) {
        return GuestCheck::fail(
            NAME,
            format!(
                "`{dir}` is not on the machine PATH: ebpf-go fails with `load ebpfapi.dll: not found`"
            ),
            "`harness install --force` puts it there (and restarts sshd); by hand: append it to Path under HKLM\\SYSTEM\\CurrentControlSet\\Control\\Session Manager\\Environment, then `Restart-Service sshd`",
        );
    }
    if !path_has(&p.session_path, dir) {
        return GuestCheck::fail(
            NAME,
            format!(
                "`{dir}` is on the machine PATH but not in a new SSH session's PATH (sshd started before PATH changed): ebpf-go fails with `load ebpfapi.dll: not found`"
            ),
            "restart sshd in the guest so new sessions get the new PATH: `Restart-Service sshd` (or reboot)",
        );
    }
    match &p.ebpfapi_dll {
        Some(dll) => GuestCheck::ok(
            NAME,
            format!("`{dir}` on the machine and session PATH; ebpfapi.dll: {dll}"),
        ),
        None => GuestCheck::fail(
            NAME,
            format!(
                "ebpfapi.dll does not resolve through the session's PATH ({})",
                if p.dir_has_dll {
                    "it is in the install directory, so an earlier PATH entry breaks the search"
                } else {
                    "the install directory has no ebpfapi.dll"
                }
            ),
            "reinstall efW: `harness install --force`",
        ),
    }
}

/// Each extension's program types in HKLM and in the test user's HKCU (efW#3202).
pub fn judge_program_types(
    t: &ProgramTypeFacts,
    extensions: &[(String, Vec<String>)],
) -> Vec<GuestCheck> {
    let mut out = Vec::new();
    for (ext, wanted) in extensions {
        let name = format!("program-types {ext}");
        if wanted.is_empty() {
            out.push(GuestCheck::ok(
                name,
                "no program_types configured: nothing to check",
            ));
            continue;
        }
        let (_, missing_lm) = match_program_types(wanted, &t.hklm);
        let (_, missing_cu) = match_program_types(wanted, &t.hkcu);
        out.push(if !missing_lm.is_empty() {
            GuestCheck::fail(
                name,
                format!("missing from HKLM\\Software\\eBPF: {}", missing_lm.join(", ")),
                format!("reinstall the extension, which runs its export tool: `harness ext install {ext}`"),
            )
        } else if !missing_cu.is_empty() {
            GuestCheck::fail(
                name,
                format!(
                    "in HKLM but missing for the test user from HKCU\\Software\\eBPF: {} (efW also reads program information from HKCU: efW#3202)",
                    missing_cu.join(", ")
                ),
                "copy the store to the test user (the SSH user): `harness exec -- reg copy 'HKLM\\Software\\eBPF\\Providers' 'HKCU\\Software\\eBPF\\Providers' /s /f`",
            )
        } else {
            GuestCheck::ok(name, format!("{} in HKLM and HKCU", wanted.join(", ")))
        });
    }
    out
}

/// Free space on the system drive.
pub fn judge_disk(d: &Disk, min_free_mib: u64) -> GuestCheck {
    const NAME: &str = "disk";
    let Some(free) = d.free_bytes else {
        return GuestCheck::warn(
            NAME,
            format!("cannot read free space of {}", d.drive),
            "check the system drive in the guest (Get-PSDrive C)",
        );
    };
    let of = d
        .size_bytes
        .map(|s| format!(" of {}", gib(s)))
        .unwrap_or_default();
    if free < min_free_mib << 20 {
        return GuestCheck::fail(
            NAME,
            format!(
                "{} free on {}{of}; the tests want at least {} MiB (vm.min_free_mib)",
                gib(free),
                d.drive,
                min_free_mib
            ),
            "free space in the guest (old builds under C:\\harness, dumps, %TEMP%), grow the disk (`qemu-img resize`, then extend C: in Disk Management), or lower vm.min_free_mib",
        );
    }
    GuestCheck::ok(NAME, format!("{} free on {}{of}", gib(free), d.drive))
}
