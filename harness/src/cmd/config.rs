//! `harness config show|check`.

use std::process::ExitCode;

use crate::config::{Origin, Severity, leaf_keys, validate};
use crate::context::Context;

#[derive(Debug, clap::Subcommand)]
pub enum ConfigCmd {
    /// Print the effective configuration and where each value came from (secrets masked).
    Show,
    /// Validate the configuration; exit non-zero on any error.
    Check,
}

pub fn run(ctx: &Context, cmd: &ConfigCmd) -> anyhow::Result<ExitCode> {
    match cmd {
        ConfigCmd::Show => show(ctx),
        ConfigCmd::Check => check(ctx),
    }
}

/// Which environment variable holds the GitHub token, if any (never its value).
pub fn token_source() -> Option<&'static str> {
    ["GITHUB_TOKEN", "GH_TOKEN"]
        .into_iter()
        .find(|v| std::env::var(v).is_ok_and(|t| !t.trim().is_empty()))
}

fn show(ctx: &Context) -> anyhow::Result<ExitCode> {
    let value = toml::Value::try_from(&ctx.config)?;
    let table = value.as_table().expect("config serializes to a table");
    let mut rows = Vec::new();
    for key in leaf_keys(table, "") {
        let v = key
            .split('.')
            .try_fold(&value, |v, k| v.get(k))
            .expect("key came from the table");
        rows.push((key.clone(), v.clone(), ctx.layered.origin_of(&key)));
    }
    let token = token_source();
    if ctx.json {
        let values: Vec<_> = rows
            .iter()
            .map(|(k, v, o)| serde_json::json!({"key": k, "value": v, "origin": o.to_string()}))
            .collect();
        let doc = serde_json::json!({
            "file": ctx.layered.file,
            "paths": {"cache": ctx.paths.cache, "state": ctx.paths.state, "results": ctx.paths.results},
            "values": values,
            "github_token": token.map(|s| serde_json::json!({"value": "***", "origin": format!("env {s}")})),
        });
        println!("{}", serde_json::to_string_pretty(&doc)?);
        return Ok(ExitCode::SUCCESS);
    }
    match &ctx.layered.file {
        Some(f) => println!("# config file: {}", f.display()),
        None => println!("# config file: none (built-in defaults)"),
    }
    println!(
        "# dirs: cache {}, state {}, results {}",
        ctx.paths.cache.display(),
        ctx.paths.state.display(),
        ctx.paths.results.display()
    );
    let width = rows
        .iter()
        .map(|(k, v, _)| k.len() + v.to_string().len())
        .max()
        .unwrap_or(0)
        + 3;
    for (k, v, o) in &rows {
        let line = format!("{k} = {v}");
        match o {
            Origin::Default => println!("{line}"),
            o => println!("{line:width$}# {o}"),
        }
    }
    match token {
        Some(s) => println!("{:width$}# env {s}", "github.token = \"***\""),
        None => println!("# github.token: not set (GITHUB_TOKEN, GH_TOKEN or `gh auth token`)"),
    }
    Ok(ExitCode::SUCCESS)
}

fn check(ctx: &Context) -> anyhow::Result<ExitCode> {
    let problems = validate(&ctx.config);
    let errors = problems
        .iter()
        .filter(|p| p.severity == Severity::Error)
        .count();
    let what = ctx
        .layered
        .file
        .as_ref()
        .map_or("built-in defaults".to_string(), |f| f.display().to_string());
    if ctx.json {
        let doc =
            serde_json::json!({"file": ctx.layered.file, "ok": errors == 0, "problems": problems});
        println!("{}", serde_json::to_string_pretty(&doc)?);
    } else {
        for p in &problems {
            let sev = match p.severity {
                Severity::Error => "error",
                Severity::Warning => "warning",
            };
            eprintln!("{sev}: {} ({what}): {}", p.key, p.message);
        }
        if errors == 0 {
            println!("config ok: {what}");
        } else {
            eprintln!("config has {errors} error(s): {what}");
        }
    }
    Ok(if errors == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(2)
    })
}
