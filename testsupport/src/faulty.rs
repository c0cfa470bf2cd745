//! A fault-injecting HTTP file server on loopback, for download tests: resets in mid-body,
//! connections dropped every N bytes, stalls (before the headers or in the body), 5xx answers and
//! slow drips. It serves `GET` with `Range`, `ETag`/`Last-Modified` and conditional requests
//! (`If-None-Match`, `If-Modified-Since`), and logs every request.
//!
//! Faults are queued: each request takes the fault at the front of the queue, which stays there
//! for as many requests as it was given (`None`: for good). With an empty queue files are served
//! normally. Stalls last until the server is dropped, so a test that times out never hangs.

use std::collections::{HashMap, VecDeque};
use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How one response misbehaves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// Close the connection cleanly after this many body bytes (a dropped download).
    DropAfter(u64),
    /// Reset the connection (TCP RST) after this many body bytes.
    ResetAfter(u64),
    /// Send this many body bytes, then go silent (headers included) until the server is dropped.
    StallAfter(u64),
    /// Read the request and never answer.
    StallHeaders,
    /// Answer with this status and a short text body.
    Status(u16),
    /// Send `bytes` body bytes, pause `every`, and so on.
    Drip { bytes: u64, every: Duration },
}

/// One logged request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hit {
    pub path: String,
    /// The `Range` header, if any.
    pub range: Option<String>,
    /// `If-None-Match`, if any.
    pub if_none_match: Option<String>,
    pub status: u16,
    /// Body bytes handed to the socket.
    pub body_bytes: u64,
}

struct File {
    bytes: Arc<Vec<u8>>,
    etag: String,
    last_modified: String,
}

#[derive(Default)]
struct State {
    files: HashMap<String, File>,
    faults: VecDeque<(Fault, Option<u32>)>,
    log: Vec<Hit>,
    no_validators: bool,
    generation: u64,
}

/// The running server; stops on drop (stalled connections are released too).
pub struct FaultyServer {
    addr: SocketAddr,
    state: Arc<Mutex<State>>,
    stop: Arc<AtomicBool>,
    accept: Option<std::thread::JoinHandle<()>>,
}

impl FaultyServer {
    /// Binds a free loopback port and starts serving.
    pub fn start() -> FaultyServer {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind loopback");
        let addr = listener.local_addr().expect("local address");
        let state = Arc::new(Mutex::new(State::default()));
        let stop = Arc::new(AtomicBool::new(false));
        let (st, sp) = (state.clone(), stop.clone());
        let accept = std::thread::spawn(move || {
            for conn in listener.incoming() {
                if sp.load(Ordering::SeqCst) {
                    return;
                }
                let Ok(conn) = conn else { continue };
                let (st, sp) = (st.clone(), sp.clone());
                std::thread::spawn(move || serve(conn, &st, &sp));
            }
        });
        FaultyServer {
            addr,
            state,
            stop,
            accept: Some(accept),
        }
    }

    /// `http://127.0.0.1:<port>`.
    pub fn base(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// `host:port`, as error messages name it.
    pub fn host(&self) -> String {
        self.addr.to_string()
    }

    /// The URL of `path` (which starts with `/`).
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base())
    }

    /// Serves `bytes` at `path` (replacing what was there: a new ETag and Last-Modified).
    pub fn put(&self, path: &str, bytes: Vec<u8>) {
        let mut s = self.state.lock().unwrap();
        s.generation += 1;
        let file = File {
            etag: format!(
                "\"{}-{}\"",
                crate::github::sha256_hex(&bytes).get(..16).unwrap_or(""),
                s.generation
            ),
            last_modified: http_date(1_700_000_000 + s.generation * 60),
            bytes: Arc::new(bytes),
        };
        s.files.insert(path.to_string(), file);
    }

    /// Queues `fault` for the next `times` requests (`None`: every request from then on).
    pub fn fault(&self, fault: Fault, times: Option<u32>) {
        self.state.lock().unwrap().faults.push_back((fault, times));
    }

    /// Forgets queued faults.
    pub fn clear_faults(&self) {
        self.state.lock().unwrap().faults.clear();
    }

    /// Stop sending `ETag`/`Last-Modified` (a server that cannot revalidate).
    pub fn without_validators(&self) {
        self.state.lock().unwrap().no_validators = true;
    }

    /// Every request so far.
    pub fn hits(&self) -> Vec<Hit> {
        self.state.lock().unwrap().log.clone()
    }

    /// Body bytes sent in all.
    pub fn body_bytes(&self) -> u64 {
        self.hits().iter().map(|h| h.body_bytes).sum()
    }
}

impl Drop for FaultyServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_secs(1));
        if let Some(t) = self.accept.take() {
            let _ = t.join();
        }
    }
}

/// An IMF-fixdate (`Sun, 06 Nov 1994 08:49:37 GMT`) for a Unix time.
pub fn http_date(epoch: u64) -> String {
    let iso = crate::github::rfc3339(epoch); // YYYY-MM-DDTHH:MM:SSZ
    let month = iso[5..7].parse::<usize>().unwrap_or(1);
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    const DAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
    format!(
        "{}, {} {} {} {} GMT",
        DAYS[((epoch / 86_400) % 7) as usize],
        &iso[8..10],
        MONTHS[month.clamp(1, 12) - 1],
        &iso[0..4],
        &iso[11..19]
    )
}

struct Request {
    path: String,
    headers: Vec<(String, String)>,
}

impl Request {
    fn header(&self, name: &str) -> Option<String> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
    }
}

fn read_request(conn: &TcpStream) -> Option<Request> {
    let mut reader = BufReader::new(conn);
    let mut line = String::new();
    reader.read_line(&mut line).ok()?;
    let path = line.split_whitespace().nth(1)?.to_string();
    let mut headers = Vec::new();
    for _ in 0..100 {
        let mut h = String::new();
        if reader.read_line(&mut h).ok()? == 0 || h.trim().is_empty() {
            break;
        }
        if let Some((k, v)) = h.split_once(':') {
            headers.push((k.trim().to_ascii_lowercase(), v.trim().to_string()));
        }
    }
    Some(Request { path, headers })
}

/// Sleeps until `stop` (the server is being dropped) or `limit`, in short slices.
fn idle(stop: &AtomicBool, limit: Duration) {
    let end = Instant::now() + limit;
    while !stop.load(Ordering::SeqCst) && Instant::now() < end {
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// What the server decided to send.
struct Plan {
    status: u16,
    headers: Vec<(String, String)>,
    body: Arc<Vec<u8>>,
    start: usize,
    end: usize,
    fault: Option<Fault>,
}

fn next_fault(s: &mut State) -> Option<Fault> {
    let (fault, times) = s.faults.front_mut()?;
    let fault = *fault;
    match times {
        Some(0) => {
            s.faults.pop_front();
            return next_fault(s);
        }
        Some(n) => {
            *n -= 1;
            if *n == 0 {
                s.faults.pop_front();
            }
        }
        None => {}
    }
    Some(fault)
}

fn plan(s: &mut State, req: &Request) -> Plan {
    let fault = next_fault(s);
    let text = |status: u16, msg: &str| Plan {
        status,
        headers: Vec::new(),
        body: Arc::new(msg.as_bytes().to_vec()),
        start: 0,
        end: msg.len(),
        fault: None,
    };
    match fault {
        Some(Fault::Status(code)) => return text(code, "injected failure\n"),
        Some(Fault::StallHeaders) => {
            return Plan {
                fault,
                ..text(0, "")
            };
        }
        _ => {}
    }
    let Some(file) = s.files.get(&req.path) else {
        return text(404, "not found\n");
    };
    let len = file.bytes.len();
    let mut headers = vec![("accept-ranges".to_string(), "bytes".to_string())];
    if !s.no_validators {
        headers.push(("etag".into(), file.etag.clone()));
        headers.push(("last-modified".into(), file.last_modified.clone()));
        let fresh = req.header("if-none-match").is_some_and(|v| v == file.etag)
            || (req.header("if-none-match").is_none()
                && req
                    .header("if-modified-since")
                    .is_some_and(|v| v == file.last_modified));
        if fresh {
            return Plan {
                headers,
                ..text(304, "")
            };
        }
    }
    let mut plan = Plan {
        status: 200,
        headers,
        body: file.bytes.clone(),
        start: 0,
        end: len,
        fault,
    };
    if let Some(start) = req.header("range").and_then(|r| {
        r.strip_prefix("bytes=")?
            .strip_suffix('-')?
            .parse::<usize>()
            .ok()
    }) {
        if start >= len {
            return Plan {
                headers: vec![("content-range".into(), format!("bytes */{len}"))],
                ..text(416, "")
            };
        }
        plan.status = 206;
        plan.start = start;
        plan.headers.push((
            "content-range".into(),
            format!("bytes {start}-{}/{len}", len - 1),
        ));
    }
    plan
}

fn serve(mut conn: TcpStream, state: &Mutex<State>, stop: &AtomicBool) {
    let _ = conn.set_read_timeout(Some(Duration::from_secs(10)));
    let _ = conn.set_nodelay(true);
    let Some(req) = read_request(&conn) else {
        return;
    };
    let (plan, index) = {
        let mut s = state.lock().unwrap();
        let plan = plan(&mut s, &req);
        s.log.push(Hit {
            path: req.path.clone(),
            range: req.header("range"),
            if_none_match: req.header("if-none-match"),
            status: if plan.fault == Some(Fault::StallHeaders) {
                0
            } else {
                plan.status
            },
            body_bytes: 0,
        });
        (plan, s.log.len() - 1)
    };
    if plan.fault == Some(Fault::StallHeaders) {
        idle(stop, Duration::from_secs(3600));
        return;
    }
    let count = |n: u64| {
        if let Some(h) = state.lock().unwrap().log.get_mut(index) {
            h.body_bytes += n;
        }
    };
    send(&mut conn, &plan, stop, count);
}

fn send(conn: &mut TcpStream, plan: &Plan, stop: &AtomicBool, count: impl Fn(u64)) {
    let mut head = format!(
        "HTTP/1.1 {} X\r\ncontent-length: {}\r\nconnection: close\r\n",
        plan.status,
        plan.end - plan.start
    );
    for (k, v) in &plan.headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    if conn.write_all(head.as_bytes()).is_err() {
        return;
    }
    let (cut, step, pause) = match plan.fault {
        Some(Fault::DropAfter(n) | Fault::ResetAfter(n) | Fault::StallAfter(n)) => (
            plan.start.saturating_add(n as usize).min(plan.end),
            64 * 1024,
            None,
        ),
        Some(Fault::Drip { bytes, every }) => (plan.end, bytes.max(1) as usize, Some(every)),
        _ => (plan.end, 64 * 1024, None),
    };
    let mut pos = plan.start;
    while pos < cut && !stop.load(Ordering::SeqCst) {
        let next = (pos + step).min(cut);
        if conn.write_all(&plan.body[pos..next]).is_err() {
            return;
        }
        count((next - pos) as u64);
        pos = next;
        if let Some(p) = pause {
            let _ = conn.flush();
            idle(stop, p);
        }
    }
    let _ = conn.flush();
    match plan.fault {
        Some(Fault::StallAfter(_)) => idle(stop, Duration::from_secs(3600)),
        Some(Fault::ResetAfter(_)) => {
            // SO_LINGER 0: close() sends RST instead of FIN.
            use std::os::fd::AsRawFd;
            let linger = libc::linger {
                l_onoff: 1,
                l_linger: 0,
            };
            // SAFETY: a valid socket and a correctly sized `linger` value.
            unsafe {
                libc::setsockopt(
                    conn.as_raw_fd(),
                    libc::SOL_SOCKET,
                    libc::SO_LINGER,
                    (&linger as *const libc::linger).cast(),
                    std::mem::size_of::<libc::linger>() as libc::socklen_t,
                );
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    fn get(addr: &str, path: &str, extra: &str) -> (String, Vec<u8>) {
        let mut c = TcpStream::connect(addr).unwrap();
        c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        write!(c, "GET {path} HTTP/1.1\r\nhost: x\r\n{extra}\r\n").unwrap();
        let mut out = Vec::new();
        let _ = c.read_to_end(&mut out);
        let split = out.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
        (
            String::from_utf8_lossy(&out[..split]).into_owned(),
            out[split + 4..].to_vec(),
        )
    }

    #[test]
    fn serves_ranges_validators_and_queued_faults() {
        let s = FaultyServer::start();
        let data: Vec<u8> = (0..200_000u32).map(|i| i as u8).collect();
        s.put("/f", data.clone());
        let host = s.host();
        let (head, body) = get(&host, "/f", "");
        assert!(head.starts_with("HTTP/1.1 200") && body == data, "{head}");
        let etag = head
            .lines()
            .find_map(|l| l.strip_prefix("etag: "))
            .unwrap()
            .to_string();
        let (head, _) = get(&host, "/f", &format!("if-none-match: {etag}\r\n"));
        assert!(head.starts_with("HTTP/1.1 304"), "{head}");
        let (head, body) = get(&host, "/f", "range: bytes=100-\r\n");
        assert!(head.contains("content-range: bytes 100-199999/200000"));
        assert_eq!(body, data[100..]);

        s.fault(Fault::DropAfter(1000), Some(2));
        s.fault(Fault::Status(503), Some(1));
        assert_eq!(get(&host, "/f", "").1.len(), 1000);
        assert_eq!(get(&host, "/f", "").1.len(), 1000);
        assert!(get(&host, "/f", "").0.starts_with("HTTP/1.1 503"));
        assert_eq!(get(&host, "/f", "").1.len(), data.len(), "faults used up");
        assert_eq!(s.hits().len(), 7);
        s.put("/f", vec![1, 2, 3]);
        let (head, _) = get(&host, "/f", &format!("if-none-match: {etag}\r\n"));
        assert!(
            head.starts_with("HTTP/1.1 200"),
            "new content, new ETag: {head}"
        );
    }

    #[test]
    fn a_stall_ends_when_the_server_is_dropped() {
        let s = FaultyServer::start();
        s.put("/f", vec![7; 10_000]);
        s.fault(Fault::StallHeaders, None);
        let host = s.host();
        let t = std::thread::spawn(move || {
            let mut c = TcpStream::connect(host).unwrap();
            c.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
            write!(c, "GET /f HTTP/1.1\r\n\r\n").unwrap();
            let mut out = Vec::new();
            let started = Instant::now();
            let _ = c.read_to_end(&mut out);
            (out, started.elapsed())
        });
        std::thread::sleep(Duration::from_millis(300));
        drop(s);
        let (out, waited) = t.join().unwrap();
        assert!(
            out.is_empty() && waited < Duration::from_secs(5),
            "{waited:?}"
        );
    }
}
