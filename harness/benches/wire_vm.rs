//! Uploads into a real guest (issue 15): harness's own SSH transport and the suites phase, into
//! the Linux demo guest under QEMU (TCG on this machine), against `tar c | ssh tar x` by hand.
//!
//! The loopback bench (`cargo bench -p suites --bench wire`) cannot show this: its "guest" is
//! the host's own sshd and its executor the `ssh` CLI. Here everything runs through the release
//! `harness` binary against the VM, as a user would:
//! - the module of `testsupport::wiremod` (PACKAGES, default 20 packages, ~209 MB of test
//!   binaries and testdata) is cross-compiled by hand with `go test -c` into a staging tree;
//! - per iteration, in turn into fresh guest dirs: by hand `tar c | ssh tar x` (the system
//!   client with its default cipher, as `harness ssh --print` builds it); the same with the
//!   cipher harness prefers (`-c aes128-gcm@openssh.com`); by hand with stream compression
//!   (`tar c | gzip -1 | ssh 'gunzip | tar x'`); `harness cp` of the same tree (libssh2, the
//!   transport every harness upload uses);
//! - then `harness test` of the module in host mode, cold (the guest's upload store emptied)
//!   and warm (the same again), with summary.json's sub-phase `timings` and `uploaded_bytes`.
//!
//! Run: `cargo bench -p harness --bench wire_vm` (ITERATIONS=N, default 3; medians reported).
//! Target: `harness cp` ≥ 1.0× by-hand `tar | ssh` (ratio = by-hand seconds / harness seconds).

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Instant;

use testsupport::demo::{DemoEnv, repo_root};

fn harness(env: &DemoEnv, dir: &Path) -> Command {
    let mut c = Command::new(testsupport::guest::target_dir().join("release/harness"));
    c.current_dir(repo_root())
        .env("HARNESS_STATE_DIR", dir.join("state"))
        .env("HARNESS_CACHE_DIR", dir.join("cache"))
        .arg("-q")
        .arg("-c")
        .arg(dir.join("wire.toml"));
    for (k, v) in env.env() {
        c.env(k, v);
    }
    c
}

/// Runs `c`, panicking with its output when it fails; returns its wall time in seconds.
fn timed(c: &mut Command, what: &str) -> f64 {
    let t = Instant::now();
    let out = c.stdin(Stdio::null()).output().unwrap();
    assert!(
        out.status.success(),
        "{what} failed ({}): {}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    t.elapsed().as_secs_f64()
}

fn bash(script: &str) -> Command {
    let mut c = Command::new("bash");
    c.args(["-c", &format!("set -euo pipefail; {script}")]);
    c
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}

/// Cross-compiles every package's test binary into `stage/<pkg>/`, next to a copy of its testdata.
fn stage(module: &Path, names: &[String], stage: &Path) -> f64 {
    let t = Instant::now();
    for n in names {
        let out = stage.join(n);
        std::fs::create_dir_all(&out).unwrap();
        timed(
            Command::new("go")
                .current_dir(module)
                .env("GOOS", "linux")
                .env("GOARCH", "amd64")
                .env("CGO_ENABLED", "0")
                .args(["test", "-c", "-o"])
                .arg(out.join(format!("{n}.test")))
                .arg(format!("./{n}")),
            "go test -c",
        );
        timed(
            Command::new("cp")
                .arg("-a")
                .arg(module.join(n).join("testdata"))
                .arg(&out),
            "copying testdata",
        );
    }
    t.elapsed().as_secs_f64()
}

struct Suite {
    wall: f64,
    build: f64,
    upload: f64,
    run: f64,
    bytes: u64,
}

fn suite(env: &DemoEnv, dir: &Path, out: &Path) -> Suite {
    let wall = timed(
        harness(env, dir).args(["test", "wire", "--out"]).arg(out),
        "harness test",
    );
    let s: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("summary.json")).unwrap()).unwrap();
    assert_eq!(s["totals"]["failed"], 0, "{s}");
    let t = |k: &str| s["timings"][k].as_f64().unwrap_or(0.0);
    Suite {
        wall,
        build: t("build"),
        upload: t("upload"),
        run: t("run"),
        bytes: s["uploaded_bytes"].as_u64().unwrap_or(0),
    }
}

fn main() {
    let iterations = testsupport::bench::env_count("ITERATIONS", 3);
    let packages = testsupport::bench::env_count("PACKAGES", 20);
    testsupport::bench::release_harness();
    let env = DemoEnv::start().expect("demo environment");
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let module = d.join("module");
    std::fs::create_dir_all(&module).unwrap();
    let names = testsupport::wiremod::generate(&module, packages);
    // The demo's VM with room for three copies of the tree in its RAM disk, and the module.
    let demo = std::fs::read_to_string(env.config()).unwrap();
    let demo = demo.replace("memory_mib = 1024", "memory_mib = 2048");
    assert!(
        demo.contains("memory_mib = 2048"),
        "the demo config changed"
    );
    std::fs::write(
        d.join("wire.toml"),
        format!(
            "{demo}\n[suites.wire]\npath = \"{}\"\npackages = [\"./...\"]\nflags = [\"-count=1\"]\nmode = \"host\"\n",
            module.display()
        ),
    )
    .unwrap();
    let staged = d.join("stage");
    let build = stage(&module, &names, &staged);
    let bytes: u64 = hostproc::walk(&staged)
        .into_iter()
        .filter_map(Result::ok)
        .filter(|e| e.file_type().is_file())
        .map(|e| e.metadata().unwrap().len())
        .sum();
    let up = timed(harness(&env, d).arg("up"), "harness up");
    let out = harness(&env, d).args(["ssh", "--print"]).output().unwrap();
    assert!(out.status.success(), "harness ssh --print");
    let ssh = String::from_utf8(out.stdout).unwrap().trim().to_string();
    let clean = || {
        timed(
            &mut bash(&format!("{ssh} 'rm -rf /tmp/wire-* /tmp/harness'")),
            "cleaning the guest",
        )
    };
    let src = staged.display();
    let (mut hand, mut gcm, mut gz, mut cp) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let (mut cold, mut warm) = (Vec::new(), Vec::new());
    for i in 0..iterations {
        clean();
        hand.push(timed(
            &mut bash(&format!(
                "tar c -C {src} . | {ssh} 'mkdir -p /tmp/wire-hand && tar x -C /tmp/wire-hand'"
            )),
            "tar | ssh",
        ));
        gcm.push(timed(
            &mut bash(&format!(
                "tar c -C {src} . | {ssh} -c aes128-gcm@openssh.com 'mkdir -p /tmp/wire-gcm && tar x -C /tmp/wire-gcm'"
            )),
            "tar | ssh -c aes128-gcm",
        ));
        clean();
        gz.push(timed(
            &mut bash(&format!(
                "tar c -C {src} . | gzip -1 | {ssh} 'mkdir -p /tmp/wire-gz && gunzip | tar x -C /tmp/wire-gz'"
            )),
            "tar | gzip | ssh",
        ));
        clean();
        cp.push(timed(
            harness(&env, d)
                .arg("cp")
                .arg(&staged)
                .arg("guest:/tmp/wire-cp"),
            "harness cp",
        ));
        clean();
        cold.push(suite(&env, d, &d.join(format!("cold{i}"))));
        warm.push(suite(&env, d, &d.join(format!("warm{i}"))));
        eprintln!(
            "iteration {i}: by hand {:.1} s, aes128-gcm {:.1} s, gzip {:.1} s, harness cp {:.1} s, suite cold {:.1} s (upload {:.1} s, {} B), warm {:.1} s ({} B)",
            hand[i],
            gcm[i],
            gz[i],
            cp[i],
            cold[i].wall,
            cold[i].upload,
            cold[i].bytes,
            warm[i].wall,
            warm[i].bytes
        );
    }
    let _ = harness(&env, d).arg("down").status();
    let pairs: Vec<String> = hand
        .iter()
        .zip(&cp)
        .map(|(h, c)| format!("{:.2}", h / c))
        .collect();
    let (h, a, g, c) = (median(hand), median(gcm), median(gz), median(cp));
    let mb = bytes as f64 / 1e6;
    println!(
        "upload of {mb:.0} MB ({packages} test binaries + testdata) into the Linux demo guest, {iterations} iterations, medians"
    );
    println!("harness up {up:.1} s; by-hand go test -c of every package {build:.1} s");
    println!("| case | seconds | MB/s | vs tar|ssh |");
    println!("|---|---:|---:|---:|");
    for (name, s) in [
        ("by hand: tar c | ssh tar x", h),
        (
            "by hand, the cipher harness prefers: ssh -c aes128-gcm@openssh.com",
            a,
        ),
        ("by hand: tar c | gzip -1 | ssh 'gunzip | tar x'", g),
        ("harness cp (libssh2)", c),
    ] {
        println!("| {name} | {s:.1} | {:.1} | {:.2}× |", mb / s, h / s);
    }
    println!("harness cp vs tar|ssh per iteration: {}", pairs.join(", "));
    let m = |v: &[Suite], f: fn(&Suite) -> f64| median(v.iter().map(f).collect());
    println!("| case | wall s | build | upload | run | sent |");
    println!("|---|---:|---:|---:|---:|---:|");
    for (name, v) in [("harness test, cold", &cold), ("harness test, warm", &warm)] {
        println!(
            "| {name} | {:.1} | {:.1} | {:.1} | {:.1} | {:.0} MB |",
            m(v, |s| s.wall),
            m(v, |s| s.build),
            m(v, |s| s.upload),
            m(v, |s| s.run),
            m(v, |s| s.bytes as f64) / 1e6
        );
    }
}
