//! The suites phase at the speed of the wire (issue 15): harness host mode against the same work
//! done by hand, on a generated module shaped like ebpf-go's.
//!
//! At bench time a Go module is generated in a temp dir: `PACKAGES` (default 20) test packages,
//! each embedding a random payload (`//go:embed`) so its test binary is 5–15 MB, with a testdata
//! dir the tests read. A real sshd on loopback (`testsupport::sshd`) stands in for the guest.
//! Measured side by side in one run:
//! - by hand, in sequence: `go test -c` every package, `tar c | ssh tar x` binaries + testdata,
//!   then run each binary over its own ssh session;
//! - harness host mode, cold (empty guest store) and warm (second run, store filled), with the
//!   sub-phase timings and bytes from summary.json;
//! - the upload alone: the harness's store upload (`cas::upload`) of the by-hand staging tree
//!   against `tar c | ssh tar x` of the same bytes.
//!
//! Run: `cargo bench -p suites --bench wire` (ITERATIONS=N, default 2 to stay under ~4 minutes on
//! 2 cores; the median is reported, which of 2 is the slower;
//! PACKAGES=N). Targets: cold suite ≤ 0.7× by hand; upload ≥ 1.0× tar|ssh.

#[path = "../tests/support/ssh_exec.rs"]
mod ssh_exec;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Instant;

use ssh_exec::{SshCliExecutor, sh_quote};
use suites::{Provenance, RunMode, RunOptions, SuiteConfig};
use testsupport::sshd::Sshd;
use testsupport::wiremod::generate;

const MB: f64 = 1_000_000.0;

/// Runs a command to completion, panicking with its stderr when it fails.
fn check(cmd: &mut Command, what: &str) {
    let out = cmd.stdout(Stdio::null()).output().unwrap();
    assert!(
        out.status.success(),
        "{what} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn ssh(base: &Command, remote: &str) -> Command {
    let mut c = Command::new(base.get_program());
    c.args(base.get_args()).arg(remote);
    c
}

/// `tar c -C stage . | ssh 'mkdir -p remote && tar x -C remote'`; seconds.
fn tar_ssh(base: &Command, stage: &Path, remote: &str) -> f64 {
    let t0 = Instant::now();
    let mut tar = Command::new("tar")
        .arg("-C")
        .arg(stage)
        .args(["-cf", "-", "."])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let r = sh_quote(remote);
    let st = ssh(base, &format!("mkdir -p {r} && tar -C {r} -xf -"))
        .stdin(Stdio::from(tar.stdout.take().unwrap()))
        .status()
        .unwrap();
    assert!(tar.wait().unwrap().success() && st.success(), "tar | ssh");
    t0.elapsed().as_secs_f64()
}

/// One by-hand run: build, upload, run; seconds of each.
fn by_hand(module: &Path, names: &[String], base: &Command, stage: &Path, remote: &str) -> Phases {
    let _ = std::fs::remove_dir_all(stage);
    let t0 = Instant::now();
    for n in names {
        let out = stage.join(n).join(format!("{n}.test"));
        check(
            Command::new("go")
                .current_dir(module)
                .args(["test", "-c", "-o"])
                .arg(&out)
                .arg(format!("./{n}")),
            "go test -c",
        );
    }
    let build = t0.elapsed().as_secs_f64();
    for n in names {
        check(
            Command::new("cp")
                .arg("-a")
                .arg(module.join(n).join("testdata"))
                .arg(stage.join(n)),
            "cp testdata",
        );
    }
    let upload = tar_ssh(base, stage, remote);
    let t1 = Instant::now();
    for n in names {
        let dir = sh_quote(&format!("{remote}/{n}"));
        check(
            &mut ssh(
                base,
                &format!("cd {dir} && ./{n}.test -test.count=1 -test.v"),
            ),
            "running a test binary",
        );
    }
    let run = t1.elapsed().as_secs_f64();
    let sizes: Vec<u64> = names
        .iter()
        .map(|n| std::fs::metadata(stage.join(n).join(format!("{n}.test"))).map_or(0, |m| m.len()))
        .collect();
    eprintln!(
        "test binaries {:.1}-{:.1} MB",
        *sizes.iter().min().unwrap() as f64 / MB,
        *sizes.iter().max().unwrap() as f64 / MB
    );
    let mut timings = BTreeMap::from([
        ("build".to_string(), build),
        ("upload".to_string(), upload),
        ("run".to_string(), run),
    ]);
    timings.retain(|_, v| *v > 0.0);
    Phases {
        total: build + upload + run,
        min: 0.0,
        timings,
        bytes: suites::cas::tree_bytes(stage),
        tests: 4 * names.len(),
    }
}

/// What one case took.
#[derive(Clone, Default)]
struct Phases {
    total: f64,
    min: f64,
    timings: BTreeMap<String, f64>,
    bytes: u64,
    tests: usize,
}

/// The median run, with `min` set to the fastest run's total.
fn median(mut v: Vec<Phases>) -> Phases {
    v.sort_by(|a, b| a.total.total_cmp(&b.total));
    Phases {
        min: v[0].total,
        ..v[v.len() / 2].clone()
    }
}

fn main() {
    let iterations = testsupport::bench::env_count("ITERATIONS", 2).max(1);
    let packages = testsupport::bench::env_count("PACKAGES", 20);
    let work = tempfile::tempdir().unwrap();
    let module = work.path().join("module");
    std::fs::create_dir_all(&module).unwrap();
    let t_gen = Instant::now();
    let names = generate(&module, packages);
    let goroot = Command::new("go").args(["env", "GOROOT"]).output().unwrap();
    let path_env = format!(
        "{}/bin:/usr/local/bin:/usr/bin:/bin",
        String::from_utf8_lossy(&goroot.stdout).trim()
    );
    // Fill the compile cache once, so no case pays for compiling what the others reuse.
    check(
        Command::new("go")
            .current_dir(&module)
            .args(["test", "-count=1", "-run", "^$", "./..."]),
        "warm-up go test",
    );
    eprintln!(
        "generated {packages} packages and warmed the build cache in {:.1}s; {iterations} iteration(s)",
        t_gen.elapsed().as_secs_f64()
    );

    let sshd = Sshd::start().expect("sshd");
    let base = sshd.ssh_command().unwrap();
    let remote_root = work.path().join("remote").display().to_string();
    let control = work.path().to_path_buf();
    let new_ssh = |remote: &str| {
        SshCliExecutor::from_command(
            &base,
            remote,
            vec![("PATH".into(), path_env.clone())],
            &control,
        )
    };
    let harness = |remote: &str| {
        let suite = SuiteConfig {
            path: Some(module.clone()),
            packages: names.iter().map(|n| format!("./{n}")).collect(),
            flags: vec!["-count=1".to_string()],
            mode: RunMode::Host,
            ..SuiteConfig::default()
        };
        let opts = RunOptions::new("wire", suite, &module);
        let t0 = Instant::now();
        let mut obs = |_: &suites::RunEvent<'_>, _: &suites::Execution| {};
        let rec = suites::run(&mut new_ssh(remote), &opts, &mut obs).unwrap();
        let out = tempfile::tempdir().unwrap();
        let w = suites::write(out.path(), &rec, &Provenance::default()).unwrap();
        let s = w.summary;
        assert_eq!(s.totals.failed, 0, "the generated suite passes");
        Phases {
            total: t0.elapsed().as_secs_f64(),
            min: 0.0,
            timings: s.timings,
            bytes: s.uploaded_bytes,
            tests: s.totals.attempts,
        }
    };

    let stage = work.path().join("stage");
    let (mut hand, mut cold, mut warm, mut up_tar, mut up_cas) =
        (vec![], vec![], vec![], vec![], vec![]);
    for it in 0..iterations {
        let r = format!("{remote_root}/{it}");
        hand.push(by_hand(
            &module,
            &names,
            &base,
            &stage,
            &format!("{r}/hand"),
        ));
        eprintln!("iteration {it}: by hand {:.1}s", hand.last().unwrap().total);
        cold.push(harness(&format!("{r}/harness")));
        warm.push(harness(&format!("{r}/harness")));
        eprintln!(
            "iteration {it}: harness cold {:.1}s, warm {:.1}s",
            cold.last().unwrap().total,
            warm.last().unwrap().total
        );
        up_tar.push(tar_ssh(&base, &stage, &format!("{r}/up-tar")));
        let mut exec = new_ssh(&format!("{r}/up-cas"));
        let dest = format!("{r}/up-cas/tree");
        let t0 = Instant::now();
        let mut sync = suites::cas::TreeSync::open(&mut exec, &dest).unwrap();
        assert!(sync.is_some(), "a Linux target keeps a store");
        suites::cas::upload(&mut exec, sync.as_mut(), &stage, &dest, &|_| false, false).unwrap();
        up_cas.push(t0.elapsed().as_secs_f64());
    }
    report(
        &median(hand),
        &median(cold),
        &median(warm),
        median_f(up_tar),
        median_f(up_cas),
        suites::cas::tree_bytes(&stage),
    );
}

fn median_f(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn report(hand: &Phases, cold: &Phases, warm: &Phases, up_tar: f64, up_cas: f64, bytes: u64) {
    let cell = |p: &Phases, k: &str| p.timings.get(k).map_or("-".into(), |t| format!("{t:.2}"));
    println!(
        "{:<22} {:>8} {:>7} {:>7} {:>7} {:>7} {:>7} {:>9} {:>6}",
        "case", "total s", "min s", "list", "build", "upload", "run", "sent MB", "tests"
    );
    for (name, p) in [
        ("by hand, sequential", hand),
        ("harness cold", cold),
        ("harness warm", warm),
    ] {
        println!(
            "{:<22} {:>8.2} {:>7.2} {:>7} {:>7} {:>7} {:>7} {:>9.1} {:>6}",
            name,
            p.total,
            p.min,
            cell(p, "list"),
            cell(p, "build"),
            cell(p, "upload"),
            cell(p, "run"),
            p.bytes as f64 / MB,
            p.tests
        );
    }
    println!("(harness sub-phases overlap: each is the span from first busy to last busy)");
    let verdict = |ok: bool| if ok { "met" } else { "MISSED" };
    let r_cold = cold.total / hand.total;
    println!(
        "cold suite / by hand: {r_cold:.2}x (target <= 0.70x: {}); warm / by hand: {:.2}x",
        verdict(r_cold <= 0.7),
        warm.total / hand.total
    );
    let mb = bytes as f64 / MB;
    let (t_rate, c_rate) = (mb / up_tar, mb / up_cas);
    println!(
        "upload alone, {mb:.1} MB: tar|ssh {up_tar:.2}s ({t_rate:.0} MB/s), harness store \
         {up_cas:.2}s ({c_rate:.0} MB/s): {:.2}x (target >= 1.00x: {})",
        c_rate / t_rate,
        verdict(c_rate >= t_rate)
    );
}
