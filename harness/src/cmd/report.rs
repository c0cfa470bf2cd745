//! `harness report`: work on results folders after the fact.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;

use crate::context::Context;

/// `harness report` subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum ReportCmd {
    /// Merge the results folders of shards into one, equal to an unsharded run. Exits like
    /// `harness test` would have for the merged result (0 passed, 1 failures, 2 errors).
    Merge(MergeArgs),
}

/// Arguments of `harness report merge`.
#[derive(Debug, clap::Args)]
pub struct MergeArgs {
    /// The shards' results folders.
    #[arg(required = true, value_name = "DIR")]
    pub dirs: Vec<PathBuf>,
    /// Where to write the merged folder.
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
}

pub fn run(ctx: &Context, cmd: &ReportCmd) -> anyhow::Result<ExitCode> {
    match cmd {
        ReportCmd::Merge(a) => {
            let w = suites::merge(&a.dirs, &a.out).with_context(|| {
                format!(
                    "merging {} results folders into {}",
                    a.dirs.len(),
                    a.out.display()
                )
            })?;
            let s = &w.summary;
            if ctx.json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&serde_json::json!({"dir": w.dir, "summary": s}))?
                );
            } else {
                let t = &s.totals;
                println!(
                    "merged {} folders: {:?}: {} tests in {} packages, {}, {} flaky",
                    a.dirs.len(),
                    s.verdict,
                    t.tests,
                    t.packages,
                    t.counts(),
                    t.flaky
                );
                println!("results: {}", w.dir.display());
            }
            Ok(ExitCode::from(s.exit_code))
        }
    }
}
