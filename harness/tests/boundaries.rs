//! The binary stays thin in one direction: `cmd/` (clap handlers) uses the pipeline, the
//! renderer and the rest, and nothing but `main.rs` and `cli.rs` uses `cmd/`. A path into `cmd`
//! from anywhere else fails here, naming the file and line.

use std::path::Path;

#[test]
fn only_main_and_cli_use_the_clap_handlers() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut bad = Vec::new();
    let mut files = 0;
    for entry in hostproc::walk(&src) {
        let entry = entry.unwrap();
        let path = entry.path();
        let rel = path.strip_prefix(&src).unwrap();
        if path.extension().is_none_or(|x| x != "rs")
            || rel.starts_with("cmd")
            || rel == Path::new("main.rs")
            || rel == Path::new("cli.rs")
        {
            continue;
        }
        files += 1;
        let text = std::fs::read_to_string(path).unwrap();
        for (n, line) in text.lines().enumerate() {
            if line.contains("crate::cmd") || line.contains("super::cmd") {
                bad.push(format!("{}:{}: {}", rel.display(), n + 1, line.trim()));
            }
        }
    }
    assert!(
        files > 20,
        "only {files} files read under {}",
        src.display()
    );
    assert!(
        bad.is_empty(),
        "uses of cmd/ outside main.rs and cli.rs:\n{}",
        bad.join("\n")
    );
}
