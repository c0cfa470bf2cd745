//! The Windows guest doctor by transcript: a real sshd whose ForceCommand is the stand-in shell,
//! which decodes each `-EncodedCommand`, records it and answers from rules. Asserted: which
//! health scripts run, in what order, with which arguments, and the verdict on a passing and a
//! failing guest for every check. Nothing here proves the scripts work on a real Windows guest.

use std::time::Duration;

use provision::health::{self, DoctorOptions, GuestReport, HealthError, Status, scripts};
use provision::session::{Endpoint, GuestOs, Script, Session, SessionOptions};
use serde_json::{Value, json};
use testsupport::sshd::{Sshd, SshdOptions};
use testsupport::standin::{Reply, Standin};

const DIR: &str = r"C:\Program Files\ebpf-for-windows";
const PROCESS: &str = "22ea7b37-1043-4d0d-b60d-cafa1c7b638e";

struct Guest {
    standin: Standin,
    sshd: Sshd,
    tmp: tempfile::TempDir,
}

fn guest() -> Guest {
    let standin = Standin::new().unwrap();
    let sshd = Sshd::start_with(SshdOptions {
        force_command: Some(standin.force_command()),
        ..Default::default()
    })
    .expect("starting sshd");
    Guest {
        standin,
        sshd,
        tmp: tempfile::tempdir().unwrap(),
    }
}

fn needle(s: &Script) -> String {
    format!("# {}:", s.name)
}

impl Guest {
    fn session(&self) -> Session {
        let ep = Endpoint {
            host: self.sshd.host().into(),
            port: self.sshd.port(),
            user: self.sshd.user(),
            identity: Some(self.sshd.client_key()),
            os: GuestOs::Windows,
        };
        let mut opts = SessionOptions::new(self.tmp.path().join("known_hosts"));
        opts.connect_timeout = Duration::from_secs(3);
        Session::connect(&ep, &opts).unwrap_or_else(|e| panic!("{e}\n{}", self.sshd.log()))
    }

    fn answer(&self, script: Script, v: Value) -> &Self {
        self.standin.on(&needle(&script), Reply::json(&v));
        self
    }

    /// The health scripts run, in order, by file name.
    fn sequence(&self) -> Vec<String> {
        self.standin
            .transcript()
            .iter()
            .map(|e| {
                scripts::WINDOWS_ALL
                    .iter()
                    .find(|s| e.text().contains(&needle(s)))
                    .map(|s| s.name.trim_start_matches("health/").to_string())
                    .unwrap_or_else(|| {
                        format!("?{}", e.text().chars().take(60).collect::<String>())
                    })
            })
            .collect()
    }

    fn command_of(&self, s: Script) -> String {
        self.standin
            .transcript()
            .iter()
            .map(|e| e.text().to_string())
            .find(|t| t.contains(&needle(&s)))
            .unwrap_or_else(|| panic!("{} did not run", s.name))
    }
}

fn options() -> DoctorOptions {
    DoctorOptions {
        min_free_mib: 4096,
        efw: true,
        install_dir: DIR.into(),
        extensions: vec![("ntosebpfext".into(), vec![PROCESS.into()])],
    }
}

fn logman(names: &[&str]) -> Value {
    let mut out = vec![
        "".to_string(),
        "Data Collector Set                      Type                          Status".into(),
        "-------------------------------------------------------------------------------".into(),
        "Eventlog-Security                       Trace                         Running".into(),
    ];
    for n in names {
        out.push(format!("{n:<40}Trace                         Running"));
    }
    out.push("".into());
    out.push("The command completed successfully.".into());
    json!({"exit_code": 0, "output": out})
}

fn program_type() -> Value {
    json!({"provider": "NtosEbpfExt", "guid": format!("{{{}}}", PROCESS.to_uppercase()), "name": "process"})
}

fn healthy(g: &Guest) {
    let path = format!(r"C:\Windows\system32;C:\Windows;{DIR}\");
    g.answer(scripts::WIN_BUILD, json!({"product_name": "Windows 11 Pro", "display_version": "24H2", "current_build": "26100", "ubr": 2605}))
        .answer(scripts::WIN_TEST_SIGNING, json!({"exit_code": 0, "output": ["Windows Boot Loader", "-------------------", "identifier              {current}", "testsigning             Yes", "hypervisorlaunchtype    Off"]}))
        .answer(scripts::WIN_SECURE_BOOT, json!({"state": "off", "detail": null}))
        .answer(scripts::WIN_HVCI, json!({"registry_enabled": 0, "services_running": [], "services_configured": [], "device_guard_error": null}))
        .answer(scripts::WIN_SERVICES, json!({"services": {"eBPFCore": "Running", "NetEbpfExt": "Running", "eBPFSvc": "Running"}}))
        .answer(scripts::WIN_PATH, json!({"machine_path": path, "session_path": path, "ebpfapi_dll": format!(r"{DIR}\ebpfapi.dll"), "dir_has_dll": true}))
        .answer(scripts::WIN_PROGRAM_TYPES, json!({"hklm": [program_type()], "hkcu": [program_type()]}))
        .answer(scripts::WIN_ETW_SESSIONS, logman(&[]))
        .answer(scripts::WIN_DISK, json!({"drive": "C:", "free_bytes": 40u64 << 30, "size_bytes": 64u64 << 30}));
}

fn get<'a>(r: &'a GuestReport, name: &str) -> &'a health::GuestCheck {
    r.checks
        .iter()
        .find(|c| c.name == name)
        .unwrap_or_else(|| panic!("no check {name}: {r:#?}"))
}

#[test]
fn a_healthy_guest_passes_every_check_in_order() {
    let g = guest();
    healthy(&g);
    let report = health::guest_doctor(&mut g.session(), &options()).unwrap();
    assert_eq!(
        g.sequence(),
        [
            "build.ps1",
            "test_signing.ps1",
            "secure_boot.ps1",
            "hvci.ps1",
            "services.ps1",
            "path.ps1",
            "program_types.ps1",
            "etw_sessions.ps1",
            "disk.ps1"
        ]
    );
    assert!(
        g.command_of(scripts::WIN_PATH)
            .contains(&format!("-Dir '{DIR}'"))
    );
    assert!(!report.failed(), "{report:#?}");
    assert!(
        report.checks.iter().all(|c| c.status == Status::Ok),
        "{report:#?}"
    );
    let names: Vec<&str> = report.checks.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "windows-build",
            "test-signing",
            "secure-boot",
            "memory-integrity",
            "service eBPFCore",
            "service NetEbpfExt",
            "service eBPFSvc",
            "path",
            "program-types ntosebpfext",
            "etw-sessions",
            "disk"
        ]
    );
    assert_eq!(report.guest_build.as_deref(), Some("26100.2605"));
    assert_eq!(
        get(&report, "windows-build").detail,
        "Windows 11 Pro 24H2, build 26100.2605"
    );
    assert!(
        get(&report, "disk")
            .detail
            .contains("40.0 GiB free on C: of 64.0 GiB")
    );
    assert!(report.stale_etw_sessions.is_empty());
}

#[test]
fn a_broken_guest_fails_every_check_with_its_fix() {
    let g = guest();
    let machine = format!(r"C:\Windows;{DIR}");
    g.answer(scripts::WIN_BUILD, json!({"product_name": "", "display_version": "", "current_build": "", "ubr": null}))
        .answer(scripts::WIN_TEST_SIGNING, json!({"exit_code": 0, "output": ["identifier              {current}", "testsigning             No"]}))
        .answer(scripts::WIN_SECURE_BOOT, json!({"state": "on", "detail": null}))
        .answer(scripts::WIN_HVCI, json!({"registry_enabled": 1, "services_running": [2], "services_configured": [2], "device_guard_error": null}))
        .answer(scripts::WIN_SERVICES, json!({"services": {"eBPFCore": "Stopped", "NetEbpfExt": null, "eBPFSvc": "Stopped"}}))
        .answer(scripts::WIN_PATH, json!({"machine_path": machine, "session_path": r"C:\Windows", "ebpfapi_dll": null, "dir_has_dll": true}))
        .answer(scripts::WIN_PROGRAM_TYPES, json!({"hklm": [program_type()], "hkcu": []}))
        .answer(scripts::WIN_ETW_SESSIONS, logman(&["epbf-go-4242", "ebpf-go-17"]))
        .answer(scripts::WIN_DISK, json!({"drive": "C:", "free_bytes": 1u64 << 30, "size_bytes": 64u64 << 30}));
    let r = health::guest_doctor(&mut g.session(), &options()).unwrap();
    assert!(r.failed());
    let expect = [
        ("windows-build", Status::Warn, "CurrentBuild", "provenance"),
        (
            "test-signing",
            Status::Fail,
            "testsigning: No",
            "bcdedit /set testsigning on",
        ),
        ("secure-boot", Status::Fail, "Secure Boot is on", "OVMF"),
        (
            "memory-integrity",
            Status::Fail,
            "HVCI) is running",
            "-Name Enabled -Value 0",
        ),
        (
            "service eBPFCore",
            Status::Fail,
            "Stopped, not Running",
            "Start-Service eBPFCore",
        ),
        (
            "service NetEbpfExt",
            Status::Fail,
            "not installed",
            "harness install --force",
        ),
        (
            "service eBPFSvc",
            Status::Fail,
            "Stopped",
            "Start-Service eBPFSvc",
        ),
        (
            "path",
            Status::Fail,
            "not in a new SSH session's PATH",
            "Restart-Service sshd",
        ),
        (
            "program-types ntosebpfext",
            Status::Fail,
            "efW#3202",
            "reg copy",
        ),
        (
            "etw-sessions",
            Status::Warn,
            "epbf-go-4242, ebpf-go-17",
            "logman stop epbf-go-4242 -ets",
        ),
        (
            "disk",
            Status::Fail,
            "1.0 GiB free on C:",
            "vm.min_free_mib",
        ),
    ];
    for (name, status, detail, fix) in expect {
        let c = get(&r, name);
        assert_eq!(c.status, status, "{name}: {c:?}");
        assert!(c.detail.contains(detail), "{name}: {}", c.detail);
        let f = c.fix.as_deref().unwrap_or_default();
        assert!(f.contains(fix), "{name}: fix {f}");
    }
    assert_eq!(r.guest_build, None);
    assert_eq!(r.stale_etw_sessions, ["epbf-go-4242", "ebpf-go-17"]);
}

#[test]
fn other_failure_modes_each_name_their_fix() {
    let g = guest();
    g.answer(scripts::WIN_BUILD, json!({"current_build": "22631", "ubr": null}))
        .answer(scripts::WIN_TEST_SIGNING, json!({"exit_code": 1, "output": ["The boot configuration data store could not be opened.", "Access is denied."]}))
        .answer(scripts::WIN_SECURE_BOOT, json!({"state": "unsupported", "detail": "Cmdlet not supported on this platform"}))
        .answer(scripts::WIN_HVCI, json!({"registry_enabled": 1, "services_running": [0], "device_guard_error": null}))
        .answer(scripts::WIN_SERVICES, json!({"services": {"eBPFCore": "Running", "NetEbpfExt": "Running", "eBPFSvc": null}}))
        .answer(scripts::WIN_PATH, json!({"machine_path": r"C:\Windows", "session_path": r"C:\Windows", "ebpfapi_dll": null, "dir_has_dll": false}))
        .answer(scripts::WIN_PROGRAM_TYPES, json!({"hklm": [], "hkcu": [program_type()]}))
        .answer(scripts::WIN_ETW_SESSIONS, json!({"exit_code": 5, "output": "Access is denied."}))
        .answer(scripts::WIN_DISK, json!({"drive": "C:", "free_bytes": null, "size_bytes": null}));
    let r = health::guest_doctor(&mut g.session(), &options()).unwrap();
    let expect = [
        ("windows-build", Status::Ok, "build 22631"),
        ("test-signing", Status::Fail, "Access is denied"),
        ("secure-boot", Status::Ok, "BIOS"),
        ("memory-integrity", Status::Fail, "next boot"),
        ("service eBPFSvc", Status::Ok, "without the JIT"),
        ("path", Status::Fail, "not on the machine PATH"),
        (
            "program-types ntosebpfext",
            Status::Fail,
            "missing from HKLM",
        ),
        ("etw-sessions", Status::Warn, "exited with Some(5)"),
        ("disk", Status::Warn, "cannot read"),
    ];
    for (name, status, detail) in expect {
        let c = get(&r, name);
        assert_eq!(c.status, status, "{name}: {c:?}");
        assert!(c.detail.contains(detail), "{name}: {}", c.detail);
    }
    assert!(
        get(&r, "test-signing")
            .fix
            .as_deref()
            .unwrap()
            .contains("Administrators")
    );
    assert!(
        get(&r, "program-types ntosebpfext")
            .fix
            .as_deref()
            .unwrap()
            .contains("harness ext install ntosebpfext")
    );
    assert_eq!(r.guest_build.as_deref(), Some("22631"));
}

#[test]
fn without_an_efw_runtime_the_runtime_checks_are_skipped() {
    let g = guest();
    healthy(&g);
    let mut opts = options();
    opts.efw = false;
    let r = health::guest_doctor(&mut g.session(), &opts).unwrap();
    assert_eq!(
        g.sequence(),
        [
            "build.ps1",
            "test_signing.ps1",
            "secure_boot.ps1",
            "hvci.ps1",
            "etw_sessions.ps1",
            "disk.ps1"
        ]
    );
    assert!(!r.failed());
}

#[test]
fn stale_etw_sessions_are_stopped_by_name_and_refusals_reported() {
    let g = guest();
    g.answer(scripts::WIN_ETW_SESSIONS, logman(&["epbf-go-4242", "Other Session", "ebpf-go-17"]))
        .answer(
            scripts::WIN_ETW_STOP,
            json!({"stopped": [
                {"name": "epbf-go-4242", "exit_code": 0, "output": ["The command completed successfully."]},
                {"name": "ebpf-go-17", "exit_code": 1, "output": ["Data Collector Set was not found."]}
            ]}),
        );
    let cleanup = health::stop_stale_etw(&mut g.session()).unwrap();
    assert_eq!(g.sequence(), ["etw_sessions.ps1", "etw_stop.ps1"]);
    let stop = g.command_of(scripts::WIN_ETW_STOP);
    assert!(stop.contains("-Names 'epbf-go-4242\nebpf-go-17'"), "{stop}");
    assert!(!stop.contains("Other Session"));
    assert_eq!(cleanup.stopped, ["epbf-go-4242"]);
    assert_eq!(cleanup.failed.len(), 1);
    assert!(
        cleanup.failed[0].1.contains("was not found"),
        "{:?}",
        cleanup.failed
    );
}

#[test]
fn nothing_stale_stops_nothing() {
    let g = guest();
    g.answer(scripts::WIN_ETW_SESSIONS, logman(&[]));
    let cleanup = health::stop_stale_etw(&mut g.session()).unwrap();
    assert_eq!(g.sequence(), ["etw_sessions.ps1"]);
    assert!(cleanup.stopped.is_empty() && cleanup.failed.is_empty());
}

#[test]
fn a_script_that_fails_is_an_error_naming_it() {
    let g = guest();
    g.standin.on(
        &needle(&scripts::WIN_BUILD),
        Reply::fail(
            1,
            "",
            "Get-ItemProperty : Requested registry access is not allowed.",
        ),
    );
    match health::guest_doctor(&mut g.session(), &options()) {
        Err(e @ HealthError::Script { .. }) => {
            let text = e.to_string();
            assert!(text.contains("health/build.ps1"), "{text}");
        }
        other => panic!("{other:?}"),
    }
}
