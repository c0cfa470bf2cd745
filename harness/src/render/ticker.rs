//! Progress on a non-terminal (a CI log): during the suites, a plain line at least every
//! `progress_interval` seconds with what is done and what is running. Each line starts with the
//! time since the suite began, so no two lines are the same.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::Target;

/// Prints the latest status line every `interval` from its own thread until dropped.
pub struct Ticker {
    status: Arc<Mutex<String>>,
    _worker: hostproc::Worker,
}

/// `1h02m03s`, `2m05s`, `7s`.
pub fn clock(d: Duration) -> String {
    let s = d.as_secs();
    match (s / 3600, s / 60 % 60, s % 60) {
        (0, 0, s) => format!("{s}s"),
        (0, m, s) => format!("{m}m{s:02}s"),
        (h, m, s) => format!("{h}h{m:02}m{s:02}s"),
    }
}

impl Ticker {
    /// Starts printing `prefix: <status>` lines to `err` every `interval`.
    pub fn start(prefix: String, interval: Duration, err: Target) -> Self {
        let status = Arc::new(Mutex::new("starting…".to_string()));
        let s = status.clone();
        let worker = hostproc::Worker::spawn("harness-ticker", move |st| {
            let t0 = Instant::now();
            let mut next = t0 + interval;
            let mut last = String::new();
            while !st.is_cancelled() {
                std::thread::sleep(Duration::from_millis(100).min(interval));
                if Instant::now() < next {
                    continue;
                }
                next += interval;
                let line = format!(
                    "[{}] {prefix}: {}",
                    clock(t0.elapsed()),
                    s.lock().expect("status")
                );
                if line != last {
                    err.line(&line);
                    last = line;
                }
            }
        })
        .expect("spawning the progress line thread");
        Ticker {
            status,
            _worker: worker,
        }
    }

    /// Replaces the status the next line shows.
    pub fn set(&self, status: String) {
        *self.status.lock().expect("status") = status;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clock_reads_like_a_duration() {
        assert_eq!(clock(Duration::from_secs(7)), "7s");
        assert_eq!(clock(Duration::from_secs(125)), "2m05s");
        assert_eq!(clock(Duration::from_secs(3723)), "1h02m03s");
    }

    #[test]
    fn a_line_per_interval_with_the_latest_status() {
        let (err, buf) = crate::render::buffer();
        let t = Ticker::start("[a] unit".into(), Duration::from_millis(300), err);
        t.set("run: packages 1/2".into());
        let t0 = Instant::now();
        while buf.lock().unwrap().is_empty() && t0.elapsed() < Duration::from_secs(10) {
            std::thread::sleep(Duration::from_millis(20));
        }
        drop(t);
        let text = crate::render::text(&buf);
        assert_eq!(
            text.lines().next(),
            Some("[0s] [a] unit: run: packages 1/2")
        );
        assert!(text.ends_with('\n'));
    }
}
