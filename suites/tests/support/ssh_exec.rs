//! An [`Executor`] over the system `ssh` client, for tests and the benchmark against
//! `testsupport::sshd` (harness itself uses its own guest session). The remote side runs each
//! command under coreutils `timeout -s KILL`, so a timeout also ends the remote process; uploads
//! are `tar | ssh tar -x`.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use suites::LocalExecutor;
use suites::exec::{ExecError, ExecOutcome, ExecRequest, Executor, Stream, TargetOs, UploadFilter};

/// Runs commands on `ssh_base` (an `ssh … user@host` argv without the remote command).
pub struct SshCliExecutor {
    /// `ssh` with options and destination.
    pub ssh_base: Vec<String>,
    /// Remote scratch base directory.
    pub remote_base: String,
    /// Environment every remote command gets first (e.g. a PATH with Go).
    pub base_env: Vec<(String, String)>,
    /// Clones share the original's connection; only the original closes it.
    owner: bool,
}

/// Quotes for POSIX sh.
pub fn sh_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "'\\''"))
}

impl SshCliExecutor {
    /// From a `Command` as `testsupport::sshd::Sshd::ssh_command` builds it. Commands share one
    /// connection (OpenSSH multiplexing, socket under `control_dir`), as a guest session does.
    pub fn from_command(
        cmd: &Command,
        remote_base: &str,
        base_env: Vec<(String, String)>,
        control_dir: &Path,
    ) -> Self {
        let mut ssh_base = vec![cmd.get_program().to_string_lossy().into_owned()];
        let args: Vec<String> = cmd
            .get_args()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        let (dest, opts) = args.split_last().expect("ssh destination");
        ssh_base.extend(opts.iter().cloned());
        ssh_base.extend([
            "-o".to_string(),
            "ControlMaster=auto".to_string(),
            "-o".to_string(),
            format!("ControlPath={}/cm-%C", control_dir.display()),
            "-o".to_string(),
            "ControlPersist=30".to_string(),
        ]);
        ssh_base.push(dest.clone());
        SshCliExecutor {
            ssh_base,
            remote_base: remote_base.to_string(),
            base_env,
            owner: true,
        }
    }

    fn remote_command(&self, req: &ExecRequest) -> String {
        let mut s = String::new();
        if let Some(cwd) = &req.cwd {
            s.push_str(&format!("cd {} && ", sh_quote(cwd)));
        }
        s.push_str("exec env");
        for (k, v) in self.base_env.iter().chain(&req.env) {
            s.push(' ');
            s.push_str(&sh_quote(&format!("{k}={v}")));
        }
        s.push_str(&format!(
            " timeout -s KILL {} ",
            req.timeout.as_secs().max(1)
        ));
        let argv: Vec<String> = req.argv.iter().map(|a| sh_quote(a)).collect();
        s.push_str(&argv.join(" "));
        s
    }
}

fn files(
    root: &Path,
    rel: &Path,
    skip: UploadFilter<'_>,
    out: &mut Vec<PathBuf>,
) -> std::io::Result<()> {
    for e in std::fs::read_dir(root.join(rel))? {
        let e = e?;
        let r = rel.join(e.file_name());
        if skip(&r) {
            continue;
        }
        if e.file_type()?.is_dir() {
            files(root, &r, skip, out)?;
        } else {
            out.push(r);
        }
    }
    Ok(())
}

impl Drop for SshCliExecutor {
    /// Stops the shared connection's master process.
    fn drop(&mut self) {
        if !self.owner {
            return;
        }
        let (dest, opts) = self.ssh_base[1..].split_last().expect("destination");
        let _ = Command::new(&self.ssh_base[0])
            .args(opts)
            .args(["-O", "exit"])
            .arg(dest)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

impl Executor for SshCliExecutor {
    fn os(&self) -> TargetOs {
        TargetOs::Linux
    }

    fn run(
        &mut self,
        req: &ExecRequest,
        on_line: &mut dyn FnMut(Stream, &[u8]),
    ) -> Result<ExecOutcome, ExecError> {
        let mut argv = self.ssh_base.clone();
        argv.push(self.remote_command(req));
        let local = ExecRequest {
            argv,
            env: Vec::new(),
            cwd: None,
            timeout: req.timeout + Duration::from_secs(10),
            cancel: req.cancel.clone(),
            dump_on_timeout: false,
        };
        let t0 = Instant::now();
        let out = LocalExecutor::new(std::env::temp_dir()).run(&local, on_line)?;
        // `timeout -s KILL` dies by the signal it sent, which ssh reports as 255 (exit-signal).
        let expired = t0.elapsed() + Duration::from_millis(500) >= req.timeout;
        match out.exit_code {
            Some(255 | 137) if expired => Ok(ExecOutcome {
                exit_code: None,
                timed_out: true,
                cancelled: false,
            }),
            Some(255) => Err(ExecError::TargetLost {
                detail: "ssh exited with 255 (connection failed or dropped)".into(),
            }),
            _ => Ok(out),
        }
    }

    fn upload_tree(
        &mut self,
        local: &Path,
        remote: &str,
        skip: UploadFilter<'_>,
    ) -> Result<(), ExecError> {
        let err = |d: String| ExecError::upload(local, remote, d);
        let mut list = Vec::new();
        files(local, Path::new(""), skip, &mut list).map_err(|e| err(e.to_string()))?;
        let mut listfile = tempfile::NamedTempFile::new().map_err(|e| err(e.to_string()))?;
        for f in &list {
            listfile
                .write_all(f.as_os_str().as_encoded_bytes())
                .and_then(|_| listfile.write_all(b"\0"))
                .map_err(|e| err(e.to_string()))?;
        }
        let mut tar = Command::new("tar")
            .arg("-C")
            .arg(local)
            .args(["--null", "-T"])
            .arg(listfile.path())
            .args(["-cf", "-"])
            .stdout(Stdio::piped())
            .spawn()
            .map_err(|e| err(format!("tar: {e}")))?;
        let mut ssh = Command::new(&self.ssh_base[0]);
        ssh.args(&self.ssh_base[1..])
            .arg(format!(
                "mkdir -p {r} && tar -C {r} -xf -",
                r = sh_quote(remote)
            ))
            .stdin(Stdio::from(tar.stdout.take().expect("piped")));
        let mut ssh = ssh.spawn().map_err(|e| err(format!("ssh: {e}")))?;
        let deadline = Instant::now() + Duration::from_secs(300);
        loop {
            if let Some(st) = ssh.try_wait().map_err(|e| err(e.to_string()))? {
                let _ = tar.wait();
                return match st.code() {
                    Some(0) => Ok(()),
                    Some(255) => Err(ExecError::TargetLost {
                        detail: "ssh exited with 255 during upload".into(),
                    }),
                    c => Err(err(format!("remote tar exited with {c:?}"))),
                };
            }
            if Instant::now() > deadline {
                let _ = ssh.kill();
                let _ = tar.kill();
                let _ = (ssh.wait(), tar.wait());
                return Err(err("upload timed out after 300s".into()));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn remote_dir(&self, name: &str) -> String {
        format!("{}/{}", self.remote_base.trim_end_matches('/'), name)
    }

    fn try_clone(&self) -> Option<Box<dyn Executor>> {
        Some(Box::new(SshCliExecutor {
            ssh_base: self.ssh_base.clone(),
            remote_base: self.remote_base.clone(),
            base_env: self.base_env.clone(),
            owner: false,
        }))
    }
}
