//! Running the pipeline's phases: each one's start and outcome go to the context's renderer
//! ([`crate::render`]: a spinner with elapsed time on a terminal, plain lines otherwise, a
//! collapsible group per phase under GitHub Actions), and the timings are kept for `--json`,
//! the summary and the benchmark.

use std::collections::BTreeMap;
use std::time::Instant;

use serde::Serialize;

use crate::context::Context;
use crate::render::Event;

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
    pub timings: Vec<PhaseTiming>,
    started: Instant,
}

impl<'a> Phases<'a> {
    pub fn new(ctx: &'a Context) -> Self {
        Phases {
            ctx,
            timings: Vec::new(),
            started: Instant::now(),
        }
    }

    /// Runs one phase. `f` returns the phase's value plus a short detail line.
    pub fn run<T>(
        &mut self,
        name: &str,
        f: impl FnOnce() -> anyhow::Result<(T, String)>,
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
        f: impl FnOnce() -> anyhow::Result<(T, String)>,
    ) -> anyhow::Result<T> {
        let out = self.ctx.output();
        out.emit(&Event::PhaseStarted { name });
        let t0 = Instant::now();
        let cancelled_before = self.ctx.cancel.is_cancelled();
        let result = f();
        let secs = t0.elapsed().as_secs_f64();
        // A phase that Ctrl-C cut short did not succeed, even when it returns what it had.
        let interrupted = !cancelled_before && self.ctx.cancel.is_cancelled();
        let (ok, detail) = match &result {
            Ok((_, d)) if interrupted => (false, format!("interrupted (Ctrl-C); {d}")),
            Ok((_, d)) => (true, d.clone()),
            Err(e) => (false, format!("{e:#}")),
        };
        let timing = PhaseTiming {
            phase: name.to_string(),
            seconds: secs,
            ok,
            detail,
            timings: None,
            uploaded_bytes: None,
        };
        out.emit(&Event::PhaseFinished {
            timing: &timing,
            interrupted,
        });
        self.timings.push(timing);
        result.map(|(v, _)| v)
    }

    /// Seconds since the first phase started.
    pub fn total_seconds(&self) -> f64 {
        self.started.elapsed().as_secs_f64()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_phase_cut_short_by_ctrl_c_is_not_ok() {
        let dir = tempfile::tempdir().unwrap();
        let ctx = Context::for_test(dir.path());
        let (err, buf) = crate::render::buffer();
        let plain = crate::render::Plain::new(String::new(), err, false);
        ctx.render.set(crate::render::Output::new(plain)).unwrap();
        let mut phases = Phases::new(&ctx);
        phases.run("quick", || Ok(((), "done".into()))).unwrap();
        let v = phases
            .run("suites", || {
                ctx.cancel.cancel();
                Ok((7, "2 passed".into()))
            })
            .unwrap();
        assert_eq!(v, 7, "what the phase gathered is still returned");
        // A cleanup phase that starts after Ctrl-C and succeeds is ok.
        phases
            .always("down", || Ok(((), "powered off".into())))
            .unwrap();
        let ok: Vec<(&str, bool)> = phases
            .timings
            .iter()
            .map(|t| (t.phase.as_str(), t.ok))
            .collect();
        assert_eq!(ok, [("quick", true), ("suites", false), ("down", true)]);
        assert!(phases.timings[1].detail.starts_with("interrupted (Ctrl-C)"));
        let text = crate::render::text(&buf);
        let want = [
            "==> quick",
            "    ok quick ",
            "==> suites",
            "INTERRUPTED suites ",
            "==> down",
            "    ok down ",
        ];
        assert_eq!(text.lines().count(), want.len(), "{text}");
        for (line, want) in text.lines().zip(want) {
            assert!(
                line.starts_with(want),
                "{line:?} does not start with {want:?}"
            );
        }
    }
}
