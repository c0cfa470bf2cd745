//! `harness test --local` and `harness report merge` on the fixture Go module, as a user runs
//! them: exit codes, the results folder, and shards merged back into one result.

use std::path::{Path, PathBuf};

use assert_cmd::Command;
use predicates::prelude::*;
use testsupport::gomod;

fn go_env(key: &str) -> String {
    let out = std::process::Command::new("go")
        .args(["env", key])
        .output()
        .expect("go on PATH");
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

/// A harness command isolated from the developer's config and state, sharing the host's Go
/// build cache so that builds stay fast.
fn harness(dir: &Path) -> Command {
    let goroot_bin = PathBuf::from(go_env("GOROOT")).join("bin");
    let path = format!(
        "{}:{}",
        goroot_bin.display(),
        std::env::var("PATH").unwrap()
    );
    let mut c = Command::cargo_bin("harness").unwrap();
    c.current_dir(dir)
        .env_clear()
        .env("PATH", path)
        .env("HOME", dir)
        .env("GOCACHE", go_env("GOCACHE"))
        .env("GOMODCACHE", go_env("GOMODCACHE"))
        .env("GOFLAGS", "-mod=mod")
        .env("XDG_CONFIG_HOME", dir.join("xdg-config"))
        .env("HARNESS_STATE_DIR", dir.join("state"))
        .env("HARNESS_CACHE_DIR", dir.join("cache"));
    c
}

fn config(dir: &Path, packages: &[&str]) -> PathBuf {
    let state = dir.join("fixture-state");
    std::fs::create_dir_all(&state).unwrap();
    let pkgs: Vec<String> = packages.iter().map(|p| format!("\"{p}\"")).collect();
    let text = format!(
        "[suites.fx]\npath = \"{}\"\npackages = [{}]\nflags = [\"-count=1\"]\npackage_timeout = 60\nrerun_fails = 1\nmode = \"host\"\n\n[suites.fx.env]\n{} = \"{}\"\n",
        gomod::path().display(),
        pkgs.join(", "),
        gomod::STATE_ENV,
        state.display()
    );
    let f = dir.join("harness.toml");
    std::fs::write(&f, text).unwrap();
    f
}

#[test]
fn test_passes_with_a_flaky_test_and_links_latest() {
    let d = tempfile::tempdir().unwrap();
    let cfg = config(d.path(), &["./pass", "./flaky", "./notests"]);
    harness(d.path())
        .args(["-c"])
        .arg(&cfg)
        .args(["test", "fx", "--local"])
        .assert()
        .code(0)
        .stdout(predicate::str::contains("Flaky").and(predicate::str::contains("TestFlaky")))
        .stdout(predicate::str::contains("PASSED: 12 tests in 3 packages"));
    let latest = d.path().join("state/results/latest");
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(latest.join("summary.json")).unwrap())
            .unwrap();
    assert_eq!(summary["exit_code"], 0);
    assert_eq!(summary["totals"]["flaky"], 1);
    assert!(latest.join("junit.xml").is_file() && latest.join("events.jsonl").is_file());
}

#[test]
fn failures_exit_1_and_json_output() {
    let d = tempfile::tempdir().unwrap();
    let cfg = config(d.path(), &["./fail", "./skip"]);
    let out = harness(d.path())
        .args(["--json", "-c"])
        .arg(&cfg)
        .args(["test", "--local", "--rerun-fails", "0", "--out"])
        .arg(d.path().join("out"))
        .assert()
        .code(1)
        .get_output()
        .stdout
        .clone();
    let doc: serde_json::Value = serde_json::from_slice(&out).unwrap();
    assert_eq!(doc["exit_code"], 1);
    assert_eq!(doc["suites"][0]["summary"]["totals"]["failed"], 3);
    assert!(d.path().join("out/junit.xml").is_file());
}

#[test]
fn shards_then_report_merge() {
    let d = tempfile::tempdir().unwrap();
    let cfg = config(d.path(), &["./pass", "./skip", "./fail"]);
    for i in 1..=2 {
        let code = harness(d.path())
            .args(["-c"])
            .arg(&cfg)
            .args([
                "test",
                "--local",
                "--rerun-fails",
                "0",
                "--shard",
                &format!("{i}/2"),
                "--out",
            ])
            .arg(d.path().join(format!("shard{i}")))
            .assert()
            .get_output()
            .status
            .code();
        assert!(matches!(code, Some(0 | 1)), "shard {i}: {code:?}");
    }
    harness(d.path())
        .args(["report", "merge"])
        .arg(d.path().join("shard1"))
        .arg(d.path().join("shard2"))
        .arg("--out")
        .arg(d.path().join("merged"))
        .assert()
        .code(1)
        .stdout(predicate::str::contains("17 tests in 3 packages"));
    harness(d.path())
        .args(["report", "merge", "--out"])
        .arg(d.path().join("x"))
        .arg(d.path().join("missing"))
        .assert()
        .code(2)
        .stderr(predicate::str::contains("summary.json"));
}

#[test]
fn unknown_suite_and_bad_shard_are_clear_errors() {
    let d = tempfile::tempdir().unwrap();
    let cfg = config(d.path(), &["./pass"]);
    harness(d.path())
        .args(["-c"])
        .arg(&cfg)
        .args(["test", "nope", "--local"])
        .assert()
        .code(2)
        .stderr(
            predicate::str::contains("no suite named `nope`").and(predicate::str::contains("fx")),
        );
    harness(d.path())
        .args(["-c"])
        .arg(&cfg)
        .args(["test", "--local", "--shard", "3/2"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("1 ≤ I ≤ N"));
}

#[test]
fn go_and_the_tests_do_not_inherit_the_github_token() {
    let d = tempfile::tempdir().unwrap();
    let module = d.path().join("leak");
    std::fs::create_dir_all(&module).unwrap();
    std::fs::write(
        module.join("go.mod"),
        "module harness.test/leak\n\ngo 1.21\n",
    )
    .unwrap();
    std::fs::write(
        module.join("leak_test.go"),
        "package leak\n\nimport (\n\t\"os\"\n\t\"testing\"\n)\n\n\
         func TestNoToken(t *testing.T) {\n\
         \tfor _, v := range []string{\"GITHUB_TOKEN\", \"GH_TOKEN\"} {\n\
         \t\tif os.Getenv(v) != \"\" {\n\t\t\tt.Fatalf(\"%s leaked into the test\", v)\n\t\t}\n\t}\n}\n",
    )
    .unwrap();
    std::fs::write(
        d.path().join("harness.toml"),
        format!(
            "[suites.leak]\npath = \"{}\"\npackages = [\"./...\"]\nrerun_fails = 0\nmode = \"host\"\n",
            module.display()
        ),
    )
    .unwrap();
    harness(d.path())
        .env("GITHUB_TOKEN", "ghp_not_for_go")
        .env("GH_TOKEN", "gho_not_for_go")
        .args(["test", "--local"])
        .assert()
        .success()
        .stdout(predicates::str::contains("1 passed"));
}
