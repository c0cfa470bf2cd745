//! The orchestration: resolve a source to one build, reuse the cache or download, verify, unpack,
//! check the layout, and fall back to the cache when GitHub is out of reach.

use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};

use reqwest::Url;
use sha2::{Digest, Sha256};

use crate::cache::{Build, BuildMeta, Cache};
use crate::config::BuildSourceConfig;
use crate::download::Got;
use crate::error::{ArtifactError, Result};
use crate::github::{Api, Artifact, Run};
use crate::http::{ACCEPT_BYTES, ACCEPT_JSON, Http, RetryPolicy, Timing, parse_digest};
use crate::layout::{check_build, find_build_root};
use crate::secret::Secret;
use crate::select::{Pick, RunVerdict, judge_run, pick};
use crate::source::SourceSpec;
use crate::unpack::{UnpackLimits, unpack_zip};

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
    /// Draw a progress bar on stderr (it hides itself when stderr is not a terminal).
    pub progress: bool,
    /// Set to abort between reads and retries (Ctrl-C).
    pub cancel: Option<Arc<AtomicBool>>,
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
    /// Defaults: public GitHub, no token, online, no progress bar.
    pub fn new(cache_dir: impl Into<PathBuf>) -> FetchOptions {
        FetchOptions {
            api_url: DEFAULT_API_URL.into(),
            token: None,
            cache_dir: cache_dir.into(),
            offline: false,
            progress: false,
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
            opts.progress,
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
        match self
            .http
            .download(&parsed, ACCEPT_BYTES, dest, url, "", expected_sha256, None)?
        {
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

    fn resolve_main(&self, cfg: &BuildSourceConfig) -> Result<(Run, Artifact, Vec<String>)> {
        let api = Api::new(&self.http, cfg)?;
        let runs = api.completed_runs(cfg)?;
        let pattern = cfg.build_job_pattern();
        let mut verdicts = Vec::new();
        let mut artifacts = Vec::new();
        for run in &runs {
            self.http.check_cancel()?;
            let artifact = best_artifact(api.artifacts(run.id, &cfg.artifact)?);
            let jobs = match &artifact {
                Some(a) if !a.expired && run.conclusion.as_deref() != Some("success") => {
                    Some(api.jobs(run.id)?)
                }
                _ => None,
            };
            let verdict = judge_run(
                run.conclusion.as_deref(),
                artifact.as_ref(),
                jobs.as_deref(),
                &pattern,
            );
            tracing::debug!(run = run.id, ?verdict, "judged run");
            let good = verdict == RunVerdict::Good;
            verdicts.push(verdict);
            artifacts.push(artifact);
            if good {
                break;
            }
        }
        if runs.is_empty() {
            return Err(ArtifactError::NoBuild(format!(
                "{} has no completed {} runs of {} on {}. Check [efw] workflow, branch and event",
                cfg.repo, cfg.event, cfg.workflow, cfg.branch
            )));
        }
        let ids: Vec<u64> = runs.iter().map(|r| r.id).collect();
        match pick(&ids[..verdicts.len()], &verdicts, &cfg.artifact) {
            Pick::Chosen { index, warning } => {
                let artifact = artifacts[index]
                    .clone()
                    .expect("a chosen run has an artifact");
                tracing::info!(run = runs[index].id, sha = %runs[index].head_sha, "using {} of run {}", artifact.name, runs[index].id);
                Ok((runs[index].clone(), artifact, warning.into_iter().collect()))
            }
            Pick::Nothing(why) => Err(ArtifactError::NoBuild(why)),
        }
    }

    fn resolve_run(
        &self,
        cfg: &BuildSourceConfig,
        id: u64,
    ) -> Result<(Run, Artifact, Vec<String>)> {
        let api = Api::new(&self.http, cfg)?;
        let run = api.run(id)?;
        let artifact = best_artifact(api.artifacts(id, &cfg.artifact)?).ok_or_else(|| {
            ArtifactError::NotFound {
                what: format!("artifact {} in run {id}", cfg.artifact),
                url: format!("https://github.com/{}/actions/runs/{id}", cfg.repo),
                hint: "The run may have failed before uploading it; check [efw] artifact".into(),
            }
        })?;
        if artifact.expired {
            return Err(ArtifactError::Expired {
                name: artifact.name,
                id: artifact.id,
                run_id: id,
            });
        }
        let jobs = if run.conclusion.as_deref() == Some("success") {
            None
        } else {
            Some(api.jobs(id)?)
        };
        let mut warnings = Vec::new();
        if let RunVerdict::Partial(why) = judge_run(
            run.conclusion.as_deref(),
            Some(&artifact),
            jobs.as_deref(),
            &cfg.build_job_pattern(),
        ) {
            warnings.push(format!("run {id}: {why}; the build may be partial"));
        }
        Ok((run, artifact, warnings))
    }

    fn artifact_build(
        &self,
        cfg: &BuildSourceConfig,
        spec: &SourceSpec,
        run: &Run,
        artifact: &Artifact,
        warnings: Vec<String>,
    ) -> Result<Build> {
        let key = format!("gh-artifact-{}", artifact.id);
        let meta = BuildMeta {
            key: key.clone(),
            source: match spec {
                SourceSpec::Main => "main".into(),
                _ => format!("run:{}", run.id),
            },
            repo: Some(cfg.repo.clone()),
            artifact: Some(artifact.name.clone()),
            configuration: cfg.configuration.clone(),
            run_id: Some(run.id),
            artifact_id: Some(artifact.id),
            asset_id: None,
            head_sha: Some(run.head_sha.clone()).filter(|s| !s.is_empty()),
            created: artifact
                .created_at
                .clone()
                .or_else(|| Some(run.created_at.clone())),
            fetched: String::new(),
            size: 0,
            sha256: String::new(),
            version: None,
            url: Some(artifact.archive_download_url.clone()),
            etag: None,
            last_modified: None,
        };
        if let Some(mut hit) = self.reuse(&key) {
            hit.warnings = warnings;
            return Ok(hit);
        }
        if !self.http.has_token() {
            return Err(ArtifactError::MissingToken {
                repo: cfg.repo.clone(),
            });
        }
        let url = parse_url(
            &artifact.archive_download_url,
            "the artifact's download URL",
        )?;
        let what = format!("{} (run {})", artifact.name, run.id);
        let expected = artifact.digest.as_deref().and_then(parse_digest);
        let result =
            self.download_and_install(cfg, meta, &url, ACCEPT_JSON, &what, expected.as_deref());
        let mut build = result.map_err(|e| match e {
            ArtifactError::Http { status: 410, .. } => ArtifactError::Expired {
                name: artifact.name.clone(),
                id: artifact.id,
                run_id: run.id,
            },
            other => other,
        })?;
        build.warnings = warnings;
        Ok(build)
    }

    fn release_build(
        &self,
        cfg: &BuildSourceConfig,
        spec: &SourceSpec,
        version: &str,
    ) -> Result<Build> {
        let api = Api::new(&self.http, cfg)?;
        let tags = [format!("v{version}"), format!("Release-v{version}")];
        let mut release = None;
        for tag in &tags {
            if let Some(r) = api.release_by_tag(tag)? {
                release = Some(r);
                break;
            }
        }
        let release = release.ok_or_else(|| ArtifactError::NotFound {
            what: format!(
                "release {version} of {} (tags {} and {})",
                cfg.repo, tags[0], tags[1]
            ),
            url: format!("https://github.com/{}/releases", cfg.repo),
            hint: "Check the version against the releases page".into(),
        })?;
        let name = cfg.release_asset_name();
        let asset = release
            .assets
            .iter()
            .find(|a| a.name == name)
            .ok_or_else(|| ArtifactError::NotFound {
                what: format!("asset {name} in release {}", release.tag_name),
                url: format!(
                    "https://github.com/{}/releases/tag/{}",
                    cfg.repo, release.tag_name
                ),
                hint: format!(
                    "It has: {}. Set release_asset or configuration",
                    release
                        .assets
                        .iter()
                        .map(|a| a.name.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            })?;
        let key = format!("gh-asset-{}", asset.id);
        if let Some(hit) = self.reuse(&key) {
            return Ok(hit);
        }
        // With a token, the API URL (works for private repositories); without, the public one.
        let from = if self.http.has_token() {
            &asset.url
        } else {
            &asset.browser_download_url
        };
        let url = parse_url(from, "the release asset's URL")?;
        let meta = BuildMeta {
            key,
            source: spec.to_string(),
            repo: Some(cfg.repo.clone()),
            artifact: Some(asset.name.clone()),
            configuration: cfg.configuration.clone(),
            run_id: None,
            artifact_id: None,
            asset_id: Some(asset.id),
            head_sha: None,
            created: release.created_at.clone(),
            fetched: String::new(),
            size: 0,
            sha256: String::new(),
            version: Some(version.to_string()),
            url: Some(asset.browser_download_url.clone()),
            etag: None,
            last_modified: None,
        };
        let what = format!("{} ({})", asset.name, release.tag_name);
        let expected = asset.digest.as_deref().and_then(parse_digest);
        self.download_and_install(cfg, meta, &url, ACCEPT_BYTES, &what, expected.as_deref())
    }

    fn local_file(&self, cfg: &BuildSourceConfig, spec: &SourceSpec, path: &Path) -> Result<Build> {
        let meta_for = |key: String, size: u64, sha256: String| BuildMeta {
            key,
            source: spec.to_string(),
            repo: None,
            artifact: path.file_name().map(|n| n.to_string_lossy().into_owned()),
            configuration: cfg.configuration.clone(),
            run_id: None,
            artifact_id: None,
            asset_id: None,
            head_sha: None,
            created: None,
            fetched: now_rfc3339(),
            size,
            sha256,
            version: None,
            url: None,
            etag: None,
            last_modified: None,
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
        let Got::Fresh(got) =
            self.http
                .download(url, accept, &part, what, &cfg.repo, expected_sha256, None)?
        else {
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
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let entries =
            std::fs::read_dir(&dir).map_err(|e| ArtifactError::io("cannot read", &dir, e))?;
        for entry in entries.filter_map(|e| e.ok()) {
            let path = entry.path();
            let Ok(md) = entry.metadata() else { continue };
            if md.is_dir() {
                stack.push(path);
            } else {
                total += md.len();
                let mtime = md
                    .modified()
                    .ok()
                    .and_then(|m| m.duration_since(std::time::UNIX_EPOCH).ok());
                let rel = path
                    .strip_prefix(root)
                    .unwrap_or(&path)
                    .to_string_lossy()
                    .into_owned();
                lines.push(format!(
                    "{rel}\t{}\t{}",
                    md.len(),
                    mtime.map_or(0, |d| d.as_nanos())
                ));
            }
        }
    }
    lines.sort();
    Ok((
        total,
        base16ct::lower::encode_string(&Sha256::digest(lines.join("\n").as_bytes())),
    ))
}
