//! Downloads against a hostile but fair server (loopback only): interrupted bodies, resets,
//! stalls, 5xx, slow drips. Each test is bounded, so a hang fails instead of blocking the run.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use artifacts::{
    ArtifactError, BuildSourceConfig, FetchEvent, FetchOptions, FetchSink, Fetcher, RetryPolicy,
    SourceSpec,
};
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

/// Collects the events of downloads made with `o`.
fn record(o: &mut FetchOptions) -> Arc<std::sync::Mutex<Vec<FetchEvent>>> {
    let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
    let into = seen.clone();
    o.events = FetchSink::new(move |e| into.lock().unwrap().push(e.clone()));
    seen
}

#[test]
fn a_download_tells_its_progress_as_events() {
    let server = FaultyServer::start();
    let data = pseudo_random(1 << 20, 8);
    let len = data.len() as u64;
    server.put("/f", data);
    server.fault(Fault::DropAfter(300_000), Some(1));
    let dir = tempfile::tempdir().unwrap();
    let mut o = opts(&dir.path().join("c"));
    let seen = record(&mut o);
    let (url, d) = (server.url("/f"), dir.path().join("f"));
    let what = url.clone();
    within(Duration::from_secs(60), move || {
        Fetcher::new(o).unwrap().download_to(&url, &d, None)
    })
    .unwrap();
    let seen = seen.lock().unwrap().clone();
    assert_eq!(
        seen.first(),
        Some(&FetchEvent::Started {
            what,
            total: Some(len),
            from: 0
        })
    );
    assert_eq!(
        seen.last(),
        Some(&FetchEvent::Finished {
            size: len,
            transferred: len
        })
    );
    // Every byte is counted once: progress goes up from where each answer starts, to the end.
    let (mut at, mut counted, mut resumed_at) = (0, 0, None);
    for e in &seen {
        match e {
            FetchEvent::Started { from, .. } => at = *from,
            FetchEvent::Progress { done, total } => {
                assert!(*done > at, "{seen:?}");
                assert_eq!(*total, Some(len));
                counted += done - at;
                at = *done;
            }
            FetchEvent::Retrying { from, .. } => assert_eq!(*from, at, "resumes where it was"),
            FetchEvent::Resumed { from, total } => {
                assert_eq!((*from, *total), (at, Some(len)));
                resumed_at = Some(*from);
            }
            FetchEvent::Finished { .. } => {}
            other => panic!("unexpected {other:?} in {seen:?}"),
        }
    }
    assert_eq!((at, counted), (len, len));
    assert!(
        resumed_at.is_some_and(|r| r > 0 && r <= 300_000),
        "{resumed_at:?}"
    );
    let ends = seen
        .iter()
        .filter(|e| matches!(e, FetchEvent::Started { .. } | FetchEvent::Finished { .. }))
        .count();
    assert_eq!(ends, 2, "one start, one end");
}

#[test]
fn a_download_that_gives_up_ends_with_failed_and_a_304_with_unchanged() {
    let server = FaultyServer::start();
    server.put("/b.zip", small_build("one"));
    let cache = tempfile::tempdir().unwrap();
    let mut o = opts(cache.path());
    let seen = record(&mut o);
    let f = Fetcher::new(o).unwrap();
    let cfg = BuildSourceConfig::default();
    let spec = SourceSpec::Url(server.url("/b.zip"));
    f.fetch(&cfg, &spec).unwrap();
    seen.lock().unwrap().clear();
    f.fetch(&cfg, &spec).unwrap();
    assert_eq!(*seen.lock().unwrap(), [FetchEvent::Unchanged]);

    seen.lock().unwrap().clear();
    server.fault(Fault::Status(404), None);
    let missing = server.url("/gone");
    f.download_to(&missing, &cache.path().join("gone"), None)
        .unwrap_err();
    assert_eq!(*seen.lock().unwrap(), [FetchEvent::Failed]);
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
fn ctrl_c_stops_a_slow_drip() {
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
    let flag = artifacts::Cancel::default();
    let mut o = opts(&dir.path().join("c"));
    o.cancel = Some(flag.clone());
    let (url, d) = (server.url("/f"), dir.path().join("f"));
    let (err, set_at) = within(Duration::from_secs(30), move || {
        let f = Fetcher::new(o).unwrap();
        let set_at = cancel_after(&flag, Duration::from_millis(400));
        (f.download_to(&url, &d, None).unwrap_err(), set_at)
    });
    assert!(matches!(err, ArtifactError::Cancelled), "{err}");
    let took = set_at.lock().unwrap().map(|t| t.elapsed());
    assert!(took.is_some_and(|t| t < Duration::from_secs(1)), "{took:?}");
    assert!(server.body_bytes() > 0);
}

/// Options whose per-connection silence is long, so only the stall bound can end a stall fast.
fn patient(cache: &Path, stall: Duration) -> FetchOptions {
    FetchOptions {
        read_timeout: Duration::from_secs(60),
        stall_timeout: stall,
        ..opts(cache)
    }
}

#[test]
fn a_stalled_body_fails_after_the_stall_timeout_naming_the_host() {
    let server = FaultyServer::start();
    server.put("/f", pseudo_random(1 << 20, 6));
    server.fault(Fault::StallAfter(100_000), None);
    let dir = tempfile::tempdir().unwrap();
    let o = patient(&dir.path().join("c"), Duration::from_millis(1500));
    let (url, d) = (server.url("/f"), dir.path().join("f"));
    let started = Instant::now();
    let err = within(Duration::from_secs(15), move || {
        Fetcher::new(o).unwrap().download_to(&url, &d, None)
    })
    .unwrap_err();
    let waited = started.elapsed();
    assert!(matches!(err, ArtifactError::Stalled { .. }), "{err}");
    let text = err.to_string();
    assert!(
        text.contains(&server.host()) && text.contains("stall_timeout"),
        "{text}"
    );
    assert!(
        waited >= Duration::from_millis(1400) && waited < Duration::from_secs(4),
        "{waited:?}"
    );
}

#[test]
fn a_stall_on_every_reconnect_is_bounded_in_total() {
    let server = FaultyServer::start();
    server.put("/f", pseudo_random(1 << 20, 6));
    server.fault(Fault::StallAfter(0), None);
    let dir = tempfile::tempdir().unwrap();
    let mut o = opts(&dir.path().join("c"));
    o.read_timeout = Duration::from_millis(300);
    o.stall_timeout = Duration::from_millis(1500);
    o.retry.attempts = 100;
    let (url, d) = (server.url("/f"), dir.path().join("f"));
    let started = Instant::now();
    let err = within(Duration::from_secs(15), move || {
        Fetcher::new(o).unwrap().download_to(&url, &d, None)
    })
    .unwrap_err();
    assert!(matches!(err, ArtifactError::Stalled { .. }), "{err}");
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "{:?}",
        started.elapsed()
    );
    assert!(server.hits().len() >= 3, "reconnected: {:?}", server.hits());
}

#[test]
fn an_api_server_that_never_answers_fails_after_the_stall_timeout() {
    let server = FaultyServer::start();
    server.fault(Fault::StallHeaders, None);
    let dir = tempfile::tempdir().unwrap();
    let mut o = patient(dir.path(), Duration::from_millis(1000));
    o.api_url = server.base();
    let started = Instant::now();
    let err = within(Duration::from_secs(15), move || {
        Fetcher::new(o)
            .unwrap()
            .fetch(&BuildSourceConfig::default(), &SourceSpec::Main)
    })
    .unwrap_err();
    assert!(matches!(err, ArtifactError::Stalled { .. }), "{err}");
    assert!(err.to_string().contains(&server.host()), "{err}");
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
}

/// Sets `flag` after `after`; the returned slot says when.
fn cancel_after(
    flag: &artifacts::Cancel,
    after: Duration,
) -> Arc<std::sync::Mutex<Option<Instant>>> {
    let at = Arc::new(std::sync::Mutex::new(None));
    let (f, a) = (flag.clone(), at.clone());
    std::thread::spawn(move || {
        std::thread::sleep(after);
        f.cancel();
        *a.lock().unwrap() = Some(Instant::now());
    });
    at
}

#[test]
fn ctrl_c_stops_every_network_wait_within_a_second() {
    let server = FaultyServer::start();
    server.put("/f", pseudo_random(1 << 20, 6));
    for (fault, api) in [
        (Fault::StallHeaders, false),
        (Fault::StallAfter(100_000), false),
        (Fault::StallHeaders, true),
    ] {
        server.clear_faults();
        server.fault(fault, None);
        let dir = tempfile::tempdir().unwrap();
        // Library defaults: a stall is only given up after tens of seconds.
        let mut o = FetchOptions::new(dir.path().join("c"));
        o.api_url = server.base();
        let flag = artifacts::Cancel::default();
        o.cancel = Some(flag.clone());
        let (url, d) = (server.url("/f"), dir.path().join("f"));
        let (err, set_at) = within(Duration::from_secs(15), move || {
            let f = Fetcher::new(o).unwrap();
            let set_at = cancel_after(&flag, Duration::from_millis(500));
            let r = if api {
                f.fetch(&BuildSourceConfig::default(), &SourceSpec::Main)
                    .map(|_| ())
            } else {
                f.download_to(&url, &d, None).map(|_| ())
            };
            (r.unwrap_err(), set_at)
        });
        let took = set_at.lock().unwrap().map(|t| t.elapsed());
        assert!(matches!(err, ArtifactError::Cancelled), "{fault:?}: {err}");
        let last = server
            .hits()
            .pop()
            .unwrap_or_else(|| panic!("{fault:?} {api}: no request"));
        assert!(
            last.status == 0 || last.body_bytes > 0,
            "the wait was on the stall: {last:?}"
        );
        assert!(
            took.is_some_and(|t| t < Duration::from_secs(1)),
            "{fault:?}: stopped {took:?} after Ctrl-C"
        );
    }
}

fn small_build(marker: &str) -> Vec<u8> {
    linux_guest_build_zip(&format!("echo {marker}\n"), &[("bin/tool", b"x")])
}

#[test]
fn url_builds_are_revalidated_and_new_content_is_seen() {
    let server = FaultyServer::start();
    let (v1, v2) = (small_build("one"), small_build("two"));
    server.put("/b.zip", v1.clone());
    let cache = tempfile::tempdir().unwrap();
    let f = Fetcher::new(opts(cache.path())).unwrap();
    let spec = SourceSpec::Url(server.url("/b.zip"));
    let cfg = BuildSourceConfig::default();
    let first = f.fetch(&cfg, &spec).unwrap();
    assert_eq!(first.meta.sha256, sha256_hex(&v1));
    assert!(first.meta.etag.is_some());

    let again = f.fetch(&cfg, &spec).unwrap();
    assert!(again.cached && again.meta.key == first.meta.key);
    let hit = server.hits().pop().unwrap();
    assert_eq!(hit.status, 304, "a conditional request: {hit:?}");
    assert_eq!(hit.if_none_match, first.meta.etag);

    server.put("/b.zip", v2.clone());
    let new = f.fetch(&cfg, &spec).unwrap();
    assert!(!new.cached && new.meta.sha256 == sha256_hex(&v2), "{new:?}");
    let setup = std::fs::read_to_string(new.path.join("setup.sh")).unwrap();
    assert!(setup.contains("two"), "{setup}");

    // Back to the first content: its cached build is reused, and becomes the newest for the URL.
    server.put("/b.zip", v1.clone());
    let back = f.fetch(&cfg, &spec).unwrap();
    assert_eq!(back.meta.key, first.meta.key);
    assert!(f.fetch(&cfg, &spec).unwrap().cached);
    assert_eq!(server.hits().pop().unwrap().status, 304);
}

#[test]
fn a_server_without_validators_is_checked_by_content() {
    let server = FaultyServer::start();
    server.without_validators();
    server.put("/b.zip", small_build("one"));
    let cache = tempfile::tempdir().unwrap();
    let f = Fetcher::new(opts(cache.path())).unwrap();
    let spec = SourceSpec::Url(server.url("/b.zip"));
    let cfg = BuildSourceConfig::default();
    let first = f.fetch(&cfg, &spec).unwrap();
    server.put("/b.zip", small_build("two"));
    let second = f.fetch(&cfg, &spec).unwrap();
    assert_ne!(first.meta.sha256, second.meta.sha256);
    assert_eq!(server.hits().len(), 2);
}

#[test]
fn url_sha256_is_verified_and_a_cached_match_needs_no_request() {
    let server = FaultyServer::start();
    let zip = small_build("one");
    server.put("/b.zip", zip.clone());
    let cache = tempfile::tempdir().unwrap();
    let f = Fetcher::new(opts(cache.path())).unwrap();
    let cfg = BuildSourceConfig::default();

    let wrong = SourceSpec::parse(&format!(
        "url:{}#sha256={}",
        server.url("/b.zip"),
        "0".repeat(64)
    ))
    .unwrap();
    let err = f.fetch(&cfg, &wrong).unwrap_err();
    assert!(matches!(err, ArtifactError::DigestMismatch { .. }), "{err}");
    assert!(err.to_string().contains(&"0".repeat(64)), "{err}");
    assert!(f.cache().list().unwrap().is_empty(), "nothing cached");
    let downloads = std::fs::read_dir(cache.path().join("downloads"))
        .unwrap()
        .count();
    assert_eq!(downloads, 0, "the bad download was deleted");

    let right = SourceSpec::parse(&format!(
        "url:{}#sha256={}",
        server.url("/b.zip"),
        sha256_hex(&zip)
    ))
    .unwrap();
    let b = f.fetch(&cfg, &right).unwrap();
    assert_eq!(b.meta.sha256, sha256_hex(&zip));
    assert_eq!(b.meta.url.as_deref(), Some(server.url("/b.zip").as_str()));
    let before = server.hits().len();
    assert!(f.fetch(&cfg, &right).unwrap().cached);
    assert_eq!(
        server.hits().len(),
        before,
        "the digest names the cached build"
    );
}
