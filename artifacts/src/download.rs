//! Resumable, hashed downloads into a file. Each attempt runs its request and body reads on a
//! worker thread that hands chunks over a bounded channel; the caller writes and hashes them and
//! polls the cancel flag, so neither a stalled server nor a lost buffer can block it. Read buffers
//! circulate through a free list that never blocks: a buffer that does not come back is replaced.

use std::fs::OpenOptions;
use std::io::{Read, Write};
use std::path::Path;
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::time::Instant;

use reqwest::Url;
use reqwest::header::{HeaderMap, HeaderName, IF_MODIFIED_SINCE, IF_NONE_MATCH, RANGE};
use sha2::{Digest, Sha256};

use crate::error::{ArtifactError, Result};
use crate::event::FetchEvent;
use crate::hasher::{BackgroundHasher, FreeList, hash_existing};
use crate::http::{
    Halt, Http, Requester, chain, content_length, content_range, host_of, is_transient, network,
    response_error,
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

/// One download: where from, into which file, and how messages name it.
pub(crate) struct Target<'a> {
    /// Where the bytes are (redirects are followed).
    pub url: &'a Url,
    /// The `Accept` header (release assets through the API want `application/octet-stream`).
    pub accept: &'a str,
    /// The partial file: a download resumes from what it already holds.
    pub part: &'a Path,
    /// How messages and [`FetchEvent::Started`] name the download.
    pub what: &'a str,
    /// `owner/name`, named when GitHub refuses the token ("" for a plain URL).
    pub repo: &'a str,
}

/// Where a download stands between attempts.
struct Progress {
    have: u64,
    transferred: u64,
    hasher: BackgroundHasher,
    quiet_since: Instant,
    validators: Validators,
    /// [`FetchEvent::Started`] was sent.
    started: bool,
    /// Read buffers, shared by the network threads and the hasher.
    free: FreeList,
}

impl Progress {
    /// Picks up what `part` already holds (hashing it), so the download resumes there.
    fn resume(t: &Target) -> Result<Progress> {
        let free = FreeList::default();
        let mut initial = Sha256::new();
        let have = hash_existing(t.part, &mut initial)?;
        if have > 0 {
            tracing::info!("resuming {} from byte {have}", t.what);
        }
        Ok(Progress {
            have,
            transferred: 0,
            hasher: BackgroundHasher::new(initial, free.clone()),
            quiet_since: Instant::now(),
            validators: Validators::default(),
            started: false,
            free,
        })
    }
}

/// How an attempt ended, when it did not fail for good.
enum Step {
    Done,
    NotModified,
    Retry(String),
}

impl Http {
    /// Downloads `t.url` into `t.part`, resuming from whatever `t.part` already holds, hashing as
    /// it goes. On a digest mismatch or a write failure the part file is deleted. With
    /// `validators`, a fresh (not resumed) request is conditional and may answer
    /// [`Got::NotModified`]. Tells its progress as [`FetchEvent`]s, ending with `Finished`,
    /// `Unchanged` or `Failed`.
    pub(crate) fn download(
        &self,
        t: &Target,
        expected_sha256: Option<&str>,
        validators: Option<&Validators>,
    ) -> Result<Got> {
        let got =
            Progress::resume(t).and_then(|mut p| match self.attempts(t, &mut p, validators)? {
                Step::NotModified => Ok(Got::NotModified),
                _ => verified(t, p, expected_sha256).map(Got::Fresh),
            });
        self.events.emit(match &got {
            Ok(Got::Fresh(d)) => FetchEvent::Finished {
                size: d.size,
                transferred: d.transferred,
            },
            Ok(Got::NotModified) => FetchEvent::Unchanged,
            Err(_) => FetchEvent::Failed,
        });
        got
    }

    /// Runs attempts until one completes the file or answers `304`. Only attempts in a row that
    /// get nowhere use up the retry budget.
    fn attempts(
        &self,
        t: &Target,
        p: &mut Progress,
        validators: Option<&Validators>,
    ) -> Result<Step> {
        let mut failures = 0u32;
        let mut last_error = String::new();
        loop {
            self.check_cancel()?;
            if failures >= self.retry.attempts {
                return Err(network(
                    t.url,
                    t.what,
                    format!(
                        "gave up after {failures} attempts in a row without progress: {last_error}"
                    ),
                ));
            }
            if failures > 0 {
                self.pause(self.retry.delay(failures))?;
            }
            let before = p.transferred;
            let cond = validators.filter(|_| p.have == 0);
            match self.attempt(t, p, cond)? {
                Step::Retry(msg) => last_error = msg,
                done => return Ok(done),
            }
            tracing::warn!(
                "{}: interrupted ({last_error}); will resume from byte {}",
                t.what,
                p.have
            );
            self.events.emit(FetchEvent::Retrying {
                reason: last_error.clone(),
                from: p.have,
            });
            failures = if p.transferred >= before + PROGRESS {
                0
            } else {
                failures + 1
            };
        }
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

    /// One request and, when it answers with content, its body.
    fn attempt(&self, t: &Target, p: &mut Progress, cond: Option<&Validators>) -> Result<Step> {
        let mut extra = Vec::new();
        if p.have > 0 {
            extra.push((RANGE, format!("bytes={}-", p.have)));
        }
        if let Some(v) = cond {
            extra.extend(v.etag.clone().map(|e| (IF_NONE_MATCH, e)));
            extra.extend(v.last_modified.clone().map(|m| (IF_MODIFIED_SINCE, m)));
        }
        let rx = self.start(t.url, t.accept, extra, &p.free);
        let silence = || format!("no response within {} s", self.read_timeout.as_secs_f64());
        let (status, headers, at) = match self.next(&rx, t.url, t.what, p)? {
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
                    restart(t.part, p)?;
                    return Ok(Step::Retry("inconsistent Content-Range".into()));
                }
            },
            200 => {
                if p.have > 0 {
                    tracing::info!(
                        "{}: server ignored the Range request, downloading from the start",
                        t.what
                    );
                    restart(t.part, p)?;
                }
                content_length(&headers)
            }
            416 if p.have > 0 => {
                restart(t.part, p)?;
                return Ok(Step::Retry("range not satisfiable".into()));
            }
            _ => return self.refused(&rx, t, p, status, &headers),
        };
        p.validators = Validators {
            etag: header_text(&headers, "etag"),
            last_modified: header_text(&headers, "last-modified"),
        };
        self.events.emit(if p.started {
            FetchEvent::Resumed {
                from: p.have,
                total: expected_total,
            }
        } else {
            p.started = true;
            FetchEvent::Started {
                what: t.what.to_string(),
                total: expected_total,
                from: p.have,
            }
        });
        self.body(&rx, &at, t, p, expected_total)
    }

    /// A response without content: its error, retried when the status is transient.
    fn refused(
        &self,
        rx: &Receiver<Msg>,
        t: &Target,
        p: &Progress,
        status: u16,
        headers: &HeaderMap,
    ) -> Result<Step> {
        let body = match self.next(rx, t.url, t.what, p)? {
            Some(Msg::Text(text)) => text,
            _ => String::new(),
        };
        let err = response_error(status, headers, &body, t.url, t.what, t.repo);
        if is_transient(status) {
            tracing::warn!("{err}; retrying");
            return Ok(Step::Retry(err.to_string()));
        }
        Err(err)
    }

    /// Writes and hashes the body's chunks until it ends, fails or falls silent.
    fn body(
        &self,
        rx: &Receiver<Msg>,
        at: &Url,
        t: &Target,
        p: &mut Progress,
        expected_total: Option<u64>,
    ) -> Result<Step> {
        let silence = format!("no data within {} s", self.read_timeout.as_secs_f64());
        let failed = |e| self.write_failed(t.part, t.what, expected_total, e);
        let mut file = (self.open_part)(t.part).map_err(failed)?;
        loop {
            let msg = match self.next(rx, at, t.what, p)? {
                None => return Ok(Step::Retry(format!("{silence} from {}", host_of(at)))),
                Some(msg) => msg,
            };
            match msg {
                Msg::Chunk(buf, n) => {
                    if let Err(e) = file.write_all(&buf[..n]) {
                        drop(file);
                        return Err(failed(e));
                    }
                    p.hasher.feed(buf, n);
                    p.have += n as u64;
                    p.transferred += n as u64;
                    p.quiet_since = Instant::now();
                    self.events.emit(FetchEvent::Progress {
                        done: p.have,
                        total: expected_total,
                    });
                }
                Msg::End if expected_total.is_none_or(|t| t == p.have) => {
                    file.flush().map_err(failed)?;
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

/// The finished file's digest, checked against `expected_sha256` (a mismatch deletes the file).
fn verified(t: &Target, p: Progress, expected_sha256: Option<&str>) -> Result<Downloaded> {
    let sha256 = base16ct::lower::encode_string(&p.hasher.finish().finalize());
    if let Some(expected) = expected_sha256
        && !expected.eq_ignore_ascii_case(&sha256)
    {
        let _ = std::fs::remove_file(t.part);
        return Err(ArtifactError::DigestMismatch {
            what: t.what.to_string(),
            expected: expected.to_ascii_lowercase(),
            actual: sha256,
        });
    }
    Ok(Downloaded {
        size: p.have,
        sha256,
        transferred: p.transferred,
        etag: p.validators.etag,
        last_modified: p.validators.last_modified,
    })
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
    use crate::event::FetchSink;
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
            FetchSink::default(),
            timing,
        )
        .unwrap();
        http.open_part = nearly_full;
        let url = Url::parse(&server.url("/f")).unwrap();
        let target = Target {
            url: &url,
            accept: "*/*",
            part: &part,
            what: "the file",
            repo: "",
        };
        let err = http.download(&target, None, None).unwrap_err();
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
