//! `harness artifacts`: fetch, list and prune efW (and extension) builds in the cache.
//! Thin: parse, call the `artifacts` library, print text or `--json`.

use std::process::ExitCode;

use anyhow::Context as _;
use artifacts::{Build, BuildSourceConfig, Cache, Fetcher, SourceSpec};

use crate::context::Context;

/// `harness artifacts` subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum ArtifactsCmd {
    /// Find the build, download it once, verify and unpack it; print where it is.
    Fetch(FetchArgs),
    /// List cached builds, most recently fetched first.
    List,
    /// Delete cached builds, keeping the N most recent and the newest of each repository/artifact.
    Prune(PruneArgs),
}

/// Arguments of `harness artifacts fetch`.
#[derive(Debug, clap::Args)]
pub struct FetchArgs {
    /// main | run:<id> | release:<version> | file:<zip or dir> | url:<https://…zip>
    /// (default: the configured `source`).
    #[arg(long, value_name = "SPEC")]
    pub source: Option<String>,
    /// GitHub API base URL (default: [github] api_url, env HARNESS_GITHUB_API_URL).
    #[arg(long, value_name = "URL")]
    pub api_url: Option<String>,
    /// Never touch the network: take the newest cached build for the source.
    #[arg(long)]
    pub offline: bool,
    /// Fetch this extension's build ([extensions.NAME.build]) instead of efW's.
    #[arg(long, value_name = "NAME")]
    pub extension: Option<String>,
}

/// Arguments of `harness artifacts prune`.
#[derive(Debug, clap::Args)]
pub struct PruneArgs {
    /// How many of the most recently fetched builds to keep.
    #[arg(long, default_value_t = 3, value_name = "N")]
    pub keep: usize,
}

pub fn run(ctx: &Context, cmd: &ArtifactsCmd) -> anyhow::Result<ExitCode> {
    match cmd {
        ArtifactsCmd::Fetch(a) => fetch(ctx, a),
        ArtifactsCmd::List => list(ctx),
        ArtifactsCmd::Prune(a) => prune(ctx, a),
    }
}

fn build_config<'a>(
    ctx: &'a Context,
    extension: Option<&str>,
) -> anyhow::Result<&'a BuildSourceConfig> {
    match extension {
        None => Ok(&ctx.config.efw),
        Some(name) => ctx.config.extensions.get(name).map(|e| &e.build).with_context(|| {
            let known: Vec<&str> = ctx.config.extensions.keys().map(String::as_str).collect();
            format!(
                "no extension {name:?} in the configuration (configured: {}); add an [extensions.{name}.build] section",
                if known.is_empty() { "none".to_string() } else { known.join(", ") }
            )
        }),
    }
}

fn fetch(ctx: &Context, a: &FetchArgs) -> anyhow::Result<ExitCode> {
    let cfg = build_config(ctx, a.extension.as_deref())?;
    let spec_text = a.source.as_deref().unwrap_or(&cfg.source);
    let spec = SourceSpec::parse(spec_text)?;
    let mut opts = ctx.fetch_options();
    opts.api_url = a
        .api_url
        .clone()
        .unwrap_or_else(|| ctx.config.github.api_url.clone());
    opts.token = artifacts::token_from_env();
    opts.offline = a.offline;
    let build = Fetcher::new(opts)?.fetch(cfg, &spec).with_context(|| {
        format!(
            "fetching the {} build ({spec})",
            a.extension.as_deref().unwrap_or("efW")
        )
    })?;
    for w in &build.warnings {
        eprintln!("warning: {w}");
    }
    if ctx.json {
        println!("{}", serde_json::to_string_pretty(&build)?);
    } else {
        print_build(&build);
    }
    Ok(ExitCode::SUCCESS)
}

fn origin(b: &Build) -> String {
    let m = &b.meta;
    let mut parts = vec![m.source.clone()];
    if let Some(repo) = &m.repo {
        parts.push(repo.clone());
    }
    if let Some(run) = m.run_id {
        parts.push(format!("run {run}"));
    }
    if let Some(v) = &m.version {
        parts.push(format!("release {v}"));
    }
    if let Some(name) = &m.artifact {
        parts.push(name.clone());
    }
    parts.join(", ")
}

fn print_build(b: &Build) {
    let m = &b.meta;
    println!("build:   {}", b.path.display());
    println!("from:    {}", origin(b));
    if let Some(sha) = &m.head_sha {
        println!("commit:  {sha}");
    }
    if let Some(created) = &m.created {
        println!("created: {created}");
    }
    println!("sha256:  {} ({:.1} MB)", m.sha256, m.size as f64 / 1e6);
    let l = &b.layout;
    let has: Vec<&str> = [
        (l.setup_ebpf_ps1, "setup-ebpf.ps1"),
        (l.install_ebpf_psm1, "install_ebpf.psm1"),
        (l.msi, "ebpf-for-windows.msi"),
        (l.setup_sh, "setup.sh"),
    ]
    .into_iter()
    .filter_map(|(on, n)| on.then_some(n))
    .collect();
    println!(
        "layout:  {}",
        if has.is_empty() {
            "(custom)".into()
        } else {
            has.join(", ")
        }
    );
    println!(
        "cached:  {}",
        if b.cached {
            "yes (nothing downloaded)"
        } else {
            "no (downloaded now)"
        }
    );
}

fn list(ctx: &Context) -> anyhow::Result<ExitCode> {
    let cache = Cache::new(&ctx.paths.cache);
    let builds = cache
        .list()
        .with_context(|| format!("listing the cache {}", cache.root().display()))?;
    if ctx.json {
        println!("{}", serde_json::to_string_pretty(&builds)?);
        return Ok(ExitCode::SUCCESS);
    }
    if builds.is_empty() {
        println!(
            "no cached builds in {} (run `harness artifacts fetch`)",
            cache.root().display()
        );
        return Ok(ExitCode::SUCCESS);
    }
    for b in &builds {
        println!(
            "{:<24} {:>8.1} MB  fetched {}  {}",
            b.meta.key,
            b.meta.size as f64 / 1e6,
            b.meta.fetched,
            origin(b)
        );
        println!("{:<24} {}", "", b.path.display());
    }
    Ok(ExitCode::SUCCESS)
}

fn prune(ctx: &Context, a: &PruneArgs) -> anyhow::Result<ExitCode> {
    let cache = Cache::new(&ctx.paths.cache).with_lock_wait(
        artifacts::FetchOptions::new(&ctx.paths.cache).lock_timeout,
        Some(ctx.cancel.clone()),
    );
    let removed = cache
        .prune(a.keep)
        .with_context(|| format!("pruning the cache {}", cache.root().display()))?;
    let left = cache.list()?.len();
    if ctx.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({ "removed": removed, "kept": left }))?
        );
    } else {
        println!("removed {} cached builds, kept {left}", removed.len());
        for k in &removed {
            println!("  removed {k}");
        }
    }
    Ok(ExitCode::SUCCESS)
}
