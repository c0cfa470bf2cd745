//! HTTP with the rules GitHub downloads need: the token only ever goes to the API origin (redirects
//! are followed by hand), bounded retries with backoff, rate-limit reporting, and resumable,
//! hashed downloads into a file.

use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use reqwest::Url;
use reqwest::blocking::{Client, Response};
use reqwest::header::{ACCEPT, CONTENT_LENGTH, CONTENT_RANGE, HeaderMap, LOCATION, RANGE};
use serde::de::DeserializeOwned;
use sha2::{Digest, Sha256};

use crate::error::{ArtifactError, Result};
use crate::secret::Secret;

/// `Accept` for REST calls.
pub(crate) const ACCEPT_JSON: &str = "application/vnd.github+json";
/// `Accept` for release-asset downloads through the API (answers a redirect to the bytes).
pub(crate) const ACCEPT_BYTES: &str = "application/octet-stream";

/// How often and how patiently transient failures (5xx, dropped connections) are retried.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts per request, the first included (a download that makes progress earns fresh ones).
    pub attempts: u32,
    /// Delay before the first retry; doubles each time.
    pub base_delay: Duration,
    /// Ceiling of the delay.
    pub max_delay: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            attempts: 5,
            base_delay: Duration::from_millis(500),
            max_delay: Duration::from_secs(8),
        }
    }
}

impl RetryPolicy {
    /// Delay before retry number `retry` (1-based): exponential, capped.
    pub fn delay(&self, retry: u32) -> Duration {
        let factor = 1u32
            .checked_shl(retry.saturating_sub(1))
            .unwrap_or(u32::MAX);
        self.base_delay.saturating_mul(factor).min(self.max_delay)
    }
}

/// Fresh attempts a download earns each time it gets this much further.
const PROGRESS_CREDIT: u64 = 1 << 20;
/// Absolute ceiling of attempts for one download, whatever the progress.
const MAX_DOWNLOAD_ATTEMPTS: u32 = 50;
/// Connect timeout; the body has a per-read timeout instead of a whole-request one.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(15);
/// Default per-read (and response-header) timeout.
pub(crate) const READ_TIMEOUT: Duration = Duration::from_secs(60);
const MAX_REDIRECTS: usize = 5;

/// A blocking client bound to one API origin and (optionally) one token.
pub(crate) struct Http {
    client: Client,
    api: Url,
    token: Option<Secret>,
    retry: RetryPolicy,
    cancel: Option<Arc<AtomicBool>>,
    progress: bool,
}

/// What a finished download produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Downloaded {
    /// Size of the complete file.
    pub size: u64,
    /// Lowercase hex SHA-256 of the complete file.
    pub sha256: String,
    /// Bytes received over the network by this call (less than `size` after a resume).
    pub transferred: u64,
}

impl Http {
    pub(crate) fn new(
        api_url: &str,
        token: Option<Secret>,
        retry: RetryPolicy,
        cancel: Option<Arc<AtomicBool>>,
        progress: bool,
        read_timeout: Duration,
    ) -> Result<Http> {
        let api = Url::parse(api_url.trim_end_matches('/')).map_err(|e| ArtifactError::BadSource {
            spec: api_url.to_string(),
            why: format!("the GitHub API URL is not a URL ({e}); set [github] api_url or HARNESS_GITHUB_API_URL"),
        })?;
        let client = Client::builder()
            .connect_timeout(CONNECT_TIMEOUT)
            .timeout(read_timeout)
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("harness-artifacts/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| ArtifactError::Network {
                url: api_url.to_string(),
                what: "setting up the HTTP client".into(),
                message: chain(&e),
            })?;
        Ok(Http {
            client,
            api,
            token,
            retry,
            cancel,
            progress,
        })
    }

    pub(crate) fn has_token(&self) -> bool {
        self.token.is_some()
    }

    /// `<api>/<path>` (the API URL may carry a prefix such as GitHub Enterprise's `/api/v3`).
    pub(crate) fn api_url(&self, path: &str) -> Url {
        let base = self.api.as_str().trim_end_matches('/');
        Url::parse(&format!("{base}/{}", path.trim_start_matches('/')))
            .expect("API URL joined with a path")
    }

    pub(crate) fn check_cancel(&self) -> Result<()> {
        match &self.cancel {
            Some(flag) if flag.load(Ordering::Relaxed) => Err(ArtifactError::Cancelled),
            _ => Ok(()),
        }
    }

    /// Sleeps `d` in short slices so Ctrl-C is honoured promptly.
    fn pause(&self, d: Duration) -> Result<()> {
        let end = std::time::Instant::now() + d;
        while std::time::Instant::now() < end {
            self.check_cancel()?;
            std::thread::sleep(Duration::from_millis(20).min(end - std::time::Instant::now()));
        }
        self.check_cancel()
    }

    /// One GET, following redirects by hand: the `Authorization` header is attached only while the
    /// URL is on the API origin, so a storage host on another host or port never sees the token.
    fn send(
        &self,
        url: &Url,
        accept: &str,
        range_from: Option<u64>,
    ) -> std::result::Result<Response, String> {
        let mut url = url.clone();
        for _ in 0..=MAX_REDIRECTS {
            let mut req = self
                .client
                .get(url.clone())
                .header(ACCEPT, accept)
                .header("X-GitHub-Api-Version", "2022-11-28");
            if let Some(token) = self
                .token
                .as_ref()
                .filter(|_| url.origin() == self.api.origin())
            {
                req = req.bearer_auth(token.expose());
            }
            if let Some(from) = range_from {
                req = req.header(RANGE, format!("bytes={from}-"));
            }
            let resp = req.send().map_err(|e| chain(&e))?;
            if resp.status().is_redirection()
                && let Some(next) = resp.headers().get(LOCATION).and_then(|l| l.to_str().ok())
            {
                url = url
                    .join(next)
                    .map_err(|e| format!("bad redirect target {next:?}: {e}"))?;
                tracing::debug!(host = url.host_str().unwrap_or(""), "following redirect");
                continue;
            }
            return Ok(resp);
        }
        Err(format!("more than {MAX_REDIRECTS} redirects"))
    }

    /// GET a JSON document; returns it and the `rel="next"` page, if any. 404 gives `Ok(None)`.
    pub(crate) fn get_json<T: DeserializeOwned>(
        &self,
        url: &Url,
        what: &str,
        repo: &str,
    ) -> Result<Option<(T, Option<Url>)>> {
        let mut attempt = 0;
        loop {
            self.check_cancel()?;
            attempt += 1;
            let retry_left = attempt < self.retry.attempts;
            match self.send(url, ACCEPT_JSON, None) {
                Ok(resp) if resp.status().is_success() => {
                    let next = next_link(resp.headers()).and_then(|n| url.join(&n).ok());
                    match resp.text() {
                        Ok(body) => {
                            let value = serde_json::from_str(&body).map_err(|e| {
                                ArtifactError::Protocol {
                                    url: url.to_string(),
                                    what: what.to_string(),
                                    why: format!("not the JSON expected ({e})"),
                                }
                            })?;
                            return Ok(Some((value, next)));
                        }
                        Err(e) if retry_left => {
                            tracing::warn!("{what}: body read failed ({}), retrying", chain(&e))
                        }
                        Err(e) => return Err(network(url, what, chain(&e))),
                    }
                }
                Ok(resp) if resp.status().as_u16() == 404 => return Ok(None),
                Ok(resp) => {
                    let status = resp.status().as_u16();
                    let err = response_error(resp, url, what, repo);
                    if !(is_transient(status) && retry_left) {
                        return Err(err);
                    }
                    tracing::warn!("{err}; retrying");
                }
                Err(msg) if retry_left => tracing::warn!("{what}: {msg}; retrying"),
                Err(msg) => return Err(network(url, what, msg)),
            }
            self.pause(self.retry.delay(attempt))?;
        }
    }

    /// Downloads `url` into `part`, resuming from whatever `part` already holds, hashing as it goes.
    /// On a digest mismatch `part` is deleted. The caller renames `part` into place.
    pub(crate) fn download(
        &self,
        url: &Url,
        accept: &str,
        part: &Path,
        what: &str,
        repo: &str,
        expected_sha256: Option<&str>,
    ) -> Result<Downloaded> {
        let mut initial = Sha256::new();
        let mut have = hash_existing(part, &mut initial)?;
        let mut hasher = BackgroundHasher::new(initial);
        if have > 0 {
            tracing::info!("resuming {what} from byte {have}");
        }
        let bar = self.progress_bar(what);
        let mut transferred = 0u64;
        let mut failures = 0u32;
        let mut total_attempts = 0u32;
        let mut last_error = String::new();
        let mut credited_at = have;
        loop {
            self.check_cancel()?;
            total_attempts += 1;
            if failures >= self.retry.attempts || total_attempts > MAX_DOWNLOAD_ATTEMPTS {
                bar.abandon();
                return Err(network(
                    url,
                    what,
                    format!("gave up after {total_attempts} attempts: {last_error}"),
                ));
            }
            if failures > 0 {
                self.pause(self.retry.delay(failures))?;
            }
            let resp = match self.send(url, accept, (have > 0).then_some(have)) {
                Ok(resp) => resp,
                Err(msg) => {
                    tracing::warn!("{what}: {msg}");
                    last_error = msg;
                    failures += 1;
                    continue;
                }
            };
            let status = resp.status().as_u16();
            let expected_total = match status {
                206 if have > 0 => match content_range(resp.headers()) {
                    Some((start, total)) if start == have => total,
                    _ => {
                        // The server resumed from somewhere else: start over rather than guess.
                        restart(part, &mut hasher, &mut have)?;
                        failures += 1;
                        last_error = "inconsistent Content-Range".into();
                        continue;
                    }
                },
                200 => {
                    if have > 0 {
                        tracing::info!(
                            "{what}: server ignored the Range request, downloading from the start"
                        );
                        restart(part, &mut hasher, &mut have)?;
                        credited_at = 0;
                    }
                    content_length(resp.headers())
                }
                416 if have > 0 => {
                    restart(part, &mut hasher, &mut have)?;
                    failures += 1;
                    last_error = "range not satisfiable".into();
                    continue;
                }
                _ => {
                    let err = response_error(resp, url, what, repo);
                    if is_transient(status) {
                        tracing::warn!("{err}; retrying");
                        last_error = err.to_string();
                        failures += 1;
                        continue;
                    }
                    bar.abandon();
                    return Err(err);
                }
            };
            if let Some(total) = expected_total {
                bar.set_length(total);
            }
            bar.set_position(have);
            let mut file = OpenOptions::new()
                .create(true)
                .append(true)
                .open(part)
                .map_err(|e| ArtifactError::io("cannot open download file", part, e))?;
            let outcome = self.copy_body(
                resp,
                &mut file,
                &mut hasher,
                &bar,
                &mut have,
                &mut transferred,
            );
            drop(file);
            match outcome {
                Ok(()) if expected_total.is_none_or(|t| t == have) => break,
                Ok(()) => {
                    last_error = format!(
                        "connection closed at byte {have} of {}",
                        expected_total.unwrap_or(0)
                    );
                }
                Err(CopyError::Read(msg)) => last_error = msg,
                Err(CopyError::Write(e)) => {
                    return Err(ArtifactError::io("cannot write download file", part, e));
                }
                Err(CopyError::Cancelled) => {
                    bar.abandon();
                    return Err(ArtifactError::Cancelled);
                }
            }
            tracing::warn!("{what}: interrupted ({last_error}); will resume from byte {have}");
            failures += 1;
            if have >= credited_at + PROGRESS_CREDIT {
                failures = 1;
                credited_at = have;
            }
        }
        bar.finish_and_clear();
        let sha256 = base16ct::lower::encode_string(&hasher.finish().finalize());
        if let Some(expected) = expected_sha256
            && !expected.eq_ignore_ascii_case(&sha256)
        {
            let _ = std::fs::remove_file(part);
            return Err(ArtifactError::DigestMismatch {
                what: what.to_string(),
                expected: expected.to_ascii_lowercase(),
                actual: sha256,
            });
        }
        Ok(Downloaded {
            size: have,
            sha256,
            transferred,
        })
    }

    fn copy_body(
        &self,
        mut resp: Response,
        file: &mut File,
        hasher: &mut BackgroundHasher,
        bar: &ProgressBar,
        have: &mut u64,
        transferred: &mut u64,
    ) -> std::result::Result<(), CopyError> {
        loop {
            if self.check_cancel().is_err() {
                return Err(CopyError::Cancelled);
            }
            let mut buf = hasher.buffer();
            let n = match resp.read(&mut buf) {
                Ok(0) => return Ok(()),
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(CopyError::Read(chain(&e))),
            };
            file.write_all(&buf[..n]).map_err(CopyError::Write)?;
            hasher.feed(buf, n);
            *have += n as u64;
            *transferred += n as u64;
            bar.set_position(*have);
        }
    }

    fn progress_bar(&self, what: &str) -> ProgressBar {
        if !self.progress {
            return ProgressBar::hidden();
        }
        let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
        if let Ok(style) = ProgressStyle::with_template(
            "{msg} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} ETA {eta}",
        ) {
            bar.set_style(style.progress_chars("=> "));
        }
        bar.set_message(what.to_string());
        bar
    }
}

enum CopyError {
    Read(String),
    Write(std::io::Error),
    Cancelled,
}

/// Read size for downloads.
const CHUNK: usize = 256 * 1024;
/// Buffers in flight between the download loop and the hashing thread.
const POOL: usize = 8;

enum HashMsg {
    Data(Vec<u8>, usize),
    Reset,
}

/// SHA-256 on a worker thread, so hashing overlaps the network reads instead of adding to them.
/// Buffers travel to the worker and come back for reuse; the message order keeps the hash exact.
struct BackgroundHasher {
    tx: Option<std::sync::mpsc::SyncSender<HashMsg>>,
    pool: std::sync::mpsc::Receiver<Vec<u8>>,
    allocated: usize,
    worker: Option<std::thread::JoinHandle<Sha256>>,
}

impl BackgroundHasher {
    fn new(initial: Sha256) -> BackgroundHasher {
        let (tx, rx) = std::sync::mpsc::sync_channel::<HashMsg>(POOL);
        let (back_tx, pool) = std::sync::mpsc::channel::<Vec<u8>>();
        let worker = std::thread::spawn(move || {
            let mut hasher = initial;
            for msg in rx {
                match msg {
                    HashMsg::Data(buf, n) => {
                        hasher.update(&buf[..n]);
                        let _ = back_tx.send(buf);
                    }
                    HashMsg::Reset => hasher = Sha256::new(),
                }
            }
            hasher
        });
        BackgroundHasher {
            tx: Some(tx),
            pool,
            allocated: 0,
            worker: Some(worker),
        }
    }

    /// A read buffer: a returned one, a new one while the pool is not full, else the next returned.
    fn buffer(&mut self) -> Vec<u8> {
        if let Ok(buf) = self.pool.try_recv() {
            return buf;
        }
        if self.allocated < POOL {
            self.allocated += 1;
            return vec![0u8; CHUNK];
        }
        self.pool.recv().unwrap_or_else(|_| vec![0u8; CHUNK])
    }

    fn feed(&mut self, buf: Vec<u8>, n: usize) {
        if let Some(tx) = &self.tx {
            tx.send(HashMsg::Data(buf, n))
                .expect("hashing thread alive");
        }
    }

    fn reset(&mut self) {
        if let Some(tx) = &self.tx {
            tx.send(HashMsg::Reset).expect("hashing thread alive");
        }
    }

    fn finish(mut self) -> Sha256 {
        self.tx = None;
        self.worker
            .take()
            .expect("worker")
            .join()
            .expect("hashing thread")
    }
}

impl Drop for BackgroundHasher {
    fn drop(&mut self) {
        self.tx = None;
        if let Some(w) = self.worker.take() {
            let _ = w.join();
        }
    }
}

/// Feeds an existing partial file into the hasher; returns its length (0 when absent).
fn hash_existing(part: &Path, hasher: &mut Sha256) -> Result<u64> {
    let mut file = match File::open(part) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(ArtifactError::io("cannot read partial download", part, e)),
    };
    let mut buf = vec![0u8; 1 << 20];
    let mut len = 0u64;
    loop {
        let n = file
            .read(&mut buf)
            .map_err(|e| ArtifactError::io("cannot read partial download", part, e))?;
        if n == 0 {
            return Ok(len);
        }
        hasher.update(&buf[..n]);
        len += n as u64;
    }
}

fn restart(part: &Path, hasher: &mut BackgroundHasher, have: &mut u64) -> Result<()> {
    File::create(part).map_err(|e| ArtifactError::io("cannot truncate download file", part, e))?;
    hasher.reset();
    *have = 0;
    Ok(())
}

/// Statuses worth retrying.
pub(crate) fn is_transient(status: u16) -> bool {
    matches!(status, 408 | 500 | 502 | 503 | 504)
}

fn network(url: &Url, what: &str, message: String) -> ArtifactError {
    ArtifactError::Network {
        url: url.to_string(),
        what: what.to_string(),
        message,
    }
}

/// Turns a non-success response into the error a user can act on.
fn response_error(resp: Response, url: &Url, what: &str, repo: &str) -> ArtifactError {
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let body = resp.text().unwrap_or_default();
    classify_failure(
        status,
        &headers,
        &body,
        url.as_str(),
        what,
        repo,
        now_epoch(),
    )
}

fn now_epoch() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// The decision behind [`response_error`], pure so it can be tested.
pub(crate) fn classify_failure(
    status: u16,
    headers: &HeaderMap,
    body: &str,
    url: &str,
    what: &str,
    repo: &str,
    now: u64,
) -> ArtifactError {
    let message = serde_json::from_str::<serde_json::Value>(body)
        .ok()
        .and_then(|v| {
            v.get("message")
                .and_then(|m| m.as_str())
                .map(str::to_string)
        })
        .unwrap_or_else(|| {
            body.chars()
                .take(200)
                .collect::<String>()
                .trim()
                .to_string()
        });
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
    };
    let limited = status == 429
        || (status == 403
            && (header("x-ratelimit-remaining") == Some("0")
                || header("retry-after").is_some()
                || message.to_ascii_lowercase().contains("rate limit")));
    if limited {
        let wait_secs = header("retry-after")
            .and_then(|v| v.parse::<u64>().ok())
            .or_else(|| {
                header("x-ratelimit-reset")
                    .and_then(|v| v.parse::<u64>().ok())
                    .map(|r| r.saturating_sub(now))
            })
            .unwrap_or(60);
        let reset = time::OffsetDateTime::from_unix_timestamp((now + wait_secs) as i64)
            .ok()
            .and_then(|t| {
                t.format(&time::format_description::well_known::Rfc3339)
                    .ok()
            })
            .unwrap_or_else(|| format!("now + {wait_secs} s"));
        return ArtifactError::RateLimited {
            status,
            what: what.to_string(),
            reset,
            wait_secs,
        };
    }
    match status {
        401 | 403 => ArtifactError::Unauthorized {
            status,
            what: what.to_string(),
            message: if message.is_empty() {
                "no message".into()
            } else {
                message
            },
            repo: repo.to_string(),
        },
        404 => ArtifactError::NotFound {
            what: what.to_string(),
            url: url.to_string(),
            hint: "Check the repository and id; private repositories answer 404 without a token"
                .into(),
        },
        _ => ArtifactError::Http {
            status,
            url: url.to_string(),
            what: what.to_string(),
            message,
        },
    }
}

/// The `rel="next"` target of a `Link` header.
pub(crate) fn next_link(headers: &HeaderMap) -> Option<String> {
    parse_next_link(headers.get("link")?.to_str().ok()?)
}

/// Parses `<url>; rel="next", <url>; rel="last"`.
pub(crate) fn parse_next_link(link: &str) -> Option<String> {
    link.split(',').find_map(|part| {
        let (target, params) = part.split_once(';')?;
        let is_next = params.split(';').any(|p| {
            let p = p.trim();
            p == "rel=\"next\"" || p == "rel=next"
        });
        let target = target.trim().strip_prefix('<')?.strip_suffix('>')?;
        is_next.then(|| target.to_string())
    })
}

fn content_length(headers: &HeaderMap) -> Option<u64> {
    headers
        .get(CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// `(start, Some(total))` from `Content-Range: bytes start-end/total`.
fn content_range(headers: &HeaderMap) -> Option<(u64, Option<u64>)> {
    parse_content_range(headers.get(CONTENT_RANGE)?.to_str().ok()?)
}

pub(crate) fn parse_content_range(v: &str) -> Option<(u64, Option<u64>)> {
    let rest = v.trim().strip_prefix("bytes ")?;
    let (range, total) = rest.split_once('/')?;
    let (start, _end) = range.split_once('-')?;
    Some((start.trim().parse().ok()?, total.trim().parse().ok()))
}

/// The hex part of a GitHub `digest` (`sha256:<hex>`); other algorithms are not verified.
pub fn parse_digest(digest: &str) -> Option<String> {
    let hex = digest.trim().strip_prefix("sha256:")?;
    (hex.len() == 64 && hex.chars().all(|c| c.is_ascii_hexdigit()))
        .then(|| hex.to_ascii_lowercase())
}

/// An error and its causes on one line (reqwest's own message alone is terse).
pub(crate) fn chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut cur = e.source();
    while let Some(s) = cur {
        let text = s.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        cur = s.source();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::HeaderValue;

    #[test]
    fn backoff_doubles_and_caps() {
        let p = RetryPolicy {
            attempts: 5,
            base_delay: Duration::from_millis(100),
            max_delay: Duration::from_millis(350),
        };
        let got: Vec<u128> = (1..=5).map(|i| p.delay(i).as_millis()).collect();
        assert_eq!(got, vec![100, 200, 350, 350, 350]);
        assert_eq!(p.delay(100), Duration::from_millis(350));
    }

    #[test]
    fn link_header() {
        let cases: &[(&str, Option<&str>)] = &[
            (
                r#"<https://a/x?page=2>; rel="next", <https://a/x?page=5>; rel="last""#,
                Some("https://a/x?page=2"),
            ),
            (
                r#"<https://a/x?page=1>; rel="prev", <https://a/x?page=3>; rel="next""#,
                Some("https://a/x?page=3"),
            ),
            (r#"<https://a/x?page=1>; rel="first""#, None),
            ("garbage", None),
        ];
        for (h, want) in cases {
            assert_eq!(parse_next_link(h).as_deref(), *want, "{h}");
        }
    }

    #[test]
    fn content_range_and_digest() {
        assert_eq!(
            parse_content_range("bytes 100-199/200"),
            Some((100, Some(200)))
        );
        assert_eq!(parse_content_range("bytes 5-9/*"), Some((5, None)));
        assert_eq!(parse_content_range("items 1-2/3"), None);
        let hex = "AB".repeat(32);
        assert_eq!(
            parse_digest(&format!("sha256:{hex}")),
            Some("ab".repeat(32))
        );
        assert_eq!(parse_digest("sha1:abcd"), None);
        assert_eq!(parse_digest("sha256:xyz"), None);
    }

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    #[test]
    fn failure_classification() {
        let now = 1_000_000;
        let e = classify_failure(
            403,
            &headers(&[
                ("x-ratelimit-remaining", "0"),
                ("x-ratelimit-reset", "1000090"),
            ]),
            r#"{"message":"API rate limit exceeded"}"#,
            "u",
            "listing runs",
            "o/r",
            now,
        );
        assert!(
            matches!(e, ArtifactError::RateLimited { wait_secs: 90, .. }),
            "{e}"
        );
        assert!(e.to_string().contains("1970-01-12T13:48:10Z"), "{e}");
        let e = classify_failure(
            429,
            &headers(&[("retry-after", "7")]),
            "",
            "u",
            "w",
            "o/r",
            now,
        );
        assert!(
            matches!(e, ArtifactError::RateLimited { wait_secs: 7, .. }),
            "{e}"
        );
        let e = classify_failure(
            403,
            &HeaderMap::new(),
            r#"{"message":"You must have the actions scope to download artifacts."}"#,
            "u",
            "w",
            "o/r",
            now,
        );
        assert!(
            matches!(e, ArtifactError::Unauthorized { .. })
                && e.to_string().contains("actions scope"),
            "{e}"
        );
        let e = classify_failure(404, &HeaderMap::new(), "", "u", "w", "o/r", now);
        assert!(matches!(e, ArtifactError::NotFound { .. }));
        let e = classify_failure(502, &HeaderMap::new(), "bad gateway", "u", "w", "o/r", now);
        assert!(
            matches!(e, ArtifactError::Http { status: 502, .. })
                && e.to_string().contains("bad gateway")
        );
        assert!(is_transient(503) && !is_transient(404) && !is_transient(429));
    }
}
