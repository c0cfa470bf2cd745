//! A failing package's test binary built for a debugger (`harness repro --debug`): Go's
//! optimisations and inlining off (`-gcflags=all=-N -l`) and DWARF kept (no `-ldflags=-w`),
//! plus the guest-side pieces a WinDbg session needs: the symbol path and the exact steps.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::exec::TargetOs;
use crate::gotool::{GoError, HostGo};

/// The compiler flags of a debug build: no optimisation, no inlining, in every package.
pub const DEBUG_GCFLAGS: &str = "-gcflags=all=-N -l";
/// Microsoft's public symbol server (Windows' own DLLs), cached in the guest.
pub const MS_SYMBOL_SERVER: &str = "https://msdl.microsoft.com/download/symbols";
/// How long one debug build may take.
pub const DEBUG_BUILD_TIMEOUT: Duration = Duration::from_secs(900);

/// The file name of a package's test binary on `os`: `link.test.exe` for `…/link` (pure).
pub fn binary_name(package: &str, os: TargetOs) -> String {
    let base = package.rsplit('/').next().filter(|s| !s.is_empty());
    format!("{}.test{}", base.unwrap_or("pkg"), os.exe_suffix())
}

/// `go test -c` arguments of a debug build of `package` into `out` (pure). Nothing strips
/// DWARF: no `-ldflags=-w -s`, no `-trimpath`.
pub fn debug_build_args(package: &str, out: &Path) -> Vec<String> {
    vec![
        "test".into(),
        "-c".into(),
        DEBUG_GCFLAGS.into(),
        "-o".into(),
        out.display().to_string(),
        package.into(),
    ]
}

/// The environment of a cross-compiled test binary for the target.
pub fn target_env(os: TargetOs, arch: &str) -> Vec<(String, String)> {
    vec![
        ("GOOS".into(), os.goos().into()),
        ("GOARCH".into(), arch.into()),
        ("CGO_ENABLED".into(), "0".into()),
    ]
}

/// A finished debug build.
#[derive(Debug, Clone)]
pub struct DebugBuild {
    /// The test binary on the host.
    pub binary: PathBuf,
    /// The `go` command line that built it (recorded in the results).
    pub command: Vec<String>,
}

/// Build `package`'s test binary for debugging into `out_dir` with the host's Go.
pub fn build(
    go: &HostGo,
    package: &str,
    os: TargetOs,
    out_dir: &Path,
) -> Result<DebugBuild, GoError> {
    let binary = out_dir.join(binary_name(package, os));
    let args = debug_build_args(package, &binary);
    let mut command = vec![go.go.clone()];
    command.extend(args.iter().cloned());
    let out = go.run(&args, DEBUG_BUILD_TIMEOUT)?;
    if out.code != Some(0) || !binary.is_file() {
        let timed_out = format!("timed out after {} s", DEBUG_BUILD_TIMEOUT.as_secs());
        return Err(GoError::Command {
            cmd: command.join(" "),
            dir: go.dir.display().to_string(),
            detail: out.diagnostics(&timed_out).join("\n"),
        });
    }
    Ok(DebugBuild { binary, command })
}

/// `_NT_SYMBOL_PATH` for the session (pure): the efW build's PDBs, the test binary's
/// directory, then Microsoft's symbol server cached under `cache` (used when the guest has
/// internet; the local entries work without).
pub fn symbol_path(efw_build_dir: &str, binary_dir: &str, cache: &str) -> String {
    format!("{efw_build_dir};{binary_dir};srv*{cache}*{MS_SYMBOL_SERVER}")
}

/// The test binary's arguments that run exactly `test` verbosely (pure).
pub fn test_args(test: Option<&str>) -> Vec<String> {
    let mut v = Vec::new();
    if let Some(t) = test {
        let root = t.split('/').next().unwrap_or(t);
        v.push("-test.run".into());
        v.push(format!("^{}$", regex_quote(root)));
    }
    v.push("-test.v".into());
    v
}

fn regex_quote(s: &str) -> String {
    s.chars()
        .flat_map(|c| {
            let special = "\\.+*?()|[]{}^$".contains(c);
            special.then_some('\\').into_iter().chain([c])
        })
        .collect()
}

/// Everything the WinDbg steps name.
#[derive(Debug, Clone)]
pub struct DebugSession<'a> {
    /// The test binary in the guest.
    pub binary: &'a str,
    /// The package directory in the guest (the tests read `testdata` relative to it).
    pub start_dir: &'a str,
    /// The failing test (`None`: the whole package).
    pub test: Option<&'a str>,
    /// `_NT_SYMBOL_PATH`.
    pub symbol_path: &'a str,
}

/// The exact WinDbg steps for one test (pure).
pub fn windbg_steps(s: &DebugSession<'_>) -> String {
    let args = test_args(s.test).join(" ");
    format!(
        "In the guest's console (`harness console`), start WinDbg, then:\n\
         1. File > Open Executable (Ctrl+E):\n\
         \x20    executable:      {bin}\n\
         \x20    arguments:       {args}\n\
         \x20    start directory: {dir}\n\
         2. In the command window: .sympath {sym}\n\
         \x20  then: .reload\n\
         3. bu ebpfapi!bpf\n\
         4. g\n\
         (the breakpoint hits when the test calls into ebpfapi.dll; `k` shows the C++ stack)\n\
         Or from a command prompt in the guest, in one go:\n\
         \x20 cd /d {dir}\n\
         \x20 windbg -y \"{sym}\" -c \"bu ebpfapi!bpf; g\" {bin} {args}\n",
        bin = s.binary,
        dir = s.start_dir,
        sym = s.symbol_path,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_builds_turn_optimisations_off_and_keep_dwarf() {
        let a = debug_build_args("github.com/cilium/ebpf/link", Path::new("/o/link.test.exe"));
        assert_eq!(
            a,
            [
                "test",
                "-c",
                "-gcflags=all=-N -l",
                "-o",
                "/o/link.test.exe",
                "github.com/cilium/ebpf/link"
            ]
        );
        assert!(!a.iter().any(|x| x.contains("-w") || x.contains("trimpath")));
        assert_eq!(
            binary_name("github.com/cilium/ebpf/link", TargetOs::Windows),
            "link.test.exe"
        );
        assert_eq!(binary_name("x/pass", TargetOs::Linux), "pass.test");
        assert!(
            target_env(TargetOs::Windows, "amd64").contains(&("GOOS".into(), "windows".into()))
        );
    }

    #[test]
    fn the_symbol_path_puts_the_efw_pdbs_first() {
        assert_eq!(
            symbol_path(
                r"C:\harness\efw\gh-1",
                r"C:\harness\debug",
                r"C:\harness\symbols"
            ),
            r"C:\harness\efw\gh-1;C:\harness\debug;srv*C:\harness\symbols*https://msdl.microsoft.com/download/symbols"
        );
    }

    #[test]
    fn steps_run_exactly_the_failing_test() {
        assert_eq!(
            test_args(Some("TestLink/sub")),
            ["-test.run", "^TestLink$", "-test.v"]
        );
        assert_eq!(test_args(None), ["-test.v"]);
        assert_eq!(test_args(Some("Test.X"))[1], r"^Test\.X$");
        let steps = windbg_steps(&DebugSession {
            binary: r"C:\harness\efw\gh-1\link.test.exe",
            start_dir: r"C:\harness\work\link",
            test: Some("TestLink"),
            symbol_path: "SYM",
        });
        assert!(
            steps.contains(r"executable:      C:\harness\efw\gh-1\link.test.exe"),
            "{steps}"
        );
        assert!(
            steps.contains("arguments:       -test.run ^TestLink$ -test.v"),
            "{steps}"
        );
        assert!(steps.contains(r"start directory: C:\harness\work\link"));
        let bu = steps.find("3. bu ebpfapi!bpf").unwrap();
        assert!(steps[bu..].contains("4. g"), "{steps}");
        assert!(steps.contains(".sympath SYM"));
    }
}
