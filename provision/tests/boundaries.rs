//! provision's stages keep to the dependency graph that ARCHITECTURE.md draws: guest sessions
//! use nothing else of the crate; install uses sessions (and the config), never VMs; VMs use
//! sessions. A `crate::…` or `super::…` path that leaves a module for one it may not use fails
//! here, naming the file and line.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Each top-level module of provision and the top-level modules it may use.
const ALLOWED: &[(&str, &[&str])] = &[
    ("session", &[]),
    ("config", &["session"]),
    ("install", &["session", "config"]),
    ("health", &["session", "install"]),
    ("debugger", &["session"]),
    ("forensics", &["session"]),
    ("media", &["session", "vm"]),
    ("vm", &["session", "config", "media", "debugger"]),
    (
        "lib",
        &[
            "session",
            "config",
            "install",
            "health",
            "debugger",
            "forensics",
            "media",
            "vm",
        ],
    ),
];

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

/// Every `.rs` file under `dir`.
fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// The top-level module a file belongs to, and how deep below `src/` its module sits
/// (`vm/qemu/boot.rs` → ("vm", 3): `super::super::super::X` is the top-level module X).
fn module_of(file: &Path) -> (String, usize) {
    let rel = file.strip_prefix(src()).unwrap();
    let parts: Vec<String> = rel
        .iter()
        .map(|c| c.to_string_lossy().trim_end_matches(".rs").to_string())
        .collect();
    let depth = if parts == ["lib"] {
        0
    } else if parts.last().is_some_and(|l| l == "mod") {
        parts.len() - 1
    } else {
        parts.len()
    };
    (parts[0].clone(), depth)
}

/// The top-level modules a line of `file` names: `crate::X` anywhere, `crate::{X, Y}` groups,
/// and `super::` chains that climb to the crate root.
fn used_modules(line: &str, depth: usize) -> Vec<String> {
    let ident = |s: &str| -> String {
        s.chars()
            .take_while(|c| c.is_alphanumeric() || *c == '_')
            .collect()
    };
    let mut out = Vec::new();
    for (i, _) in line.match_indices("crate::") {
        let rest = &line[i + "crate::".len()..];
        if let Some(group) = rest.strip_prefix('{') {
            let group = &group[..group.find('}').unwrap_or(group.len())];
            out.extend(group.split(',').map(|g| ident(g.trim())));
        } else {
            out.push(ident(rest));
        }
    }
    let climb = "super::".repeat(depth);
    if depth > 0 {
        for (i, _) in line.match_indices(&climb) {
            let before = &line[..i];
            if !before.ends_with("super::") {
                out.push(ident(&line[i + climb.len()..]));
            }
        }
    }
    out.retain(|m| !m.is_empty());
    out
}

#[test]
fn modules_use_only_what_the_dependency_graph_allows() {
    let allowed: BTreeMap<&str, BTreeSet<&str>> = ALLOWED
        .iter()
        .map(|(m, deps)| (*m, deps.iter().copied().collect()))
        .collect();
    let mut files = Vec::new();
    rust_files(&src(), &mut files);
    files.sort();
    let mut broken = Vec::new();
    let mut seen = BTreeSet::new();
    for f in &files {
        let (module, depth) = module_of(f);
        let Some(ok) = allowed.get(module.as_str()) else {
            panic!(
                "{}: module `{module}` is not in ALLOWED; add it",
                f.display()
            );
        };
        seen.insert(module.clone());
        let text = std::fs::read_to_string(f).unwrap();
        for (n, line) in text.lines().enumerate() {
            if line.trim_start().starts_with("//") {
                continue;
            }
            for used in used_modules(line, depth) {
                if used != module
                    && allowed.contains_key(used.as_str())
                    && !ok.contains(used.as_str())
                {
                    broken.push(format!(
                        "{}:{}: `{module}` uses `{used}`",
                        f.display(),
                        n + 1
                    ));
                }
            }
        }
    }
    assert!(seen.len() >= 8, "found only {seen:?}");
    assert!(
        broken.is_empty(),
        "outside the dependency graph:\n{}",
        broken.join("\n")
    );
}

#[test]
fn the_check_sees_every_kind_of_path() {
    assert_eq!(used_modules("use crate::vm::Vm;", 1), ["vm"]);
    assert_eq!(
        used_modules("use crate::{session::Session, vm};", 1),
        ["session", "vm"]
    );
    assert_eq!(used_modules("let x = super::super::vm::f();", 2), ["vm"]);
    assert!(used_modules("use super::Script;", 2).is_empty());
    assert_eq!(used_modules("use super::vm::X;", 1), ["vm"]);
    assert_eq!(
        module_of(&src().join("vm/qemu/boot.rs")),
        ("vm".to_string(), 3)
    );
    assert_eq!(module_of(&src().join("lib.rs")), ("lib".to_string(), 0));
    assert_eq!(module_of(&src().join("vm/mod.rs")), ("vm".to_string(), 1));
}
