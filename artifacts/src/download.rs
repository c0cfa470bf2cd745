//! Resumable, hashed downloads into a file. Each attempt runs its request and body reads on a
//! worker thread that hands chunks over a bounded channel; the caller writes and hashes them and
//! polls the cancel flag, so neither a stalled server nor a lost buffer can block it. Read buffers
//! circulate through a free list that never blocks: a buffer that does not come back is replaced.

use std::fs::OpenOptions;
use std::io::{Read, Write};
use std::path::Path;
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::time::Instant;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use reqwest::Url;
use reqwest::header::{HeaderMap, HeaderName, IF_MODIFIED_SINCE, IF_NONE_MATCH, RANGE};
use sha2::{Digest, Sha256};

use crate::error::{ArtifactError, Result};
use crate::hasher::{BackgroundHasher, FreeList, hash_existing};
use crate::http::{
    Halt, Http, Requester, chain, classify_failure, content_length, content_range, host_of,
    is_transient, network, now_epoch,
};
use crate::space;

/// What a finished download produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Downloaded {
    /// Size of the complete file.
    pub size: u64,
    /// Lowercase hex SHA-256 of the complete file.
    pub sha256: String,
    /// Bytes received over the network by this call (less than `size` after a resume).
    pub transferred: u64,
    /// The server's `ETag` for the content, if it sent one.
    pub etag: Option<String>,
    /// The server's `Last-Modified` for the content, if it sent one.
    pub last_modified: Option<String>,
}

/// A conditional request's validators (from an earlier download of the same URL).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Validators {
    pub etag: Option<String>,
    pub last_modified: Option<String>,
}

/// The outcome of a conditional download.
#[derive(Debug)]
pub(crate) enum Got {
    Fresh(Downloaded),
    /// `304 Not Modified`: what the caller has is current; nothing was written.
    NotModified,
}

/// Opens the partial-download file for appending.
pub(crate) type OpenPart = fn(&Path) -> std::io::Result<Box<dyn Write + Send>>;

pub(crate) fn open_append(path: &Path) -> std::io::Result<Box<dyn Write + Send>> {
    Ok(Box::new(
        OpenOptions::new().create(true).append(true).open(path)?,
    ))
}

/// An attempt that got at least this far counts as progress: the retry budget starts again.
const PROGRESS: u64 = 64 * 1024;
/// Chunks in flight between the reading thread and the caller.
const POOL: usize = crate::hasher::POOL;

/// Messages from an attempt's network thread.
enum Msg {
    Head {
        status: u16,
        headers: HeaderMap,
        url: Url,
    },
    /// The body of a response that is not content (an error page).
    Text(String),
    Chunk(Vec<u8>, usize),
    End,
    Fail(String),
}

/// Where a download stands between attempts.
struct Progress {
    have: u64,
    transferred: u64,
    hasher: BackgroundHasher,
    quiet_since: Instant,
    validators: Validators,
}

/// How an attempt ended, when it did not fail for good.
enum Step {
    Done,
    NotModified,
    Retry(String),
}

impl Http {
    /// Downloads `url` into `part`, resuming from whatever `part` already holds, hashing as it
    /// goes. On a digest mismatch or a write failure `part` is deleted. With `validators`, a fresh
    /// (not resumed) request is conditional and may answer [`Got::NotModified`].
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn download(
        &self,
        url: &Url,
        accept: &str,
        part: &Path,
        what: &str,
        repo: &str,
        expected_sha256: Option<&str>,
        validators: Option<&Validators>,
    ) -> Result<Got> {
        let free = FreeList::default();
        let mut initial = Sha256::new();
        let have = hash_existing(part, &mut initial)?;
        if have > 0 {
            tracing::info!("resuming {what} from byte {have}");
        }
        let mut p = Progress {
            have,
            transferred: 0,
            hasher: BackgroundHasher::new(initial, free.clone()),
            quiet_since: Instant::now(),
            validators: Validators::default(),
        };
        let bar = self.progress_bar(what);
        let mut failures = 0u32;
        let mut last_error = String::new();
        loop {
            self.check_cancel().inspect_err(|_| bar.abandon())?;
            if failures >= self.retry.attempts {
                bar.abandon();
                return Err(network(
                    url,
                    what,
                    format!(
                        "gave up after {failures} attempts in a row without progress: {last_error}"
                    ),
                ));
            }
            if failures > 0 {
                self.pause(self.retry.delay(failures))
                    .inspect_err(|_| bar.abandon())?;
            }
            let before = p.transferred;
            let cond = validators.filter(|_| p.have == 0);
            match self.attempt(url, accept, part, what, repo, &mut p, &bar, &free, cond) {
                Ok(Step::Done) => break,
                Ok(Step::NotModified) => {
                    bar.finish_and_clear();
                    return Ok(Got::NotModified);
                }
                Ok(Step::Retry(msg)) => last_error = msg,
                Err(e) => {
                    bar.abandon();
                    return Err(e);
                }
            }
            tracing::warn!(
                "{what}: interrupted ({last_error}); will resume from byte {}",
                p.have
            );
            failures = if p.transferred >= before + PROGRESS {
                0
            } else {
                failures + 1
            };
        }
        bar.finish_and_clear();
        let sha256 = base16ct::lower::encode_string(&p.hasher.finish().finalize());
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
        Ok(Got::Fresh(Downloaded {
            size: p.have,
            sha256,
            transferred: p.transferred,
            etag: p.validators.etag,
            last_modified: p.validators.last_modified,
        }))
    }

    /// Starts one request on a network thread; its messages arrive on the returned channel.
    fn start(
        &self,
        url: &Url,
        accept: &str,
        extra: Vec<(HeaderName, String)>,
        free: &FreeList,
    ) -> Receiver<Msg> {
        let (tx, rx) = sync_channel(POOL);
        let (req, url, accept, free) = (
            self.req.clone(),
            url.clone(),
            accept.to_string(),
            free.clone(),
        );
        let spawned = std::thread::Builder::new()
            .name("harness-download".into())
            .spawn(move || fetch_thread(&req, &url, &accept, &extra, &free, &tx));
        if let Err(e) = spawned {
            tracing::warn!("cannot start a download thread: {e}");
        }
        rx
    }

    /// The next message of an attempt, or why none came: silence for this connection's allowance
    /// is a retry (`Ok(None)`); silence past the stall allowance, or Ctrl-C, is an error.
    fn next(&self, rx: &Receiver<Msg>, url: &Url, what: &str, p: &Progress) -> Result<Option<Msg>> {
        match self.wait(rx, self.allowance(p.quiet_since)) {
            Ok(msg) => Ok(Some(msg)),
            Err(Halt::Cancelled) => Err(ArtifactError::Cancelled),
            Err(Halt::Silent) => match self.stalled(url, what, p.quiet_since) {
                Some(e) => Err(e),
                None => Ok(None),
            },
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn attempt(
        &self,
        url: &Url,
        accept: &str,
        part: &Path,
        what: &str,
        repo: &str,
        p: &mut Progress,
        bar: &ProgressBar,
        free: &FreeList,
        cond: Option<&Validators>,
    ) -> Result<Step> {
        let mut extra = Vec::new();
        if p.have > 0 {
            extra.push((RANGE, format!("bytes={}-", p.have)));
        }
        if let Some(v) = cond {
            extra.extend(v.etag.clone().map(|e| (IF_NONE_MATCH, e)));
            extra.extend(v.last_modified.clone().map(|m| (IF_MODIFIED_SINCE, m)));
        }
        let rx = self.start(url, accept, extra, free);
        let silence = || format!("no response within {} s", self.read_timeout.as_secs_f64());
        let (status, headers, at) = match self.next(&rx, url, what, p)? {
            None => return Ok(Step::Retry(silence())),
            Some(Msg::Head {
                status,
                headers,
                url,
            }) => (status, headers, url),
            Some(Msg::Fail(msg)) => return Ok(Step::Retry(msg)),
            Some(_) => return Ok(Step::Retry("no response head".into())),
        };
        let expected_total = match status {
            304 if cond.is_some() => return Ok(Step::NotModified),
            206 if p.have > 0 => match content_range(&headers) {
                Some((start, total)) if start == p.have => total,
                _ => {
                    // The server resumed from somewhere else: start over rather than guess.
                    restart(part, p)?;
                    return Ok(Step::Retry("inconsistent Content-Range".into()));
                }
            },
            200 => {
                if p.have > 0 {
                    tracing::info!(
                        "{what}: server ignored the Range request, downloading from the start"
                    );
                    restart(part, p)?;
                }
                content_length(&headers)
            }
            416 if p.have > 0 => {
                restart(part, p)?;
                return Ok(Step::Retry("range not satisfiable".into()));
            }
            _ => {
                let body = match self.next(&rx, url, what, p)? {
                    Some(Msg::Text(t)) => t,
                    _ => String::new(),
                };
                let err = classify_failure(
                    status,
                    &headers,
                    &body,
                    url.as_str(),
                    what,
                    repo,
                    now_epoch(),
                );
                if is_transient(status) {
                    tracing::warn!("{err}; retrying");
                    return Ok(Step::Retry(err.to_string()));
                }
                return Err(err);
            }
        };
        p.validators = Validators {
            etag: header_text(&headers, "etag"),
            last_modified: header_text(&headers, "last-modified"),
        };
        if let Some(total) = expected_total {
            bar.set_length(total);
        }
        bar.set_position(p.have);
        self.body(&rx, &at, part, what, p, bar, expected_total)
    }

    /// Writes and hashes the body's chunks until it ends, fails or falls silent.
    #[allow(clippy::too_many_arguments)]
    fn body(
        &self,
        rx: &Receiver<Msg>,
        at: &Url,
        part: &Path,
        what: &str,
        p: &mut Progress,
        bar: &ProgressBar,
        expected_total: Option<u64>,
    ) -> Result<Step> {
        let silence = format!("no data within {} s", self.read_timeout.as_secs_f64());
        let mut file =
            (self.open_part)(part).map_err(|e| self.write_failed(part, what, expected_total, e))?;
        loop {
            let msg = match self.next(rx, at, what, p)? {
                None => return Ok(Step::Retry(format!("{silence} from {}", host_of(at)))),
                Some(msg) => msg,
            };
            match msg {
                Msg::Chunk(buf, n) => {
                    if let Err(e) = file.write_all(&buf[..n]) {
                        drop(file);
                        return Err(self.write_failed(part, what, expected_total, e));
                    }
                    p.hasher.feed(buf, n);
                    p.have += n as u64;
                    p.transferred += n as u64;
                    p.quiet_since = Instant::now();
                    bar.set_position(p.have);
                }
                Msg::End if expected_total.is_none_or(|t| t == p.have) => {
                    file.flush()
                        .map_err(|e| self.write_failed(part, what, expected_total, e))?;
                    return Ok(Step::Done);
                }
                Msg::End => {
                    return Ok(Step::Retry(format!(
                        "connection closed at byte {} of {}",
                        p.have,
                        expected_total.unwrap_or(0)
                    )));
                }
                Msg::Fail(msg) => return Ok(Step::Retry(msg)),
                Msg::Head { .. } | Msg::Text(_) => {
                    return Ok(Step::Retry("unexpected message".into()));
                }
            }
        }
    }

    /// A write into the download file failed: the partial file goes (a full disk would otherwise
    /// make every later fetch fail too), and a full disk says how much room is needed where.
    fn write_failed(
        &self,
        part: &Path,
        what: &str,
        total: Option<u64>,
        e: std::io::Error,
    ) -> ArtifactError {
        let _ = std::fs::remove_file(part);
        if space::is_full(&e) {
            let dir = part.parent().unwrap_or(part).to_path_buf();
            return ArtifactError::NoSpace {
                what: format!("downloading {what}"),
                available: space::available(&dir),
                dir,
                needed: total,
            };
        }
        ArtifactError::io("cannot write download file (it was deleted)", part, e)
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

fn header_text(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
}

/// The network side of one attempt: request, head, then the body in chunks. Ends quietly when
/// the receiver is gone (the caller gave up on this attempt).
fn fetch_thread(
    req: &Requester,
    url: &Url,
    accept: &str,
    extra: &[(HeaderName, String)],
    free: &FreeList,
    tx: &SyncSender<Msg>,
) {
    let (mut resp, at) = match req.send_from(url, accept, extra) {
        Ok(r) => r,
        Err(msg) => {
            let _ = tx.send(Msg::Fail(msg));
            return;
        }
    };
    let status = resp.status().as_u16();
    let head = Msg::Head {
        status,
        headers: resp.headers().clone(),
        url: at,
    };
    if tx.send(head).is_err() {
        return;
    }
    if !matches!(status, 200 | 206) {
        let _ = tx.send(Msg::Text(resp.text().unwrap_or_default()));
        return;
    }
    loop {
        let mut buf = free.take();
        let msg = match resp.read(&mut buf) {
            Ok(0) => Msg::End,
            Ok(n) => Msg::Chunk(buf, n),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => Msg::Fail(chain(&e)),
        };
        let last = !matches!(msg, Msg::Chunk(..));
        if tx.send(msg).is_err() || last {
            return;
        }
    }
}

fn restart(part: &Path, p: &mut Progress) -> Result<()> {
    std::fs::File::create(part)
        .map_err(|e| ArtifactError::io("cannot truncate download file", part, e))?;
    p.hasher.reset();
    p.have = 0;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::{RetryPolicy, Timing};
    use std::time::Duration;
    use testsupport::faulty::FaultyServer;

    /// A file that reports ENOSPC once it holds 300 000 bytes, like a nearly full disk.
    fn nearly_full(path: &Path) -> std::io::Result<Box<dyn Write + Send>> {
        struct Full(std::fs::File, u64);
        impl Write for Full {
            fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
                let room = 300_000u64.saturating_sub(self.1);
                if room == 0 {
                    return Err(std::io::Error::from_raw_os_error(libc::ENOSPC));
                }
                let n = self.0.write(&buf[..buf.len().min(room as usize)])?;
                self.1 += n as u64;
                Ok(n)
            }
            fn flush(&mut self) -> std::io::Result<()> {
                self.0.flush()
            }
        }
        let file = OpenOptions::new().create(true).append(true).open(path)?;
        let len = file.metadata()?.len();
        Ok(Box::new(Full(file, len)))
    }

    #[test]
    fn a_full_disk_deletes_the_partial_download_and_says_what_is_needed() {
        let server = FaultyServer::start();
        server.put("/f", vec![7u8; 1 << 20]);
        let dir = tempfile::tempdir().unwrap();
        let part = dir.path().join("f.part");
        let timing = Timing {
            read_timeout: Duration::from_secs(5),
            stall_timeout: Duration::from_secs(5),
        };
        let mut http = Http::new(
            "http://127.0.0.1:1",
            None,
            RetryPolicy::default(),
            None,
            false,
            timing,
        )
        .unwrap();
        http.open_part = nearly_full;
        let url = Url::parse(&server.url("/f")).unwrap();
        let err = http
            .download(&url, "*/*", &part, "the file", "", None, None)
            .unwrap_err();
        let text = err.to_string();
        assert!(matches!(err, ArtifactError::NoSpace { .. }), "{text}");
        assert!(
            text.contains("1.0 MiB") && text.contains(&dir.path().display().to_string()),
            "{text}"
        );
        assert!(!part.exists(), "the partial download is gone");
        assert_eq!(server.hits().len(), 1, "a full disk is not retried");
    }
}
