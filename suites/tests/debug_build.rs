//! `harness repro --debug`'s build for real: the fixture module's `pass` package cross-compiled
//! for Windows with the debug flags, checked with `go version -m` (the build settings Go embeds)
//! and for DWARF sections in the PE file.

use suites::TargetOs;
use suites::debug;
use suites::gotool::HostGo;
use testsupport::gomod;

fn go() -> String {
    let scripts = std::process::Command::new("python3")
        .args([
            "-c",
            "import sysconfig; print(sysconfig.get_path('scripts'))",
        ])
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default();
    let candidate = std::path::Path::new(&scripts).join("go");
    if candidate.is_file() {
        candidate.display().to_string()
    } else {
        "go".into()
    }
}

#[test]
fn the_debug_binary_is_built_without_optimisations_and_keeps_dwarf() {
    let tmp = tempfile::tempdir().unwrap();
    let host = HostGo {
        go: go(),
        dir: gomod::path(),
        env: debug::target_env(TargetOs::Windows, "amd64"),
        cancel: None,
    };
    let b = debug::build(&host, &gomod::pkg("pass"), TargetOs::Windows, tmp.path()).unwrap();
    assert_eq!(b.binary, tmp.path().join("pass.test.exe"));
    assert!(
        b.command.contains(&"-gcflags=all=-N -l".to_string()),
        "{:?}",
        b.command
    );

    let out = std::process::Command::new(go())
        .args(["version", "-m"])
        .arg(&b.binary)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(text.contains("-gcflags=\"all=-N -l\""), "{text}");
    assert!(text.contains("GOOS=windows"), "{text}");
    assert!(!text.contains("-ldflags"), "nothing strips DWARF: {text}");
    let bytes = std::fs::read(&b.binary).unwrap();
    assert!(bytes.starts_with(b"MZ"), "a Windows PE file");
    let has = |needle: &[u8]| bytes.windows(needle.len()).any(|w| w == needle);
    assert!(has(b".debug_info") || has(b".zdebug_info"), "no DWARF");

    // A package that does not exist fails with the command and Go's reason.
    let e = debug::build(&host, &gomod::pkg("nosuch"), TargetOs::Windows, tmp.path())
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("-gcflags=all=-N -l") && e.contains("nosuch"),
        "{e}"
    );
}
