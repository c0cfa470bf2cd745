//! The `harness` binary: parse the command line, load the configuration, dispatch, and turn
//! errors into a message and an exit code (0 ok, 1 test failures, 2 harness or infrastructure
//! error, 130 interrupted).

mod cli;
mod cmd;
mod config;
mod context;
mod crash;
mod doctor;
mod gha;
mod guest;
mod guest_doctor;
mod iso;
mod multi;
mod phases;
mod pipeline;
mod render;

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
    // Needs no configuration: works even where a harness.toml is broken.
    if let Command::Explain(a) = &cli.command {
        return report(cmd::explain::run(cli.global.json, a));
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
            if cli.global.json {
                let doc = serde_json::json!({
                    "ok": false,
                    "error": "invalid configuration",
                    "file": cli.global.config,
                    "problems": e.problems_json(),
                });
                println!("{}", serde_json::to_string_pretty(&doc).unwrap_or_default());
            }
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
        label: None,
        render: Default::default(),
    };
    let result = cmd::dispatch(&ctx, &cli.command);
    ctx.finish_output();
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
            eprint!("{}", error_text(&e));
            ExitCode::from(2)
        }
    }
}

/// `error: …` and one `caused by: …` line per cause in the chain, leaving out a cause whose text
/// an earlier line already shows (library errors often include their source in their message).
fn error_text(e: &anyhow::Error) -> String {
    let mut out = format!("error: {e}\n");
    let mut shown = vec![e.to_string()];
    for cause in e.chain().skip(1) {
        let text = cause.to_string();
        if text.trim().is_empty() || shown.iter().any(|s| s.contains(&text)) {
            continue;
        }
        out.push_str(&format!("  caused by: {text}\n"));
        shown.push(text);
    }
    out
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

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("opening the lock ({0})")]
    struct Wraps(#[source] std::io::Error);

    #[test]
    fn a_cause_already_in_a_message_is_not_repeated() {
        let io = std::io::Error::other("permission denied");
        let e = anyhow::Error::new(Wraps(io)).context("bringing VM 'x' up");
        let text = error_text(&e);
        assert_eq!(
            text,
            "error: bringing VM 'x' up\n  caused by: opening the lock (permission denied)\n"
        );
        assert_eq!(text.matches("permission denied").count(), 1, "{text}");
    }

    #[test]
    fn distinct_causes_are_all_shown_in_order() {
        let e = anyhow::anyhow!("root cause")
            .context("middle")
            .context("top");
        assert_eq!(
            error_text(&e),
            "error: top\n  caused by: middle\n  caused by: root cause\n"
        );
    }
}
