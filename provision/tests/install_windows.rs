//! The Windows install and extension sequences by transcript: a real sshd whose ForceCommand is
//! the stand-in shell, which decodes each `-EncodedCommand`, records it and answers from rules.
//! What is asserted is the exact step sequence, the arguments passed, the parsing of each step's
//! JSON and the failure paths. Nothing here proves the scripts work on a real Windows guest.
//!
//! The guest directory is an absolute Linux path in a tempdir, so the SFTP parts (PsExec64.exe
//! upload, log download) really move files through the fixture's sftp-server.

use std::fs;
use std::path::Path;
use std::time::Duration;

use provision::install::{
    self, BuildToInstall, InstallError, InstallEvent, InstallOptions, InstallOutcome,
    InstalledBuild, Step, scripts,
};
use provision::session::{Endpoint, GuestOs, Session, SessionOptions};
use provision::{ExtensionConfig, InstallConfig};
use serde_json::{Value, json};
use testsupport::sshd::{Sshd, SshdOptions};
use testsupport::standin::{Reply, Standin};

const KEY: &str = "gh-artifact-42";

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
    let tmp = tempfile::tempdir().unwrap();
    fs::create_dir_all(tmp.path().join("guest").join(KEY)).unwrap();
    fs::create_dir_all(tmp.path().join("tools")).unwrap();
    fs::write(tmp.path().join("tools/PsExec64.exe"), b"MZ psexec").unwrap();
    Guest { standin, sshd, tmp }
}

/// Needle matching one step script (its first line).
fn step(script: &provision::session::Script) -> String {
    format!("# {}:", script.name)
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

    fn guest_root(&self) -> String {
        self.tmp.path().join("guest").display().to_string()
    }

    fn build_dir(&self) -> String {
        format!("{}\\{KEY}", self.guest_root())
    }

    fn options(&self, results: &Path) -> InstallOptions {
        let config = InstallConfig {
            guest_dir: self.guest_root(),
            restart_timeout: 20,
            ..InstallConfig::default()
        };
        let mut o = InstallOptions::new(config, results);
        o.psexec_candidates = vec![
            self.tmp.path().join("nope/PsExec64.exe"),
            self.tmp.path().join("tools/PsExec64.exe"),
        ];
        o
    }

    /// An efW-shaped build on the host.
    fn build(&self) -> BuildToInstall {
        let dir = self.tmp.path().join("build");
        fs::create_dir_all(dir.join("drivers")).unwrap();
        for (name, body) in [
            ("setup-ebpf.ps1", "param([switch]$Uninstall)\n"),
            ("install_ebpf.psm1", "function Install-eBPFComponents {}\n"),
            ("ebpf-for-windows.msi", "msi"),
            ("drivers/ebpfcore.sys", "sys"),
        ] {
            fs::write(dir.join(name), body).unwrap();
        }
        BuildToInstall {
            local_dir: dir,
            provenance: InstalledBuild {
                key: KEY.into(),
                source: "main".into(),
                repo: Some("microsoft/ebpf-for-windows".into()),
                run_id: Some(4242),
                head_sha: Some("0be2d1c".into()),
                version: Some("0.21.0".into()),
            },
        }
    }

    /// Answers the session's own tree-transfer scripts (unpack, then list sizes) for `local`.
    fn answer_upload(&self, local: &Path) {
        let mut files = Vec::new();
        walk(local, local, &mut files);
        self.standin
            .on("unpack a tar archive", Reply::json(&json!({"dir": "x"})))
            .on(
                "sizes of every file under a directory",
                Reply::json(&json!({ "files": files })),
            );
    }

    /// A log file the guest "has", readable through SFTP.
    fn guest_log(&self, name: &str, text: &str) -> String {
        let p = self.tmp.path().join("guest-logs").join(name);
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(&p, text).unwrap();
        p.display().to_string()
    }

    fn commands(&self) -> Vec<String> {
        self.standin
            .transcript()
            .iter()
            .map(|e| e.text().to_string())
            .collect()
    }

    /// The step scripts and session builtins run, in order, by a short label.
    fn sequence(&self) -> Vec<String> {
        let labels: Vec<(String, &str)> = scripts::WINDOWS_ALL
            .iter()
            .map(|s| {
                (
                    step(s),
                    s.name
                        .trim_start_matches("install/")
                        .trim_end_matches(".ps1"),
                )
            })
            .chain([
                ("unpack a tar archive".to_string(), "untar"),
                ("sizes of every file".to_string(), "tree_sizes"),
                ("Restart-Service".to_string(), "restart_sshd"),
                ("Win32_OperatingSystem".to_string(), "probe"),
            ])
            .collect();
        self.commands()
            .iter()
            .map(|c| {
                labels
                    .iter()
                    .find(|(needle, _)| c.contains(needle.as_str()))
                    .map(|(_, l)| l.to_string())
                    .unwrap_or_else(|| format!("?{}", c.chars().take(80).collect::<String>()))
            })
            .collect()
    }

    /// Removes the tar archives the session uploaded to the test user's home (the real untar
    /// script deletes them in the guest; the stand-in does not).
    fn cleanup_uploads(&self) {
        for c in self.commands() {
            if let Some(rest) = c.split("-Archive '").nth(1)
                && let Some(name) = rest.split('\'').next()
                && name.starts_with("harness-upload-")
                && let Some(home) = std::env::var_os("HOME")
            {
                let _ = fs::remove_file(Path::new(&home).join(name));
            }
        }
    }
}

impl Drop for Guest {
    fn drop(&mut self) {
        self.cleanup_uploads();
    }
}

fn walk(root: &Path, dir: &Path, out: &mut Vec<Value>) {
    for e in fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            walk(root, &p, out);
        } else {
            let rel = p
                .strip_prefix(root)
                .unwrap()
                .to_string_lossy()
                .replace('\\', "/");
            out.push(json!([rel, fs::metadata(&p).unwrap().len()]));
        }
    }
}

fn services(core: Option<&str>, net: Option<&str>) -> Value {
    json!({"eBPFCore": core, "NetEbpfExt": net})
}

fn installed_ok() -> Reply {
    Reply::json(&json!({
        "method": "install-psm1", "exit_code": 0, "output_tail": ["Installing eBPF..."],
        "services": services(Some("Running"), Some("Running")),
        "ebpfapi_dll": "C:\\Program Files\\ebpf-for-windows\\ebpfapi.dll",
        "psexec_present": true, "msi_log": "x"
    }))
}

fn verified(dll: Option<&str>, path: &str) -> Reply {
    Reply::json(&json!({
        "services": services(Some("Running"), Some("Running")),
        "ebpfapi_dll": dll, "path": path,
        "netsh_exit_code": 0, "netsh_output": ["", "    ID  Pins  Loaded  Type  Name"],
        "runtime_version": "0.21.0.0"
    }))
}

fn no_marker() -> Reply {
    Reply::json(
        &json!({"marker": null, "services": {"eBPFCore": null, "NetEbpfExt": null, "eBPFSvc": null}, "program_files": false}),
    )
}

fn ok_json() -> Reply {
    Reply::json(&json!({"ok": true}))
}

fn steps_ok(events: &[InstallEvent]) -> Vec<(Step, bool)> {
    events
        .iter()
        .filter_map(|e| match e {
            InstallEvent::StepFinished { step, ok, .. } => Some((*step, *ok)),
            _ => None,
        })
        .collect()
}

#[test]
fn full_install_sequence_with_restart_and_fresh_session_verify() {
    let g = guest();
    let build = g.build();
    g.answer_upload(&build.local_dir);
    let msi_log = g.guest_log(
        "msi-install.log",
        "MSI (s) Product: eBPF for Windows -- Installation completed successfully.\n",
    );
    let temp_log = g.guest_log(
        "harness-efw-install.log",
        "Installing eBPF components\nDone\n",
    );
    g.standin
        .on(&step(&scripts::WIN_QUERY), no_marker())
        .on(&step(&scripts::WIN_PREPARE_DIR), Reply::json(&json!({"path": g.build_dir(), "removed": false})))
        .on(&step(&scripts::WIN_FORGET), Reply::json(&json!({"removed": false})))
        .on(&step(&scripts::WIN_INSTALL), installed_ok())
        .on(&step(&scripts::WIN_ENSURE_PATH), Reply::json(&json!({"changed": false, "machine_path": "C:\\Windows;C:\\Program Files\\ebpf-for-windows"})))
        .on("Restart-Service", Reply::json(&json!({"old_sshd_pid": 100, "restarter_pid": 7})))
        .on("Win32_OperatingSystem", Reply::json(&json!({"boot_id": "b", "sshd_pid": 200, "path": "new"})))
        .on(&step(&scripts::WIN_VERIFY), verified(Some("C:\\Program Files\\ebpf-for-windows\\ebpfapi.dll"), "C:\\Windows;C:\\Program Files\\ebpf-for-windows"))
        .on(&step(&scripts::WIN_LIST_LOGS), Reply::json(&json!({"files": [{"path": temp_log, "size": 1}, {"path": msi_log, "size": 1}]})))
        .on(&step(&scripts::WIN_RECORD), Reply::json(&json!({"written": "x"})));
    let results = tempfile::tempdir().unwrap();
    let opts = g.options(results.path());
    let mut session = g.session();
    let mut ev = Vec::new();
    let report = install::install_runtime(&mut session, &build, &opts, &mut |e| ev.push(e.clone()))
        .unwrap_or_else(|e| panic!("{e}\n{:#?}", g.sequence()));

    assert_eq!(
        g.sequence(),
        [
            "query",
            "forget",
            "prepare_dir",
            "untar",
            "tree_sizes",
            "install",
            "ensure_path",
            "restart_sshd",
            "probe",
            "verify",
            "list_logs",
            "record"
        ]
    );
    let cmds = g.commands();
    let install_cmd = cmds
        .iter()
        .find(|c| c.contains(&step(&scripts::WIN_INSTALL)))
        .unwrap();
    assert!(
        install_cmd.contains(&format!("-BuildDir '{}'", g.build_dir())),
        "{install_cmd}"
    );
    assert!(
        install_cmd.contains("-Method 'install-psm1'"),
        "auto prefers install_ebpf.psm1"
    );
    assert!(install_cmd.contains("-InstallDir 'C:\\Program Files\\ebpf-for-windows'"));
    // The script itself calls the CI's entry point with the CI's arguments.
    assert!(install_cmd.contains(
        "Install-eBPFComponents -KmTracing $false -KmTraceType 'file' -TestMode 'Normal'"
    ));
    // PsExec64.exe came from the host cache through SFTP, into the build directory.
    assert_eq!(
        fs::read(g.tmp.path().join("guest").join(KEY).join("PsExec64.exe")).unwrap(),
        b"MZ psexec"
    );
    // The record carries the provenance suites need.
    let record_cmd = cmds
        .iter()
        .find(|c| c.contains(&step(&scripts::WIN_RECORD)))
        .unwrap();
    assert!(
        record_cmd.contains("\"version\":\"0.21.0\"") && record_cmd.contains("\"run_id\":4242"),
        "{record_cmd}"
    );
    assert!(record_cmd.contains(&format!("-Marker '{}\\installed.json'", g.guest_root())));

    assert_eq!(report.outcome, InstallOutcome::Installed { replaced: None });
    assert_eq!(report.record.build, build.provenance);
    assert_eq!(report.record.guest_dir, g.build_dir());
    assert!(report.checks.iter().all(|c| c.ok), "{:?}", report.checks);
    assert_eq!(report.checks.len(), 5);
    assert_eq!(report.record.runtime_version.as_deref(), Some("0.21.0.0"));
    assert_eq!(report.record.ci_efw_version().as_deref(), Some("0.21.0"));
    let names: Vec<_> = report
        .logs
        .iter()
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names, ["harness-efw-install.log", "msi-install.log"]);
    assert!(
        report
            .logs
            .iter()
            .all(|p| p.starts_with(results.path().join("install-logs")))
    );
    let s = steps_ok(&ev);
    assert!(s.iter().all(|(_, ok)| *ok), "{s:?}");
    let order: Vec<Step> = s.iter().map(|(st, _)| *st).collect();
    assert_eq!(
        order,
        [
            Step::Query,
            Step::PrepareDir,
            Step::Upload,
            Step::PlacePsexec,
            Step::Install,
            Step::EnsurePath,
            Step::RestartSshd,
            Step::Verify,
            Step::CollectLogs,
            Step::Record
        ]
    );
}

#[test]
fn same_build_verified_is_a_no_op_and_a_recorded_old_build_is_uninstalled_first() {
    let g = guest();
    let build = g.build();
    let record = |key: &str, dir: &str| {
        json!({"build": {"key": key, "source": "main", "repo": null, "run_id": 1, "head_sha": null, "version": null},
               "method": "install-psm1", "guest_dir": dir, "installed_at": 1, "harness_version": "0.1.0"})
    };
    g.standin
        .on_times(
            &step(&scripts::WIN_QUERY),
            1,
            Reply::json(&json!({"marker": record(KEY, &g.build_dir()), "services": services(Some("Running"), Some("Running")), "program_files": true})),
        )
        .on(&step(&scripts::WIN_VERIFY), verified(Some("C:\\x\\ebpfapi.dll"), "C:\\x"));
    let results = tempfile::tempdir().unwrap();
    let opts = g.options(results.path());
    let mut session = g.session();
    let mut ev = Vec::new();
    let r =
        install::install_runtime(&mut session, &build, &opts, &mut |e| ev.push(e.clone())).unwrap();
    assert_eq!(r.outcome, InstallOutcome::AlreadyInstalled);
    assert_eq!(g.sequence(), ["query", "verify"]);
    assert!(ev.iter().any(|e| matches!(e, InstallEvent::Skipped { .. })));

    // Now the guest has an older build: it is uninstalled with its own directory's scripts.
    let old_dir = format!("{}\\gh-artifact-1", g.guest_root());
    g.answer_upload(&build.local_dir);
    g.standin
        .on(
            &step(&scripts::WIN_QUERY),
            Reply::json(&json!({"marker": record("gh-artifact-1", &old_dir), "services": services(Some("Running"), Some("Running")), "program_files": true})),
        )
        .on(&step(&scripts::WIN_PREPARE_DIR), ok_json())
        .on(&step(&scripts::WIN_FORGET), ok_json())
        .on(
            &step(&scripts::WIN_UNINSTALL),
            Reply::json(&json!({"dir": old_dir, "method": "install-psm1", "exit_code": 0, "output_tail": [],
                                "services_after": {"eBPFCore": null, "NetEbpfExt": null, "eBPFSvc": null, "SampleEbpfExt": null}})),
        )
        .on(&step(&scripts::WIN_INSTALL), installed_ok())
        .on(&step(&scripts::WIN_ENSURE_PATH), Reply::json(&json!({"changed": true, "machine_path": "C:\\x"})))
        .on("Restart-Service", Reply::json(&json!({"old_sshd_pid": 100, "restarter_pid": 7})))
        .on("Win32_OperatingSystem", Reply::json(&json!({"boot_id": "b", "sshd_pid": 200, "path": "new"})))
        .on(&step(&scripts::WIN_LIST_LOGS), Reply::json(&json!({"files": []})))
        .on(&step(&scripts::WIN_RECORD), ok_json());
    let mut ev = Vec::new();
    let r = install::install_runtime(&mut session, &build, &opts, &mut |e| ev.push(e.clone()))
        .unwrap_or_else(|e| panic!("{e}\n{:#?}", g.sequence()));
    match &r.outcome {
        InstallOutcome::Installed {
            replaced: Some(old),
        } => assert_eq!(old.key, "gh-artifact-1"),
        other => panic!("{other:?}"),
    }
    let seq = g.sequence();
    assert_eq!(
        seq[2..],
        [
            "query",
            "forget",
            "prepare_dir",
            "untar",
            "tree_sizes",
            "uninstall",
            "install",
            "ensure_path",
            "restart_sshd",
            "probe",
            "verify",
            "list_logs",
            "record"
        ]
    );
    let cmds = g.commands();
    let un = cmds
        .iter()
        .find(|c| c.contains(&step(&scripts::WIN_UNINSTALL)))
        .unwrap();
    assert!(
        un.contains(&format!("-BuildDir '{old_dir}'"))
            && un.contains(&format!("-FallbackDir '{}'", g.build_dir()))
    );
    assert!(ev.iter().any(
        |e| matches!(e, InstallEvent::Notice { message } if message.contains("machine PATH"))
    ));
}

#[test]
fn setup_that_exits_zero_without_a_runtime_fails_with_the_msi_log_lines() {
    let g = guest();
    let build = g.build();
    g.answer_upload(&build.local_dir);
    let msi_log = g.guest_log(
        "msi-install.log",
        "MSI (s) (A0:B4) Executing op: ServiceInstall(Name=eBPFCore)\n\
         CustomAction InstallDrivers returned actual error code 1603\n\
         MSI (s) Product: eBPF for Windows -- Installation failed.\n\
         Action ended 12:00:00: INSTALL. Return value 3.\n",
    );
    g.standin
        .on(&step(&scripts::WIN_QUERY), no_marker())
        .on(&step(&scripts::WIN_PREPARE_DIR), ok_json())
        .on(&step(&scripts::WIN_FORGET), ok_json())
        .on(
            &step(&scripts::WIN_INSTALL),
            // setup-ebpf.ps1 ends with `exit 0` even when the MSI failed.
            Reply::json(&json!({"method": "setup-ebpf", "exit_code": 0, "output_tail": ["msiexec failed"],
                                "services": services(None, None), "ebpfapi_dll": null, "psexec_present": true, "msi_log": msi_log})),
        )
        .on(&step(&scripts::WIN_LIST_LOGS), Reply::json(&json!({"files": [{"path": msi_log, "size": 1}]})));
    let results = tempfile::tempdir().unwrap();
    let mut opts = g.options(results.path());
    opts.config.method = provision::InstallMethod::SetupEbpf;
    let mut session = g.session();
    let mut ev = Vec::new();
    let err = install::install_runtime(&mut session, &build, &opts, &mut |e| ev.push(e.clone()))
        .unwrap_err();
    match &err {
        InstallError::InstallFailed {
            method,
            problems,
            excerpt,
            logs_dir,
        } => {
            assert_eq!(method, "setup-ebpf");
            assert!(
                problems
                    .iter()
                    .any(|p| p.contains("eBPFCore does not exist")),
                "{problems:?}"
            );
            assert!(
                excerpt.iter().any(|l| l.contains("Return value 3")),
                "{excerpt:?}"
            );
            assert!(logs_dir.join("msi-install.log").is_file());
        }
        other => panic!("{other}"),
    }
    assert!(err.to_string().contains("error code 1603"), "{err}");
    assert_eq!(
        g.sequence().last().map(String::as_str),
        Some("list_logs"),
        "no restart, no record: {:?}",
        g.sequence()
    );
    assert!(steps_ok(&ev).contains(&(Step::Install, false)));
    assert!(
        g.commands()
            .iter()
            .any(|c| c.contains("-Method 'setup-ebpf'"))
    );
}

#[test]
fn connection_dropping_during_the_sshd_restart_is_survived() {
    let g = guest();
    let build = g.build();
    g.answer_upload(&build.local_dir);
    g.standin
        .on(&step(&scripts::WIN_QUERY), no_marker())
        .on(&step(&scripts::WIN_PREPARE_DIR), ok_json())
        .on(&step(&scripts::WIN_FORGET), ok_json())
        .on(&step(&scripts::WIN_INSTALL), installed_ok())
        .on(
            &step(&scripts::WIN_ENSURE_PATH),
            Reply::json(&json!({"changed": false, "machine_path": "x"})),
        )
        .on("Restart-Service", Reply::drop_connection())
        .on(
            &step(&scripts::WIN_VERIFY),
            verified(
                Some("C:\\Program Files\\ebpf-for-windows\\ebpfapi.dll"),
                "x",
            ),
        )
        .on(
            &step(&scripts::WIN_LIST_LOGS),
            Reply::json(&json!({"files": []})),
        )
        .on(&step(&scripts::WIN_RECORD), ok_json());
    let results = tempfile::tempdir().unwrap();
    let opts = g.options(results.path());
    let mut session = g.session();
    let r = install::install_runtime(&mut session, &build, &opts, &mut |_| {})
        .unwrap_or_else(|e| panic!("{e}\n{:#?}", g.sequence()));
    assert_eq!(r.outcome, InstallOutcome::Installed { replaced: None });
    let seq = g.sequence();
    let i = seq.iter().position(|s| s == "restart_sshd").unwrap();
    assert_eq!(seq[i..], ["restart_sshd", "verify", "list_logs", "record"]);
}

#[test]
fn ebpfapi_not_on_path_after_restart_is_a_clear_error_naming_path() {
    let g = guest();
    let build = g.build();
    g.answer_upload(&build.local_dir);
    g.standin
        .on(&step(&scripts::WIN_QUERY), no_marker())
        .on(&step(&scripts::WIN_PREPARE_DIR), ok_json())
        .on(&step(&scripts::WIN_FORGET), ok_json())
        .on(&step(&scripts::WIN_INSTALL), installed_ok())
        .on(
            &step(&scripts::WIN_ENSURE_PATH),
            Reply::json(&json!({"changed": true, "machine_path": "x"})),
        )
        .on(
            "Restart-Service",
            Reply::json(&json!({"old_sshd_pid": 100, "restarter_pid": 7})),
        )
        .on(
            "Win32_OperatingSystem",
            Reply::json(&json!({"boot_id": "b", "sshd_pid": 200, "path": "new"})),
        )
        .on(
            &step(&scripts::WIN_VERIFY),
            verified(None, "C:\\Windows\\system32;C:\\Windows"),
        )
        .on(
            &step(&scripts::WIN_LIST_LOGS),
            Reply::json(&json!({"files": []})),
        );
    let results = tempfile::tempdir().unwrap();
    let opts = g.options(results.path());
    let mut session = g.session();
    let err = install::install_runtime(&mut session, &build, &opts, &mut |_| {}).unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, InstallError::VerifyFailed { .. }), "{msg}");
    assert!(
        msg.contains("ebpfapi.dll is not resolvable on PATH"),
        "{msg}"
    );
    assert!(msg.contains("C:\\Windows\\system32;C:\\Windows"), "{msg}");
    assert!(msg.contains("C:\\Program Files\\ebpf-for-windows"), "{msg}");
    assert!(
        !g.sequence().contains(&"record".to_string()),
        "{:?}",
        g.sequence()
    );
}

fn ntos() -> ExtensionConfig {
    ExtensionConfig {
        driver: "ntosebpfext.sys".into(),
        service: "ntosebpfext".into(),
        export_tool: "ntos_ebpf_ext_export_program_info.exe".into(),
        program_types: vec!["22ea7b37-1043-4d0d-b60d-cafa1c7b638e".into()],
        start_attempts: 5,
        ..Default::default()
    }
}

fn ext_build(g: &Guest) -> BuildToInstall {
    let dir = g.tmp.path().join("ntos");
    fs::create_dir_all(&dir).unwrap();
    fs::write(dir.join("ntosebpfext.sys"), "sys").unwrap();
    fs::write(dir.join("ntos_ebpf_ext_export_program_info.exe"), "exe").unwrap();
    BuildToInstall {
        local_dir: dir,
        provenance: InstalledBuild {
            key: KEY.into(),
            source: "main".into(),
            ..Default::default()
        },
    }
}

fn ext_query(status: Option<&str>) -> Reply {
    Reply::json(
        &json!({"service": "ntosebpfext", "status": status, "binary_path": status.map(|_| "\\??\\C:\\harness\\efw\\old\\ntosebpfext.sys"), "ebpfcore": "Running"}),
    )
}

fn program_types() -> Reply {
    Reply::json(&json!({"program_types": [
        {"provider": "{provider}", "guid": "{22EA7B37-1043-4D0D-B60D-CAFA1C7B638E}", "name": "process"}]}))
}

#[test]
fn extension_install_then_reinstall_then_remove() {
    let g = guest();
    let build = ext_build(&g);
    g.answer_upload(&build.local_dir);
    g.standin
        .on_times(&step(&scripts::WIN_EXT_QUERY), 1, ext_query(None))
        .on(&step(&scripts::WIN_PREPARE_DIR), ok_json())
        .on(
            &step(&scripts::WIN_EXT_CREATE),
            Reply::json(&json!({"exit_code": 0, "output": ["[SC] CreateService SUCCESS"]})),
        )
        .on(
            &step(&scripts::WIN_EXT_START),
            Reply::json(
                &json!({"status": "Running", "attempts": 2, "last_exit_code": 0, "output": []}),
            ),
        )
        .on(
            &step(&scripts::WIN_EXT_EXPORT),
            Reply::json(&json!({"exit_code": 0, "output": ["Exporting program information."]})),
        )
        .on(&step(&scripts::WIN_EXT_PROGRAM_TYPES), program_types());
    let install_cfg = InstallConfig {
        guest_dir: g.guest_root(),
        ..InstallConfig::default()
    };
    let mut session = g.session();
    let mut ev = Vec::new();
    let st = install::install_extension(
        &mut session,
        "ntosebpfext",
        &ntos(),
        &build,
        &install_cfg,
        &mut |e| ev.push(e.clone()),
    )
    .unwrap_or_else(|e| panic!("{e}\n{:#?}", g.sequence()));
    assert_eq!(st.status.as_deref(), Some("Running"));
    assert_eq!(st.program_types_present, ntos().program_types);
    assert_eq!(
        g.sequence(),
        [
            "ext_query",
            "prepare_dir",
            "untar",
            "tree_sizes",
            "ext_create",
            "ext_start",
            "ext_export",
            "ext_program_types"
        ]
    );
    let cmds = g.commands();
    let create = cmds
        .iter()
        .find(|c| c.contains(&step(&scripts::WIN_EXT_CREATE)))
        .unwrap();
    assert!(
        create.contains(&format!("-Driver '{}\\ntosebpfext.sys'", g.build_dir())),
        "{create}"
    );
    assert!(create.contains("-Start 'demand'"));
    assert!(
        create.contains(r#"binPath= "`"$Driver`"""#),
        "the path is quoted for sc.exe"
    );
    let export = cmds
        .iter()
        .find(|c| c.contains(&step(&scripts::WIN_EXT_EXPORT)))
        .unwrap();
    assert!(export.contains("-Clear 'false'"));

    // Reinstall: the existing service is removed first and the store cleared before exporting.
    let n = g.commands().len();
    g.standin
        .on_times(&step(&scripts::WIN_EXT_QUERY), 1, ext_query(Some("Running")))
        .on(
            &step(&scripts::WIN_EXT_REMOVE),
            Reply::json(&json!({"existed": true, "stop_exit_code": 0, "delete_exit_code": 0, "output": [], "gone": true})),
        );
    install::install_extension(
        &mut session,
        "ntosebpfext",
        &ntos(),
        &build,
        &install_cfg,
        &mut |_| {},
    )
    .unwrap_or_else(|e| panic!("{e}\n{:#?}", g.sequence()));
    assert_eq!(
        g.sequence()[n..],
        [
            "ext_query",
            "ext_remove",
            "prepare_dir",
            "untar",
            "tree_sizes",
            "ext_create",
            "ext_start",
            "ext_export",
            "ext_export",
            "ext_program_types"
        ]
    );
    let cmds = g.commands();
    let exports: Vec<_> = cmds[n..]
        .iter()
        .filter(|c| c.contains(&step(&scripts::WIN_EXT_EXPORT)))
        .collect();
    assert!(exports[0].contains("-Clear 'true'") && exports[1].contains("-Clear 'false'"));

    // Remove: store cleared with the tool beside the installed driver, then the service deleted.
    let n = g.commands().len();
    g.standin
        .on(&step(&scripts::WIN_EXT_QUERY), ext_query(Some("Running")));
    let st = install::remove_extension(&mut session, "ntosebpfext", &ntos(), &mut |_| {}).unwrap();
    assert_eq!(st.status, None);
    assert_eq!(g.sequence()[n..], ["ext_query", "ext_export", "ext_remove"]);
    let cmds = g.commands();
    assert!(
        cmds[n + 1]
            .contains("-Tool 'C:\\harness\\efw\\old\\ntos_ebpf_ext_export_program_info.exe'"),
        "{}",
        cmds[n + 1]
    );
    assert!(cmds[n + 1].contains("-Clear 'true'"));

    // List.
    let list = install::list_extensions(&mut session, &[("ntosebpfext".into(), ntos())]).unwrap();
    assert_eq!(list[0].status.as_deref(), Some("Running"));
    assert!(list[0].program_types_missing.is_empty());
}

#[test]
fn extension_service_that_never_reaches_running_fails_with_the_sc_output() {
    let g = guest();
    let build = ext_build(&g);
    g.answer_upload(&build.local_dir);
    g.standin
        .on(&step(&scripts::WIN_EXT_QUERY), ext_query(None))
        .on(&step(&scripts::WIN_PREPARE_DIR), ok_json())
        .on(&step(&scripts::WIN_EXT_CREATE), Reply::json(&json!({"exit_code": 0, "output": []})))
        .on(
            &step(&scripts::WIN_EXT_START),
            Reply::json(&json!({"status": "Stopped", "attempts": 5, "last_exit_code": 577,
                                "output": ["[SC] StartService FAILED 577:", "Windows cannot verify the digital signature for this file."]})),
        );
    let install_cfg = InstallConfig {
        guest_dir: g.guest_root(),
        ..InstallConfig::default()
    };
    let mut session = g.session();
    let err = install::install_extension(
        &mut session,
        "ntosebpfext",
        &ntos(),
        &build,
        &install_cfg,
        &mut |_| {},
    )
    .unwrap_err();
    let msg = err.to_string();
    assert!(
        matches!(
            err,
            InstallError::Extension {
                step: Step::ExtStartService,
                ..
            }
        ),
        "{msg}"
    );
    assert!(
        msg.contains("did not reach Running after 5 attempts"),
        "{msg}"
    );
    assert!(
        msg.contains("exit code 577") && msg.contains("digital signature"),
        "{msg}"
    );
    assert!(msg.contains("TESTSIGNING"), "{msg}");
    assert!(!g.sequence().contains(&"ext_export".to_string()));
    let start = g
        .commands()
        .into_iter()
        .find(|c| c.contains(&step(&scripts::WIN_EXT_START)))
        .unwrap();
    assert!(start.contains("-Attempts '5'"));
}

#[test]
fn extension_requires_ebpfcore_running() {
    let g = guest();
    let build = ext_build(&g);
    g.standin.on(
        &step(&scripts::WIN_EXT_QUERY),
        Reply::json(&json!({"service": "ntosebpfext", "status": null, "binary_path": null, "ebpfcore": null})),
    );
    let mut session = g.session();
    let err = install::install_extension(
        &mut session,
        "ntosebpfext",
        &ntos(),
        &build,
        &InstallConfig {
            guest_dir: g.guest_root(),
            ..InstallConfig::default()
        },
        &mut |_| {},
    )
    .unwrap_err();
    assert!(
        err.to_string().contains("eBPFCore is not installed")
            && err.to_string().contains("harness install"),
        "{err}"
    );
    assert_eq!(g.sequence(), ["ext_query"]);
}

#[test]
fn every_install_ps1_parses_under_the_powershell_grammar() {
    for s in scripts::WINDOWS_ALL {
        let problems = testsupport::ps1::check_source(s.source);
        assert!(problems.is_empty(), "{}: {problems:?}", s.name);
        // And as the session sends it: wrapped, with arguments.
        let cmd = s.command(&[("Path", "C:\\it's here".into())]).unwrap();
        let wrapped = provision::session::wrap::windows_source(&cmd).unwrap();
        let problems = testsupport::ps1::check_source(&wrapped);
        assert!(problems.is_empty(), "{} (wrapped): {problems:?}", s.name);
    }
}

/// Answers every step of a successful install after the uninstall step.
fn answer_install_tail(g: &Guest) {
    g.standin
        .on(&step(&scripts::WIN_PREPARE_DIR), ok_json())
        .on(&step(&scripts::WIN_FORGET), ok_json())
        .on(&step(&scripts::WIN_INSTALL), installed_ok())
        .on(
            &step(&scripts::WIN_ENSURE_PATH),
            Reply::json(&json!({"changed": false, "machine_path": "x"})),
        )
        .on(
            "Restart-Service",
            Reply::json(&json!({"old_sshd_pid": 100, "restarter_pid": 7})),
        )
        .on(
            "Win32_OperatingSystem",
            Reply::json(&json!({"boot_id": "b", "sshd_pid": 200, "path": "new"})),
        )
        .on(
            &step(&scripts::WIN_VERIFY),
            verified(Some("C:\\y\\ebpfapi.dll"), "C:\\y"),
        )
        .on(
            &step(&scripts::WIN_LIST_LOGS),
            Reply::json(&json!({"files": []})),
        )
        .on(&step(&scripts::WIN_RECORD), ok_json());
}

fn uninstalled(dir: Option<&str>) -> Reply {
    Reply::json(
        &json!({"dir": dir, "method": dir.map(|_| "install-psm1"), "exit_code": dir.map(|_| 0), "output_tail": [],
                        "services_after": {"eBPFCore": null, "NetEbpfExt": null, "eBPFSvc": null, "SampleEbpfExt": null}}),
    )
}

#[test]
fn forced_reinstall_uninstalls_before_replacing_the_directory_and_unknown_runtime_after_upload() {
    let g = guest();
    let build = g.build();
    g.answer_upload(&build.local_dir);
    let rec = json!({"build": {"key": KEY, "source": "main"}, "method": "install-psm1", "guest_dir": g.build_dir(),
                     "installed_at": 1, "harness_version": "0.1.0"});
    g.standin
        .on_times(
            &step(&scripts::WIN_QUERY),
            1,
            Reply::json(&json!({"marker": rec, "services": services(Some("Running"), Some("Running")), "program_files": true})),
        )
        .on_times(&step(&scripts::WIN_UNINSTALL), 1, uninstalled(Some(&g.build_dir())));
    answer_install_tail(&g);
    let results = tempfile::tempdir().unwrap();
    let mut opts = g.options(results.path());
    opts.force = true;
    let mut session = g.session();
    install::install_runtime(&mut session, &build, &opts, &mut |_| {})
        .unwrap_or_else(|e| panic!("{e}\n{:#?}", g.sequence()));
    let seq = g.sequence();
    assert_eq!(
        seq[..6],
        [
            "query",
            "forget",
            "uninstall",
            "prepare_dir",
            "untar",
            "tree_sizes"
        ],
        "{seq:?}"
    );

    // A runtime without a harness record, and no build unpacked yet: the first uninstall finds
    // no scripts, so it runs again with the new build's scripts once they are unpacked.
    let n = g.commands().len();
    g.standin
        .on_times(
            &step(&scripts::WIN_QUERY),
            1,
            Reply::json(&json!({"marker": null, "services": services(Some("Running"), Some("Stopped")), "program_files": true})),
        )
        .on_times(&step(&scripts::WIN_UNINSTALL), 1, uninstalled(None))
        .on_times(&step(&scripts::WIN_UNINSTALL), 1, uninstalled(Some(&g.build_dir())));
    let mut ev = Vec::new();
    install::install_runtime(&mut session, &build, &g.options(results.path()), &mut |e| {
        ev.push(e.clone())
    })
    .unwrap_or_else(|e| panic!("{e}\n{:#?}", g.sequence()));
    let seq = g.sequence();
    assert_eq!(
        seq[n..n + 8],
        [
            "query",
            "forget",
            "uninstall",
            "prepare_dir",
            "untar",
            "tree_sizes",
            "uninstall",
            "install"
        ],
        "{seq:?}"
    );
    // The first, empty-handed uninstall is not reported as a failure.
    assert!(
        steps_ok(&ev).iter().all(|(_, ok)| *ok),
        "{:?}",
        steps_ok(&ev)
    );
}

#[test]
fn missing_psexec_is_refused_before_the_guest_changes_but_a_no_op_does_not_need_it() {
    let g = guest();
    let build = g.build();
    let rec = json!({"build": {"key": KEY, "source": "main"}, "method": "install-psm1", "guest_dir": g.build_dir(),
                     "installed_at": 1, "harness_version": "0.1.0"});
    g.standin
        .on_times(
            &step(&scripts::WIN_QUERY),
            1,
            Reply::json(&json!({"marker": rec, "services": services(Some("Running"), Some("Running")), "program_files": true})),
        )
        .on(&step(&scripts::WIN_VERIFY), verified(Some("C:\\x\\ebpfapi.dll"), "C:\\x"))
        .on(&step(&scripts::WIN_QUERY), no_marker());
    let results = tempfile::tempdir().unwrap();
    let mut opts = g.options(results.path());
    opts.psexec_candidates = vec![g.tmp.path().join("nowhere/PsExec64.exe")];
    let mut session = g.session();
    let r = install::install_runtime(&mut session, &build, &opts, &mut |_| {}).unwrap();
    assert_eq!(r.outcome, InstallOutcome::AlreadyInstalled);
    let err = install::install_runtime(&mut session, &build, &opts, &mut |_| {}).unwrap_err();
    assert!(matches!(err, InstallError::PsexecMissing { .. }), "{err}");
    assert!(
        err.to_string().contains("nowhere/PsExec64.exe")
            && err.to_string().contains("[install] psexec"),
        "{err}"
    );
    assert_eq!(
        g.sequence(),
        ["query", "verify", "query"],
        "nothing changed in the guest"
    );
}
