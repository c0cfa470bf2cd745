//! `harness repro`: rerun a results folder's failures locally, on the same efW build.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context as _;
use clap::Args;
use suites::RunOptions;

use crate::context::Context;
use crate::phases::Phases;
use crate::pipeline::{self, EfwRequest, UpRequest};

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
fn suite_results(path: &Path) -> PathBuf {
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
    let Some(failures) = read_failures(args)? else {
        return Ok(ExitCode::SUCCESS);
    };
    let plan = &failures.plan;
    let (suite_name, suite) = which_suite(ctx, args.suite.as_deref(), &failures.path)?;
    let source = args
        .source
        .clone()
        .or_else(|| failures.prov.as_ref().and_then(recorded_source));
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
    let mut guest = bring_up(ctx, args, source, &mut phases)?;
    let module = crate::pipeline::suite_module(&suite_name, &suite)?;
    let opts = run_options(ctx, suite_name.clone(), suite, &module, plan, &guest.prov);
    let record = phases.run("repro", || {
        let r = repro(&mut guest.exec, &opts, ctx.json)?;
        let t = r.execution.totals();
        Ok((r, format!("{} passed, {} failed", t.passed, t.failed)))
    })?;
    let out = suites::new_run_dir(&ctx.paths.results, &format!("repro-{suite_name}"))?;
    let written = suites::write(&out, &record, &guest.prov)?;
    let os = suites::Executor::os(&guest.exec);
    let commands = by_hand(plan, &record, &opts.suite.flags, os)?;
    print_outcome(ctx.json, &out, &written, &record, &commands)?;
    let first = &plan.targets[0];
    if args.debug || args.cdb.is_some() {
        let target = crate::cmd::debug::Target {
            package: &first.package,
            test: first
                .tests
                .as_ref()
                .and_then(|t| t.first())
                .map(String::as_str),
            start_dir: package_dir(&record, &first.package).unwrap_or("."),
            module: &module,
            host_go: &opts.host_go,
            results: &out,
        };
        crate::cmd::cdb::after_repro(
            ctx,
            &target,
            args.debug,
            args.cdb.as_deref(),
            std::time::Duration::from_secs(args.cdb_timeout.max(1)),
        )?;
    }
    if args.shell {
        let dir = package_dir(&record, &first.package).unwrap_or_default();
        open_shell(&guest.endpoint, &guest.known_hosts, dir)?;
    }
    Ok(ExitCode::from(written.summary.exit_code))
}

/// The failures a results folder records, and how to rerun them.
struct Failures {
    /// The suite's results folder (or its junit.xml).
    path: PathBuf,
    plan: suites::ReproPlan,
    prov: Option<suites::Provenance>,
}

/// Reads the failures to reproduce; `None` (said on stdout) when the results have none.
fn read_failures(args: &ReproArgs) -> anyhow::Result<Option<Failures>> {
    let path = suite_results(&args.results);
    let (failed, prov) = suites::read_failures(&path)
        .with_context(|| format!("reading the failures in {}", args.results.display()))?;
    if failed.is_empty() {
        println!(
            "no failed tests in {}: nothing to reproduce",
            path.display()
        );
        return Ok(None);
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
    Ok(Some(Failures { path, plan, prov }))
}

/// The suite the results came from: `--suite`, else the one their summary names, else the only
/// one configured.
fn which_suite(
    ctx: &Context,
    named: Option<&str>,
    path: &Path,
) -> anyhow::Result<(String, suites::SuiteConfig)> {
    let dir = if path.is_dir() {
        path.to_path_buf()
    } else {
        path.parent().map(PathBuf::from).unwrap_or_default()
    };
    let suite_name = match named {
        Some(s) => s.to_string(),
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
    Ok((suite_name, suite))
}

/// The guest the repro runs on, brought up with the build to install.
struct Guest {
    exec: crate::guest::SessionExecutor,
    endpoint: provision::session::Endpoint,
    known_hosts: PathBuf,
    /// This repro's provenance.
    prov: suites::Provenance,
    /// Held for its lock (the VM stays up afterwards); the last field, so dropped after the
    /// session.
    _vm: provision::vm::Vm,
}

/// `up` with `source` installed; stale ETW sessions stopped when the repro traces.
fn bring_up(
    ctx: &Context,
    args: &ReproArgs,
    source: Option<String>,
    phases: &mut Phases,
) -> anyhow::Result<Guest> {
    let up_req = UpRequest {
        efw: EfwRequest {
            source,
            ..Default::default()
        },
        accept_new_host_key: args.accept_new_host_key,
        detach: true,
        ..UpRequest::default()
    };
    let ready = pipeline::up(ctx, &up_req, phases, None)?;
    let mut session = ready.session.expect("full up opens a session");
    if args.trace_log && session.os() == provision::GuestOs::Windows {
        phases.run("etw", || {
            crate::guest_doctor::stop_etw_before_trace_log(&mut session)
        })?;
    }
    let mut prov = suites::Provenance {
        harness_version: env!("CARGO_PKG_VERSION").to_string(),
        ..Default::default()
    };
    crate::guest::fill_provenance(ctx, &mut prov);
    Ok(Guest {
        endpoint: session.endpoint().clone(),
        known_hosts: session.options().known_hosts.clone(),
        exec: crate::guest::SessionExecutor::new(session),
        prov,
        _vm: ready._vm,
    })
}

/// The suite's options narrowed to the plan: its targets and arguments, no reruns.
fn run_options(
    ctx: &Context,
    suite_name: String,
    suite: suites::SuiteConfig,
    module: &Path,
    plan: &suites::ReproPlan,
    prov: &suites::Provenance,
) -> RunOptions {
    let mut opts = RunOptions::new(suite_name, suite, module);
    opts.targets = Some(plan.targets.clone());
    opts.extra_args = plan.args.clone();
    opts.rerun_fails = Some(0);
    opts.cancel = Some(ctx.cancel.clone());
    if let Some(v) = &prov.efw_version
        && !opts.suite.env.contains_key("CI_EFW_VERSION")
    {
        opts.extra_env.push(("CI_EFW_VERSION".into(), v.clone()));
    }
    opts
}

/// Runs the plan, the tests' output streamed to stderr (unless `json`).
fn repro(
    exec: &mut crate::guest::SessionExecutor,
    opts: &RunOptions,
    json: bool,
) -> Result<suites::RunRecord, suites::SuiteError> {
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
    suites::run(exec, opts, &mut stream)
}

/// Where the repro ran `package` in the guest.
fn package_dir<'a>(record: &'a suites::RunRecord, package: &str) -> Option<&'a str> {
    record
        .package_dirs
        .iter()
        .find(|(p, _)| p == package)
        .map(|(_, d)| d.as_str())
}

/// The commands that do the same by hand, one pair per target.
fn by_hand(
    plan: &suites::ReproPlan,
    record: &suites::RunRecord,
    suite_flags: &[String],
    os: suites::TargetOs,
) -> anyhow::Result<Vec<suites::ReproCommands>> {
    let host_mode = record.meta.mode == "host";
    let mut commands = Vec::new();
    for t in &plan.targets {
        let pkg_dir = package_dir(record, &t.package).unwrap_or(".");
        commands.push(suites::repro_commands(
            plan,
            t,
            suite_flags,
            host_mode,
            os,
            pkg_dir,
        )?);
    }
    Ok(commands)
}

/// The outcome on stdout: one JSON document, or the console summary and the commands by hand.
fn print_outcome(
    json: bool,
    out: &Path,
    written: &suites::Written,
    record: &suites::RunRecord,
    commands: &[suites::ReproCommands],
) -> anyhow::Result<()> {
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({
                "dir": out,
                "summary": written.summary,
                "commands": commands,
            }))?
        );
        return Ok(());
    }
    print!(
        "{}",
        suites::render_console(&record.execution, &written.summary)
    );
    println!("results: {}", out.display());
    println!("\nthe VM stays up for a closer look (`harness down` when done). The same by hand:");
    for c in commands {
        println!("  in the guest (`harness ssh`): {}", c.target);
        println!("  on the host, in the module:   {}", c.host);
    }
    Ok(())
}

/// An interactive SSH shell in `dir` of the guest (the system ssh client).
fn open_shell(
    endpoint: &provision::session::Endpoint,
    known_hosts: &Path,
    dir: &str,
) -> anyhow::Result<()> {
    let remote = match endpoint.os {
        provision::GuestOs::Windows => format!(
            "powershell -NoExit -Command Set-Location {}",
            provision::session::wrap::ps_quote(dir)
        ),
        provision::GuestOs::Linux => format!(
            "cd {} && exec \"${{SHELL:-sh}}\" -l",
            provision::session::wrap::sh_quote(dir)
        ),
    };
    let argv =
        crate::cmd::guest::ssh_argv(endpoint, known_hosts, None, &["-t".to_string(), remote]);
    let status = std::process::Command::new(&argv[0])
        .args(&argv[1..])
        .status()
        .context("running the system ssh client (is openssh-client installed?)")?;
    if !status.success() {
        eprintln!("ssh exited with {status}");
    }
    Ok(())
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
