//! Crash forensics in a Windows guest by transcript: a real sshd whose ForceCommand is the
//! stand-in shell, which records each decoded PowerShell program and answers the forensics steps
//! from rules. What is asserted, for a passing guest (nothing to dump) and a failing one (dumps):
//! the steps run with the right arguments (`-Since`, `-Dir`, `-Root`), their JSON is parsed, the
//! dumps are fetched (or the failure to fetch is reported), and a timed-out command is dumped
//! before it is killed. Nothing here proves the scripts behave so on a real Windows guest.

use std::time::Duration;

use provision::forensics;
use provision::session::{Endpoint, GuestOs, RemoteCommand, Session, SessionOptions};
use serde_json::json;
use testsupport::sshd::{Sshd, SshdOptions};
use testsupport::standin::{Reply, Standin};

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

    fn program(&self, marker: &str) -> String {
        self.standin
            .transcript()
            .iter()
            .map(|e| e.text().to_string())
            .find(|t| t.contains(marker))
            .unwrap_or_else(|| panic!("{marker} did not run"))
    }
}

const SINCE: &str = "2026-03-01T10:00:00Z";

#[test]
fn a_passing_guest_has_no_new_dumps() {
    let g = guest();
    g.standin.on(
        "# forensics/list_dumps.ps1:",
        Reply::json(&json!({"dumps": [], "bugcheck": null})),
    );
    let mut s = g.session();
    let found = forensics::list_new(&mut s, SINCE).unwrap();
    assert!(
        found.dumps.is_empty() && found.bugcheck.is_none(),
        "{found:?}"
    );
    let p = g.program("# forensics/list_dumps.ps1:");
    assert!(p.contains(&format!("-Since '{SINCE}'")), "{p}");
    assert!(p.contains(r"-Dir 'C:\dumps'"), "{p}");
    let fetched = forensics::fetch(&mut s, &found.dumps, &g.tmp.path().join("dumps"));
    assert!(fetched.is_empty());
}

#[test]
fn a_crashed_guest_lists_its_dumps_and_bugcheck_and_they_are_fetched() {
    let g = guest();
    // A user-mode dump the stand-in's SFTP can serve (relative to its home), and the kernel
    // dump at its Windows path, which this Linux sshd does not have: reported, not hidden.
    std::fs::create_dir_all(g.standin.home().join("dumps")).unwrap();
    std::fs::write(
        g.standin.home().join("dumps/link.test.exe.1234.dmp"),
        b"MDMP",
    )
    .unwrap();
    g.standin.on(
        "# forensics/list_dumps.ps1:",
        Reply::json(&json!({
            "dumps": [
                {"path": r"C:\Windows\MEMORY.DMP", "bytes": 1024, "modified": "2026-03-01T10:05:00Z", "kind": "kernel"},
                {"path": "dumps/link.test.exe.1234.dmp", "bytes": 4, "modified": "2026-03-01T10:04:00Z", "kind": "user"}
            ],
            "bugcheck": "0x0000003b (0x00000000c0000005, 0xfffff80312345678, 0x0, 0x0)"
        })),
    );
    let mut s = g.session();
    let found = forensics::list_new(&mut s, SINCE).unwrap();
    assert_eq!(found.dumps.len(), 2);
    assert_eq!(
        found.bugcheck.as_deref(),
        Some("0x0000003b (0x00000000c0000005, 0xfffff80312345678, 0x0, 0x0)")
    );
    let dest = g.tmp.path().join("results/dumps");
    let fetched = forensics::fetch(&mut s, &found.dumps, &dest);
    let kernel = &fetched[0];
    assert!(kernel.local.is_none(), "{kernel:?}");
    assert!(
        kernel.error.as_deref().unwrap_or("").contains("MEMORY.DMP"),
        "{kernel:?}"
    );
    let user = &fetched[1];
    let local = user.local.as_ref().expect("the user dump was fetched");
    assert_eq!(local, &dest.join("user-link.test.exe.1234.dmp"));
    assert_eq!(std::fs::read(local).unwrap(), b"MDMP");
}

fn hung_command() -> RemoteCommand {
    RemoteCommand::script(r"& 'C:\harness\work\suite-x\hang.test.exe' '-test.v=test2json'")
        .timeout(Duration::from_secs(2))
        .dump_on_timeout()
}

#[test]
fn a_hung_test_binary_is_dumped_before_the_kill() {
    let g = guest();
    g.standin.on(
        "hang.test.exe",
        Reply::stdout("=== RUN   TestHangs\n").after(Duration::from_secs(60)),
    );
    g.standin.on(
        "# session/dump_hung.ps1:",
        Reply::json(&json!({"dumps": [
            {"pid": 4242, "name": "hang.test.exe", "path": r"C:\dumps\hung\hang.test.exe-4242-20260301T100000Z.dmp", "bytes": 52428800, "error": null}
        ]})),
    );
    let mut s = g.session();
    let mut lines = Vec::new();
    let err = s
        .exec(&hung_command(), &mut |_, l| lines.push(l.to_string()))
        .unwrap_err();
    assert!(
        err.to_string().contains("timed out") || format!("{err:?}").contains("Timeout"),
        "{err}"
    );
    let note = lines
        .iter()
        .find(|l| l.starts_with("harness: timed out after 2s"))
        .unwrap_or_else(|| panic!("no note in {lines:?}"));
    assert!(
        note.contains(r"hang.test.exe (pid 4242) → C:\dumps\hung\hang.test.exe-4242-20260301T100000Z.dmp (52428800 bytes)"),
        "{note}"
    );
    let p = g.program("# session/dump_hung.ps1:");
    assert!(p.contains(r"-Dir 'C:\dumps\hung'"), "{p}");
    assert!(p.contains("-Root '"), "the tree's root pid is passed: {p}");
    // The dump came before the kill.
    let t = g.standin.transcript();
    let dump = t
        .iter()
        .position(|e| e.text().contains("# session/dump_hung.ps1:"));
    let kill = t
        .iter()
        .position(|e| e.text().contains("taskkill.exe /T /F /PID"));
    assert!(dump.is_some() && kill.is_some() && dump < kill, "{t:?}");
}

#[test]
fn a_dump_that_fails_is_said_and_the_binary_is_still_killed() {
    let g = guest();
    g.standin.on(
        "hang.test.exe",
        Reply::stdout("").after(Duration::from_secs(60)),
    );
    g.standin.on(
        "# session/dump_hung.ps1:",
        Reply::json(&json!({"dumps": [
            {"pid": 4242, "name": "hang.test.exe", "path": r"C:\dumps\hung\x.dmp", "bytes": 0,
             "error": "MiniDump wrote no file (is the session elevated, with SeDebugPrivilege?)"}
        ]})),
    );
    let mut s = g.session();
    let mut lines = Vec::new();
    assert!(
        s.exec(&hung_command(), &mut |_, l| lines.push(l.to_string()))
            .is_err()
    );
    let note = lines
        .iter()
        .find(|l| l.starts_with("harness: timed out"))
        .unwrap_or_else(|| panic!("no note in {lines:?}"));
    assert!(
        note.contains("hang.test.exe (pid 4242): no dump: MiniDump wrote no file"),
        "{note}"
    );
    assert!(
        g.standin
            .transcript()
            .iter()
            .any(|e| e.text().contains("taskkill.exe /T /F /PID"))
    );
}
