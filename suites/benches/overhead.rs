//! Overhead of `harness test` (the suites runner + results) against plain `go test -json`.
//!
//! Compares, on the same module and packages, with a real sshd on loopback
//! (`testsupport::sshd`) standing in for the guest:
//! - plain:        `ssh host 'cd src && go test -json PKGS'` (source already on the target)
//! - guest mode:   suites::run over SSH: upload the source, `go test -json`, parse, write results
//! - host mode:    suites::run over SSH: cross-compile on the host, upload binaries + testdata,
//!   run each binary, test2json on the host, write results
//! - the same three on the local machine (LocalExecutor), for reference.
//!
//! Run: `cargo bench -p suites --bench overhead` (ITERATIONS=N, default 3, median reported).
//! Another module: `BENCH_MODULE=/path/to/module BENCH_PACKAGES="./a ./b"`.
//! Target: harness ≤ plain × 1.05 + 1 s. `BENCH_PHASES=1` prints where each harness run spent its time.

#[path = "../tests/support/ssh_exec.rs"]
mod ssh_exec;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use ssh_exec::{SshCliExecutor, sh_quote};
use suites::exec::Executor;
use suites::{LocalExecutor, Provenance, RunMode, RunOptions, SuiteConfig};
use testsupport::gomod;
use testsupport::sshd::Sshd;

fn go_env(key: &str) -> String {
    let out = Command::new("go")
        .args(["env", key])
        .output()
        .expect("go on PATH");
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// A measured case and the closure that runs it once (seconds, test attempts).
type Runner<'a> = Box<dyn FnMut() -> (f64, usize) + 'a>;

struct Case {
    name: &'static str,
    times: Vec<f64>,
    tests: usize,
}

fn main() {
    let iterations = testsupport::bench::env_count("ITERATIONS", 3);
    let module: PathBuf = std::env::var("BENCH_MODULE")
        .map(PathBuf::from)
        .unwrap_or_else(|_| gomod::path());
    let packages: Vec<String> = std::env::var("BENCH_PACKAGES")
        .map(|s| s.split_whitespace().map(String::from).collect())
        .unwrap_or_else(|_| {
            [
                "./pass",
                "./fail",
                "./skip",
                "./panicky",
                "./bigout",
                "./flaky",
                "./notests",
            ]
            .map(String::from)
            .to_vec()
        });
    let flags = vec!["-short".to_string(), "-count=1".to_string()];

    let work = tempfile::tempdir().unwrap();
    let state = work.path().join("state");
    std::fs::create_dir_all(&state).unwrap();
    let env = BTreeMap::from([(gomod::STATE_ENV.to_string(), state.display().to_string())]);
    let path_env = format!("{}/bin:/usr/local/bin:/usr/bin:/bin", go_env("GOROOT"));

    let sshd = Sshd::start().expect("sshd");
    let ssh_base = sshd.ssh_command().unwrap();
    let remote_base = work.path().join("remote").display().to_string();
    let control = work.path().to_path_buf();
    let new_ssh = || {
        SshCliExecutor::from_command(
            &ssh_base,
            &remote_base,
            vec![("PATH".into(), path_env.clone())],
            &control,
        )
    };

    // The plain baseline needs the source on the target already.
    let plain_src = format!("{remote_base}/plain-src");
    new_ssh()
        .upload_tree(&module, &plain_src, &|p: &Path| {
            p.components().any(|c| c.as_os_str() == ".git")
        })
        .unwrap();
    let mut envs: Vec<String> = env
        .iter()
        .map(|(k, v)| sh_quote(&format!("{k}={v}")))
        .collect();
    envs.push(sh_quote(&format!("PATH={path_env}")));
    let plain_cmd = format!(
        "cd {} && env {} go test -json {} {}",
        sh_quote(&plain_src),
        envs.join(" "),
        flags.join(" "),
        packages.join(" ")
    );
    let count_tests = |out: &[u8]| {
        String::from_utf8_lossy(out)
            .lines()
            .filter_map(suites::event::parse_line)
            .filter(|e| e.test.is_some() && e.action.is_terminal())
            .count()
    };
    let plain_ssh = || {
        let t0 = Instant::now();
        let out = Command::new(ssh_base.get_program())
            .args(ssh_base.get_args())
            .arg(&plain_cmd)
            .stderr(Stdio::null())
            .output()
            .unwrap();
        (t0.elapsed().as_secs_f64(), count_tests(&out.stdout))
    };
    let plain_local = || {
        let t0 = Instant::now();
        let out = Command::new("go")
            .current_dir(&module)
            .args(["test", "-json"])
            .args(&flags)
            .args(&packages)
            .envs(&env)
            .stderr(Stdio::null())
            .output()
            .unwrap();
        (t0.elapsed().as_secs_f64(), count_tests(&out.stdout))
    };
    let harness = |mode: RunMode, exec: &mut dyn Executor| {
        let suite = SuiteConfig {
            path: Some(module.clone()),
            packages: packages.clone(),
            flags: flags.clone(),
            env: env.clone(),
            mode,
            ..SuiteConfig::default()
        };
        let opts = RunOptions::new("bench", suite, &module);
        let t0 = Instant::now();
        let mut phases: Vec<(String, f64)> = Vec::new();
        let mut obs = |e: &suites::RunEvent<'_>, _: &suites::Execution| {
            if let suites::RunEvent::Phase(p) = e {
                phases.push((p.to_string(), t0.elapsed().as_secs_f64()));
            }
        };
        let rec = suites::run(exec, &opts, &mut obs).unwrap();
        phases.push(("writing results".into(), t0.elapsed().as_secs_f64()));
        let out = tempfile::tempdir().unwrap();
        let w = suites::write(out.path(), &rec, &Provenance::default()).unwrap();
        let total = t0.elapsed().as_secs_f64();
        if std::env::var_os("BENCH_PHASES").is_some() {
            let mut line = format!("  {mode:?}:");
            for (i, (p, t)) in phases.iter().enumerate() {
                let end = phases.get(i + 1).map_or(total, |n| n.1);
                line.push_str(&format!(" {p} {:.2}s", end - t));
            }
            eprintln!("{line} (start {:.2}s)", phases.first().map_or(0.0, |p| p.1));
        }
        (total, w.summary.totals.attempts)
    };

    let mut cases: Vec<(Case, Runner)> = vec![
        (
            Case {
                name: "plain ssh go test -json",
                times: vec![],
                tests: 0,
            },
            Box::new(plain_ssh),
        ),
        (
            Case {
                name: "harness guest mode, ssh",
                times: vec![],
                tests: 0,
            },
            Box::new(|| harness(RunMode::Guest, &mut new_ssh())),
        ),
        (
            Case {
                name: "harness host mode, ssh",
                times: vec![],
                tests: 0,
            },
            Box::new(|| harness(RunMode::Host, &mut new_ssh())),
        ),
        (
            Case {
                name: "plain local go test -json",
                times: vec![],
                tests: 0,
            },
            Box::new(plain_local),
        ),
        (
            Case {
                name: "harness guest mode, local",
                times: vec![],
                tests: 0,
            },
            Box::new(|| {
                harness(
                    RunMode::Guest,
                    &mut LocalExecutor::new(work.path().join("local")),
                )
            }),
        ),
        (
            Case {
                name: "harness host mode, local",
                times: vec![],
                tests: 0,
            },
            Box::new(|| {
                harness(
                    RunMode::Host,
                    &mut LocalExecutor::new(work.path().join("local")),
                )
            }),
        ),
    ];
    eprintln!(
        "module {} packages {:?}; 1 warm-up + {iterations} iterations each",
        module.display(),
        packages
    );
    for (_, f) in cases.iter_mut() {
        f(); // warm-up: build caches, the flaky test's state
    }
    for _ in 0..iterations {
        for (case, f) in cases.iter_mut() {
            let (t, n) = f();
            case.times.push(t);
            case.tests = n;
        }
    }
    let plain_ssh_s = median(cases[0].0.times.clone());
    let plain_local_s = median(cases[3].0.times.clone());
    println!(
        "{:<28} {:>9} {:>9} {:>7} {:>8} {:>7}",
        "case", "median s", "min s", "tests", "ratio", "target"
    );
    for (i, (c, _)) in cases.iter().enumerate() {
        let base = if i < 3 { plain_ssh_s } else { plain_local_s };
        let m = median(c.times.clone());
        let min = c.times.iter().cloned().fold(f64::INFINITY, f64::min);
        let ok = m <= base * 1.05 + 1.0;
        println!(
            "{:<28} {:>9.2} {:>9.2} {:>7} {:>7.2}x {:>7}",
            c.name,
            m,
            min,
            c.tests,
            m / base,
            if i % 3 == 0 {
                "-"
            } else if ok {
                "met"
            } else {
                "MISSED"
            }
        );
    }
}
