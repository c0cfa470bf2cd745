//! Downloads against a hostile but fair server (loopback only): interrupted bodies, resets,
//! stalls, 5xx, slow drips. Each test is bounded, so a hang fails instead of blocking the run.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use artifacts::{ArtifactError, BuildSourceConfig, FetchOptions, Fetcher, RetryPolicy, SourceSpec};
use testsupport::faulty::{Fault, FaultyServer};
use testsupport::github::{linux_guest_build_zip, pseudo_random, sha256_hex};

/// Runs `f` on a thread and fails the test if it takes longer than `limit`.
fn within<T: Send + 'static>(limit: Duration, f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    match rx.recv_timeout(limit) {
        Ok(v) => v,
        Err(_) => panic!("did not finish within {limit:?}: a hang"),
    }
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

fn big_build(len: usize) -> Vec<u8> {
    linux_guest_build_zip("echo ok\n", &[("big.bin", &pseudo_random(len, 3))])
}

#[test]
fn a_download_cut_every_256_kib_completes_by_resuming() {
    let server = FaultyServer::start();
    let zip = big_build(6 << 20);
    server.put("/b.zip", zip.clone());
    server.fault(Fault::DropAfter(256 * 1024), None);
    let cache = tempfile::tempdir().unwrap();
    let url = server.url("/b.zip");
    // The default number of attempts: the test is about the resume loop, not the retry budget.
    let mut o = opts(cache.path());
    o.retry.attempts = RetryPolicy::default().attempts;
    let b = within(Duration::from_secs(60), move || {
        Fetcher::new(o)
            .unwrap()
            .fetch(&BuildSourceConfig::default(), &SourceSpec::Url(url))
    })
    .unwrap();
    assert_eq!(b.meta.sha256, sha256_hex(&zip));
    let hits = server.hits();
    assert!(hits.len() > 20, "{} requests", hits.len());
    assert_eq!(
        server.body_bytes(),
        zip.len() as u64,
        "no byte fetched twice"
    );
    assert!(
        hits[1..].iter().all(|h| h.range.is_some()),
        "every retry resumes"
    );
}

#[test]
fn resets_in_mid_body_resume_too() {
    let server = FaultyServer::start();
    let data = pseudo_random(3 << 20, 9);
    server.put("/f", data.clone());
    server.fault(Fault::ResetAfter(100_000), Some(30));
    let dir = tempfile::tempdir().unwrap();
    let dest = dir.path().join("f");
    let (o, url, d) = (opts(&dir.path().join("c")), server.url("/f"), dest.clone());
    let got = within(Duration::from_secs(60), move || {
        Fetcher::new(o).unwrap().download_to(&url, &d, None)
    })
    .unwrap();
    assert_eq!(got.sha256, sha256_hex(&data));
    assert_eq!(std::fs::read(&dest).unwrap(), data);
}

#[test]
fn server_errors_between_interruptions_are_retried() {
    let server = FaultyServer::start();
    let data = pseudo_random(1 << 20, 4);
    server.put("/f", data.clone());
    for _ in 0..6 {
        server.fault(Fault::DropAfter(200_000), Some(1));
        server.fault(Fault::Status(503), Some(1));
    }
    let dir = tempfile::tempdir().unwrap();
    let dest = dir.path().join("f");
    let (o, url, d) = (opts(&dir.path().join("c")), server.url("/f"), dest.clone());
    let got = within(Duration::from_secs(60), move || {
        Fetcher::new(o).unwrap().download_to(&url, &d, None)
    })
    .unwrap();
    assert_eq!(got.sha256, sha256_hex(&data));
}

#[test]
fn cancel_stops_a_download_in_progress() {
    let server = FaultyServer::start();
    server.put("/f", pseudo_random(4 << 20, 5));
    server.fault(
        Fault::Drip {
            bytes: 16 * 1024,
            every: Duration::from_millis(50),
        },
        None,
    );
    let dir = tempfile::tempdir().unwrap();
    let cancel = Arc::new(AtomicBool::new(false));
    let mut o = opts(&dir.path().join("c"));
    o.cancel = Some(cancel.clone());
    let (url, d) = (server.url("/f"), dir.path().join("f"));
    let flag = cancel.clone();
    std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(400));
        flag.store(true, Ordering::SeqCst);
    });
    let started = Instant::now();
    let err = within(Duration::from_secs(30), move || {
        Fetcher::new(o).unwrap().download_to(&url, &d, None)
    })
    .unwrap_err();
    assert!(matches!(err, ArtifactError::Cancelled), "{err}");
    assert!(
        started.elapsed() < Duration::from_millis(1400),
        "{:?}",
        started.elapsed()
    );
}
