//! `harness install` and `harness ext`: argument handling and the errors a user meets first.
//! (The install flow itself is tested in provision's tests against a real sshd.)

mod common;

use common::isolated_harness as harness;

use predicates::prelude::*;

#[test]
fn help_shows_install_and_ext_commands() {
    let d = tempfile::tempdir().unwrap();
    harness(d.path())
        .args(["install", "--help"])
        .assert()
        .success()
        .stdout(predicate::str::contains("--source").and(predicate::str::contains("--force")));
    harness(d.path())
        .args(["ext", "--help"])
        .assert()
        .success()
        .stdout(
            predicate::str::contains("install")
                .and(predicate::str::contains("remove"))
                .and(predicate::str::contains("list")),
        );
}

#[test]
fn unknown_extension_is_refused_before_connecting() {
    let d = tempfile::tempdir().unwrap();
    harness(d.path())
        .args(["ext", "install", "nosuch"])
        .assert()
        .code(2)
        .stderr(
            predicate::str::contains("no extension `nosuch`")
                .and(predicate::str::contains("ntosebpfext")),
        );
}

#[test]
fn a_directory_that_is_not_a_build_is_refused_before_connecting() {
    let d = tempfile::tempdir().unwrap();
    let not_build = d.path().join("not-a-build");
    std::fs::create_dir_all(&not_build).unwrap();
    std::fs::write(not_build.join("readme.txt"), "hello").unwrap();
    harness(d.path())
        .args([
            "install",
            "--source",
            &format!("file:{}", not_build.display()),
        ])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("fetching the efW build"))
        .stderr(predicate::str::contains("setup-ebpf.ps1"));
}

#[test]
fn unreachable_guest_gives_a_connect_error() {
    let d = tempfile::tempdir().unwrap();
    let build = d.path().join("build");
    std::fs::create_dir_all(&build).unwrap();
    std::fs::write(build.join("setup.sh"), "exit 0\n").unwrap();
    // A port nothing listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let cfg = d.path().join("harness.toml");
    std::fs::write(
        &cfg,
        format!("[vm]\nbackend = \"ssh\"\nos = \"linux\"\nhost = \"127.0.0.1\"\nport = {port}\nuser = \"nobody\"\n"),
    )
    .unwrap();
    harness(d.path())
        .args([
            "-c",
            cfg.to_str().unwrap(),
            "install",
            "--connect-timeout",
            "1",
            "--source",
            &format!("file:{}", build.display()),
        ])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("connecting to the guest"))
        .stderr(predicate::str::contains("Connection refused"));
}
