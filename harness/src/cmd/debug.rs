//! `harness repro --debug`: after the repro, a debug build of the failing package's test binary
//! beside the installed efW build's PDBs, `_NT_SYMBOL_PATH` for the guest user, and the exact
//! WinDbg steps; the VM stays up with its console.

use std::path::Path;
use std::time::Duration;

use anyhow::Context as _;
use provision::GuestOs;
use provision::session::Session;
use provision::session::wrap::{ps_quote, shell};
use suites::TargetOs;
use suites::debug::{self, DebugSession};

use crate::context::Context;

/// Where Microsoft's symbols are cached in the guest.
pub const GUEST_SYMBOL_CACHE: &str = r"C:\harness\symbols";

/// The failing test to debug, as the repro found it.
#[derive(Debug)]
pub struct Target<'a> {
    pub package: &'a str,
    pub test: Option<&'a str>,
    /// The package's directory in the guest (where the repro ran it).
    pub start_dir: &'a str,
    pub module: &'a Path,
    pub host_go: &'a str,
    /// The repro's results folder; the steps and the build command go to `debug/` in it.
    pub results: &'a Path,
}

/// Refuse `--debug` before any work where it cannot work.
pub fn check(ctx: &Context) -> anyhow::Result<()> {
    if ctx.config.vm.os != GuestOs::Windows {
        anyhow::bail!(
            "repro --debug prepares a WinDbg session and needs a Windows guest ([vm] os = \"windows\"); \
             on a Linux guest use `repro --shell` and a Linux debugger"
        );
    }
    Ok(())
}

/// PowerShell that sets `_NT_SYMBOL_PATH` for the guest user (new processes, WinDbg started
/// from the console included) and creates the symbol cache (pure).
pub fn symbol_path_script(value: &str) -> String {
    format!(
        "New-Item -ItemType Directory -Force -Path {} | Out-Null\n\
         [Environment]::SetEnvironmentVariable('_NT_SYMBOL_PATH', {}, 'User')",
        ps_quote(GUEST_SYMBOL_CACHE),
        ps_quote(value)
    )
}

/// A debug build placed in the guest.
#[derive(Debug)]
pub struct Placed {
    /// The test binary in the guest.
    pub guest_binary: String,
    /// `_NT_SYMBOL_PATH` as set for the guest user.
    pub symbol_path: String,
    /// `RESULTS/debug` on the host.
    pub out_dir: std::path::PathBuf,
}

/// The `_NT_SYMBOL_PATH` of the installed efW build, from the host's install record.
pub fn recorded_symbol_path(ctx: &Context) -> anyhow::Result<Option<(String, String)>> {
    let record_path = provision::install::host_record_path(&ctx.paths.state, &ctx.config.vm.name);
    let record = provision::install::load_host_record(&record_path)
        .with_context(|| format!("reading {}", record_path.display()))?;
    Ok(record.map(|r| {
        let sym = debug::symbol_path(&r.guest_dir, &r.guest_dir, GUEST_SYMBOL_CACHE);
        (r.guest_dir, sym)
    }))
}

/// Build the debug binary, place it beside the efW PDBs, set the symbol path for the user.
pub fn place(ctx: &Context, session: &mut Session, t: &Target<'_>) -> anyhow::Result<Placed> {
    let (efw_dir, sympath) = recorded_symbol_path(ctx)?.with_context(|| {
        format!(
            "no efW install is recorded for VM '{}', so its PDBs cannot be found; \
             run `harness up` (or `harness install`) first",
            ctx.config.vm.name
        )
    })?;
    let out_dir = t.results.join("debug");
    std::fs::create_dir_all(&out_dir).with_context(|| format!("creating {}", out_dir.display()))?;
    let go = suites::gotool::HostGo {
        go: t.host_go.to_string(),
        dir: t.module.to_path_buf(),
        env: debug::target_env(TargetOs::Windows, "amd64"),
        cancel: Some(ctx.cancel.clone()),
    };
    eprintln!(
        "building {} for the debugger ({})",
        t.package,
        debug::DEBUG_GCFLAGS
    );
    let build = debug::build(&go, t.package, TargetOs::Windows, &out_dir)
        .context("building the test binary for debugging")?;
    let p = out_dir.join("build-command.txt");
    std::fs::write(&p, build.command.join(" ") + "\n")
        .with_context(|| format!("writing {}", p.display()))?;
    let name = debug::binary_name(t.package, TargetOs::Windows);
    let guest_binary = TargetOs::Windows.join(&efw_dir, &name);
    session
        .upload_file(&build.binary, &guest_binary)
        .with_context(|| format!("placing the test binary at {guest_binary} in the guest"))?;
    let set =
        shell(GuestOs::Windows, &symbol_path_script(&sympath)).timeout(Duration::from_secs(60));
    let out = session.exec_capture(&set)?;
    if !out.status.success() {
        anyhow::bail!(
            "setting _NT_SYMBOL_PATH in the guest failed (exit {}): {}; set it by hand with `.sympath {sympath}` in WinDbg",
            out.status.code,
            out.stderr.trim()
        );
    }
    Ok(Placed {
        guest_binary,
        symbol_path: sympath,
        out_dir,
    })
}

/// Print the WinDbg steps and save them as `debug/windbg-steps.txt`.
pub fn print_steps(ctx: &Context, t: &Target<'_>, placed: &Placed) -> anyhow::Result<()> {
    let steps = debug::windbg_steps(&DebugSession {
        binary: &placed.guest_binary,
        start_dir: t.start_dir,
        test: t.test,
        symbol_path: &placed.symbol_path,
    });
    let p = placed.out_dir.join("windbg-steps.txt");
    std::fs::write(&p, &steps).with_context(|| format!("writing {}", p.display()))?;
    println!(
        "\ndebug build: {} (beside the efW build's PDBs)\n_NT_SYMBOL_PATH={} (set for user {})\n\n{steps}\nthe console: `harness console` (or `harness console --print`); steps saved in {}",
        placed.guest_binary,
        placed.symbol_path,
        ctx.config.vm.user,
        p.display()
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_symbol_path_is_set_for_the_user_quoted() {
        let s = symbol_path_script(r"C:\it's\efw;srv*C:\harness\symbols*https://x");
        assert!(
            s.contains(r"SetEnvironmentVariable('_NT_SYMBOL_PATH', 'C:\it''s\efw;srv*C:\harness\symbols*https://x', 'User')"),
            "{s}"
        );
        assert!(s.contains(r"-Path 'C:\harness\symbols'"), "{s}");
    }
}
