//! The install phases: an efW (or extension) build fetched through `artifacts` and installed
//! in the guest through `provision::install`.

use std::path::{Path, PathBuf};

use anyhow::Context as _;
use artifacts::{BuildSourceConfig, Fetcher, SourceSpec};
use provision::install::{
    self, BuildToInstall, ExtensionState, InstallEvent, InstallOptions, InstallReport,
    InstalledBuild,
};
use provision::session::Session;

use crate::context::{Context, expand_home};
use crate::render::Event;

/// Which efW build to install, and how (`install`, `up`, `run`).
#[derive(Debug, Clone, Default)]
pub struct EfwRequest {
    /// Build source spec (default: `[efw] source`).
    pub source: Option<String>,
    /// Reinstall even if the same build is installed and verified.
    pub force: bool,
    /// Use only cached builds; never touch the network.
    pub offline: bool,
}

impl EfwRequest {
    /// `none` as the source, or `[efw] source = "none"` without one: no efW runtime.
    pub fn none(&self, ctx: &Context) -> bool {
        super::efw_none(self.source.as_deref().unwrap_or(&ctx.config.efw.source))
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

/// The configured install options, Ctrl-C and the host's PsExec candidates, logs under
/// `results_dir`.
fn install_options(ctx: &Context, results_dir: PathBuf) -> InstallOptions {
    let mut opts = InstallOptions::new(ctx.config.install.clone(), results_dir);
    opts.cancel = Some(ctx.cancel.clone());
    opts.psexec_candidates = psexec_candidates(ctx);
    opts
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
    let mut opts = install_options(ctx, results_dir);
    opts.force = force;
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

/// After a crash: the runtime put back when the reboot lost it (a guest whose disk is RAM), as
/// `install` would, a no-op when it still verifies. Install logs go to `results_dir`.
pub fn reinstall_hook(
    ctx: &Context,
    build: BuildToInstall,
    results_dir: &Path,
) -> crate::crash::Reinstall {
    let opts = install_options(ctx, results_dir.to_path_buf());
    let state = install::host_record_path(&ctx.paths.state, &ctx.config.vm.name);
    Box::new(move |session: &mut Session| {
        let r = install::install_runtime(session, &build, &opts, &mut |_| {})
            .map_err(|e| e.to_string())?;
        if let Err(e) = install::save_host_record(&state, &r.record) {
            tracing::warn!(
                "recording the reinstalled build in {}: {e}",
                state.display()
            );
        }
        Ok(match r.outcome {
            install::InstallOutcome::AlreadyInstalled => "the efW runtime still verifies",
            install::InstallOutcome::Installed { .. } => {
                "reinstalled the efW runtime (the reboot lost it)"
            }
        }
        .to_string())
    })
}

fn tools_dir(ctx: &Context) -> PathBuf {
    ctx.paths.cache.join("tools")
}

/// Downloads Sysinternals PSTools from `url` and keeps its `PsExec64.exe` in `tools`.
fn fetch_psexec(ctx: &Context, url: &str, tools: &Path) -> anyhow::Result<PathBuf> {
    std::fs::create_dir_all(tools).with_context(|| format!("creating {}", tools.display()))?;
    let fetcher = Fetcher::new(ctx.fetch_options())?;
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
fn psexec_candidates(ctx: &Context) -> Vec<PathBuf> {
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
fn fetch_build(
    ctx: &Context,
    cfg: &BuildSourceConfig,
    source: Option<&str>,
    offline: bool,
    what: &str,
) -> anyhow::Result<BuildToInstall> {
    let spec = SourceSpec::parse(source.unwrap_or(&cfg.source))
        .with_context(|| format!("reading the {what} source spec"))?;
    let mut opts = ctx.fetch_options();
    opts.api_url = ctx.config.github.api_url.clone();
    opts.token = artifacts::token_from_env();
    opts.offline = offline;
    let build = Fetcher::new(opts)?.fetch(cfg, &spec)?;
    for w in &build.warnings {
        ctx.output().emit(&Event::Warning(w));
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

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Sends install events to the context's renderer and keeps them for `--json`.
pub struct EventPrinter {
    out: crate::render::Output,
    /// Every event seen, for `--json`.
    pub events: Vec<InstallEvent>,
}

impl EventPrinter {
    pub fn new(ctx: &Context) -> Self {
        EventPrinter {
            out: ctx.output().clone(),
            events: Vec::new(),
        }
    }

    pub fn on_event(&mut self, e: &InstallEvent) {
        self.events.push(e.clone());
        self.out.emit(&crate::render::Event::Install(e));
    }
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
