//! The command line: global options and one variant per subcommand. Handlers live in `cmd/`.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::cmd;

/// harness: a test lab for ebpf-go on eBPF for Windows, from a Linux host.
///
/// `harness up` makes a test-ready VM with efW and its extensions installed; `harness run` goes
/// from nothing to JUnit and an exit code; `harness repro` reruns a failure locally.
#[derive(Debug, Parser)]
#[command(
    name = "harness",
    version,
    propagate_version = true,
    max_term_width = 100
)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,
    #[command(subcommand)]
    pub command: Command,
}

/// Options every subcommand takes.
#[derive(Debug, Args)]
pub struct GlobalArgs {
    /// Config file (default: ./harness.toml, then ~/.config/harness/config.toml).
    #[arg(
        short = 'c',
        long = "config",
        global = true,
        env = "HARNESS_CONFIG",
        value_name = "PATH"
    )]
    pub config: Option<PathBuf>,
    /// Override one configuration key, e.g. `--set vm.memory_mib=4096` (repeatable).
    #[arg(long = "set", global = true, value_name = "KEY=VALUE")]
    pub set: Vec<String>,
    /// Print machine-readable JSON on stdout where the output is data.
    #[arg(long, global = true)]
    pub json: bool,
    /// More log output (-v info, -vv debug, -vvv trace). HARNESS_LOG takes a tracing filter.
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    pub verbose: u8,
    /// Less output: errors only, no progress bars.
    #[arg(short, long, action = clap::ArgAction::Count, global = true, conflicts_with = "verbose")]
    pub quiet: u8,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Show or check the effective configuration.
    #[command(subcommand)]
    Config(cmd::config::ConfigCmd),
    /// Check the host: QEMU, KVM, firmware, tools, keys, token, Go, disk.
    Doctor(cmd::doctor::DoctorArgs),
    /// Print a shell completion script.
    Completions(cmd::completions::CompletionsArgs),
    /// Explain efW and Windows error codes (`Errno(119)`, `EBPF_NO_MEMORY`, `0x80070490`): the
    /// name in Windows' errno.h, the Linux errno of that name, and what it means for efW.
    Explain(cmd::explain::ExplainArgs),
    /// Fetch, list and prune efW (and extension) builds in the cache.
    #[command(subcommand)]
    Artifacts(cmd::artifacts::ArtifactsCmd),
    /// Run Go test suites and write JUnit, JSON and Markdown results (exit 0/1/2; -v streams
    /// the tests' output).
    Test(cmd::test::TestArgs),
    /// Work on results folders (merge shards).
    #[command(subcommand)]
    Report(cmd::report::ReportCmd),
    /// Install the efW runtime in the guest (no-op when the same build is installed and verified).
    Install(cmd::install::InstallArgs),
    /// Install, remove or list eBPF extensions (ntosebpfext) in the guest.
    #[command(subcommand)]
    Ext(cmd::install::ExtCmd),
    /// Run a command in the guest with live output; exits with its status.
    Exec(cmd::guest::ExecArgs),
    /// Copy files or directories to or from the guest (`guest:PATH` on one side).
    Cp(cmd::guest::CpArgs),
    /// Open an interactive shell in the guest with the system ssh client and the pinned host key.
    Ssh(cmd::guest::SshArgs),
    /// Make the VM test-ready: boot or restore it, fetch efW, install it and the extensions.
    Up(cmd::pipeline::UpArgs),
    /// From nothing to results: `up`, run the suites, write results, then `down` (unless --keep).
    Run(cmd::pipeline::RunArgs),
    /// Rerun a results folder's failed tests verbosely on the same efW build (`--shell` to stay).
    Repro(cmd::repro::ReproArgs),
    /// Stop the VM: `poweroff` over SSH (Linux), ACPI power button, then kill after `[vm] shutdown_timeout`.
    Down(cmd::vm::DownArgs),
    /// Delete the VM's overlay and state (`--all`: the base image too).
    Destroy(cmd::vm::DestroyArgs),
    /// Throw away every change since the base image (the next `up` starts clean).
    Reset(cmd::vm::ResetArgs),
    /// Show the VM: backend, state, SSH endpoint, base image, snapshots, accelerator.
    Status(cmd::vm::StatusArgs),
    /// Open the VM's screen (VNC, reachable only from this host) in a viewer, or `--print` how
    /// to connect; `--password` prints a TCP console's password.
    Console(cmd::console::ConsoleArgs),
    /// Save the VM's screen as a PNG now (QMP screendump).
    Screenshot(cmd::console::ScreenshotArgs),
    /// Run CDB's `!analyze -v` on a crash dump in the Windows guest (a host dump is uploaded
    /// first) and save the text.
    Analyze(cmd::cdb::AnalyzeArgs),
    /// Save, restore, list or delete RAM+disk snapshots of the VM.
    #[command(subcommand)]
    Snapshot(cmd::vm::SnapshotCmd),
}
