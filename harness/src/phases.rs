//! Running the pipeline's phases with one rendering: a spinner with elapsed time on a terminal,
//! plain lines otherwise, a collapsible group per phase under GitHub Actions, and the timings
//! kept for `--json`, the summary and the benchmark.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};
use serde::Serialize;

use crate::context::Context;
use crate::gha;

/// One phase's outcome and how long it took.
#[derive(Debug, Clone, Serialize)]
pub struct PhaseTiming {
    pub phase: String,
    pub seconds: f64,
    pub ok: bool,
    /// What the phase did, in a few words ("restored snapshot ready", "cached build", …).
    pub detail: String,
    /// The suites phase: seconds by sub-phase (`list`, `build`, `upload`, `run`, `rerun`),
    /// summed over the suites.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timings: Option<BTreeMap<String, f64>>,
    /// The suites phase: bytes of file content sent to the guest.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub uploaded_bytes: Option<u64>,
}

/// Runs phases in order and remembers how each went.
pub struct Phases<'a> {
    ctx: &'a Context,
    gha: bool,
    pub timings: Vec<PhaseTiming>,
    started: Instant,
}

impl<'a> Phases<'a> {
    pub fn new(ctx: &'a Context) -> Self {
        Phases {
            ctx,
            // One VM of many prints beside the others: groups would interleave.
            gha: gha::active() && ctx.label.is_none(),
            timings: Vec::new(),
            started: Instant::now(),
        }
    }

    /// Runs one phase. `f` gets the spinner (hidden when not on a terminal) to report sub-steps
    /// with `set_message`, and returns the phase's value plus a short detail line.
    pub fn run<T>(
        &mut self,
        name: &str,
        f: impl FnOnce(&ProgressBar) -> anyhow::Result<(T, String)>,
    ) -> anyhow::Result<T> {
        if self.ctx.cancel.is_cancelled() {
            anyhow::bail!("interrupted before the {name} phase");
        }
        self.always(name, f)
    }

    /// Like [`Phases::run`], but runs even after Ctrl-C: for the cleanup phases.
    pub fn always<T>(
        &mut self,
        name: &str,
        f: impl FnOnce(&ProgressBar) -> anyhow::Result<(T, String)>,
    ) -> anyhow::Result<T> {
        if self.gha {
            println!("{}", gha::group(name));
        }
        let bar = if self.ctx.progress() {
            let b = ProgressBar::new_spinner();
            b.set_style(
                ProgressStyle::with_template("{spinner} {prefix:.bold} [{elapsed}] {wide_msg}")
                    .expect("valid template"),
            );
            b.set_prefix(name.to_string());
            b.enable_steady_tick(Duration::from_millis(120));
            b
        } else {
            if self.ctx.verbosity >= 0 && !self.ctx.json {
                eprintln!("{}==> {name}", self.ctx.tag());
            }
            ProgressBar::hidden()
        };
        let t0 = Instant::now();
        let cancelled_before = self.ctx.cancel.is_cancelled();
        let result = f(&bar);
        let secs = t0.elapsed().as_secs_f64();
        bar.finish_and_clear();
        // A phase that Ctrl-C cut short did not succeed, even when it returns what it had.
        let interrupted = !cancelled_before && self.ctx.cancel.is_cancelled();
        let (ok, detail) = match &result {
            Ok((_, d)) if interrupted => (false, format!("interrupted (Ctrl-C); {d}")),
            Ok((_, d)) => (true, d.clone()),
            Err(e) => (false, format!("{e:#}")),
        };
        if self.ctx.verbosity >= 0 && !self.ctx.json {
            let mark = match (ok, interrupted) {
                (true, _) => "ok",
                (false, true) => "INTERRUPTED",
                (false, false) => "FAILED",
            };
            eprintln!(
                "{}{mark:>6} {name:<11} {secs:>7.1}s  {}",
                self.ctx.tag(),
                first_line(&detail)
            );
        }
        if self.gha {
            println!("{}", gha::endgroup());
        }
        self.timings.push(PhaseTiming {
            phase: name.to_string(),
            seconds: secs,
            ok,
            detail,
            timings: None,
            uploaded_bytes: None,
        });
        result.map(|(v, _)| v)
    }

    /// Seconds since the first phase started.
    pub fn total_seconds(&self) -> f64 {
        self.started.elapsed().as_secs_f64()
    }
}

fn first_line(s: &str) -> &str {
    s.lines().next().unwrap_or("")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_phase_cut_short_by_ctrl_c_is_not_ok() {
        let dir = tempfile::tempdir().unwrap();
        let ctx = Context::for_test(dir.path());
        let mut phases = Phases::new(&ctx);
        phases.run("quick", |_| Ok(((), "done".into()))).unwrap();
        let v = phases
            .run("suites", |_| {
                ctx.cancel.cancel();
                Ok((7, "2 passed".into()))
            })
            .unwrap();
        assert_eq!(v, 7, "what the phase gathered is still returned");
        // A cleanup phase that starts after Ctrl-C and succeeds is ok.
        phases
            .always("down", |_| Ok(((), "powered off".into())))
            .unwrap();
        let ok: Vec<(&str, bool)> = phases
            .timings
            .iter()
            .map(|t| (t.phase.as_str(), t.ok))
            .collect();
        assert_eq!(ok, [("quick", true), ("suites", false), ("down", true)]);
        assert!(phases.timings[1].detail.starts_with("interrupted (Ctrl-C)"));
    }
}
