//! `harness exec`, `harness cp`, `harness ssh` against a real sshd on loopback (`[vm] backend =
//! "ssh"`, Linux guest flavour). One sshd for this binary.

mod common;

use std::path::Path;
use std::sync::OnceLock;

use assert_cmd::Command;
use predicates::prelude::*;
use testsupport::sshd::Sshd;

fn sshd() -> &'static Sshd {
    static S: OnceLock<Sshd> = OnceLock::new();
    S.get_or_init(|| Sshd::start().expect("starting sshd"))
}

/// A harness command with an isolated config and state pointing at the test sshd.
fn harness(dir: &Path) -> Command {
    let s = sshd();
    let cfg = dir.join("harness.toml");
    std::fs::write(
        &cfg,
        format!(
            "[vm]\nbackend = \"ssh\"\nos = \"linux\"\nhost = \"127.0.0.1\"\nport = {}\nuser = \"{}\"\nidentity = \"{}\"\n",
            s.port(),
            s.user(),
            s.client_key().display()
        ),
    )
    .unwrap();
    let mut c = common::isolated_harness(dir);
    c.arg("-c").arg(&cfg);
    c
}

#[test]
fn exec_streams_output_and_exits_with_the_remote_status() {
    let d = tempfile::tempdir().unwrap();
    harness(d.path())
        .args([
            "exec",
            "--env",
            "GREETING=hi there",
            "--",
            "echo \"$GREETING\"; echo oops >&2; exit 3",
        ])
        .assert()
        .code(3)
        .stdout("hi there\n")
        .stderr(predicate::str::contains("oops"));
    harness(d.path())
        .args(["--json", "exec", "--cwd", "/", "pwd"])
        .assert()
        .success()
        .stdout(
            predicate::str::contains("\"exit_code\":0")
                .and(predicate::str::contains("\"stdout\":\"/\\n\"")),
        );
    // The host key was pinned in state, in OpenSSH format.
    let kh = std::fs::read_to_string(d.path().join("state/ssh/known_hosts")).unwrap();
    assert!(kh.contains(&sshd().host_public_key().unwrap()));
}

#[test]
fn exec_timeout_is_an_infrastructure_error() {
    let d = tempfile::tempdir().unwrap();
    harness(d.path())
        .args(["exec", "--timeout", "1", "--", "sleep 20"])
        .timeout(std::time::Duration::from_secs(15))
        .assert()
        .code(2)
        .stderr(predicate::str::contains("timed out"));
}

#[test]
fn cp_files_and_trees_both_ways() {
    let d = tempfile::tempdir().unwrap();
    let src = d.path().join("tree");
    std::fs::create_dir_all(src.join("sub")).unwrap();
    std::fs::write(src.join("sub/a.txt"), "alpha").unwrap();
    std::fs::write(src.join("b.bin"), vec![1u8; 70_000]).unwrap();
    let remote = d.path().join("remote");
    harness(d.path())
        .args([
            "--json",
            "cp",
            src.to_str().unwrap(),
            &format!("guest:{}", remote.display()),
        ])
        .assert()
        .success()
        .stdout(
            predicate::str::contains("\"files\":2")
                .and(predicate::str::contains("\"bytes\":70005")),
        );
    assert_eq!(
        std::fs::read_to_string(remote.join("sub/a.txt")).unwrap(),
        "alpha"
    );
    let back = d.path().join("back");
    harness(d.path())
        .args([
            "cp",
            &format!("guest:{}", remote.display()),
            back.to_str().unwrap(),
        ])
        .assert()
        .success();
    assert_eq!(
        std::fs::read(back.join("b.bin")).unwrap(),
        vec![1u8; 70_000]
    );
    // A single file into an existing directory keeps its name.
    harness(d.path())
        .args([
            "cp",
            &format!("guest:{}", remote.join("sub/a.txt").display()),
            d.path().to_str().unwrap(),
        ])
        .assert()
        .success();
    assert_eq!(
        std::fs::read_to_string(d.path().join("a.txt")).unwrap(),
        "alpha"
    );
    harness(d.path())
        .args(["cp", "guest:/nonexistent/x", "."])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("does not exist"));
    harness(d.path())
        .args(["cp", "a", "b"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("guest:PATH"));
}

#[test]
fn ssh_uses_the_pinned_host_key() {
    let d = tempfile::tempdir().unwrap();
    harness(d.path())
        .args(["ssh", "--", "echo", "from-ssh"])
        .timeout(std::time::Duration::from_secs(30))
        .assert()
        .success()
        .stdout("from-ssh\n");
    harness(d.path())
        .args(["ssh", "--print"])
        .assert()
        .success()
        .stdout(
            predicate::str::contains("StrictHostKeyChecking=yes")
                .and(predicate::str::contains("HostKeyAlgorithms=ssh-ed25519")),
        );
    // A different pinned key: harness refuses before ssh runs, and says how to accept.
    let kh = d.path().join("state/ssh/known_hosts");
    std::fs::write(
        &kh,
        format!("[127.0.0.1]:{} ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOtherKeyOtherKeyOtherKeyOtherKeyOtherKey\n", sshd().port()),
    )
    .unwrap();
    harness(d.path())
        .args(["ssh", "--", "true"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("--accept-new-host-key"));
    harness(d.path())
        .args(["ssh", "--accept-new-host-key", "--", "true"])
        .assert()
        .success();
}

#[test]
fn exec_shares_the_vm_lock_so_down_refuses_meanwhile() {
    let d = tempfile::tempdir().unwrap();
    let started = d.path().join("started");
    let release = d.path().join("release");
    // The "guest" is this host over loopback: the remote command can see these files.
    let script = format!(
        "touch {}; i=0; while [ ! -e {} ] && [ $i -lt 300 ]; do sleep 0.1; i=$((i+1)); done",
        started.display(),
        release.display()
    );
    let mut exec = harness(d.path());
    exec.args(["exec", "--", &script]);
    let running = std::thread::spawn(move || exec.assert().success());
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while !started.exists() {
        assert!(std::time::Instant::now() < deadline, "exec never started");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    // Another harness process that would stop the VM is refused, and told by whom.
    harness(d.path())
        .arg("down")
        .assert()
        .code(2)
        .stderr(predicate::str::contains("refusing to down"))
        .stderr(predicate::str::contains("harness"))
        .stderr(predicate::str::contains("exec"));
    // A second user shares the VM.
    harness(d.path())
        .args(["exec", "--", "true"])
        .assert()
        .success()
        .stderr(predicate::str::contains("in use").not());
    std::fs::write(&release, "").unwrap();
    running.join().unwrap();
    // Once exec is done, `down` is no longer refused (the ssh backend cannot stop a host).
    harness(d.path())
        .arg("down")
        .assert()
        .code(2)
        .stderr(predicate::str::contains("refusing").not())
        .stderr(predicate::str::contains("does not support"));
}

/// `harness test` in host mode over the guest session: the second run finds the test binaries
/// and testdata in the guest's upload store and sends nothing.
#[test]
fn test_over_ssh_twice_uploads_nothing_the_second_time() {
    let d = tempfile::tempdir().unwrap();
    let gocache = std::process::Command::new("go")
        .args(["env", "GOCACHE"])
        .output()
        .expect("go on PATH");
    let gocache = String::from_utf8(gocache.stdout).unwrap();
    // A suite name of its own: the guest's directories are shared by everything on this host.
    let suite = format!("cas{}", std::process::id());
    // The "guest" is this host: its suite folder goes when the test ends (the store stays shared).
    struct Tidy(String);
    impl Drop for Tidy {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(format!("/tmp/harness/suite-{}", self.0));
            let _ = std::fs::remove_file(format!("/tmp/harness/suite-{}.harness-tree", self.0));
        }
    }
    let _tidy = Tidy(suite.clone());
    let run = |n: u32| {
        let out = d.path().join(format!("out{n}"));
        let mut c = harness(d.path());
        // harness(…) writes the config with [vm] only: add the suite.
        let cfg = d.path().join("harness.toml");
        let vm = std::fs::read_to_string(&cfg).unwrap();
        std::fs::write(
            &cfg,
            format!(
                "{vm}\n[suites.{suite}]\npath = \"{}\"\npackages = [\"./pass\", \"./links\"]\nflags = [\"-count=1\"]\nmode = \"host\"\n",
                testsupport::gomod::path().display()
            ),
        )
        .unwrap();
        c.env("GOCACHE", gocache.trim())
            .args(["test", &suite, "--out"])
            .arg(&out)
            .timeout(std::time::Duration::from_secs(300))
            .assert()
            .success()
            .stdout(predicate::str::contains("timings: list"));
        let doc: serde_json::Value =
            serde_json::from_slice(&std::fs::read(out.join("summary.json")).unwrap()).unwrap();
        doc
    };
    // The guest's store is shared by every run on this host (the same binaries from an
    // earlier test run may already be there): the first run sends at most its whole tree.
    let cold = run(1);
    assert!(cold["uploaded_bytes"].as_u64().is_some(), "{cold}");
    assert!(cold["timings"]["upload"].as_f64().unwrap() >= 0.0, "{cold}");
    let warm = run(2);
    assert_eq!(warm["uploaded_bytes"], 0, "{}", warm["timings"]);
    assert_eq!(warm["totals"]["passed"], cold["totals"]["passed"]);
    assert_eq!(warm["totals"]["failed"], 0);
}
