//! One module per area of the CLI. Each handler parses nothing itself: it calls a library and
//! prints the result as text or `--json`.

use std::process::ExitCode;

use crate::cli::Command;
use crate::context::Context;

pub mod artifacts;
pub mod cdb;
pub mod completions;
pub mod config;
pub mod console;
pub mod debug;
pub mod doctor;
pub mod explain;
pub mod guest;
pub mod install;
pub mod pipeline;
pub mod report;
pub mod repro;
pub mod test;
pub mod vm;

/// Runs the chosen subcommand.
pub fn dispatch(ctx: &Context, command: &Command) -> anyhow::Result<ExitCode> {
    match command {
        Command::Config(c) => config::run(ctx, c),
        Command::Doctor(a) => doctor::run(ctx, a),
        Command::Completions(a) => completions::run(a),
        Command::Explain(a) => explain::run(ctx.json, a),
        Command::Artifacts(c) => artifacts::run(ctx, c),
        Command::Test(a) => test::run(ctx, a),
        Command::Report(c) => report::run(ctx, c),
        Command::Install(a) => install::run(ctx, a),
        Command::Ext(c) => install::run_ext(ctx, c),
        Command::Exec(a) => guest::run_exec(ctx, a),
        Command::Cp(a) => guest::run_cp(ctx, a),
        Command::Ssh(a) => guest::run_ssh(ctx, a),
        Command::Up(a) => pipeline::run_up(ctx, a),
        Command::Run(a) => pipeline::run_run(ctx, a),
        Command::Repro(a) => repro::run(ctx, a),
        Command::Down(a) => vm::run_down(ctx, a),
        Command::Destroy(a) => vm::run_destroy(ctx, a),
        Command::Reset(a) => vm::run_reset(ctx, a),
        Command::Status(a) => vm::run_status(ctx, a),
        Command::Snapshot(c) => vm::run_snapshot(ctx, c),
        Command::Console(a) => console::run_console(ctx, a),
        Command::Screenshot(a) => console::run_screenshot(ctx, a),
        Command::Analyze(a) => cdb::run_analyze(ctx, a),
    }
}
