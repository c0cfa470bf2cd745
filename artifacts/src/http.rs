//! HTTP with the rules GitHub downloads need: the token only ever goes to the API origin (redirects
//! are followed by hand), bounded retries with backoff, rate-limit reporting, and resumable,
//! cancellable waits bounded by a stall allowance. Downloads are in `download.rs`.

use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use reqwest::Url;
use reqwest::blocking::{Client, Response};
use reqwest::header::{ACCEPT, CONTENT_LENGTH, CONTENT_RANGE, HeaderMap, HeaderName, LOCATION};
use serde::de::DeserializeOwned;

use crate::error::{ArtifactError, Result};
use crate::event::FetchSink;
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

/// Connect timeout.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(15);
/// Default silence allowed on one connection (waiting for headers, or between two reads) before
/// it is dropped and the request retried (downloads resume).
pub(crate) const READ_TIMEOUT: Duration = Duration::from_secs(20);
/// Default total silence allowed, across retries, before a request or download fails as stalled.
pub(crate) const STALL_TIMEOUT: Duration = Duration::from_secs(60);
/// How often a wait on the network looks at the cancel flag.
pub(crate) const POLL: Duration = Duration::from_millis(50);
const MAX_REDIRECTS: usize = 5;

/// The part of the client that network threads take with them.
#[derive(Clone)]
pub(crate) struct Requester {
    client: Client,
    api: Url,
    token: Option<Secret>,
}

/// A blocking client bound to one API origin and (optionally) one token. Every network wait
/// runs on a worker thread while the caller polls the cancel flag, so Ctrl-C is honoured within
/// [`POLL`], and silence is bounded per connection (`read_timeout`) and in total
/// (`stall_timeout`).
pub(crate) struct Http {
    pub(crate) req: Requester,
    pub(crate) retry: RetryPolicy,
    cancel: Option<hostproc::Cancel>,
    /// Where downloads tell their progress.
    pub(crate) events: FetchSink,
    pub(crate) read_timeout: Duration,
    pub(crate) stall_timeout: Duration,
    /// Opens the partial-download file for appending (tests inject a failing writer here).
    pub(crate) open_part: crate::download::OpenPart,
}

/// Why a wait on the network ended without an answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Halt {
    Cancelled,
    Silent,
}

/// The timing knobs of [`Http`].
#[derive(Debug, Clone, Copy)]
pub(crate) struct Timing {
    pub read_timeout: Duration,
    pub stall_timeout: Duration,
}

impl Http {
    pub(crate) fn new(
        api_url: &str,
        token: Option<Secret>,
        retry: RetryPolicy,
        cancel: Option<hostproc::Cancel>,
        events: FetchSink,
        timing: Timing,
    ) -> Result<Http> {
        let api = Url::parse(api_url.trim_end_matches('/')).map_err(|e| ArtifactError::BadSource {
            spec: api_url.to_string(),
            why: format!("the GitHub API URL is not a URL ({e}); set [github] api_url or HARNESS_GITHUB_API_URL"),
        })?;
        let per_read = timing.read_timeout.min(timing.stall_timeout).max(POLL);
        let client = Client::builder()
            .connect_timeout(CONNECT_TIMEOUT.min(per_read))
            // Only frees an abandoned worker thread; the caller gives up sooner, see `wait`.
            .timeout(per_read + Duration::from_secs(1))
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("harness-artifacts/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| ArtifactError::Network {
                url: api_url.to_string(),
                what: "setting up the HTTP client".into(),
                message: chain(&e),
            })?;
        Ok(Http {
            req: Requester { client, api, token },
            retry,
            cancel,
            events,
            read_timeout: per_read,
            stall_timeout: timing.stall_timeout.max(POLL),
            open_part: crate::download::open_append,
        })
    }

    pub(crate) fn has_token(&self) -> bool {
        self.req.token.is_some()
    }

    /// `<api>/<path>` (the API URL may carry a prefix such as GitHub Enterprise's `/api/v3`).
    pub(crate) fn api_url(&self, path: &str) -> Url {
        let base = self.req.api.as_str().trim_end_matches('/');
        Url::parse(&format!("{base}/{}", path.trim_start_matches('/')))
            .expect("API URL joined with a path")
    }

    pub(crate) fn cancelled(&self) -> bool {
        self.cancel
            .as_ref()
            .is_some_and(hostproc::Cancel::is_cancelled)
    }

    pub(crate) fn check_cancel(&self) -> Result<()> {
        if self.cancelled() {
            Err(ArtifactError::Cancelled)
        } else {
            Ok(())
        }
    }

    /// Sleeps `d` in short slices so Ctrl-C is honoured promptly.
    pub(crate) fn pause(&self, d: Duration) -> Result<()> {
        let end = Instant::now() + d;
        while Instant::now() < end {
            self.check_cancel()?;
            std::thread::sleep(Duration::from_millis(20).min(end - Instant::now()));
        }
        self.check_cancel()
    }

    /// The next message from a network thread, waiting at most `limit`, looking at the cancel
    /// flag every [`POLL`]. A thread that ended without a word counts as silence.
    pub(crate) fn wait<T>(
        &self,
        rx: &Receiver<T>,
        limit: Duration,
    ) -> std::result::Result<T, Halt> {
        let end = Instant::now() + limit;
        loop {
            if self.cancelled() {
                return Err(Halt::Cancelled);
            }
            let left = end.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(Halt::Silent);
            }
            match rx.recv_timeout(left.min(POLL)) {
                Ok(v) => return Ok(v),
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => return Err(Halt::Silent),
            }
        }
    }

    /// Runs `f` (a network call) on a worker thread and waits for it as [`Http::wait`] does.
    pub(crate) fn call<T: Send + 'static>(
        &self,
        limit: Duration,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> std::result::Result<T, Halt> {
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        std::thread::Builder::new()
            .name("harness-http".into())
            .spawn(move || {
                let _ = tx.send(f());
            })
            .map_err(|_| Halt::Silent)?;
        self.wait(&rx, limit)
    }

    /// How long the next wait may last: a connection's allowance, cut to what is left of the
    /// stall allowance counted from `quiet_since`.
    pub(crate) fn allowance(&self, quiet_since: Instant) -> Duration {
        self.read_timeout
            .min(self.stall_timeout.saturating_sub(quiet_since.elapsed()))
    }

    /// After a silent wait: [`ArtifactError::Stalled`] once the stall allowance is used up.
    pub(crate) fn stalled(
        &self,
        url: &Url,
        what: &str,
        quiet_since: Instant,
    ) -> Option<ArtifactError> {
        (quiet_since.elapsed() >= self.stall_timeout).then(|| ArtifactError::Stalled {
            host: host_of(url),
            what: what.to_string(),
            secs: quiet_since.elapsed().as_secs_f64().round() as u64,
        })
    }

    /// GET a JSON document; returns it and the `rel="next"` page, if any. 404 gives `Ok(None)`.
    pub(crate) fn get_json<T: DeserializeOwned>(
        &self,
        url: &Url,
        what: &str,
        repo: &str,
    ) -> Result<Option<(T, Option<Url>)>> {
        let mut attempt = 0;
        let quiet_since = Instant::now();
        loop {
            self.check_cancel()?;
            attempt += 1;
            let retry_left = attempt < self.retry.attempts;
            let (req, target) = (self.req.clone(), url.clone());
            let answer = self.call(self.allowance(quiet_since), move || {
                req.send(&target, ACCEPT_JSON, &[]).and_then(|resp| {
                    let status = resp.status().as_u16();
                    let headers = resp.headers().clone();
                    resp.text()
                        .map(|body| (status, headers, body))
                        .map_err(|e| chain(&e))
                })
            });
            let outcome = match answer {
                Err(Halt::Cancelled) => return Err(ArtifactError::Cancelled),
                Err(Halt::Silent) => match self.stalled(url, what, quiet_since) {
                    Some(e) => return Err(e),
                    None => Err(format!(
                        "no answer within {} s",
                        self.read_timeout.as_secs_f64()
                    )),
                },
                Ok(r) => r,
            };
            match outcome {
                Ok((status, headers, body)) if (200..300).contains(&status) => {
                    let next = next_link(&headers).and_then(|n| url.join(&n).ok());
                    let value =
                        serde_json::from_str(&body).map_err(|e| ArtifactError::Protocol {
                            url: url.to_string(),
                            what: what.to_string(),
                            why: format!("not the JSON expected ({e})"),
                        })?;
                    return Ok(Some((value, next)));
                }
                Ok((404, _, _)) => return Ok(None),
                Ok((status, headers, body)) => {
                    let err = response_error(status, &headers, &body, url, what, repo);
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
}

impl Requester {
    /// One GET, following redirects by hand: the `Authorization` header is attached only while the
    /// URL is on the API origin, so a storage host on another host or port never sees the token.
    /// Returns the response and the URL that answered.
    pub(crate) fn send_from(
        &self,
        url: &Url,
        accept: &str,
        extra: &[(HeaderName, String)],
    ) -> std::result::Result<(Response, Url), String> {
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
            for (name, value) in extra {
                req = req.header(name, value);
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
            return Ok((resp, url));
        }
        Err(format!("more than {MAX_REDIRECTS} redirects"))
    }

    fn send(
        &self,
        url: &Url,
        accept: &str,
        extra: &[(HeaderName, String)],
    ) -> std::result::Result<Response, String> {
        self.send_from(url, accept, extra).map(|(r, _)| r)
    }
}

/// `host:port` of a URL, for messages.
pub(crate) fn host_of(url: &Url) -> String {
    match (url.host_str(), url.port_or_known_default()) {
        (Some(h), Some(p)) => format!("{h}:{p}"),
        (Some(h), None) => h.to_string(),
        _ => url.to_string(),
    }
}

/// Statuses worth retrying.
pub(crate) fn is_transient(status: u16) -> bool {
    matches!(status, 408 | 500 | 502 | 503 | 504)
}

pub(crate) fn network(url: &Url, what: &str, message: String) -> ArtifactError {
    ArtifactError::Network {
        url: url.to_string(),
        what: what.to_string(),
        message,
    }
}

fn now_epoch() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// What a failed response (`status`, its headers and body) means, as the error to report.
pub(crate) fn response_error(
    status: u16,
    headers: &HeaderMap,
    body: &str,
    url: &Url,
    what: &str,
    repo: &str,
) -> ArtifactError {
    classify_failure(status, headers, body, url.as_str(), what, repo, now_epoch())
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

pub(crate) fn content_length(headers: &HeaderMap) -> Option<u64> {
    headers
        .get(CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// `(start, Some(total))` from `Content-Range: bytes start-end/total`.
pub(crate) fn content_range(headers: &HeaderMap) -> Option<(u64, Option<u64>)> {
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
