//! A local stand-in for the GitHub REST subset harness uses, plus zip fixture makers.
//!
//! Two plain HTTP/1.1 listeners on 127.0.0.1: the API (runs, artifacts, jobs, releases) and a
//! "storage" host on another port that serves the bytes. Artifact and asset downloads answer 302
//! from the API to storage, like GitHub's blob URLs; storage refuses (400) and logs any request
//! that carries an `Authorization` header, so tests can prove the token never left the API.
//! Failure injection covers 5xx, rate limits, dropped bodies and pagination quirks, and every
//! request is logged so tests can assert what was (not) transferred.
//!
//! ```no_run
//! use testsupport::github::{GithubStandIn, RunSpec, linux_guest_build_zip};
//! let gh = GithubStandIn::start();
//! gh.add_run(RunSpec::new(1001));
//! gh.add_artifact_zip(1001, "Build-x64-Debug", linux_guest_build_zip("echo ok\n", &[]));
//! // point harness at gh.url() with token gh.token()
//! ```

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use sha2::{Digest, Sha256};

/// The repository runs and releases belong to unless said otherwise.
pub const DEFAULT_REPO: &str = "microsoft/ebpf-for-windows";
/// The token the stand-in accepts for artifact downloads.
pub const TOKEN: &str = "standin-token-0123456789";

/// A workflow run to serve.
#[derive(Debug, Clone)]
pub struct RunSpec {
    pub id: u64,
    pub repo: String,
    pub workflow: String,
    pub head_sha: String,
    pub branch: String,
    pub event: String,
    pub status: String,
    pub conclusion: Option<String>,
    pub created_at: String,
    /// `(job name, conclusion)`.
    pub jobs: Vec<(String, String)>,
}

impl RunSpec {
    /// A completed, successful scheduled `cicd.yml` run on `main` whose Debug build job succeeded.
    /// Higher ids get later `created_at` times.
    pub fn new(id: u64) -> RunSpec {
        RunSpec {
            id,
            repo: DEFAULT_REPO.into(),
            workflow: "cicd.yml".into(),
            head_sha: format!("{:040x}", id.wrapping_mul(0x9e37_79b9_7f4a_7c15)),
            branch: "main".into(),
            event: "schedule".into(),
            status: "completed".into(),
            conclusion: Some("success".into()),
            created_at: rfc3339(1_790_000_000 + (id % 10_000_000) * 60),
            jobs: vec![
                ("regular / build (Debug)".into(), "success".into()),
                ("regular / build (Release)".into(), "success".into()),
            ],
        }
    }

    /// The run concluded `failure` and its Debug build job concluded `job` (e.g. `failure`).
    pub fn failed_with_build(mut self, job: &str) -> RunSpec {
        self.conclusion = Some("failure".into());
        self.jobs[0].1 = job.into();
        self
    }

    /// Sets the repository.
    pub fn repo(mut self, repo: &str) -> RunSpec {
        self.repo = repo.into();
        self
    }

    /// Sets the event (`schedule`, `push`, …).
    pub fn event(mut self, event: &str) -> RunSpec {
        self.event = event.into();
        self
    }

    /// Sets the branch.
    pub fn branch(mut self, branch: &str) -> RunSpec {
        self.branch = branch.into();
        self
    }
}

/// Which listener saw a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Listener {
    Api,
    Storage,
}

/// One logged request and what was answered.
#[derive(Debug, Clone)]
pub struct Request {
    pub listener: Listener,
    pub method: String,
    /// Path with query.
    pub target: String,
    /// Header names lowercased.
    pub headers: Vec<(String, String)>,
    pub status: u16,
    /// Body bytes actually written.
    pub body_bytes: u64,
}

impl Request {
    /// A header's value (name case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.as_str())
    }
}

#[derive(Clone)]
struct Blob {
    bytes: Arc<Vec<u8>>,
}

struct ArtifactRec {
    id: u64,
    run_id: u64,
    name: String,
    blob: Blob,
    expired: bool,
    digest: Option<String>,
}

struct AssetRec {
    id: u64,
    name: String,
    blob: Blob,
    digest: Option<String>,
}

struct ReleaseRec {
    id: u64,
    repo: String,
    tag: String,
    assets: Vec<AssetRec>,
}

#[derive(Default)]
struct Faults {
    /// `(path substring, status, remaining)`.
    fail: Vec<(String, u16, u32)>,
    /// `(status, remaining, reset epoch)`.
    rate_limit: Option<(u16, u32, u64)>,
    /// `(body bytes to send before dropping, remaining)`.
    drop_after: Option<(u64, u32)>,
    /// `(body bytes, silence, remaining)`.
    stall_after: Option<(u64, Duration, u32)>,
    /// `(bytes per burst, pause)` for every storage download.
    throttle: Option<(u64, Duration)>,
    ignore_name_filter: bool,
    max_per_page: Option<usize>,
}

#[derive(Default)]
struct State {
    runs: Vec<RunSpec>,
    artifacts: Vec<ArtifactRec>,
    releases: Vec<ReleaseRec>,
    next_id: u64,
    faults: Faults,
    log: Vec<Request>,
}

/// The running stand-in; stops its listeners on drop.
pub struct GithubStandIn {
    state: Arc<Mutex<State>>,
    api: SocketAddr,
    storage: SocketAddr,
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
}

impl GithubStandIn {
    /// Starts both listeners on 127.0.0.1 with free ports.
    pub fn start() -> GithubStandIn {
        let state = Arc::new(Mutex::new(State {
            next_id: 5000,
            ..State::default()
        }));
        let stop = Arc::new(AtomicBool::new(false));
        let api_l = TcpListener::bind("127.0.0.1:0").expect("bind API listener");
        let storage_l = TcpListener::bind("127.0.0.1:0").expect("bind storage listener");
        let api = api_l.local_addr().unwrap();
        let storage = storage_l.local_addr().unwrap();
        let ctx = Arc::new(Ctx {
            state: state.clone(),
            api,
            storage,
        });
        let threads = [(api_l, Listener::Api), (storage_l, Listener::Storage)]
            .into_iter()
            .map(|(l, which)| {
                let (ctx, stop) = (ctx.clone(), stop.clone());
                std::thread::spawn(move || accept_loop(l, which, ctx, stop))
            })
            .collect();
        GithubStandIn {
            state,
            api,
            storage,
            stop,
            threads,
        }
    }

    /// API base URL (what harness's `api_url` should be).
    pub fn url(&self) -> String {
        format!("http://{}", self.api)
    }

    /// Storage base URL (where downloads are redirected).
    pub fn storage_url(&self) -> String {
        format!("http://{}", self.storage)
    }

    /// The token artifact downloads require.
    pub fn token(&self) -> &'static str {
        TOKEN
    }

    fn with<R>(&self, f: impl FnOnce(&mut State) -> R) -> R {
        f(&mut self.state.lock().unwrap())
    }

    /// Adds a workflow run.
    pub fn add_run(&self, run: RunSpec) {
        self.with(|s| s.runs.push(run));
    }

    /// Adds an artifact to run `run_id` (which must exist), with the correct `digest`.
    /// Returns the artifact id.
    pub fn add_artifact_zip(&self, run_id: u64, name: &str, bytes: Vec<u8>) -> u64 {
        let digest = Some(format!("sha256:{}", sha256_hex(&bytes)));
        self.with(|s| {
            assert!(
                s.runs.iter().any(|r| r.id == run_id),
                "add_run({run_id}) first"
            );
            s.next_id += 1;
            let id = s.next_id;
            let blob = Blob {
                bytes: Arc::new(bytes),
            };
            s.artifacts.push(ArtifactRec {
                id,
                run_id,
                name: name.into(),
                blob,
                expired: false,
                digest,
            });
            id
        })
    }

    /// Adds `count` unrelated artifacts to a run (efW runs have 30+), to push the wanted one to a later page.
    pub fn add_filler_artifacts(&self, run_id: u64, count: usize) {
        for i in 0..count {
            self.add_artifact_zip(
                run_id,
                &format!("Test-Logs-{i}"),
                zip_of(&[("log.txt", b"x")]),
            );
        }
    }

    /// Marks an artifact expired (listed with `expired: true`, download answers 410).
    pub fn expire_artifact(&self, id: u64) {
        self.with(|s| {
            s.artifacts
                .iter_mut()
                .filter(|a| a.id == id)
                .for_each(|a| a.expired = true)
        });
    }

    /// Replaces an artifact's published digest (`None` removes it, like older API versions).
    pub fn set_artifact_digest(&self, id: u64, digest: Option<&str>) {
        self.with(|s| {
            s.artifacts
                .iter_mut()
                .filter(|a| a.id == id)
                .for_each(|a| a.digest = digest.map(str::to_string))
        });
    }

    /// Adds a release of [`DEFAULT_REPO`] with one asset. Returns the asset id.
    pub fn add_release(&self, tag: &str, asset_name: &str, bytes: Vec<u8>) -> u64 {
        self.add_release_in(DEFAULT_REPO, tag, asset_name, bytes)
    }

    /// Adds a release (or an asset to an existing one) in `repo`. Returns the asset id.
    pub fn add_release_in(&self, repo: &str, tag: &str, asset_name: &str, bytes: Vec<u8>) -> u64 {
        let digest = Some(format!("sha256:{}", sha256_hex(&bytes)));
        self.with(|s| {
            s.next_id += 1;
            let asset = AssetRec {
                id: s.next_id,
                name: asset_name.into(),
                blob: Blob {
                    bytes: Arc::new(bytes),
                },
                digest,
            };
            let id = asset.id;
            if let Some(r) = s
                .releases
                .iter_mut()
                .find(|r| r.repo == repo && r.tag == tag)
            {
                r.assets.push(asset);
            } else {
                s.next_id += 1;
                let rid = s.next_id;
                s.releases.push(ReleaseRec {
                    id: rid,
                    repo: repo.into(),
                    tag: tag.into(),
                    assets: vec![asset],
                });
            }
            id
        })
    }

    /// The next `times` requests whose path contains `path_contains` get `status` (e.g. 502).
    pub fn fail_next(&self, path_contains: &str, status: u16, times: u32) {
        self.with(|s| s.faults.fail.push((path_contains.into(), status, times)));
    }

    /// The next `times` API requests are rate limited: 403 (with `x-ratelimit-*`) or 429 (with
    /// `retry-after`), resetting at `reset_epoch`.
    pub fn rate_limit_next(&self, status: u16, times: u32, reset_epoch: u64) {
        self.with(|s| s.faults.rate_limit = Some((status, times, reset_epoch)));
    }

    /// The next `times` storage downloads announce the full length but drop the connection after
    /// `bytes` body bytes.
    pub fn drop_downloads_after(&self, bytes: u64, times: u32) {
        self.with(|s| s.faults.drop_after = Some((bytes, times)));
    }

    /// The next `times` storage downloads send `bytes` body bytes, then go silent for `silence`
    /// (a stalled connection), then close.
    pub fn stall_downloads_after(&self, bytes: u64, silence: Duration, times: u32) {
        self.with(|s| s.faults.stall_after = Some((bytes, silence, times)));
    }

    /// Every storage download sends `bytes` at a time with `pause` between bursts (a slow link);
    /// `None` turns it off.
    pub fn throttle_downloads(&self, pace: Option<(u64, Duration)>) {
        self.with(|s| s.faults.throttle = pace);
    }

    /// Ignore the artifacts `name` filter (older GitHub Enterprise), forcing clients to paginate.
    pub fn ignore_name_filter(&self, on: bool) {
        self.with(|s| s.faults.ignore_name_filter = on);
    }

    /// Caps `per_page` (GitHub: 100), to exercise pagination with few items.
    pub fn max_per_page(&self, n: usize) {
        self.with(|s| s.faults.max_per_page = Some(n.max(1)));
    }

    /// Every request so far.
    pub fn requests(&self) -> Vec<Request> {
        self.with(|s| s.log.clone())
    }

    /// Forgets the request log.
    pub fn clear_requests(&self) {
        self.with(|s| s.log.clear());
    }

    /// Body bytes served by the storage listener (i.e. build bytes transferred).
    pub fn storage_bytes(&self) -> u64 {
        self.with(|s| {
            s.log
                .iter()
                .filter(|r| r.listener == Listener::Storage)
                .map(|r| r.body_bytes)
                .sum()
        })
    }
}

impl Drop for GithubStandIn {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        for addr in [self.api, self.storage] {
            let _ = TcpStream::connect_timeout(&addr, Duration::from_secs(1));
        }
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

struct Ctx {
    state: Arc<Mutex<State>>,
    api: SocketAddr,
    storage: SocketAddr,
}

fn accept_loop(listener: TcpListener, which: Listener, ctx: Arc<Ctx>, stop: Arc<AtomicBool>) {
    for conn in listener.incoming() {
        if stop.load(Ordering::SeqCst) {
            return;
        }
        let Ok(conn) = conn else { continue };
        let ctx = ctx.clone();
        std::thread::spawn(move || {
            let _ = conn.set_read_timeout(Some(Duration::from_secs(10)));
            let _ = conn.set_write_timeout(Some(Duration::from_secs(30)));
            let _ = conn.set_nodelay(true);
            let _ = serve(conn, which, &ctx);
        });
    }
}

struct Parsed {
    method: String,
    target: String,
    path: String,
    query: HashMap<String, String>,
    headers: Vec<(String, String)>,
}

fn read_request(conn: &TcpStream) -> std::io::Result<Option<Parsed>> {
    let mut reader = BufReader::new(conn);
    let mut line = String::new();
    if reader.read_line(&mut line)? == 0 {
        return Ok(None);
    }
    let mut parts = line.split_whitespace();
    let (Some(method), Some(target)) = (parts.next(), parts.next()) else {
        return Ok(None);
    };
    let mut headers = Vec::new();
    for _ in 0..100 {
        let mut h = String::new();
        if reader.read_line(&mut h)? == 0 || h.trim().is_empty() {
            break;
        }
        if let Some((k, v)) = h.split_once(':') {
            headers.push((k.trim().to_ascii_lowercase(), v.trim().to_string()));
        }
    }
    let (path, q) = target.split_once('?').unwrap_or((target, ""));
    let query = q
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (pct_decode(k), pct_decode(v)))
        .collect();
    Ok(Some(Parsed {
        method: method.into(),
        target: target.into(),
        path: pct_decode(path),
        query,
        headers,
    }))
}

fn pct_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < b.len() => {
                match u8::from_str_radix(std::str::from_utf8(&b[i + 1..i + 3]).unwrap_or("zz"), 16)
                {
                    Ok(v) => {
                        out.push(v);
                        i += 2;
                    }
                    Err(_) => out.push(b'%'),
                }
            }
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// What to send back.
struct Reply {
    status: u16,
    headers: Vec<(String, String)>,
    body: Body,
}

/// How a blob body misbehaves.
#[derive(Clone, Copy, Default)]
struct Pace {
    /// Close the connection after this many body bytes.
    cut: Option<u64>,
    /// After this many body bytes, go silent this long, then close.
    stall: Option<(u64, Duration)>,
    /// Send this many bytes, then pause this long, and so on.
    throttle: Option<(u64, Duration)>,
}

enum Body {
    Bytes(Vec<u8>),
    /// Slice `[start, end)` of a blob, sent at `Pace`.
    Blob(Blob, u64, u64, Pace),
}

fn json(status: u16, v: serde_json::Value) -> Reply {
    Reply {
        status,
        headers: vec![(
            "content-type".into(),
            "application/json; charset=utf-8".into(),
        )],
        body: Body::Bytes(serde_json::to_vec(&v).unwrap()),
    }
}

fn message(status: u16, text: &str) -> Reply {
    json(
        status,
        serde_json::json!({ "message": text, "documentation_url": "https://docs.github.com/rest" }),
    )
}

fn redirect(to: String) -> Reply {
    Reply {
        status: 302,
        headers: vec![("location".into(), to)],
        body: Body::Bytes(Vec::new()),
    }
}

fn serve(mut conn: TcpStream, which: Listener, ctx: &Ctx) -> std::io::Result<()> {
    let Some(req) = read_request(&conn)? else {
        return Ok(());
    };
    // Log before answering, and count body bytes before handing them to the socket, so a client
    // that has read a response always finds it (and its bytes) in the log.
    let (reply, index) = {
        let mut s = ctx.state.lock().unwrap();
        let reply = route(&mut s, which, ctx, &req);
        s.log.push(Request {
            listener: which,
            method: req.method,
            target: req.target,
            headers: req.headers,
            status: reply.status,
            body_bytes: 0,
        });
        (reply, s.log.len() - 1)
    };
    write_reply(&mut conn, reply, |n| {
        if let Some(r) = ctx.state.lock().unwrap().log.get_mut(index) {
            r.body_bytes += n;
        }
    });
    let _ = conn.shutdown(std::net::Shutdown::Both);
    Ok(())
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        206 => "Partial Content",
        302 => "Found",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        410 => "Gone",
        416 => "Range Not Satisfiable",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        _ => "Status",
    }
}

fn write_reply(conn: &mut TcpStream, reply: Reply, count: impl Fn(u64)) {
    let len = match &reply.body {
        Body::Bytes(b) => b.len() as u64,
        Body::Blob(_, start, end, _) => end - start,
    };
    let mut head = format!(
        "HTTP/1.1 {} {}\r\ncontent-length: {len}\r\nconnection: close\r\n",
        reply.status,
        reason(reply.status)
    );
    for (k, v) in &reply.headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    if conn.write_all(head.as_bytes()).is_err() {
        return;
    }
    match reply.body {
        Body::Bytes(b) => {
            count(b.len() as u64);
            let _ = conn.write_all(&b);
        }
        Body::Blob(blob, start, end, pace) => {
            let mut stop = pace.cut.map_or(end, |c| (start + c).min(end));
            if let Some((after, _)) = pace.stall {
                stop = stop.min(start + after);
            }
            let step = pace.throttle.map_or(1 << 20, |t| t.0.max(1));
            let mut pos = start;
            while pos < stop {
                let next = (pos + step).min(stop);
                count(next - pos);
                if conn
                    .write_all(&blob.bytes[pos as usize..next as usize])
                    .is_err()
                {
                    break;
                }
                pos = next;
                if let Some((_, pause)) = pace.throttle {
                    let _ = conn.flush();
                    std::thread::sleep(pause);
                }
            }
            if let Some((_, silence)) = pace.stall {
                let _ = conn.flush();
                std::thread::sleep(silence);
            }
        }
    }
    let _ = conn.flush();
}

fn header<'a>(req: &'a Parsed, name: &str) -> Option<&'a str> {
    req.headers
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

fn route(s: &mut State, which: Listener, ctx: &Ctx, req: &Parsed) -> Reply {
    if req.method != "GET" {
        return message(404, "Not Found");
    }
    if let Some(f) = s
        .faults
        .fail
        .iter_mut()
        .find(|f| f.2 > 0 && req.target.contains(&f.0))
    {
        f.2 -= 1;
        return message(f.1, "Server Error");
    }
    match which {
        Listener::Storage => storage(s, req),
        Listener::Api => {
            if let Some((status, left, reset)) = s.faults.rate_limit.as_mut().filter(|r| r.1 > 0) {
                *left -= 1;
                let mut r = message(*status, "API rate limit exceeded for 127.0.0.1.");
                r.headers.push(("x-ratelimit-limit".into(), "60".into()));
                r.headers.push(("x-ratelimit-remaining".into(), "0".into()));
                r.headers
                    .push(("x-ratelimit-reset".into(), reset.to_string()));
                if *status == 429 {
                    r.headers.push(("retry-after".into(), "30".into()));
                }
                return r;
            }
            api(s, ctx, req)
        }
    }
}

fn authorized(req: &Parsed) -> Result<(), Reply> {
    match header(req, "authorization") {
        None => Err(message(
            403,
            "You must have the actions scope to download artifacts.",
        )),
        Some(v) if v == format!("Bearer {TOKEN}") || v == format!("token {TOKEN}") => Ok(()),
        Some(_) => Err(message(401, "Bad credentials")),
    }
}

fn api(s: &mut State, ctx: &Ctx, req: &Parsed) -> Reply {
    let api_base = format!("http://{}", ctx.api);
    let storage_base = format!("http://{}", ctx.storage);
    let segs: Vec<&str> = req.path.trim_matches('/').split('/').collect();
    match segs.as_slice() {
        ["repos", o, r, "actions", "workflows", wf, "runs"] => {
            let repo = format!("{o}/{r}");
            let q = &req.query;
            let runs: Vec<serde_json::Value> = {
                let mut v: Vec<&RunSpec> = s
                    .runs
                    .iter()
                    .filter(|x| x.repo == repo && x.workflow == *wf)
                    .filter(|x| q.get("branch").is_none_or(|b| *b == x.branch))
                    .filter(|x| q.get("event").is_none_or(|e| *e == x.event))
                    .filter(|x| {
                        q.get("status")
                            .is_none_or(|st| *st == x.status || Some(st) == x.conclusion.as_ref())
                    })
                    .collect();
                v.sort_by(|a, b| b.created_at.cmp(&a.created_at).then(b.id.cmp(&a.id)));
                v.into_iter().map(|x| run_json(x, &api_base)).collect()
            };
            if !s.runs.iter().any(|x| x.repo == repo && x.workflow == *wf) {
                return message(404, "Not Found");
            }
            paged(s, &api_base, req, "workflow_runs", runs)
        }
        ["repos", o, r, "actions", "runs", id] => {
            let repo = format!("{o}/{r}");
            match s
                .runs
                .iter()
                .find(|x| x.repo == repo && id.parse() == Ok(x.id))
            {
                Some(run) => json(200, run_json(run, &api_base)),
                None => message(404, "Not Found"),
            }
        }
        ["repos", o, r, "actions", "runs", id, "artifacts"] => {
            let repo = format!("{o}/{r}");
            let Some(run) = s
                .runs
                .iter()
                .find(|x| x.repo == repo && id.parse() == Ok(x.id))
            else {
                return message(404, "Not Found");
            };
            let run_id = run.id;
            let name = req
                .query
                .get("name")
                .filter(|_| !s.faults.ignore_name_filter);
            let items: Vec<serde_json::Value> = s
                .artifacts
                .iter()
                .filter(|a| a.run_id == run_id && name.is_none_or(|n| *n == a.name))
                .map(|a| {
                    serde_json::json!({
                        "id": a.id, "name": a.name, "size_in_bytes": a.blob.bytes.len(),
                        "url": format!("{api_base}/repos/{repo}/actions/artifacts/{}", a.id),
                        "archive_download_url": format!("{api_base}/repos/{repo}/actions/artifacts/{}/zip", a.id),
                        "expired": a.expired, "digest": a.digest,
                        "created_at": run.created_at, "expires_at": "2099-01-01T00:00:00Z",
                        "workflow_run": { "id": run.id, "head_branch": run.branch, "head_sha": run.head_sha },
                    })
                })
                .collect();
            paged(s, &api_base, req, "artifacts", items)
        }
        ["repos", o, r, "actions", "runs", id, "jobs"] => {
            let repo = format!("{o}/{r}");
            let Some(run) = s
                .runs
                .iter()
                .find(|x| x.repo == repo && id.parse() == Ok(x.id))
            else {
                return message(404, "Not Found");
            };
            let jobs: Vec<serde_json::Value> = run
                .jobs
                .iter()
                .enumerate()
                .map(|(i, (name, c))| {
                    serde_json::json!({ "id": run.id * 100 + i as u64, "run_id": run.id, "name": name,
                        "status": "completed", "conclusion": c })
                })
                .collect();
            paged(s, &api_base, req, "jobs", jobs)
        }
        ["repos", o, r, "actions", "artifacts", id, "zip"] => {
            if let Err(reply) = authorized(req) {
                return reply;
            }
            let repo = format!("{o}/{r}");
            let found = s
                .artifacts
                .iter()
                .find(|a| id.parse() == Ok(a.id))
                .filter(|a| {
                    s.runs
                        .iter()
                        .any(|run| run.id == a.run_id && run.repo == repo)
                });
            match found {
                None => message(404, "Not Found"),
                Some(a) if a.expired => message(410, "Artifact has expired"),
                Some(a) => redirect(format!("{storage_base}/blob/a{}?sig=signed&se=1m", a.id)),
            }
        }
        ["repos", o, r, "releases", "tags", tag] => {
            let repo = format!("{o}/{r}");
            match s.releases.iter().find(|x| x.repo == repo && x.tag == *tag) {
                None => message(404, "Not Found"),
                Some(rel) => json(200, release_json(rel, &api_base)),
            }
        }
        ["repos", _o, _r, "releases", "assets", id] => {
            let Some(asset) = s
                .releases
                .iter()
                .flat_map(|r| &r.assets)
                .find(|a| id.parse() == Ok(a.id))
            else {
                return message(404, "Not Found");
            };
            if header(req, "accept") == Some("application/octet-stream") {
                redirect(format!("{storage_base}/blob/s{}?sig=signed", asset.id))
            } else {
                json(
                    200,
                    serde_json::json!({ "id": asset.id, "name": asset.name }),
                )
            }
        }
        [o, r, "releases", "download", tag, name] => {
            let repo = format!("{o}/{r}");
            let asset = s
                .releases
                .iter()
                .filter(|x| x.repo == repo && x.tag == *tag)
                .flat_map(|x| &x.assets)
                .find(|a| a.name == *name);
            match asset {
                Some(a) => redirect(format!("{storage_base}/blob/s{}?sig=public", a.id)),
                None => message(404, "Not Found"),
            }
        }
        _ => message(404, "Not Found"),
    }
}

fn run_json(r: &RunSpec, api_base: &str) -> serde_json::Value {
    serde_json::json!({
        "id": r.id, "name": "CI/CD", "head_branch": r.branch, "head_sha": r.head_sha, "event": r.event,
        "status": r.status, "conclusion": r.conclusion, "created_at": r.created_at,
        "path": format!(".github/workflows/{}", r.workflow),
        "url": format!("{api_base}/repos/{}/actions/runs/{}", r.repo, r.id),
    })
}

fn release_json(rel: &ReleaseRec, api_base: &str) -> serde_json::Value {
    let assets: Vec<serde_json::Value> = rel
        .assets
        .iter()
        .map(|a| {
            serde_json::json!({
                "id": a.id, "name": a.name, "size": a.blob.bytes.len(), "digest": a.digest,
                "url": format!("{api_base}/repos/{}/releases/assets/{}", rel.repo, a.id),
                "browser_download_url": format!("{api_base}/{}/releases/download/{}/{}", rel.repo, rel.tag, a.name),
            })
        })
        .collect();
    serde_json::json!({ "id": rel.id, "tag_name": rel.tag, "name": rel.tag, "created_at": "2026-08-01T00:00:00Z",
        "assets": assets })
}

/// One page of `items` under `key`, with `total_count` and a GitHub-style `Link` header.
fn paged(
    s: &State,
    api_base: &str,
    req: &Parsed,
    key: &str,
    items: Vec<serde_json::Value>,
) -> Reply {
    let cap = s.faults.max_per_page.unwrap_or(100);
    let per_page = req
        .query
        .get("per_page")
        .and_then(|v| v.parse().ok())
        .unwrap_or(30usize)
        .clamp(1, cap);
    let page = req
        .query
        .get("page")
        .and_then(|v| v.parse().ok())
        .unwrap_or(1usize)
        .max(1);
    let total = items.len();
    let last = total.div_ceil(per_page).max(1);
    let slice: Vec<serde_json::Value> = items
        .into_iter()
        .skip((page - 1) * per_page)
        .take(per_page)
        .collect();
    let mut reply = json(200, serde_json::json!({ "total_count": total, key: slice }));
    let link_to = |p: usize| {
        let mut q: Vec<String> = req
            .query
            .iter()
            .filter(|(k, _)| *k != "page")
            .map(|(k, v)| format!("{k}={}", pct_encode(v)))
            .collect();
        q.sort();
        q.push(format!("page={p}"));
        format!("{api_base}{}?{}", req.path, q.join("&"))
    };
    let mut links = Vec::new();
    if page < last {
        links.push(format!("<{}>; rel=\"next\"", link_to(page + 1)));
        links.push(format!("<{}>; rel=\"last\"", link_to(last)));
    }
    if page > 1 {
        links.push(format!("<{}>; rel=\"prev\"", link_to(page - 1)));
    }
    if !links.is_empty() {
        reply.headers.push(("link".into(), links.join(", ")));
    }
    reply
}

fn pct_encode(v: &str) -> String {
    v.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

fn storage(s: &mut State, req: &Parsed) -> Reply {
    if header(req, "authorization").is_some() {
        // Real blob storage rejects the GitHub token; the log keeps the evidence for tests.
        return message(400, "Authorization header must not be sent to storage");
    }
    let key = req.path.trim_start_matches("/blob/");
    let blob = match key.split_at_checked(1) {
        Some(("a", id)) => s
            .artifacts
            .iter()
            .find(|a| id.parse() == Ok(a.id))
            .map(|a| a.blob.clone()),
        Some(("s", id)) => s
            .releases
            .iter()
            .flat_map(|r| &r.assets)
            .find(|a| id.parse() == Ok(a.id))
            .map(|a| a.blob.clone()),
        _ => None,
    };
    let Some(blob) = blob else {
        return message(404, "BlobNotFound");
    };
    let len = blob.bytes.len() as u64;
    let mut pace = Pace {
        throttle: s.faults.throttle,
        ..Pace::default()
    };
    if let Some((bytes, left)) = s.faults.drop_after.as_mut().filter(|d| d.1 > 0) {
        *left -= 1;
        pace.cut = Some(*bytes);
    }
    if let Some((bytes, silence, left)) = s.faults.stall_after.as_mut().filter(|d| d.2 > 0) {
        *left -= 1;
        pace.stall = Some((*bytes, *silence));
    }
    let mut headers = vec![
        ("content-type".to_string(), "application/zip".to_string()),
        ("accept-ranges".to_string(), "bytes".to_string()),
    ];
    match header(req, "range").and_then(|r| parse_range(r, len)) {
        Some(Ok((start, end))) => {
            headers.push((
                "content-range".into(),
                format!("bytes {start}-{}/{len}", end - 1),
            ));
            Reply {
                status: 206,
                headers,
                body: Body::Blob(blob, start, end, pace),
            }
        }
        Some(Err(())) => {
            headers.push(("content-range".into(), format!("bytes */{len}")));
            Reply {
                status: 416,
                headers,
                body: Body::Bytes(Vec::new()),
            }
        }
        None => Reply {
            status: 200,
            headers,
            body: Body::Blob(blob, 0, len, pace),
        },
    }
}

/// `bytes=a-` / `bytes=a-b` → half-open `[start, end)`; `Err` when unsatisfiable.
fn parse_range(v: &str, len: u64) -> Option<Result<(u64, u64), ()>> {
    let (a, b) = v.trim().strip_prefix("bytes=")?.split_once('-')?;
    let start: u64 = a.trim().parse().ok()?;
    let end = if b.trim().is_empty() {
        len
    } else {
        b.trim().parse::<u64>().ok()?.saturating_add(1).min(len)
    };
    Some(if start >= len || start >= end {
        Err(())
    } else {
        Ok((start, end))
    })
}

/// `YYYY-MM-DDTHH:MM:SSZ` for a Unix time (days-from-civil inverse).
pub fn rfc3339(epoch: u64) -> String {
    let (days, secs) = (epoch / 86_400, epoch % 86_400);
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        secs / 3600,
        secs / 60 % 60,
        secs % 60
    )
}

/// Lowercase hex SHA-256.
pub fn sha256_hex(bytes: &[u8]) -> String {
    base16ct::lower::encode_string(&Sha256::digest(bytes))
}

// ---------------------------------------------------------------------------------------------
// Zip fixtures.

/// A deflated zip of `(name, bytes)` entries; names ending in `/` become folders.
pub fn zip_of(entries: &[(&str, &[u8])]) -> Vec<u8> {
    zip_with(entries, zip::CompressionMethod::Deflated)
}

/// Like [`zip_of`], with every entry stored (as efW's outer artifact zip holds the inner one).
pub fn zip_stored(entries: &[(&str, &[u8])]) -> Vec<u8> {
    zip_with(entries, zip::CompressionMethod::Stored)
}

fn zip_with(entries: &[(&str, &[u8])], method: zip::CompressionMethod) -> Vec<u8> {
    let mut w = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let opts = zip::write::SimpleFileOptions::default()
        .compression_method(method)
        .large_file(false);
    for (name, data) in entries {
        if name.ends_with('/') {
            w.add_directory(*name, opts).unwrap();
        } else {
            w.start_file(*name, opts.large_file(data.len() as u64 >= 0xFFFF_FFFF))
                .unwrap();
            w.write_all(data).unwrap();
        }
    }
    w.finish().unwrap().into_inner()
}

/// The root files of a small but real-shaped efW build (`Debug\` folder contents).
pub fn efw_build_files() -> Vec<(String, Vec<u8>)> {
    let mut files: Vec<(String, Vec<u8>)> = [
        ("setup-ebpf.ps1", "param ([switch]$Uninstall)\r\nImport-Module $PSScriptRoot\\install_ebpf.psm1\r\nexit 0\r\n"),
        ("install_ebpf.psm1", "param([Parameter(Mandatory=$True)] [string] $WorkingDirectory)\r\nfunction Install-eBPFComponents {}\r\n"),
        ("common.psm1", "function Get-PSExec {}\r\n"),
        ("test_execution.json", "{\"VMMap\":{}}"),
    ]
    .iter()
    .map(|(n, c)| (n.to_string(), c.as_bytes().to_vec()))
    .collect();
    files.push(("ebpf-for-windows.msi".into(), pseudo_random(64 * 1024, 1)));
    files.push(("ucrtbased.dll".into(), pseudo_random(32 * 1024, 2)));
    files.push(("sample_ebpf_ext.sys".into(), pseudo_random(16 * 1024, 3)));
    files.push((
        "bin/export_program_info.exe".into(),
        pseudo_random(8 * 1024, 4),
    ));
    files
}

/// An efW CI artifact: an outer zip holding `build-<cfg>.zip`, which holds `<cfg>/…`.
pub fn efw_artifact_zip(configuration: &str, files: &[(String, Vec<u8>)]) -> Vec<u8> {
    let named: Vec<(String, &[u8])> = files
        .iter()
        .map(|(n, d)| (format!("{configuration}/{n}"), d.as_slice()))
        .collect();
    let refs: Vec<(&str, &[u8])> = named.iter().map(|(n, d)| (n.as_str(), *d)).collect();
    let inner = zip_of(&refs);
    zip_stored(&[(&format!("build-{configuration}.zip"), &inner)])
}

/// A release asset zip: one top folder whose name has spaces (`Build Debug x64`).
pub fn release_zip(top_folder: &str, files: &[(String, Vec<u8>)]) -> Vec<u8> {
    let named: Vec<(String, &[u8])> = files
        .iter()
        .map(|(n, d)| (format!("{top_folder}/{n}"), d.as_slice()))
        .collect();
    let refs: Vec<(&str, &[u8])> = named.iter().map(|(n, d)| (n.as_str(), *d)).collect();
    zip_of(&refs)
}

/// A Linux test-guest build: `setup.sh` (installed with `sh setup.sh`) plus `extra` files, at the root.
pub fn linux_guest_build_zip(setup_sh: &str, extra: &[(&str, &[u8])]) -> Vec<u8> {
    let mut entries: Vec<(&str, &[u8])> = vec![("setup.sh", setup_sh.as_bytes())];
    entries.extend_from_slice(extra);
    zip_of(&entries)
}

/// Deterministic incompressible bytes.
pub fn pseudo_random(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(len);
    out
}

/// One entry of a hand-made (possibly hostile) zip: stored, with full control over the header.
#[derive(Debug, Clone)]
pub struct RawEntry {
    pub name: Vec<u8>,
    pub data: Vec<u8>,
    /// Unix mode (e.g. `0o120777` for a symlink); sets "made by Unix".
    pub unix_mode: Option<u32>,
}

impl RawEntry {
    /// A plain file.
    pub fn file(name: &str, data: &[u8]) -> RawEntry {
        RawEntry {
            name: name.as_bytes().to_vec(),
            data: data.to_vec(),
            unix_mode: None,
        }
    }
}

/// Writes a stored zip byte by byte, so names and attributes the zip crate's writer refuses
/// (duplicates, `..`, symlinks) can be produced.
pub fn raw_zip(entries: &[RawEntry]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut central = Vec::new();
    let p16 = |v: &mut Vec<u8>, x: u16| v.extend_from_slice(&x.to_le_bytes());
    let p32 = |v: &mut Vec<u8>, x: u32| v.extend_from_slice(&x.to_le_bytes());
    for e in entries {
        let offset = out.len() as u32;
        let crc = crc32(&e.data);
        let size = e.data.len() as u32;
        p32(&mut out, 0x0403_4b50);
        for x in [20u16, 0, 0, 0, 0x21] {
            p16(&mut out, x);
        }
        for x in [crc, size, size] {
            p32(&mut out, x);
        }
        p16(&mut out, e.name.len() as u16);
        p16(&mut out, 0);
        out.extend_from_slice(&e.name);
        out.extend_from_slice(&e.data);
        p32(&mut central, 0x0201_4b50);
        p16(
            &mut central,
            if e.unix_mode.is_some() {
                (3 << 8) | 20
            } else {
                20
            },
        );
        for x in [20u16, 0, 0, 0, 0x21] {
            p16(&mut central, x);
        }
        for x in [crc, size, size] {
            p32(&mut central, x);
        }
        for x in [e.name.len() as u16, 0, 0, 0, 0] {
            p16(&mut central, x);
        }
        p32(&mut central, e.unix_mode.map_or(0, |m| m << 16));
        p32(&mut central, offset);
        central.extend_from_slice(&e.name);
    }
    let cd_offset = out.len() as u32;
    let cd_size = central.len() as u32;
    out.extend_from_slice(&central);
    p32(&mut out, 0x0605_4b50);
    for x in [0u16, 0, entries.len() as u16, entries.len() as u16] {
        p16(&mut out, x);
    }
    p32(&mut out, cd_size);
    p32(&mut out, cd_offset);
    p16(&mut out, 0);
    out
}

fn crc32(data: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in data {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = (crc >> 1) ^ (0xEDB8_8320 & (crc & 1).wrapping_neg());
        }
    }
    !crc
}

/// Crafted bad archives. Each is otherwise efW-shaped (has `setup-ebpf.ps1`), so only the hostile
/// part can be the reason for rejection.
pub mod hostile {
    use super::{RawEntry, raw_zip, zip_of};

    fn with(bad: RawEntry) -> Vec<u8> {
        raw_zip(&[RawEntry::file("setup-ebpf.ps1", b"exit 0"), bad])
    }

    /// An entry `../escaped.txt`.
    pub fn parent_traversal() -> Vec<u8> {
        with(RawEntry::file("../escaped.txt", b"pwned"))
    }
    /// An entry with an absolute path.
    pub fn absolute_path() -> Vec<u8> {
        with(RawEntry::file("/tmp/harness-absolute-escape.txt", b"pwned"))
    }
    /// An entry with a drive-letter path.
    pub fn drive_letter() -> Vec<u8> {
        with(RawEntry::file("C:\\Windows\\evil.dll", b"pwned"))
    }
    /// An entry `..\..\escaped.txt` (Windows separators).
    pub fn backslash_traversal() -> Vec<u8> {
        with(RawEntry::file("..\\..\\escaped.txt", b"pwned"))
    }
    /// A symlink entry pointing outside.
    pub fn symlink() -> Vec<u8> {
        with(RawEntry {
            name: b"link".to_vec(),
            data: b"/etc".to_vec(),
            unix_mode: Some(0o120_777),
        })
    }
    /// Two entries with the same name.
    pub fn duplicate_names() -> Vec<u8> {
        raw_zip(&[
            RawEntry::file("setup-ebpf.ps1", b"exit 0"),
            RawEntry::file("setup-ebpf.ps1", b"exit 1"),
        ])
    }
    /// Names equal but for case (one file on Windows).
    pub fn case_duplicates() -> Vec<u8> {
        raw_zip(&[
            RawEntry::file("setup-ebpf.ps1", b"exit 0"),
            RawEntry::file("Setup-eBPF.ps1", b"exit 1"),
        ])
    }
    /// `mib` MiB of zeros deflated to a few KiB.
    pub fn bomb(mib: usize) -> Vec<u8> {
        let zeros = vec![0u8; mib << 20];
        zip_of(&[("setup-ebpf.ps1", b"exit 0"), ("zeros.bin", &zeros)])
    }
    /// The first `keep` fraction of a good zip (central directory gone).
    pub fn truncated(good: &[u8], keep: f64) -> Vec<u8> {
        good[..(good.len() as f64 * keep) as usize].to_vec()
    }
    /// A zip whose second entry's data has a flipped byte (CRC mismatch).
    pub fn corrupt() -> Vec<u8> {
        let data = super::pseudo_random(64 * 1024, 9);
        let mut z = raw_zip(&[
            RawEntry::file("setup-ebpf.ps1", b"exit 0"),
            RawEntry::file("big.bin", &data),
        ]);
        let first = 30 + "setup-ebpf.ps1".len() + 6;
        let at = first + 30 + "big.bin".len() + 30_000;
        z[at] ^= 0xff;
        z
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    #[test]
    fn helpers() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(1_700_000_000), "2023-11-14T22:13:20Z");
        assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
        assert_eq!(parse_range("bytes=5-", 10), Some(Ok((5, 10))));
        assert_eq!(parse_range("bytes=2-3", 10), Some(Ok((2, 4))));
        assert_eq!(parse_range("bytes=10-", 10), Some(Err(())));
        assert_eq!(pct_decode("a%2Fb+c"), "a/b c");
        let z = raw_zip(&[RawEntry::file("a.txt", b"hello")]);
        let mut a = zip::ZipArchive::new(std::io::Cursor::new(z)).unwrap();
        let mut s = String::new();
        a.by_index(0).unwrap().read_to_string(&mut s).unwrap();
        assert_eq!(s, "hello");
    }
}
