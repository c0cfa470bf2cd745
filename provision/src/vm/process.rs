//! Child processes (qemu, swtpm) in their own process group: Ctrl-C at the terminal does not
//! reach them, and dropping the handle kills the whole group so nothing is orphaned.

use std::fs::File;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use super::error::VmError;

pub use hostproc::{SECRET_ENV, kill_group, scrub};

/// A spawned helper; killed with its process group on drop unless [`Process::detach`]ed.
#[derive(Debug)]
pub struct Process {
    child: Option<Child>,
    pid: u32,
}

impl Process {
    /// Spawn `cmd` with stdout and stderr appended to `log`.
    pub fn spawn(mut cmd: Command, log: &Path) -> Result<Process, VmError> {
        let program = cmd.get_program().to_string_lossy().into_owned();
        let out = File::options()
            .create(true)
            .append(true)
            .open(log)
            .map_err(VmError::io(format!("opening the {program} log"), log))?;
        let err = out
            .try_clone()
            .map_err(VmError::io(format!("opening the {program} log"), log))?;
        scrub(&mut cmd)
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .process_group(0);
        tracing::debug!(?cmd, "spawning");
        let child = cmd
            .spawn()
            .map_err(|source| VmError::Spawn { program, source })?;
        Ok(Process {
            pid: child.id(),
            child: Some(child),
        })
    }

    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// The exit status if the process has ended.
    pub fn try_wait(&mut self) -> Option<ExitStatus> {
        self.child
            .as_mut()
            .and_then(|c| c.try_wait().ok().flatten())
    }

    /// Leave the process running after this handle is dropped (e.g. `harness up` returns).
    pub fn detach(mut self) -> u32 {
        self.child = None;
        self.pid
    }

    /// Kill the process group now and reap the child.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            kill_group(self.pid);
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Whether `pid` exists and is not a zombie.
pub fn alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat_state(&stat).is_some_and(|s| s != 'Z' && s != 'X'),
        Err(_) => false,
    }
}

/// The state letter of a `/proc/<pid>/stat` line (after the parenthesised command name).
pub fn stat_state(stat: &str) -> Option<char> {
    stat.rsplit_once(')')?.1.trim_start().chars().next()
}

/// Live (non-zombie) processes in process group `pgid`.
pub fn group_members(pgid: u32) -> Vec<u32> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|st| {
                let Some((_, rest)) = st.rsplit_once(')') else {
                    return false;
                };
                let f: Vec<&str> = rest.split_whitespace().collect();
                // fields after the name: state, ppid, pgrp
                f.len() > 2 && f[0] != "Z" && f[0] != "X" && f[2].parse::<u32>().ok() == Some(pgid)
            })
        })
        .collect()
}

/// Wait (bounded) until `pid` is gone.
pub fn wait_gone(pid: u32, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if !alive(pid) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    !alive(pid)
}

/// The last `n` lines of a text file (empty when unreadable).
pub fn tail(path: &Path, n: usize) -> String {
    let text = std::fs::read(path)
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// Run a short host tool (qemu-img, xorriso, swtpm_setup) with a timeout; stdout on success.
pub fn run_tool(
    program: &str,
    args: &[&std::ffi::OsStr],
    timeout: Duration,
) -> Result<String, VmError> {
    let shown = args
        .iter()
        .map(|a| a.to_string_lossy())
        .collect::<Vec<_>>()
        .join(" ");
    let mut cmd = Command::new(program);
    cmd.args(args);
    let out = hostproc::output(cmd, timeout, None).map_err(|source| VmError::Spawn {
        program: program.to_string(),
        source,
    })?;
    if out.success() {
        return Ok(out.stdout);
    }
    let status = if out.outcome.timed_out {
        format!("killed after {timeout:?}")
    } else {
        out.outcome.status.to_string()
    };
    Err(VmError::Tool {
        program: program.into(),
        args: shown,
        status,
        stderr: out.stderr.trim().into(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_state_skips_odd_command_names() {
        assert_eq!(stat_state("123 (qemu) S 1 2"), Some('S'));
        assert_eq!(stat_state("123 (a) b) Z 1 2"), Some('Z'));
        assert_eq!(stat_state("garbage"), None);
    }

    #[test]
    fn children_never_see_the_github_token() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("log");
        let mut cmd = Command::new("sh");
        cmd.args([
            "-c",
            "echo \"token=${GITHUB_TOKEN:-none} gh=${GH_TOKEN:-none} keep=$KEEP\"",
        ])
        .env("GITHUB_TOKEN", "ghp_secret")
        .env("GH_TOKEN", "gho_secret")
        .env("KEEP", "yes");
        let mut p = Process::spawn(cmd, &log).unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        while p.try_wait().is_none() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        let text = std::fs::read_to_string(&log).unwrap();
        assert_eq!(text.trim(), "token=none gh=none keep=yes");
    }

    #[test]
    fn dropping_a_process_kills_its_group() {
        let dir = tempfile::tempdir().unwrap();
        let mut cmd = Command::new("sh");
        cmd.args(["-c", "sleep 60 & sleep 60"]);
        let p = Process::spawn(cmd, &dir.path().join("log")).unwrap();
        let pid = p.pid();
        std::thread::sleep(Duration::from_millis(100));
        assert!(alive(pid));
        drop(p);
        assert!(wait_gone(pid, Duration::from_secs(5)));
        // The background sleep was in the same group: no live member of the group is left.
        let deadline = Instant::now() + Duration::from_secs(5);
        while !group_members(pid).is_empty() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        assert_eq!(group_members(pid), Vec::<u32>::new());
    }

    #[test]
    fn tools_time_out_and_report_stderr() {
        let e = run_tool(
            "sh",
            &["-c".as_ref(), "echo bad >&2; exit 3".as_ref()],
            Duration::from_secs(5),
        )
        .unwrap_err();
        assert!(e.to_string().contains("bad"), "{e}");
        let e = run_tool("sleep", &["10".as_ref()], Duration::from_millis(200)).unwrap_err();
        assert!(e.to_string().contains("killed after"), "{e}");
        assert_eq!(
            run_tool("echo", &["hi".as_ref()], Duration::from_secs(5)).unwrap(),
            "hi\n"
        );
    }
}
