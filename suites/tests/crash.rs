//! Crash forensics in the runner, on the local machine: an executor that reports a guest crash
//! when the `kpanic` fixture runs, then "brings the guest back" (wiping its scratch directory, as
//! a reboot of a guest with an in-memory root would). What is asserted: the running package is
//! errored "guest crashed (kernel panic)" in every report, the run continues with the packages it
//! had not reached (uploaded again), the crash is in summary.json and fails the run, and the
//! package that hits its timeout leaves its goroutine dump in `dumps/`.
//!
//! The fixture's kpanic test only panics a kernel with HARNESS_FIXTURE_KPANIC=1 in the test
//! guest; here it is never armed: the crash is the executor's.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use suites::exec::{ExecError, ExecOutcome, ExecRequest, Executor, Stream, TargetOs, UploadFilter};
use suites::{LocalExecutor, Provenance, Quiet, RunMode, RunOptions, SuiteConfig};
use testsupport::gomod;

#[derive(Default)]
struct Shared {
    crashed: bool,
    recoveries: Vec<String>,
}

/// The local machine, except that running the kpanic binary "crashes the guest".
struct Crashing {
    local: LocalExecutor,
    base: PathBuf,
    shared: Arc<Mutex<Shared>>,
    /// `recover` fails (the guest does not come back).
    stays_down: bool,
}

impl Executor for Crashing {
    fn os(&self) -> TargetOs {
        TargetOs::Linux
    }
    fn run(
        &mut self,
        req: &ExecRequest,
        on_line: &mut dyn FnMut(Stream, &[u8]),
    ) -> Result<ExecOutcome, ExecError> {
        let is_kpanic_run = req.dump_on_timeout && req.argv[0].ends_with("kpanic.test");
        if is_kpanic_run && !self.shared.lock().unwrap().crashed {
            self.shared.lock().unwrap().crashed = true;
            // The test started, then the kernel went down (the reboot in `recover` loses the
            // uploads; until then, packages already started run on).
            on_line(Stream::Stdout, b"=== RUN   TestKernelPanic");
            return Err(ExecError::TargetCrashed {
                reason: "kernel panic".into(),
            });
        }
        self.local.run(req, on_line)
    }
    fn upload_tree(
        &mut self,
        local: &Path,
        remote: &str,
        skip: UploadFilter<'_>,
    ) -> Result<(), ExecError> {
        self.local.upload_tree(local, remote, skip)
    }
    fn remote_dir(&self, name: &str) -> String {
        self.local.remote_dir(name)
    }
    fn try_clone(&self) -> Option<Box<dyn Executor>> {
        Some(Box::new(Crashing {
            local: LocalExecutor::new(self.base.clone()),
            base: self.base.clone(),
            shared: self.shared.clone(),
            stays_down: self.stays_down,
        }))
    }
    fn recover(&mut self, reason: &str) -> Result<String, ExecError> {
        self.shared.lock().unwrap().recoveries.push(reason.into());
        // The guest rebooted with an in-memory root: everything uploaded is gone.
        let _ = std::fs::remove_dir_all(&self.base);
        if self.stays_down {
            return Err(ExecError::TargetLost {
                detail: "the guest did not come back within 300s".into(),
            });
        }
        Ok("the guest is back (new boot id)".into())
    }
}

fn run(stays_down: bool) -> (tempfile::TempDir, suites::Written, Arc<Mutex<Shared>>) {
    let tmp = tempfile::tempdir().unwrap();
    let base = tmp.path().join("target");
    let shared = Arc::new(Mutex::new(Shared::default()));
    let mut exec = Crashing {
        local: LocalExecutor::new(base.clone()),
        base,
        shared: shared.clone(),
        stays_down,
    };
    let suite = SuiteConfig {
        path: Some(gomod::path()),
        packages: vec!["./hang".into(), "./kpanic".into(), "./pass".into()],
        flags: vec!["-count=1".into()],
        package_timeout: 3,
        mode: RunMode::Host,
        env: BTreeMap::from([(
            gomod::STATE_ENV.to_string(),
            tmp.path().display().to_string(),
        )]),
        ..SuiteConfig::default()
    };
    let opts = RunOptions::new("crash", suite, gomod::path());
    let record = suites::run(&mut exec, &opts, &mut Quiet).expect("run starts");
    let prov = Provenance {
        harness_version: "test".into(),
        ..Default::default()
    };
    let written = suites::write(&tmp.path().join("results"), &record, &prov).unwrap();
    (tmp, written, shared)
}

#[test]
fn a_crash_is_reported_and_the_run_continues_after_recovery() {
    let (_tmp, w, shared) = run(false);
    let dir = &w.dir;
    assert_eq!(shared.lock().unwrap().recoveries, vec!["kernel panic"]);
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("summary.json")).unwrap()).unwrap();
    assert_eq!(
        summary["run"]["crashes"],
        serde_json::json!(["kernel panic"])
    );
    assert_eq!(summary["exit_code"], 2, "a crash fails the run: {summary}");
    let pkgs = summary["packages"].as_array().unwrap();
    let by = |n: &str| {
        pkgs.iter()
            .find(|p| p["name"] == gomod::pkg(n))
            .unwrap_or_else(|| panic!("no {n} in {summary}"))
            .clone()
    };
    assert_eq!(by("kpanic")["error"], "guest crashed (kernel panic)");
    // pass ran after the crash, from a fresh upload (the crash wiped the target's directory).
    assert_eq!(summary["totals"]["passed"], 11, "{summary}");
    assert!(by("pass")["error"].is_null(), "{summary}");
    let md = std::fs::read_to_string(dir.join("summary.md")).unwrap();
    assert!(md.contains("**Guest crashed:** kernel panic"), "{md}");
    assert!(md.contains("guest crashed (kernel panic)"), "{md}");
    let junit = std::fs::read_to_string(dir.join("junit.xml")).unwrap();
    assert!(junit.contains("guest crashed (kernel panic)"), "{junit}");
    let out = std::fs::read_to_string(dir.join("harness-output.log")).unwrap();
    assert!(
        out.contains("harness: guest crashed (kernel panic); the guest is back (new boot id)"),
        "{out}"
    );
    assert!(
        out.contains("continuing with the 1 package(s) not run yet"),
        "{out}"
    );
}

#[test]
fn a_hung_package_leaves_its_goroutine_dump_and_a_guest_that_stays_down_ends_the_run() {
    let (_tmp, w, shared) = run(true);
    let dir = &w.dir;
    assert_eq!(shared.lock().unwrap().recoveries, vec!["kernel panic"]);
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("summary.json")).unwrap()).unwrap();
    let pkgs = summary["packages"].as_array().unwrap();
    let pass = pkgs
        .iter()
        .find(|p| p["name"] == gomod::pkg("pass"))
        .unwrap_or_else(|| panic!("pass is reported even though it never ran: {summary}"));
    let err = pass["error"].as_str().unwrap();
    assert!(
        err.starts_with("not run: guest crashed (kernel panic): ")
            && err.contains("the guest did not come back within 300s"),
        "{err}"
    );
    assert_eq!(summary["exit_code"], 2);
    // The hang package ran before the crash: its goroutine dump is in dumps/.
    let md = std::fs::read_to_string(dir.join("summary.md")).unwrap();
    let dumps: Vec<PathBuf> = std::fs::read_dir(dir.join("dumps"))
        .unwrap_or_else(|e| panic!("dumps/: {e}\n{md}"))
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(dumps.len(), 1, "{dumps:?}");
    let name = dumps[0].file_name().unwrap().to_string_lossy().into_owned();
    assert!(
        name.contains("hang") && name.ends_with(".goroutines.txt"),
        "{name}"
    );
    let text = std::fs::read_to_string(&dumps[0]).unwrap();
    assert!(
        text.starts_with("harness: timed out after 3s; sent SIGQUIT to "),
        "{text}"
    );
    assert!(text.contains("SIGQUIT: quit"), "{text}");
    assert!(
        text.contains("hang.TestHangs"),
        "the hung test's stack: {text}"
    );
}

/// `core_dumps`: the hung binary's core file is kept in `dumps/` next to its goroutine dump
/// (where this host's `kernel.core_pattern` writes cores into the working directory; elsewhere
/// the output must say why there is none).
#[test]
fn core_dumps_keeps_the_core_of_a_hung_binary() {
    let tmp = tempfile::tempdir().unwrap();
    let mut exec = LocalExecutor::new(tmp.path().join("target"));
    let suite = SuiteConfig {
        path: Some(gomod::path()),
        packages: vec!["./hang".into()],
        flags: vec!["-count=1".into()],
        package_timeout: 3,
        rerun_fails: 0,
        mode: RunMode::Host,
        core_dumps: true,
        ..SuiteConfig::default()
    };
    let opts = RunOptions::new("cores", suite, gomod::path());
    let record = suites::run(&mut exec, &opts, &mut Quiet).expect("run starts");
    let prov = Provenance {
        harness_version: "test".into(),
        ..Default::default()
    };
    let w = suites::write(&tmp.path().join("results"), &record, &prov).unwrap();
    let events = std::fs::read_to_string(w.dir.join("events.jsonl")).unwrap();
    let pattern = std::fs::read_to_string("/proc/sys/kernel/core_pattern").unwrap_or_default();
    let mut names: Vec<String> = std::fs::read_dir(w.dir.join("dumps"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    if !pattern.trim().starts_with("core") {
        assert!(events.contains("harness: no core file in "), "{events}");
        return;
    }
    assert_eq!(names.len(), 2, "{names:?}\n{events}");
    assert!(
        names.iter().any(|n| n.ends_with(".goroutines.txt")),
        "{names:?}"
    );
    let core = names
        .iter()
        .find(|n| n.contains("hang") && n.ends_with(".core"))
        .unwrap_or_else(|| panic!("no core in {names:?}"));
    let core = std::fs::read(w.dir.join("dumps").join(core)).unwrap();
    // An ELF core file: the magic, then e_type ET_CORE (4) at offset 16.
    assert!(
        core.len() > 64 && core.starts_with(b"\x7fELF"),
        "{}",
        core.len()
    );
    assert_eq!(u16::from_le_bytes([core[16], core[17]]), 4);
    let out = std::fs::read_to_string(w.dir.join("harness-output.log")).unwrap();
    assert!(out.contains("kept the core file of "), "{out}");
    // Nothing of the run is left behind on the "target" or in the host's temp folder.
    let left: Vec<_> = walk(&tmp.path().join("target"))
        .into_iter()
        .filter(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("core"))
        })
        .collect();
    assert!(left.is_empty(), "{left:?}");
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}
