//! The `harness` binary: parse the command line, load the configuration, dispatch, and turn
//! errors into a message and an exit code (0 ok, 1 test failures, 2 harness or infrastructure
//! error, 130 interrupted).

mod cli;
mod cmd;
mod config;
mod context;
mod doctor;
mod gha;
mod guest;
mod phases;

use std::process::ExitCode;

use clap::Parser;

use crate::cli::{Cli, Command};
use crate::context::{Cancel, Context, Paths};

fn main() -> ExitCode {
    let cli = Cli::parse();
    let verbosity = cli.global.verbose as i8 - cli.global.quiet as i8;
    init_tracing(verbosity);

    if let Command::Completions(a) = &cli.command {
        return report(cmd::completions::run(a));
    }

    let cancel = Cancel::default();
    {
        let cancel = cancel.clone();
        let _ = ctrlc::set_handler(move || {
            if !cancel.is_cancelled() {
                eprintln!(
                    "\ninterrupted: stopping cleanly (remote processes, VM, partial results)…"
                );
            }
            cancel.cancel();
        });
    }

    let sources = config::Sources {
        explicit_file: cli.global.config.clone(),
        cwd: std::env::current_dir().unwrap_or_default(),
        user_file: directories::ProjectDirs::from("", "", "harness")
            .map(|d| d.config_dir().join("config.toml")),
        env: std::env::vars().collect(),
        sets: cli.global.set.clone(),
    };
    let layered = match config::load(&sources) {
        Ok(l) => l,
        Err(e) => {
            eprintln!(
                "error: invalid configuration\n  {}",
                e.to_string().replace('\n', "\n  ")
            );
            return ExitCode::from(2);
        }
    };
    let paths = match Paths::resolve(&layered.config) {
        Ok(p) => p,
        Err(e) => return report(Err(e)),
    };
    let ctx = Context {
        config: layered.config.clone(),
        layered,
        paths,
        json: cli.global.json,
        verbosity,
        cancel,
    };
    let result = cmd::dispatch(&ctx, &cli.command);
    // One rule for every command: interrupted by Ctrl-C is 130, whatever the partial results
    // say (they are written, but they are not a verdict).
    if ctx.cancel.is_cancelled() {
        let _ = report(result);
        return ExitCode::from(130);
    }
    report(result)
}

fn report(result: anyhow::Result<ExitCode>) -> ExitCode {
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e}");
            for cause in e.chain().skip(1) {
                eprintln!("  caused by: {cause}");
            }
            ExitCode::from(2)
        }
    }
}

/// Logs go to stderr; `HARNESS_LOG` (a tracing filter) wins over -v/-q.
fn init_tracing(verbosity: i8) {
    use tracing_subscriber::EnvFilter;
    let level = match verbosity {
        i8::MIN..=-1 => "error",
        0 => "warn",
        1 => "info",
        2 => "debug",
        _ => "trace",
    };
    let filter = EnvFilter::try_from_env("HARNESS_LOG").unwrap_or_else(|_| EnvFilter::new(level));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .try_init();
}
