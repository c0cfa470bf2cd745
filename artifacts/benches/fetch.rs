//! Benchmark (not a test): cold fetch of a ~200 MB efW-shaped artifact from the loopback GitHub
//! stand-in vs `curl` on the same URL, warm fetch time, and unpack time vs `unzip -q`.
//!
//! Run: `cargo bench -p artifacts --bench fetch` (env `BENCH_MB` changes the target size,
//! `BENCH_RUNS` the repetitions). Download and unpack runs alternate with curl/unzip and report
//! best-of-N and median, since the machine is shared.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use artifacts::{BuildSourceConfig, FetchOptions, Fetcher, Secret, SourceSpec, unpack_zip};
use testsupport::github::{GithubStandIn, RunSpec, pseudo_random, zip_of, zip_stored};

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn best(v: &[Duration]) -> Duration {
    *v.iter().min().expect("at least one run")
}

fn secs(d: Duration) -> f64 {
    d.as_secs_f64()
}

/// Files shaped like efW's `Debug\` folder: a few large PDB-like files and many small binaries,
/// about 70 % incompressible so the deflated artifact lands near `target_mb`.
fn build_files(target_mb: usize) -> Vec<(String, Vec<u8>)> {
    let raw = target_mb * 1_400_000; // ~1/0.7 of the target
    let mut files = vec![
        ("setup-ebpf.ps1".to_string(), b"exit 0\r\n".to_vec()),
        (
            "install_ebpf.psm1".to_string(),
            b"function Install-eBPFComponents {}\r\n".to_vec(),
        ),
    ];
    let large = raw * 55 / 100 / 10;
    let small_count = 500;
    let small_total = raw - large * 10;
    let mut seed = 1u64;
    let mut mixed = |len: usize| {
        seed += 1;
        let mut data = pseudo_random(len, seed);
        // Every third 4 KiB block compressible, like code sections and symbol tables.
        for (i, block) in data.chunks_mut(4096).enumerate() {
            if i % 10 < 3 {
                for (j, b) in block.iter_mut().enumerate() {
                    *b = b"ebpf_program_load "[j % 18];
                }
            }
        }
        data
    };
    for i in 0..10 {
        files.push((format!("symbols/ebpf_module_{i}.pdb"), mixed(large)));
    }
    for i in 0..small_count {
        let len = (small_total / small_count) * (50 + (i * 37) % 100) / 100;
        let ext = ["dll", "sys", "exe", "pdb", "json"][i % 5];
        files.push((format!("bin_{}/file_{i}.{ext}", i % 7), mixed(len)));
    }
    files
}

fn main() {
    let target_mb = testsupport::bench::env_count("BENCH_MB", 200);
    let runs = testsupport::bench::env_count("BENCH_RUNS", 3).max(1);
    let work = tempfile::tempdir().expect("temp dir");
    let w = work.path();

    eprintln!("generating a ~{target_mb} MB efW-shaped artifact…");
    let t = Instant::now();
    let files = build_files(target_mb);
    let file_count = files.len();
    let named: Vec<(String, &[u8])> = files
        .iter()
        .map(|(n, d)| (format!("Debug/{n}"), d.as_slice()))
        .collect();
    let refs: Vec<(&str, &[u8])> = named.iter().map(|(n, d)| (n.as_str(), *d)).collect();
    let inner = zip_of(&refs);
    let outer = zip_stored(&[("build-Debug.zip", &inner)]);
    drop(inner);
    let raw_total: usize = files.iter().map(|(_, d)| d.len()).sum();
    drop(files);
    let size = outer.len() as u64;
    let mb = size as f64 / 1e6;
    let outer_path = w.join("artifact.zip");
    std::fs::write(&outer_path, &outer).unwrap();
    eprintln!(
        "  {file_count} files, {:.0} MB unpacked, artifact {mb:.1} MB ({:.1} s to generate)",
        raw_total as f64 / 1e6,
        t.elapsed().as_secs_f64()
    );

    let gh = GithubStandIn::start();
    gh.add_run(RunSpec::new(1));
    let id = gh.add_artifact_zip(1, "Build-x64-Debug", outer);
    let zip_url = format!(
        "{}/repos/microsoft/ebpf-for-windows/actions/artifacts/{id}/zip",
        gh.url()
    );
    let opts = |cache: &Path| FetchOptions {
        api_url: gh.url(),
        token: Some(Secret::new(gh.token())),
        ..FetchOptions::new(cache)
    };

    // 1. Download: curl vs ours, same URL (302 to the storage port), to a file on the same disk,
    //    alternating so background load hits both alike.
    let curl_out = w.join("curl.zip");
    let dl_cache = w.join("dl-cache");
    let fetcher = Fetcher::new(opts(&dl_cache)).unwrap();
    let ours_out = w.join("ours.zip");
    let mut curl_times = Vec::new();
    let mut ours_times = Vec::new();
    for _ in 0..runs {
        let _ = std::fs::remove_file(&curl_out);
        let t = Instant::now();
        let st = Command::new("curl")
            .args(["-sS", "-f", "-L", "-H"])
            .arg(format!("Authorization: Bearer {}", gh.token()))
            .arg("-o")
            .arg(&curl_out)
            .arg(&zip_url)
            .status()
            .expect("curl runs");
        curl_times.push(t.elapsed());
        assert!(st.success(), "curl failed");
        assert_eq!(std::fs::metadata(&curl_out).unwrap().len(), size);

        let _ = std::fs::remove_file(&ours_out);
        let t = Instant::now();
        let got = fetcher
            .download_to(&zip_url, &ours_out, None)
            .expect("download");
        ours_times.push(t.elapsed());
        assert_eq!(got.size, size);
    }
    let (curl_best, ours_best) = (best(&curl_times), best(&ours_times));
    let (curl_t, ours_t) = (median(curl_times), median(ours_times));
    println!(
        "artifacts benchmark: {mb:.1} MB artifact, {file_count} files, {runs} runs each (best | median), loopback stand-in"
    );
    println!(
        "  download   curl {:.3} s ({:.0} MB/s) | {:.3} s   harness {:.3} s ({:.0} MB/s) | {:.3} s   harness/curl speed {:.2}x best, {:.2}x median (target >= 0.95)",
        secs(curl_best),
        mb / secs(curl_best),
        secs(curl_t),
        secs(ours_best),
        mb / secs(ours_best),
        secs(ours_t),
        secs(curl_best) / secs(ours_best),
        secs(curl_t) / secs(ours_t)
    );

    // 2. Cold fetch (resolve + download + verify digest + unpack + cache) and warm fetch.
    let cfg = BuildSourceConfig::default();
    let mut cold_times = Vec::new();
    let mut warm_times = Vec::new();
    for i in 0..runs {
        let cache = w.join(format!("cache-{i}"));
        let f = Fetcher::new(opts(&cache)).unwrap();
        let t = Instant::now();
        let b = f.fetch(&cfg, &SourceSpec::Main).expect("cold fetch");
        cold_times.push(t.elapsed());
        assert!(!b.cached && b.layout.setup_ebpf_ps1);
        for _ in 0..5 {
            let t = Instant::now();
            let b = f.fetch(&cfg, &SourceSpec::Main).expect("warm fetch");
            warm_times.push(t.elapsed());
            assert!(b.cached);
        }
        std::fs::remove_dir_all(&cache).unwrap();
    }
    let (cold_t, warm_t) = (median(cold_times), median(warm_times.clone()));

    // 3. Unpack: ours (both zip levels, checks, normalisation) vs `unzip -q` twice.
    let mut unzip_times = Vec::new();
    let mut unpack_times = Vec::new();
    for i in 0..runs {
        let d1 = w.join(format!("unzip-{i}"));
        let d2 = w.join(format!("unzip-{i}-inner"));
        let t = Instant::now();
        let a = Command::new("unzip")
            .arg("-q")
            .arg(&outer_path)
            .arg("-d")
            .arg(&d1)
            .status()
            .unwrap();
        let b = Command::new("unzip")
            .arg("-q")
            .arg(d1.join("build-Debug.zip"))
            .arg("-d")
            .arg(&d2)
            .status()
            .unwrap();
        unzip_times.push(t.elapsed());
        assert!(a.success() && b.success());
        std::fs::remove_dir_all(&d1).unwrap();
        std::fs::remove_dir_all(&d2).unwrap();

        let dest = w.join(format!("ours-{i}"));
        let t = Instant::now();
        let n = unpack_zip(&outer_path, &dest, &Default::default()).expect("unpack");
        unpack_times.push(t.elapsed());
        assert_eq!(n.files as usize, file_count);
        std::fs::remove_dir_all(&dest).unwrap();
    }
    let (unzip_best, unpack_best) = (best(&unzip_times), best(&unpack_times));
    let (unzip_t, unpack_t) = (median(unzip_times), median(unpack_times));

    println!(
        "  cold fetch {:.3} s (resolve + download + sha256 verify + unpack + cache)",
        secs(cold_t)
    );
    println!(
        "  warm fetch {:.1} ms median, {:.1} ms worst of {} (target <= 50 ms)",
        secs(warm_t) * 1e3,
        secs(*warm_times.iter().max().unwrap()) * 1e3,
        warm_times.len()
    );
    println!(
        "  unpack     unzip -q x2 {:.3} s | {:.3} s   harness {:.3} s | {:.3} s   harness/unzip speed {:.2}x best, {:.2}x median (target >= 1.0)",
        secs(unzip_best),
        secs(unzip_t),
        secs(unpack_best),
        secs(unpack_t),
        secs(unzip_best) / secs(unpack_best),
        secs(unzip_t) / secs(unpack_t)
    );
}
