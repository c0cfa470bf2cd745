//! End-to-end fetches against the GitHub stand-in (loopback only), one stand-in per test.

use std::path::Path;
use std::time::Duration;

use artifacts::{
    ArtifactError, BuildSourceConfig, FetchOptions, Fetcher, RetryPolicy, Secret, SourceSpec,
    UnpackLimits,
};
use testsupport::github::{
    GithubStandIn, Listener, RunSpec, efw_artifact_zip, efw_build_files, hostile,
    linux_guest_build_zip, release_zip, sha256_hex,
};

const ART: &str = "Build-x64-Debug";

fn opts(gh: &GithubStandIn, cache: &Path, token: bool) -> FetchOptions {
    FetchOptions {
        api_url: gh.url(),
        token: token.then(|| Secret::new(gh.token())),
        retry: RetryPolicy {
            attempts: 3,
            base_delay: Duration::from_millis(10),
            max_delay: Duration::from_millis(40),
        },
        ..FetchOptions::new(cache)
    }
}

fn fetcher(gh: &GithubStandIn, cache: &Path) -> Fetcher {
    Fetcher::new(opts(gh, cache, true)).unwrap()
}

fn cfg() -> BuildSourceConfig {
    BuildSourceConfig::default()
}

fn efw_zip() -> Vec<u8> {
    efw_artifact_zip("Debug", &efw_build_files())
}

/// Nothing half-made left in the cache: no staging dirs, no build entries, no partial downloads.
fn assert_cache_clean(cache: &Path) {
    for sub in ["builds", "tmp", "downloads"] {
        let d = cache.join(sub);
        let n = std::fs::read_dir(&d).map(|r| r.count()).unwrap_or(0);
        assert_eq!(n, 0, "{} is not empty", d.display());
    }
}

#[test]
fn main_prefers_newest_successful_build_and_a_second_fetch_transfers_nothing() {
    let gh = GithubStandIn::start();
    let zip = efw_zip();
    gh.add_run(RunSpec::new(101));
    let good = gh.add_artifact_zip(101, ART, zip.clone());
    gh.add_run(RunSpec::new(102).failed_with_build("failure"));
    gh.add_artifact_zip(102, ART, efw_zip());
    gh.add_run(RunSpec::new(103).failed_with_build("success"));
    gh.add_run(RunSpec::new(104).event("push"));
    gh.add_artifact_zip(104, ART, efw_zip());
    let cache = tempfile::tempdir().unwrap();
    let f = fetcher(&gh, cache.path());

    let b = f.fetch(&cfg(), &SourceSpec::Main).unwrap();
    assert_eq!(
        b.meta.run_id,
        Some(101),
        "102 built partially, 103 has no artifact, 104 is a push run"
    );
    assert_eq!(b.meta.artifact_id, Some(good));
    assert_eq!(b.meta.sha256, sha256_hex(&zip));
    assert_eq!(b.meta.size, zip.len() as u64);
    assert_eq!(b.meta.key, format!("gh-artifact-{good}"));
    assert!(!b.meta.key.contains(' '));
    assert!(b.meta.head_sha.as_deref().is_some_and(|s| s.len() == 40));
    assert!(!b.cached && b.warnings.is_empty(), "{:?}", b.warnings);
    assert!(
        b.layout.setup_ebpf_ps1 && b.layout.install_ebpf_psm1 && b.layout.msi && !b.layout.setup_sh
    );
    assert!(
        b.path.join("setup-ebpf.ps1").is_file()
            && b.path.join("bin/export_program_info.exe").is_file()
    );
    assert!(b.path.starts_with(cache.path()));

    // The token went to the API only; storage never saw it.
    let reqs = gh.requests();
    let zip_req = reqs.iter().find(|r| r.target.ends_with("/zip")).unwrap();
    assert_eq!(zip_req.status, 302);
    assert!(
        zip_req
            .header("authorization")
            .is_some_and(|v| v.ends_with(gh.token()))
    );
    let storage: Vec<_> = reqs
        .iter()
        .filter(|r| r.listener == Listener::Storage)
        .collect();
    assert_eq!(storage.len(), 1);
    assert!(
        storage
            .iter()
            .all(|r| r.header("authorization").is_none() && r.status == 200)
    );
    assert_eq!(gh.storage_bytes(), zip.len() as u64);

    gh.clear_requests();
    let again = f.fetch(&cfg(), &SourceSpec::Main).unwrap();
    assert!(again.cached);
    assert_eq!(again.path, b.path);
    assert_eq!(gh.storage_bytes(), 0);
    assert!(!gh.requests().iter().any(|r| r.target.ends_with("/zip")));

    let json = serde_json::to_value(&again).unwrap();
    for key in [
        "path",
        "source",
        "repo",
        "run_id",
        "artifact_id",
        "head_sha",
        "sha256",
        "size",
        "cached",
    ] {
        assert!(json.get(key).is_some(), "JSON lacks {key}: {json}");
    }
}

#[test]
fn main_falls_back_to_a_partial_build_with_a_warning_and_skips_expired() {
    let gh = GithubStandIn::start();
    gh.add_run(RunSpec::new(201).failed_with_build("failure"));
    gh.add_artifact_zip(201, ART, efw_zip());
    gh.add_run(RunSpec::new(202).failed_with_build("cancelled"));
    gh.add_artifact_zip(202, ART, efw_zip());
    gh.add_run(RunSpec::new(203));
    let expired = gh.add_artifact_zip(203, ART, efw_zip());
    gh.expire_artifact(expired);
    let cache = tempfile::tempdir().unwrap();
    let f = fetcher(&gh, cache.path());
    let b = f.fetch(&cfg(), &SourceSpec::Main).unwrap();
    assert_eq!(b.meta.run_id, Some(202));
    assert!(
        b.warnings
            .iter()
            .any(|w| w.contains("partial") && w.contains("cancelled")),
        "{:?}",
        b.warnings
    );

    let err = f.fetch(&cfg(), &SourceSpec::Run(203)).unwrap_err();
    assert!(
        matches!(err, ArtifactError::Expired { run_id: 203, .. }),
        "{err}"
    );
}

#[test]
fn nothing_usable_says_what_was_searched() {
    let gh = GithubStandIn::start();
    gh.add_run(RunSpec::new(301));
    gh.add_run(RunSpec::new(302));
    let id = gh.add_artifact_zip(302, ART, efw_zip());
    gh.expire_artifact(id);
    let cache = tempfile::tempdir().unwrap();
    let err = fetcher(&gh, cache.path())
        .fetch(&cfg(), &SourceSpec::Main)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("1 have no artifact Build-x64-Debug, 1 have it expired"),
        "{err}"
    );
}

#[test]
fn artifact_only_on_a_later_page_is_found_by_paginating() {
    let gh = GithubStandIn::start();
    gh.ignore_name_filter(true);
    gh.max_per_page(10);
    gh.add_run(RunSpec::new(401));
    gh.add_filler_artifacts(401, 25);
    gh.add_artifact_zip(401, ART, efw_zip());
    let cache = tempfile::tempdir().unwrap();
    let b = fetcher(&gh, cache.path())
        .fetch(&cfg(), &SourceSpec::Run(401))
        .unwrap();
    assert_eq!(b.meta.run_id, Some(401));
    assert!(
        gh.requests()
            .iter()
            .any(|r| r.target.contains("/artifacts?") && r.target.contains("page=3"))
    );
}

#[test]
fn missing_token_explains_how_to_get_one_and_downloads_nothing() {
    let gh = GithubStandIn::start();
    gh.add_run(RunSpec::new(501));
    gh.add_artifact_zip(501, ART, efw_zip());
    let cache = tempfile::tempdir().unwrap();
    let f = Fetcher::new(opts(&gh, cache.path(), false)).unwrap();
    let err = f.fetch(&cfg(), &SourceSpec::Main).unwrap_err();
    assert!(matches!(err, ArtifactError::MissingToken { .. }));
    assert!(err.to_string().contains("Actions: read") && err.to_string().contains("GITHUB_TOKEN"));
    assert!(!gh.requests().iter().any(|r| r.target.ends_with("/zip")));
}

#[test]
fn a_dropped_download_resumes_with_range() {
    let gh = GithubStandIn::start();
    let mut files = efw_build_files();
    files.push((
        "big.pdb".into(),
        testsupport::github::pseudo_random(600_000, 7),
    ));
    let zip = efw_artifact_zip("Debug", &files);
    gh.add_run(RunSpec::new(601));
    gh.add_artifact_zip(601, ART, zip.clone());
    gh.drop_downloads_after(200_000, 2);
    let cache = tempfile::tempdir().unwrap();
    let b = fetcher(&gh, cache.path())
        .fetch(&cfg(), &SourceSpec::Main)
        .unwrap();
    assert_eq!(b.meta.sha256, sha256_hex(&zip));
    let storage: Vec<_> = gh
        .requests()
        .into_iter()
        .filter(|r| r.listener == Listener::Storage)
        .collect();
    assert_eq!(storage.len(), 3, "{storage:?}");
    assert_eq!(storage[1].header("range"), Some("bytes=200000-"));
    assert_eq!(storage[1].status, 206);
    assert_eq!(storage[2].header("range"), Some("bytes=400000-"));
    assert_eq!(
        gh.storage_bytes(),
        zip.len() as u64,
        "no byte fetched twice"
    );
    assert!(b.path.join("big.pdb").is_file());
}

#[test]
fn transient_server_errors_are_retried_then_reported() {
    let gh = GithubStandIn::start();
    gh.add_run(RunSpec::new(701));
    gh.add_artifact_zip(701, ART, efw_zip());
    gh.fail_next("/runs?", 502, 2);
    gh.fail_next("/blob/", 503, 1);
    let cache = tempfile::tempdir().unwrap();
    let f = fetcher(&gh, cache.path());
    let b = f.fetch(&cfg(), &SourceSpec::Main).unwrap();
    assert_eq!(b.meta.run_id, Some(701));

    gh.fail_next("/actions/runs/701/artifacts", 500, 10);
    let cache2 = tempfile::tempdir().unwrap();
    let err = fetcher(&gh, cache2.path())
        .fetch(&cfg(), &SourceSpec::Main)
        .unwrap_err();
    assert!(
        matches!(err, ArtifactError::Http { status: 500, .. }),
        "{err}"
    );
    let tries = gh
        .requests()
        .iter()
        .filter(|r| r.target.contains("/runs/701/artifacts") && r.status == 500)
        .count();
    assert_eq!(tries, 3, "bounded by RetryPolicy::attempts");
}

#[test]
fn rate_limits_report_when_they_reset() {
    let gh = GithubStandIn::start();
    gh.add_run(RunSpec::new(801));
    let reset = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 600;
    gh.rate_limit_next(403, 1, reset);
    let cache = tempfile::tempdir().unwrap();
    let f = fetcher(&gh, cache.path());
    let err = f.fetch(&cfg(), &SourceSpec::Main).unwrap_err();
    match &err {
        ArtifactError::RateLimited {
            status: 403,
            wait_secs,
            ..
        } => assert!((590..=600).contains(wait_secs)),
        other => panic!("{other}"),
    }
    assert!(err.to_string().contains("resets at"));
    gh.rate_limit_next(429, 1, reset);
    let err = f.fetch(&cfg(), &SourceSpec::Main).unwrap_err();
    assert!(
        matches!(
            err,
            ArtifactError::RateLimited {
                status: 429,
                wait_secs: 30,
                ..
            }
        ),
        "{err}"
    );
}

#[test]
fn a_wrong_digest_deletes_the_download_and_fails_clearly() {
    let gh = GithubStandIn::start();
    gh.add_run(RunSpec::new(901));
    let id = gh.add_artifact_zip(901, ART, efw_zip());
    gh.set_artifact_digest(id, Some(&format!("sha256:{}", "0".repeat(64))));
    let cache = tempfile::tempdir().unwrap();
    let err = fetcher(&gh, cache.path())
        .fetch(&cfg(), &SourceSpec::Main)
        .unwrap_err();
    assert!(matches!(err, ArtifactError::DigestMismatch { .. }), "{err}");
    assert!(err.to_string().contains("deleted"));
    assert_cache_clean(cache.path());
}

#[test]
fn releases_with_either_tag_style_and_a_spaced_top_folder() {
    let gh = GithubStandIn::start();
    let asset = gh.add_release(
        "Release-v0.21.0",
        "Build.Debug.x64.zip",
        release_zip("Build Debug x64", &efw_build_files()),
    );
    gh.add_release(
        "v1.4.0",
        "Build.Debug.x64.zip",
        release_zip("Build Debug x64", &efw_build_files()),
    );
    let cache = tempfile::tempdir().unwrap();
    // No token: the public download URL is used.
    let f = Fetcher::new(opts(&gh, cache.path(), false)).unwrap();
    let b = f
        .fetch(&cfg(), &SourceSpec::Release("0.21.0".into()))
        .unwrap();
    assert_eq!(b.meta.asset_id, Some(asset));
    assert_eq!(b.meta.version.as_deref(), Some("0.21.0"));
    assert!(
        b.path.join("setup-ebpf.ps1").is_file(),
        "top folder with spaces stripped"
    );
    // With a token: the API asset URL, redirected to storage without the token.
    let b = fetcher(&gh, cache.path())
        .fetch(&cfg(), &SourceSpec::Release("1.4.0".into()))
        .unwrap();
    assert!(b.layout.msi);
    assert!(
        gh.requests()
            .iter()
            .any(|r| r.target.contains("/releases/assets/") && r.header("authorization").is_some())
    );
    assert!(
        gh.requests()
            .iter()
            .filter(|r| r.listener == Listener::Storage)
            .all(|r| r.header("authorization").is_none())
    );
    let err = f
        .fetch(&cfg(), &SourceSpec::Release("9.9.9".into()))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("v9.9.9") && err.contains("Release-v9.9.9"),
        "{err}"
    );
    let rel = BuildSourceConfig {
        configuration: "Release".into(),
        ..cfg()
    };
    let err = f
        .fetch(&rel, &SourceSpec::Release("1.4.0".into()))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("Build.Release.x64.zip") && err.contains("It has: Build.Debug.x64.zip"),
        "{err}"
    );
}

#[test]
fn url_and_file_sources_and_offline_reuse() {
    let gh = GithubStandIn::start();
    gh.add_release(
        "v2.0.0",
        "linux.zip",
        linux_guest_build_zip("echo installed\n", &[("bin/tool", b"x")]),
    );
    let url = format!(
        "{}/microsoft/ebpf-for-windows/releases/download/v2.0.0/linux.zip",
        gh.url()
    );
    let cache = tempfile::tempdir().unwrap();
    let f = fetcher(&gh, cache.path());
    let spec = SourceSpec::Url(url.clone());
    let b = f.fetch(&cfg(), &spec).unwrap();
    assert!(b.layout.setup_sh && !b.layout.is_efw() && b.meta.key.starts_with("sha256-"));
    // The stand-in sends no validators, so the build is fetched again and found unchanged by its
    // content (revalidation proper is in tests/faults.rs).
    let again = f.fetch(&cfg(), &spec).unwrap();
    assert_eq!(again.meta.key, b.meta.key);
    assert_eq!(f.cache().list().unwrap().len(), 1);

    // file: a zip, then an unpacked msbuild output directory.
    let dir = tempfile::tempdir().unwrap();
    let zip_path = dir.path().join("my build.zip");
    std::fs::write(&zip_path, efw_zip()).unwrap();
    let b = f
        .fetch(&cfg(), &SourceSpec::File(zip_path.clone()))
        .unwrap();
    assert!(
        b.layout.setup_ebpf_ps1 && zip_path.exists(),
        "the user's zip is kept"
    );
    assert!(f.fetch(&cfg(), &SourceSpec::File(zip_path)).unwrap().cached);
    let out = dir.path().join("x64/Debug");
    std::fs::create_dir_all(&out).unwrap();
    std::fs::write(out.join("install_ebpf.psm1"), "x").unwrap();
    let b = f
        .fetch(&cfg(), &SourceSpec::File(dir.path().to_path_buf()))
        .unwrap();
    assert_eq!(b.path, out.canonicalize().unwrap());
    assert!(b.meta.key.starts_with("dir-") && b.meta.sha256.len() == 64);
    let err = f
        .fetch(&cfg(), &SourceSpec::File(dir.path().join("nope.zip")))
        .unwrap_err()
        .to_string();
    assert!(err.contains("nope.zip"), "{err}");
}

#[test]
fn offline_and_unreachable_github_use_the_newest_cached_build() {
    let cache = tempfile::tempdir().unwrap();
    let (api_url, first) = {
        let gh = GithubStandIn::start();
        gh.add_run(RunSpec::new(1001));
        gh.add_artifact_zip(1001, ART, efw_zip());
        gh.add_run(RunSpec::new(1002));
        gh.add_artifact_zip(1002, ART, efw_zip());
        let f = fetcher(&gh, cache.path());
        let old = f.fetch(&cfg(), &SourceSpec::Run(1001)).unwrap();
        let new = f.fetch(&cfg(), &SourceSpec::Main).unwrap();
        assert_ne!(old.meta.key, new.meta.key);
        (gh.url(), new)
    }; // the stand-in is gone: its port refuses connections now
    let mut o = FetchOptions::new(cache.path());
    o.api_url = api_url;
    o.token = Some(Secret::new("t"));
    o.retry = RetryPolicy {
        attempts: 2,
        base_delay: Duration::from_millis(5),
        max_delay: Duration::from_millis(5),
    };
    let b = Fetcher::new(o.clone())
        .unwrap()
        .fetch(&cfg(), &SourceSpec::Main)
        .unwrap();
    assert!(b.cached && b.meta.key == first.meta.key);
    assert!(
        b.warnings.iter().any(|w| w.contains("unreachable")),
        "{:?}",
        b.warnings
    );

    o.offline = true;
    let f = Fetcher::new(o).unwrap();
    assert_eq!(
        f.fetch(&cfg(), &SourceSpec::Main).unwrap().meta.run_id,
        Some(1002)
    );
    assert_eq!(
        f.fetch(&cfg(), &SourceSpec::Run(1001)).unwrap().meta.run_id,
        Some(1001)
    );
    let ext = BuildSourceConfig {
        repo: "microsoft/ntosebpfext".into(),
        ..cfg()
    };
    let err = f.fetch(&ext, &SourceSpec::Main).unwrap_err();
    assert!(
        matches!(err, ArtifactError::NotCached { .. }) && err.to_string().contains("ntosebpfext"),
        "{err}"
    );
}

#[test]
fn extension_builds_are_checked_against_the_expected_file() {
    let gh = GithubStandIn::start();
    let ext_repo = "microsoft/ntosebpfext";
    gh.add_run(RunSpec::new(1101).repo(ext_repo));
    gh.add_artifact_zip(
        1101,
        ART,
        efw_artifact_zip("Debug", &[("ntosebpfext.sys".into(), vec![1; 100])]),
    );
    gh.add_run(RunSpec::new(1102).repo(ext_repo));
    gh.add_artifact_zip(1102, "Other", efw_zip());
    let ext = BuildSourceConfig {
        repo: ext_repo.into(),
        expect: vec!["ntosebpfext.sys".into()],
        ..cfg()
    };
    let cache = tempfile::tempdir().unwrap();
    let f = fetcher(&gh, cache.path());
    let b = f.fetch(&ext, &SourceSpec::Run(1101)).unwrap();
    assert!(b.path.join("ntosebpfext.sys").is_file() && !b.layout.is_efw());
    // Upstream keeps extension artifacts 5 days: once expired, the last good cached build is used.
    gh.expire_artifact(b.meta.artifact_id.unwrap());
    let again = f.fetch(&ext, &SourceSpec::Main).unwrap();
    assert!(again.cached && again.meta.key == b.meta.key);
    assert!(
        again.warnings.iter().any(|w| w.contains("no live build")),
        "{:?}",
        again.warnings
    );
    let again = f.fetch(&ext, &SourceSpec::Run(1101)).unwrap();
    assert!(again.cached && again.meta.key == b.meta.key);
    let other = BuildSourceConfig {
        artifact: "Other".into(),
        ..ext.clone()
    };
    let err = f
        .fetch(&other, &SourceSpec::Run(1102))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("expected ntosebpfext.sys") && err.contains("setup-ebpf.ps1"),
        "{err}"
    );
}

#[test]
fn hostile_and_broken_archives_are_rejected_leaving_nothing_behind() {
    let good = efw_zip();
    let not_efw = testsupport::github::zip_of(&[("README.md", b"hello")]);
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        ("parent", hostile::parent_traversal(), "'..'"),
        ("absolute", hostile::absolute_path(), "absolute"),
        ("drive", hostile::drive_letter(), "drive-letter"),
        ("backslash", hostile::backslash_traversal(), "'..'"),
        ("symlink", hostile::symlink(), "symbolic link"),
        ("duplicate", hostile::duplicate_names(), "duplicate"),
        ("case", hostile::case_duplicates(), "two entries"),
        ("bomb", hostile::bomb(40), "zip bomb"),
        (
            "truncated",
            hostile::truncated(&good, 0.6),
            "truncated or corrupt",
        ),
        ("corrupt", hostile::corrupt(), "corrupt"),
        ("not-efw", not_efw, "expected setup-ebpf.ps1"),
    ];
    let root = tempfile::tempdir().unwrap();
    let cache = root.path().join("cache");
    let inputs = root.path().join("in");
    std::fs::create_dir(&inputs).unwrap();
    let f = Fetcher::new(FetchOptions::new(&cache)).unwrap();
    for (name, bytes, why) in cases {
        let path = inputs.join(format!("{name}.zip"));
        std::fs::write(&path, bytes).unwrap();
        let err = f
            .fetch(&cfg(), &SourceSpec::File(path))
            .unwrap_err()
            .to_string();
        assert!(err.contains(why), "{name}: {err}");
        assert_cache_clean(&cache);
    }
    assert!(
        !root.path().join("escaped.txt").exists()
            && !Path::new("/tmp/harness-absolute-escape.txt").exists()
    );
    let mut left: Vec<String> = std::fs::read_dir(root.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into())
        .collect();
    left.sort();
    assert_eq!(left, vec!["cache", "in"]);

    // A size limit below the build's size rejects it too.
    let mut o = FetchOptions::new(&cache);
    o.limits = UnpackLimits {
        max_total_bytes: 1000,
        ..UnpackLimits::default()
    };
    let path = inputs.join("good.zip");
    std::fs::write(&path, &good).unwrap();
    let err = Fetcher::new(o)
        .unwrap()
        .fetch(&cfg(), &SourceSpec::File(path))
        .unwrap_err()
        .to_string();
    assert!(err.contains("limit"), "{err}");
    assert_cache_clean(&cache);
}

#[test]
fn cancellation_stops_before_any_transfer_and_tokens_never_print() {
    let gh = GithubStandIn::start();
    gh.add_run(RunSpec::new(1201));
    gh.add_artifact_zip(1201, ART, efw_zip());
    let cache = tempfile::tempdir().unwrap();
    let mut o = opts(&gh, cache.path(), true);
    assert!(
        !format!("{o:?}").contains(gh.token()),
        "Debug of the options hides the token"
    );
    let cancelled = artifacts::Cancel::default();
    cancelled.cancel();
    o.cancel = Some(cancelled);
    let err = Fetcher::new(o)
        .unwrap()
        .fetch(&cfg(), &SourceSpec::Main)
        .unwrap_err();
    assert!(matches!(err, ArtifactError::Cancelled), "{err}");
    assert_eq!(gh.storage_bytes(), 0);
}

#[test]
fn list_and_prune_through_the_fetcher_cache() {
    let gh = GithubStandIn::start();
    for id in [1301, 1302, 1303] {
        gh.add_run(RunSpec::new(id));
        gh.add_artifact_zip(id, ART, efw_zip());
    }
    let cache = tempfile::tempdir().unwrap();
    let f = fetcher(&gh, cache.path());
    for id in [1301, 1302, 1303] {
        f.fetch(&cfg(), &SourceSpec::Run(id)).unwrap();
    }
    assert_eq!(f.cache().list().unwrap().len(), 3);
    let removed = f.cache().prune(1).unwrap();
    assert_eq!(removed.len(), 2, "{removed:?}");
    let left = f.cache().list().unwrap();
    assert_eq!(left.len(), 1);
    assert_eq!(left[0].meta.run_id, Some(1303), "the newest survives");
}

#[test]
fn the_read_timeout_is_per_read_not_per_download() {
    let gh = GithubStandIn::start();
    let mut files = efw_build_files();
    files.push((
        "big.pdb".into(),
        testsupport::github::pseudo_random(300_000, 11),
    ));
    let zip = efw_artifact_zip("Debug", &files);
    gh.add_run(RunSpec::new(1401));
    gh.add_artifact_zip(1401, ART, zip.clone());
    let first_cache = tempfile::tempdir().unwrap();
    let mut o = opts(&gh, first_cache.path(), true);
    o.read_timeout = Duration::from_millis(400);

    // A stalled connection is given up after the read timeout and resumed where it stopped.
    gh.stall_downloads_after(100_000, Duration::from_secs(3), 1);
    let started = std::time::Instant::now();
    let b = Fetcher::new(o.clone())
        .unwrap()
        .fetch(&cfg(), &SourceSpec::Main)
        .unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "did not wait out the stall"
    );
    assert_eq!(b.meta.sha256, sha256_hex(&zip));
    let storage: Vec<_> = gh
        .requests()
        .into_iter()
        .filter(|r| r.listener == Listener::Storage)
        .collect();
    assert_eq!(storage.len(), 2, "{storage:?}");
    assert_eq!(storage[1].header("range"), Some("bytes=100000-"));

    // A slow but steady download taking longer than the read timeout in total still succeeds.
    gh.throttle_downloads(Some((zip.len() as u64 / 8 + 1, Duration::from_millis(150))));
    gh.clear_requests();
    let cache = tempfile::tempdir().unwrap();
    o.cache_dir = cache.path().to_path_buf();
    let started = std::time::Instant::now();
    let b = Fetcher::new(o)
        .unwrap()
        .fetch(&cfg(), &SourceSpec::Main)
        .unwrap();
    assert!(
        started.elapsed() > Duration::from_millis(1000),
        "{:?}",
        started.elapsed()
    );
    assert!(!b.cached);
    assert_eq!(
        gh.requests()
            .iter()
            .filter(|r| r.listener == Listener::Storage)
            .count(),
        1,
        "no retry needed"
    );
}

#[test]
fn windows_powershell_zips_with_backslash_separators_unpack() {
    use testsupport::github::{RawEntry, raw_zip};
    let inner = raw_zip(&[
        RawEntry::file("Debug\\", b""),
        RawEntry::file("Debug\\setup-ebpf.ps1", b"exit 0"),
        RawEntry::file("Debug\\bin\\tool.exe", b"MZ"),
    ]);
    let outer = raw_zip(&[RawEntry::file("build-Debug.zip", &inner)]);
    let root = tempfile::tempdir().unwrap();
    let path = root.path().join("ps51.zip");
    std::fs::write(&path, outer).unwrap();
    let f = Fetcher::new(FetchOptions::new(root.path().join("cache"))).unwrap();
    let b = f.fetch(&cfg(), &SourceSpec::File(path)).unwrap();
    assert!(b.path.join("setup-ebpf.ps1").is_file());
    assert!(b.path.join("bin").join("tool.exe").is_file());
}
