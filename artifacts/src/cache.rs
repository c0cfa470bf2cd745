//! The build cache: `builds/<key>/{build/, meta.json}` entries that appear atomically (built in
//! `tmp/`, then renamed), `downloads/<key>.part` for resumable downloads, and a lock file so two
//! harness processes do not fetch into the same cache at once.

use std::collections::HashSet;
use std::fs::{self, File};

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::config::BuildSourceConfig;
use crate::error::{ArtifactError, Result};
use crate::layout::Layout;
use crate::manifest::Manifest;

/// The file beside `build/` that lists what it held when unpacked.
const MANIFEST: &str = "manifest.json";
use crate::source::SourceSpec;

/// Where a build came from: the sidecar stored next to every cached build.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BuildMeta {
    /// Stable cache key, usable as a directory name: `gh-artifact-<id>`, `gh-asset-<id>`,
    /// `sha256-<16 hex>` or, for a local directory, `dir-<16 hex>`.
    pub key: String,
    /// The source spec as resolved (`main`, `run:<id>`, …).
    pub source: String,
    /// `owner/name` for GitHub sources.
    pub repo: Option<String>,
    /// Artifact or release-asset name.
    pub artifact: Option<String>,
    /// Build configuration (`Debug`, …).
    pub configuration: String,
    pub run_id: Option<u64>,
    pub artifact_id: Option<u64>,
    pub asset_id: Option<u64>,
    /// Commit the build was made from (workflow runs only).
    pub head_sha: Option<String>,
    /// When GitHub created the run/artifact/release (RFC 3339), if known.
    pub created: Option<String>,
    /// When this cache entry was made (RFC 3339).
    pub fetched: String,
    /// Size of the zip (or, for a directory, of its files) in bytes.
    pub size: u64,
    /// SHA-256 of the zip; for a directory, of its file list (names, sizes, mtimes).
    pub sha256: String,
    /// Release version, for `release:` sources.
    pub version: Option<String>,
    /// Where the bytes came from (never carries a token).
    pub url: Option<String>,
    /// `url:` sources: the server's `ETag`, for revalidation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub etag: Option<String>,
    /// `url:` sources: the server's `Last-Modified`, for revalidation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_modified: Option<String>,
}

impl BuildMeta {
    /// A build of `spec` with `cfg`'s configuration known only by its key so far: the caller
    /// fills in where it came from, its size and hash.
    pub(crate) fn new(key: String, spec: &SourceSpec, cfg: &BuildSourceConfig) -> BuildMeta {
        BuildMeta {
            key,
            source: spec.to_string(),
            repo: None,
            artifact: None,
            configuration: cfg.configuration.clone(),
            run_id: None,
            artifact_id: None,
            asset_id: None,
            head_sha: None,
            created: None,
            fetched: String::new(),
            size: 0,
            sha256: String::new(),
            version: None,
            url: None,
            etag: None,
            last_modified: None,
        }
    }
}

/// A resolved, unpacked build ready to install.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Build {
    /// Directory with the build's files at its root.
    pub path: PathBuf,
    /// Which install entry points it has.
    pub layout: Layout,
    #[serde(flatten)]
    pub meta: BuildMeta,
    /// True when no bytes were downloaded (cache hit, offline, or unreachable-GitHub fallback).
    pub cached: bool,
    /// Things the user should know (a possibly partial build, an offline fallback, …).
    pub warnings: Vec<String>,
}

#[derive(Serialize, Deserialize)]
struct Record {
    meta: BuildMeta,
    layout: Layout,
}

/// Handle on a cache directory.
#[derive(Debug, Clone)]
pub struct Cache {
    root: PathBuf,
    lock_wait: Duration,
    cancel: Option<hostproc::Cancel>,
}

impl Cache {
    /// A cache rooted at `root` (created on first write). Waits for another process's lock at
    /// most 10 minutes; see [`Cache::with_lock_wait`].
    pub fn new(root: impl Into<PathBuf>) -> Cache {
        Cache {
            root: root.into(),
            lock_wait: crate::lock::LOCK_WAIT,
            cancel: None,
        }
    }

    /// Bounds the wait for the cache lock, and lets `cancel` (Ctrl-C) end it.
    pub fn with_lock_wait(mut self, wait: Duration, cancel: Option<hostproc::Cancel>) -> Cache {
        self.lock_wait = wait;
        self.cancel = cancel;
        self
    }

    /// The cache's root directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    fn builds(&self) -> PathBuf {
        self.root.join("builds")
    }

    fn ensure(&self, dir: &Path) -> Result<()> {
        fs::create_dir_all(dir)
            .map_err(|e| ArtifactError::io("cannot create cache directory", dir, e))
    }

    /// Takes the cache lock for the lifetime of the returned file: a bounded wait that says who
    /// holds it and stops on Ctrl-C.
    pub fn lock(&self) -> Result<File> {
        self.ensure(&self.root)?;
        crate::lock::acquire(
            &self.root.join(".lock"),
            self.lock_wait,
            self.cancel.as_ref(),
        )
    }

    /// Resumable download file for `key`.
    pub(crate) fn part_path(&self, key: &str) -> Result<PathBuf> {
        let dir = self.root.join("downloads");
        self.ensure(&dir)?;
        Ok(dir.join(format!("{key}.part")))
    }

    /// A fresh staging directory inside the cache, removed on drop unless committed.
    pub(crate) fn staging(&self, key: &str) -> Result<tempfile::TempDir> {
        let dir = self.root.join("tmp");
        self.ensure(&dir)?;
        tempfile::Builder::new()
            .prefix(&format!("{key}."))
            .tempdir_in(&dir)
            .map_err(|e| ArtifactError::io("cannot create staging directory in", &dir, e))
    }

    /// Writes the sidecar into `staging` (whose `build/` holds the unpacked build) and renames it
    /// into place in one step.
    pub(crate) fn commit(
        &self,
        staging: tempfile::TempDir,
        meta: BuildMeta,
        layout: Layout,
    ) -> Result<Build> {
        let manifest = Manifest::record(&staging.path().join("build"))?;
        write_json(&staging.path().join(MANIFEST), &manifest)?;
        let record = Record { meta, layout };
        let json = serde_json::to_vec_pretty(&record).expect("metadata serializes");
        let side = staging.path().join("meta.json");
        fs::write(&side, json).map_err(|e| ArtifactError::io("cannot write", &side, e))?;
        self.ensure(&self.builds())?;
        let target = self.builds().join(&record.meta.key);
        if target.exists() {
            fs::remove_dir_all(&target)
                .map_err(|e| ArtifactError::io("cannot replace", &target, e))?;
        }
        fs::rename(staging.path(), &target)
            .map_err(|e| ArtifactError::io("cannot move build into", &target, e))?;
        let _ = staging.keep();
        Ok(Build {
            path: target.join("build"),
            layout: record.layout,
            meta: record.meta,
            cached: false,
            warnings: Vec::new(),
        })
    }

    /// The cached build with this key, if complete.
    pub fn get(&self, key: &str) -> Option<Build> {
        let dir = self.builds().join(key);
        let record: Record = serde_json::from_slice(&fs::read(dir.join("meta.json")).ok()?).ok()?;
        let path = dir.join("build");
        (record.meta.key == key && path.is_dir()).then(|| Build {
            path,
            layout: record.layout,
            meta: record.meta,
            cached: true,
            warnings: Vec::new(),
        })
    }

    /// What changed in a cached build since it was unpacked (empty: nothing). An entry from before
    /// manifests were kept gets one now, and is trusted from then on.
    pub fn changes(&self, build: &Build) -> Result<Vec<String>> {
        let path = self.builds().join(&build.meta.key).join(MANIFEST);
        match fs::read(&path) {
            Ok(bytes) => match serde_json::from_slice::<Manifest>(&bytes) {
                Ok(m) => m.differences(&build.path),
                Err(e) => Ok(vec![format!(
                    "its manifest {} is unreadable ({e})",
                    path.display()
                )]),
            },
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                tracing::info!("recording a manifest for cached build {}", build.meta.key);
                write_json(&path, &Manifest::record(&build.path)?)?;
                Ok(Vec::new())
            }
            Err(e) => Err(ArtifactError::io("cannot read", &path, e)),
        }
    }

    /// Removes a cache entry (a damaged one, before it is fetched again).
    pub fn discard(&self, key: &str) -> Result<()> {
        let dir = self.builds().join(key);
        match fs::remove_dir_all(&dir) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                Err(ArtifactError::io("cannot remove", &dir, e))
            }
            _ => Ok(()),
        }
    }

    /// Records that `url` (now) serves the content of the cached build `key`, with its validators.
    pub(crate) fn remember_url(&self, key: &str, url: &str, got: &crate::Downloaded) -> Result<()> {
        let side = self.builds().join(key).join("meta.json");
        let bytes = fs::read(&side).map_err(|e| ArtifactError::io("cannot read", &side, e))?;
        let mut record: Record = serde_json::from_slice(&bytes)
            .map_err(|e| ArtifactError::io("cannot parse", &side, std::io::Error::other(e)))?;
        record.meta.url = Some(url.to_string());
        record.meta.etag = got.etag.clone();
        record.meta.last_modified = got.last_modified.clone();
        record.meta.fetched = crate::fetch::now_rfc3339();
        write_json(&side, &record)
    }

    /// Every cached build, most recently fetched first.
    pub fn list(&self) -> Result<Vec<Build>> {
        let dir = self.builds();
        let entries = match fs::read_dir(&dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(ArtifactError::io("cannot read cache", &dir, e)),
        };
        let mut builds: Vec<Build> = entries
            .filter_map(|e| e.ok())
            .filter_map(|e| {
                let key = e.file_name().to_string_lossy().into_owned();
                let b = self.get(&key);
                if b.is_none() {
                    tracing::warn!("ignoring unreadable cache entry {}", e.path().display());
                }
                b
            })
            .collect();
        builds.sort_by(|a, b| {
            b.meta
                .fetched
                .cmp(&a.meta.fetched)
                .then_with(|| b.meta.key.cmp(&a.meta.key))
        });
        Ok(builds)
    }

    /// Keeps the `keep` most recently fetched builds plus the newest build of every
    /// (repository, artifact) pair — extension artifacts expire after days, so the last good one
    /// stays. Also clears leftover staging directories and partial downloads. Returns removed keys.
    pub fn prune(&self, keep: usize) -> Result<Vec<String>> {
        let _lock = self.lock()?;
        let builds = self.list()?;
        let mut by_created = builds.clone();
        by_created.sort_by(newest_first);
        let mut seen = HashSet::new();
        let last_good: HashSet<String> = by_created
            .iter()
            .filter(|b| seen.insert(group(&b.meta)))
            .map(|b| b.meta.key.clone())
            .collect();
        let mut removed = Vec::new();
        for b in builds.iter().skip(keep) {
            if last_good.contains(&b.meta.key) {
                continue;
            }
            let dir = self.builds().join(&b.meta.key);
            fs::remove_dir_all(&dir).map_err(|e| ArtifactError::io("cannot remove", &dir, e))?;
            removed.push(b.meta.key.clone());
        }
        for sub in ["tmp", "downloads"] {
            let dir = self.root.join(sub);
            if dir.exists() {
                fs::remove_dir_all(&dir).map_err(|e| ArtifactError::io("cannot clear", &dir, e))?;
            }
        }
        Ok(removed)
    }

    /// The newest cached build that answers `spec` under `cfg` (for `--offline` and fallbacks).
    pub fn newest_for(&self, cfg: &BuildSourceConfig, spec: &SourceSpec) -> Result<Option<Build>> {
        let mut builds: Vec<Build> = self
            .list()?
            .into_iter()
            .filter(|b| answers(&b.meta, cfg, spec))
            .collect();
        builds.sort_by(newest_first);
        Ok(builds.into_iter().next())
    }
}

/// Writes `value` as JSON through a temporary file and a rename.
fn write_json(path: &Path, value: &impl Serialize) -> Result<()> {
    let tmp = path.with_extension("json.tmp");
    let json = serde_json::to_vec_pretty(value).expect("serializes");
    fs::write(&tmp, json).map_err(|e| ArtifactError::io("cannot write", &tmp, e))?;
    fs::rename(&tmp, path).map_err(|e| ArtifactError::io("cannot write", path, e))
}

fn newest_first(a: &Build, b: &Build) -> std::cmp::Ordering {
    b.meta
        .created
        .cmp(&a.meta.created)
        .then_with(|| b.meta.fetched.cmp(&a.meta.fetched))
}

fn group(m: &BuildMeta) -> String {
    format!(
        "{}|{}",
        m.repo.as_deref().unwrap_or(""),
        m.artifact.as_deref().unwrap_or(&m.source)
    )
}

/// Whether a cached build is an acceptable answer to `spec` (pure).
pub(crate) fn answers(m: &BuildMeta, cfg: &BuildSourceConfig, spec: &SourceSpec) -> bool {
    let same_repo = m.repo.as_deref() == Some(cfg.repo.as_str());
    match spec {
        SourceSpec::Main => {
            same_repo && m.run_id.is_some() && m.artifact.as_deref() == Some(cfg.artifact.as_str())
        }
        SourceSpec::Run(id) => {
            same_repo
                && m.run_id == Some(*id)
                && m.artifact.as_deref() == Some(cfg.artifact.as_str())
        }
        SourceSpec::Release(v) => {
            same_repo
                && m.version.as_deref() == Some(v.as_str())
                && m.artifact == Some(cfg.release_asset_name())
        }
        SourceSpec::Url(u) => {
            m.url.as_deref() == Some(crate::source::url_address(u))
                && m.source.starts_with("url:")
                && crate::source::url_digest(u).is_none_or(|d| d == m.sha256)
        }
        SourceSpec::File(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(key: &str, repo: &str, artifact: &str, run: Option<u64>, created: &str) -> BuildMeta {
        BuildMeta {
            key: key.into(),
            source: "main".into(),
            repo: Some(repo.into()),
            artifact: Some(artifact.into()),
            configuration: "Debug".into(),
            run_id: run,
            artifact_id: Some(1),
            asset_id: None,
            head_sha: None,
            created: Some(created.into()),
            fetched: created.into(),
            size: 1,
            sha256: "x".into(),
            version: None,
            url: None,
            etag: None,
            last_modified: None,
        }
    }

    #[test]
    fn which_cached_builds_answer_a_spec() {
        let cfg = BuildSourceConfig::default();
        let m = meta("k", &cfg.repo, &cfg.artifact, Some(7), "2026");
        assert!(answers(&m, &cfg, &SourceSpec::Main));
        assert!(answers(&m, &cfg, &SourceSpec::Run(7)));
        assert!(!answers(&m, &cfg, &SourceSpec::Run(8)));
        assert!(!answers(&m, &cfg, &SourceSpec::Release("1.0.0".into())));
        let other = BuildSourceConfig {
            repo: "microsoft/ntosebpfext".into(),
            ..cfg.clone()
        };
        assert!(!answers(&m, &other, &SourceSpec::Main));
        let rel = BuildMeta {
            version: Some("1.4.0".into()),
            artifact: Some("Build.Debug.x64.zip".into()),
            run_id: None,
            ..m.clone()
        };
        assert!(answers(&rel, &cfg, &SourceSpec::Release("1.4.0".into())));
        assert!(!answers(&rel, &cfg, &SourceSpec::Main));
    }

    fn put(cache: &Cache, m: BuildMeta) {
        let st = cache.staging(&m.key).unwrap();
        fs::create_dir(st.path().join("build")).unwrap();
        cache.commit(st, m, Layout::default()).unwrap();
    }

    /// The keys of the cached builds, newest first.
    fn keys(cache: &Cache) -> Vec<String> {
        let builds = cache.list().unwrap();
        builds.into_iter().map(|b| b.meta.key).collect()
    }

    #[test]
    fn prune_keeps_recent_and_last_good_per_artifact() {
        let t = tempfile::tempdir().unwrap();
        let cache = Cache::new(t.path());
        put(&cache, meta("a1", "o/efw", "Build", Some(1), "2026-01-01"));
        put(&cache, meta("a2", "o/efw", "Build", Some(2), "2026-01-02"));
        put(&cache, meta("a3", "o/efw", "Build", Some(3), "2026-01-03"));
        put(&cache, meta("x1", "o/ext", "Build", Some(9), "2025-12-01"));
        fs::create_dir_all(t.path().join("tmp/leftover")).unwrap();
        assert_eq!(keys(&cache), ["a3", "a2", "a1", "x1"]);
        let mut removed = cache.prune(1).unwrap();
        removed.sort();
        assert_eq!(removed, vec!["a1", "a2"]);
        assert_eq!(
            keys(&cache),
            ["a3", "x1"],
            "the extension's last good build survives"
        );
        assert!(!t.path().join("tmp").exists());
        assert!(cache.prune(0).unwrap().is_empty());
    }
}
