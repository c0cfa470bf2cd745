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

/// The environment of a harness command isolated from the developer's config and state,
/// sharing the host's Go build cache so that builds stay fast.
fn isolated_env(dir: &Path) -> Vec<(String, String)> {
    let goroot_bin = PathBuf::from(go_env("GOROOT")).join("bin");
    let path = format!(
        "{}:{}",
        goroot_bin.display(),
        std::env::var("PATH").unwrap()
    );
    let d = |p: &str| dir.join(p).display().to_string();
    vec![
        ("PATH".into(), path),
        ("HOME".into(), dir.display().to_string()),
        ("GOCACHE".into(), go_env("GOCACHE")),
        ("GOMODCACHE".into(), go_env("GOMODCACHE")),
        ("GOFLAGS".into(), "-mod=mod".into()),
        ("XDG_CONFIG_HOME".into(), d("xdg-config")),
        ("HARNESS_STATE_DIR".into(), d("state")),
        ("HARNESS_CACHE_DIR".into(), d("cache")),
    ]
}

/// A harness command isolated from the developer's config and state.
fn harness(dir: &Path) -> Command {
    let mut c = Command::cargo_bin("harness").unwrap();
    c.current_dir(dir).env_clear().envs(isolated_env(dir));
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
        .stdout(predicate::str::contains("PASSED: 12 tests in 2 packages"));
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
fn one_line_totals_name_tests_that_never_ran() {
    // TestPanics kills the binary, so TestNeverRuns never starts: the one-line totals of
    // `test` and of `report merge` must count it, or they no longer add up to the tests.
    let d = tempfile::tempdir().unwrap();
    let cfg = config(d.path(), &["./panicky"]);
    harness(d.path())
        .args(["-c"])
        .arg(&cfg)
        .args(["test", "fx", "--local", "--rerun-fails", "0", "--out"])
        .arg(d.path().join("run"))
        .assert()
        .code(1)
        .stdout(predicate::str::contains(
            "3 tests in 1 packages: 1 passed, 1 failed, 0 skipped, 1 not run",
        ));
    harness(d.path())
        .args(["report", "merge", "--out"])
        .arg(d.path().join("merged"))
        .arg(d.path().join("run"))
        .assert()
        .code(1)
        .stdout(predicate::str::contains(
            "3 tests in 1 packages, 1 passed, 1 failed, 0 skipped, 1 not run, 0 flaky",
        ));
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

#[test]
fn progress_lines_on_a_non_terminal_and_timed_out_in_the_console() {
    let d = tempfile::tempdir().unwrap();
    let cfg = config(d.path(), &["./pass", "./hang"]);
    let text = std::fs::read_to_string(&cfg).unwrap().replace(
        "package_timeout = 60",
        "package_timeout = 4\nprogress_interval = 1",
    );
    std::fs::write(&cfg, text).unwrap();
    let out = harness(d.path())
        .args(["-c"])
        .arg(&cfg)
        .args(["test", "fx", "--local", "--rerun-fails", "0"])
        .assert()
        .code(1)
        .stdout(predicate::str::contains(format!(
            "--- TIMED OUT: package {}",
            gomod::pkg("hang")
        )))
        .get_output()
        .clone();
    let stderr = String::from_utf8_lossy(&out.stderr);
    let lines: Vec<&str> = stderr
        .lines()
        .filter(|l| l.starts_with('[') && l.contains("] fx: "))
        .collect();
    assert!(lines.len() >= 3, "a line every second: {stderr}");
    let mut unique = lines.clone();
    unique.dedup();
    assert_eq!(unique.len(), lines.len(), "never the same line twice");
    assert!(
        lines.iter().any(|l| l.contains("running: packages ")
            && l.contains(" passed, ")
            && l.contains(" failed, ")
            && l.contains("skipped · running TestHangs")),
        "done/total, counts and what runs now: {lines:#?}"
    );
}

#[test]
fn ctrl_c_exits_130_for_test_too() {
    let d = tempfile::tempdir().unwrap();
    let cfg = config(d.path(), &["./hang"]);
    let mut child = std::process::Command::new(assert_cmd::cargo::cargo_bin("harness"))
        .env_clear()
        .envs(isolated_env(d.path()))
        .current_dir(d.path())
        .arg("-c")
        .arg(&cfg)
        .args(["test", "fx", "--local", "--rerun-fails", "0"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Wait until the hanging test runs (the results dir gets the local target), then Ctrl-C.
    let started = std::time::Instant::now();
    let target = d.path().join("state/local-target/suite-fx/hang");
    while !target.exists() && started.elapsed() < std::time::Duration::from_secs(120) {
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    std::thread::sleep(std::time::Duration::from_secs(1));
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let status = child.wait().unwrap();
    assert_eq!(
        status.code(),
        Some(130),
        "interrupted is 130 for `test` as for `run`"
    );
}

#[test]
fn runs_and_merges_go_into_the_history_and_imports_count_once() {
    let d = tempfile::tempdir().unwrap();
    let cfg = config(d.path(), &["./pass", "./fail"]);
    for i in 1..=2 {
        harness(d.path())
            .args(["-c"])
            .arg(&cfg)
            .args(["test", "--local", "--rerun-fails", "0", "--shard"])
            .arg(format!("{i}/2"))
            .arg("--out")
            .arg(d.path().join(format!("shard{i}")))
            .assert()
            .stdout(predicate::str::contains("report: "));
    }
    harness(d.path())
        .args(["report", "merge"])
        .arg(d.path().join("shard1"))
        .arg(d.path().join("shard2"))
        .arg("--out")
        .arg(d.path().join("merged"))
        .assert()
        .code(1);
    let merged = d.path().join("merged");
    let index = std::fs::read_to_string(merged.join("index.html")).unwrap();
    assert!(index.contains(r#"href="history.html""#));
    let page = std::fs::read_to_string(merged.join("history.html")).unwrap();
    assert!(
        page.contains("History of <code>fx</code>: 1 runs"),
        "{page}"
    );
    assert!(d.path().join("state/history.sqlite").is_file());

    let history = |args: &[&str]| -> serde_json::Value {
        let out = harness(d.path())
            .args(["--json", "report", "history"])
            .args(args)
            .assert()
            .code(0)
            .get_output()
            .stdout
            .clone();
        serde_json::from_slice(&out).unwrap()
    };
    let doc = history(&["--since", "1d", "--suite", "fx"]);
    let runs = doc["report"]["runs"].as_array().unwrap();
    assert_eq!(runs.len(), 1, "the merged run stands for its shards: {doc}");
    let merged_id = runs[0]["id"].as_str().unwrap().to_string();

    let out = harness(d.path())
        .args(["--json", "report", "import"])
        .arg(d.path().join("shard1"))
        .arg(&merged)
        .arg(d.path().join("shard2"))
        .assert()
        .code(0)
        .get_output()
        .stdout
        .clone();
    let doc: serde_json::Value = serde_json::from_slice(&out).unwrap();
    for i in doc["imported"].as_array().unwrap() {
        assert_eq!(i["new"], false, "{i}");
    }
    assert_eq!(history(&[])["report"]["runs"][0]["id"], merged_id.as_str());
    assert_eq!(history(&[])["report"]["runs"].as_array().unwrap().len(), 1);

    harness(d.path())
        .args(["report", "history", "--since", "14"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains(
            "--since \"14\" is not a duration: it has no unit",
        ));
    harness(d.path())
        .args(["report", "history", "--suite", "fx"])
        .assert()
        .code(0)
        .stdout(predicate::str::contains("1 runs recorded of suite fx"));
    harness(d.path())
        .args(["report", "import"])
        .arg(d.path().join("fixture-state"))
        .assert()
        .code(2)
        .stderr(predicate::str::contains("holds no results folder"));
}
