//! Builds from GitHub: main's newest good run, a given run, a release; each resolved to one
//! artifact or asset and fetched through the cache.

use crate::cache::{Build, BuildMeta};
use crate::config::BuildSourceConfig;
use crate::error::{ArtifactError, Result};
use crate::github::{Api, Artifact, Run};
use crate::http::{ACCEPT_BYTES, ACCEPT_JSON, parse_digest};
use crate::select::{Pick, RunVerdict, judge_run, pick};
use crate::source::SourceSpec;

use super::*;

impl Fetcher {
    pub(super) fn resolve_main(
        &self,
        cfg: &BuildSourceConfig,
    ) -> Result<(Run, Artifact, Vec<String>)> {
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

    pub(super) fn resolve_run(
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

    pub(super) fn artifact_build(
        &self,
        cfg: &BuildSourceConfig,
        spec: &SourceSpec,
        run: &Run,
        artifact: &Artifact,
        warnings: Vec<String>,
    ) -> Result<Build> {
        let key = format!("gh-artifact-{}", artifact.id);
        let meta = BuildMeta {
            source: match spec {
                SourceSpec::Main => "main".into(),
                _ => format!("run:{}", run.id),
            },
            repo: Some(cfg.repo.clone()),
            artifact: Some(artifact.name.clone()),
            run_id: Some(run.id),
            artifact_id: Some(artifact.id),
            head_sha: Some(run.head_sha.clone()).filter(|s| !s.is_empty()),
            created: artifact
                .created_at
                .clone()
                .or_else(|| Some(run.created_at.clone())),
            url: Some(artifact.archive_download_url.clone()),
            ..BuildMeta::new(key.clone(), spec, cfg)
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

    pub(super) fn release_build(
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
            repo: Some(cfg.repo.clone()),
            artifact: Some(asset.name.clone()),
            asset_id: Some(asset.id),
            created: release.created_at.clone(),
            version: Some(version.to_string()),
            url: Some(asset.browser_download_url.clone()),
            ..BuildMeta::new(key, spec, cfg)
        };
        let what = format!("{} ({})", asset.name, release.tag_name);
        let expected = asset.digest.as_deref().and_then(parse_digest);
        self.download_and_install(cfg, meta, &url, ACCEPT_BYTES, &what, expected.as_deref())
    }
}
