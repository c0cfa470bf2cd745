//! End to end: `harness run --vms 2` on two Linux guests (overlays of one golden image) booted
//! side by side, the fixture module's packages split across them by recorded durations, one
//! merged result that keeps who ran what.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use testsupport::demo::repo_root;

#[path = "common/e2e.rs"]
mod e2e;
use e2e::{harness, json, phase, qemu_processes, run};

const FIXTURE: &str = "harness.test/fixture";
const PACKAGES: [&str; 4] = ["pass", "skip", "links", "notests"];

/// A results folder of an "earlier run" whose durations make the split known: `pass` is the
/// long one, so it goes alone to one VM and `skip` + `links` to the other.
fn earlier_run(dir: &Path) -> BTreeMap<String, f64> {
    let durations: BTreeMap<String, f64> = [("pass", 9.0), ("skip", 2.0), ("links", 2.0)]
        .into_iter()
        .map(|(p, s)| (format!("{FIXTURE}/{p}"), s))
        .collect();
    let mut lines = Vec::new();
    for (pkg, secs) in &durations {
        lines.push(format!(r#"{{"Action":"start","Package":"{pkg}"}}"#));
        lines.push(format!(
            r#"{{"Action":"pass","Package":"{pkg}","Elapsed":{secs}}}"#
        ));
    }
    let events: Vec<_> = lines
        .iter()
        .filter_map(|l| suites::event::parse_line(l))
        .collect();
    let rec = suites::RunRecord {
        execution: suites::Execution::from_events(&events),
        events: lines,
        other_output: Vec::new(),
        meta: suites::RunMeta::default(),
        package_dirs: Vec::new(),
        cores: Vec::new(),
    };
    suites::write(&dir.join("tests"), &rec, &suites::Provenance::default()).unwrap();
    durations
}

fn config(dir: &Path) -> std::path::PathBuf {
    config_with(dir, "")
}

/// The test config, with `vm_extra` added to `[vm]`.
fn config_with(dir: &Path, vm_extra: &str) -> std::path::PathBuf {
    let cfg = dir.join("multi.toml");
    let packages: Vec<String> = PACKAGES.iter().map(|p| format!("\"./{p}\"")).collect();
    std::fs::write(
        &cfg,
        format!(
            r#"[efw]
source = "none"

[vm]
os = "linux"
name = "multi"
user = "root"
memory_mib = 1024
cpus = 1
boot_timeout = 900
{}
[extensions]

[suites.fixture]
path = "{}"
packages = [{}]
flags = ["-count=1"]
package_timeout = 300
"#,
            vm_extra,
            repo_root().join("testsupport/gomod").display(),
            packages.join(", ")
        ),
    )
    .unwrap();
    cfg
}

#[test]
fn two_vms_split_the_packages_and_merge_into_one_result() {
    let d = tempfile::tempdir().unwrap();
    let earlier = d.path().join("earlier");
    let durations = earlier_run(&earlier);
    let out = d.path().join("results");
    let mut c = harness(d.path(), &config(d.path()));
    c.args(["run", "--vms", "2", "--shard-durations"])
        .arg(&earlier)
        .arg("--out")
        .arg(&out);
    let (code, stdout, stderr) = run(c, Duration::from_secs(1800));
    assert_eq!(code, 0, "stdout:\n{stdout}\nstderr:\n{stderr}");

    // Plain CI logs: every VM's lines carry its name.
    for name in ["multi-1", "multi-2"] {
        assert!(
            stderr.contains(&format!("[{name}] ==> provision")),
            "{stderr}"
        );
    }

    // What each VM was to run, by the same rule the runner uses.
    let all: Vec<String> = PACKAGES.iter().map(|p| format!("{FIXTURE}/{p}")).collect();
    let mut ran_by: BTreeMap<String, String> = BTreeMap::new();
    for (i, name) in ["multi-1", "multi-2"].iter().enumerate() {
        let shard = suites::Shard {
            index: i as u32 + 1,
            total: 2,
        };
        let want = suites::shard_packages(&all, shard, Some(&durations));
        let s = json(&out.join(name).join("tests/summary.json"));
        let got: Vec<String> = s["packages"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["name"].as_str().unwrap().to_string())
            .collect();
        let mut want_sorted = want.clone();
        want_sorted.sort();
        let mut got_sorted = got.clone();
        got_sorted.sort();
        assert_eq!(got_sorted, want_sorted, "{name}: {s}");
        assert!(
            s["totals"]["tests"].as_u64().unwrap() > 0,
            "{name} ran no tests: {s}"
        );
        assert_eq!(s["provenance"]["extra"]["vm"], *name, "{s}");
        assert_eq!(s["run"]["shard"], format!("{}/2", i + 1));
        for p in got {
            assert!(
                ran_by.insert(p.clone(), name.to_string()).is_none(),
                "{p} ran twice"
            );
        }
        let phases = json(&out.join(name).join("phases.json"));
        assert!(
            phase(&phases, "provision")["detail"]
                .as_str()
                .unwrap()
                .starts_with("booted"),
            "{phases}"
        );
    }
    assert_eq!(ran_by.len(), PACKAGES.len(), "{ran_by:?}");

    // One merged result: every package's tests exactly once (pass 10, skip 2, links 1).
    let merged = json(&out.join("tests/summary.json"));
    let t = &merged["totals"];
    assert_eq!(
        (
            t["tests"].as_u64(),
            t["passed"].as_u64(),
            t["skipped"].as_u64(),
            t["failed"].as_u64(),
            t["packages"].as_u64(),
            t["packages_no_tests"].as_u64()
        ),
        (Some(13), Some(12), Some(1), Some(0), Some(3), Some(1)),
        "{merged}"
    );
    assert!(merged["run"]["shard"].is_null(), "{merged}");
    let events = std::fs::read_to_string(out.join("tests/events.jsonl")).unwrap();
    let mut runs: BTreeMap<(String, String), u32> = BTreeMap::new();
    for l in events.lines() {
        let e: serde_json::Value = serde_json::from_str(l).unwrap();
        if e["Action"] == "run" {
            let key = (
                e["Package"].as_str().unwrap().to_string(),
                e["Test"].as_str().unwrap().to_string(),
            );
            *runs.entry(key).or_default() += 1;
        }
    }
    assert_eq!(runs.len(), 13, "{runs:?}");
    assert!(runs.values().all(|n| *n == 1), "{runs:?}");
    let junit = std::fs::read_to_string(out.join("tests/junit.xml")).unwrap();
    assert_eq!(junit.matches("<testcase").count(), 13, "{junit}");

    // Who ran what: in the merged provenance and in vms.json.
    let extra = &merged["provenance"]["extra"];
    assert_eq!(extra["vms"], "multi-1, multi-2", "{merged}");
    for (pkg, name) in &ran_by {
        let who = extra[format!("vm.{name}")].as_str().unwrap();
        assert!(who.contains(pkg.as_str()), "{name}: {who}");
    }
    let vms = json(&out.join("vms.json"));
    let vms = vms["vms"].as_array().unwrap();
    assert_eq!(vms.len(), 2);
    for v in vms {
        assert!(v["error"].is_null(), "{v}");
        assert_eq!(v["suites"]["fixture"]["ran"], true, "{v}");
    }
    assert!(
        qemu_processes(&d.path().display().to_string()).is_empty(),
        "run must `down` every VM"
    );
}

/// More VMs than the host holds: refused before anything starts, naming the most it can.
#[test]
fn refuses_more_vms_than_the_host_holds() {
    let d = tempfile::tempdir().unwrap();
    let mut c = harness(d.path(), &config(d.path()));
    c.args(["run", "--vms", "4096"]);
    let (code, stdout, stderr) = run(c, Duration::from_secs(60));
    assert_eq!(code, 2, "stdout:\n{stdout}\nstderr:\n{stderr}");
    assert!(
        stderr.contains("--vms 4096 does not fit this host"),
        "{stderr}"
    );
    assert!(stderr.contains("at most"), "{stderr}");
    assert!(stderr.contains("vm.memory_mib"), "{stderr}");
    assert!(!d.path().join("state/vms").exists(), "nothing was created");
}

/// VMs that cannot start (here QEMU itself is missing): each is reported, its shard's packages
/// are recorded as not run, every package once, and the run fails with exit 2.
#[test]
fn vms_that_do_not_start_leave_their_packages_not_run() {
    let d = tempfile::tempdir().unwrap();
    let cfg = config_with(
        d.path(),
        "accel = \"tcg\"\nqemu = \"/nonexistent/qemu-system-x86_64\"\n",
    );
    let out = d.path().join("results");
    let mut c = harness(d.path(), &cfg);
    c.args(["run", "--vms", "2", "--out"]).arg(&out);
    let (code, stdout, stderr) = run(c, Duration::from_secs(300));
    assert_eq!(code, 2, "stdout:\n{stdout}\nstderr:\n{stderr}");
    assert!(stderr.contains("[multi-1] shard 1/2: FAILED"), "{stderr}");
    assert!(stderr.contains("[multi-2] shard 2/2: FAILED"), "{stderr}");
    let merged = json(&out.join("tests/summary.json"));
    assert_eq!(merged["verdict"], "errored", "{merged}");
    let names: Vec<&str> = merged["packages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert_eq!(names.len(), PACKAGES.len(), "{merged}");
    for p in PACKAGES {
        assert_eq!(
            names
                .iter()
                .filter(|n| **n == format!("{FIXTURE}/{p}"))
                .count(),
            1,
            "{merged}"
        );
    }
    assert_eq!(merged["totals"]["passed"], 0, "{merged}");
    assert_eq!(merged["totals"]["packages_errored"], 3, "{merged}");
    let error = merged["run"]["error"].as_str().unwrap();
    assert!(
        error.contains("VM 'multi-1' did not run shard 1/2"),
        "{error}"
    );
    assert!(
        error.contains("VM 'multi-2' did not run shard 2/2"),
        "{error}"
    );
    let phases = json(&out.join("phases.json"));
    assert_eq!(phase(&phases, "vms")["ok"], false, "{phases}");
    assert_eq!(phase(&phases, "merge")["ok"], true, "{phases}");
    let vms = json(&out.join("vms.json"));
    for v in vms["vms"].as_array().unwrap() {
        assert!(v["error"].is_string(), "{v}");
        assert_eq!(v["suites"]["fixture"]["ran"], false, "{v}");
    }
}
