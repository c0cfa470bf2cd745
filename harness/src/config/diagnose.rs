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
    #[error("cannot read config file {}: {reason}", path.display())]
    Read { path: PathBuf, reason: String },
    #[error(
        "{}:{line}:{column}: {message}{}\n  fix the file, then check it with `harness config check`",
        path.display(),
        key.as_ref().map(|k| format!(" (key `{k}`)")).unwrap_or_default()
    )]
    Invalid {
        path: PathBuf,
        line: usize,
        column: usize,
        key: Option<String>,
        message: String,
    },
    #[error("{origin}: {message}")]
    Override { origin: String, message: String },
}

/// Parses and validates one config file on its own, so errors point into that file.
pub fn check_file(path: &Path, text: &str) -> Result<Table, ConfigError> {
    let invalid = |e: toml::de::Error| {
        let (line, column, key) = match e.span() {
            Some(span) => {
                let (l, c) = line_col(text, span.start);
                (l, c, key_at(text, span.start))
            }
            None => (1, 1, None),
        };
        ConfigError::Invalid {
            path: path.to_path_buf(),
            line,
            column,
            key,
            message: with_suggestion(e.message()),
        }
    };
    let table: Table = toml::from_str(text).map_err(invalid)?;
    toml::from_str::<Config>(text).map_err(invalid)?;
    Ok(table)
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
    fn suggestion_needs_a_close_match() {
        let m = "unknown field `zzzzzz`, expected one of `cpus`, `memory_mib`";
        assert_eq!(with_suggestion(m), m);
    }
}
