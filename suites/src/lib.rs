//! Suite definitions, Go test execution through an executor, test2json parsing, results and
//! reports. Knows nothing of VMs: everything that touches the test machine goes through
//! [`Executor`], which `harness` backs with a guest session and the tests back with
//! [`LocalExecutor`].
//!
//! Parse → model → render: [`event`] parses test2json lines, [`model`] folds them into
//! per-package/per-test state with every attempt, and [`junit`], [`summary`] and [`results`]
//! only read the model. [`runner`] drives a run; [`plan`] holds the pure decisions (shards,
//! reruns, repro).
#![deny(missing_docs)]

pub mod cas;
pub mod config;
pub mod crash;
pub mod debug;
pub mod dumps;
pub mod event;
pub mod exec;
pub mod explain;
pub mod flags;
pub mod gotool;
mod guest_probe;
mod hang;
pub mod history;
pub mod html;
pub mod junit;
pub mod local;
pub mod model;
mod pipeline;
pub mod plan;
mod pool;
pub mod probe;
pub mod results;
pub mod runner;
pub mod stage;
pub mod summary;
pub mod timing;
pub mod totals;
pub mod unrun;

pub use config::{RunMode, SuiteConfig};
pub use exec::{ExecError, ExecOutcome, ExecRequest, Executor, Stream, TargetOs, UploadFilter};
pub use hostproc::Cancel;
pub use local::LocalExecutor;
pub use model::{Execution, Verdict};
pub use plan::{
    ReproCommands, ReproPlan, RerunTarget, Shard, repro_commands, repro_plan, rerun_targets,
    shard_packages,
};
pub use results::{RunRecord, Written, merge, merge_with, new_run_dir, read_failures, write};
pub use runner::{
    Observer, Quiet, RunEvent, RunOptions, SuiteError, resolve_mode, resolve_module_dir, run,
};
pub use summary::{Provenance, RunMeta, Summary, render_console, render_markdown};
