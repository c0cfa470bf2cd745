//! Windows flows by transcript: a real sshd whose ForceCommand is the stand-in shell, which
//! decodes each `-EncodedCommand`, records it and answers from per-test rules. Each test has its
//! own stand-in directory and therefore its own (cheap) sshd.

use std::time::{Duration, Instant};

use provision::session::script::builtin;
use provision::session::{
    Endpoint, GuestOs, RemoteCommand, Session, SessionError, SessionOptions, Stream,
};
use serde_json::json;
use testsupport::sshd::{Sshd, SshdOptions};
use testsupport::standin::{Reply, Standin};

struct Guest {
    standin: Standin,
    sshd: Sshd,
    _state: tempfile::TempDir,
    ep: Endpoint,
    opts: SessionOptions,
}

fn guest() -> Guest {
    let standin = Standin::new().unwrap();
    let sshd = Sshd::start_with(SshdOptions {
        force_command: Some(standin.force_command()),
        ..Default::default()
    })
    .expect("starting sshd");
    let state = tempfile::tempdir().unwrap();
    let ep = Endpoint {
        host: sshd.host().into(),
        port: sshd.port(),
        user: sshd.user(),
        identity: Some(sshd.client_key()),
        os: GuestOs::Windows,
    };
    let mut opts = SessionOptions::new(state.path().join("known_hosts"));
    opts.connect_timeout = Duration::from_secs(3);
    Guest {
        standin,
        sshd,
        _state: state,
        ep,
        opts,
    }
}

impl Guest {
    fn session(&self) -> Session {
        Session::connect(&self.ep, &self.opts)
            .unwrap_or_else(|e| panic!("{e}\n{}", self.sshd.log()))
    }
    /// Decoded commands, in order.
    fn commands(&self) -> Vec<String> {
        self.standin
            .transcript()
            .iter()
            .map(|e| e.text().to_string())
            .collect()
    }
}

#[test]
fn exec_sends_an_encoded_powershell_wrapper_and_propagates_exit_codes() {
    let g = guest();
    g.standin
        .on(
            "Get-Thing",
            Reply::fail(3, "line one\r\nline two\r\n", "warn\r\n"),
        )
        .on("Write-Output", Reply::stdout("hello\r\n"));
    let mut s = g.session();
    let mut lines = Vec::new();
    let cmd = RemoteCommand::new(["Get-Thing -Name 'x'"])
        .env("GOFLAGS", "-count=1")
        .cwd(r"C:\work dir");
    let st = s
        .exec(&cmd, &mut |st, l| lines.push((st, l.to_string())))
        .unwrap();
    assert_eq!(st.code, 3);
    assert_eq!(
        lines,
        [
            (Stream::Stdout, "line one".to_string()),
            (Stream::Stdout, "line two".into()),
            (Stream::Stderr, "warn".into())
        ]
    );
    let out = s
        .exec_capture(&RemoteCommand::new(["Write-Output 'hello'"]))
        .unwrap();
    assert_eq!((out.status.code, out.stdout.as_str()), (0, "hello\n"));

    let t = g.standin.transcript();
    assert_eq!(t.len(), 2);
    assert!(t[0].raw.starts_with(
        "powershell.exe -NoProfile -NonInteractive -ExecutionPolicy Bypass -EncodedCommand "
    ));
    let src = t[0].decoded.as_deref().expect("an encoded command");
    for needle in [
        "$ErrorActionPreference = 'Stop'",
        "$ProgressPreference = 'SilentlyContinue'",
        "[Environment]::SetEnvironmentVariable('GOFLAGS', '-count=1')",
        r"Set-Location -LiteralPath 'C:\work dir'",
        "Get-Thing -Name 'x'",
        "exit $LASTEXITCODE",
    ] {
        assert!(src.contains(needle), "missing {needle:?} in:\n{src}");
    }
}

#[derive(serde::Deserialize, Debug)]
struct Probe {
    boot_id: String,
    sshd_pid: u32,
}

#[test]
fn scripts_pass_quoted_named_arguments_and_parse_json() {
    let g = guest();
    g.standin
        .on(
            "Get-ChildItem -LiteralPath $Dir -Recurse",
            Reply::json(&json!({"files": [["a/b.txt", 5]]})),
        )
        .on(
            "Win32_OperatingSystem",
            Reply::json(
                &json!({"boot_id": "2026-11-26T00:00:00Z", "sshd_pid": 42, "path": "C:\\x"}),
            ),
        );
    let mut s = g.session();
    let p: Probe = s.run_script_as(&builtin::PROBE_WINDOWS, &[]).unwrap();
    assert_eq!(
        (p.boot_id.as_str(), p.sshd_pid),
        ("2026-11-26T00:00:00Z", 42)
    );
    let sizes = s.remote_tree_sizes(r"C:\it's here").unwrap();
    assert_eq!(sizes.get("a/b.txt"), Some(&5));
    let cmds = g.commands();
    assert!(cmds[0].contains(builtin::PROBE_WINDOWS.source));
    assert!(cmds[1].contains(builtin::TREE_SIZES_WINDOWS.source));
    assert!(cmds[1].contains(r"} -Dir 'C:\it''s here'"), "{}", cmds[1]);
}

#[test]
fn script_failures_and_malformed_json_are_typed_errors() {
    let g = guest();
    g.standin
        .on_times(
            "Win32_OperatingSystem",
            1,
            Reply::fail(
                1,
                "{\"error\":\"WMI is broken\"}\r\n",
                "At line:3 char:1\r\n",
            ),
        )
        .on_times(
            "Win32_OperatingSystem",
            1,
            Reply::stdout("{\"boot_id\": \r\n"),
        )
        .on_times("Win32_OperatingSystem", 1, Reply::stdout(""))
        .on_times(
            "Win32_OperatingSystem",
            1,
            Reply::json(&json!({"boot_id": 7})),
        );
    let mut s = g.session();
    match s.run_script(&builtin::PROBE_WINDOWS, &[]) {
        Err(SessionError::ScriptFailed {
            code: 1,
            error: Some(e),
            stderr_tail,
            ..
        }) => {
            assert_eq!(e, "WMI is broken");
            assert!(stderr_tail.contains("At line:3"));
        }
        other => panic!("{other:?}"),
    }
    let e = s.run_script(&builtin::PROBE_WINDOWS, &[]).unwrap_err();
    assert!(matches!(e, SessionError::BadScriptOutput { .. }), "{e}");
    assert!(e.to_string().contains("session/probe.ps1"));
    let e = s.run_script(&builtin::PROBE_WINDOWS, &[]).unwrap_err();
    assert!(e.to_string().contains("stdout was empty"), "{e}");
    let e = s
        .run_script_as::<Probe>(&builtin::PROBE_WINDOWS, &[])
        .unwrap_err();
    assert!(e.to_string().contains("unexpected JSON shape"), "{e}");
    // A Linux script on a Windows guest is refused before anything is sent.
    assert!(s.run_script(&builtin::PROBE_LINUX, &[]).is_err());
    assert_eq!(g.standin.transcript().len(), 4);
}

#[test]
fn restart_sshd_waits_for_a_new_sshd_process_then_the_check() {
    let g = guest();
    g.standin
        .on(
            "Restart-Service",
            Reply::json(&json!({"old_sshd_pid": 100, "restarter_pid": 7})),
        )
        .on_times(
            "Win32_OperatingSystem",
            1,
            Reply::json(&json!({"boot_id": "b", "sshd_pid": 100, "path": "old"})),
        )
        .on(
            "Win32_OperatingSystem",
            Reply::json(&json!({"boot_id": "b", "sshd_pid": 200, "path": "new"})),
        )
        .on("Get-Command ebpfapi", Reply::stdout("found\r\n"));
    let mut s = g.session();
    s.restart_sshd(
        &mut |s| {
            Ok(
                s.exec_capture(&RemoteCommand::new(["Get-Command ebpfapi.dll"]))?
                    .stdout
                    .trim()
                    == "found",
            )
        },
        Duration::from_secs(20),
    )
    .unwrap();
    let cmds = g.commands();
    assert_eq!(cmds.len(), 4, "{cmds:#?}");
    assert!(
        cmds[0].contains("Restart-Service -Name sshd -Force") && cmds[0].contains("Win32_Process")
    );
    assert!(
        cmds[1].contains("Win32_OperatingSystem"),
        "old sshd still answering: probe again"
    );
    assert!(cmds[2].contains("Win32_OperatingSystem"));
    assert!(cmds[3].contains("Get-Command ebpfapi.dll"));
}

#[test]
fn restart_sshd_survives_the_connection_dropping_during_the_trigger() {
    let g = guest();
    g.standin
        .on("Restart-Service", Reply::drop_connection())
        .on_times(
            "Get-Command ebpfapi",
            1,
            Reply::fail(1, "", "not found\r\n"),
        )
        .on("Get-Command ebpfapi", Reply::stdout("found\r\n"));
    let mut s = g.session();
    let start = Instant::now();
    s.restart_sshd(
        &mut |s| {
            Ok(
                s.exec_capture(&RemoteCommand::new(["Get-Command ebpfapi.dll"]))?
                    .status
                    .success(),
            )
        },
        Duration::from_secs(20),
    )
    .unwrap();
    assert!(start.elapsed() < Duration::from_secs(15));
    let cmds = g.commands();
    assert_eq!(cmds.len(), 3, "{cmds:#?}");
    assert!(cmds[0].contains("Restart-Service"));
    assert!(cmds[1].contains("Get-Command") && cmds[2].contains("Get-Command"));
}

#[test]
fn restart_sshd_gives_up_at_the_deadline_when_the_check_never_passes() {
    let g = guest();
    g.standin
        .on(
            "Restart-Service",
            Reply::json(&json!({"old_sshd_pid": 100, "restarter_pid": 7})),
        )
        .on(
            "Win32_OperatingSystem",
            Reply::json(&json!({"boot_id": "b", "sshd_pid": 100, "path": "old"})),
        );
    let mut s = g.session();
    let start = Instant::now();
    let err = s
        .restart_sshd(&mut |_| Ok(true), Duration::from_secs(3))
        .unwrap_err();
    assert!(matches!(err, SessionError::NotBack { .. }), "{err}");
    assert!(
        start.elapsed() < Duration::from_secs(7),
        "{:?}",
        start.elapsed()
    );
    assert!(err.to_string().contains("fresh sshd"), "{err}");
}

#[test]
fn timeout_runs_taskkill_on_the_reported_pid() {
    let g = guest();
    g.standin.on(
        "Start-Sleep",
        Reply::stdout("never\r\n").after(Duration::from_secs(30)),
    );
    let mut s = g.session();
    let start = Instant::now();
    let err = s
        .exec(
            &RemoteCommand::new(["Start-Sleep -Seconds 30"]).timeout(Duration::from_secs(1)),
            &mut |_, _| {},
        )
        .unwrap_err();
    assert!(matches!(err, SessionError::Timeout { .. }), "{err}");
    assert!(
        start.elapsed() < Duration::from_secs(10),
        "{:?}",
        start.elapsed()
    );
    let cmds = g.commands();
    assert_eq!(cmds.len(), 2, "{cmds:#?}");
    assert!(cmds[1].contains("taskkill.exe /T /F /PID "), "{}", cmds[1]);
    // The stand-in answered the wrapper's pid line with its own pid and taskkill killed it.
    let pid: i32 = cmds[1]
        .split("/PID ")
        .nth(1)
        .unwrap()
        .split_whitespace()
        .next()
        .unwrap()
        .parse()
        .unwrap();
    assert!(pid > 0);
    std::thread::sleep(Duration::from_millis(200));
    // SAFETY: signal 0 only checks for existence.
    assert_ne!(
        unsafe { libc::kill(pid, 0) },
        0,
        "process {pid} survived taskkill"
    );
    // The session is still usable.
    g.standin.on("Write-Output", Reply::stdout("ok\r\n"));
    assert_eq!(
        s.exec_capture(&RemoteCommand::new(["Write-Output ok"]))
            .unwrap()
            .stdout,
        "ok\n"
    );
}

#[test]
fn reboot_waits_for_a_new_boot_id() {
    let g = guest();
    g.standin
        .on("shutdown.exe", Reply::json(&json!({"boot_id": "boot-1"})))
        .on_times(
            "Win32_OperatingSystem",
            2,
            Reply::json(&json!({"boot_id": "boot-1", "sshd_pid": 1, "path": ""})),
        )
        .on(
            "Win32_OperatingSystem",
            Reply::json(&json!({"boot_id": "boot-2", "sshd_pid": 2, "path": ""})),
        );
    let mut s = g.session();
    s.reboot(Duration::from_secs(20)).unwrap();
    let cmds = g.commands();
    // probe (before), reboot, probe (still old boot: not yet rebooted), probe (new boot).
    assert!(
        cmds.len() == 4 && cmds[1].contains("shutdown.exe /r"),
        "{cmds:#?}"
    );
}

#[test]
fn tree_upload_sends_one_archive_then_untars_and_verifies_sizes() {
    let g = guest();
    let src = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(src.path().join("sub")).unwrap();
    std::fs::write(src.path().join("sub/a.dll"), vec![7u8; 1000]).unwrap();
    std::fs::write(src.path().join("b.txt"), "hello").unwrap();
    g.standin
        .on(
            "tar.exe -x -f $archivePath",
            Reply::json(&json!({"dir": "C:\\harness\\efw\\k"})),
        )
        .on_times(
            "Get-ChildItem -LiteralPath $Dir -Recurse",
            1,
            Reply::json(&json!({"files": [["sub/a.dll", 1000], ["b.txt", 5], ["old.txt", 1]]})),
        )
        .on(
            "Get-ChildItem -LiteralPath $Dir -Recurse",
            Reply::json(&json!({"files": [["sub/a.dll", 999]]})),
        );
    let mut s = g.session();
    let st = s.upload_tree(src.path(), r"C:\harness\efw\k").unwrap();
    assert_eq!((st.files, st.bytes), (2, 1005));
    let cmds = g.commands();
    assert_eq!(cmds.len(), 2, "{cmds:#?}");
    let archive = cmds[0]
        .split("-Archive '")
        .nth(1)
        .unwrap()
        .split('\'')
        .next()
        .unwrap()
        .to_string();
    assert!(cmds[0].contains(r"-Dir 'C:\harness\efw\k'"), "{}", cmds[0]);
    assert!(cmds[1].contains(r"-Dir 'C:\harness\efw\k'"));
    // The archive arrived over SFTP in the user's home, whole.
    let tar_path = g.standin.home().join(&archive);
    let mut names: Vec<String> = tar::Archive::new(std::fs::File::open(&tar_path).unwrap())
        .entries()
        .unwrap()
        .map(|e| e.unwrap().path().unwrap().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(names, ["b.txt", "sub", "sub/a.dll"]);
    // A size that differs after unpacking is an error that names the file.
    let err = s.upload_tree(src.path(), r"C:\harness\efw\k").unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains("sub/a.dll: 999 bytes, expected 1000") && msg.contains("b.txt: missing"),
        "{msg}"
    );
}

#[test]
fn programs_too_long_for_cmd_exe_travel_on_stdin() {
    let g = guest();
    g.standin.on("Big-Step", Reply::json(&json!({"ok": true})));
    // ~12 KB of PowerShell: inline it would be ~32 KB of base64, far past cmd.exe's 8191.
    let body = format!(
        "{}\nBig-Step -Name 'é'\nConvertTo-Json @{{ ok = $true }}",
        "# padding line\n".repeat(800)
    );
    let big = provision::session::Script::windows("big.ps1", Box::leak(body.into_boxed_str()));
    let v = s_run(&g, &big);
    assert_eq!(v["ok"], true);
    let t = g.standin.transcript();
    assert_eq!(t.len(), 1);
    assert!(t[0].via_stdin, "expected the stdin bootstrap");
    assert!(
        t[0].raw.len() < provision::session::wrap::CMD_EXE_LIMIT,
        "{}",
        t[0].raw.len()
    );
    let src = t[0].decoded.as_deref().unwrap();
    assert!(src.contains("Big-Step -Name 'é'") && src.contains("$ErrorActionPreference = 'Stop'"));
    assert!(testsupport::ps1::check_source(provision::session::wrap::STDIN_BOOTSTRAP).is_empty());
}

fn s_run(g: &Guest, script: &provision::session::Script) -> serde_json::Value {
    g.session().run_script(script, &[]).unwrap()
}
