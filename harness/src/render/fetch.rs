//! Downloads as the user sees them: a bar on a terminal; on a non-terminal (a CI log) a download
//! that takes a while gets a line at most every 30 s, and a last one when it is done.

use std::time::{Duration, Instant};

use artifacts::FetchEvent;
use indicatif::{HumanBytes, ProgressBar, ProgressDrawTarget, ProgressStyle};

use super::ticker::clock;

/// At most one line per this much of a download on a non-terminal.
const EVERY: Duration = Duration::from_secs(30);

/// One output's downloads (a fetcher runs them one at a time).
#[derive(Default)]
pub struct Downloads {
    current: Option<Current>,
}

/// The download under way.
struct Current {
    what: String,
    since: Instant,
    bar: Option<ProgressBar>,
    /// The last 30 s step a line was printed for (0: none yet).
    step: u64,
}

impl Downloads {
    /// Renders `e`: with `bars` (a terminal) as a bar, else as lines given to `line`.
    pub fn event(&mut self, e: &FetchEvent, bars: bool, line: impl Fn(&str)) {
        match e {
            FetchEvent::Started { what, total, from } => {
                let bar = bars.then(|| bar(what, *total, *from));
                self.current = Some(Current {
                    what: what.clone(),
                    since: Instant::now(),
                    bar,
                    step: 0,
                });
            }
            FetchEvent::Resumed { from, total } => {
                if let Some(bar) = self.current.as_ref().and_then(|c| c.bar.as_ref()) {
                    if let Some(total) = total {
                        bar.set_length(*total);
                    }
                    bar.set_position(*from);
                }
            }
            FetchEvent::Progress { done, total } => self.progress(*done, *total, line),
            FetchEvent::Finished { size, .. } => {
                if let Some(c) = self.current.take() {
                    c.finish(*size, line);
                }
            }
            FetchEvent::Unchanged => {
                if let Some(bar) = self.current.take().and_then(|c| c.bar) {
                    bar.finish_and_clear();
                }
            }
            FetchEvent::Failed => {
                if let Some(bar) = self.current.take().and_then(|c| c.bar) {
                    bar.abandon();
                }
            }
            // The library logs why (a warning); the bar or the next line shows where it stands.
            FetchEvent::Retrying { .. } => {}
        }
    }

    fn progress(&mut self, done: u64, total: Option<u64>, line: impl Fn(&str)) {
        let Some(c) = &mut self.current else { return };
        if let Some(bar) = &c.bar {
            bar.set_position(done);
        } else if let Some((step, l)) =
            progress_line(&c.what, done, total, c.since.elapsed(), c.step)
        {
            c.step = step;
            line(&l);
        }
    }
}

impl Current {
    /// Clears the bar; after progress lines, a last one says it is done.
    fn finish(self, size: u64, line: impl Fn(&str)) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        } else if self.step > 0 {
            line(&format!(
                "    downloaded {}: {} in {}",
                self.what,
                HumanBytes(size),
                clock(self.since.elapsed())
            ));
        }
    }
}

/// The terminal's bar for `what`, as far as `from`.
fn bar(what: &str, total: Option<u64>, from: u64) -> ProgressBar {
    let bar = ProgressBar::with_draw_target(total, ProgressDrawTarget::stderr());
    if let Ok(style) = ProgressStyle::with_template(
        "{msg} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} ETA {eta}",
    ) {
        bar.set_style(style.progress_chars("=> "));
    }
    bar.set_message(what.to_string());
    bar.set_position(from);
    bar
}

/// The line a non-terminal gets `elapsed` into a download, with its 30 s step: none in the first
/// 30 s, and none for a step already printed (`last`) (pure).
pub fn progress_line(
    what: &str,
    done: u64,
    total: Option<u64>,
    elapsed: Duration,
    last: u64,
) -> Option<(u64, String)> {
    let step = elapsed.as_secs() / EVERY.as_secs();
    if step == 0 || step <= last {
        return None;
    }
    let of = match total {
        Some(t) if t > 0 => format!(
            " of {} ({}%)",
            HumanBytes(t),
            (done as u128 * 100 / t as u128).min(100)
        ),
        _ => String::new(),
    };
    let at = clock(Duration::from_secs(step * EVERY.as_secs()));
    Some((
        step,
        format!(
            "    downloading {what}: {}{of} after {at} …",
            HumanBytes(done)
        ),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_non_terminal_gets_a_line_per_30_s_at_most() {
        let line = |secs, last| {
            let mib = 1 << 20;
            progress_line(
                "x.zip",
                3 * mib,
                Some(12 * mib),
                Duration::from_secs(secs),
                last,
            )
        };
        assert_eq!(line(29, 0), None, "a quick download prints nothing");
        assert_eq!(
            line(31, 0),
            Some((
                1,
                "    downloading x.zip: 3.00 MiB of 12.00 MiB (25%) after 30s …".to_string()
            ))
        );
        assert_eq!(line(59, 1), None, "one line per step");
        assert_eq!(line(95, 1).map(|(s, _)| s), Some(3));
        let unknown = progress_line("u", 1024, None, Duration::from_secs(60), 0);
        assert_eq!(
            unknown.map(|(_, l)| l).as_deref(),
            Some("    downloading u: 1.00 KiB after 1m00s …")
        );
    }

    #[test]
    fn a_quick_download_prints_nothing_off_a_terminal() {
        let lines = std::cell::RefCell::new(Vec::<String>::new());
        let mut d = Downloads::default();
        let push = |l: &str| lines.borrow_mut().push(l.to_string());
        let started = FetchEvent::Started {
            what: "efw.zip".into(),
            total: Some(10),
            from: 0,
        };
        let done = FetchEvent::Progress {
            done: 10,
            total: Some(10),
        };
        let finished = FetchEvent::Finished {
            size: 10,
            transferred: 10,
        };
        for e in [&started, &done, &finished] {
            d.event(e, false, push);
        }
        assert!(lines.borrow().is_empty());
    }
}
