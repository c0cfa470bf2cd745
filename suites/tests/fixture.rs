//! The suites runner against the fixture Go module, through the local executor, in both modes.
//! Counts are read back from the written junit.xml, not from the model.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use quick_junit::{NonSuccessKind, Report, TestCaseStatus};
use suites::exec::{ExecError, ExecOutcome, ExecRequest, Executor, Stream, TargetOs, UploadFilter};
use suites::{LocalExecutor, Provenance, Quiet, RunMode, RunOptions, Shard, SuiteConfig, Verdict};
use testsupport::gomod;

/// A finished run: its folder (kept alive by the tempdir) and summary.
struct Done {
    _tmp: tempfile::TempDir,
    dir: PathBuf,
    summary: suites::Summary,
    record: suites::RunRecord,
}

fn suite(mode: RunMode, packages: &[&str], reruns: u32, state: &Path) -> SuiteConfig {
    SuiteConfig {
        path: Some(gomod::path()),
        packages: packages.iter().map(|s| s.to_string()).collect(),
        flags: vec!["-count=1".into()],
        env: BTreeMap::from([(gomod::STATE_ENV.to_string(), state.display().to_string())]),
        package_timeout: 3,
        rerun_fails: reruns,
        mode,
        ..SuiteConfig::default()
    }
}

fn run_with(exec: &mut dyn Executor, opts: RunOptions, tmp: tempfile::TempDir) -> Done {
    let record = suites::run(exec, &opts, &mut Quiet).expect("run starts");
    let dir = tmp.path().join("results");
    let prov = Provenance {
        harness_version: "test".into(),
        library_commit: Some("abc".into()),
        ..Default::default()
    };
    let written = suites::write(&dir, &record, &prov).expect("results written");
    Done {
        _tmp: tmp,
        dir,
        summary: written.summary,
        record,
    }
}

fn run_fixture(
    mode: RunMode,
    packages: &[&str],
    reruns: u32,
    shard: Option<Shard>,
    state: Option<&Path>,
) -> Done {
    let tmp = tempfile::tempdir().unwrap();
    let own_state = tmp.path().join("state");
    std::fs::create_dir_all(&own_state).unwrap();
    let state = state.unwrap_or(&own_state);
    let mut opts = RunOptions::new(
        "fixture",
        suite(mode, packages, reruns, state),
        gomod::path(),
    );
    opts.shard = shard;
    let mut exec = LocalExecutor::new(tmp.path().join("target"));
    run_with(&mut exec, opts, tmp)
}

/// The full fixture, host mode, one rerun round: shared by the tests that inspect it.
fn host_run() -> &'static Done {
    static RUN: OnceLock<Done> = OnceLock::new();
    RUN.get_or_init(|| run_fixture(RunMode::Host, &["./..."], 1, None, None))
}

fn junit(dir: &Path) -> Report {
    let xml = std::fs::read_to_string(dir.join("junit.xml")).unwrap();
    Report::deserialize_from_str(&xml).expect("junit.xml parses")
}

/// (package, test) → statuses of every attempt in order: 'P'ass, 'F'ail, 'E'rror, 'S'kip.
fn cases(r: &Report) -> BTreeMap<(String, String), String> {
    let mut m: BTreeMap<(String, String), String> = BTreeMap::new();
    for s in &r.test_suites {
        for c in &s.test_cases {
            let ch = match &c.status {
                TestCaseStatus::Success { .. } => 'P',
                TestCaseStatus::NonSuccess {
                    kind: NonSuccessKind::Failure,
                    ..
                } => 'F',
                TestCaseStatus::NonSuccess {
                    kind: NonSuccessKind::Error,
                    ..
                } => 'E',
                TestCaseStatus::Skipped { .. } => 'S',
            };
            assert_eq!(
                c.classname.as_ref().map(|x| x.as_str()),
                Some(s.name.as_str()),
                "classname = package"
            );
            m.entry((s.name.as_str().to_string(), c.name.as_str().to_string()))
                .or_default()
                .push(ch);
        }
    }
    m
}

fn status(r: &Report, pkg: &str, test: &str) -> String {
    cases(r)
        .get(&(gomod::pkg(pkg), test.to_string()))
        .cloned()
        .unwrap_or_default()
}

fn assert_full_fixture(d: &Done) {
    let r = junit(&d.dir);
    assert_eq!(r.test_suites.len(), 11, "one testsuite per package");
    let (tests, failures, skipped, errors): (usize, usize, usize, usize) =
        r.test_suites.iter().fold((0, 0, 0, 0), |a, s| {
            (
                a.0 + s.tests,
                a.1 + s.failures,
                a.2 + s.skipped,
                a.3 + s.errors,
            )
        });
    // 29 tests + 9 rerun attempts; 8 first-round failures + 6 that fail again; one not run;
    // two skipped (skip's TestSkipped, and kpanic's TestKernelPanic, never armed here).
    assert_eq!((tests, failures, skipped, errors), (38, 14, 2, 1));
    assert_eq!(status(&r, "kpanic", "TestKernelPanic"), "S");
    assert_eq!(status(&r, "flaky", "TestFlaky"), "FP");
    assert_eq!(status(&r, "hang", "TestHangs"), "FF");
    assert_eq!(status(&r, "hang", "TestQuick"), "P");
    assert_eq!(status(&r, "panicky", "TestPanics"), "FF");
    assert_eq!(
        status(&r, "panicky", "TestNeverRuns"),
        "E",
        "not run is an error"
    );
    assert_eq!(
        status(&r, "links", "TestReadsThroughLinks"),
        "P",
        "symlinked testdata reached the target"
    );
    assert_eq!(status(&r, "tracelog", "TestTraceLog"), "FP");
    assert_eq!(status(&r, "fail", "TestSub/good"), "PP");
    assert_eq!(status(&r, "fail", "TestSub/bad"), "FF");
    assert_eq!(status(&r, "skip", "TestSkipped"), "S");
    assert_eq!(status(&r, "pass", "TestParallel/p2"), "P");
    assert_eq!(
        status(&r, "pass", "TestReadsTestdata"),
        "P",
        "testdata reached the target"
    );

    let t = &d.summary.totals;
    assert_eq!(
        (t.tests, t.passed, t.failed, t.skipped, t.flaky, t.attempts),
        (29, 20, 6, 2, 2, 38)
    );
    assert_eq!(
        (t.not_run, t.packages, t.packages_no_tests),
        (1, 10, 1),
        "packages without test files are not counted as packages"
    );
    assert!(
        d.summary.run.warnings.is_empty(),
        "{:?}",
        d.summary.run.warnings
    );
    let xml = std::fs::read_to_string(d.dir.join("junit.xml")).unwrap();
    assert!(
        xml.contains("not run: the test binary exited during TestPanics before this test started"),
        "the JUnit error names the test that killed the binary"
    );
    assert_eq!(
        (d.summary.verdict, d.summary.exit_code),
        (Verdict::Failed, 1)
    );
    let mut flaky: Vec<&str> = d.summary.flaky.iter().map(|f| f.test.as_str()).collect();
    flaky.sort();
    assert_eq!(flaky, ["TestFlaky", "TestTraceLog"]);

    // The hanging test was declared failed by the harness, with its last output.
    let hang = d.record.execution.package(&gomod::pkg("hang")).unwrap();
    assert!(hang.timed_out);
    assert!(
        hang.elapsed >= 2.5,
        "a timed-out package shows its real elapsed time, not {}",
        hang.elapsed
    );
    let panicky = d.record.execution.package(&gomod::pkg("panicky")).unwrap();
    assert!(
        panicky.elapsed > 0.0,
        "a crashed package shows its elapsed time"
    );
    let console = suites::render_console(&d.record.execution, &d.summary);
    assert!(
        console.contains(&format!("--- TIMED OUT: package {}", gomod::pkg("hang")))
            && console.contains("1 not run")
            && console.contains(&format!(
                "--- NOT RUN: 1 test(s) in {}: the test binary exited during TestPanics before this test started: TestNeverRuns",
                gomod::pkg("panicky")
            )),
        "{console}"
    );
    let first = &hang.test("TestHangs").unwrap().attempts[0];
    let note = first.synthesized.clone().expect("synthesized failure");
    assert!(
        note.contains("did not report a result") && note.contains("timeout"),
        "{note}"
    );
    assert!(
        first.output.contains("going to sleep"),
        "the last output is kept"
    );

    // Hostile output survives as valid XML.
    let xml = std::fs::read_to_string(d.dir.join("junit.xml")).unwrap();
    assert!(xml.contains("cdata end: ]]&gt;"), "escaped markup");
    assert!(!xml.contains('\u{0}') && !xml.contains('\u{1b}'));

    // Every failed test has its output file; the summary points at it.
    assert_eq!(d.summary.failed.len(), 6);
    for f in &d.summary.failed {
        let file = d.dir.join(f.output_file.as_ref().expect("output file"));
        let text = std::fs::read_to_string(&file).unwrap();
        assert!(text.contains("=== attempt 2 of 2"), "{}", file.display());
    }
    let md = std::fs::read_to_string(d.dir.join("summary.md")).unwrap();
    assert!(md.contains("FAILED") && md.contains("TestFlaky") && md.contains("&lt;tag"));
    assert!(
        md.contains("### Not run") && md.contains("TestNeverRuns") && md.contains("### Timed out"),
        "{md}"
    );

    // events.jsonl alone gives the same verdict and counts.
    let evs: Vec<_> = suites::results::read_events(&d.dir)
        .unwrap()
        .into_iter()
        .map(|(_, e)| e)
        .collect();
    let again = suites::Execution::from_events(&evs);
    assert_eq!(again.totals(), *t);
    assert_eq!(again.verdict(), d.summary.verdict);
}

#[test]
fn host_mode_full_fixture() {
    let d = host_run();
    assert_eq!(d.summary.run.mode, "host");
    assert_full_fixture(d);
}

#[test]
fn guest_mode_full_fixture() {
    let d = run_fixture(RunMode::Guest, &["./..."], 1, None, None);
    assert_eq!(d.summary.run.mode, "guest");
    assert_full_fixture(&d);
}

#[test]
fn shards_merge_into_the_unsharded_result() {
    let tmp = tempfile::tempdir().unwrap();
    let state = tmp.path().join("state");
    std::fs::create_dir_all(&state).unwrap();
    let shards: Vec<Done> = (1..=2)
        .map(|i| {
            run_fixture(
                RunMode::Host,
                &["./..."],
                1,
                Some(Shard { index: i, total: 2 }),
                Some(&state),
            )
        })
        .collect();
    let n: Vec<usize> = shards
        .iter()
        .map(|s| junit(&s.dir).test_suites.len())
        .collect();
    assert_eq!(n.iter().sum::<usize>(), 11);
    assert!(n.iter().all(|&k| k > 0), "both shards have packages: {n:?}");
    let out = tmp.path().join("merged");
    let dirs: Vec<PathBuf> = shards.iter().map(|s| s.dir.clone()).collect();
    let merged = suites::merge(&dirs, &out).unwrap();
    let whole = host_run();
    assert_eq!(cases(&junit(&out)), cases(&junit(&whole.dir)));
    assert_eq!(merged.summary.totals, whole.summary.totals);
    assert_eq!(merged.summary.verdict, whole.summary.verdict);
    assert!(merged.summary.run.shard.is_none());
}

#[test]
fn repro_plan_from_results() {
    let d = host_run();
    let (failed, prov) = suites::read_failures(&d.dir).unwrap();
    assert_eq!(prov.unwrap().library_commit.as_deref(), Some("abc"));
    let plan = suites::repro_plan(&failed, None, 1, false);
    let by_pkg: BTreeMap<String, Option<Vec<String>>> = plan
        .targets
        .iter()
        .map(|t| (t.package.clone(), t.tests.clone()))
        .collect();
    assert_eq!(by_pkg.len(), 4, "{by_pkg:?}");
    assert_eq!(
        by_pkg[&gomod::pkg("fail")],
        Some(vec!["TestBroken".to_string(), "TestSub".to_string()])
    );
    assert!(
        !by_pkg.contains_key(&gomod::pkg("flaky")),
        "flaky passed in the end"
    );
    let same = suites::read_failures(&d.dir.join("junit.xml")).unwrap().0;
    assert_eq!(same, failed);
}

/// Runs on the local machine but loses the target after `ok_runs` commands.
struct LosingExecutor {
    inner: LocalExecutor,
    ok_runs: usize,
}

impl Executor for LosingExecutor {
    fn os(&self) -> TargetOs {
        self.inner.os()
    }
    fn arch(&self) -> String {
        self.inner.arch()
    }
    fn run(
        &mut self,
        req: &ExecRequest,
        on_line: &mut dyn FnMut(Stream, &[u8]),
    ) -> Result<ExecOutcome, ExecError> {
        if self.ok_runs == 0 {
            return Err(ExecError::TargetLost {
                detail: "connection reset by peer".into(),
            });
        }
        self.ok_runs -= 1;
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
fn lost_target_errors_the_remaining_packages_and_keeps_results() {
    let tmp = tempfile::tempdir().unwrap();
    let state = tmp.path().join("state");
    std::fs::create_dir_all(&state).unwrap();
    let opts = RunOptions::new(
        "lost",
        suite(RunMode::Host, &["./pass", "./skip", "./fail"], 1, &state),
        gomod::path(),
    );
    let mut exec = LosingExecutor {
        inner: LocalExecutor::new(tmp.path().join("target")),
        // The upload store's query and linking, the first package's test listing and its run.
        ok_runs: 4,
    };
    let d = run_with(&mut exec, opts, tmp);
    assert_eq!(
        (d.summary.verdict, d.summary.exit_code),
        (Verdict::Errored, 2)
    );
    assert!(
        d.summary
            .run
            .error
            .as_deref()
            .unwrap()
            .contains("connection reset")
    );
    let r = junit(&d.dir);
    let c = cases(&r);
    // The first package ran; the two after it are errored with the cause.
    let first_ran = c.iter().filter(|(_, v)| v.contains('P')).count();
    assert!(first_ran >= 2, "{c:?}");
    let errored: Vec<_> = c
        .iter()
        .filter(|(_, v)| v.as_str() == "E")
        .map(|(k, _)| k.0.clone())
        .collect();
    assert_eq!(errored.len(), 2, "{c:?}");
    assert!(errored.iter().all(|p| {
        d.summary
            .packages
            .iter()
            .any(|s| &s.name == p && s.error.is_some())
    }));
}

/// Takes uploads into a local folder and reports a Windows target whose runs fail: enough to
/// check what host mode would ship to Windows.
struct WindowsInbox {
    inner: LocalExecutor,
}

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
        self.inner.upload_tree(local, remote, skip)
    }
    fn remote_dir(&self, name: &str) -> String {
        self.inner.remote_dir(name)
    }
}

#[test]
fn host_mode_cross_compiles_for_windows() {
    let tmp = tempfile::tempdir().unwrap();
    let opts = RunOptions::new(
        "win",
        suite(
            RunMode::Host,
            &["./pass", "./notests", "./hang"],
            0,
            tmp.path(),
        ),
        gomod::path(),
    );
    let mut exec = WindowsInbox {
        inner: LocalExecutor::new(tmp.path().join("inbox")),
    };
    let d = run_with(&mut exec, opts, tmp);
    let up = d.dir.parent().unwrap().join("inbox/suite-win");
    for bin in ["pass/pass.test.exe", "hang/hang.test.exe"] {
        let bytes = std::fs::read(up.join(bin)).unwrap_or_else(|e| panic!("{bin}: {e}"));
        assert_eq!(&bytes[..2], b"MZ", "{bin} is a PE executable");
    }
    assert!(up.join("pass/testdata/hello.txt").is_file());
    assert!(!up.join("notests").join("notests.test.exe").exists());
    assert_eq!(d.summary.exit_code, 2);
    let t = &d.summary.totals;
    assert_eq!(
        (t.packages, t.packages_no_tests, t.packages_errored),
        (2, 1, 2),
        "notests is skipped, the others errored"
    );
}

#[test]
fn build_failure_is_an_infrastructure_error() {
    let tmp = tempfile::tempdir().unwrap();
    let module = tmp.path().join("mod");
    copy(&gomod::path(), &module);
    std::fs::create_dir_all(module.join("broken")).unwrap();
    std::fs::write(
        module.join("broken/broken_test.go"),
        "package broken\n\nfunc TestX(t *testing.T) { undefined() }\n",
    )
    .unwrap();
    let mut s = suite(RunMode::Host, &["./broken", "./skip"], 1, tmp.path());
    s.path = Some(module.clone());
    let opts = RunOptions::new("broken", s, &module);
    let mut exec = LocalExecutor::new(tmp.path().join("target"));
    let d = run_with(&mut exec, opts, tmp);
    assert_eq!(d.summary.exit_code, 2);
    let broken = d
        .summary
        .packages
        .iter()
        .find(|p| p.name.ends_with("/broken"))
        .unwrap();
    assert!(broken.build_failed);
    let r = junit(&d.dir);
    assert_eq!(status(&r, "skip", "TestRuns"), "P");
    let c = cases(&r);
    let main = &c[&(format!("{}/broken", gomod::MODULE), "TestMain".to_string())];
    assert_eq!(main, "E", "no rerun of a build failure");
    let xml = std::fs::read_to_string(d.dir.join("junit.xml")).unwrap();
    assert!(xml.contains("undefined"), "compiler output in the report");
}

fn copy(src: &Path, dst: &Path) {
    std::fs::create_dir_all(dst).unwrap();
    for e in std::fs::read_dir(src).unwrap() {
        let e = e.unwrap();
        if e.file_type().unwrap().is_dir() {
            copy(&e.path(), &dst.join(e.file_name()));
        } else {
            std::fs::copy(e.path(), dst.join(e.file_name())).unwrap();
        }
    }
}

#[test]
fn ctrl_c_stops_after_the_running_package_and_errors_the_rest() {
    let tmp = tempfile::tempdir().unwrap();
    let flag = suites::Cancel::default();
    let mut opts = RunOptions::new(
        "cancel",
        suite(
            RunMode::Host,
            &["./pass", "./skip", "./fail"],
            1,
            tmp.path(),
        ),
        gomod::path(),
    );
    opts.suite.parallel = 1; // one package at a time, so "the rest" is exact
    opts.cancel = Some(flag.clone());
    let mut exec = LocalExecutor::new(tmp.path().join("target"));
    let mut obs = |e: &suites::RunEvent<'_>, _: &suites::Execution| {
        if let suites::RunEvent::Event(ev) = e
            && ev.test.is_none()
            && ev.action.is_terminal()
        {
            flag.cancel();
        }
    };
    let record = suites::run(&mut exec, &opts, &mut obs).unwrap();
    let t = record.execution.totals();
    // The flag is raised when the first package ends; the worker may already have started the
    // second by then (it runs to completion), but the last one must never start.
    assert_eq!(t.packages, 3, "{t:?}");
    assert!((1..=2).contains(&t.packages_errored), "{t:?}");
    let last = record.execution.package(&gomod::pkg("fail")).unwrap();
    assert!(
        last.tests.is_empty()
            && last
                .error
                .as_deref()
                .is_some_and(|e| e.contains("not run: cancelled by the user")),
        "the last package must not run: {last:?}"
    );
    assert_eq!(record.execution.verdict(), Verdict::Errored);
    assert!(record.meta.error.as_deref().unwrap().contains("cancelled"));
}

/// A module whose dependency lives next to it (a `replace` to `../dep`): the uploaded copy can
/// only build if harness vendors the dependency on the host.
fn module_with_local_dependency(root: &Path) -> PathBuf {
    let dep = root.join("dep");
    std::fs::create_dir_all(&dep).unwrap();
    std::fs::write(dep.join("go.mod"), "module example.test/dep\n\ngo 1.21\n").unwrap();
    std::fs::write(
        dep.join("dep.go"),
        "package dep\n\nfunc Answer() int { return 42 }\n",
    )
    .unwrap();
    let m = root.join("mod");
    std::fs::create_dir_all(m.join("a")).unwrap();
    std::fs::write(
        m.join("go.mod"),
        "module example.test/usesdep\n\ngo 1.21\n\nrequire example.test/dep v0.0.0\n\nreplace example.test/dep => ../dep\n",
    )
    .unwrap();
    std::fs::write(
        m.join("a/a_test.go"),
        "package a\n\nimport (\n\t\"testing\"\n\n\t\"example.test/dep\"\n)\n\nfunc TestDep(t *testing.T) {\n\tif dep.Answer() != 42 {\n\t\tt.Fatal(\"wrong\")\n\t}\n}\n",
    )
    .unwrap();
    m
}

#[test]
fn guest_mode_vendors_dependencies_for_an_offline_guest() {
    for vendor in [true, false] {
        let tmp = tempfile::tempdir().unwrap();
        let module = module_with_local_dependency(tmp.path());
        let s = SuiteConfig {
            path: Some(module.clone()),
            packages: vec!["./...".into()],
            mode: RunMode::Guest,
            vendor,
            ..SuiteConfig::default()
        };
        let opts = RunOptions::new("vendored", s, &module);
        let mut exec = LocalExecutor::new(tmp.path().join("remote/deeper"));
        let record = suites::run(&mut exec, &opts, &mut Quiet).unwrap();
        let t = record.execution.totals();
        if vendor {
            assert_eq!(
                (t.tests, t.passed),
                (1, 1),
                "{t:?} {:?}",
                record.other_output
            );
            assert_eq!(record.execution.verdict(), Verdict::Passed);
        } else {
            // The uploaded copy cannot resolve `../dep`: `go test` reports a failed build (setup
            // failed) before any test runs, which is an infrastructure failure (exit 2).
            assert_eq!(t.tests, 0);
            let s = suites::summary::summarize(
                &record.execution,
                &record.meta,
                &Provenance::default(),
                &BTreeMap::new(),
            );
            assert_eq!(s.exit_code, 2, "{:?}", record.events);
            let p = &record.execution.packages[0];
            assert!(
                p.build_failed,
                "go test reports the setup failure as a failed build"
            );
        }
    }
}

#[test]
fn repro_targets_rerun_exactly_the_failed_tests() {
    let (failed, _) = suites::read_failures(&host_run().dir).unwrap();
    let mut plan = suites::repro_plan(&failed, None, 2, false);
    plan.targets.retain(|t| !t.package.ends_with("/hang"));
    assert_eq!(plan.targets.len(), 3);
    for mode in [RunMode::Host, RunMode::Guest] {
        let tmp = tempfile::tempdir().unwrap();
        let mut opts = RunOptions::new(
            "repro",
            suite(mode, &["./..."], 0, tmp.path()),
            gomod::path(),
        );
        opts.targets = Some(plan.targets.clone());
        opts.count = Some(2);
        let mut exec = LocalExecutor::new(tmp.path().join("target"));
        let rec = suites::run(&mut exec, &opts, &mut Quiet).unwrap();
        let ex = &rec.execution;
        // Packages may run in parallel, so their order is the order they finished in.
        let mut names: Vec<String> = ex
            .packages
            .iter()
            .flat_map(|p| p.tests.iter().map(|t| t.name.clone()))
            .collect();
        names.sort();
        assert_eq!(
            names,
            [
                "TestBroken",
                "TestHostile",
                "TestNeverRuns",
                "TestPanics",
                "TestSub",
                "TestSub/bad",
                "TestSub/good",
            ],
            "{mode:?}"
        );
        let fail = ex.package(&gomod::pkg("fail")).unwrap();
        assert_eq!(
            fail.test("TestBroken").unwrap().attempts.len(),
            2,
            "{mode:?}: -count=2"
        );
        let dir = &rec
            .package_dirs
            .iter()
            .find(|(p, _)| *p == gomod::pkg("fail"))
            .unwrap()
            .1;
        assert!(
            dir.ends_with("/fail") && Path::new(dir).is_dir(),
            "{mode:?}: {dir}"
        );
    }
}

/// The local machine, but every output line ends with CR, as a Windows target may send it
/// (test2json and the JSON parser must both cope).
struct CrlfExecutor(LocalExecutor);

impl Executor for CrlfExecutor {
    fn os(&self) -> TargetOs {
        self.0.os()
    }
    fn arch(&self) -> String {
        self.0.arch()
    }
    fn run(
        &mut self,
        req: &ExecRequest,
        on_line: &mut dyn FnMut(Stream, &[u8]),
    ) -> Result<ExecOutcome, ExecError> {
        self.0.run(req, &mut |s, l| {
            let mut v = l.to_vec();
            v.push(b'\r');
            on_line(s, &v)
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

#[test]
fn crlf_line_endings_parse_in_both_modes() {
    for mode in [RunMode::Host, RunMode::Guest] {
        let tmp = tempfile::tempdir().unwrap();
        let opts = RunOptions::new(
            "crlf",
            suite(mode, &["./pass", "./fail"], 0, tmp.path()),
            gomod::path(),
        );
        let mut exec = CrlfExecutor(LocalExecutor::new(tmp.path().join("target")));
        let rec = suites::run(&mut exec, &opts, &mut Quiet).unwrap();
        let t = rec.execution.totals();
        assert_eq!(
            (t.tests, t.passed, t.failed),
            (15, 12, 3),
            "{mode:?}: {t:?}"
        );
    }
}

#[test]
fn no_reruns_past_rerun_max_failures() {
    let tmp = tempfile::tempdir().unwrap();
    let mut s = suite(RunMode::Host, &["./fail", "./flaky"], 2, tmp.path());
    s.rerun_max_failures = 3; // fail has 3 failures, flaky 1: 4 > 3
    let opts = RunOptions::new("maxfail", s, gomod::path());
    let mut exec = LocalExecutor::new(tmp.path().join("target"));
    let rec = suites::run(&mut exec, &opts, &mut Quiet).unwrap();
    let t = rec.execution.totals();
    assert_eq!(
        (t.tests, t.failed, t.flaky, t.attempts),
        (7, 4, 0, 7),
        "{t:?}"
    );
    assert!(
        rec.other_output
            .iter()
            .any(|l| l.contains("rerun_max_failures = 3"))
    );
}

#[test]
fn the_module_root_package_runs_in_host_mode() {
    let tmp = tempfile::tempdir().unwrap();
    let module = tmp.path().join("mod");
    copy(&gomod::path(), &module);
    std::fs::write(
        module.join("root_test.go"),
        "package fixture\n\nimport \"testing\"\n\nfunc TestRoot(t *testing.T) {}\n",
    )
    .unwrap();
    let mut s = suite(RunMode::Host, &[".", "./skip"], 0, tmp.path());
    s.path = Some(module.clone());
    let opts = RunOptions::new("root", s, &module);
    let rec = suites::run(
        &mut LocalExecutor::new(tmp.path().join("target")),
        &opts,
        &mut Quiet,
    )
    .unwrap();
    let root = rec
        .execution
        .package(gomod::MODULE)
        .expect("root package ran");
    assert_eq!(
        root.test("TestRoot").unwrap().outcome(),
        suites::model::Outcome::Pass
    );
    assert_eq!(rec.execution.verdict(), Verdict::Passed);
}

#[test]
fn host_mode_runs_packages_side_by_side() {
    // Two packages that each sleep past 1 s finish in well under 2 × that when run in parallel.
    let tmp = tempfile::tempdir().unwrap();
    let module = tmp.path().join("mod");
    copy(&gomod::path(), &module);
    for name in ["slowa", "slowb"] {
        std::fs::create_dir_all(module.join(name)).unwrap();
        std::fs::write(
            module.join(name).join("slow_test.go"),
            format!("package {name}\n\nimport (\n\t\"testing\"\n\t\"time\"\n)\n\nfunc TestSlow(t *testing.T) {{ time.Sleep(1500 * time.Millisecond) }}\n"),
        )
        .unwrap();
    }
    let mut s = suite(RunMode::Host, &["./slowa", "./slowb"], 0, tmp.path());
    s.path = Some(module.clone());
    let opts = RunOptions::new("parallel", s, &module);
    let rec = suites::run(
        &mut LocalExecutor::new(tmp.path().join("target")),
        &opts,
        &mut Quiet,
    )
    .unwrap();
    assert_eq!(rec.execution.totals().passed, 2);
    let running: f64 = {
        let evs: Vec<_> = rec
            .events
            .iter()
            .filter_map(|l| suites::event::parse_line(l))
            .collect();
        let t = |a: &suites::event::Action, pkg: &str| {
            evs.iter()
                .find(|e| {
                    &e.action == a
                        && e.package.as_deref().is_some_and(|p| p.ends_with(pkg))
                        && e.test.is_none()
                })
                .and_then(|e| e.time.clone())
                .map(|t| {
                    time::OffsetDateTime::parse(&t, &time::format_description::well_known::Rfc3339)
                        .unwrap()
                })
                .unwrap()
        };
        let start = t(&suites::event::Action::Start, "slowa")
            .min(t(&suites::event::Action::Start, "slowb"));
        let end =
            t(&suites::event::Action::Pass, "slowa").max(t(&suites::event::Action::Pass, "slowb"));
        (end - start).as_seconds_f64()
    };
    assert!(
        running < 2.8,
        "the two 1.5 s packages took {running:.2}s: not in parallel"
    );
}
