//! `harness completions <shell>`.

use std::process::ExitCode;

use clap::CommandFactory;

/// Arguments of `harness completions`.
#[derive(Debug, clap::Args)]
pub struct CompletionsArgs {
    /// bash, zsh, fish, elvish or powershell.
    pub shell: clap_complete::Shell,
}

pub fn run(args: &CompletionsArgs) -> anyhow::Result<ExitCode> {
    let mut cmd = crate::cli::Cli::command();
    clap_complete::generate(args.shell, &mut cmd, "harness", &mut std::io::stdout());
    Ok(ExitCode::SUCCESS)
}
