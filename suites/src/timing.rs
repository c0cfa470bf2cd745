//! What a run spent its time on: the wall-clock span of each sub-phase (`list`, `build`,
//! `upload`, `run`, `rerun`) and the bytes of file content it sent to the target.
//!
//! Host mode overlaps building, uploading and running, so a span is the time from the first
//! moment the sub-phase was busy to the last; spans of overlapping sub-phases add up to more than
//! the run took.

use std::collections::BTreeMap;
use std::time::Instant;

/// Collects sub-phase spans while a run goes on.
#[derive(Debug, Clone)]
pub struct Clock {
    t0: Instant,
    spans: BTreeMap<String, (f64, f64)>,
}

impl Default for Clock {
    fn default() -> Self {
        Clock::new()
    }
}

impl Clock {
    /// A clock whose offsets count from now.
    pub fn new() -> Self {
        Clock {
            t0: Instant::now(),
            spans: BTreeMap::new(),
        }
    }

    /// Records that `name` was busy from `start` to `end`; spans of the same name merge into one
    /// from the earliest start to the latest end.
    pub fn span(&mut self, name: &str, start: Instant, end: Instant) {
        let s = start.saturating_duration_since(self.t0).as_secs_f64();
        let e = end.saturating_duration_since(self.t0).as_secs_f64().max(s);
        self.spans
            .entry(name.to_string())
            .and_modify(|(a, b)| {
                *a = a.min(s);
                *b = b.max(e);
            })
            .or_insert((s, e));
    }

    /// Runs `f` and records its span as `name`.
    pub fn time<T>(&mut self, name: &str, f: impl FnOnce() -> T) -> T {
        let start = Instant::now();
        let v = f();
        self.span(name, start, Instant::now());
        v
    }

    /// When `name` first started and last ended, in seconds from the clock's start.
    pub fn bounds(&self, name: &str) -> Option<(f64, f64)> {
        self.spans.get(name).copied()
    }

    /// Seconds by sub-phase, rounded to milliseconds.
    pub fn seconds(&self) -> BTreeMap<String, f64> {
        self.spans
            .iter()
            .map(|(k, (s, e))| (k.clone(), ((e - s) * 1000.0).round() / 1000.0))
            .collect()
    }
}

/// The order sub-phases are shown in; others follow alphabetically.
const ORDER: [&str; 5] = ["list", "build", "upload", "run", "rerun"];

/// One line for the console: `list 0.3 s, build 15.6 s, upload 64.2 s (250.0 MB sent), run 53.0 s`.
pub fn render(timings: &BTreeMap<String, f64>, uploaded_bytes: u64) -> String {
    let mut names: Vec<&String> = timings.keys().collect();
    names.sort_by_key(|n| {
        (
            ORDER.iter().position(|o| o == n).unwrap_or(ORDER.len()),
            n.to_string(),
        )
    });
    let parts: Vec<String> = names
        .into_iter()
        .map(|n| {
            let mut s = format!("{n} {:.1} s", timings[n]);
            if n == "upload" {
                s.push_str(&format!(" ({} sent)", human_bytes(uploaded_bytes)));
            }
            s
        })
        .collect();
    parts.join(", ")
}

/// `1.5 MB`, `0 B`.
pub fn human_bytes(b: u64) -> String {
    match b {
        0..1_000 => format!("{b} B"),
        1_000..1_000_000 => format!("{:.1} kB", b as f64 / 1e3),
        1_000_000..1_000_000_000 => format!("{:.1} MB", b as f64 / 1e6),
        _ => format!("{:.2} GB", b as f64 / 1e9),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn spans_merge_and_render_in_order() {
        let mut c = Clock::new();
        let t = c.t0;
        c.span(
            "run",
            t + Duration::from_secs(3),
            t + Duration::from_secs(5),
        );
        c.span("build", t, t + Duration::from_secs(2));
        c.span(
            "run",
            t + Duration::from_secs(1),
            t + Duration::from_secs(4),
        );
        c.span("upload", t + Duration::from_secs(1), t);
        let s = c.seconds();
        assert_eq!(s["build"], 2.0);
        assert_eq!(s["run"], 4.0, "earliest start to latest end");
        assert_eq!(s["upload"], 0.0, "never negative");
        assert_eq!(c.bounds("run"), Some((1.0, 5.0)));
        assert_eq!(
            render(&s, 2_500_000),
            "build 2.0 s, upload 0.0 s (2.5 MB sent), run 4.0 s"
        );
        assert_eq!(human_bytes(0), "0 B");
        assert_eq!(human_bytes(1_500), "1.5 kB");
        assert_eq!(human_bytes(3_000_000_000), "3.00 GB");
    }
}
