//! The pipeline as code, not clap handlers: provision → artifacts → install → suites → results.
//!
//! Each stage takes a typed request (`UpRequest`, `SuitesRequest`, `RunRequest`); the handlers
//! in `cmd/` only turn flags into requests and print what comes back.
//!
//! up:  provision → artifacts → install → extensions
//! run: up → doctor (the guest doctor) → suites → results → down (unless `keep`)

mod install;
mod run;
mod suites;
mod up;

pub use install::{
    EfwRequest, EventPrinter, enabled_extensions, install_extensions, install_runtime,
};
pub use run::{RunRequest, report, run, test_on_vm, write_timings};
pub use suites::{
    Selection, SuiteResult, SuitesRequest, durations, executor, print_results, record_history,
    run_suites, suite_module, suite_options, worst_exit,
};
pub use up::{UpRequest, up};

/// Whether a build source spec is `none`: no efW runtime (ebpf-go's Linux suite on a kernel).
pub fn efw_none(source: &str) -> bool {
    source.trim().eq_ignore_ascii_case("none")
}
