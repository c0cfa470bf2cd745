//! `harness repro`: rerun a results folder's failures locally, on the same efW build.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::Args;
use suites::RunOptions;

use crate::cmd::pipeline::{self, UpArgs};
use crate::context::Context;
use crate::phases::Phases;

/// `harness repro`
#[derive(Debug, Args)]
pub struct ReproArgs {
    /// A results folder (or its junit.xml) from `harness run` or `harness test`.
    pub results: PathBuf,
    /// Only this failed test (`TestX` or `TestX/sub`).
    #[arg(long, value_name = "NAME")]
    pub test: Option<String>,
    /// Run each test N times.
    #[arg(long, value_name = "N", default_value_t = 1)]
    pub count: u32,
    /// Run with ebpf-go's `-trace-log` (an ETW trace of efW on Windows).
    #[arg(long)]
    pub trace_log: bool,
    /// Afterwards, open an SSH shell in the first failing package's directory.
    #[arg(long)]
    pub shell: bool,
    /// The suite the results came from (default: the one the results name).
    #[arg(long, value_name = "NAME")]
    pub suite: Option<String>,
    /// Install this efW build instead of the one the results record.
    #[arg(long, value_name = "SPEC")]
    pub source: Option<String>,
    /// Accept a guest host key that differs from the pinned one.
    #[arg(long)]
    pub accept_new_host_key: bool,
    /// Afterwards, prepare WinDbg: a debug build (`-gcflags=all=-N -l`) of the first failing
    /// package's test binary beside the efW PDBs, `_NT_SYMBOL_PATH`, and the steps.
    #[arg(long, conflicts_with = "shell")]
    pub debug: bool,
    /// Afterwards, run the first failing test's debug build under CDB in the guest with these
    /// commands (e.g. "bu ebpfapi!bpf; g; kb; q"); its output is saved as `debug/cdb.txt`.
    #[arg(long, value_name = "COMMANDS", conflicts_with = "shell")]
    pub cdb: Option<String>,
    /// Kill the `--cdb` run and everything it started after this many seconds.
    #[arg(long, value_name = "SECS", default_value_t = crate::cmd::cdb::DEFAULT_TIMEOUT_SECS, requires = "cdb")]
    pub cdb_timeout: u64,
}

/// The build the results were made with: its run when known, else its source spec.
fn recorded_source(p: &suites::Provenance) -> Option<String> {
    if let Some(id) = &p.efw_run_id {
        return Some(format!("run:{id}"));
    }
    p.efw_source
        .clone()
        .filter(|s| artifacts::SourceSpec::parse(s).is_ok())
}

/// The results folder of a `harness run` keeps the suite's results under `tests/`.
fn suite_results(path: &std::path::Path) -> PathBuf {
    if path.is_dir() && !path.join("junit.xml").exists() && path.join("tests/junit.xml").exists() {
        path.join("tests")
    } else {
        path.to_path_buf()
    }
}

pub fn run(ctx: &Context, args: &ReproArgs) -> anyhow::Result<ExitCode> {
    if args.debug {
        crate::cmd::debug::check(ctx)?;
    }
    if args.cdb.is_some() {
        crate::cmd::cdb::check(ctx, "repro --cdb")?;
    }
    let path = suite_results(&args.results);
    let (failed, prov) = suites::read_failures(&path)
        .with_context(|| format!("reading the failures in {}", args.results.display()))?;
    if failed.is_empty() {
        println!(
            "no failed tests in {}: nothing to reproduce",
            path.display()
        );
        return Ok(ExitCode::SUCCESS);
    }
    let plan = suites::repro_plan(&failed, args.test.as_deref(), args.count, args.trace_log);
    if plan.targets.is_empty() {
        let names: Vec<&str> = failed.iter().map(|(_, t)| t.as_str()).collect();
        anyhow::bail!(
            "no failed test named `{}` in {}; failed tests: {}",
            args.test.as_deref().unwrap_or(""),
            path.display(),
            names.join(", ")
        );
    }
    let dir = if path.is_dir() {
        path.clone()
    } else {
        path.parent().map(PathBuf::from).unwrap_or_default()
    };
    let suite_name = match &args.suite {
        Some(s) => s.clone(),
        None => match suites::results::read_summary(&dir) {
            Ok(s) if !s.run.suite.is_empty() => s.run.suite,
            _ if ctx.config.suites.len() == 1 => ctx.config.suites.keys().next().unwrap().clone(),
            _ => anyhow::bail!(
                "cannot tell which suite {} came from; name it with --suite",
                path.display()
            ),
        },
    };
    let suite = ctx
        .config
        .suites
        .get(&suite_name)
        .cloned()
        .with_context(|| {
            format!(
                "the results name suite `{suite_name}`, which the configuration lacks; use --suite"
            )
        })?;
    let source = args
        .source
        .clone()
        .or_else(|| prov.as_ref().and_then(recorded_source));
    if !ctx.json {
        eprintln!(
            "reproducing {} failed test(s) of suite `{suite_name}` on efW {}",
            plan.targets
                .iter()
                .map(|t| t.tests.as_ref().map_or(1, Vec::len))
                .sum::<usize>(),
            source.as_deref().unwrap_or("from the configuration")
        );
    }

    let mut phases = Phases::new(ctx);
    let up_args = UpArgs {
        source,
        accept_new_host_key: args.accept_new_host_key,
        ..UpArgs::default()
    };
    let ready = pipeline::up(ctx, &up_args, &mut phases, None)?;
    let mut session = ready.session.expect("full up opens a session");
    if args.trace_log && session.os() == provision::GuestOs::Windows {
        phases.run("etw", |_| {
            crate::guest_doctor::stop_etw_before_trace_log(&mut session)
        })?;
    }
    let endpoint = session.endpoint().clone();
    let known_hosts = session.options().known_hosts.clone();
    let mut prov = suites::Provenance {
        harness_version: env!("CARGO_PKG_VERSION").to_string(),
        ..Default::default()
    };
    crate::guest::fill_provenance(ctx, &mut prov);
    let mut exec = crate::guest::SessionExecutor::new(session);

    let module = crate::cmd::test::suite_module(&suite_name, &suite)?;
    let mut opts = RunOptions::new(suite_name.clone(), suite, &module);
    opts.targets = Some(plan.targets.clone());
    opts.extra_args = plan.args.clone();
    opts.rerun_fails = Some(0);
    opts.cancel = Some(ctx.cancel.clone());
    if let Some(v) = &prov.efw_version
        && !opts.suite.env.contains_key("CI_EFW_VERSION")
    {
        opts.extra_env.push(("CI_EFW_VERSION".into(), v.clone()));
    }
    let json = ctx.json;
    let record = phases.run("repro", |_| {
        let mut stream = |e: &suites::RunEvent<'_>, _: &suites::Execution| {
            if json {
                return;
            }
            match e {
                suites::RunEvent::Event(ev) => {
                    if let Some(o) = &ev.output {
                        eprint!("{o}");
                    }
                }
                suites::RunEvent::Output(l) => eprintln!("{l}"),
                _ => {}
            }
        };
        let r = suites::run(&mut exec, &opts, &mut stream)?;
        let t = r.execution.totals();
        Ok((r, format!("{} passed, {} failed", t.passed, t.failed)))
    })?;
    let out = suites::new_run_dir(&ctx.paths.results, &format!("repro-{suite_name}"))?;
    let written = suites::write(&out, &record, &prov)?;
    let os = suites::Executor::os(&exec);
    let host_mode = record.meta.mode == "host";
    let mut commands = Vec::new();
    for t in &plan.targets {
        let pkg_dir = record
            .package_dirs
            .iter()
            .find(|(p, _)| *p == t.package)
            .map(|(_, d)| d.as_str())
            .unwrap_or(".");
        let c = suites::repro_commands(&plan, t, &opts.suite.flags, host_mode, os, pkg_dir)?;
        commands.push(c);
    }
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({
                "dir": out,
                "summary": written.summary,
                "commands": commands,
            }))?
        );
    } else {
        print!(
            "{}",
            suites::render_console(&record.execution, &written.summary)
        );
        println!("results: {}", out.display());
        println!(
            "\nthe VM stays up for a closer look (`harness down` when done). The same by hand:"
        );
        for c in &commands {
            println!("  in the guest (`harness ssh`): {}", c.target);
            println!("  on the host, in the module:   {}", c.host);
        }
    }
    if args.debug || args.cdb.is_some() {
        let first = &plan.targets[0];
        let dir = record
            .package_dirs
            .iter()
            .find(|(p, _)| *p == first.package);
        crate::cmd::cdb::after_repro(
            ctx,
            &crate::cmd::debug::Target {
                package: &first.package,
                test: first
                    .tests
                    .as_ref()
                    .and_then(|t| t.first())
                    .map(String::as_str),
                start_dir: dir.map(|(_, d)| d.as_str()).unwrap_or("."),
                module: &module,
                host_go: &opts.host_go,
                results: &out,
            },
            args.debug,
            args.cdb.as_deref(),
            std::time::Duration::from_secs(args.cdb_timeout.max(1)),
        )?;
    }
    if args.shell {
        let first = &plan.targets[0].package;
        let dir = record
            .package_dirs
            .iter()
            .find(|(p, _)| p == first)
            .map(|(_, d)| d.clone())
            .unwrap_or_default();
        let remote = match endpoint.os {
            provision::GuestOs::Windows => format!(
                "powershell -NoExit -Command Set-Location {}",
                provision::session::wrap::ps_quote(&dir)
            ),
            provision::GuestOs::Linux => format!(
                "cd {} && exec \"${{SHELL:-sh}}\" -l",
                provision::session::wrap::sh_quote(&dir)
            ),
        };
        let argv =
            crate::cmd::guest::ssh_argv(&endpoint, &known_hosts, None, &["-t".to_string(), remote]);
        let status = std::process::Command::new(&argv[0])
            .args(&argv[1..])
            .status()
            .context("running the system ssh client (is openssh-client installed?)")?;
        if !status.success() {
            eprintln!("ssh exited with {status}");
        }
    }
    Ok(ExitCode::from(written.summary.exit_code))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recorded_source_prefers_the_exact_run() {
        let mut p = suites::Provenance {
            efw_source: Some("main".into()),
            efw_run_id: Some("42".into()),
            ..Default::default()
        };
        assert_eq!(recorded_source(&p).as_deref(), Some("run:42"));
        p.efw_run_id = None;
        assert_eq!(recorded_source(&p).as_deref(), Some("main"));
        p.efw_source = Some("release:1.0.0".into());
        assert_eq!(recorded_source(&p).as_deref(), Some("release:1.0.0"));
        p.efw_source = Some("scheduled-run".into());
        assert_eq!(recorded_source(&p), None);
    }
}
