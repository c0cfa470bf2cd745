//! Upload of a 100 MiB / 5,000-file tree over loopback: `Session::upload_tree` (ssh2, one tar
//! stream) vs `tar c | ssh tar x` vs `scp -r`, all against the same real sshd.
//! Targets (issue 4): ≥ 1.0× tar|ssh and ≥ 2× scp -r.
//!
//! Run: `cargo bench -p provision --bench tree_upload` (ROUNDS=n to change the 3 rounds).
//! Prints the best time of each method, MB/s and the ratios.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use provision::session::{Endpoint, GuestOs, RemoteCommand, Session, SessionOptions};
use testsupport::sshd::Sshd;

const FILES: usize = 5000;
const TOTAL: usize = 100 * 1024 * 1024;

fn make_tree(root: &Path) -> u64 {
    let per = TOTAL / FILES;
    let mut bytes = 0u64;
    for i in 0..FILES {
        let p = root.join(format!("d{:02}/f{i:05}.bin", i % 50));
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        let mut x = i as u32 ^ 0x9e37_79b9;
        let v: Vec<u8> = (0..per)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                x as u8
            })
            .collect();
        bytes += v.len() as u64;
        std::fs::write(p, v).unwrap();
    }
    bytes
}

fn run(cmd: &mut Command) {
    let out = cmd.stdin(Stdio::null()).output().expect("spawning");
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        println!("tree_upload: bench");
        return;
    }
    let rounds: usize = std::env::var("ROUNDS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(3);
    let work = tempfile::tempdir().unwrap();
    let src = work.path().join("src");
    let bytes = make_tree(&src);
    let sshd = Sshd::start().expect("starting sshd");
    let state = tempfile::tempdir().unwrap();
    let ep = Endpoint {
        host: sshd.host().into(),
        port: sshd.port(),
        user: sshd.user(),
        identity: Some(sshd.client_key()),
        os: GuestOs::Linux,
    };
    let mut s =
        Session::connect(&ep, &SessionOptions::new(state.path().join("known_hosts"))).unwrap();
    let dest = work.path().join("dest");
    let clean = |s: &mut Session| {
        let out = s
            .exec_capture(&RemoteCommand::new(["rm", "-rf", dest.to_str().unwrap()]))
            .unwrap();
        assert!(out.status.success());
    };
    // Warm the page cache for every method alike.
    run(Command::new("tar")
        .arg("cf")
        .arg("/dev/null")
        .arg("-C")
        .arg(&src)
        .arg("."));

    // Rounds interleave the three methods, so load from elsewhere on the machine hits them alike.
    let (mut ssh2, mut tar_ssh, mut scp) = (Duration::MAX, Duration::MAX, Duration::MAX);
    for _ in 0..rounds {
        clean(&mut s);
        let t = Instant::now();
        let st = s.upload_tree(&src, dest.to_str().unwrap()).unwrap();
        ssh2 = ssh2.min(t.elapsed());
        assert_eq!(st.files as usize, FILES);

        clean(&mut s);
        let ssh = sshd.ssh_command().unwrap();
        let ssh_line: Vec<String> =
            std::iter::once(ssh.get_program().to_string_lossy().into_owned())
                .chain(ssh.get_args().map(|a| a.to_string_lossy().into_owned()))
                .collect();
        let pipeline = format!(
            "tar -c -f - -C '{}' . | {} 'mkdir -p {d} && tar -x -f - -C {d}'",
            src.display(),
            ssh_line.join(" "),
            d = dest.display()
        );
        let t = Instant::now();
        run(Command::new("sh").arg("-c").arg(pipeline));
        tar_ssh = tar_ssh.min(t.elapsed());

        clean(&mut s);
        let mut c = sshd.scp_command().unwrap();
        c.arg("-r")
            .arg(&src)
            .arg(format!("{}@127.0.0.1:{}", sshd.user(), dest.display()));
        let t = Instant::now();
        run(&mut c);
        scp = scp.min(t.elapsed());
    }
    let t = Instant::now();
    let listed = s.remote_tree_sizes(dest.to_str().unwrap()).unwrap();
    let verify = t.elapsed();
    assert_eq!(listed.len(), FILES);
    clean(&mut s);

    let mbps = |d: Duration| bytes as f64 / 1e6 / d.as_secs_f64();
    println!("cipher (ssh2): {}", s.cipher().unwrap_or_default());
    println!(
        "tree upload, {FILES} files, {:.1} MB, loopback, best of {rounds} interleaved rounds (upload_tree includes its size verification):",
        bytes as f64 / 1e6
    );
    println!(
        "  harness upload_tree (ssh2, one tar stream): {:>7.3} s  {:>6.1} MB/s",
        ssh2.as_secs_f64(),
        mbps(ssh2)
    );
    println!(
        "  tar c | ssh tar x:                          {:>7.3} s  {:>6.1} MB/s",
        tar_ssh.as_secs_f64(),
        mbps(tar_ssh)
    );
    println!(
        "  scp -r:                                     {:>7.3} s  {:>6.1} MB/s",
        scp.as_secs_f64(),
        mbps(scp)
    );
    println!(
        "  (of which the remote size listing for verification: {:.3} s)",
        verify.as_secs_f64()
    );
    let r1 = tar_ssh.as_secs_f64() / ssh2.as_secs_f64();
    let r2 = scp.as_secs_f64() / ssh2.as_secs_f64();
    println!(
        "  speed vs tar|ssh: {r1:.2}x (target >= 1.0x)   vs scp -r: {r2:.2}x (target >= 2.0x)"
    );
}
