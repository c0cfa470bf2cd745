//! `harness analyze` against a real sshd on loopback whose ForceCommand is the transcript
//! stand-in PowerShell (`[vm] backend = "ssh"`, `os = "windows"`): the stand-in answers the
//! find-cdb and run-cdb step scripts from rules. Asserted: the text saved and printed, the
//! upload of a host dump, CDB's command line, and the error that names the fix when the guest
//! has no cdb.exe. Nothing here runs a real cdb.exe.

mod common;

use std::path::Path;

use assert_cmd::Command;
use predicates::prelude::*;
use serde_json::json;
use testsupport::sshd::{Sshd, SshdOptions};
use testsupport::standin::{Reply, Standin};

const CDB: &str = r"C:\Program Files (x86)\Windows Kits\10\Debuggers\x64\cdb.exe";
const ANALYSIS: &str = "Loading Dump File [C:\\dumps\\link.dmp]\n\
0:000> !analyze -v\n\
FAULTING_MODULE: ebpfapi\n\
STACK_TEXT:\n00 ebpfapi!bpf+0x42\n\
quit:\n";

struct Guest {
    standin: Standin,
    sshd: Sshd,
    dir: tempfile::TempDir,
}

fn guest(cdb: Option<&str>) -> Guest {
    let standin = Standin::new().unwrap();
    let sshd = Sshd::start_with(SshdOptions {
        force_command: Some(standin.force_command()),
        ..Default::default()
    })
    .expect("starting sshd");
    standin.on(
        "# debugger/find_cdb.ps1:",
        Reply::json(&json!({"path": cdb, "searched": [CDB, "PATH"]})),
    );
    Guest {
        standin,
        sshd,
        dir: tempfile::tempdir().unwrap(),
    }
}

impl Guest {
    /// The guest's install directory: a Linux path, so that SFTP really moves the dump.
    fn guest_dir(&self) -> std::path::PathBuf {
        self.dir.path().join("guest")
    }

    fn harness(&self) -> Command {
        let cfg = self.dir.path().join("harness.toml");
        std::fs::write(
            &cfg,
            format!(
                "[vm]\nbackend = \"ssh\"\nos = \"windows\"\nhost = \"127.0.0.1\"\nport = {}\nuser = \"{}\"\nidentity = \"{}\"\n\n[install]\nguest_dir = \"{}\"\n",
                self.sshd.port(),
                self.sshd.user(),
                self.sshd.client_key().display(),
                self.guest_dir().display()
            ),
        )
        .unwrap();
        let mut c = common::isolated_harness(self.dir.path());
        c.arg("-c").arg(&cfg);
        c.timeout(std::time::Duration::from_secs(60));
        c
    }

    fn programs(&self) -> Vec<String> {
        self.standin
            .transcript()
            .iter()
            .map(|e| e.text().to_string())
            .collect()
    }

    fn run_program(&self) -> Option<String> {
        self.programs()
            .into_iter()
            .find(|t| t.contains("# debugger/run_cdb.ps1:"))
    }
}

fn saved_in_results(root: &Path, name: &str) -> String {
    let results = root.join("state/results");
    let dir = std::fs::read_dir(&results)
        .unwrap_or_else(|e| panic!("{}: {e}", results.display()))
        .map(|e| e.unwrap().path())
        .find(|p| {
            p.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("analyze")
        })
        .expect("an analyze results folder");
    std::fs::read_to_string(dir.join(name)).unwrap()
}

#[test]
fn analyze_a_guest_dump_prints_and_saves_the_text() {
    let g = guest(Some(CDB));
    g.standin.on(
        "# debugger/run_cdb.ps1:",
        Reply::json(&json!({"exit_code": 0, "timed_out": false, "output": ANALYSIS})),
    );
    g.harness()
        .args(["analyze", r"C:\dumps\link.dmp", "--timeout", "120"])
        .assert()
        .success()
        .stdout(predicate::str::contains("FAULTING_MODULE: ebpfapi"));
    assert_eq!(
        saved_in_results(g.dir.path(), "link.dmp.analyze.txt"),
        ANALYSIS
    );
    let p = g.run_program().expect("run_cdb ran");
    assert!(p.contains(&format!("-Cdb '{CDB}'")), "{p}");
    assert!(
        p.contains(r#"-CommandLine '-z C:\dumps\link.dmp -c "!analyze -v; q"'"#),
        "{p}"
    );
    assert!(p.contains(r"-Dir 'C:\dumps'"), "{p}");
    assert!(p.contains("-TimeoutSeconds '120'"), "{p}");
    assert!(
        p.contains("-SymbolPath 'srv*C:\\harness\\symbols*https://msdl.microsoft.com"),
        "no install record: Microsoft's symbols only: {p}"
    );
}

#[test]
fn analyze_a_host_dump_uploads_it_and_saves_the_text_beside_it() {
    let g = guest(Some(CDB));
    g.standin
        .on("New-Item -ItemType Directory", Reply::stdout(""))
        .on(
            "# debugger/run_cdb.ps1:",
            Reply::json(&json!({"exit_code": 0, "timed_out": false, "output": ANALYSIS})),
        );
    std::fs::create_dir_all(g.guest_dir().join("dumps")).unwrap();
    let dump = g.dir.path().join("forensics/link.test.exe.77.dmp");
    std::fs::create_dir_all(dump.parent().unwrap()).unwrap();
    std::fs::write(&dump, b"MDMP fake dump").unwrap();
    g.harness()
        .arg("analyze")
        .arg(&dump)
        .assert()
        .success()
        .stdout(predicate::str::contains("STACK_TEXT"));
    let beside = g
        .dir
        .path()
        .join("forensics/link.test.exe.77.dmp.analyze.txt");
    assert_eq!(std::fs::read_to_string(&beside).unwrap(), ANALYSIS);
    let uploaded = g.guest_dir().join("dumps/link.test.exe.77.dmp");
    assert_eq!(std::fs::read(&uploaded).unwrap(), b"MDMP fake dump");
    let p = g.run_program().expect("run_cdb ran");
    let guest_dump = format!(r"{}\dumps\link.test.exe.77.dmp", g.guest_dir().display());
    assert!(p.contains(&format!("-z {guest_dump} -c")), "{p}");
}

#[test]
fn analyze_on_a_guest_without_cdb_names_the_fix() {
    let g = guest(None);
    g.harness()
        .args(["analyze", r"C:\dumps\link.dmp"])
        .assert()
        .failure()
        .stderr(
            predicate::str::contains("cdb.exe is not in the guest")
                .and(predicate::str::contains(
                    "winsdksetup.exe /features OptionId.WindowsDesktopDebuggers",
                ))
                .and(predicate::str::contains("[vm] debugging_tools")),
        );
    assert!(g.run_program().is_none(), "{:?}", g.programs());
}

#[test]
fn a_cdb_timeout_keeps_the_partial_text_and_fails() {
    let g = guest(Some(CDB));
    g.standin.on(
        "# debugger/run_cdb.ps1:",
        Reply::json(&json!({"exit_code": null, "timed_out": true, "output": "0:000> !analyze -v"})),
    );
    g.harness()
        .args(["analyze", r"C:\dumps\big.dmp", "--timeout", "3"])
        .assert()
        .failure()
        .stderr(
            predicate::str::contains("did not finish within 3 s")
                .and(predicate::str::contains("--timeout")),
        );
    let text = saved_in_results(g.dir.path(), "big.dmp.analyze.txt");
    assert!(
        text.starts_with("0:000> !analyze -v\n[harness: cdb did not finish within 3 s"),
        "{text}"
    );
}

#[test]
fn analyze_is_refused_on_a_linux_guest() {
    let d = tempfile::tempdir().unwrap();
    let cfg = d.path().join("harness.toml");
    std::fs::write(
        &cfg,
        "[vm]\nbackend = \"ssh\"\nos = \"linux\"\nhost = \"127.0.0.1\"\nport = 1\n",
    )
    .unwrap();
    common::isolated_harness(d.path())
        .arg("-c")
        .arg(&cfg)
        .args(["analyze", r"C:\x.dmp"])
        .assert()
        .failure()
        .stderr(predicate::str::contains("needs a Windows guest"));
}

#[test]
fn analyze_json_is_one_document_with_the_text() {
    let g = guest(Some(CDB));
    g.standin.on(
        "# debugger/run_cdb.ps1:",
        Reply::json(&json!({"exit_code": 0, "timed_out": false, "output": ANALYSIS})),
    );
    let out = g
        .harness()
        .args(["--json", "analyze", r"C:\dumps\link.dmp"])
        .assert()
        .success()
        .get_output()
        .stdout
        .clone();
    let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
    assert_eq!(v["output"], ANALYSIS);
    assert_eq!(v["exit_code"], 0);
    assert_eq!(v["timed_out"], false);
    assert!(
        v["saved"]
            .as_str()
            .unwrap()
            .ends_with("link.dmp.analyze.txt"),
        "{v}"
    );
}
