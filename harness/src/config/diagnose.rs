//! Turning TOML and serde errors into messages that name the file, line, column, key, what is
//! allowed, and the nearest valid key for a typo.

use std::path::{Path, PathBuf};

use toml::Table;

use super::Config;

/// A configuration problem, worded for the person who has to fix it.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("config file {} does not exist; check -c/--config (or HARNESS_CONFIG)", path.display())]
    Missing { path: PathBuf },
    #[error(
        "config file {} is a directory, not a file; -c/--config takes a TOML file (for example {})",
        path.display(),
        path.join("harness.toml").display()
    )]
    IsDirectory { path: PathBuf },
    #[error("cannot read config file {}: {reason}", path.display())]
    Read { path: PathBuf, reason: String },
    /// Every problem found in one file, in the order they appear in it.
    #[error(
        "{}\n  fix the file, then check it with `harness config check`",
        problems.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n")
    )]
    Invalid { problems: Vec<FileProblem> },
    #[error("{origin}: {message}")]
    Override { origin: String, message: String },
}

/// One problem at a place in a config file.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, thiserror::Error)]
#[error(
    "{}:{line}:{column}: {message}{}",
    path.display(),
    key.as_ref().map(|k| format!(" (key `{k}`)")).unwrap_or_default()
)]
pub struct FileProblem {
    pub path: PathBuf,
    pub line: usize,
    pub column: usize,
    pub key: Option<String>,
    pub message: String,
}

impl ConfigError {
    /// The problems as JSON objects (`file`, `line`, `column`, `key`, `message`; only `message`
    /// for errors that have no place in a file), for `--json`.
    pub fn problems_json(&self) -> Vec<serde_json::Value> {
        match self {
            ConfigError::Invalid { problems } => problems
                .iter()
                .map(|p| {
                    serde_json::json!({
                        "severity": "error", "file": p.path, "line": p.line,
                        "column": p.column, "key": p.key, "message": p.message,
                    })
                })
                .collect(),
            other => vec![serde_json::json!({"severity": "error", "message": other.to_string()})],
        }
    }
}

/// Parses and validates one config file on its own, so errors point into that file. Every
/// invalid key is reported, in file order, not just the first one serde trips over.
pub fn check_file(path: &Path, text: &str) -> Result<Table, ConfigError> {
    let problem = |offset: usize, key: Option<String>, message: String| {
        let (line, column) = line_col(text, offset);
        FileProblem {
            path: path.to_path_buf(),
            line,
            column,
            key,
            message,
        }
    };
    let invalid = |e: toml::de::Error| {
        let (offset, key) = match e.span() {
            Some(span) => (span.start, key_at(text, span.start)),
            None => (0, None),
        };
        ConfigError::Invalid {
            problems: vec![problem(offset, key, with_suggestion(e.message()))],
        }
    };
    let table: Table = toml::from_str(text).map_err(invalid)?;
    if let Err(e) = toml::from_str::<Config>(text) {
        let mut found = Vec::new();
        if let Ok(doc) = toml::de::DeTable::parse(text) {
            walk(doc.get_ref(), &mut Vec::new(), &table, &mut found);
        }
        if found.is_empty() {
            return Err(invalid(e));
        }
        found.sort_by_key(|(offset, _, _)| *offset);
        let problems = found
            .into_iter()
            .map(|(offset, key, message)| problem(offset, Some(key), message))
            .collect();
        return Err(ConfigError::Invalid { problems });
    }
    Ok(table)
}

/// Finds every key that is invalid on its own: (byte offset, dotted key, message). A table that
/// is wrong as a whole (an unknown section) is one problem, not one per key inside it.
fn walk(
    de: &toml::de::DeTable<'_>,
    prefix: &mut Vec<String>,
    full: &Table,
    out: &mut Vec<(usize, String, String)>,
) {
    for (k, v) in de.iter() {
        let name = k.get_ref().to_string();
        prefix.push(name.clone());
        if let Err(message) = alone(prefix, full) {
            let own_name_unknown = message.starts_with(&format!("unknown field `{name}`"));
            let before = out.len();
            if let (toml::de::DeValue::Table(t), false) = (v.get_ref(), own_name_unknown) {
                walk(t, prefix, full, out);
            }
            if out.len() == before {
                let at = if message.starts_with("unknown field") {
                    k.span().start
                } else {
                    v.span().start
                };
                out.push((at, prefix.join("."), with_suggestion(&message)));
            }
        }
        prefix.pop();
    }
}

/// Deserializes a configuration holding only the value at `path`.
fn alone(path: &[String], full: &Table) -> Result<(), String> {
    let (last, parents) = path.split_last().expect("non-empty path");
    let Some(mut value) = parents
        .iter()
        .try_fold(full, |t, k| t.get(k).and_then(toml::Value::as_table))
        .and_then(|t| t.get(last))
        .cloned()
    else {
        return Ok(());
    };
    for k in path.iter().rev() {
        let mut t = Table::new();
        t.insert(k.clone(), value);
        value = toml::Value::Table(t);
    }
    value
        .try_into::<Config>()
        .map(drop)
        .map_err(|e: toml::de::Error| e.message().to_string())
}

/// 1-based line and column of a byte offset.
fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let col = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, col)
}

/// The dotted key at an offset: the enclosing `[table]` header plus the key on that line.
fn key_at(text: &str, offset: usize) -> Option<String> {
    let offset = offset.min(text.len());
    let line_start = text[..offset].rfind('\n').map_or(0, |i| i + 1);
    let line_end = text[offset..].find('\n').map_or(text.len(), |i| offset + i);
    let line = &text[line_start..line_end];
    let trimmed = line.trim();
    let header = |l: &str| {
        let l = l.trim();
        (l.starts_with('[') && !l.starts_with("[["))
            .then(|| l.trim_matches(|c| c == '[' || c == ']').trim().to_string())
    };
    if let Some(h) = header(trimmed) {
        return Some(h);
    }
    let key = trimmed.split('=').next()?.trim().trim_matches('"');
    if key.is_empty() {
        return None;
    }
    let table = text[..line_start].lines().rev().find_map(header);
    Some(match table {
        Some(t) if !t.is_empty() => format!("{t}.{key}"),
        _ => key.to_string(),
    })
}

/// Appends "did you mean `x`?" to serde's "unknown field `y`, expected one of `a`, `b`" messages.
pub fn with_suggestion(message: &str) -> String {
    let Some(rest) = message.strip_prefix("unknown field `") else {
        return message.to_string();
    };
    let Some((bad, allowed)) = rest.split_once('`') else {
        return message.to_string();
    };
    let candidates: Vec<&str> = allowed.split('`').skip(1).step_by(2).collect();
    let best = candidates
        .iter()
        .map(|c| (strsim::damerau_levenshtein(bad, c), *c))
        .filter(|(d, c)| *d <= (c.len().max(bad.len()) / 3).max(2))
        .min();
    match best {
        Some((_, c)) => format!("{message}; did you mean `{c}`?"),
        None => message.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(text: &str) -> String {
        check_file(Path::new("/etc/h.toml"), text)
            .unwrap_err()
            .to_string()
    }

    #[test]
    fn typo_key_has_line_column_key_allowed_and_suggestion() {
        let e = err("[vm]\ncpus = 2\nmemroy_mib = 4096\n");
        assert!(
            e.starts_with("/etc/h.toml:3:1: unknown field `memroy_mib`"),
            "{e}"
        );
        assert!(e.contains("(key `vm.memroy_mib`)"), "{e}");
        assert!(e.contains("expected one of"), "{e}");
        assert!(e.contains("`memory_mib`"), "{e}");
        assert!(e.contains("did you mean `memory_mib`?"), "{e}");
    }

    #[test]
    fn wrong_type_has_line_column_and_key() {
        let e = err("[vm]\n\nmemory_mib = \"lots\"\n");
        assert!(e.starts_with("/etc/h.toml:3:14: "), "{e}");
        assert!(e.contains("invalid type: string \"lots\""), "{e}");
        assert!(e.contains("(key `vm.memory_mib`)"), "{e}");
    }

    #[test]
    fn unknown_section_suggests() {
        let e = err("[efww]\nsource = \"main\"\n");
        assert!(e.contains("did you mean `efw`?"), "{e}");
        assert!(e.contains(":1:"), "{e}");
    }

    #[test]
    fn bad_enum_value_lists_allowed() {
        let e = err("[vm]\nbackend = \"vbox\"\n");
        assert!(e.contains("unknown variant `vbox`"), "{e}");
        assert!(e.contains("`qemu`"), "{e}");
        assert!(e.contains("/etc/h.toml:2:"), "{e}");
    }

    #[test]
    fn syntax_error_has_position() {
        let e = err("[vm]\ncpus = = 2\n");
        assert!(e.starts_with("/etc/h.toml:2:"), "{e}");
    }

    #[test]
    fn nested_named_tables_get_full_keys() {
        let e = err("[extensions.ntosebpfext.install]\ndriverr = \"x.sys\"\n");
        assert!(
            e.contains("(key `extensions.ntosebpfext.install.driverr`)"),
            "{e}"
        );
        assert!(e.contains("did you mean `driver`?"), "{e}");
    }

    #[test]
    fn every_error_of_a_file_is_reported_in_file_order() {
        let text = "[vm]\nmemroy_mib = 4096\ncpus = \"two\"\n[efww]\nsource = \"main\"\nrepo = \"x\"\n\
                    [suites.mine]\npackages = [\n  \"./a\",\n]\npackage_timeout = -1\n[efw]\nartefact = \"x\"\n";
        let e = err(text);
        let lines: Vec<&str> = e.lines().collect();
        assert_eq!(lines.len(), 6, "{e}");
        assert!(
            lines[0].starts_with("/etc/h.toml:2:1: unknown field `memroy_mib`"),
            "{e}"
        );
        assert!(lines[0].contains("did you mean `memory_mib`?"), "{e}");
        assert!(
            lines[1].starts_with("/etc/h.toml:3:8: invalid type: string \"two\""),
            "{e}"
        );
        assert!(lines[1].contains("(key `vm.cpus`)"), "{e}");
        // The unknown section is one problem, at its header, not one per key inside it.
        assert!(
            lines[2].starts_with("/etc/h.toml:4:2: unknown field `efww`"),
            "{e}"
        );
        assert!(
            lines[3].starts_with("/etc/h.toml:11:19: invalid value: integer `-1`"),
            "{e}"
        );
        assert!(
            lines[3].contains("(key `suites.mine.package_timeout`)"),
            "{e}"
        );
        assert!(
            lines[4].starts_with("/etc/h.toml:13:1: unknown field `artefact`"),
            "{e}"
        );
        assert!(lines[5].contains("fix the file"), "{e}");
        match check_file(Path::new("/etc/h.toml"), text).unwrap_err() {
            ConfigError::Invalid { problems } => assert_eq!(problems.len(), 5),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn suggestion_needs_a_close_match() {
        let m = "unknown field `zzzzzz`, expected one of `cpus`, `memory_mib`";
        assert_eq!(with_suggestion(m), m);
    }
}
