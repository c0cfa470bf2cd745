//! CDB in a Windows guest by transcript: a real sshd whose ForceCommand is the stand-in shell,
//! which records each decoded PowerShell program and answers the debugger step scripts from
//! rules. What is asserted: the steps run, the arguments they get (cdb's exact command line, the
//! symbol path, the timeout), the parsing of their JSON, the saved text and the error when the
//! guest has no cdb.exe. Nothing here proves cdb.exe behaves so on a real Windows guest.

use std::path::Path;
use std::time::Duration;

use provision::debugger::{self, CdbRun, DebuggerError};
use provision::session::{Endpoint, GuestOs, Session, SessionOptions};
use serde_json::json;
use testsupport::sshd::{Sshd, SshdOptions};
use testsupport::standin::{Reply, Standin};

const CDB: &str = r"C:\Program Files (x86)\Windows Kits\10\Debuggers\x64\cdb.exe";
const BINARY: &str = r"C:\harness\efw\gh-1\link.test.exe";

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

    /// The debugger step scripts run, in order.
    fn steps(&self) -> Vec<String> {
        self.standin
            .transcript()
            .iter()
            .filter_map(|e| {
                debugger::WINDOWS_ALL
                    .iter()
                    .find(|s| e.text().contains(&format!("# {}:", s.name)))
                    .map(|s| s.name.to_string())
            })
            .collect()
    }

    fn run_program(&self) -> String {
        self.standin
            .transcript()
            .iter()
            .map(|e| e.text().to_string())
            .find(|t| t.contains("# debugger/run_cdb.ps1:"))
            .expect("run_cdb ran")
    }
}

fn on_find(g: &Guest, path: Option<&str>) {
    g.standin.on(
        "# debugger/find_cdb.ps1:",
        Reply::json(&json!({
            "path": path,
            "searched": [CDB, r"C:\Program Files\Windows Kits\10\Debuggers\x64\cdb.exe", "PATH"],
        })),
    );
}

const CDB_TEXT: &str = "Microsoft (R) Windows Debugger Version 10.0.26100.1 AMD64\n\
CommandLine: C:\\harness\\efw\\gh-1\\link.test.exe -test.run ^TestLink$ -test.v\n\
0:000> bu ebpfapi!bpf; g; kb; q\n\
Breakpoint 0 hit\n\
ebpfapi!bpf:\n\
 # RetAddr           Call Site\n\
00 00007ff6`1234abcd ebpfapi!bpf\n\
quit:\n";

#[test]
fn a_guest_with_cdb_runs_the_test_under_it_and_the_output_is_saved() {
    let g = guest();
    on_find(&g, Some(CDB));
    g.standin.on(
        "# debugger/run_cdb.ps1:",
        Reply::json(&json!({"exit_code": 0, "timed_out": false, "output": CDB_TEXT})),
    );
    let mut s = g.session();
    let cdb = debugger::find_cdb(&mut s).unwrap();
    assert_eq!(cdb, CDB);
    let args = vec!["-test.run".into(), "^TestLink$".into(), "-test.v".into()];
    let run = CdbRun {
        cdb: &cdb,
        args: debugger::run_args("bu ebpfapi!bpf; g; kb", BINARY, &args),
        dir: r"C:\harness\work\link",
        symbol_path: r"C:\harness\efw\gh-1;srv*C:\harness\symbols*https://msdl.microsoft.com/download/symbols",
        timeout: Duration::from_secs(300),
    };
    let out = debugger::run(&mut s, &run).unwrap();
    assert_eq!(out.exit_code, Some(0));
    assert!(!out.timed_out);
    let saved = g.tmp.path().join("results/debug/cdb.txt");
    out.save(&saved, run.timeout).unwrap();
    assert_eq!(std::fs::read_to_string(&saved).unwrap(), CDB_TEXT);

    assert_eq!(g.steps(), ["debugger/find_cdb.ps1", "debugger/run_cdb.ps1"]);
    let p = g.run_program();
    assert!(p.contains(&format!("-Cdb '{CDB}'")), "{p}");
    assert!(
        p.contains(
            r#"-CommandLine '-G -c "bu ebpfapi!bpf; g; kb; q" C:\harness\efw\gh-1\link.test.exe -test.run ^TestLink$ -test.v'"#
        ),
        "{p}"
    );
    assert!(p.contains(r"-Dir 'C:\harness\work\link'"), "{p}");
    assert!(
        p.contains(r"-SymbolPath 'C:\harness\efw\gh-1;srv*C:\harness\symbols*https://"),
        "{p}"
    );
    assert!(p.contains("-TimeoutSeconds '300'"), "{p}");
    assert!(
        p.contains("taskkill.exe /T /F /PID"),
        "the script kills the tree: {p}"
    );
}

#[test]
fn a_guest_without_cdb_is_told_how_to_get_it() {
    let g = guest();
    on_find(&g, None);
    let mut s = g.session();
    let e = debugger::find_cdb(&mut s).unwrap_err();
    assert!(matches!(e, DebuggerError::CdbMissing { .. }), "{e:?}");
    let m = e.to_string();
    for needle in [
        "cdb.exe is not in the guest",
        CDB,
        "PATH",
        "winsdksetup.exe /features OptionId.WindowsDesktopDebuggers /quiet /norestart",
        "[vm] debugging_tools",
    ] {
        assert!(m.contains(needle), "{needle:?} missing from: {m}");
    }
    assert_eq!(g.steps(), ["debugger/find_cdb.ps1"]);
}

#[test]
fn analyze_runs_bang_analyze_on_the_dump_and_a_timeout_is_saved_as_such() {
    let g = guest();
    g.standin.on(
        "# debugger/run_cdb.ps1:",
        Reply::json(&json!({
            "exit_code": null,
            "timed_out": true,
            "output": "Loading Dump File [C:\\dumps\\x y.dmp]\n0:000> !analyze -v",
        })),
    );
    let mut s = g.session();
    let run = CdbRun {
        cdb: CDB,
        args: debugger::analyze_args(r"C:\dumps\x y.dmp"),
        dir: r"C:\dumps",
        symbol_path: "SYM",
        timeout: Duration::from_secs(5),
    };
    let out = debugger::run(&mut s, &run).unwrap();
    assert!(out.timed_out);
    let saved = g.tmp.path().join("x y.dmp.analyze.txt");
    out.save(&saved, run.timeout).unwrap();
    let text = std::fs::read_to_string(&saved).unwrap();
    assert!(text.starts_with("Loading Dump File"), "{text}");
    assert!(
        text.ends_with("[harness: cdb did not finish within 5 s; its process tree was killed]\n"),
        "{text}"
    );
    let p = g.run_program();
    assert!(
        p.contains(r#"-CommandLine '-z "C:\dumps\x y.dmp" -c "!analyze -v; q"'"#),
        "{p}"
    );
}

#[test]
fn a_failing_run_script_says_which_step_and_why() {
    let g = guest();
    g.standin.on(
        "# debugger/run_cdb.ps1:",
        Reply::fail(
            1,
            r#"{"error":"The system cannot find the file specified"}"#,
            "",
        ),
    );
    let mut s = g.session();
    let e = debugger::run(
        &mut s,
        &CdbRun {
            cdb: CDB,
            args: debugger::analyze_args("d.dmp"),
            dir: ".",
            symbol_path: "SYM",
            timeout: Duration::from_secs(5),
        },
    )
    .unwrap_err();
    let m = e.to_string();
    assert!(m.contains("run_cdb.ps1"), "{m}");
    assert!(m.contains("cannot find the file"), "{m}");
    assert!(!Path::new(&g.tmp.path().join("d.dmp.analyze.txt")).exists());
}

#[test]
fn the_debugging_tools_installer_is_uploaded_and_run_silently() {
    let g = guest();
    g.standin.on(
        "# debugger/install_debugging_tools.ps1:",
        Reply::json(&json!({"exit_code": 0, "cdb": CDB})),
    );
    let installer = g.tmp.path().join("downloads/winsdksetup.exe");
    std::fs::create_dir_all(installer.parent().unwrap()).unwrap();
    std::fs::write(&installer, b"MZ sdk setup").unwrap();
    let guest_dir = g.tmp.path().join("guest");
    std::fs::create_dir_all(&guest_dir).unwrap();
    let mut s = g.session();
    let cdb =
        debugger::install_debugging_tools(&mut s, &installer, &guest_dir.display().to_string())
            .unwrap();
    assert_eq!(cdb, CDB);
    assert_eq!(
        std::fs::read(guest_dir.join("winsdksetup.exe")).unwrap(),
        b"MZ sdk setup",
        "the installer went through SFTP"
    );
    let p = g
        .standin
        .transcript()
        .iter()
        .map(|e| e.text().to_string())
        .find(|t| t.contains("# debugger/install_debugging_tools.ps1:"))
        .expect("the install step ran");
    assert!(
        p.contains(&format!(
            "-Installer '{}\\winsdksetup.exe'",
            guest_dir.display()
        )),
        "{p}"
    );
    assert!(
        p.contains("'OptionId.WindowsDesktopDebuggers', '/quiet', '/norestart'"),
        "{p}"
    );
}

#[test]
fn a_debugging_tools_install_without_cdb_afterwards_fails_with_the_reason() {
    let g = guest();
    g.standin.on(
        "# debugger/install_debugging_tools.ps1:",
        Reply::fail(
            1,
            r#"{"exit_code":1603,"cdb":null,"error":"the installer exited with 1603 and cdb.exe is not under Windows Kits\\10\\Debuggers\\x64"}"#,
            "",
        ),
    );
    let installer = g.tmp.path().join("dbg.msi");
    std::fs::write(&installer, b"msi").unwrap();
    let guest_dir = g.tmp.path().join("guest");
    std::fs::create_dir_all(&guest_dir).unwrap();
    let mut s = g.session();
    let e = debugger::install_debugging_tools(&mut s, &installer, &guest_dir.display().to_string())
        .unwrap_err();
    let m = e.to_string();
    assert!(
        m.contains("install_debugging_tools.ps1") && m.contains("1603"),
        "{m}"
    );
}
