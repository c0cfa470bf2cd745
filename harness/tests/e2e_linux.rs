//! End to end on the Linux guest: `harness run` from an empty state dir to results, a warm second
//! run, Ctrl-C mid-run, and the GitHub Actions output of a failing run.
//!
//! One demo environment (guest build + GitHub API stand-in serving the efW-shaped build) is shared
//! by every test of this binary; each test has its own state dir, so its own VM.

use std::io::{BufRead, BufReader};
use std::process::Stdio;
use std::time::{Duration, Instant};

use testsupport::demo::demo_dir;

#[path = "common/e2e.rs"]
mod e2e;
use e2e::{demo, harness, json, phase, qemu_processes, run};

const LIMIT: Duration = Duration::from_secs(600);

#[test]
fn run_from_nothing_to_results_then_warm_run_reuses_cache_and_snapshot() {
    let d = tempfile::tempdir().unwrap();
    let cfg = demo_dir().join("harness.toml");
    let out1 = d.path().join("results1");
    let mut c = harness(d.path(), &cfg);
    c.args(["run", "--out"]).arg(&out1);
    let (code, stdout, stderr) = run(c, LIMIT);
    assert_eq!(code, 0, "stdout:\n{stdout}\nstderr:\n{stderr}");

    // Results a CI system understands, with the expected counts.
    let summary = json(&out1.join("tests/summary.json"));
    let t = &summary["totals"];
    assert_eq!(
        (
            t["passed"].as_u64(),
            t["failed"].as_u64(),
            t["skipped"].as_u64()
        ),
        (Some(4), Some(0), Some(1)),
        "{summary}"
    );
    assert_eq!(summary["provenance"]["efw_version"], "0.0.0-demo");
    assert_eq!(
        summary["provenance"]["efw_run_id"],
        testsupport::demo::RUN_ID.to_string()
    );
    let junit = std::fs::read_to_string(out1.join("tests/junit.xml")).unwrap();
    assert_eq!(junit.matches("<testcase").count(), 5, "{junit}");
    assert!(out1.join("tests/events.jsonl").is_file());
    assert!(out1.join("tests/summary.md").is_file());
    assert!(
        out1.join("install").is_dir(),
        "install logs are collected into the results"
    );
    let phases = json(&out1.join("phases.json"));
    assert!(
        phase(&phases, "provision")["detail"]
            .as_str()
            .unwrap()
            .starts_with("booted"),
        "{phases}"
    );
    for p in [
        "provision",
        "artifacts",
        "install",
        "doctor",
        "suites",
        "results",
        "down",
    ] {
        assert_eq!(phase(&phases, p)["ok"], true, "{p}: {phases}");
    }
    assert!(
        phase(&phases, "install")["detail"]
            .as_str()
            .unwrap()
            .starts_with("installed"),
        "{phases}"
    );
    // The guest doctor passed on the test guest (bpffs mounted by its init, Debian's BTF) and
    // recorded the kernel release for provenance.
    let doctor = phase(&phases, "doctor")["detail"].as_str().unwrap();
    assert!(
        doctor.contains("checks ok") && doctor.contains(", build "),
        "{phases}"
    );
    // The test guest's root is its initramfs, which df cannot measure: the memory available
    // stands in. It has no bash, which ebpf-go's uprobe tests exec: a warning, not a failure.
    let dj: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out1.join("doctor.json")).unwrap()).unwrap();
    let check = |n: &str| {
        dj["checks"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["name"] == n)
            .unwrap_or_else(|| panic!("no {n} check in {dj}"))
            .clone()
    };
    // (a warning all the same: the demo's 1 GiB is below the default vm.min_free_mib)
    assert!(
        check("disk")["detail"]
            .as_str()
            .unwrap()
            .contains(" free in /tmp (initramfs: memory available)"),
        "{dj}"
    );
    assert_eq!(check("bash")["status"], "warn", "{dj}");
    assert!(
        qemu_processes(&d.path().display().to_string()).is_empty(),
        "run must `down` the VM"
    );
    let transferred = demo().github.storage_bytes();
    assert!(transferred > 0);

    // Warm: the build comes from the cache (no bytes from storage), the VM from the snapshot.
    // `--json --keep`: one document for machines, and the VM stays up for `exec`.
    let out2 = d.path().join("results2");
    let mut c = harness(d.path(), &cfg);
    c.args(["--json", "run", "--keep", "--out"]).arg(&out2);
    let (code, stdout, stderr) = run(c, LIMIT);
    assert_eq!(code, 0, "stdout:\n{stdout}\nstderr:\n{stderr}");
    let doc: serde_json::Value =
        serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("{e}: {stdout}"));
    assert_eq!(doc["exit_code"], 0);
    assert_eq!(doc["suites"][0]["summary"]["totals"]["passed"], 4, "{doc}");
    assert!(
        phase(&doc, "provision")["detail"]
            .as_str()
            .unwrap()
            .starts_with("restored snapshot 'ready'"),
        "{doc}"
    );
    assert!(
        doc["phases"]
            .as_array()
            .unwrap()
            .iter()
            .all(|p| p["phase"] != "down"),
        "--keep: {doc}"
    );
    assert_eq!(
        demo().github.storage_bytes(),
        transferred,
        "the second fetch transferred bytes"
    );

    // The kept VM answers `harness exec` through its backend's endpoint, in a session that sees
    // the installed runtime.
    let mut c = harness(d.path(), &cfg);
    c.args(["exec", "--", "echo \"runtime=$EFW_RUNTIME_DIR\"; exit 3"]);
    let (code, stdout, stderr) = run(c, Duration::from_secs(120));
    assert_eq!(
        code, 3,
        "exec passes the exit code on\nstdout:\n{stdout}\nstderr:\n{stderr}"
    );
    assert!(stdout.contains("runtime=/opt/efw-demo"), "{stdout}");
    let mut c = harness(d.path(), &cfg);
    c.arg("down");
    let (code, _, stderr) = run(c, Duration::from_secs(120));
    assert_eq!(code, 0, "{stderr}");
    assert!(qemu_processes(&d.path().display().to_string()).is_empty());
}

#[test]
fn ctrl_c_mid_run_stops_cleanly_and_leaves_no_processes() {
    let d = tempfile::tempdir().unwrap();
    let cfg = demo_dir().join("harness.toml");
    let out = d.path().join("results");
    let mut c = harness(d.path(), &cfg);
    c.args(["run", "--out"]).arg(&out);
    let mut child = c
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Interrupt once the VM is up and the pipeline is inside a later phase.
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut lines = Vec::new();
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if line.contains("==> artifacts") || line.contains("==> install") {
                let _ = tx.send(());
            }
            lines.push(line);
        }
        lines
    });
    rx.recv_timeout(LIMIT)
        .expect("the run never reached the artifacts phase");
    // SAFETY: signalling our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let t0 = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(120),
            "harness did not stop within 120 s of Ctrl-C"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(!status.success(), "an interrupted run must not succeed");
    // Bounded wait for the VM's processes to go (the down phase powers it off).
    let t0 = Instant::now();
    while !qemu_processes(&d.path().display().to_string()).is_empty() {
        assert!(
            t0.elapsed() < Duration::from_secs(60),
            "qemu still running after Ctrl-C: {:?}",
            qemu_processes(&d.path().display().to_string())
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let phases = json(&out.join("phases.json"));
    assert_eq!(phase(&phases, "down")["ok"], true, "{phases}");
}

#[test]
fn failing_test_gives_exit_1_junit_and_github_actions_annotations() {
    let d = tempfile::tempdir().unwrap();
    // The demo config plus an environment that makes one test fail.
    let cfg = d.path().join("fail.toml");
    let text = std::fs::read_to_string(demo_dir().join("harness.toml")).unwrap();
    std::fs::write(
        &cfg,
        format!("{text}\n[suites.demo.env]\nEFW_DEMO_FAIL = \"yes\"\n"),
    )
    .unwrap();
    let summary_md = d.path().join("step-summary.md");
    let out = d.path().join("results");
    let mut c = harness(d.path(), &cfg);
    c.env("GITHUB_ACTIONS", "true")
        .env("GITHUB_STEP_SUMMARY", &summary_md)
        .args(["run", "--rerun-fails", "1", "--out"])
        .arg(&out);
    let (code, stdout, stderr) = run(c, LIMIT);
    assert_eq!(
        code, 1,
        "test failures exit 1\nstdout:\n{stdout}\nstderr:\n{stderr}"
    );
    for p in [
        "provision",
        "artifacts",
        "install",
        "doctor",
        "suites",
        "results",
        "down",
    ] {
        assert!(
            stdout.contains(&format!("::group::{p}\n")),
            "no group for {p}:\n{stdout}"
        );
    }
    assert_eq!(
        stdout.matches("::group::").count(),
        stdout.matches("::endgroup::").count()
    );
    let line = stdout
        .lines()
        .find(|l| l.starts_with("::error "))
        .unwrap_or_else(|| panic!("no annotation:\n{stdout}"));
    assert!(
        line.starts_with(
            "::error file=runtime/runtime_test.go,line=48,title=TestFailsOnRequest failed::"
        ),
        "{line}"
    );
    assert!(
        line.contains("failing on request (EFW_DEMO_FAIL=yes)"),
        "{line}"
    );
    let md = std::fs::read_to_string(&summary_md).unwrap();
    assert!(md.contains("TestFailsOnRequest"), "{md}");
    let summary = json(&out.join("tests/summary.json"));
    assert_eq!(summary["totals"]["failed"], 1, "{summary}");
    assert_eq!(summary["exit_code"], 1);
    let junit = std::fs::read_to_string(out.join("tests/junit.xml")).unwrap();
    assert!(junit.contains("<failure"), "{junit}");

    // repro: the same build (run 4242), only the failed test, verbose, with the command to copy.
    let mut c = harness(d.path(), &cfg);
    c.arg("repro").arg(&out);
    let (code, stdout, stderr) = run(c, LIMIT);
    assert_eq!(
        code, 1,
        "the failure reproduces\nstdout:\n{stdout}\nstderr:\n{stderr}"
    );
    assert!(stderr.contains("on efW run:4242"), "{stderr}");
    assert!(
        stderr.contains("failing on request (EFW_DEMO_FAIL=yes)"),
        "output streamed:\n{stderr}"
    );
    assert!(
        !stderr.contains("=== RUN   TestTestdata"),
        "only the failed test reruns:\n{stderr}"
    );
    // Host mode: the test binary where it ran (the guest has no Go), and the host's go test line.
    assert!(
        stdout.contains("./runtime.test -test.v -test.count=1 '-test.run=^(TestFailsOnRequest)$'"),
        "{stdout}"
    );
    assert!(
        stdout.contains(
            "go test -v -count=1 '-run=^(TestFailsOnRequest)$' example.com/efwdemo/runtime"
        ),
        "{stdout}"
    );
    // repro leaves the VM up for a closer look; `down` stops it.
    let mut c = harness(d.path(), &cfg);
    c.arg("down");
    let (code, _, stderr) = run(c, Duration::from_secs(120));
    assert_eq!(code, 0, "{stderr}");
    assert!(qemu_processes(&d.path().display().to_string()).is_empty());
}

/// A Linux kernel as the target: `[efw] source = "none"` installs nothing and leaves
/// CI_EFW_VERSION unset; `[vm] setup` runs after the cold boot and again after the snapshot
/// restore, before the suites (the Go test checks what setup mounted).
#[test]
fn kernel_target_without_efw_runs_setup_after_every_boot_and_restore() {
    let d = tempfile::tempdir().unwrap();
    let module = d.path().join("kmod");
    std::fs::create_dir_all(module.join("setup")).unwrap();
    std::fs::write(
        module.join("go.mod"),
        "module example.com/kmod\n\ngo 1.21\n",
    )
    .unwrap();
    std::fs::write(
        module.join("setup/setup_test.go"),
        r#"package setup

import (
	"os"
	"strings"
	"testing"
)

func TestSetupRanBeforeTheSuite(t *testing.T) {
	mounts, err := os.ReadFile("/proc/mounts")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(mounts), " /mnt/setup tmpfs ") {
		t.Fatalf("[vm] setup did not mount /mnt/setup:\n%s", mounts)
	}
}

func TestNoEfwVersion(t *testing.T) {
	if v, ok := os.LookupEnv("CI_EFW_VERSION"); ok {
		t.Fatalf("CI_EFW_VERSION=%q, want unset with [efw] source = none", v)
	}
}
"#,
    )
    .unwrap();
    let cfg = d.path().join("kernel.toml");
    std::fs::write(
        &cfg,
        format!(
            r#"[efw]
source = "none"

[vm]
os = "linux"
name = "kernel"
user = "root"
memory_mib = 1024
cpus = 2
boot_timeout = 300
setup = ["mkdir -p /mnt/setup", "mountpoint -q /mnt/setup || mount -t tmpfs setup /mnt/setup"]

[extensions]

[suites.kernel]
path = "{}"
packages = ["./..."]
flags = ["-count=1"]
package_timeout = 300
"#,
            module.display()
        ),
    )
    .unwrap();
    for (i, want) in ["booted", "restored snapshot 'ready'"].iter().enumerate() {
        let out = d.path().join(format!("results{i}"));
        let mut c = harness(d.path(), &cfg);
        c.args(["--json", "run", "--out"]).arg(&out);
        let (code, stdout, stderr) = run(c, LIMIT);
        assert_eq!(code, 0, "stdout:\n{stdout}\nstderr:\n{stderr}");
        let doc: serde_json::Value =
            serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("{e}: {stdout}"));
        assert_eq!(doc["suites"][0]["summary"]["totals"]["passed"], 2, "{doc}");
        assert!(
            phase(&doc, "provision")["detail"]
                .as_str()
                .unwrap()
                .starts_with(want),
            "{doc}"
        );
        assert_eq!(
            phase(&doc, "install")["detail"],
            "skipped: [efw] source = \"none\"",
            "{doc}"
        );
        assert!(
            doc["phases"]
                .as_array()
                .unwrap()
                .iter()
                .all(|p| p["phase"] != "artifacts"),
            "{doc}"
        );
    }
    assert!(qemu_processes(&d.path().display().to_string()).is_empty());
}

/// Crash forensics for real, in one boot: the fixture's `hang` hits its timeout and leaves its
/// goroutine dump and its core file (`core_dumps`); `kpanic` panics the guest kernel (pvpanic → QMP GUEST_PANICKED), is reported
/// "guest crashed (kernel panic)" well before its timeout, the guest reboots (`panic=-1`) and
/// the run goes on: `pass` runs after the crash, with the efW-shaped runtime of the Linux demo
/// reinstalled (the guest's disk is RAM). The serial tail is kept; the run fails.
#[test]
fn kernel_panic_is_reported_and_the_run_continues_after_the_reboot() {
    let d = tempfile::tempdir().unwrap();
    let cfg = d.path().join("crash.toml");
    std::fs::write(
        &cfg,
        format!(
            r#"[efw]
source = "file:{}"

[install]
method = "setup-sh"
verify_command = 'test -f "$EFW_RUNTIME_DIR/bin/ebpfapi"'

[vm]
os = "linux"
name = "crash"
user = "root"
memory_mib = 1024
cpus = 2
boot_timeout = 300

[extensions]

[suites.crash]
path = "{}"
packages = ["./hang", "./kpanic", "./pass"]
flags = ["-count=1"]
package_timeout = 45
parallel = 1
rerun_fails = 0
core_dumps = true

[suites.crash.env]
{} = "1"
"#,
            demo_build().display(),
            testsupport::gomod::path().display(),
            testsupport::gomod::KPANIC_ENV,
        ),
    )
    .unwrap();
    let out = d.path().join("results");
    let mut c = harness(d.path(), &cfg);
    c.args(["run", "--out"]).arg(&out);
    let t0 = Instant::now();
    let (code, stdout, stderr) = run(c, LIMIT);
    let took = t0.elapsed();
    let all = format!("took {took:?}\nstdout:\n{stdout}\nstderr:\n{stderr}");
    assert_eq!(code, 2, "a crash fails the run\n{all}");
    assert!(
        stderr.contains("harness: guest crashed (kernel panic)"),
        "the console says so as it happens\n{all}"
    );
    let summary = json(&out.join("tests/summary.json"));
    assert_eq!(
        summary["run"]["crashes"],
        serde_json::json!(["kernel panic"]),
        "{all}\n{summary}"
    );
    let pkg = |n: &str| {
        summary["packages"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["name"] == testsupport::gomod::pkg(n))
            .unwrap_or_else(|| panic!("no {n}: {summary}"))
            .clone()
    };
    let kp = pkg("kpanic");
    assert_eq!(kp["error"], "guest crashed (kernel panic)", "{summary}");
    assert!(
        kp["elapsed"].as_f64().unwrap_or(0.0) < 45.0,
        "reported well before the package timeout: {kp}"
    );
    assert!(
        pkg("pass")["error"].is_null(),
        "pass ran after the reboot: {summary}"
    );
    assert_eq!(summary["totals"]["passed"], 11, "{summary}");
    let md = std::fs::read_to_string(out.join("tests/summary.md")).unwrap();
    assert!(md.contains("guest crashed (kernel panic)"), "{md}");
    let junit = std::fs::read_to_string(out.join("tests/junit.xml")).unwrap();
    assert!(junit.contains("guest crashed (kernel panic)"), "{junit}");
    // The crash's record: the serial console's tail with the panic, and crash-1.json.
    let serial = std::fs::read_to_string(out.join("dumps/crash-1-serial.log"))
        .unwrap_or_else(|e| panic!("no serial tail: {e}\n{all}"));
    assert!(serial.contains("Kernel panic"), "{serial}");
    let rec = json(&out.join("dumps/crash-1.json"));
    assert_eq!(rec["reason"], "kernel panic", "{rec}");
    // The guest's disk is RAM: the reboot lost the runtime, and the recovery put it back.
    assert!(
        rec["recovery"]
            .as_str()
            .unwrap_or_default()
            .contains("reinstalled the efW runtime (the reboot lost it)"),
        "{rec}"
    );
    // The hung test's goroutine dump and (core_dumps) its core file, fetched from the guest.
    let dumps: Vec<_> = std::fs::read_dir(out.join("tests/dumps"))
        .unwrap_or_else(|e| panic!("no tests/dumps: {e}\n{all}"))
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(dumps.len(), 2, "{dumps:?}\n{all}");
    let is = |p: &std::path::PathBuf, end: &str| p.to_string_lossy().ends_with(end);
    let core = dumps.iter().find(|p| is(p, ".core")).expect("a core file");
    let core = std::fs::read(core).unwrap();
    assert!(
        core.starts_with(b"\x7fELF") && core.len() > 64 && core[16] == 4,
        "an ELF core"
    );
    let g = dumps.iter().find(|p| is(p, ".goroutines.txt")).unwrap();
    let g = std::fs::read_to_string(g).unwrap();
    assert!(
        g.contains("SIGQUIT: quit") && g.contains("hang.TestHangs"),
        "{g}"
    );
    assert!(qemu_processes(&d.path().display().to_string()).is_empty());
}

/// The Linux demo's efW-shaped build (a `file:` source).
fn demo_build() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/linux-demo/build")
}
