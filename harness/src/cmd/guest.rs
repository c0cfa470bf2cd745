//! `harness exec`, `harness cp`, `harness ssh`: the guest session from the command line.
//!
//! Thin: build an [`Endpoint`] from `[vm]`, open a [`Session`], call it, print.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context as _;
use clap::Args;
use provision::session::{Endpoint, GuestOs, PathKind, RemoteCommand, Session, Stream, hostkey};

use crate::context::Context;

/// Options shared by the guest commands.
#[derive(Debug, Args)]
pub struct ConnectArgs {
    /// Accept and pin a host key that differs from the pinned one (after re-creating a VM by hand).
    #[arg(long)]
    pub accept_new_host_key: bool,
    /// Seconds to keep trying to connect (a guest that is still booting).
    #[arg(long, value_name = "SECS", default_value_t = 15)]
    pub connect_timeout: u64,
}

/// `harness exec [--] CMD…`
#[derive(Debug, Args)]
pub struct ExecArgs {
    #[command(flatten)]
    pub connect: ConnectArgs,
    /// Kill the remote process tree after this many seconds (0: no limit).
    #[arg(long, value_name = "SECS", default_value_t = 0)]
    pub timeout: u64,
    /// Working directory in the guest.
    #[arg(long, value_name = "DIR")]
    pub cwd: Option<String>,
    /// Environment variable for the command (repeatable).
    #[arg(short = 'e', long = "env", value_name = "NAME=VALUE")]
    pub env: Vec<String>,
    /// The command: PowerShell on Windows guests, a `sh -c` line on Linux guests (words are
    /// joined with spaces, as `ssh` does).
    #[arg(
        required = true,
        trailing_var_arg = true,
        allow_hyphen_values = true,
        value_name = "CMD"
    )]
    pub command: Vec<String>,
}

/// `harness cp SRC DST`
#[derive(Debug, Args)]
pub struct CpArgs {
    #[command(flatten)]
    pub connect: ConnectArgs,
    /// Source: a host path or `guest:PATH` (a file or a directory).
    pub src: String,
    /// Destination: `guest:PATH` or a host path (the other side of SRC).
    pub dst: String,
}

/// `harness ssh [-- SSH_ARGS…]`
#[derive(Debug, Args)]
pub struct SshArgs {
    #[command(flatten)]
    pub connect: ConnectArgs,
    /// Print the ssh command line instead of running it.
    #[arg(long)]
    pub print: bool,
    /// Extra arguments for ssh (after `--`), e.g. a command to run.
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    pub args: Vec<String>,
}

/// A session to the configured guest (wherever its backend says it is), cancelled by Ctrl-C.
pub fn connect(ctx: &Context, args: &ConnectArgs) -> anyhow::Result<Session> {
    crate::guest::session(
        ctx,
        args.accept_new_host_key,
        Duration::from_secs(args.connect_timeout.max(1)),
    )
}

/// The remote command for CLI words on `os`.
pub fn command_for(os: GuestOs, words: &[String]) -> RemoteCommand {
    provision::session::wrap::shell(os, &words.join(" "))
}

/// Splits `NAME=VALUE`.
fn parse_env(items: &[String]) -> anyhow::Result<Vec<(String, String)>> {
    items
        .iter()
        .map(|i| {
            i.split_once('=')
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .with_context(|| format!("--env {i:?}: expected NAME=VALUE"))
        })
        .collect()
}

pub fn run_exec(ctx: &Context, args: &ExecArgs) -> anyhow::Result<ExitCode> {
    let _vm_in_use = crate::guest::hold_vm(ctx)?;
    let env = parse_env(&args.env)?;
    let mut session = connect(ctx, &args.connect)?;
    let mut cmd = command_for(session.os(), &args.command);
    cmd.env.extend(env);
    cmd.cwd = args.cwd.clone();
    cmd.timeout = (args.timeout > 0).then(|| Duration::from_secs(args.timeout));
    if cmd.timeout.is_none() {
        // The CLI means "no limit" when it says 0; the library default would cut at an hour.
        cmd.timeout = Some(Duration::from_secs(u64::from(u32::MAX)));
    }
    let code = if ctx.json {
        let out = session.exec_capture(&cmd)?;
        let doc = serde_json::json!({
            "exit_code": out.status.code,
            "stdout": out.stdout,
            "stderr": out.stderr,
        });
        println!("{doc}");
        out.status.code
    } else {
        let stdout = std::io::stdout();
        let stderr = std::io::stderr();
        session
            .exec(&cmd, &mut |s, line| {
                let _ = match s {
                    Stream::Stdout => writeln!(stdout.lock(), "{line}"),
                    Stream::Stderr => writeln!(stderr.lock(), "{line}"),
                };
            })?
            .code
    };
    Ok(exit_code(code))
}

/// The guest's exit status as ours (outside 0..=255 → 255).
pub fn exit_code(code: i32) -> ExitCode {
    ExitCode::from(u8::try_from(code).unwrap_or(255))
}

/// `guest:PATH` → `Some(PATH)`.
pub fn guest_path(s: &str) -> Option<&str> {
    s.strip_prefix("guest:")
}

/// Which way a copy goes.
#[derive(Debug, PartialEq, Eq)]
pub enum Copy<'a> {
    Upload { local: &'a Path, remote: &'a str },
    Download { remote: &'a str, local: &'a Path },
}

/// Decides the direction of `harness cp SRC DST`.
pub fn copy_direction<'a>(src: &'a str, dst: &'a str) -> anyhow::Result<Copy<'a>> {
    match (guest_path(src), guest_path(dst)) {
        (None, Some(r)) if !r.is_empty() => Ok(Copy::Upload {
            local: Path::new(src),
            remote: r,
        }),
        (Some(r), None) if !r.is_empty() => Ok(Copy::Download {
            remote: r,
            local: Path::new(dst),
        }),
        (Some(_), Some(_)) => {
            anyhow::bail!("both sides are guest paths; one of SRC and DST must be a host path")
        }
        (None, None) => {
            anyhow::bail!("neither side is a guest path; write the guest side as guest:PATH")
        }
        _ => anyhow::bail!("empty guest path; write guest:PATH"),
    }
}

pub fn run_cp(ctx: &Context, args: &CpArgs) -> anyhow::Result<ExitCode> {
    let _vm_in_use = crate::guest::hold_vm(ctx)?;
    let dir = copy_direction(&args.src, &args.dst)?;
    if let Copy::Upload { local, .. } = &dir
        && !local.exists()
    {
        anyhow::bail!("{} does not exist on this host", local.display());
    }
    let mut session = connect(ctx, &args.connect)?;
    let (kind, files, bytes) = match dir {
        Copy::Upload { local, remote } if local.is_dir() => {
            let st = session
                .upload_tree(local, remote)
                .context("uploading the directory")?;
            ("tree", st.files, st.bytes)
        }
        Copy::Upload { local, remote } => {
            let b = session
                .upload_file(local, remote)
                .context("uploading the file")?;
            ("file", 1, b)
        }
        Copy::Download { remote, local } => match session.remote_path_kind(remote)? {
            PathKind::Dir => {
                let st = session
                    .download_tree(remote, local)
                    .context("downloading the directory")?;
                ("tree", st.files, st.bytes)
            }
            PathKind::File => {
                let target: PathBuf = if local.is_dir() {
                    local.join(remote.rsplit(['/', '\\']).next().unwrap_or("download"))
                } else {
                    local.to_path_buf()
                };
                let b = session
                    .download_file(remote, &target)
                    .context("downloading the file")?;
                ("file", 1, b)
            }
            PathKind::Missing => anyhow::bail!("guest:{remote} does not exist"),
        },
    };
    if ctx.json {
        println!(
            "{}",
            serde_json::json!({"kind": kind, "files": files, "bytes": bytes})
        );
    } else {
        eprintln!("copied {files} file(s), {bytes} bytes");
    }
    Ok(ExitCode::SUCCESS)
}

/// `HostKeyAlgorithms` for a pinned key type, so the system client asks for the pinned key.
pub fn host_key_algorithms(key_type: &str) -> String {
    match key_type {
        "ssh-rsa" => "rsa-sha2-512,rsa-sha2-256,ssh-rsa".into(),
        t => t.into(),
    }
}

/// The system `ssh` argv for an endpoint with pinned keys in `known_hosts`.
pub fn ssh_argv(
    ep: &Endpoint,
    known_hosts: &Path,
    pinned_type: Option<&str>,
    extra: &[String],
) -> Vec<String> {
    let mut v = vec![
        "ssh".to_string(),
        "-p".into(),
        ep.port.to_string(),
        "-o".into(),
        format!("UserKnownHostsFile={}", known_hosts.display()),
        "-o".into(),
        "StrictHostKeyChecking=yes".into(),
        "-o".into(),
        "ServerAliveInterval=15".into(),
    ];
    if let Some(t) = pinned_type {
        v.push("-o".into());
        v.push(format!("HostKeyAlgorithms={}", host_key_algorithms(t)));
    }
    if let Some(id) = &ep.identity {
        v.extend([
            "-i".into(),
            id.display().to_string(),
            "-o".into(),
            "IdentitiesOnly=yes".into(),
        ]);
    }
    v.push(format!("{}@{}", ep.user, ep.host));
    v.extend(extra.iter().cloned());
    v
}

pub fn run_ssh(ctx: &Context, args: &SshArgs) -> anyhow::Result<ExitCode> {
    let _vm_in_use = crate::guest::hold_vm(ctx)?;
    // Connecting once pins the host key (or refuses a changed one) before ssh sees it.
    let session = connect(ctx, &args.connect)?;
    let ep = session.endpoint().clone();
    let kh = session.options().known_hosts.clone();
    drop(session);
    let text = std::fs::read_to_string(&kh).unwrap_or_default();
    let pattern = hostkey::host_pattern(&ep.host, ep.port);
    let pinned_type = text
        .lines()
        .find(|l| l.split_whitespace().next() == Some(pattern.as_str()))
        .and_then(|l| l.split_whitespace().nth(1))
        .map(str::to_string);
    let argv = ssh_argv(&ep, &kh, pinned_type.as_deref(), &args.args);
    if args.print {
        println!(
            "{}",
            argv.iter()
                .map(|a| provision::session::wrap::sh_quote(a))
                .collect::<Vec<_>>()
                .join(" ")
        );
        return Ok(ExitCode::SUCCESS);
    }
    let status = std::process::Command::new(&argv[0])
        .args(&argv[1..])
        .status()
        .context("running the system ssh client (is openssh-client installed?)")?;
    Ok(exit_code(status.code().unwrap_or(255)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copy_directions() {
        assert_eq!(
            copy_direction("a/b", "guest:C:/x").unwrap(),
            Copy::Upload {
                local: Path::new("a/b"),
                remote: "C:/x"
            }
        );
        assert_eq!(
            copy_direction("guest:/tmp/x", ".").unwrap(),
            Copy::Download {
                remote: "/tmp/x",
                local: Path::new(".")
            }
        );
        for (s, d) in [("guest:a", "guest:b"), ("a", "b"), ("guest:", "x")] {
            assert!(copy_direction(s, d).is_err(), "{s} {d}");
        }
    }

    #[test]
    fn ssh_command_line() {
        let ep = Endpoint {
            host: "127.0.0.1".into(),
            port: 2222,
            user: "u".into(),
            identity: Some("/k".into()),
            os: GuestOs::Windows,
        };
        let v = ssh_argv(
            &ep,
            Path::new("/s/known_hosts"),
            Some("ssh-ed25519"),
            &["whoami".into()],
        );
        assert_eq!(
            v.join(" "),
            "ssh -p 2222 -o UserKnownHostsFile=/s/known_hosts -o StrictHostKeyChecking=yes -o ServerAliveInterval=15 -o HostKeyAlgorithms=ssh-ed25519 -i /k -o IdentitiesOnly=yes u@127.0.0.1 whoami"
        );
        assert_eq!(
            host_key_algorithms("ssh-rsa"),
            "rsa-sha2-512,rsa-sha2-256,ssh-rsa"
        );
    }

    #[test]
    fn exit_codes_and_env() {
        assert_eq!(exit_code(3), ExitCode::from(3));
        assert_eq!(exit_code(-1), ExitCode::from(255));
        assert_eq!(
            parse_env(&["A=b=c".into()]).unwrap(),
            vec![("A".into(), "b=c".into())]
        );
        assert!(parse_env(&["A".into()]).is_err());
        assert_eq!(
            command_for(GuestOs::Linux, &["echo".into(), "$HOME".into()]).argv,
            ["sh", "-c", "echo $HOME"]
        );
        assert_eq!(
            command_for(GuestOs::Windows, &["Get-Item".into(), "x".into()]).argv,
            ["Get-Item x"]
        );
    }
}
