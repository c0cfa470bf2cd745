//! Merging the configuration layers and remembering where each value came from.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;

use toml::{Table, Value};

use super::diagnose::{self, ConfigError};
use super::{Config, DEFAULTS_TOML, ENV_SECTIONS, NAMED_TABLES};

/// Where an effective value came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// The built-in defaults (the repository's `config.toml`).
    Default,
    /// A config file.
    File(PathBuf),
    /// An environment variable.
    Env(String),
    /// A command-line flag.
    Flag(String),
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Origin::Default => write!(f, "default"),
            Origin::File(p) => write!(f, "file {}", p.display()),
            Origin::Env(v) => write!(f, "env {v}"),
            Origin::Flag(s) => write!(f, "flag {s}"),
        }
    }
}

/// The effective configuration with the origin of every value set above the defaults.
#[derive(Debug, Clone)]
pub struct Layered {
    pub config: Config,
    /// Dotted key → origin, for values not from the defaults.
    pub origins: BTreeMap<String, Origin>,
    /// The config file that was read, if any.
    pub file: Option<PathBuf>,
}

impl Layered {
    /// Where the value at a dotted key came from.
    pub fn origin_of(&self, key: &str) -> Origin {
        // A key inside a named table replaced whole takes the table entry's origin.
        let mut k = key;
        loop {
            if let Some(o) = self.origins.get(k) {
                return o.clone();
            }
            match k.rfind('.') {
                Some(i) => k = &k[..i],
                None => return Origin::Default,
            }
        }
    }
}

/// Everything `load` reads, injected so tests need no real environment.
#[derive(Debug, Clone, Default)]
pub struct Sources {
    /// `-c/--config`: must exist when given.
    pub explicit_file: Option<PathBuf>,
    /// `./harness.toml` is looked for here.
    pub cwd: PathBuf,
    /// The XDG config dir's `harness/config.toml`.
    pub user_file: Option<PathBuf>,
    /// The process environment (only `HARNESS_*` is read).
    pub env: Vec<(String, String)>,
    /// `--set KEY=VALUE` flags, in order.
    pub sets: Vec<String>,
}

/// Environment variables that are not configuration keys.
const ENV_NOT_CONFIG: &[&str] = &["HARNESS_CONFIG", "HARNESS_LOG"];

/// Short aliases for the directories, as the README documents.
const ENV_ALIASES: &[(&str, &str)] = &[
    ("HARNESS_STATE_DIR", "paths.state"),
    ("HARNESS_CACHE_DIR", "paths.cache"),
    ("HARNESS_RESULTS_DIR", "paths.results"),
];

/// Builds the effective configuration from all layers.
pub fn load(src: &Sources) -> Result<Layered, ConfigError> {
    let mut merged: Table = toml::from_str(DEFAULTS_TOML).expect("embedded config.toml is valid");
    let defaults = merged.clone();
    let mut origins = BTreeMap::new();

    let file = find_file(src)?;
    if let Some(path) = &file {
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError::Read {
            path: path.clone(),
            reason: e.to_string(),
        })?;
        let table = diagnose::check_file(path, &text)?;
        let origin = Origin::File(path.clone());
        for key in leaf_keys(&table, "") {
            origins.insert(key, origin.clone());
        }
        merge(&mut merged, table, true);
    }

    let mut env: Vec<_> = src
        .env
        .iter()
        .filter(|(k, _)| k.starts_with("HARNESS_") && !ENV_NOT_CONFIG.contains(&k.as_str()))
        .collect();
    env.sort();
    for (name, raw) in env {
        let Some(key) = env_key(name) else {
            tracing::warn!(
                "ignoring {name}: no configuration key matches it (HARNESS_<SECTION>_<KEY>, sections: {})",
                ENV_SECTIONS.join(", ")
            );
            continue;
        };
        let origin = Origin::Env(name.clone());
        apply_override(&mut merged, &defaults, &key, raw, &origin)?;
        origins.insert(key, origin);
    }

    for set in &src.sets {
        let Some((key, raw)) = set.split_once('=') else {
            return Err(ConfigError::Override {
                origin: format!("--set {set}"),
                message: "expected KEY=VALUE, for example `--set vm.memory_mib=4096`".into(),
            });
        };
        let key = key.trim().to_string();
        let origin = Origin::Flag(format!("--set {key}"));
        apply_override(&mut merged, &defaults, &key, raw.trim(), &origin)?;
        origins.insert(key, origin);
    }

    let config: Config = Value::Table(merged)
        .try_into()
        .map_err(|e: toml::de::Error| ConfigError::Override {
            origin: "the merged configuration".into(),
            message: e.message().to_string(),
        })?;
    Ok(Layered {
        config,
        origins,
        file,
    })
}

fn find_file(src: &Sources) -> Result<Option<PathBuf>, ConfigError> {
    if let Some(p) = &src.explicit_file {
        if p.is_dir() {
            return Err(ConfigError::IsDirectory { path: p.clone() });
        }
        if !p.is_file() {
            return Err(ConfigError::Missing { path: p.clone() });
        }
        return Ok(Some(p.clone()));
    }
    let local = src.cwd.join("harness.toml");
    if local.is_file() {
        return Ok(Some(local));
    }
    Ok(src.user_file.clone().filter(|p| p.is_file()))
}

/// `HARNESS_VM_MEMORY_MIB` → `vm.memory_mib`; aliases first.
fn env_key(name: &str) -> Option<String> {
    if let Some((_, key)) = ENV_ALIASES.iter().find(|(n, _)| *n == name) {
        return Some(key.to_string());
    }
    let rest = name.strip_prefix("HARNESS_")?.to_ascii_lowercase();
    ENV_SECTIONS.iter().find_map(|section| {
        let key = rest.strip_prefix(section)?.strip_prefix('_')?;
        (!key.is_empty()).then(|| format!("{section}.{key}"))
    })
}

/// Sets one dotted key from a raw string, typed like the default at that key, and validates it
/// alone so an error names the variable or flag it came from.
fn apply_override(
    merged: &mut Table,
    defaults: &Table,
    key: &str,
    raw: &str,
    origin: &Origin,
) -> Result<(), ConfigError> {
    let value = typed_value(lookup(defaults, key), raw);
    let mut alone = Table::new();
    insert_path(&mut alone, key, value.clone());
    let check: Result<Config, _> = Value::Table(alone).try_into();
    if let Err(e) = check {
        let e: toml::de::Error = e;
        return Err(ConfigError::Override {
            origin: format!("{origin} ({key} = {raw:?})"),
            message: diagnose::with_suggestion(e.message()),
        });
    }
    insert_path(merged, key, value);
    Ok(())
}

fn typed_value(default: Option<&Value>, raw: &str) -> Value {
    match default {
        Some(Value::String(_)) => Value::String(raw.to_string()),
        _ => toml::from_str::<Table>(&format!("v = {raw}"))
            .ok()
            .and_then(|mut t| t.remove("v"))
            .unwrap_or_else(|| Value::String(raw.to_string())),
    }
}

fn lookup<'a>(table: &'a Table, key: &str) -> Option<&'a Value> {
    let mut parts = key.split('.');
    let mut cur = table.get(parts.next()?)?;
    for p in parts {
        cur = cur.as_table()?.get(p)?;
    }
    Some(cur)
}

fn insert_path(table: &mut Table, key: &str, value: Value) {
    let mut parts: Vec<&str> = key.split('.').collect();
    let last = parts.pop().expect("non-empty key");
    let mut cur = table;
    for p in parts {
        let entry = cur
            .entry(p.to_string())
            .or_insert_with(|| Value::Table(Table::new()));
        if !entry.is_table() {
            *entry = Value::Table(Table::new());
        }
        cur = entry.as_table_mut().expect("just made a table");
    }
    cur.insert(last.to_string(), value);
}

/// Deep merge; at the top level, named tables are replaced whole.
fn merge(base: &mut Table, over: Table, top: bool) {
    for (k, v) in over {
        let replace_whole = top && NAMED_TABLES.contains(&k.as_str());
        match (base.get_mut(&k), v) {
            (Some(Value::Table(b)), Value::Table(o)) if !replace_whole => merge(b, o, false),
            (_, v) => {
                base.insert(k, v);
            }
        }
    }
}

/// Dotted keys of every leaf (non-table value) in a table.
pub fn leaf_keys(table: &Table, prefix: &str) -> Vec<String> {
    let mut out = Vec::new();
    for (k, v) in table {
        let key = if prefix.is_empty() {
            k.clone()
        } else {
            format!("{prefix}.{k}")
        };
        match v {
            Value::Table(t) if !t.is_empty() => out.extend(leaf_keys(t, &key)),
            _ => out.push(key),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    fn sources(dir: &Path) -> Sources {
        Sources {
            cwd: dir.to_path_buf(),
            ..Default::default()
        }
    }

    fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
        let p = dir.join(name);
        std::fs::write(&p, text).unwrap();
        p
    }

    #[test]
    fn defaults_alone() {
        let d = tempfile::tempdir().unwrap();
        let l = load(&sources(d.path())).unwrap();
        assert_eq!(l.config.efw.source, "main");
        assert_eq!(l.origin_of("efw.source"), Origin::Default);
        assert!(l.file.is_none());
    }

    #[test]
    fn layers_override_in_order_file_env_flag() {
        let d = tempfile::tempdir().unwrap();
        let f = write(
            d.path(),
            "h.toml",
            "[vm]\nmemory_mib = 4096\ncpus = 3\n[efw]\nsource = \"release:1.0.0\"\n",
        );
        let mut s = sources(d.path());
        s.explicit_file = Some(f.clone());
        s.env = vec![
            ("HARNESS_VM_CPUS".into(), "6".into()),
            ("HARNESS_EFW_SOURCE".into(), "run:42".into()),
            ("PATH".into(), "/bin".into()),
        ];
        s.sets = vec!["efw.source=file:/tmp/x.zip".into()];
        let l = load(&s).unwrap();
        assert_eq!(l.config.vm.memory_mib, 4096);
        assert_eq!(l.origin_of("vm.memory_mib"), Origin::File(f));
        assert_eq!(l.config.vm.cpus, 6);
        assert_eq!(
            l.origin_of("vm.cpus"),
            Origin::Env("HARNESS_VM_CPUS".into())
        );
        assert_eq!(l.config.efw.source, "file:/tmp/x.zip");
        assert_eq!(
            l.origin_of("efw.source"),
            Origin::Flag("--set efw.source".into())
        );
        // Untouched keys stay defaults.
        assert_eq!(l.config.efw.repo, "microsoft/ebpf-for-windows");
        assert_eq!(l.origin_of("efw.repo"), Origin::Default);
    }

    #[test]
    fn local_harness_toml_is_found_before_the_user_file() {
        let d = tempfile::tempdir().unwrap();
        write(d.path(), "harness.toml", "[vm]\ncpus = 7\n");
        let user = write(d.path(), "user.toml", "[vm]\ncpus = 9\n");
        let mut s = sources(d.path());
        s.user_file = Some(user.clone());
        assert_eq!(load(&s).unwrap().config.vm.cpus, 7);
        std::fs::remove_file(d.path().join("harness.toml")).unwrap();
        let l = load(&s).unwrap();
        assert_eq!(l.config.vm.cpus, 9);
        assert_eq!(l.file, Some(user));
    }

    #[test]
    fn explicit_file_must_exist() {
        let d = tempfile::tempdir().unwrap();
        let mut s = sources(d.path());
        s.explicit_file = Some(d.path().join("nope.toml"));
        let e = load(&s).unwrap_err().to_string();
        assert!(e.contains("nope.toml"), "{e}");
        assert!(e.contains("does not exist"), "{e}");
    }

    #[test]
    fn explicit_directory_is_named_a_directory() {
        let d = tempfile::tempdir().unwrap();
        let mut s = sources(d.path());
        s.explicit_file = Some(d.path().to_path_buf());
        let e = load(&s).unwrap_err().to_string();
        assert!(e.contains("is a directory"), "{e}");
        assert!(!e.contains("does not exist"), "{e}");
    }

    #[test]
    fn named_tables_are_replaced_whole_other_tables_merge() {
        let d = tempfile::tempdir().unwrap();
        write(
            d.path(),
            "harness.toml",
            "[suites.mine]\npackages = [\"./a\"]\n[vm]\ncpus = 1\n",
        );
        let l = load(&sources(d.path())).unwrap();
        assert_eq!(
            l.config.suites.keys().collect::<Vec<_>>(),
            vec!["mine"],
            "a file's [suites] replaces the default suites"
        );
        assert_eq!(l.config.vm.cpus, 1);
        assert_eq!(
            l.config.vm.memory_mib, 8192,
            "other [vm] keys keep defaults"
        );
    }

    #[test]
    fn env_aliases_and_typing() {
        let d = tempfile::tempdir().unwrap();
        let mut s = sources(d.path());
        s.env = vec![
            ("HARNESS_STATE_DIR".into(), "/tmp/st".into()),
            ("HARNESS_VM_TPM".into(), "true".into()),
            ("HARNESS_GITHUB_API_URL".into(), "http://127.0.0.1:9".into()),
            ("HARNESS_EFW_SEARCH_RUNS".into(), "5".into()),
        ];
        let l = load(&s).unwrap();
        assert_eq!(l.config.paths.state, Some(PathBuf::from("/tmp/st")));
        assert!(l.config.vm.tpm);
        assert_eq!(l.config.github.api_url, "http://127.0.0.1:9");
        assert_eq!(l.config.efw.search_runs, 5);
    }

    #[test]
    fn bad_env_value_names_the_variable() {
        let d = tempfile::tempdir().unwrap();
        let mut s = sources(d.path());
        s.env = vec![("HARNESS_VM_MEMORY_MIB".into(), "lots".into())];
        let e = load(&s).unwrap_err().to_string();
        assert!(e.contains("HARNESS_VM_MEMORY_MIB"), "{e}");
        assert!(e.contains("vm.memory_mib"), "{e}");
    }

    #[test]
    fn bad_set_key_suggests_the_nearest() {
        let d = tempfile::tempdir().unwrap();
        let mut s = sources(d.path());
        s.sets = vec!["vm.memroy_mib=1024".into()];
        let e = load(&s).unwrap_err().to_string();
        assert!(e.contains("--set vm.memroy_mib"), "{e}");
        assert!(e.contains("did you mean `memory_mib`"), "{e}");
        s.sets = vec!["novalue".into()];
        assert!(load(&s).unwrap_err().to_string().contains("KEY=VALUE"));
    }

    #[test]
    fn env_key_mapping() {
        assert_eq!(env_key("HARNESS_VM_MEMORY_MIB").unwrap(), "vm.memory_mib");
        assert_eq!(env_key("HARNESS_GITHUB_API_URL").unwrap(), "github.api_url");
        assert_eq!(env_key("HARNESS_CACHE_DIR").unwrap(), "paths.cache");
        assert_eq!(env_key("HARNESS_NOPE_X"), None);
        assert_eq!(env_key("HARNESS_VM"), None);
    }
}
