//! Results that match the truth (issue 13): symlinked testdata reaches the target, flags go only
//! to binaries that define them, a rerun that cannot start is a counted attempt, dangling links
//! are reported. Runs the fixture Go module through the local executor.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use suites::exec::{ExecError, ExecOutcome, ExecRequest, Executor, Stream, TargetOs, UploadFilter};
use suites::model::Outcome;
use suites::{LocalExecutor, Quiet, RunMode, RunOptions, RunRecord, SuiteConfig, Verdict};
use testsupport::gomod;

fn suite(mode: RunMode, packages: &[&str], reruns: u32, state: &Path) -> SuiteConfig {
    SuiteConfig {
        path: Some(gomod::path()),
        packages: packages.iter().map(|s| s.to_string()).collect(),
        flags: vec!["-count=1".into()],
        env: BTreeMap::from([(gomod::STATE_ENV.to_string(), state.display().to_string())]),
        package_timeout: 30,
        rerun_fails: reruns,
        mode,
        ..SuiteConfig::default()
    }
}

fn run(exec: &mut dyn Executor, opts: &RunOptions) -> RunRecord {
    suites::run(exec, opts, &mut Quiet).expect("run starts")
}

/// Every attempt's outcome and output of one test.
fn attempts(rec: &RunRecord, pkg: &str, test: &str) -> Vec<(Outcome, String)> {
    rec.execution
        .package(&gomod::pkg(pkg))
        .and_then(|p| p.test(test))
        .map(|t| {
            t.attempts
                .iter()
                .map(|a| {
                    let mut text = a.output.clone();
                    text.push_str(a.synthesized.as_deref().unwrap_or(""));
                    (a.outcome, text)
                })
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn trace_log_on_rerun_is_not_passed_on_linux_and_both_defaults_agree() {
    assert!(
        SuiteConfig::default().trace_log_on_rerun && SuiteConfig::default().rerun_fails == 1,
        "a suite from a user's file gets the built-in suite's defaults"
    );
    for mode in [RunMode::Host, RunMode::Guest] {
        let tmp = tempfile::tempdir().unwrap();
        let mut s = suite(mode, &["./flaky", "./tracelog"], 1, tmp.path());
        s.trace_log_on_rerun = true;
        let opts = RunOptions::new("tl", s, gomod::path());
        let rec = run(&mut LocalExecutor::new(tmp.path().join("t")), &opts);
        let flaky = attempts(&rec, "flaky", "TestFlaky");
        assert_eq!(
            flaky.iter().map(|a| a.0).collect::<Vec<_>>(),
            [Outcome::Fail, Outcome::Pass],
            "{mode:?}: the rerun of a package without -trace-log runs: {flaky:?}"
        );
        let tl = attempts(&rec, "tracelog", "TestTraceLog");
        assert_eq!(tl.len(), 2, "{mode:?}: {tl:?}");
        assert!(
            tl[1].1.contains("trace-log=false"),
            "{mode:?}: -trace-log is for Windows targets only: {tl:?}"
        );
        assert_eq!(rec.execution.verdict(), Verdict::Passed, "{mode:?}");
    }
}

#[test]
fn a_pass_through_flag_goes_only_to_binaries_that_define_it() {
    let tmp = tempfile::tempdir().unwrap();
    let mut opts = RunOptions::new(
        "pt",
        suite(RunMode::Host, &["./flaky", "./tracelog"], 1, tmp.path()),
        gomod::path(),
    );
    opts.extra_args = vec!["-trace-log".into()];
    let rec = run(&mut LocalExecutor::new(tmp.path().join("t")), &opts);
    let tl = attempts(&rec, "tracelog", "TestTraceLog");
    assert!(
        tl.len() == 2 && tl.iter().all(|a| a.1.contains("trace-log=true")),
        "the binary that defines the flag gets it, in the run and the rerun: {tl:?}"
    );
    let flaky = attempts(&rec, "flaky", "TestFlaky");
    assert_eq!(
        flaky.iter().map(|a| a.0).collect::<Vec<_>>(),
        [Outcome::Fail, Outcome::Pass],
        "{flaky:?}"
    );
    assert!(
        rec.other_output.iter().any(|l| l.contains(&format!(
            "{} does not define -trace-log",
            gomod::pkg("flaky")
        ))),
        "{:?}",
        rec.other_output
    );
    assert_eq!(rec.execution.verdict(), Verdict::Passed);
}

/// The local machine, but a run whose argv contains `refuse` cannot start.
struct Refusing {
    inner: LocalExecutor,
    refuse: String,
}

impl Executor for Refusing {
    fn os(&self) -> TargetOs {
        self.inner.os()
    }
    fn run(
        &mut self,
        req: &ExecRequest,
        on_line: &mut dyn FnMut(Stream, &[u8]),
    ) -> Result<ExecOutcome, ExecError> {
        if req.argv.iter().any(|a| a.contains(&self.refuse)) {
            return Err(ExecError::Spawn {
                program: req.argv[0].clone(),
                detail: "refused by the test".into(),
            });
        }
        self.inner.run(req, on_line)
    }
    fn upload_tree(
        &mut self,
        local: &Path,
        remote: &str,
        skip: UploadFilter<'_>,
    ) -> Result<(), ExecError> {
        self.inner.upload_tree(local, remote, skip)
    }
    fn remote_dir(&self, name: &str) -> String {
        self.inner.remote_dir(name)
    }
}

#[test]
fn a_rerun_that_cannot_start_is_a_counted_harness_error() {
    let tmp = tempfile::tempdir().unwrap();
    let opts = RunOptions::new(
        "refused",
        suite(RunMode::Host, &["./flaky"], 1, tmp.path()),
        gomod::path(),
    );
    let mut exec = Refusing {
        inner: LocalExecutor::new(tmp.path().join("t")),
        refuse: "-test.run=^(TestFlaky)$".into(),
    };
    let rec = run(&mut exec, &opts);
    let flaky = attempts(&rec, "flaky", "TestFlaky");
    assert_eq!(flaky.len(), 2, "the rerun attempt is counted: {flaky:?}");
    assert_eq!(flaky[1].0, Outcome::Fail);
    assert!(flaky[1].1.contains("did not run the test"), "{flaky:?}");
    let p = rec.execution.package(&gomod::pkg("flaky")).unwrap();
    assert!(
        p.error
            .as_deref()
            .is_some_and(|e| e.contains("refused by the test")),
        "the cause is shown: {:?}",
        p.error
    );
    let t = rec.execution.totals();
    assert_eq!((t.attempts, t.failed, t.flaky), (3, 1, 0));
    assert_eq!(rec.execution.verdict(), Verdict::Errored);
}

fn copy(src: &Path, dst: &Path) {
    std::fs::create_dir_all(dst).unwrap();
    for e in std::fs::read_dir(src).unwrap() {
        let e = e.unwrap();
        let to = dst.join(e.file_name());
        let ft = e.file_type().unwrap();
        if ft.is_symlink() {
            std::os::unix::fs::symlink(std::fs::read_link(e.path()).unwrap(), &to).unwrap();
        } else if ft.is_dir() {
            copy(&e.path(), &to);
        } else {
            std::fs::copy(e.path(), &to).unwrap();
        }
    }
}

/// Takes uploads into a local folder, reports a Windows target, runs nothing.
struct WindowsInbox(LocalExecutor);

impl Executor for WindowsInbox {
    fn os(&self) -> TargetOs {
        TargetOs::Windows
    }
    fn run(
        &mut self,
        _: &ExecRequest,
        _: &mut dyn FnMut(Stream, &[u8]),
    ) -> Result<ExecOutcome, ExecError> {
        Err(ExecError::TargetLost {
            detail: "no Windows machine in this test".into(),
        })
    }
    fn upload_tree(
        &mut self,
        local: &Path,
        remote: &str,
        skip: UploadFilter<'_>,
    ) -> Result<(), ExecError> {
        self.0.upload_tree(local, remote, skip)
    }
    fn remote_dir(&self, name: &str) -> String {
        self.0.remote_dir(name)
    }
}

fn kind(p: &Path) -> &'static str {
    match std::fs::symlink_metadata(p) {
        Ok(m) if m.file_type().is_symlink() => "link",
        Ok(_) => "file",
        Err(_) => "missing",
    }
}

#[test]
fn symlinked_testdata_is_uploaded_as_the_test_sees_it_and_dangling_links_are_reported() {
    let tmp = tempfile::tempdir().unwrap();
    let module: PathBuf = tmp.path().join("mod");
    copy(&gomod::path(), &module);
    std::os::unix::fs::symlink("gone.txt", module.join("links/testdata/dangling.txt")).unwrap();
    let old = std::time::SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_600_000_000);
    std::fs::File::options()
        .write(true)
        .open(module.join("links/testdata/real.txt"))
        .unwrap()
        .set_modified(old)
        .unwrap();
    let mut s = suite(RunMode::Host, &["./links"], 0, tmp.path());
    s.path = Some(module.clone());
    let opts = RunOptions::new("links", s.clone(), &module);

    let mut linux = LocalExecutor::new(tmp.path().join("linux"));
    let rec = run(&mut linux, &opts);
    assert_eq!(
        attempts(&rec, "links", "TestReadsThroughLinks")[0].0,
        Outcome::Pass
    );
    let td = tmp.path().join("linux/suite-links/links/testdata");
    assert_eq!(
        (
            kind(&td.join("beside.txt")),
            kind(&td.join("shared.txt")),
            kind(&td.join("dangling.txt"))
        ),
        ("link", "file", "missing"),
        "Linux: a link beside its target stays a link; one to a file not uploaded is a copy"
    );
    assert_eq!(
        std::fs::metadata(td.join("real.txt"))
            .unwrap()
            .modified()
            .unwrap(),
        old,
        "uploaded files keep their modification time"
    );
    assert!(
        rec.meta
            .warnings
            .iter()
            .any(|w| w.contains("links/testdata/dangling.txt") && w.contains("dangling symlink")),
        "{:?}",
        rec.meta.warnings
    );
    let dir = tmp.path().join("results");
    let written = suites::write(&dir, &rec, &Default::default()).unwrap();
    let console = suites::render_console(&rec.execution, &written.summary);
    assert!(
        console.contains("Warning: links/testdata/dangling.txt"),
        "{console}"
    );
    let json = std::fs::read_to_string(dir.join("summary.json")).unwrap();
    assert!(json.contains("dangling.txt"), "{json}");

    let opts = RunOptions::new("win", s, &module);
    let mut win = WindowsInbox(LocalExecutor::new(tmp.path().join("win")));
    let _ = run(&mut win, &opts);
    let td = tmp.path().join("win/suite-win/links/testdata");
    assert_eq!(
        (kind(&td.join("beside.txt")), kind(&td.join("shared.txt"))),
        ("file", "file"),
        "Windows: links become copies of their targets"
    );
    assert_eq!(
        std::fs::read_to_string(td.join("beside.txt"))
            .unwrap()
            .trim(),
        "the real file"
    );
}

#[test]
fn repro_of_a_subtest_runs_exactly_that_subtest() {
    let failed = vec![
        (gomod::pkg("fail"), "TestSub/bad".to_string()),
        (gomod::pkg("fail"), "TestSub".to_string()),
    ];
    let plan = suites::repro_plan(&failed, Some("TestSub/bad"), 1, false);
    for mode in [RunMode::Host, RunMode::Guest] {
        let tmp = tempfile::tempdir().unwrap();
        let mut opts =
            RunOptions::new("sub", suite(mode, &["./..."], 0, tmp.path()), gomod::path());
        opts.targets = Some(plan.targets.clone());
        let rec = run(&mut LocalExecutor::new(tmp.path().join("t")), &opts);
        let mut names: Vec<String> = rec
            .execution
            .packages
            .iter()
            .flat_map(|p| p.tests.iter().map(|t| t.name.clone()))
            .collect();
        names.sort();
        assert_eq!(
            names,
            ["TestSub", "TestSub/bad"],
            "{mode:?}: not TestSub/good"
        );
    }
}
