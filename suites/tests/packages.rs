//! A suite that names packages the module does not have: the error names them, not Go.

use std::collections::BTreeMap;

use suites::{LocalExecutor, Quiet, RunMode, RunOptions, SuiteConfig};
use testsupport::gomod;

fn run_error(mode: RunMode, packages: &[&str]) -> String {
    let tmp = tempfile::tempdir().unwrap();
    let suite = SuiteConfig {
        path: Some(gomod::path()),
        packages: packages.iter().map(|s| s.to_string()).collect(),
        flags: vec!["-count=1".into()],
        env: BTreeMap::new(),
        package_timeout: 30,
        rerun_fails: 0,
        mode,
        ..SuiteConfig::default()
    };
    let opts = RunOptions::new("fixture", suite, gomod::path());
    let mut exec = LocalExecutor::new(tmp.path().join("target"));
    match suites::run(&mut exec, &opts, &mut Quiet) {
        Ok(r) => panic!("a nonexistent package must stop the run: {r:?}"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn a_nonexistent_package_is_named_and_go_is_not_blamed() {
    for mode in [RunMode::Host, RunMode::Guest] {
        let e = run_error(mode, &["./pass", "./nope", "harness.test/fixture/nothere"]);
        assert!(
            e.contains("package `./nope` cannot be loaded"),
            "{mode:?}: {e}"
        );
        assert!(e.contains("directory not found"), "{mode:?}: {e}");
        assert!(
            e.contains("package `harness.test/fixture/nothere` cannot be loaded"),
            "{mode:?}: {e}"
        );
        assert!(e.contains("fix `packages`"), "{mode:?}: {e}");
        assert!(!e.contains("Go is installed"), "{mode:?}: {e}");
        assert!(!e.contains("missing field"), "{mode:?}: {e}");
        assert!(
            !e.contains("pass`"),
            "an existing package is not blamed: {e}"
        );
    }
}
