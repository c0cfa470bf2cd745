//! `harness repro --cdb "<commands>"` and `harness analyze DUMP`: CDB (the console debugger of
//! the Windows SDK's Debugging Tools) run non-interactively in the Windows guest, its output
//! saved on the host.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context as _;
use clap::Args;
use provision::GuestOs;
use provision::debugger::{self, CdbOutput, CdbRun};
use provision::session::wrap::{ps_quote, shell};
use suites::TargetOs;

use crate::cmd::debug::{self, GUEST_SYMBOL_CACHE, Target};
use crate::context::Context;

/// How long one CDB run may take unless told otherwise.
pub const DEFAULT_TIMEOUT_SECS: u64 = 600;

/// `harness analyze`
#[derive(Debug, Args)]
pub struct AnalyzeArgs {
    /// A crash dump: a file on the host (uploaded to the guest first) or a guest path
    /// (`C:\…`). The text is saved as DUMP.analyze.txt beside a host dump, else in a results
    /// folder.
    pub dump: String,
    /// Kill CDB and everything it started after this many seconds.
    #[arg(long, value_name = "SECS", default_value_t = DEFAULT_TIMEOUT_SECS)]
    pub timeout: u64,
    /// Accept a guest host key that differs from the pinned one.
    #[arg(long)]
    pub accept_new_host_key: bool,
}

/// Refuse CDB work where it cannot work (Linux guests).
pub fn check(ctx: &Context, what: &str) -> anyhow::Result<()> {
    if ctx.config.vm.os != GuestOs::Windows {
        anyhow::bail!(
            "{what} runs CDB and needs a Windows guest ([vm] os = \"windows\"); \
             on a Linux guest use `harness ssh` and gdb or dlv"
        );
    }
    Ok(())
}

/// Whether `s` names a Windows path in the guest (`C:\…`, `C:/…`, `\\server\…`) (pure).
pub fn is_guest_path(s: &str) -> bool {
    let b = s.as_bytes();
    (b.len() >= 3 && b[0].is_ascii_alphabetic() && b[1] == b':' && matches!(b[2], b'\\' | b'/'))
        || s.starts_with(r"\\")
}

/// The last component of a guest or host path (pure).
fn file_name(s: &str) -> &str {
    s.rsplit(['\\', '/']).find(|p| !p.is_empty()).unwrap_or(s)
}

/// Where `harness analyze` saves the text of a host dump: `DUMP.analyze.txt` beside it (pure).
pub fn analyze_text_path(host_dump: &Path) -> PathBuf {
    let mut s = host_dump.as_os_str().to_owned();
    s.push(".analyze.txt");
    PathBuf::from(s)
}

/// Save CDB's text, print it (text mode; `--json`: one document with it), and turn a timeout
/// into an error naming the saved file.
fn finish(
    ctx: &Context,
    out: &CdbOutput,
    path: &Path,
    timeout: Duration,
    flag: &str,
) -> anyhow::Result<()> {
    out.save(path, timeout)
        .with_context(|| format!("writing {}", path.display()))?;
    if ctx.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({
                "saved": path,
                "exit_code": out.exit_code,
                "timed_out": out.timed_out,
                "output": out.output,
            }))?
        );
    } else {
        print!("{}", out.text(timeout));
        println!("cdb output saved in {}", path.display());
    }
    if out.timed_out {
        anyhow::bail!(
            "cdb did not finish within {} s and was killed with its process tree (partial output in {}); \
             end the commands with `q`, or give it longer with {flag}",
            timeout.as_secs(),
            path.display()
        );
    }
    Ok(())
}

/// After a repro: `--debug` (WinDbg steps) and/or `--cdb` (a scripted CDB run of the test).
pub fn after_repro(
    ctx: &Context,
    t: &Target<'_>,
    steps: bool,
    cdb_commands: Option<&str>,
    timeout: Duration,
) -> anyhow::Result<()> {
    let mut session = crate::guest::session(ctx, false, Duration::from_secs(30))?;
    // Find cdb.exe before the build, so a guest without it fails fast.
    let cdb = match cdb_commands {
        Some(_) => Some(debugger::find_cdb(&mut session)?),
        None => None,
    };
    let placed = debug::place(ctx, &mut session, t)?;
    if steps {
        debug::print_steps(ctx, t, &placed)?;
    }
    let (Some(cdb), Some(commands)) = (cdb, cdb_commands) else {
        return Ok(());
    };
    let run = CdbRun {
        cdb: &cdb,
        args: debugger::run_args(
            commands,
            &placed.guest_binary,
            &suites::debug::test_args(t.test),
        ),
        dir: t.start_dir,
        symbol_path: &placed.symbol_path,
        timeout,
    };
    let line = format!(
        "cd /d {}\n\"{cdb}\" {}\n",
        t.start_dir,
        debugger::windows_command_line(&run.args)
    );
    let p = placed.out_dir.join("cdb-command.txt");
    std::fs::write(&p, &line).with_context(|| format!("writing {}", p.display()))?;
    eprintln!(
        "running the test under cdb (at most {} s)",
        timeout.as_secs()
    );
    let out = debugger::run(&mut session, &run)?;
    finish(
        ctx,
        &out,
        &placed.out_dir.join("cdb.txt"),
        timeout,
        "--cdb-timeout",
    )
}

/// `harness analyze DUMP`
pub fn run_analyze(ctx: &Context, args: &AnalyzeArgs) -> anyhow::Result<ExitCode> {
    check(ctx, "harness analyze")?;
    let host = Path::new(&args.dump);
    let on_host = host.is_file();
    if !on_host && !is_guest_path(&args.dump) {
        anyhow::bail!(
            "{} is not a file on the host, nor a Windows path in the guest (C:\\…); \
             give a host dump file or the dump's full path in the guest",
            args.dump
        );
    }
    let timeout = Duration::from_secs(args.timeout.max(1));
    let mut session =
        crate::guest::session(ctx, args.accept_new_host_key, Duration::from_secs(30))?;
    let cdb = debugger::find_cdb(&mut session)?;
    let (guest_dump, save_to) = if on_host {
        let dir = TargetOs::Windows.join(&ctx.config.install.guest_dir, "dumps");
        let mkdir = shell(
            GuestOs::Windows,
            &format!(
                "New-Item -ItemType Directory -Force -Path {} | Out-Null",
                ps_quote(&dir)
            ),
        )
        .timeout(Duration::from_secs(60));
        let out = session.exec_capture(&mkdir)?;
        if !out.status.success() {
            anyhow::bail!(
                "creating {dir} in the guest failed (exit {}): {}",
                out.status.code,
                out.stderr.trim()
            );
        }
        let guest = TargetOs::Windows.join(&dir, file_name(&args.dump));
        eprintln!("uploading {} to guest:{guest}", host.display());
        session
            .upload_file(host, &guest)
            .with_context(|| format!("uploading {} to the guest", host.display()))?;
        (guest, analyze_text_path(host))
    } else {
        let dir = suites::new_run_dir(&ctx.paths.results, "analyze")?;
        let name = format!("{}.analyze.txt", file_name(&args.dump));
        (args.dump.clone(), dir.join(name))
    };
    let symbol_path = match debug::recorded_symbol_path(ctx)? {
        Some((_, s)) => s,
        None => format!(
            "srv*{GUEST_SYMBOL_CACHE}*{}",
            suites::debug::MS_SYMBOL_SERVER
        ),
    };
    let dump_dir = guest_dump
        .rsplit_once(['\\', '/'])
        .map_or(".", |(d, _)| d)
        .to_string();
    let run = CdbRun {
        cdb: &cdb,
        args: debugger::analyze_args(&guest_dump),
        dir: &dump_dir,
        symbol_path: &symbol_path,
        timeout,
    };
    eprintln!(
        "running !analyze -v on guest:{guest_dump} (at most {} s)",
        timeout.as_secs()
    );
    let out = debugger::run(&mut session, &run)?;
    finish(ctx, &out, &save_to, timeout, "--timeout")?;
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
#[path = "cdb_transcript.rs"]
mod transcript;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn guest_paths_are_told_from_host_paths() {
        assert!(is_guest_path(r"C:\Windows\MEMORY.DMP"));
        assert!(is_guest_path("c:/dumps/x.dmp"));
        assert!(is_guest_path(r"\\server\share\x.dmp"));
        assert!(!is_guest_path("/tmp/x.dmp"));
        assert!(!is_guest_path("x.dmp"));
        assert!(!is_guest_path("C:"));
    }

    #[test]
    fn host_dumps_get_their_text_beside_them() {
        assert_eq!(
            analyze_text_path(Path::new("/r/forensics/link.test.exe.1234.dmp")),
            Path::new("/r/forensics/link.test.exe.1234.dmp.analyze.txt")
        );
        assert_eq!(file_name(r"C:\dumps\a b.dmp"), "a b.dmp");
        assert_eq!(file_name("/tmp/x.dmp"), "x.dmp");
    }
}
