//! What every command gets: the effective configuration, resolved directories, output mode and
//! the Ctrl-C flag.

use std::path::PathBuf;

use crate::config::{Config, Layered};

/// Set by Ctrl-C (SIGINT/SIGTERM/SIGHUP); long work polls it and stops cleanly.
pub use hostproc::Cancel;

/// Directories harness writes to, resolved from `[paths]` and XDG.
#[derive(Debug, Clone)]
pub struct Paths {
    pub cache: PathBuf,
    pub state: PathBuf,
    pub results: PathBuf,
    /// The history database file.
    pub history: PathBuf,
}

impl Paths {
    /// `[paths]` keys win; otherwise the XDG cache and state dirs.
    pub fn resolve(cfg: &Config) -> anyhow::Result<Paths> {
        let dirs = directories::ProjectDirs::from("", "", "harness");
        let pick = |configured: &Option<PathBuf>, xdg: Option<PathBuf>, what: &str| {
            configured
                .clone()
                .map(|p| expand_home(&p))
                .or(xdg)
                .ok_or_else(|| {
                    anyhow::anyhow!(
                        "cannot find a home directory for the {what} dir; set [paths] {what} in the config or HARNESS_{}_DIR",
                        what.to_uppercase()
                    )
                })
        };
        let cache = pick(
            &cfg.paths.cache,
            dirs.as_ref().map(|d| d.cache_dir().to_path_buf()),
            "cache",
        )?;
        let state = pick(
            &cfg.paths.state,
            dirs.as_ref().map(|d| {
                d.state_dir()
                    .unwrap_or_else(|| d.data_local_dir())
                    .to_path_buf()
            }),
            "state",
        )?;
        let results = cfg
            .paths
            .results
            .as_ref()
            .map(|p| expand_home(p))
            .unwrap_or_else(|| state.join("results"));
        let history = cfg
            .paths
            .history
            .as_ref()
            .map(|p| expand_home(p))
            .unwrap_or_else(|| state.join("history.sqlite"));
        Ok(Paths {
            cache,
            state,
            results,
            history,
        })
    }
}

/// `~/x` → `$HOME/x`, so config files can name paths the way people write them.
pub fn expand_home(p: &std::path::Path) -> PathBuf {
    match (p.strip_prefix("~"), std::env::var_os("HOME")) {
        (Ok(rest), Some(home)) => PathBuf::from(home).join(rest),
        _ => p.to_path_buf(),
    }
}

/// Everything a command handler needs.
#[derive(Debug)]
pub struct Context {
    /// The effective configuration.
    pub config: Config,
    /// The configuration with the origin of each value (for `config show`).
    pub layered: Layered,
    pub paths: Paths,
    /// Print one JSON document on stdout instead of text.
    pub json: bool,
    /// -v count minus -q count.
    pub verbosity: i8,
    pub cancel: Cancel,
    /// Set for one VM of `harness run --vms N` (its name): progress lines start with `[name] `,
    /// and no spinners or GitHub Actions groups are drawn, since several VMs print at once.
    pub label: Option<String>,
    /// Where progress is rendered, chosen on first use ([`Context::output`]).
    pub render: std::sync::OnceLock<crate::render::Output>,
}

impl Context {
    /// Where the VM's disks, state and cache live.
    pub fn vm_dirs(&self) -> provision::vm::VmDirs {
        provision::vm::VmDirs {
            state: self.paths.state.clone(),
            cache: self.paths.cache.clone(),
        }
    }

    /// Whether to draw progress bars: on a terminal, not quiet, not JSON, not one of many VMs.
    pub fn progress(&self) -> bool {
        use std::io::IsTerminal;
        !self.json && self.verbosity >= 0 && self.label.is_none() && std::io::stderr().is_terminal()
    }

    /// The renderer everything reporting progress in this context goes through, chosen once
    /// from its output mode ([`crate::render::Mode`]).
    pub fn output(&self) -> &crate::render::Output {
        self.render
            .get_or_init(|| crate::render::Output::for_context(self))
    }

    /// Sends a VM event to this context's renderer.
    pub fn show_vm(&self, e: &provision::vm::VmEvent) {
        self.output().emit(&crate::render::Event::Vm(e));
    }

    /// Options for an artifacts client with this context's cache, Ctrl-C flag, stall allowance
    /// and progress rendering (`artifacts` draws nothing: its [`artifacts::FetchEvent`]s go to
    /// the renderer); callers add the API URL, token or offline mode where they need them.
    pub fn fetch_options(&self) -> artifacts::FetchOptions {
        let mut opts = artifacts::FetchOptions::new(self.paths.cache.clone());
        opts.cancel = Some(self.cancel.clone());
        opts.stall_timeout = self.config.github.stall();
        let out = self.output().clone();
        opts.events = artifacts::FetchSink::new(move |e| out.emit(&crate::render::Event::Fetch(e)));
        opts
    }

    /// Clears whatever the renderer still draws (a spinner an error cut short).
    pub fn finish_output(&self) {
        if let Some(o) = self.render.get() {
            o.finish();
        }
    }

    /// What progress lines start with: `[name] ` for one VM of many, else nothing.
    pub fn tag(&self) -> String {
        self.label
            .as_ref()
            .map(|l| format!("[{l}] "))
            .unwrap_or_default()
    }

    /// The context for one VM of many: `[vm] name` set to `name` (with a free SSH port), its
    /// progress lines tagged with the name; the same paths, output mode and Ctrl-C flag.
    pub fn for_vm(&self, name: &str) -> Context {
        let mut config = self.config.clone();
        config.vm.name = name.to_string();
        config.vm.port = 0;
        Context {
            config,
            layered: self.layered.clone(),
            paths: self.paths.clone(),
            json: self.json,
            verbosity: self.verbosity,
            cancel: self.cancel.clone(),
            label: Some(name.to_string()),
            render: Default::default(),
        }
    }
}

#[cfg(test)]
impl Context {
    /// The built-in defaults, with every directory under `dir`.
    pub fn for_test(dir: &std::path::Path) -> Context {
        let layered = crate::config::load(&crate::config::Sources {
            cwd: dir.to_path_buf(),
            ..Default::default()
        })
        .expect("defaults load");
        Context {
            config: layered.config.clone(),
            layered,
            paths: Paths {
                cache: dir.join("cache"),
                state: dir.join("state"),
                results: dir.join("results"),
                history: dir.join("state/history.sqlite"),
            },
            json: false,
            verbosity: 0,
            cancel: Cancel::default(),
            label: None,
            render: Default::default(),
        }
    }
}
