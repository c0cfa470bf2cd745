//! `harness install` (the efW runtime) and `harness ext install|remove|list` (extensions).
//!
//! Thin: fetch the build with `artifacts`, open a guest session, call `provision::install`, print
//! its events and result. The helpers are public so `harness up` can run the same steps.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Args, Subcommand};

use artifacts::{BuildSourceConfig, Fetcher, SourceSpec};
use provision::install::{
    self, BuildToInstall, ExtensionState, InstallEvent, InstallOptions, InstallOutcome,
    InstallReport, InstalledBuild,
};
use provision::session::Session;

use crate::cmd::download::fetch_options;
use crate::cmd::guest::{ConnectArgs, connect};
use crate::context::{Context, expand_home};

/// Arguments of `harness install`.
#[derive(Debug, Args)]
pub struct InstallArgs {
    #[command(flatten)]
    pub connect: ConnectArgs,
    #[command(flatten)]
    pub efw: EfwArgs,
}

/// Which efW build to install, and how (`harness install`, `up`, `run`).
#[derive(Debug, Clone, Default, Args)]
pub struct EfwArgs {
    /// Which efW build: main, run:<id>, release:<version>, file:<zip or dir>, url:<https://…>
    /// (default: `[efw] source`).
    #[arg(long, value_name = "SPEC")]
    pub source: Option<String>,
    /// Reinstall efW even if the same build is installed and verified.
    #[arg(long)]
    pub force: bool,
    /// Use only cached builds; never touch the network.
    #[arg(long)]
    pub offline: bool,
}

impl EfwArgs {
    /// `--source none`, or `[efw] source = "none"` without `--source`: no efW runtime.
    pub fn none(&self, ctx: &Context) -> bool {
        crate::cmd::pipeline::efw_none(self.source.as_deref().unwrap_or(&ctx.config.efw.source))
    }

    /// Fetches (or takes from the cache) the efW build.
    pub fn fetch(&self, ctx: &Context) -> anyhow::Result<BuildToInstall> {
        fetch_build(
            ctx,
            &ctx.config.efw,
            self.source.as_deref(),
            self.offline,
            "efW",
        )
    }
}

/// `harness ext …`.
#[derive(Debug, Subcommand)]
pub enum ExtCmd {
    /// Install (or reinstall) extensions: the named one, or every enabled one.
    Install {
        #[command(flatten)]
        connect: ConnectArgs,
        /// Extension name (`[extensions.NAME]`).
        name: Option<String>,
        /// Build source for this install (default: `[extensions.NAME.build] source`).
        #[arg(long, value_name = "SPEC")]
        source: Option<String>,
        /// Use only cached builds.
        #[arg(long)]
        offline: bool,
    },
    /// Remove extensions: the named one, or every configured one.
    Remove {
        #[command(flatten)]
        connect: ConnectArgs,
        /// Extension name.
        name: Option<String>,
    },
    /// Show each configured extension's service and program types in the guest.
    List {
        #[command(flatten)]
        connect: ConnectArgs,
    },
}

/// `harness install`.
pub fn run(ctx: &Context, args: &InstallArgs) -> anyhow::Result<ExitCode> {
    if args.efw.none(ctx) {
        anyhow::bail!(
            "nothing to install: the efW source is \"none\" (set [efw] source or pass --source main, run:<id>, …)"
        );
    }
    let build = args.efw.fetch(ctx).context("fetching the efW build")?;
    let _vm_in_use = crate::guest::hold_vm(ctx)?;
    let mut session = connect(ctx, &args.connect)?;
    let mut printer = EventPrinter::new(ctx);
    let force = args.efw.force;
    let report = install_runtime(ctx, &mut session, &build, force, None, &mut |e| {
        printer.on_event(e)
    })?;
    if ctx.json {
        let doc = serde_json::json!({ "report": report, "events": printer.events });
        println!("{}", serde_json::to_string_pretty(&doc)?);
    } else {
        print_report(&report);
    }
    Ok(ExitCode::SUCCESS)
}

/// `harness ext …`.
pub fn run_ext(ctx: &Context, cmd: &ExtCmd) -> anyhow::Result<ExitCode> {
    // Bad names are reported before anything touches the network or the guest.
    let (names, connect_args) = match cmd {
        ExtCmd::Install { name, connect, .. } => (chosen(ctx, name.as_deref(), true)?, connect),
        ExtCmd::Remove { name, connect } => (chosen(ctx, name.as_deref(), false)?, connect),
        ExtCmd::List { connect } => (Vec::new(), connect),
    };
    let _vm_in_use = crate::guest::hold_vm(ctx)?;
    let mut session = connect(ctx, connect_args)?;
    match cmd {
        ExtCmd::Install {
            source, offline, ..
        } => {
            let mut printer = EventPrinter::new(ctx);
            let states = install_extensions(
                ctx,
                &mut session,
                &names,
                source.as_deref(),
                *offline,
                &mut |e| printer.on_event(e),
            )?;
            print_states(ctx, &states, &printer.events)?;
        }
        ExtCmd::Remove { .. } => {
            let mut states = Vec::new();
            let mut printer = EventPrinter::new(ctx);
            for n in &names {
                let cfg = &ctx.config.extensions[n].install;
                states.push(install::remove_extension(&mut session, n, cfg, &mut |e| {
                    printer.on_event(e)
                })?);
            }
            print_states(ctx, &states, &printer.events)?;
        }
        ExtCmd::List { .. } => {
            let configs: Vec<_> = ctx
                .config
                .extensions
                .iter()
                .map(|(n, e)| (n.clone(), e.install.clone()))
                .collect();
            let states = install::list_extensions(&mut session, &configs)?;
            print_states(ctx, &states, &[])?;
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Fetches and installs the named extensions in order (`harness up` passes the enabled ones).
pub fn install_extensions(
    ctx: &Context,
    session: &mut Session,
    names: &[String],
    source: Option<&str>,
    offline: bool,
    on_event: &mut dyn FnMut(&InstallEvent),
) -> anyhow::Result<Vec<ExtensionState>> {
    let mut states = Vec::new();
    for n in names {
        let entry = ctx
            .config
            .extensions
            .get(n)
            .with_context(|| format!("no extension `{n}` in the configuration"))?;
        let mut build_cfg = entry.build.clone();
        if build_cfg.expect.is_empty() {
            build_cfg.expect = vec![
                entry.install.driver.clone(),
                entry.install.export_tool.clone(),
            ];
        }
        let build = fetch_build(ctx, &build_cfg, source, offline, n)
            .with_context(|| format!("fetching the {n} build"))?;
        states.push(install::install_extension(
            session,
            n,
            &entry.install,
            &build,
            &ctx.config.install,
            on_event,
        )?);
    }
    Ok(states)
}

/// The extensions `harness up` installs: every configured one with `enabled = true`.
pub fn enabled_extensions(ctx: &Context) -> Vec<String> {
    ctx.config
        .extensions
        .iter()
        .filter(|(_, e)| e.install.enabled)
        .map(|(n, _)| n.clone())
        .collect()
}

/// Installs `build` with the configured options, keeps logs in `results_dir` (default: a new
/// `<results>/install-<unix time>` folder) under `install-logs/`, and
/// records what is installed in host state (`<state>/vms/<vm>/installed.json`).
pub fn install_runtime(
    ctx: &Context,
    session: &mut Session,
    build: &BuildToInstall,
    force: bool,
    results_dir: Option<&Path>,
    on_event: &mut dyn FnMut(&InstallEvent),
) -> anyhow::Result<InstallReport> {
    let results_dir = results_dir
        .map(Path::to_path_buf)
        .unwrap_or_else(|| ctx.paths.results.join(format!("install-{}", unix_now())));
    let mut opts = InstallOptions::new(ctx.config.install.clone(), results_dir);
    opts.force = force;
    opts.cancel = Some(ctx.cancel.clone());
    opts.psexec_candidates = psexec_candidates(ctx);
    if session.os() == provision::GuestOs::Windows
        && !build.local_dir.join("PsExec64.exe").is_file()
        && !opts.psexec_candidates.iter().any(|p| p.is_file())
        && !ctx.config.install.psexec_url.is_empty()
    {
        // Once per host: the guest may have no internet, so the host fetches PSTools for it.
        match fetch_psexec(ctx, &ctx.config.install.psexec_url, &tools_dir(ctx)) {
            Ok(p) => on_event(&InstallEvent::Notice {
                message: format!("downloaded PsExec64.exe to {}", p.display()),
            }),
            Err(e) => tracing::warn!("could not download PsExec64.exe: {e:#}"),
        }
    }
    let report = install::install_runtime(session, build, &opts, on_event)?;
    let state = install::host_record_path(&ctx.paths.state, &ctx.config.vm.name);
    install::save_host_record(&state, &report.record)
        .with_context(|| format!("recording the installed build in {}", state.display()))?;
    Ok(report)
}

fn tools_dir(ctx: &Context) -> PathBuf {
    ctx.paths.cache.join("tools")
}

/// Downloads Sysinternals PSTools from `url` and keeps its `PsExec64.exe` in `tools`.
pub fn fetch_psexec(ctx: &Context, url: &str, tools: &Path) -> anyhow::Result<PathBuf> {
    std::fs::create_dir_all(tools).with_context(|| format!("creating {}", tools.display()))?;
    let fetcher = Fetcher::new(fetch_options(ctx))?;
    let zip = tools.join("PSTools.zip");
    fetcher
        .download_to(url, &zip, None)
        .with_context(|| format!("downloading {url}"))?;
    let staging = tempfile::Builder::new()
        .prefix(".pstools-")
        .tempdir_in(tools)
        .context("creating a staging directory")?;
    let unpacked = staging.path().join("x");
    artifacts::unpack_zip(&zip, &unpacked, &artifacts::UnpackLimits::default())
        .with_context(|| format!("unpacking {}", zip.display()))?;
    let found = unpacked.join("PsExec64.exe");
    anyhow::ensure!(
        found.is_file(),
        "{url} has no PsExec64.exe at its root; download PSTools by hand and set [install] psexec"
    );
    let dest = tools.join("PsExec64.exe");
    std::fs::rename(&found, &dest)
        .with_context(|| format!("moving PsExec64.exe to {}", dest.display()))?;
    let _ = std::fs::remove_file(&zip);
    Ok(dest)
}

/// Where PsExec64.exe may be on the host: `[install] psexec`, then `<cache>/tools/PsExec64.exe`.
pub fn psexec_candidates(ctx: &Context) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = ctx
        .config
        .install
        .psexec
        .iter()
        .map(|p| expand_home(p))
        .collect();
    v.push(tools_dir(ctx).join("PsExec64.exe"));
    v
}

/// Fetches (or takes from the cache) a build and describes it for the installer.
pub fn fetch_build(
    ctx: &Context,
    cfg: &BuildSourceConfig,
    source: Option<&str>,
    offline: bool,
    what: &str,
) -> anyhow::Result<BuildToInstall> {
    let spec = SourceSpec::parse(source.unwrap_or(&cfg.source))
        .with_context(|| format!("reading the {what} source spec"))?;
    let mut opts = fetch_options(ctx);
    opts.api_url = ctx.config.github.api_url.clone();
    opts.token = artifacts::token_from_env();
    opts.offline = offline;
    let build = Fetcher::new(opts)?.fetch(cfg, &spec)?;
    for w in &build.warnings {
        if !ctx.json {
            eprintln!("{}warning: {w}", ctx.tag());
        }
    }
    Ok(BuildToInstall {
        local_dir: build.path.clone(),
        provenance: InstalledBuild {
            key: build.meta.key.clone(),
            source: build.meta.source.clone(),
            repo: build.meta.repo.clone(),
            run_id: build.meta.run_id,
            head_sha: build.meta.head_sha.clone(),
            version: build.meta.version.clone(),
        },
    })
}

fn chosen(ctx: &Context, name: Option<&str>, only_enabled: bool) -> anyhow::Result<Vec<String>> {
    match name {
        Some(n) if ctx.config.extensions.contains_key(n) => Ok(vec![n.to_string()]),
        Some(n) => anyhow::bail!(
            "no extension `{n}` in the configuration (configured: {}); add an [extensions.{n}] section",
            ctx.config
                .extensions
                .keys()
                .cloned()
                .collect::<Vec<_>>()
                .join(", ")
        ),
        None if only_enabled => Ok(enabled_extensions(ctx)),
        None => Ok(ctx.config.extensions.keys().cloned().collect()),
    }
}

/// Renders install events as plain progress lines on stderr (text mode) and keeps them for
/// `--json`.
pub struct EventPrinter {
    json: bool,
    quiet: bool,
    /// Every event seen, for `--json`.
    pub events: Vec<InstallEvent>,
    /// `[name] ` for one VM of many.
    tag: String,
}

impl EventPrinter {
    pub fn new(ctx: &Context) -> Self {
        EventPrinter {
            json: ctx.json,
            quiet: ctx.verbosity < 0,
            events: Vec::new(),
            tag: ctx.tag(),
        }
    }

    pub fn on_event(&mut self, e: &InstallEvent) {
        self.events.push(e.clone());
        if self.json || self.quiet {
            return;
        }
        match e {
            InstallEvent::StepStarted { .. } => {}
            InstallEvent::StepFinished { step, elapsed, ok } => {
                let mark = if *ok { "ok" } else { "FAILED" };
                eprintln!(
                    "{}  {mark:>6} {:<30} {:>6.1}s",
                    self.tag,
                    step.label(),
                    elapsed.as_secs_f64()
                );
            }
            InstallEvent::Skipped { reason } => eprintln!("{}  {:>6} {reason}", self.tag, "skip"),
            InstallEvent::Notice { message } => {
                eprintln!("{}  {:>6} {message}", self.tag, "note")
            }
        }
    }
}

fn print_report(report: &InstallReport) {
    let r = &report.record;
    let what = match &report.outcome {
        InstallOutcome::AlreadyInstalled => "already installed".to_string(),
        InstallOutcome::Installed { replaced: None } => "installed".to_string(),
        InstallOutcome::Installed {
            replaced: Some(old),
        } => format!("installed (replaced {})", old.key),
    };
    println!("efW runtime {what}: {}", r.build.key);
    let opt = |v: &Option<String>| v.clone().unwrap_or_else(|| "-".into());
    println!("  source   {}", r.build.source);
    println!(
        "  run id   {}",
        r.build.run_id.map_or("-".into(), |v| v.to_string())
    );
    println!("  head sha {}", opt(&r.build.head_sha));
    println!("  version  {}", opt(&r.build.version));
    println!("  method   {}", install::plan::method_name(r.method));
    println!("  in guest {}", r.guest_dir);
    for c in &report.checks {
        println!(
            "  {:<4} {:<28} {}",
            if c.ok { "ok" } else { "FAIL" },
            c.name,
            c.detail
        );
    }
    if let Some(dir) = report.logs.first().and_then(|p| p.parent()) {
        println!("  logs     {}", dir.display());
    }
}

fn print_states(
    ctx: &Context,
    states: &[ExtensionState],
    events: &[InstallEvent],
) -> anyhow::Result<()> {
    if ctx.json {
        let doc = serde_json::json!({ "extensions": states, "events": events });
        println!("{}", serde_json::to_string_pretty(&doc)?);
        return Ok(());
    }
    if states.is_empty() {
        println!("no extensions configured");
    }
    for s in states {
        println!(
            "{:<14} service {:<14} {:<10} program types: {} present{}",
            s.name,
            s.service,
            s.status.as_deref().unwrap_or("absent"),
            s.program_types_present.len(),
            if s.program_types_missing.is_empty() {
                String::new()
            } else {
                format!(", missing {}", s.program_types_missing.join(", "))
            }
        );
    }
    Ok(())
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use testsupport::github::{GithubStandIn, zip_of};

    #[test]
    fn psexec_comes_from_pstools_once() {
        let d = tempfile::tempdir().unwrap();
        let ctx = Context::for_test(d.path());
        let gh = GithubStandIn::start();
        let zip = zip_of(&[
            ("PsExec.exe", b"MZ32".as_slice()),
            ("PsExec64.exe", b"MZ64".as_slice()),
            ("Eula.txt", b"eula".as_slice()),
        ]);
        gh.add_release_in("sysinternals/pstools", "v1", "PSTools.zip", zip);
        let url = format!(
            "{}/sysinternals/pstools/releases/download/v1/PSTools.zip",
            gh.url()
        );
        let tools = d.path().join("cache/tools");
        let p = fetch_psexec(&ctx, &url, &tools).unwrap();
        assert_eq!(p, tools.join("PsExec64.exe"));
        assert_eq!(std::fs::read(&p).unwrap(), b"MZ64");
        assert!(
            psexec_candidates(&ctx).contains(&p),
            "install looks where it was put"
        );
        let leftovers: Vec<_> = std::fs::read_dir(&tools)
            .unwrap()
            .flatten()
            .map(|e| e.file_name())
            .collect();
        assert_eq!(leftovers, vec![std::ffi::OsString::from("PsExec64.exe")]);

        // A zip without PsExec64.exe is a clear error.
        gh.add_release_in(
            "sysinternals/pstools",
            "v2",
            "PSTools.zip",
            zip_of(&[("x.txt", b"x".as_slice())]),
        );
        let url = format!(
            "{}/sysinternals/pstools/releases/download/v2/PSTools.zip",
            gh.url()
        );
        let e = fetch_psexec(&ctx, &url, &d.path().join("t2")).unwrap_err();
        assert!(format!("{e:#}").contains("no PsExec64.exe"), "{e:#}");
    }
}
