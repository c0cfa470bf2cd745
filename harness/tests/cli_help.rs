//! `--help` of every command as golden files (`tests/golden/help/harness-<command>.txt`): a flag
//! renamed, dropped or reworded shows up as a diff to review.
//!
//! `UPDATE_GOLDEN=1 cargo test -p harness --test cli_help` rewrites them.

mod common;

use std::path::{Path, PathBuf};

fn golden_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden/help")
}

fn help(dir: &Path, path: &[String]) -> String {
    let out = common::isolated_harness(dir)
        .env("COLUMNS", "100")
        .args(path)
        .arg("--help")
        .output()
        .unwrap();
    assert!(out.status.success(), "harness {path:?} --help failed");
    String::from_utf8(out.stdout).unwrap()
}

/// The subcommands a help text lists under "Commands:" (without `help`).
fn subcommands(text: &str) -> Vec<String> {
    text.lines()
        .skip_while(|l| *l != "Commands:")
        .skip(1)
        .take_while(|l| l.starts_with("  "))
        .filter(|l| !l.starts_with("   "))
        .filter_map(|l| l.split_whitespace().next())
        .filter(|c| *c != "help")
        .map(str::to_string)
        .collect()
}

#[test]
fn every_help_text_matches_its_golden_file() {
    let d = tempfile::tempdir().unwrap();
    let update = std::env::var_os("UPDATE_GOLDEN").is_some();
    let mut todo = vec![Vec::<String>::new()];
    let mut seen = Vec::new();
    let mut differ = Vec::new();
    while let Some(path) = todo.pop() {
        let text = help(d.path(), &path);
        for sub in subcommands(&text) {
            let mut p = path.clone();
            p.push(sub);
            todo.push(p);
        }
        let name = std::iter::once("harness".to_string())
            .chain(path.iter().cloned())
            .collect::<Vec<_>>()
            .join("-");
        let file = golden_dir().join(format!("{name}.txt"));
        if update {
            std::fs::create_dir_all(golden_dir()).unwrap();
            std::fs::write(&file, &text).unwrap();
        }
        match std::fs::read_to_string(&file) {
            Ok(want) if want == text => {}
            _ => differ.push(file.display().to_string()),
        }
        seen.push(format!("{name}.txt"));
    }
    assert!(seen.len() > 20, "only {} commands found", seen.len());
    // A golden file whose command is gone is stale.
    for e in std::fs::read_dir(golden_dir()).unwrap() {
        let f = e.unwrap().file_name().to_string_lossy().to_string();
        if !seen.contains(&f) && update {
            std::fs::remove_file(golden_dir().join(&f)).unwrap();
        } else if !seen.contains(&f) {
            differ.push(format!("{f} (no such command any more)"));
        }
    }
    assert!(
        differ.is_empty(),
        "--help differs from: {}; if the change is intended, rerun with UPDATE_GOLDEN=1 and review `git diff`",
        differ.join(", ")
    );
}
