//! The runner through a real SSH connection (system `ssh` against `testsupport::sshd` on
//! loopback), in both modes, with a remote per-package timeout.

#[path = "support/ssh_exec.rs"]
mod ssh_exec;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::OnceLock;

use ssh_exec::SshCliExecutor;
use suites::{Provenance, Quiet, RunMode, RunOptions, SuiteConfig, Verdict};
use testsupport::gomod;
use testsupport::sshd::Sshd;

fn sshd() -> &'static Sshd {
    static S: OnceLock<Sshd> = OnceLock::new();
    S.get_or_init(|| Sshd::start().expect("sshd starts"))
}

fn go_bin_dir() -> String {
    let out = std::process::Command::new("go")
        .args(["env", "GOROOT"])
        .output()
        .expect("go on PATH");
    format!("{}/bin", String::from_utf8(out.stdout).unwrap().trim())
}

fn run_over_ssh(mode: RunMode) -> (suites::Summary, PathBuf, tempfile::TempDir) {
    let tmp = tempfile::tempdir().unwrap();
    let (s, dir) = run_in(mode, tmp.path());
    (s, dir, tmp)
}

/// One run whose target directory (and upload store) is under `tmp`.
fn run_in(mode: RunMode, tmp: &std::path::Path) -> (suites::Summary, PathBuf) {
    // The flaky package fails once per state directory: a fresh one per run.
    let state_dir = tempfile::tempdir_in(tmp).unwrap();
    let state = state_dir.path();
    let suite = SuiteConfig {
        path: Some(gomod::path()),
        packages: ["./pass", "./flaky", "./hang", "./panicky"]
            .map(String::from)
            .to_vec(),
        flags: vec!["-count=1".into()],
        env: BTreeMap::from([(gomod::STATE_ENV.to_string(), state.display().to_string())]),
        package_timeout: 3,
        rerun_fails: 1,
        mode,
        ..SuiteConfig::default()
    };
    let opts = RunOptions::new("ssh", suite, gomod::path());
    let path = format!("{}:/usr/local/bin:/usr/bin:/bin", go_bin_dir());
    let mut exec = SshCliExecutor::from_command(
        &sshd().ssh_command().unwrap(),
        &tmp.join("remote").display().to_string(),
        vec![("PATH".into(), path)],
        tmp,
    );
    let rec = suites::run(&mut exec, &opts, &mut Quiet).unwrap();
    let dir = suites::new_run_dir(&tmp.join("results"), "ssh").unwrap();
    let w = suites::write(&dir, &rec, &Provenance::default()).unwrap();
    (w.summary, dir)
}

fn check(s: &suites::Summary) {
    for p in &s.packages {
        assert!(p.error.is_none(), "{}: {:?}", p.name, p.error);
    }
    let t = &s.totals;
    // pass 10 + flaky 2 + hang 2 + panicky 3; TestHangs and TestPanics fail twice;
    // TestNeverRuns is listed but never runs (TestPanics kills the binary).
    assert_eq!(
        (t.tests, t.passed, t.failed, t.flaky, t.attempts, t.not_run),
        (17, 14, 2, 1, 20, 1),
        "{t:?}"
    );
    assert_eq!(s.verdict, Verdict::Failed);
    let hang = s
        .packages
        .iter()
        .find(|p| p.name == gomod::pkg("hang"))
        .unwrap();
    assert!(hang.timed_out);
}

/// The sub-phase times and bytes sent are in summary.json, plausible, and inside the run.
fn check_timings(s: &suites::Summary, dir: &std::path::Path, names: &[&str]) {
    let doc: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("summary.json")).unwrap()).unwrap();
    let timings = doc["timings"].as_object().expect("timings in summary.json");
    for n in names {
        let v = timings
            .get(*n)
            .and_then(|v| v.as_f64())
            .unwrap_or_else(|| panic!("no `{n}` in {timings:?}"));
        assert!(
            (0.0..=s.run.duration_secs + 0.01).contains(&v),
            "{n} = {v}, run took {}",
            s.run.duration_secs
        );
    }
    // The hang package alone runs into its 3 s timeout twice (run and rerun).
    assert!(timings["run"].as_f64().unwrap() >= 3.0, "{timings:?}");
    assert!(timings["rerun"].as_f64().unwrap() >= 3.0, "{timings:?}");
    let bytes = doc["uploaded_bytes"].as_u64().expect("uploaded_bytes");
    assert!(bytes > 0 && bytes == s.uploaded_bytes, "{bytes}");
}

#[test]
fn host_mode_over_ssh() {
    let (s, dir, _t) = run_over_ssh(RunMode::Host);
    check(&s);
    check_timings(&s, &dir, &["list", "build", "upload", "run", "rerun"]);
    // Four test binaries of a few MB each went over the wire.
    assert!(s.uploaded_bytes > 4_000_000, "{}", s.uploaded_bytes);
}

#[test]
fn guest_mode_over_ssh() {
    let (s, dir, _t) = run_over_ssh(RunMode::Guest);
    check(&s);
    check_timings(&s, &dir, &["list", "upload", "run", "rerun"]);
}

/// A second run on the same target finds every binary, testdata file and source file in the
/// target's store and sends nothing; the tests run as before.
fn warm_run_sends_nothing(mode: RunMode) {
    let tmp = tempfile::tempdir().unwrap();
    let (cold, _) = run_in(mode, tmp.path());
    check(&cold);
    assert!(cold.uploaded_bytes > 0);
    let (warm, dir) = run_in(mode, tmp.path());
    check(&warm);
    assert_eq!(warm.uploaded_bytes, 0, "{mode:?}: {:?}", warm.timings);
    let doc: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("summary.json")).unwrap()).unwrap();
    assert_eq!(doc["uploaded_bytes"], 0);
    assert!(doc["timings"]["upload"].as_f64().unwrap() >= 0.0);
}

#[test]
fn host_mode_warm_run_sends_nothing() {
    warm_run_sends_nothing(RunMode::Host);
}

#[test]
fn guest_mode_warm_run_sends_nothing() {
    warm_run_sends_nothing(RunMode::Guest);
}

/// Host mode pipelines build → upload → run: the first packages' tests start (by test2json's
/// clock) before the last binary is built, and the sub-phase spans overlap. The last build is
/// held until the first tests have begun, so that a loaded machine cannot reorder them.
#[test]
fn host_mode_runs_while_it_still_builds() {
    use suites::event::Action;
    let tmp = tempfile::tempdir().unwrap();
    let state = tmp.path().join("state");
    std::fs::create_dir_all(&state).unwrap();
    let pkgs = [
        "./pass",
        "./skip",
        "./bigout",
        "./links",
        "./fail",
        "./tracelog",
        "./flaky",
    ];
    let suite = SuiteConfig {
        path: Some(gomod::path()),
        packages: pkgs.map(String::from).to_vec(),
        flags: vec!["-count=1".into()],
        env: BTreeMap::from([(gomod::STATE_ENV.to_string(), state.display().to_string())]),
        package_timeout: 60,
        mode: RunMode::Host,
        ..SuiteConfig::default()
    };
    let mut opts = RunOptions::new("pipe", suite, gomod::path());
    // A `go` that holds the last package's build until the first package's tests have begun
    // (at most 60 s): with a pipeline that overlaps, the order below is certain; without one,
    // the build goes on after the wait and the order check fails.
    let go = tmp.path().join("go");
    std::fs::write(
        &go,
        format!(
            "#!/bin/sh\ncase \"$*\" in *\" -c \"*/flaky)\n  i=0\n  while [ ! -e '{marker}' ] && [ $i -lt 600 ]; do sleep 0.1; i=$((i+1)); done;;\nesac\nexec '{bin}/go' \"$@\"\n",
            marker = state.join("pass-started").display(),
            bin = go_bin_dir(),
        ),
    )
    .unwrap();
    std::fs::set_permissions(&go, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    opts.host_go = go.display().to_string();
    let path = format!("{}:/usr/local/bin:/usr/bin:/bin", go_bin_dir());
    let mut exec = SshCliExecutor::from_command(
        &sshd().ssh_command().unwrap(),
        &tmp.path().join("remote").display().to_string(),
        vec![("PATH".into(), path)],
        tmp.path(),
    );
    let mut last_built = None;
    let mut first_run: Option<String> = None;
    let mut obs = |ev: &suites::RunEvent<'_>, _: &suites::Execution| match ev {
        suites::RunEvent::Built { .. } => last_built = Some(time::OffsetDateTime::now_utc()),
        suites::RunEvent::Event(e) if e.action == Action::Run && first_run.is_none() => {
            first_run = e.time.clone()
        }
        _ => {}
    };
    let rec = suites::run(&mut exec, &opts, &mut obs).unwrap();
    let first_run = time::OffsetDateTime::parse(
        &first_run.expect("tests ran"),
        &time::format_description::well_known::Rfc3339,
    )
    .unwrap();
    let last_built = last_built.expect("binaries were built");
    assert!(
        first_run < last_built,
        "the first test started at {first_run}, after the last build ended at {last_built}"
    );
    let t = &rec.meta.timings;
    assert!(
        t["build"] > 0.0 && t["upload"] > 0.0 && t["run"] > 0.0,
        "{t:?}"
    );
    let passed = rec.execution.totals().passed;
    assert!(passed >= 10, "{passed}");
}
