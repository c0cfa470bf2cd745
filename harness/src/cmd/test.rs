//! `harness test`: run Go test suites and write a results folder per suite.
//!
//! Exit codes: 0 all passed (flaky included), 1 test failures, 2 harness or infrastructure
//! failure (target lost, build failed, bad suite).

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;

use crate::context::Context;
use crate::pipeline::{
    Selection, SuitesRequest, durations, executor, print_results, run_suites, worst_exit,
};

/// Arguments of `harness test`. `-v/--verbose` (global) streams the tests' output.
#[derive(Debug, clap::Args)]
pub struct TestArgs {
    /// Suites to run (default: every configured suite).
    pub suites: Vec<String>,
    #[command(flatten)]
    pub sel: Selection,
    /// A previous results folder whose package durations balance the shards.
    #[arg(long, value_name = "DIR", requires = "shard")]
    pub shard_durations: Option<PathBuf>,
    /// Results folder (default: a new folder under the results dir, linked as `latest`).
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
    /// Run on this Linux host instead of the VM (no VM needed; for trying a suite).
    #[arg(long)]
    pub local: bool,
}

pub fn run(ctx: &Context, args: &TestArgs) -> anyhow::Result<ExitCode> {
    let _vm_in_use = if args.local {
        None
    } else {
        crate::guest::hold_vm(ctx)?
    };
    let req = SuitesRequest {
        suites: args.suites.clone(),
        sel: args.sel.clone(),
        durations: args
            .shard_durations
            .as_deref()
            .map(durations)
            .transpose()
            .context("reading --shard-durations")?,
        out: args.out.clone(),
    };
    let (mut exec, base_prov) = executor(ctx, args.local)?;
    let results = run_suites(ctx, exec.as_mut(), &base_prov, &req)?;
    print_results(ctx, &results)?;
    Ok(ExitCode::from(worst_exit(&results)))
}
