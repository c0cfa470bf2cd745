//! `index.html`: a golden file (volatile parts normalised) and the page as real headless
//! Chromium renders it (the DOM shows the counts and the failing test; the screenshot decodes,
//! has the window's size and shows the failure colour).
//!
//! `UPDATE_GOLDEN=1 cargo test -p suites --test html_report` rewrites the golden file;
//! `SAVE_SCREENSHOT=docs/report.png` (relative to the workspace) keeps the screenshot.

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};

use suites::event::parse_line;
use suites::{Execution, Provenance, RunMeta, RunRecord};

const PKG: &str = "github.com/cilium/ebpf";

fn events() -> Vec<String> {
    let ev = |a: &str, t: Option<&str>, extra: &str| {
        let test = t.map(|t| format!(r#","Test":"{t}""#)).unwrap_or_default();
        format!(r#"{{"Action":"{a}","Package":"{PKG}"{test}{extra}}}"#)
    };
    vec![
        ev("start", None, ""),
        ev("run", Some("TestMapBatch"), ""),
        ev(
            "output",
            Some("TestMapBatch"),
            r#","Output":"    map_test.go:42: batch update: Errno(119) <script>x</script>\n""#,
        ),
        ev("fail", Some("TestMapBatch"), r#","Elapsed":0.25"#),
        ev("run", Some("TestLoad"), ""),
        ev("pass", Some("TestLoad"), r#","Elapsed":1.5"#),
        ev("run", Some("TestFlaky"), ""),
        ev("fail", Some("TestFlaky"), r#","Elapsed":0.5"#),
        ev("run", Some("TestSkip"), ""),
        ev("skip", Some("TestSkip"), r#","Elapsed":0"#),
        ev("fail", None, r#","Elapsed":3"#),
        ev("start", None, ""),
        ev("run", Some("TestFlaky"), ""),
        ev("pass", Some("TestFlaky"), r#","Elapsed":0.75"#),
        ev("pass", None, r#","Elapsed":1"#),
    ]
}

fn write_folder(dir: &Path) -> suites::Written {
    let lines = events();
    let evs: Vec<_> = lines.iter().map(|l| parse_line(l).unwrap()).collect();
    let rec = RunRecord {
        execution: Execution::from_events(&evs),
        events: lines,
        other_output: Vec::new(),
        meta: RunMeta {
            suite: "ebpf-go".into(),
            mode: "guest".into(),
            started: "2026-12-01T10:00:00Z".into(),
            duration_secs: 42.5,
            flags: vec!["-count=1".into()],
            warnings: vec!["testdata/link is a dangling symlink".into()],
            timings: BTreeMap::from([("build".into(), 12.0), ("run".into(), 25.0)]),
            uploaded_bytes: 1234,
            ..Default::default()
        },
        package_dirs: Vec::new(),
        cores: Vec::new(),
    };
    let prov = Provenance {
        harness_version: "0.1.0".into(),
        efw_source: Some("scheduled-run".into()),
        efw_version: Some("1.0.0".into()),
        efw_sha: Some("0123456789abcdef".into()),
        guest_os: Some("Windows 11 Pro N".into()),
        ..Default::default()
    };
    suites::write(dir, &rec, &prov).unwrap()
}

/// The run id (made at write time) is the one volatile part.
fn normalise(html: &str, run_id: &str) -> String {
    html.replace(run_id, "RUN-ID")
}

fn golden_path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden/index.html")
}

#[test]
fn index_html_matches_the_golden_file() {
    let tmp = tempfile::tempdir().unwrap();
    let w = write_folder(tmp.path());
    let html = std::fs::read_to_string(tmp.path().join("index.html")).unwrap();
    let got = normalise(&html, &w.summary.run.id);
    let path = golden_path();
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, &got).unwrap();
    }
    let want = std::fs::read_to_string(&path)
        .expect("golden file missing: run with UPDATE_GOLDEN=1 and review the diff");
    assert!(
        got == want,
        "index.html differs from {}; if the change is intended, rerun with UPDATE_GOLDEN=1 and review `git diff`",
        path.display()
    );
}

#[test]
fn index_html_is_self_contained_and_escapes_output() {
    let tmp = tempfile::tempdir().unwrap();
    write_folder(tmp.path());
    let html = std::fs::read_to_string(tmp.path().join("index.html")).unwrap();
    assert!(
        !html.contains("<script"),
        "the test's output must be escaped"
    );
    assert!(html.contains("&lt;script&gt;x&lt;/script&gt;"));
    assert!(!html.contains("<link"));
    let re = regex::Regex::new(r#"(?i)(src|href|url)\s*[=(]\s*["']?\s*(https?:)?//"#).unwrap();
    assert!(
        re.find(&html).is_none(),
        "external reference: {:?}",
        re.find(&html)
    );
    // Links go to files of the folder, which exist (history.html only once recorded).
    let href = regex::Regex::new(r#"href="([^"]+)""#).unwrap();
    for c in href.captures_iter(&html) {
        let f = &c[1];
        assert!(tmp.path().join(f).is_file(), "{f} is linked but missing");
    }
}

/// The `chromium` to test with; none outside CI means the test is skipped (with a note).
fn chromium() -> Option<testsupport::chromium::Chromium> {
    match testsupport::chromium::Chromium::new() {
        Some(c) => Some(c),
        None if std::env::var_os("CI").is_none() => {
            eprintln!("skipped: chromium not found; .ci/install-deps installs it");
            None
        }
        None => panic!("chromium is required in CI (.ci/install-deps installs Debian's chromium)"),
    }
}

const FAIL_RGB: [u8; 3] = [0xd1, 0x24, 0x2f];

#[test]
fn chromium_renders_the_counts_and_the_failure() {
    let Some(chromium) = chromium() else { return };
    let tmp = tempfile::tempdir().unwrap();
    write_folder(tmp.path());
    let index = tmp.path().join("index.html");

    let dom = chromium.dump_dom(&index).unwrap();
    let tile = |id: &str| {
        let re = regex::Regex::new(&format!(r#"id="count-{id}"><b>([^<]+)</b>"#)).unwrap();
        re.captures(&dom)
            .unwrap_or_else(|| panic!("no {id} tile in the rendered DOM:\n{dom}"))[1]
            .to_string()
    };
    assert_eq!(tile("tests"), "4");
    assert_eq!(tile("passed"), "2");
    assert_eq!(tile("failed"), "1");
    assert_eq!(tile("skipped"), "1");
    assert_eq!(tile("flaky"), "1");
    assert!(
        dom.contains(r#"<code class="test">TestMapBatch</code>"#),
        "{dom}"
    );
    assert!(dom.contains("ENOBUFS"), "the explanation is shown");

    let (w, h) = (1200u32, 1400u32);
    let png_path = tmp.path().join("report.png");
    chromium.screenshot(&index, &png_path, w, h).unwrap();
    let decoder = png::Decoder::new(std::io::BufReader::new(
        std::fs::File::open(&png_path).unwrap(),
    ));
    let mut reader = decoder.read_info().unwrap();
    let mut buf = vec![0; reader.output_buffer_size().unwrap()];
    let info = reader.next_frame(&mut buf).unwrap();
    assert_eq!((info.width, info.height), (w, h));
    let step = info.color_type.samples();
    assert!(step >= 3, "{:?}", info.color_type);
    let pixels: Vec<&[u8]> = buf[..info.buffer_size()].chunks(step).collect();
    let near = |p: &[u8], c: [u8; 3]| (0..3).all(|i| p[i].abs_diff(c[i]) <= 6);
    let red = pixels.iter().filter(|p| near(p, FAIL_RGB)).count();
    // The failed tile alone is about 96 × 60 px; the failure's border adds more.
    assert!(red > 4000, "only {red} pixels of the failure colour");
    let colours: HashSet<[u8; 3]> = pixels.iter().map(|p| [p[0], p[1], p[2]]).collect();
    assert!(
        colours.len() > 50,
        "a near-blank page: {} colours",
        colours.len()
    );
    if let Some(to) = std::env::var_os("SAVE_SCREENSHOT") {
        let to = Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(to);
        std::fs::copy(&png_path, to).unwrap();
    }
}
