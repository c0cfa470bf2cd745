//! A PowerShell syntax smoke test with tree-sitter-powershell (no `pwsh` is reachable here).
//!
//! [`check_source`] reports every ERROR and MISSING node. The grammar has known false positives
//! (crates.md §3); the only one allowed is a `switch` written on one line with several clauses
//! (`switch ($m) { 'a' { 1 } 'b' { 2 } }`), which it misparses: write clauses on their own lines
//! and they are checked. The PS7 ternary is *not* allowed: Windows PowerShell 5.1, which every
//! guest has, does not know it either. The grammar misses some errors (`try {}` with no catch),
//! so this is a smoke test, not a proof.

use std::path::{Path, PathBuf};

/// One syntax problem, 1-based position.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub line: usize,
    pub column: usize,
    /// `ERROR` or `MISSING <kind>`.
    pub kind: String,
    /// The source line.
    pub text: String,
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}:{}: {}: {}",
            self.line,
            self.column,
            self.kind,
            self.text.trim()
        )
    }
}

/// Whether a problem on this source line is a known false positive of the grammar.
pub fn allowlisted(line: &str) -> bool {
    let t = line.trim();
    // One-line switch with several clauses.
    t.starts_with("switch") && t.ends_with('}') && t.matches('{').count() >= 3
}

/// Syntax problems in PowerShell source, false positives removed.
pub fn check_source(src: &str) -> Vec<Problem> {
    let mut parser = tree_sitter::Parser::new();
    parser
        .set_language(&tree_sitter_powershell::LANGUAGE.into())
        .expect("loading the PowerShell grammar");
    let Some(tree) = parser.parse(src, None) else {
        return vec![Problem {
            line: 1,
            column: 1,
            kind: "PARSE FAILED".into(),
            text: String::new(),
        }];
    };
    let lines: Vec<&str> = src.lines().collect();
    let mut out = Vec::new();
    let mut cursor = tree.walk();
    let mut stack = vec![tree.root_node()];
    while let Some(node) = stack.pop() {
        if node.is_error() || node.is_missing() {
            let p = node.start_position();
            let text = lines.get(p.row).copied().unwrap_or("").to_string();
            if !allowlisted(&text) {
                let kind = if node.is_missing() {
                    format!("MISSING {}", node.kind())
                } else {
                    "ERROR".into()
                };
                out.push(Problem {
                    line: p.row + 1,
                    column: p.column + 1,
                    kind,
                    text,
                });
            }
            if node.is_error() {
                continue; // one report per error subtree
            }
        }
        if node.has_error() || node.is_missing() {
            stack.extend(node.children(&mut cursor));
        }
    }
    out.sort_by_key(|p| (p.line, p.column));
    out
}

/// Checks one `.ps1` file; the error lists every problem with its position.
pub fn check(path: &Path) -> Result<(), String> {
    let src = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let problems = check_source(src.trim_start_matches('\u{feff}'));
    if problems.is_empty() {
        return Ok(());
    }
    Err(problems
        .iter()
        .map(|p| format!("{}:{p}", path.display()))
        .collect::<Vec<_>>()
        .join("\n"))
}

/// Every `*.ps1` under `root`, skipping `target/` and dot-directories.
pub fn find_ps1(root: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&dir) else {
            continue;
        };
        for e in rd.flatten() {
            let name = e.file_name();
            let name = name.to_string_lossy();
            let Ok(ft) = e.file_type() else { continue };
            if ft.is_dir() {
                if name != "target" && !name.starts_with('.') {
                    stack.push(e.path());
                }
            } else if name.to_ascii_lowercase().ends_with(".ps1") {
                out.push(e.path());
            }
        }
    }
    out.sort();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn good_source_is_clean() {
        let src = "param([string]$Path)\n$ErrorActionPreference = 'Stop'\ntry { Get-Item -LiteralPath $Path } catch { Write-Error $_ }\n$h = @{ a = 1 }\nConvertTo-Json -InputObject $h -Compress\n";
        assert_eq!(check_source(src), vec![]);
    }

    #[test]
    fn real_errors_are_found() {
        let cases = [
            "if ($x) { Write-Output 1\n",
            "Write-Output 'unterminated\n",
            "Get-Item (Join-Path $a 'b'\n",
            "$x = $a ? 1 : 2\n",
        ];
        for src in cases {
            assert!(!check_source(src).is_empty(), "no problem found in {src:?}");
        }
    }

    #[test]
    fn one_line_switch_is_allowlisted() {
        assert!(allowlisted("switch ($m) { 'a' { 1 } 'b' { 2 } }"));
        assert!(!allowlisted("if ($x) {"));
        assert_eq!(
            check_source("switch ($m) { 'a' { 1 } 'b' { 2 } }\n"),
            vec![]
        );
    }
}
