//! The GitHub REST subset used to find builds: workflow runs, run artifacts, jobs, releases.

use reqwest::Url;
use serde::Deserialize;

use crate::config::BuildSourceConfig;
use crate::error::{ArtifactError, Result};
use crate::http::Http;

/// A workflow run, as listed by `GET …/actions/workflows/{wf}/runs`.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
pub struct Run {
    pub id: u64,
    #[serde(default)]
    pub head_sha: String,
    #[serde(default)]
    pub head_branch: Option<String>,
    #[serde(default)]
    pub event: String,
    #[serde(default)]
    pub status: Option<String>,
    #[serde(default)]
    pub conclusion: Option<String>,
    #[serde(default)]
    pub created_at: String,
}

/// An artifact of a run.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
pub struct Artifact {
    pub id: u64,
    pub name: String,
    #[serde(default)]
    pub size_in_bytes: u64,
    pub archive_download_url: String,
    #[serde(default)]
    pub expired: bool,
    #[serde(default)]
    pub created_at: Option<String>,
    /// `sha256:<hex>` on newer API versions.
    #[serde(default)]
    pub digest: Option<String>,
}

/// A job of a run.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
pub struct Job {
    pub name: String,
    #[serde(default)]
    pub status: Option<String>,
    #[serde(default)]
    pub conclusion: Option<String>,
}

/// A release and its assets.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
pub struct Release {
    pub id: u64,
    pub tag_name: String,
    #[serde(default)]
    pub created_at: Option<String>,
    #[serde(default)]
    pub assets: Vec<Asset>,
}

/// A release asset.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
pub struct Asset {
    pub id: u64,
    pub name: String,
    #[serde(default)]
    pub size: u64,
    /// API URL: with `Accept: application/octet-stream` it redirects to the bytes.
    pub url: String,
    /// Public URL, no token needed for public repositories.
    pub browser_download_url: String,
    #[serde(default)]
    pub digest: Option<String>,
}

#[derive(Deserialize)]
struct RunsPage {
    workflow_runs: Vec<Run>,
}
#[derive(Deserialize)]
struct ArtifactsPage {
    artifacts: Vec<Artifact>,
}
#[derive(Deserialize)]
struct JobsPage {
    jobs: Vec<Job>,
}

/// Pages followed at most, whatever the server's `Link` headers say.
const MAX_PAGES: usize = 20;

/// Calls for one repository.
pub(crate) struct Api<'a> {
    pub(crate) http: &'a Http,
    pub(crate) repo: String,
}

impl<'a> Api<'a> {
    pub(crate) fn new(http: &'a Http, cfg: &BuildSourceConfig) -> Result<Api<'a>> {
        cfg.owner_name().ok_or_else(|| ArtifactError::BadSource {
            spec: cfg.repo.clone(),
            why: "the repository must be written owner/name".into(),
        })?;
        Ok(Api {
            http,
            repo: cfg.repo.clone(),
        })
    }

    fn url(&self, path: &str, query: &[(&str, &str)]) -> Url {
        let mut url = self.http.api_url(&format!("repos/{}/{path}", self.repo));
        if !query.is_empty() {
            url.query_pairs_mut().extend_pairs(query);
        }
        url
    }

    /// Follows `Link: rel="next"` until `enough` says stop or pages run out.
    fn paginate<P: serde::de::DeserializeOwned, T>(
        &self,
        first: Url,
        what: &str,
        items: impl Fn(P) -> Vec<T>,
        enough: impl Fn(&[T]) -> bool,
    ) -> Result<Option<Vec<T>>> {
        let mut out = Vec::new();
        let mut next = Some(first);
        let mut pages = 0;
        while let Some(url) = next.take() {
            pages += 1;
            let Some((page, link)) = self.http.get_json::<P>(&url, what, &self.repo)? else {
                return Ok(if pages == 1 { None } else { Some(out) });
            };
            out.extend(items(page));
            if enough(&out) || pages >= MAX_PAGES {
                break;
            }
            next = link;
        }
        Ok(Some(out))
    }

    /// Completed runs of the configured workflow/branch/event, newest first, at most `search_runs`.
    pub(crate) fn completed_runs(&self, cfg: &BuildSourceConfig) -> Result<Vec<Run>> {
        let want = cfg.search_runs.clamp(1, 1000) as usize;
        let per_page = want.min(100).to_string();
        let url = self.url(
            &format!("actions/workflows/{}/runs", cfg.workflow),
            &[
                ("branch", &cfg.branch),
                ("event", &cfg.event),
                ("status", "completed"),
                ("per_page", &per_page),
            ],
        );
        let what = format!("listing runs of {} in {}", cfg.workflow, cfg.repo);
        let runs = self.paginate(
            url.clone(),
            &what,
            |p: RunsPage| p.workflow_runs,
            |r| r.len() >= want,
        )?;
        let mut runs = runs.ok_or_else(|| ArtifactError::NotFound {
            what: format!("workflow {} of {}", cfg.workflow, cfg.repo),
            url: url.to_string(),
            hint: "Check [efw] repo and workflow".into(),
        })?;
        runs.truncate(want);
        Ok(runs)
    }

    /// One run by id.
    pub(crate) fn run(&self, id: u64) -> Result<Run> {
        let url = self.url(&format!("actions/runs/{id}"), &[]);
        let what = format!("reading run {id} of {}", self.repo);
        match self.http.get_json::<Run>(&url, &what, &self.repo)? {
            Some((run, _)) => Ok(run),
            None => Err(ArtifactError::NotFound {
                what: format!("run {id} of {}", self.repo),
                url: url.to_string(),
                hint: "Check the run id (the number in …/actions/runs/<id>)".into(),
            }),
        }
    }

    /// The run's artifacts called `name` (filtered server-side and, for servers that ignore the
    /// filter, client-side while paginating).
    pub(crate) fn artifacts(&self, run_id: u64, name: &str) -> Result<Vec<Artifact>> {
        let url = self.url(
            &format!("actions/runs/{run_id}/artifacts"),
            &[("name", name), ("per_page", "100")],
        );
        let what = format!("listing artifacts of run {run_id}");
        let found = self.paginate(
            url,
            &what,
            |p: ArtifactsPage| p.artifacts.into_iter().filter(|a| a.name == name).collect(),
            |found| !found.is_empty(),
        )?;
        Ok(found.unwrap_or_default())
    }

    /// The run's jobs (latest attempt).
    pub(crate) fn jobs(&self, run_id: u64) -> Result<Vec<Job>> {
        let url = self.url(
            &format!("actions/runs/{run_id}/jobs"),
            &[("filter", "latest"), ("per_page", "100")],
        );
        let what = format!("listing jobs of run {run_id}");
        Ok(self
            .paginate(url, &what, |p: JobsPage| p.jobs, |_| false)?
            .unwrap_or_default())
    }

    /// The release tagged `tag`, or `None` when there is none.
    pub(crate) fn release_by_tag(&self, tag: &str) -> Result<Option<Release>> {
        let url = self.url(&format!("releases/tags/{tag}"), &[]);
        let what = format!("reading release {tag} of {}", self.repo);
        Ok(self
            .http
            .get_json::<Release>(&url, &what, &self.repo)?
            .map(|(r, _)| r))
    }
}
