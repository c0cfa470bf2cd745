//! `repro --cdb`'s part after the repro ([`super::after_repro`]) by transcript: a real sshd on
//! loopback whose shell is the recording stand-in PowerShell (`[vm] backend = "ssh"`, Windows),
//! the fixture module's `pass` package really built with the debug flags and really uploaded
//! over SFTP. The stand-in answers the find-cdb, symbol-path and run-cdb steps. Nothing here
//! runs a real cdb.exe.

use std::path::{Path, PathBuf};
use std::time::Duration;

use provision::install::{InstallRecord, InstalledBuild};
use serde_json::json;
use testsupport::gomod;
use testsupport::sshd::{Sshd, SshdOptions};
use testsupport::standin::{Reply, Standin};

use crate::cmd::debug::Target;
use crate::context::Context;

const CDB: &str = r"C:\Program Files (x86)\Windows Kits\10\Debuggers\x64\cdb.exe";
const OUTPUT: &str = "CommandLine: pass.test.exe -test.run ^TestPass$ -test.v\n\
0:000> bu ebpfapi!bpf; g; kb; q\nBreakpoint 0 hit\n00 ebpfapi!bpf\nquit:\n";

fn go() -> String {
    let out = std::process::Command::new("python3")
        .args([
            "-c",
            "import sysconfig; print(sysconfig.get_path('scripts'))",
        ])
        .output();
    let scripts = out
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default();
    let candidate = Path::new(&scripts).join("go");
    if candidate.is_file() {
        candidate.display().to_string()
    } else {
        "go".into()
    }
}

struct Lab {
    standin: Standin,
    _sshd: Sshd,
    tmp: tempfile::TempDir,
    ctx: Context,
}

fn lab(cdb: Option<&str>) -> Lab {
    let standin = Standin::new().unwrap();
    let sshd = Sshd::start_with(SshdOptions {
        force_command: Some(standin.force_command()),
        ..Default::default()
    })
    .expect("starting sshd");
    standin
        .on(
            "# debugger/find_cdb.ps1:",
            Reply::json(&json!({"path": cdb, "searched": [CDB, "PATH"]})),
        )
        .on(
            "SetEnvironmentVariable('_NT_SYMBOL_PATH'",
            Reply::stdout(""),
        )
        .on(
            "# debugger/run_cdb.ps1:",
            Reply::json(&json!({"exit_code": 0, "timed_out": false, "output": OUTPUT})),
        );
    let tmp = tempfile::tempdir().unwrap();
    let mut ctx = Context::for_test(tmp.path());
    let vm = &mut ctx.config.vm;
    vm.backend = provision::BackendKind::Ssh;
    vm.os = provision::GuestOs::Windows;
    vm.host = sshd.host().into();
    vm.port = sshd.port();
    vm.user = sshd.user();
    vm.identity = Some(sshd.client_key());
    let efw = tmp.path().join("guest/efw");
    std::fs::create_dir_all(&efw).unwrap();
    let record = InstallRecord {
        build: InstalledBuild {
            key: "gh-1".into(),
            source: "main".into(),
            repo: None,
            run_id: None,
            head_sha: None,
            version: None,
        },
        method: provision::InstallMethod::SetupEbpf,
        guest_dir: efw.display().to_string(),
        installed_at: 0,
        harness_version: "test".into(),
        runtime_version: None,
    };
    let path = provision::install::host_record_path(&ctx.paths.state, &ctx.config.vm.name);
    provision::install::save_host_record(&path, &record).unwrap();
    Lab {
        standin,
        _sshd: sshd,
        tmp,
        ctx,
    }
}

impl Lab {
    fn results(&self) -> PathBuf {
        self.tmp.path().join("results/repro-x")
    }

    fn efw(&self) -> PathBuf {
        self.tmp.path().join("guest/efw")
    }

    fn after_repro(&self, go: &str) -> anyhow::Result<()> {
        let module = gomod::path();
        let results = self.results();
        let package = gomod::pkg("pass");
        let t = Target {
            package: &package,
            test: Some("TestPass/sub"),
            start_dir: r"C:\harness\work\pass",
            module: &module,
            host_go: go,
            results: &results,
        };
        super::after_repro(
            &self.ctx,
            &t,
            false,
            Some("bu ebpfapi!bpf; g; kb"),
            Duration::from_secs(120),
        )
    }

    /// Which steps ran, in order, by a short label.
    fn steps(&self) -> Vec<&'static str> {
        self.standin
            .transcript()
            .iter()
            .filter_map(|e| {
                let t = e.text();
                [
                    ("# debugger/find_cdb.ps1:", "find_cdb"),
                    ("_NT_SYMBOL_PATH', ", "symbol_path"),
                    ("# debugger/run_cdb.ps1:", "run_cdb"),
                ]
                .into_iter()
                .find(|(needle, _)| t.contains(needle))
                .map(|(_, l)| l)
            })
            .collect()
    }
}

#[test]
fn repro_cdb_runs_the_debug_build_under_cdb_and_saves_its_output() {
    let l = lab(Some(CDB));
    l.after_repro(&go()).unwrap();
    assert_eq!(l.steps(), ["find_cdb", "symbol_path", "run_cdb"]);
    let guest_binary = l.efw().join("pass.test.exe");
    let uploaded = std::fs::read(&guest_binary).unwrap();
    assert_eq!(&uploaded[..2], b"MZ", "a Windows PE went through SFTP");
    let debug = l.results().join("debug");
    assert_eq!(
        std::fs::read_to_string(debug.join("cdb.txt")).unwrap(),
        OUTPUT
    );
    let efw = l.efw().display().to_string();
    let args = format!(
        r#"-G -c "bu ebpfapi!bpf; g; kb; q" {efw}\pass.test.exe -test.run ^TestPass$ -test.v"#
    );
    let command = std::fs::read_to_string(debug.join("cdb-command.txt")).unwrap();
    assert_eq!(
        command,
        format!("cd /d C:\\harness\\work\\pass\n\"{CDB}\" {args}\n")
    );
    let run = l
        .standin
        .transcript()
        .iter()
        .map(|e| e.text().to_string())
        .find(|t| t.contains("# debugger/run_cdb.ps1:"))
        .unwrap();
    assert!(run.contains(&format!("-CommandLine '{args}'")), "{run}");
    assert!(run.contains(r"-Dir 'C:\harness\work\pass'"), "{run}");
    assert!(
        run.contains(&format!(
            r"-SymbolPath '{efw};{efw};srv*C:\harness\symbols*https://msdl.microsoft.com"
        )),
        "{run}"
    );
    assert!(run.contains("-TimeoutSeconds '120'"), "{run}");
}

#[test]
fn repro_cdb_on_a_guest_without_cdb_stops_before_building_and_names_the_fix() {
    let l = lab(None);
    let e = format!("{:#}", l.after_repro(&go()).unwrap_err());
    assert!(e.contains("cdb.exe is not in the guest"), "{e}");
    assert!(e.contains("OptionId.WindowsDesktopDebuggers"), "{e}");
    assert!(e.contains("[vm] debugging_tools"), "{e}");
    assert_eq!(l.steps(), ["find_cdb"]);
    assert!(
        !l.results().join("debug").exists(),
        "nothing was built for a guest that cannot run it"
    );
}
