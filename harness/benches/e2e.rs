//! Cold vs warm end-to-end time of the Linux demo (`harness run`), with the per-phase breakdown,
//! then `harness repro` of one failing test on a warm VM.
//!
//! Cold: an empty state and cache dir (accelerator probe, disk, boot, snapshot save, download,
//! install). Warm: the same dirs again (snapshot restore, cached build). Runs `BENCH_RUNS` warm
//! runs (default 3) and prints each phase's median. Repro: a run of the demo with one test made
//! to fail (`EFW_DEMO_FAIL`), one `repro` that brings the VM up again, then `BENCH_RUNS` repros on
//! that warm VM, each timed from start to exit (target: at most 5 s under TCG).
//!
//! `cargo bench -p harness --bench e2e`

use std::path::Path;
use std::process::Command;
use std::time::Instant;

use testsupport::demo::{DemoEnv, repo_root};

fn harness(env: &DemoEnv, dir: &Path, config: &Path) -> Command {
    let mut c = Command::new(testsupport::guest::target_dir().join("release/harness"));
    c.current_dir(repo_root())
        .env("HARNESS_STATE_DIR", dir.join("state"))
        .env("HARNESS_CACHE_DIR", dir.join("cache"))
        .arg("-q")
        .arg("-c")
        .arg(config);
    for (k, v) in env.env() {
        c.env(k, v);
    }
    c
}

fn run(env: &DemoEnv, dir: &Path, out: &Path) -> (f64, serde_json::Value) {
    let t0 = Instant::now();
    let mut c = harness(env, dir, &env.config());
    c.args(["run", "--out"]).arg(out);
    let status = c.status().expect("running harness");
    let secs = t0.elapsed().as_secs_f64();
    assert!(status.success(), "harness run failed: {status}");
    let phases: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("phases.json")).unwrap()).unwrap();
    (secs, phases)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

fn phase_secs(p: &serde_json::Value, name: &str) -> f64 {
    p["phases"]
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["phase"] == name)
        .and_then(|x| x["seconds"].as_f64())
        .unwrap_or(0.0)
}

const PHASES: &[&str] = &[
    "provision",
    "artifacts",
    "install",
    "doctor",
    "suites",
    "results",
    "down",
];

fn main() {
    // cargo bench passes --bench; nothing else to parse.
    let runs = testsupport::bench::env_count("BENCH_RUNS", 3);
    testsupport::bench::release_harness();
    let env = DemoEnv::start().expect("demo environment");
    let dir = tempfile::tempdir().unwrap();
    let (cold, cold_p) = run(&env, dir.path(), &dir.path().join("r0"));
    let mut warm = Vec::new();
    let mut warm_p = Vec::new();
    for i in 0..runs {
        let (s, p) = run(&env, dir.path(), &dir.path().join(format!("r{}", i + 1)));
        warm.push(s);
        warm_p.push(p);
    }
    println!("harness run, Linux demo guest under QEMU (TCG unless KVM works), {runs} warm runs");
    println!("{:<10} {:>9} {:>13}", "phase", "cold (s)", "warm med (s)");
    for p in PHASES {
        let w = median(warm_p.iter().map(|x| phase_secs(x, p)).collect());
        println!("{p:<10} {:>9.1} {w:>13.1}", phase_secs(&cold_p, p));
    }
    println!("{:<10} {cold:>9.1} {:>13.1}", "total", median(warm.clone()));
    println!("warm runs: {warm:.1?}");

    // repro of the one failing test, on a VM left up by the first repro.
    let text = std::fs::read_to_string(env.config()).unwrap();
    let failing = dir.path().join("failing.toml");
    std::fs::write(
        &failing,
        format!("{text}\n[suites.demo.env]\nEFW_DEMO_FAIL = \"yes\"\n"),
    )
    .unwrap();
    let out = dir.path().join("failing");
    let status = harness(&env, dir.path(), &failing)
        .args(["run", "--rerun-fails", "0", "--out"])
        .arg(&out)
        .status()
        .unwrap();
    assert_eq!(status.code(), Some(1), "the failing run fails");
    let repro = |i: usize| {
        let t0 = Instant::now();
        let o = harness(&env, dir.path(), &failing)
            .arg("repro")
            .arg(&out)
            .output()
            .unwrap();
        let secs = t0.elapsed().as_secs_f64();
        let stderr = String::from_utf8_lossy(&o.stderr);
        assert!(
            stderr.contains("failing on request (EFW_DEMO_FAIL=yes)"),
            "repro {i} reproduced nothing: {stderr}"
        );
        secs
    };
    let first = repro(0);
    let reps: Vec<f64> = (1..=runs).map(repro).collect();
    let _ = harness(&env, dir.path(), &failing).arg("down").status();
    println!(
        "repro of one failing test: first (brings the VM up) {first:.1} s; warm VM median {:.1} s (target <= 5 s), runs {reps:.1?}",
        median(reps.clone())
    );
}
