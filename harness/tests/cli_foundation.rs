//! The foundation commands, run as a new user would: --help, config check/show, doctor, completions.

mod common;

use common::isolated_harness as harness;

use predicates::prelude::*;

#[test]
fn help_lists_commands_and_global_options() {
    let d = tempfile::tempdir().unwrap();
    harness(d.path())
        .arg("--help")
        .assert()
        .success()
        .stdout(predicate::str::contains("doctor").and(predicate::str::contains("--config")))
        .stdout(predicate::str::contains("--json"));
    harness(d.path())
        .args(["config", "--help"])
        .assert()
        .success()
        .stdout(predicate::str::contains("show").and(predicate::str::contains("check")));
}

#[test]
fn config_check_accepts_defaults_and_a_good_file() {
    let d = tempfile::tempdir().unwrap();
    harness(d.path())
        .args(["config", "check"])
        .assert()
        .success()
        .stdout(predicate::str::contains("config ok: built-in defaults"));
    std::fs::write(d.path().join("harness.toml"), "[vm]\ncpus = 2\n").unwrap();
    harness(d.path())
        .args(["config", "check"])
        .assert()
        .success()
        .stdout(predicate::str::contains("harness.toml"));
}

#[test]
fn config_typo_gets_line_column_key_and_suggestion() {
    let d = tempfile::tempdir().unwrap();
    let f = d.path().join("typo.toml");
    std::fs::write(
        &f,
        "[efw]\nsource = \"main\"\nartefact = \"Build-x64-Debug\"\n",
    )
    .unwrap();
    harness(d.path())
        .arg("-c")
        .arg(&f)
        .args(["config", "check"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains(
            "typo.toml:3:1: unknown field `artefact`",
        ))
        .stderr(predicate::str::contains("did you mean `artifact`?"))
        .stderr(predicate::str::contains("(key `efw.artefact`)"));
}

#[test]
fn config_wrong_type_gets_line_column() {
    let d = tempfile::tempdir().unwrap();
    let f = d.path().join("type.toml");
    std::fs::write(&f, "[vm]\nmemory_mib = \"8G\"\n").unwrap();
    harness(d.path())
        .arg("-c")
        .arg(&f)
        .args(["config", "check"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains(
            "type.toml:2:14: invalid type: string \"8G\", expected u32",
        ));
}

#[test]
fn config_check_reports_cross_key_errors() {
    let d = tempfile::tempdir().unwrap();
    std::fs::write(d.path().join("harness.toml"), "[vm]\nbackend = \"ssh\"\n").unwrap();
    harness(d.path())
        .args(["config", "check"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("vm.port"));
}

#[test]
fn config_show_names_origins_and_masks_the_token() {
    let d = tempfile::tempdir().unwrap();
    std::fs::write(d.path().join("harness.toml"), "[vm]\ncpus = 3\n").unwrap();
    let out = harness(d.path())
        .env("HARNESS_VM_MEMORY_MIB", "2048")
        .env("GITHUB_TOKEN", "ghp_very_secret_value")
        .args(["--set", "efw.source=release:1.0.0", "config", "show"])
        .assert()
        .success()
        .get_output()
        .stdout
        .clone();
    let out = String::from_utf8(out).unwrap();
    assert!(!out.contains("ghp_very_secret_value"), "{out}");
    assert!(out.contains("github.token = \"***\""), "{out}");
    let line = |k: &str| {
        out.lines()
            .find(|l| l.starts_with(k))
            .unwrap_or_else(|| panic!("{k} in {out}"))
            .to_string()
    };
    assert!(line("vm.cpus = 3").contains("# file "), "{out}");
    assert!(
        line("vm.memory_mib = 2048").contains("# env HARNESS_VM_MEMORY_MIB"),
        "{out}"
    );
    assert!(
        line("efw.source = \"release:1.0.0\"").contains("# flag --set efw.source"),
        "{out}"
    );
    assert!(
        !line("efw.repo").contains('#'),
        "defaults carry no origin note"
    );

    let json = harness(d.path())
        .env("GITHUB_TOKEN", "ghp_very_secret_value")
        .args(["--json", "config", "show"])
        .assert()
        .success()
        .get_output()
        .stdout
        .clone();
    let v: serde_json::Value = serde_json::from_slice(&json).unwrap();
    assert_eq!(v["github_token"]["value"], "***");
    assert!(!String::from_utf8_lossy(&json).contains("ghp_very"));
    let cpus = v["values"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["key"] == "vm.cpus")
        .unwrap();
    assert_eq!(cpus["value"], 3);
}

#[test]
fn doctor_runs_for_real_and_speaks_json() {
    let d = tempfile::tempdir().unwrap();
    // A Linux guest over the ssh backend needs neither qemu nor a token: doctor must pass.
    std::fs::write(
        d.path().join("harness.toml"),
        "[vm]\nbackend = \"ssh\"\nos = \"linux\"\nport = 22\n[efw]\nsource = \"file:/x.zip\"\n[extensions]\n",
    )
    .unwrap();
    let out = harness(d.path())
        .args(["--json", "doctor"])
        .assert()
        .success()
        .get_output()
        .stdout
        .clone();
    let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
    assert_eq!(v["ok"], true);
    let names: Vec<_> = v["checks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap().to_string())
        .collect();
    for n in [
        "qemu",
        "kvm",
        "tcg",
        "ovmf",
        "swtpm",
        "xorriso",
        "ssh-key",
        "github-token",
        "go",
        "disk",
    ] {
        assert!(names.contains(&n.to_string()), "{n} missing from {names:?}");
    }
    // The default job (qemu backend, CI artifacts) without a token: exit 2 with the fix.
    std::fs::remove_file(d.path().join("harness.toml")).unwrap();
    harness(d.path()).arg("doctor").assert().code(2).stdout(
        predicate::str::contains("github-token").and(predicate::str::contains("Actions: read")),
    );
}

#[test]
fn completions_for_bash() {
    let d = tempfile::tempdir().unwrap();
    harness(d.path())
        .args(["completions", "bash"])
        .assert()
        .success()
        .stdout(predicate::str::contains("_harness()"));
}

#[test]
fn missing_explicit_config_is_a_clear_error() {
    let d = tempfile::tempdir().unwrap();
    harness(d.path())
        .args(["-c", "nope.toml", "config", "show"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("nope.toml does not exist"));
}

#[test]
fn explain_answers_for_each_notation_without_a_config() {
    let d = tempfile::tempdir().unwrap();
    // A broken config must not stand in the way of reading an error code.
    std::fs::write(d.path().join("harness.toml"), "[vm\n").unwrap();
    harness(d.path())
        .args([
            "explain",
            "Errno(119)",
            "-22",
            "EBPF_NO_MEMORY",
            "0x80070490",
        ])
        .assert()
        .success()
        .stdout(predicate::str::contains(
            "Errno(119): errno 119 is ENOBUFS in Windows' errno.h (Linux's ENOBUFS is 105)",
        ))
        .stdout(predicate::str::contains("EBPF_INSUFFICIENT_BUFFER"))
        .stdout(predicate::str::contains("-22: errno 22 is EINVAL"))
        .stdout(predicate::str::contains(
            "errno ENOMEM (12 on Windows, 12 on Linux)",
        ))
        .stdout(predicate::str::contains(
            "0x80070490: Win32 error 1168 (0x490) is ERROR_NOT_FOUND",
        ));
    let out = harness(d.path())
        .args(["--json", "explain", "12", "bogus"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains(
            "`bogus` is not a code harness knows",
        ))
        .get_output()
        .stdout
        .clone();
    let doc: serde_json::Value = serde_json::from_slice(&out).unwrap();
    let kinds: Vec<&str> = doc["codes"][0]["explanations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["kind"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["errno", "ebpf_result"]);
    assert!(doc["codes"][1]["error"].is_string(), "{doc}");
}

#[test]
fn config_check_rejects_zero_timeouts_and_a_linux_tpm() {
    let d = tempfile::tempdir().unwrap();
    std::fs::write(
        d.path().join("harness.toml"),
        "[vm]\nos = \"linux\"\nkernel = \"/k\"\ninitrd = \"/i\"\ntpm = true\nboot_timeout = 0\n\
         [suites.s]\npackages = [\"./...\"]\npackage_timeout = 0\n",
    )
    .unwrap();
    let out = harness(d.path())
        .args(["config", "check"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("vm.boot_timeout"))
        .stderr(predicate::str::contains("suites.s.package_timeout"))
        .stderr(predicate::str::contains("vm.tpm"))
        .stderr(predicate::str::contains(
            "only supported for os = \"windows\"",
        ))
        .stderr(predicate::str::contains("config has 3 error(s)"));
    let text = String::from_utf8_lossy(&out.get_output().stderr).to_string();
    assert!(text.contains("expire at once"), "{text}");
}

#[test]
fn config_with_several_errors_shows_them_all_in_order() {
    let d = tempfile::tempdir().unwrap();
    let f = d.path().join("bad.toml");
    std::fs::write(
        &f,
        "[vm]\ncpus = \"four\"\nmemroy_mib = 1\n[efw]\nartefact = \"x\"\n",
    )
    .unwrap();
    let out = harness(d.path())
        .arg("-c")
        .arg(&f)
        .args(["config", "check"])
        .assert()
        .code(2);
    let err = String::from_utf8_lossy(&out.get_output().stderr).to_string();
    let at = |needle: &str| {
        err.find(needle)
            .unwrap_or_else(|| panic!("{needle:?} missing from:\n{err}"))
    };
    let (a, b, c) = (
        at("bad.toml:2:8: invalid type"),
        at("bad.toml:3:1: unknown field `memroy_mib`"),
        at("bad.toml:5:1: unknown field `artefact`"),
    );
    assert!(a < b && b < c, "not in file order:\n{err}");
}

#[test]
fn config_dir_is_named_a_directory() {
    let d = tempfile::tempdir().unwrap();
    harness(d.path())
        .arg("-c")
        .arg(d.path())
        .args(["config", "check"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("is a directory"))
        .stderr(predicate::str::contains("does not exist").not());
}

#[test]
fn config_errors_are_json_with_json() {
    let d = tempfile::tempdir().unwrap();
    let f = d.path().join("bad.toml");
    std::fs::write(&f, "[vm]\ncpus = \"four\"\nmemroy_mib = 1\n").unwrap();
    let out = harness(d.path())
        .arg("-c")
        .arg(&f)
        .args(["--json", "config", "check"])
        .assert()
        .code(2);
    let doc: serde_json::Value = serde_json::from_slice(&out.get_output().stdout)
        .unwrap_or_else(|e| panic!("{e}: {:?}", out.get_output()));
    assert_eq!(doc["ok"], false);
    let problems = doc["problems"].as_array().unwrap();
    assert_eq!(problems.len(), 2, "{doc}");
    assert_eq!(problems[0]["key"], "vm.cpus");
    assert_eq!(problems[0]["line"], 2);
    assert_eq!(problems[1]["key"], "vm.memroy_mib");
    assert_eq!(problems[1]["column"], 1);

    // A missing file is a JSON document too.
    let out = harness(d.path())
        .args(["-c", "nope.toml", "--json", "config", "check"])
        .assert()
        .code(2);
    let doc: serde_json::Value = serde_json::from_slice(&out.get_output().stdout).unwrap();
    assert_eq!(doc["ok"], false);
    assert!(
        doc["problems"][0]["message"]
            .as_str()
            .unwrap()
            .contains("does not exist"),
        "{doc}"
    );
}

#[test]
fn a_cause_is_printed_once() {
    // The state directory is a file: opening the VM lock fails with an I/O error whose text the
    // library's message already includes.
    let d = tempfile::tempdir().unwrap();
    let state = d.path().join("state-file");
    std::fs::write(&state, "not a directory").unwrap();
    let out = harness(d.path())
        .env("HARNESS_STATE_DIR", &state)
        .args(["down"])
        .assert()
        .code(2);
    let err = String::from_utf8_lossy(&out.get_output().stderr).to_string();
    assert_eq!(err.matches("Not a directory").count(), 1, "{err}");
}
