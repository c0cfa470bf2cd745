//! `harness artifacts fetch|list|prune` against the GitHub stand-in, with an isolated config,
//! cache and token.

mod common;

use std::path::Path;

use assert_cmd::Command;
use predicates::prelude::*;
use testsupport::github::{GithubStandIn, RunSpec, efw_artifact_zip, efw_build_files, sha256_hex};

fn harness(dir: &Path, gh: &GithubStandIn) -> Command {
    let mut c = common::isolated_harness(dir);
    c.env("HARNESS_GITHUB_API_URL", gh.url())
        .env("GITHUB_TOKEN", gh.token());
    c
}

fn json(out: &[u8]) -> serde_json::Value {
    serde_json::from_slice(out).unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(out)))
}

#[test]
fn fetch_list_prune_round_trip() {
    let gh = GithubStandIn::start();
    let zip = efw_artifact_zip("Debug", &efw_build_files());
    gh.add_run(RunSpec::new(71));
    let id = gh.add_artifact_zip(71, "Build-x64-Debug", zip.clone());
    gh.add_run(RunSpec::new(72));
    gh.add_artifact_zip(
        72,
        "Build-x64-Debug",
        efw_artifact_zip("Debug", &efw_build_files()),
    );
    let d = tempfile::tempdir().unwrap();

    let out = harness(d.path(), &gh)
        .args(["artifacts", "fetch", "--source", "run:71", "--json"])
        .assert()
        .success();
    let b = json(&out.get_output().stdout);
    assert_eq!(b["run_id"], 71);
    assert_eq!(b["artifact_id"], id);
    assert_eq!(b["sha256"], sha256_hex(&zip));
    assert_eq!(b["size"], zip.len());
    assert_eq!(b["cached"], false);
    assert_eq!(b["repo"], "microsoft/ebpf-for-windows");
    assert!(b["head_sha"].as_str().is_some_and(|s| s.len() == 40));
    let path = b["path"].as_str().unwrap().to_string();
    assert!(Path::new(&path).join("setup-ebpf.ps1").is_file());
    assert!(path.starts_with(d.path().join("cache").to_str().unwrap()));
    let out_text = String::from_utf8_lossy(&out.get_output().stdout).into_owned();
    assert!(!out_text.contains(gh.token()));

    // Text output, cache hit, no bytes.
    harness(d.path(), &gh)
        .args(["artifacts", "fetch", "--source", "run:71"])
        .assert()
        .success()
        .stdout(predicate::str::contains(&path).and(predicate::str::contains("cached:  yes")));
    let bytes = gh.storage_bytes();
    assert_eq!(bytes, zip.len() as u64, "second fetch transferred nothing");

    harness(d.path(), &gh)
        .args(["artifacts", "fetch"])
        .assert()
        .success();
    let out = harness(d.path(), &gh)
        .args(["artifacts", "list", "--json"])
        .assert()
        .success();
    let list = json(&out.get_output().stdout);
    assert_eq!(list.as_array().unwrap().len(), 2);

    let out = harness(d.path(), &gh)
        .args(["artifacts", "prune", "--keep", "0", "--json"])
        .assert()
        .success();
    let p = json(&out.get_output().stdout);
    assert_eq!(p["removed"].as_array().unwrap().len(), 1, "{p}");
    assert_eq!(p["kept"], 1, "the newest build of the artifact is kept");
    harness(d.path(), &gh)
        .args(["artifacts", "list"])
        .assert()
        .success()
        .stdout(predicate::str::contains("run 72"));

    // Offline: no network needed; an unknown extension and a bad spec fail with exit 2.
    harness(d.path(), &gh)
        .args([
            "artifacts",
            "fetch",
            "--offline",
            "--api-url",
            "http://127.0.0.1:9",
        ])
        .assert()
        .success()
        .stderr(predicate::str::contains("offline mode"));
    harness(d.path(), &gh)
        .args(["artifacts", "fetch", "--source", "nightly"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("run:<id>"));
    harness(d.path(), &gh)
        .args(["artifacts", "fetch", "--extension", "nope"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("no extension \"nope\""));
}

#[test]
fn fetch_without_a_token_says_how_to_get_one() {
    let gh = GithubStandIn::start();
    gh.add_run(RunSpec::new(81));
    gh.add_artifact_zip(
        81,
        "Build-x64-Debug",
        efw_artifact_zip("Debug", &efw_build_files()),
    );
    let d = tempfile::tempdir().unwrap();
    // PATH without `gh`, so no token can be found at all.
    harness(d.path(), &gh)
        .env_remove("GITHUB_TOKEN")
        .env("PATH", "/nonexistent")
        .args(["artifacts", "fetch"])
        .assert()
        .code(2)
        .stderr(
            predicate::str::contains("Actions: read").and(predicate::str::contains("GITHUB_TOKEN")),
        );
    assert_eq!(gh.storage_bytes(), 0);
}
