//! The plain lines of a CI log, and GitHub Actions' groups around them.

use std::time::Duration;

use provision::install::InstallEvent;
use provision::vm::{Phase, VmEvent};

use super::fetch::Downloads;
use super::ticker::Ticker;
use super::{Event, Renderer, Target};
use crate::gha;
use crate::phases::PhaseTiming;

/// `    ok provision     9.5s  booted, kvm, ssh …` (`FAILED`, `INTERRUPTED`).
pub fn phase_line(t: &PhaseTiming, interrupted: bool) -> String {
    let mark = match (t.ok, interrupted) {
        (true, _) => "ok",
        (false, true) => "INTERRUPTED",
        (false, false) => "FAILED",
    };
    let detail = t.detail.lines().next().unwrap_or("");
    format!("{mark:>6} {:<11} {:>7.1}s  {detail}", t.phase, t.seconds)
}

/// `✓ booting (9.5 s)`: a VM phase is done.
pub fn vm_finished_line(phase: Phase, elapsed: Duration) -> String {
    format!("✓ {phase} ({:.1} s)", elapsed.as_secs_f64())
}

/// The line an install event prints, if any.
pub fn install_line(e: &InstallEvent) -> Option<String> {
    match e {
        InstallEvent::StepStarted { .. } => None,
        InstallEvent::StepFinished { step, elapsed, ok } => {
            let mark = if *ok { "ok" } else { "FAILED" };
            Some(format!(
                "  {mark:>6} {:<30} {:>6.1}s",
                step.label(),
                elapsed.as_secs_f64()
            ))
        }
        InstallEvent::Skipped { reason } => Some(format!("  {:>6} {reason}", "skip")),
        InstallEvent::Notice { message } => Some(format!("  {:>6} {message}", "note")),
    }
}

/// The "still waiting" line for a non-terminal, at most one per 30 s of a phase (pure).
pub fn waiting_line(phase: Phase, elapsed: Duration, last: Option<(Phase, u64)>) -> Option<String> {
    let secs = elapsed.as_secs();
    let bucket = secs / 30;
    if bucket == 0 || last.is_some_and(|(p, s)| p == phase && s / 30 == bucket) {
        return None;
    }
    Some(format!(
        "    {phase}: {} …",
        fmt_secs(Duration::from_secs(bucket * 30))
    ))
}

/// `15 s`.
pub fn fmt_secs(d: Duration) -> String {
    format!("{} s", d.as_secs())
}

/// Plain lines on stderr, each starting with the VM's tag (`[name] ` for one VM of many).
pub struct Plain {
    tag: String,
    err: Target,
    /// Stream test output.
    verbose: bool,
    /// The last "still waiting" line printed (phase, elapsed seconds).
    last_waiting: Option<(Phase, u64)>,
    downloads: Downloads,
    ticker: Option<Ticker>,
}

impl Plain {
    pub fn new(tag: String, err: Target, verbose: bool) -> Plain {
        Plain {
            tag,
            err,
            verbose,
            last_waiting: None,
            downloads: Downloads::default(),
            ticker: None,
        }
    }

    fn line(&self, s: &str) {
        self.err.line(&format!("{}{s}", self.tag));
    }

    fn vm(&mut self, e: &VmEvent) {
        match e {
            VmEvent::Started { phase, timeout } => {
                self.line(&format!("==> {phase} (limit {})", fmt_secs(*timeout)))
            }
            VmEvent::Waiting { phase, elapsed } => {
                if let Some(line) = waiting_line(*phase, *elapsed, self.last_waiting) {
                    self.last_waiting = Some((*phase, elapsed.as_secs()));
                    self.line(&line);
                }
            }
            VmEvent::Finished { phase, elapsed } => self.line(&vm_finished_line(*phase, *elapsed)),
            VmEvent::Warning { message } => self.line(&format!("warning: {message}")),
            VmEvent::Note { message } => self.line(message),
        }
    }
}

impl Renderer for Plain {
    fn event(&mut self, e: &Event<'_>) {
        match e {
            Event::PhaseStarted { name } => self.line(&format!("==> {name}")),
            Event::PhaseFinished {
                timing,
                interrupted,
            } => self.line(&phase_line(timing, *interrupted)),
            Event::Vm(v) => self.vm(v),
            Event::Install(i) => {
                if let Some(l) = install_line(i) {
                    self.line(&l);
                }
            }
            Event::Fetch(f) => {
                let (tag, err) = (&self.tag, &self.err);
                let line = |l: &str| err.line(&format!("{tag}{l}"));
                self.downloads.event(f, false, line);
            }
            Event::SuiteStarted { suite, interval } => {
                let prefix = format!("{}{suite}", self.tag);
                self.ticker = Some(Ticker::start(prefix, *interval, self.err.clone()));
            }
            Event::SuiteStatus { phase, status } => {
                if let Some(t) = &self.ticker {
                    t.set(format!("{phase}: {status}"));
                }
            }
            // What a log must show too: a build that failed, a rerun round.
            Event::SuiteNote(n) => self.line(n),
            Event::TestOutput(o) if self.verbose => self.err.write(o),
            Event::TestOutput(_) => {}
            Event::SuiteFinished => self.ticker = None,
            Event::TestFailed { .. } => {}
            Event::Notice(n) => self.line(n),
            Event::Warning(w) => self.line(&format!("warning: {w}")),
        }
    }

    fn finish(&mut self) {
        self.ticker = None;
    }
}

/// Plain lines, plus a collapsible group per phase: `::group::`/`::endgroup::` on stdout
/// around each harness phase, and around each VM phase outside one (`harness down`, `snapshot`).
pub struct Gha {
    plain: Plain,
    out: Target,
    err: Target,
    /// Harness phases open (VM phases inside one are not groups of their own).
    depth: usize,
}

impl Gha {
    /// `out` gets the workflow commands, `err` the VM warnings as annotations.
    pub fn new(plain: Plain, out: Target, err: Target) -> Gha {
        Gha {
            plain,
            out,
            err,
            depth: 0,
        }
    }
}

impl Renderer for Gha {
    fn event(&mut self, e: &Event<'_>) {
        let top = self.depth == 0;
        match e {
            Event::PhaseStarted { name } => {
                self.out.line(&gha::group(name));
                self.depth += 1;
                self.plain.event(e);
            }
            Event::PhaseFinished { .. } => {
                self.plain.event(e);
                self.out.line(gha::endgroup());
                self.depth = self.depth.saturating_sub(1);
            }
            Event::Vm(VmEvent::Started { phase, .. }) if top => {
                self.out.line(&gha::group(&phase.to_string()));
                self.plain.event(e);
            }
            Event::Vm(VmEvent::Finished { .. }) if top => {
                self.plain.event(e);
                self.out.line(gha::endgroup());
            }
            Event::Vm(VmEvent::Warning { message }) if top => {
                self.err.line(&format!("::warning::{message}"))
            }
            Event::TestFailed { dir, test, output } => {
                self.out.line(&gha::error_annotation(dir, test, output))
            }
            _ => self.plain.event(e),
        }
    }

    fn finish(&mut self) {
        self.plain.finish();
    }
}

#[cfg(test)]
pub mod tests {
    use super::*;
    use crate::render::{buffer, text};
    use provision::install::Step;

    pub fn timing(phase: &str, ok: bool, detail: &str) -> PhaseTiming {
        PhaseTiming {
            phase: phase.into(),
            seconds: 9.54,
            ok,
            detail: detail.into(),
            timings: None,
            uploaded_bytes: None,
        }
    }

    /// A provision phase that boots, then an install phase with a failed step.
    fn feed(r: &mut dyn Renderer) {
        let provision = timing("provision", true, "booted, kvm, ssh a@b:22\nsecond line");
        let install = timing("install", false, "install failed");
        let secs = Duration::from_secs;
        let events = [
            Event::PhaseStarted { name: "provision" },
            Event::Vm(&VmEvent::Started {
                phase: Phase::ProbingAccelerator,
                timeout: secs(15),
            }),
            Event::Vm(&VmEvent::Finished {
                phase: Phase::ProbingAccelerator,
                elapsed: Duration::from_millis(300),
            }),
            Event::Vm(&VmEvent::Waiting {
                phase: Phase::Booting,
                elapsed: secs(31),
            }),
            Event::Vm(&VmEvent::Waiting {
                phase: Phase::Booting,
                elapsed: secs(32),
            }),
            Event::Vm(&VmEvent::Warning {
                message: "slow disk".into(),
            }),
            Event::PhaseFinished {
                timing: &provision,
                interrupted: false,
            },
            Event::PhaseStarted { name: "install" },
            Event::Install(&InstallEvent::StepFinished {
                step: Step::Upload,
                elapsed: Duration::from_millis(1200),
                ok: false,
            }),
            Event::Install(&InstallEvent::Skipped {
                reason: "already there".into(),
            }),
            Event::Warning("no provenance"),
            Event::PhaseFinished {
                timing: &install,
                interrupted: false,
            },
        ];
        for e in &events {
            r.event(e);
        }
    }

    const PLAIN: &str = "\
==> provision
==> probing accelerator (limit 15 s)
✓ probing accelerator (0.3 s)
    booting: 30 s …
warning: slow disk
    ok provision       9.5s  booted, kvm, ssh a@b:22
==> install
  FAILED upload build                      1.2s
    skip already there
warning: no provenance
FAILED install         9.5s  install failed
";

    fn expected_plain(tag: &str) -> String {
        PLAIN.lines().map(|l| format!("{tag}{l}\n")).collect()
    }

    #[test]
    fn plain_lines_are_those_of_a_ci_log() {
        for tag in ["", "[multi-1] "] {
            let (err, buf) = buffer();
            let mut p = Plain::new(tag.into(), err, false);
            feed(&mut p);
            assert_eq!(text(&buf), expected_plain(tag));
        }
    }

    #[test]
    fn github_actions_groups_each_phase() {
        let (out, out_buf) = buffer();
        let (err, err_buf) = buffer();
        let mut g = Gha::new(Plain::new(String::new(), err.clone(), false), out, err);
        feed(&mut g);
        // Outside a phase, a VM phase is a group and a warning an annotation.
        g.event(&Event::Vm(&VmEvent::Started {
            phase: Phase::ShuttingDown,
            timeout: Duration::from_secs(60),
        }));
        g.event(&Event::Vm(&VmEvent::Warning {
            message: "hung".into(),
        }));
        g.event(&Event::Vm(&VmEvent::Finished {
            phase: Phase::ShuttingDown,
            elapsed: Duration::from_secs(2),
        }));
        assert_eq!(
            text(&out_buf),
            "::group::provision\n::endgroup::\n::group::install\n::endgroup::\n\
             ::group::shutting down\n::endgroup::\n"
        );
        let want = expected_plain("")
            + "==> shutting down (limit 60 s)\n::warning::hung\n✓ shutting down (2.0 s)\n";
        assert_eq!(text(&err_buf), want);
    }

    #[test]
    fn a_failed_test_is_an_annotation_under_github_actions_only() {
        let failed = Event::TestFailed {
            dir: "link",
            test: "TestKprobe",
            output: "    kprobe_test.go:42: attach: permission denied\n",
        };
        let (out, out_buf) = buffer();
        let (err, err_buf) = buffer();
        let mut g = Gha::new(Plain::new(String::new(), err.clone(), false), out, err);
        g.event(&failed);
        assert_eq!(
            text(&out_buf),
            "::error file=link/kprobe_test.go,line=42,title=TestKprobe failed::    kprobe_test.go:42: attach: permission denied\n"
        );
        assert_eq!(text(&err_buf), "");
        let (err, err_buf) = buffer();
        Plain::new(String::new(), err, false).event(&failed);
        assert_eq!(text(&err_buf), "");
    }

    #[test]
    fn an_interrupted_phase_says_so() {
        let t = timing("suites", false, "interrupted (Ctrl-C); 2 passed");
        assert_eq!(
            phase_line(&t, true),
            "INTERRUPTED suites          9.5s  interrupted (Ctrl-C); 2 passed"
        );
    }

    #[test]
    fn test_output_streams_only_when_verbose_and_notes_always_show() {
        for (verbose, want) in [
            (false, "[a] build failed: x\n"),
            (true, "=== RUN TestX\nok\n[a] build failed: x\n"),
        ] {
            let (err, buf) = buffer();
            let mut p = Plain::new("[a] ".into(), err, verbose);
            p.event(&Event::TestOutput("=== RUN TestX\n"));
            p.event(&Event::TestOutput("ok\n"));
            p.event(&Event::SuiteNote("build failed: x"));
            assert_eq!(text(&buf), want);
        }
    }

    #[test]
    fn each_waiting_line_is_printed_once_per_30_s() {
        let mut last = None;
        let mut printed = Vec::new();
        // Events about four times a second, as a polling loop sends them.
        for ms in (0..95_000).step_by(250) {
            if let Some(l) = waiting_line(Phase::ShuttingDown, Duration::from_millis(ms), last) {
                last = Some((Phase::ShuttingDown, ms / 1000));
                printed.push(l);
            }
        }
        assert_eq!(
            printed,
            [
                "    shutting down: 30 s …",
                "    shutting down: 60 s …",
                "    shutting down: 90 s …"
            ]
        );
        // A new phase starts its own count.
        assert!(waiting_line(Phase::Booting, Duration::from_secs(30), last).is_some());
    }
}
