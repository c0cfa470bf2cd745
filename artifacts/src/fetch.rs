//! The orchestration: resolve a source to one build, reuse the cache or download, verify, unpack,
//! check the layout, and fall back to the cache when GitHub is out of reach.

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use reqwest::Url;
use sha2::{Digest, Sha256};

use crate::cache::{Build, BuildMeta, Cache};
use crate::config::BuildSourceConfig;
use crate::download::{Got, Target};
use crate::error::{ArtifactError, Result};
use crate::event::FetchSink;
use crate::github::Artifact;
use crate::http::{ACCEPT_BYTES, Http, RetryPolicy, Timing};
use crate::layout::{check_build, find_build_root};
use crate::secret::Secret;
use crate::source::SourceSpec;
use crate::unpack::{UnpackLimits, unpack_zip};

mod github;
mod reuse;

/// The public GitHub API.
pub const DEFAULT_API_URL: &str = "https://api.github.com";

/// How a [`Fetcher`] talks to GitHub and where it keeps builds.
#[derive(Debug, Clone)]
pub struct FetchOptions {
    /// GitHub REST base URL (GitHub Enterprise: `https://host/api/v3`; tests: a loopback stand-in).
    pub api_url: String,
    /// Needed for artifact downloads; sent only to `api_url`'s origin.
    pub token: Option<Secret>,
    /// Cache root.
    pub cache_dir: PathBuf,
    /// Never touch the network: take the newest cached build for the source.
    pub offline: bool,
    /// Where downloads tell their progress ([`crate::FetchEvent`]s; the library draws nothing).
    pub events: FetchSink,
    /// Set to abort between reads and retries (Ctrl-C).
    pub cancel: Option<hostproc::Cancel>,
    /// Retries of transient failures.
    pub retry: RetryPolicy,
    /// Bounds on what an archive may unpack to.
    pub limits: UnpackLimits,
    /// How long one connection may stay silent (waiting for headers, or between two reads)
    /// before it is dropped and the request retried (a download resumes where it stopped). There
    /// is deliberately no limit on a whole download, which may take long.
    pub read_timeout: std::time::Duration,
    /// How long a server may stay silent in total, across retries, before the request or
    /// download fails naming the host (`[github] stall_timeout`).
    pub stall_timeout: std::time::Duration,
    /// How long to wait for another process's cache lock before giving up (saying who holds it).
    pub lock_timeout: std::time::Duration,
}

impl FetchOptions {
    /// Defaults: public GitHub, no token, online, progress events dropped.
    pub fn new(cache_dir: impl Into<PathBuf>) -> FetchOptions {
        FetchOptions {
            api_url: DEFAULT_API_URL.into(),
            token: None,
            cache_dir: cache_dir.into(),
            offline: false,
            events: FetchSink::default(),
            cancel: None,
            retry: RetryPolicy::default(),
            limits: UnpackLimits::default(),
            read_timeout: crate::http::READ_TIMEOUT,
            stall_timeout: crate::http::STALL_TIMEOUT,
            lock_timeout: crate::lock::LOCK_WAIT,
        }
    }
}

/// Finds, downloads, verifies, caches and unpacks builds.
pub struct Fetcher {
    opts: FetchOptions,
    http: Http,
    cache: Cache,
    /// Warnings found on the way (a damaged cache entry), added to the build returned.
    notes: Mutex<Vec<String>>,
}

/// Now in RFC 3339 with a fixed-width fraction, so string order is time order.
pub(crate) fn now_rfc3339() -> String {
    let fmt = time::macros::format_description!(
        "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:9]Z"
    );
    time::OffsetDateTime::now_utc()
        .format(&fmt)
        .unwrap_or_default()
}

fn short_hash(text: &[u8]) -> String {
    base16ct::lower::encode_string(&Sha256::digest(text))[..16].to_string()
}

impl Fetcher {
    /// Checks the options (the API URL must parse); does not touch the network.
    pub fn new(opts: FetchOptions) -> Result<Fetcher> {
        let http = Http::new(
            &opts.api_url,
            opts.token.clone(),
            opts.retry.clone(),
            opts.cancel.clone(),
            opts.events.clone(),
            Timing {
                read_timeout: opts.read_timeout,
                stall_timeout: opts.stall_timeout,
            },
        )?;
        let cache =
            Cache::new(&opts.cache_dir).with_lock_wait(opts.lock_timeout, opts.cancel.clone());
        Ok(Fetcher {
            opts,
            http,
            cache,
            notes: Mutex::new(Vec::new()),
        })
    }

    /// The cache this fetcher fills.
    pub fn cache(&self) -> &Cache {
        &self.cache
    }

    /// Downloads one URL into `dest` with this fetcher's rules (token only to the API origin,
    /// retries, resume from an existing `dest`, progress, cancel), verifying `expected_sha256` when
    /// given. The building block of [`Fetcher::fetch`], public for callers with their own files.
    pub fn download_to(
        &self,
        url: &str,
        dest: &Path,
        expected_sha256: Option<&str>,
    ) -> Result<crate::Downloaded> {
        let parsed = parse_url(url, "the download URL")?;
        let target = Target {
            url: &parsed,
            accept: ACCEPT_BYTES,
            part: dest,
            what: url,
            repo: "",
        };
        match self.http.download(&target, expected_sha256, None)? {
            Got::Fresh(d) => Ok(d),
            Got::NotModified => unreachable!("an unconditional request answered 304"),
        }
    }

    /// Resolves `spec` (with `cfg` saying which repository, workflow, artifact…) to an unpacked build.
    pub fn fetch(&self, cfg: &BuildSourceConfig, spec: &SourceSpec) -> Result<Build> {
        let _lock = self.cache.lock()?;
        let mut build = match spec {
            SourceSpec::File(path) => self.local_file(cfg, spec, path),
            _ if self.opts.offline => self.cached_for(cfg, spec, "offline mode".into()),
            _ => match self.online(cfg, spec) {
                // Unreachable, or nothing live upstream any more (extension artifacts expire after
                // days): the last good build in the cache stands in, with a warning.
                Err(
                    e @ (ArtifactError::Network { .. }
                    | ArtifactError::Stalled { .. }
                    | ArtifactError::NoBuild(_)
                    | ArtifactError::Expired { .. }),
                ) => {
                    let why = if e.is_unreachable() {
                        format!("GitHub is unreachable ({e})")
                    } else {
                        format!("GitHub has no live build ({e})")
                    };
                    self.cached_for(cfg, spec, why).map_err(|_| e)
                }
                other => other,
            },
        }?;
        let notes = std::mem::take(&mut *self.notes.lock().expect("notes"));
        build.warnings.splice(0..0, notes);
        for w in &build.warnings {
            tracing::warn!("{w}");
        }
        build.warnings.dedup();
        Ok(build)
    }

    fn cached_for(&self, cfg: &BuildSourceConfig, spec: &SourceSpec, why: String) -> Result<Build> {
        let mut build =
            self.newest_unchanged(cfg, spec)?
                .ok_or_else(|| ArtifactError::NotCached {
                    what: format!("{spec} ({} {})", cfg.repo, cfg.artifact),
                    cache: self.cache.root().to_path_buf(),
                })?;
        build.warnings.push(format!(
            "{why}: using cached build {} (run {}, created {})",
            build.meta.key,
            build.meta.run_id.map_or("-".into(), |r| r.to_string()),
            build.meta.created.as_deref().unwrap_or("unknown")
        ));
        Ok(build)
    }

    fn online(&self, cfg: &BuildSourceConfig, spec: &SourceSpec) -> Result<Build> {
        match spec {
            SourceSpec::Main => {
                let (run, artifact, warnings) = self.resolve_main(cfg)?;
                self.artifact_build(cfg, spec, &run, &artifact, warnings)
            }
            SourceSpec::Run(id) => {
                let (run, artifact, warnings) = self.resolve_run(cfg, *id)?;
                self.artifact_build(cfg, spec, &run, &artifact, warnings)
            }
            SourceSpec::Release(version) => self.release_build(cfg, spec, version),
            SourceSpec::Url(url) => self.url_build(cfg, spec, url),
            SourceSpec::File(path) => self.local_file(cfg, spec, path),
        }
    }

    fn local_file(&self, cfg: &BuildSourceConfig, spec: &SourceSpec, path: &Path) -> Result<Build> {
        let meta_for = |key: String, size: u64, sha256: String| BuildMeta {
            artifact: path.file_name().map(|n| n.to_string_lossy().into_owned()),
            fetched: now_rfc3339(),
            size,
            sha256,
            ..BuildMeta::new(key, spec, cfg)
        };
        let md = std::fs::metadata(path).map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => ArtifactError::NotFound {
                what: format!("the build for {spec}"),
                url: path.display().to_string(),
                hint: "Give the path of a build zip or of an unpacked build directory".into(),
            },
            _ => ArtifactError::io("cannot read the file: source", path, e),
        })?;
        if md.is_dir() {
            let what = spec.to_string();
            let root = find_build_root(path, &cfg.configuration, &cfg.expect).map_or_else(
                || check_build(path, &cfg.expect, &what).map(|_| path.to_path_buf()),
                Ok,
            )?;
            let layout = check_build(&root, &cfg.expect, &what)?;
            let root = root
                .canonicalize()
                .map_err(|e| ArtifactError::io("cannot resolve", &root, e))?;
            let (size, sha256) = manifest_hash(&root)?;
            let key = format!("dir-{}", short_hash(root.to_string_lossy().as_bytes()));
            return Ok(Build {
                path: root,
                layout,
                meta: meta_for(key, size, sha256),
                cached: false,
                warnings: Vec::new(),
            });
        }
        let sha256 = crate::manifest::hash_file(path)?;
        let key = format!("sha256-{}", &sha256[..16]);
        if let Some(hit) = self.reuse(&key) {
            return Ok(hit);
        }
        self.install_zip(cfg, meta_for(key, md.len(), sha256), path, false)
    }

    fn download_and_install(
        &self,
        cfg: &BuildSourceConfig,
        mut meta: BuildMeta,
        url: &Url,
        accept: &str,
        what: &str,
        expected_sha256: Option<&str>,
    ) -> Result<Build> {
        let part = self.cache.part_path(&meta.key)?;
        let target = Target {
            url,
            accept,
            part: &part,
            what,
            repo: &cfg.repo,
        };
        let Got::Fresh(got) = self.http.download(&target, expected_sha256, None)? else {
            unreachable!("an unconditional request answered 304")
        };
        tracing::info!(bytes = got.transferred, sha256 = %got.sha256, "downloaded {what}");
        meta.size = got.size;
        meta.sha256 = got.sha256;
        self.install_zip(cfg, meta, &part, true)
    }

    /// Unpacks `zip` into a staging directory inside the cache, checks the layout, and moves it
    /// into place. `owned` zips (our downloads) are deleted afterwards, whatever the outcome.
    fn install_zip(
        &self,
        cfg: &BuildSourceConfig,
        mut meta: BuildMeta,
        zip: &Path,
        owned: bool,
    ) -> Result<Build> {
        let staging = self.cache.staging(&meta.key)?;
        let dest = staging.path().join("build");
        let result = unpack_zip(zip, &dest, &self.opts.limits)
            .map_err(|e| no_space_unpacking(e, zip, staging.path()))
            .and_then(|_| check_build(&dest, &cfg.expect, &meta.source));
        if owned {
            let _ = std::fs::remove_file(zip);
        }
        let layout = result?;
        meta.fetched = now_rfc3339();
        self.cache.commit(staging, meta, layout)
    }
}

/// A full disk while unpacking says how much room the build needs, and where.
fn no_space_unpacking(e: ArtifactError, zip: &Path, staging: &Path) -> ArtifactError {
    match &e {
        ArtifactError::Io { source, .. } if crate::space::is_full(source) => {
            let dir = staging.parent().unwrap_or(staging).to_path_buf();
            ArtifactError::NoSpace {
                what: format!("unpacking {}", zip.display()),
                available: crate::space::available(&dir),
                needed: crate::unpack::unpacked_size(zip).ok(),
                dir,
            }
        }
        _ => e,
    }
}

/// Prefers a live artifact when a run lists several with the same name (re-runs).
fn best_artifact(mut found: Vec<Artifact>) -> Option<Artifact> {
    found.sort_by_key(|a| (a.expired, std::cmp::Reverse(a.id)));
    found.into_iter().next()
}

fn parse_url(text: &str, what: &str) -> Result<Url> {
    Url::parse(text).map_err(|e| ArtifactError::Protocol {
        url: text.to_string(),
        what: what.to_string(),
        why: e.to_string(),
    })
}

/// Total size and a hash over (relative path, size, mtime) of every file under `root`: cheap
/// change detection for a local build directory.
fn manifest_hash(root: &Path) -> Result<(u64, String)> {
    let mut lines = Vec::new();
    let mut total = 0u64;
    for entry in hostproc::walk(root) {
        let entry = entry.map_err(|e| crate::manifest::walk_error(root, e))?;
        let Ok(md) = entry.metadata() else { continue };
        if md.is_dir() {
            continue;
        }
        total += md.len();
        let mtime = md
            .modified()
            .ok()
            .and_then(|m| m.duration_since(std::time::UNIX_EPOCH).ok());
        let rel = entry
            .path()
            .strip_prefix(root)
            .unwrap_or(entry.path())
            .to_string_lossy()
            .into_owned();
        lines.push(format!(
            "{rel}\t{}\t{}",
            md.len(),
            mtime.map_or(0, |d| d.as_nanos())
        ));
    }
    lines.sort();
    Ok((
        total,
        base16ct::lower::encode_string(&Sha256::digest(lines.join("\n").as_bytes())),
    ))
}
