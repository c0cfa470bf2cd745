//! `tree_sizes.sh`, the check after every tree upload to a Linux guest, gives the same answer
//! with GNU find, with busybox (stat), and with a busybox that has no stat (wc -c), on a tree
//! with nested directories, an empty file and a space in a name.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

const SCRIPT: &str = include_str!("../scripts/linux/session/tree_sizes.sh");

/// Runs the script on `dir` with `sh` from `path` (the host's when `None`).
fn run(dir: &Path, path: Option<&Path>) -> BTreeMap<String, u64> {
    let mut c = match path {
        Some(p) => {
            let mut c = Command::new(p.join("sh"));
            c.env_clear().env("PATH", p);
            c
        }
        None => Command::new("sh"),
    };
    let out = c
        .arg("-c")
        .arg(SCRIPT)
        .arg("tree_sizes")
        .arg(dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    let mut lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.pop(), Some(r#"{"done":true}"#), "{text}");
    lines
        .iter()
        .map(|l| {
            let (size, name) = l.split_once('\t').unwrap_or_else(|| panic!("{l:?}"));
            (name.to_string(), size.parse().unwrap())
        })
        .collect()
}

/// A PATH of busybox applets.
fn busybox(dir: &Path, applets: &[&str]) -> std::path::PathBuf {
    let bin = dir.join(applets.join("-"));
    std::fs::create_dir_all(&bin).unwrap();
    for a in applets {
        std::os::unix::fs::symlink("/bin/busybox", bin.join(a)).unwrap();
    }
    bin
}

#[test]
fn gnu_find_busybox_stat_and_busybox_wc_agree() {
    let tmp = tempfile::tempdir().unwrap();
    let tree = tmp.path().join("tree");
    std::fs::create_dir_all(tree.join("a/b")).unwrap();
    std::fs::write(tree.join("a/b/bin.test"), vec![7u8; 100_000]).unwrap();
    std::fs::write(tree.join("with space.txt"), "hello\n").unwrap();
    std::fs::write(tree.join("a/empty"), "").unwrap();
    let want: BTreeMap<String, u64> = [
        ("./a/b/bin.test".to_string(), 100_000),
        ("./with space.txt".to_string(), 6),
        ("./a/empty".to_string(), 0),
    ]
    .into();
    assert_eq!(run(&tree, None), want, "GNU find -printf");
    let with_stat = busybox(tmp.path(), &["sh", "find", "stat", "wc", "cat"]);
    assert_eq!(run(&tree, Some(&with_stat)), want, "busybox stat");
    let no_stat = busybox(tmp.path(), &["sh", "find", "wc", "cat"]);
    assert_eq!(run(&tree, Some(&no_stat)), want, "busybox wc -c");
}
