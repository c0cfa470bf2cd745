//! The cache under attack: builds edited after unpacking, a lock held by another process, a full
//! disk. Loopback only; each test is bounded so a hang fails instead of blocking the run.

use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use artifacts::{
    ArtifactError, BuildSourceConfig, FetchOptions, Fetcher, RetryPolicy, Secret, SourceSpec,
};
use testsupport::faulty::FaultyServer;
use testsupport::github::{
    GithubStandIn, Listener, RunSpec, efw_artifact_zip, efw_build_files, linux_guest_build_zip,
    pseudo_random, sha256_hex,
};

fn within<T: Send + 'static>(limit: Duration, f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    rx.recv_timeout(limit)
        .unwrap_or_else(|_| panic!("did not finish within {limit:?}: a hang"))
}

fn opts(cache: &Path) -> FetchOptions {
    FetchOptions {
        retry: RetryPolicy {
            attempts: 3,
            base_delay: Duration::from_millis(10),
            max_delay: Duration::from_millis(40),
        },
        ..FetchOptions::new(cache)
    }
}

fn storage_gets(gh: &GithubStandIn) -> usize {
    gh.requests()
        .iter()
        .filter(|r| r.listener == Listener::Storage)
        .count()
}

#[test]
fn a_modified_cached_build_is_refetched_with_a_warning() {
    let gh = GithubStandIn::start();
    let zip = efw_artifact_zip("Debug", &efw_build_files());
    gh.add_run(RunSpec::new(3001));
    gh.add_artifact_zip(3001, "Build-x64-Debug", zip.clone());
    let cache = tempfile::tempdir().unwrap();
    let mut o = opts(cache.path());
    o.api_url = gh.url();
    o.token = Some(Secret::new(gh.token()));
    let f = Fetcher::new(o.clone()).unwrap();
    let cfg = BuildSourceConfig::default();
    let first = f.fetch(&cfg, &SourceSpec::Main).unwrap();
    let script = first.path.join("setup-ebpf.ps1");
    let original = std::fs::read(&script).unwrap();
    assert!(
        f.fetch(&cfg, &SourceSpec::Main).unwrap().cached,
        "an untouched build is reused"
    );
    assert_eq!(storage_gets(&gh), 1);

    std::fs::write(&script, b"Write-Host tampered").unwrap();
    let again = f.fetch(&cfg, &SourceSpec::Main).unwrap();
    assert!(!again.cached, "fetched again");
    assert_eq!(again.meta.sha256, sha256_hex(&zip));
    assert_eq!(
        std::fs::read(&script).unwrap(),
        original,
        "the file is back"
    );
    assert!(
        again
            .warnings
            .iter()
            .any(|w| w.contains("setup-ebpf.ps1") && w.contains("modified")),
        "{:?}",
        again.warnings
    );
    assert_eq!(storage_gets(&gh), 2);

    // Offline, a damaged build is not handed out either: the error says nothing is cached.
    std::fs::remove_file(&script).unwrap();
    o.offline = true;
    let err = Fetcher::new(o)
        .unwrap()
        .fetch(&cfg, &SourceSpec::Main)
        .unwrap_err();
    assert!(matches!(err, ArtifactError::NotCached { .. }), "{err}");
}

#[test]
fn a_modified_build_from_a_zip_file_is_unpacked_again() {
    let dir = tempfile::tempdir().unwrap();
    let zip = dir.path().join("b.zip");
    std::fs::write(
        &zip,
        linux_guest_build_zip("echo ok\n", &[("bin/tool", b"abc")]),
    )
    .unwrap();
    let f = Fetcher::new(opts(&dir.path().join("cache"))).unwrap();
    let cfg = BuildSourceConfig::default();
    let b = f.fetch(&cfg, &SourceSpec::File(zip.clone())).unwrap();
    std::fs::write(b.path.join("bin/tool"), b"abd").unwrap();
    std::fs::write(b.path.join("extra.sh"), b"rm -rf /").unwrap();
    let again = f.fetch(&cfg, &SourceSpec::File(zip)).unwrap();
    assert_eq!(std::fs::read(again.path.join("bin/tool")).unwrap(), b"abc");
    assert!(!again.path.join("extra.sh").exists());
    let w = again.warnings.join("\n");
    assert!(
        w.contains("bin/tool") && w.contains("extra.sh was added"),
        "{w}"
    );
}

/// Holds `<cache>/.lock` from another process until dropped: util-linux `flock -o` holds it
/// while its `sleep` child runs; both are in a process group of their own, ended on drop.
struct Holder(Child);

impl Holder {
    fn start(cache: &Path) -> Holder {
        std::fs::create_dir_all(cache).unwrap();
        let lock = cache.join(".lock");
        // Wrapped at once, so Drop ends the group whatever happens next.
        let holder = Holder(
            Command::new("flock")
                .arg("-o")
                .arg(&lock)
                .args(["sleep", "30"])
                .process_group(0)
                .stdin(Stdio::null())
                .spawn()
                .expect("flock(1) from util-linux"),
        );
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            let held = std::fs::File::options()
                .write(true)
                .open(&lock)
                .is_ok_and(|f| f.try_lock().is_err());
            if held {
                return holder;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("flock did not take the lock");
    }
}

impl Drop for Holder {
    fn drop(&mut self) {
        // SAFETY: signals the process group this test started (its leader's pid is the group id).
        unsafe {
            libc::kill(-(self.0.id() as i32), libc::SIGKILL);
        }
        let _ = self.0.wait();
    }
}

#[test]
fn a_lock_held_by_another_process_is_named_bounded_and_cancellable() {
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache");
    let zip = dir.path().join("b.zip");
    std::fs::write(&zip, linux_guest_build_zip("echo ok\n", &[])).unwrap();
    let holder = Holder::start(&cache);
    let pid = holder.0.id();

    let mut o = opts(&cache);
    o.lock_timeout = Duration::from_millis(800);
    let spec = SourceSpec::File(zip.clone());
    let (o2, s2) = (o.clone(), spec.clone());
    let started = Instant::now();
    let err = within(Duration::from_secs(10), move || {
        Fetcher::new(o2)
            .unwrap()
            .fetch(&BuildSourceConfig::default(), &s2)
    })
    .unwrap_err();
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
    let text = err.to_string();
    assert!(matches!(err, ArtifactError::CacheLocked { .. }), "{text}");
    assert!(
        text.contains(&format!("pid {pid}")) && text.contains("flock -o"),
        "{text}"
    );

    // Ctrl-C ends a long wait within a second.
    let flag = artifacts::Cancel::default();
    o.lock_timeout = Duration::from_secs(600);
    o.cancel = Some(flag.clone());
    let s3 = spec.clone();
    let setter = flag.clone();
    std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(300));
        setter.cancel();
    });
    let started = Instant::now();
    let err = within(Duration::from_secs(10), move || {
        Fetcher::new(o)
            .unwrap()
            .fetch(&BuildSourceConfig::default(), &s3)
    })
    .unwrap_err();
    assert!(matches!(err, ArtifactError::Cancelled), "{err}");
    assert!(
        started.elapsed() < Duration::from_millis(1300),
        "{:?}",
        started.elapsed()
    );

    drop(holder);
    let b = Fetcher::new(opts(&cache))
        .unwrap()
        .fetch(&BuildSourceConfig::default(), &spec)
        .unwrap();
    assert!(b.layout.setup_sh, "the lock is free once the holder ends");
}

const TMPFS_ENV: &str = "ARTIFACTS_TEST_TMPFS";

/// Whether this test may mount a tmpfs in a user and mount namespace of its own.
fn can_mount_tmpfs() -> bool {
    Command::new("unshare")
        .args(["-rm", "sh", "-c", "mount -t tmpfs -o size=64k none /tmp"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// A full disk (a 2 MiB tmpfs holding the cache): the big download fails saying how much room
/// it needs and where, the partial file is gone, and a later small fetch still works. The test
/// runs itself again inside `unshare -rm` with the tmpfs mounted over a temporary directory.
#[test]
fn a_full_disk_cleans_up_and_says_how_much_space_is_needed() {
    if let Ok(dir) = std::env::var(TMPFS_ENV) {
        return full_disk_inside(Path::new(&dir));
    }
    if !can_mount_tmpfs() {
        // Containers often forbid user namespaces; src/download.rs injects ENOSPC instead.
        eprintln!("skipped: `unshare -rm` cannot mount a tmpfs on this host");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let exe = std::env::current_exe().unwrap();
    let out = Command::new("unshare")
        .args(["-rm", "sh", "-c", "mount -t tmpfs -o size=2m none \"$0\" && exec \"$1\" --exact \"$2\" --nocapture --test-threads=1"])
        .arg(dir.path())
        .arg(&exe)
        .arg("a_full_disk_cleans_up_and_says_how_much_space_is_needed")
        .env(TMPFS_ENV, dir.path())
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success() && text.contains("1 passed"), "{text}");
}

fn full_disk_inside(tmpfs: &Path) {
    let server = FaultyServer::start();
    let big = linux_guest_build_zip("echo big\n", &[("big.bin", &pseudo_random(3 << 20, 8))]);
    server.put("/big.zip", big.clone());
    server.put(
        "/small.zip",
        linux_guest_build_zip("echo small\n", &[("bin/t", b"x")]),
    );
    let cache = tmpfs.join("cache");
    let f = Fetcher::new(opts(&cache)).unwrap();
    let cfg = BuildSourceConfig::default();
    let err = f
        .fetch(&cfg, &SourceSpec::Url(server.url("/big.zip")))
        .unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, ArtifactError::NoSpace { .. }), "{text}");
    assert!(
        text.contains(&cache.join("downloads").display().to_string()),
        "{text}"
    );
    assert!(text.contains("3.0 MiB"), "the size needed: {text}");
    let left = std::fs::read_dir(cache.join("downloads")).unwrap().count();
    assert_eq!(left, 0, "the partial download was deleted");
    let b = f
        .fetch(&cfg, &SourceSpec::Url(server.url("/small.zip")))
        .unwrap();
    assert!(b.path.join("bin/t").is_file(), "a later fetch still works");

    // A download that fits but does not fit unpacked: 1 MiB of noise and 2 MiB of zeros.
    let zeros = vec![0u8; 2 << 20];
    let wide = linux_guest_build_zip(
        "echo wide\n",
        &[
            ("noise.bin", &pseudo_random(1 << 20, 2)),
            ("zeros.bin", &zeros),
        ],
    );
    server.put("/wide.zip", wide);
    let err = f
        .fetch(&cfg, &SourceSpec::Url(server.url("/wide.zip")))
        .unwrap_err();
    let text = err.to_string();
    assert!(
        matches!(err, ArtifactError::NoSpace { .. }) && text.contains("unpacking"),
        "{text}"
    );
    assert!(text.contains("3.0 MiB"), "the unpacked size: {text}");
    for sub in ["downloads", "tmp"] {
        let left = std::fs::read_dir(cache.join(sub)).unwrap().count();
        assert_eq!(left, 0, "{sub} is cleaned up");
    }
}
