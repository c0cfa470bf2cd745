//! An interactive stderr: a spinner with elapsed time per phase, per VM phase and per suite, a
//! bar per download, and the lines that stay (a phase's outcome, a VM phase's `✓`) above them.

use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};
use provision::vm::VmEvent;

use super::fetch::Downloads;
use super::plain::{fmt_secs, install_line, phase_line, vm_finished_line};
use super::{Event, Renderer, Target};

pub struct Terminal {
    err: Target,
    /// Stream test output.
    verbose: bool,
    /// The running harness phase's spinner.
    phase: Option<ProgressBar>,
    /// The running VM phase's spinner.
    vm: Option<ProgressBar>,
    /// The running suite's spinner.
    suite: Option<ProgressBar>,
    downloads: Downloads,
}

fn spinner(template: &str, prefix: &str, tick: Duration) -> ProgressBar {
    let b = ProgressBar::new_spinner();
    b.set_style(ProgressStyle::with_template(template).expect("valid template"));
    b.set_prefix(prefix.to_string());
    b.enable_steady_tick(tick);
    b
}

fn clear(bar: &mut Option<ProgressBar>) {
    if let Some(b) = bar.take() {
        b.finish_and_clear();
    }
}

impl Terminal {
    pub fn new(err: Target, verbose: bool) -> Terminal {
        Terminal {
            err,
            verbose,
            phase: None,
            vm: None,
            suite: None,
            downloads: Downloads::default(),
        }
    }

    /// The innermost spinner drawn.
    fn drawn(&self) -> Option<&ProgressBar> {
        self.vm
            .as_ref()
            .or(self.suite.as_ref())
            .or(self.phase.as_ref())
    }

    /// Prints `s` above the spinners.
    fn line(&self, s: &str) {
        match self.drawn() {
            Some(b) => b.suspend(|| self.err.line(s)),
            None => self.err.line(s),
        }
    }

    fn vm(&mut self, e: &VmEvent) {
        match e {
            VmEvent::Started { phase, .. } => {
                clear(&mut self.vm);
                let s = ProgressBar::new_spinner();
                s.set_message(phase.label().to_string());
                s.enable_steady_tick(Duration::from_millis(200));
                self.vm = Some(s);
            }
            VmEvent::Waiting { phase, elapsed } => {
                if let Some(s) = &self.vm {
                    s.set_message(format!("{phase} {}", fmt_secs(*elapsed)));
                }
            }
            VmEvent::Finished { phase, elapsed } => {
                clear(&mut self.vm);
                self.line(&vm_finished_line(*phase, *elapsed));
            }
            VmEvent::Warning { message } => self.line(&format!("warning: {message}")),
            VmEvent::Note { message } => self.line(message),
        }
    }

    fn suite(&mut self, e: &Event<'_>) {
        match e {
            Event::SuiteStarted { suite, .. } => {
                clear(&mut self.suite);
                let template = "{spinner} {prefix}: {wide_msg}";
                self.suite = Some(spinner(template, suite, Duration::from_millis(200)));
            }
            Event::SuiteStatus { status, .. } => {
                if let Some(b) = &self.suite {
                    b.set_message(status.to_string());
                }
            }
            Event::SuiteNote(n) => self.line(n),
            Event::TestOutput(o) if self.verbose => match self.drawn() {
                Some(b) => b.suspend(|| self.err.write(o)),
                None => self.err.write(o),
            },
            Event::TestOutput(_) => {}
            _ => clear(&mut self.suite),
        }
    }
}

impl Renderer for Terminal {
    fn event(&mut self, e: &Event<'_>) {
        match e {
            Event::PhaseStarted { name } => {
                clear(&mut self.phase);
                let template = "{spinner} {prefix:.bold} [{elapsed}] {wide_msg}";
                self.phase = Some(spinner(template, name, Duration::from_millis(120)));
            }
            Event::PhaseFinished {
                timing,
                interrupted,
            } => {
                // A VM phase an error cut short is over too.
                clear(&mut self.vm);
                clear(&mut self.phase);
                self.line(&phase_line(timing, *interrupted));
            }
            Event::Vm(v) => self.vm(v),
            Event::Install(i) => {
                if let Some(l) = install_line(i) {
                    self.line(&l);
                }
            }
            Event::Fetch(f) => self.downloads.event(f, true, |_| {}),
            Event::SuiteStarted { .. }
            | Event::SuiteStatus { .. }
            | Event::SuiteNote(_)
            | Event::TestOutput(_)
            | Event::SuiteFinished => self.suite(e),
            Event::TestFailed { .. } => {}
            Event::Notice(n) => self.line(n),
            Event::Warning(w) => self.line(&format!("warning: {w}")),
        }
    }

    fn finish(&mut self) {
        clear(&mut self.vm);
        clear(&mut self.suite);
        clear(&mut self.phase);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::render::plain::tests::timing;
    use crate::render::{buffer, text};
    use provision::vm::Phase;

    #[test]
    fn only_the_lines_that_stay_are_printed() {
        let (err, buf) = buffer();
        let mut t = Terminal::new(err, false);
        let provision = timing("provision", true, "booted");
        t.event(&Event::PhaseStarted { name: "provision" });
        assert!(t.phase.is_some());
        t.event(&Event::Vm(&VmEvent::Started {
            phase: Phase::Booting,
            timeout: Duration::from_secs(60),
        }));
        t.event(&Event::Vm(&VmEvent::Finished {
            phase: Phase::Booting,
            elapsed: Duration::from_millis(9500),
        }));
        t.event(&Event::SuiteStarted {
            suite: "unit",
            interval: Duration::from_secs(1),
        });
        t.event(&Event::TestOutput("not verbose\n"));
        t.event(&Event::SuiteFinished);
        t.event(&Event::PhaseFinished {
            timing: &provision,
            interrupted: false,
        });
        t.finish();
        assert_eq!(
            text(&buf),
            "✓ booting (9.5 s)\n    ok provision       9.5s  booted\n"
        );
    }
}
