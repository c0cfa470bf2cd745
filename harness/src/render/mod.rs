//! One event stream, one renderer per output.
//!
//! The libraries tell their progress as typed events (`VmEvent`, `InstallEvent`, `FetchEvent`,
//! the suites' `RunEvent`); harness adds its own phases and notices. Everything the user sees
//! about progress goes through an [`Event`] to the context's [`Output`], whose [`Renderer`] was
//! chosen once from the context ([`Mode`]):
//!
//! - [`Terminal`]: spinners and bars (indicatif) on an interactive stderr;
//! - [`Plain`]: the plain lines of a CI log (`==> name`, `    ok name  1.2s detail`, ticker lines);
//! - [`Gha`]: plain, plus `::group::`/`::endgroup::` lines and an `::error` annotation per
//!   failed test on stdout under GitHub Actions;
//! - [`Silent`]: `--json` (stdout is the JSON document) and `-q`.
//!
//! Renderers write into a [`Target`] (stderr, stdout, or a buffer in tests).

mod fetch;
mod plain;
mod terminal;
pub mod ticker;

use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use artifacts::FetchEvent;
use provision::install::InstallEvent;
use provision::vm::VmEvent;

use crate::context::Context;
use crate::phases::PhaseTiming;

pub use plain::{Gha, Plain};
pub use terminal::Terminal;

/// Something to show the user about a run's progress.
#[derive(Debug, Clone, Copy)]
pub enum Event<'a> {
    /// A harness phase (`provision`, `install`, `suites`, …) begins.
    PhaseStarted {
        name: &'a str,
    },
    /// A harness phase ended; `interrupted` when Ctrl-C cut it short.
    PhaseFinished {
        timing: &'a PhaseTiming,
        interrupted: bool,
    },
    Vm(&'a VmEvent),
    Install(&'a InstallEvent),
    Fetch(&'a FetchEvent),
    /// A suite starts running; off a terminal its status is printed every `interval`.
    SuiteStarted {
        suite: &'a str,
        interval: Duration,
    },
    /// The running suite's status line (`packages 3/9 · 12 passed`), in its sub-phase.
    SuiteStatus {
        phase: &'a str,
        status: &'a str,
    },
    /// A line about the running suite (a build failure, a rerun round): shown above its
    /// spinner on a terminal, not printed off one.
    SuiteNote(&'a str),
    /// Test output, as it streams (shown when verbose).
    TestOutput(&'a str),
    /// The suite is done (or abandoned).
    SuiteFinished,
    /// A test failed (after the run, from its results): an error annotation under GitHub
    /// Actions; the other outputs show failures in the results summary instead.
    TestFailed {
        /// The package's directory relative to the module (where the file names point).
        dir: &'a str,
        test: &'a str,
        /// Its output, where Go's `file_test.go:N:` gives the annotation its file and line.
        output: &'a str,
    },
    /// A line for the user, printed in every output but `--json`.
    Notice(&'a str),
    /// `warning: …`, printed in every output but `--json`.
    Warning(&'a str),
}

/// Draws events for one output.
pub trait Renderer: Send {
    fn event(&mut self, e: &Event<'_>);

    /// Clears whatever is still drawn (a spinner of work an error cut short).
    fn finish(&mut self) {}
}

/// Where a renderer writes: stderr, stdout, or a buffer in tests. Each line is written whole,
/// so lines of several threads never mix.
#[derive(Clone)]
pub struct Target(Arc<Mutex<dyn Write + Send>>);

impl Target {
    pub fn stderr() -> Target {
        Target(Arc::new(Mutex::new(std::io::stderr())))
    }

    pub fn stdout() -> Target {
        Target(Arc::new(Mutex::new(std::io::stdout())))
    }

    /// Writes `s` as is (errors writing progress are ignored, as `eprintln!` would not be).
    pub fn write(&self, s: &str) {
        let mut w = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let _ = w.write_all(s.as_bytes());
        let _ = w.flush();
    }

    /// Writes `s` and a newline.
    pub fn line(&self, s: &str) {
        self.write(&format!("{s}\n"));
    }
}

/// Which renderer a context gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Terminal,
    Plain,
    Gha,
    /// `--json`: nothing but the JSON document.
    Json,
    /// `-q`: notices and warnings only.
    Quiet,
}

impl Mode {
    /// The output for `ctx`: JSON and quiet first, a terminal when progress is drawn
    /// ([`Context::progress`]), GitHub Actions groups unless one VM of many, else plain lines.
    pub fn of(ctx: &Context) -> Mode {
        Mode::choose(
            ctx.json,
            ctx.verbosity,
            ctx.progress(),
            crate::gha::active() && ctx.label.is_none(),
        )
    }

    fn choose(json: bool, verbosity: i8, progress: bool, gha: bool) -> Mode {
        match () {
            _ if json => Mode::Json,
            _ if verbosity < 0 => Mode::Quiet,
            _ if progress => Mode::Terminal,
            _ if gha => Mode::Gha,
            _ => Mode::Plain,
        }
    }
}

/// A context's renderer, shared by everything that reports progress in it (phases, the VM and
/// install event callbacks, download sinks, the suites' observer), across threads.
#[derive(Clone)]
pub struct Output(Arc<Mutex<Box<dyn Renderer>>>);

impl std::fmt::Debug for Output {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Output")
    }
}

impl Output {
    pub fn new(r: impl Renderer + 'static) -> Output {
        Output(Arc::new(Mutex::new(Box::new(r))))
    }

    /// The renderer for `ctx`'s output, writing to stderr (and stdout for workflow commands).
    pub fn for_context(ctx: &Context) -> Output {
        let verbose = ctx.verbosity > 0;
        match Mode::of(ctx) {
            Mode::Terminal => Output::new(Terminal::new(Target::stderr(), verbose)),
            Mode::Plain => Output::new(Plain::new(ctx.tag(), Target::stderr(), verbose)),
            Mode::Gha => Output::new(Gha::new(
                Plain::new(ctx.tag(), Target::stderr(), verbose),
                Target::stdout(),
                Target::stderr(),
            )),
            Mode::Json => Output::new(Silent::new(false, ctx.tag(), Target::stderr())),
            Mode::Quiet => Output::new(Silent::new(true, ctx.tag(), Target::stderr())),
        }
    }

    fn renderer(&self) -> std::sync::MutexGuard<'_, Box<dyn Renderer>> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn emit(&self, e: &Event<'_>) {
        self.renderer().event(e);
    }

    /// See [`Renderer::finish`].
    pub fn finish(&self) {
        self.renderer().finish();
    }
}

/// `--json` and `-q`: no progress at all; with `-q`, notices and warnings still print.
pub struct Silent {
    notices: bool,
    tag: String,
    err: Target,
}

impl Silent {
    pub fn new(notices: bool, tag: String, err: Target) -> Silent {
        Silent { notices, tag, err }
    }
}

impl Renderer for Silent {
    fn event(&mut self, e: &Event<'_>) {
        match e {
            Event::Notice(n) if self.notices => self.err.line(&format!("{}{n}", self.tag)),
            Event::Warning(w) if self.notices => {
                self.err.line(&format!("{}warning: {w}", self.tag))
            }
            _ => {}
        }
    }
}

/// A [`Target`] writing into a buffer, and the buffer.
#[cfg(test)]
pub fn buffer() -> (Target, Arc<Mutex<Vec<u8>>>) {
    let buf = Arc::new(Mutex::new(Vec::new()));
    (Target(buf.clone()), buf)
}

/// The buffer's text.
#[cfg(test)]
pub fn text(buf: &Arc<Mutex<Vec<u8>>>) -> String {
    String::from_utf8(buf.lock().unwrap().clone()).unwrap()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_mode_is_chosen_once_in_this_order() {
        assert_eq!(Mode::choose(true, 1, false, true), Mode::Json);
        assert_eq!(Mode::choose(false, -1, false, true), Mode::Quiet);
        assert_eq!(Mode::choose(false, 0, true, true), Mode::Terminal);
        assert_eq!(Mode::choose(false, 0, false, true), Mode::Gha);
        assert_eq!(Mode::choose(false, 2, false, false), Mode::Plain);
    }

    #[test]
    fn json_prints_nothing_and_quiet_only_notices() {
        let timing = plain::tests::timing("suites", true, "2 passed");
        for (notices, want) in [(false, ""), (true, "[a] note\n[a] warning: w\n")] {
            let (t, buf) = buffer();
            let mut s = Silent::new(notices, "[a] ".into(), t);
            s.event(&Event::PhaseStarted { name: "suites" });
            s.event(&Event::PhaseFinished {
                timing: &timing,
                interrupted: false,
            });
            s.event(&Event::Notice("note"));
            s.event(&Event::Warning("w"));
            assert_eq!(text(&buf), want);
        }
    }
}
