//! A real OpenSSH server on loopback for tests.
//!
//! Each [`Sshd`] owns a tempdir with its own ed25519 host key, an ed25519 client key pair, an
//! `sshd_config` and a pid file. It listens on `127.0.0.1:<random free port>` and accepts the
//! current user (tests run as root, so `PermitRootLogin prohibit-password`) with the generated
//! key only. Options give a `ForceCommand` (for the transcript stand-in shell), `SetEnv` lines
//! (so a test can change what a *new* session sees), and extra config lines.
//!
//! Lifecycle helpers model what a guest does to harness: [`Sshd::reload`] (SIGHUP: re-reads the
//! config, existing sessions live on), [`Sshd::restart`] (kill the daemon *and* its sessions, start
//! again on the same port: what `Restart-Service sshd` looks like from the client side),
//! [`Sshd::kill`] (gone for good), [`Sshd::regenerate_host_key`] (a re-created VM). Drop kills the
//! daemon and every session it spawned, so no test leaves orphans.

use std::fs;
use std::io::{self, Read};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, OnceLock, mpsc};
use std::time::{Duration, Instant};

/// How long to wait for sshd to print its banner after a start.
const READY_TIMEOUT: Duration = Duration::from_secs(10);

/// What to put in the generated `sshd_config` besides the fixed loopback/key settings.
#[derive(Debug, Clone, Default)]
pub struct SshdOptions {
    /// `ForceCommand` for every session (e.g. the stand-in shell). The client's command is then
    /// in `$SSH_ORIGINAL_COMMAND`.
    pub force_command: Option<String>,
    /// `SetEnv NAME=value` entries: environment every new session sees.
    pub set_env: Vec<(String, String)>,
    /// Extra raw `sshd_config` lines, appended last.
    pub extra_config: Vec<String>,
}

/// A running (or stopped) OpenSSH server owned by a test.
#[derive(Debug)]
pub struct Sshd {
    dir: tempfile::TempDir,
    port: u16,
    opts: SshdOptions,
    child: Option<Child>,
}

impl Sshd {
    /// Starts sshd with default options.
    pub fn start() -> io::Result<Sshd> {
        Self::start_with(SshdOptions::default())
    }

    /// Generates keys and config in a fresh tempdir, then starts sshd on a free loopback port and
    /// waits (bounded) for its banner.
    pub fn start_with(opts: SshdOptions) -> io::Result<Sshd> {
        // Privilege separation directory; absent on hosts where sshd never ran.
        fs::create_dir_all("/run/sshd")?;
        let dir = tempfile::Builder::new().prefix("harness-sshd-").tempdir()?;
        remove_at_exit(dir.path());
        fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o755))?;
        keygen(&dir.path().join("host_ed25519"), "harness-test-host")?;
        keygen(&dir.path().join("client_ed25519"), "harness-test-client")?;
        let mut sshd = Sshd {
            dir,
            port: 0,
            opts,
            child: None,
        };
        // A port picked by binding :0 can be taken by someone else before sshd binds it; retry.
        let mut last_err = None;
        for _ in 0..5 {
            sshd.port = free_port()?;
            sshd.write_config()?;
            match sshd.spawn() {
                Ok(()) => return Ok(sshd),
                Err(e) => {
                    sshd.stop_daemon();
                    last_err = Some(e);
                }
            }
        }
        Err(last_err.unwrap_or_else(|| io::Error::other("sshd did not start")))
    }

    /// Always `127.0.0.1`.
    pub fn host(&self) -> &'static str {
        "127.0.0.1"
    }

    /// The port sshd listens on (stable across [`Sshd::restart`]).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The socket address sshd listens on.
    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    /// The user tests log in as: the current user.
    pub fn user(&self) -> String {
        current_user()
    }

    /// The private key sshd accepts (no passphrase).
    pub fn client_key(&self) -> PathBuf {
        self.dir.path().join("client_ed25519")
    }

    /// The host's public key as `ssh-ed25519 <base64>` (no comment).
    pub fn host_public_key(&self) -> io::Result<String> {
        let text = fs::read_to_string(self.dir.path().join("host_ed25519.pub"))?;
        let mut parts = text.split_whitespace();
        match (parts.next(), parts.next()) {
            (Some(t), Some(k)) => Ok(format!("{t} {k}")),
            _ => Err(io::Error::other("malformed host public key")),
        }
    }

    /// The fixture's tempdir (config, keys, pid file, logs). Tests may put their own files here.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The sshd log (sshd runs with `-e`, stderr goes here): read it when a test fails.
    pub fn log_path(&self) -> PathBuf {
        self.dir.path().join("sshd.log")
    }

    /// The pid file sshd writes (`PidFile`), as a guest's `/run/sshd.pid`.
    pub fn pid_file(&self) -> PathBuf {
        self.dir.path().join("sshd.pid")
    }

    /// Pid of the listening daemon, if running.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(|c| c.id())
    }

    /// The sshd log so far (for failure messages).
    pub fn log(&self) -> String {
        fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    /// Replaces the `SetEnv` entries; takes effect for new sessions after [`Sshd::reload`] or
    /// [`Sshd::restart`].
    pub fn set_env(&mut self, vars: &[(&str, &str)]) -> io::Result<()> {
        self.opts.set_env = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        self.write_config()
    }

    /// Replaces the `ForceCommand`; takes effect after a reload or restart.
    pub fn set_force_command(&mut self, cmd: Option<String>) -> io::Result<()> {
        self.opts.force_command = cmd;
        self.write_config()
    }

    /// SIGHUP: sshd re-executes itself and re-reads its config; sessions already open live on.
    pub fn reload(&mut self) -> io::Result<()> {
        let pid = self
            .pid()
            .ok_or_else(|| io::Error::other("sshd is not running"))?;
        // SAFETY: plain kill(2) on a pid we own.
        if unsafe { libc::kill(pid as i32, libc::SIGHUP) } != 0 {
            return Err(io::Error::last_os_error());
        }
        // The re-exec closes and reopens the listener; wait until it answers again.
        std::thread::sleep(Duration::from_millis(100));
        wait_banner(self.addr(), READY_TIMEOUT)
    }

    /// Kills sshd and every session it spawned, then starts it again on the same port.
    pub fn restart(&mut self) -> io::Result<()> {
        self.stop_daemon();
        self.spawn_retrying_bind()
    }

    /// Kills sshd and its sessions, then waits `down_for` before starting again on the same port:
    /// a restart that a client sees as a gap.
    pub fn restart_after(&mut self, down_for: Duration) -> io::Result<()> {
        self.stop_daemon();
        std::thread::sleep(down_for);
        self.spawn_retrying_bind()
    }

    /// Kills sshd and its sessions for good (until [`Sshd::start_again`]).
    pub fn kill(&mut self) {
        self.stop_daemon();
    }

    /// Starts a killed sshd again on the same port.
    pub fn start_again(&mut self) -> io::Result<()> {
        if self.child.is_some() {
            return Ok(());
        }
        self.spawn_retrying_bind()
    }

    /// Replaces the host key (as a re-created VM would); effective after a reload or restart.
    pub fn regenerate_host_key(&mut self) -> io::Result<()> {
        let key = self.dir.path().join("host_ed25519");
        let _ = fs::remove_file(&key);
        let _ = fs::remove_file(key.with_extension("pub"));
        keygen(&key, "harness-test-host")
    }

    /// System `ssh` with this fixture's port, key and host key pinned (benchmarks, debugging).
    pub fn ssh_command(&self) -> io::Result<Command> {
        let kh = self.known_hosts_file()?;
        let mut cmd = Command::new("ssh");
        cmd.args(self.client_options(&kh))
            .arg("-p")
            .arg(self.port.to_string())
            .arg(format!("{}@{}", self.user(), self.host()));
        Ok(cmd)
    }

    /// System `scp` options matching [`Sshd::ssh_command`] (destinations are `user@127.0.0.1:path`).
    pub fn scp_command(&self) -> io::Result<Command> {
        let kh = self.known_hosts_file()?;
        let mut cmd = Command::new("scp");
        cmd.args(self.client_options(&kh))
            .arg("-P")
            .arg(self.port.to_string());
        Ok(cmd)
    }

    fn client_options(&self, known_hosts: &Path) -> Vec<String> {
        vec![
            "-i".into(),
            self.client_key().display().to_string(),
            "-o".into(),
            "IdentitiesOnly=yes".into(),
            "-o".into(),
            "BatchMode=yes".into(),
            "-o".into(),
            format!("UserKnownHostsFile={}", known_hosts.display()),
            "-o".into(),
            "StrictHostKeyChecking=yes".into(),
            "-o".into(),
            "ConnectTimeout=10".into(),
        ]
    }

    /// An OpenSSH `known_hosts` file holding this server's current host key.
    pub fn known_hosts_file(&self) -> io::Result<PathBuf> {
        let path = self.dir.path().join("client_known_hosts");
        fs::write(
            &path,
            format!("[127.0.0.1]:{} {}\n", self.port, self.host_public_key()?),
        )?;
        Ok(path)
    }

    fn config_path(&self) -> PathBuf {
        self.dir.path().join("sshd_config")
    }

    fn write_config(&self) -> io::Result<()> {
        let d = self.dir.path();
        let mut cfg = format!(
            "Port {port}\n\
             ListenAddress 127.0.0.1\n\
             HostKey {d}/host_ed25519\n\
             PidFile {d}/sshd.pid\n\
             AuthorizedKeysFile {d}/client_ed25519.pub\n\
             PermitRootLogin prohibit-password\n\
             PubkeyAuthentication yes\n\
             PasswordAuthentication no\n\
             KbdInteractiveAuthentication no\n\
             StrictModes no\n\
             UsePAM no\n\
             PrintMotd no\n\
             PrintLastLog no\n\
             UseDNS no\n\
             MaxStartups 100:30:200\n\
             MaxSessions 50\n\
             LogLevel INFO\n\
             Subsystem sftp /usr/lib/openssh/sftp-server\n",
            port = self.port,
            d = d.display()
        );
        if !self.opts.set_env.is_empty() {
            let vars: Vec<String> = self
                .opts
                .set_env
                .iter()
                .map(|(k, v)| format!("\"{k}={v}\""))
                .collect();
            cfg.push_str(&format!("SetEnv {}\n", vars.join(" ")));
        }
        for line in &self.opts.extra_config {
            cfg.push_str(line);
            cfg.push('\n');
        }
        // ForceCommand must come before any Match block a test appends; keep it unconditional.
        if let Some(fc) = &self.opts.force_command {
            cfg.push_str(&format!("ForceCommand {fc}\n"));
        }
        fs::write(self.config_path(), cfg)
    }

    fn spawn_retrying_bind(&mut self) -> io::Result<()> {
        // After a kill the port can linger briefly; bounded retries.
        let mut last = None;
        for _ in 0..20 {
            match self.spawn() {
                Ok(()) => return Ok(()),
                Err(e) => {
                    self.stop_daemon();
                    last = Some(e);
                    std::thread::sleep(Duration::from_millis(100));
                }
            }
        }
        Err(last.unwrap_or_else(|| io::Error::other("sshd did not start")))
    }

    fn spawn(&mut self) -> io::Result<()> {
        let log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path())?;
        let _ = fs::remove_file(self.pid_file());
        let mut cmd = Command::new("/usr/sbin/sshd");
        cmd.arg("-D")
            .arg("-e")
            .arg("-f")
            .arg(self.config_path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .process_group(0);
        let child = spawn_tied_to_process(cmd)?;
        self.child = Some(child);
        if let Err(e) = wait_banner(self.addr(), READY_TIMEOUT) {
            return Err(io::Error::other(format!(
                "sshd on port {} not ready: {e}\n--- sshd log ---\n{}",
                self.port,
                self.log()
            )));
        }
        // The banner can come from a stranger who owns the port; make sure ours is alive.
        if let Some(c) = self.child.as_mut()
            && let Some(status) = c.try_wait()?
        {
            return Err(io::Error::other(format!(
                "sshd exited ({status}) on port {}\n--- sshd log ---\n{}",
                self.port,
                self.log()
            )));
        }
        Ok(())
    }

    /// Kills the daemon's process group and every descendant (sessions call setsid and leave the
    /// group, so they are found through /proc).
    fn stop_daemon(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        let pid = child.id() as i32;
        let descendants = descendants_of(pid);
        // SAFETY: kill(2) on our own child's group and its descendants.
        unsafe {
            libc::kill(-pid, libc::SIGKILL);
            for d in &descendants {
                libc::kill(*d, libc::SIGKILL);
            }
        }
        let _ = child.wait();
        // Sessions forked between the scan and the kill: one more bounded sweep.
        for d in descendants {
            for dd in descendants_of(d) {
                // SAFETY: as above.
                unsafe { libc::kill(dd, libc::SIGKILL) };
            }
        }
    }
}

impl Drop for Sshd {
    fn drop(&mut self) {
        self.stop_daemon();
    }
}

/// Fixtures kept in a `static` are never dropped; their tempdirs are removed when the test
/// process exits (libtest ends with `exit`, which runs `atexit` handlers).
fn remove_at_exit(dir: &Path) {
    static DIRS: Mutex<Vec<PathBuf>> = Mutex::new(Vec::new());
    static REGISTER: std::sync::Once = std::sync::Once::new();
    extern "C" fn cleanup() {
        if let Ok(dirs) = DIRS.lock() {
            for d in dirs.iter() {
                let _ = fs::remove_dir_all(d);
            }
        }
    }
    REGISTER.call_once(|| {
        // SAFETY: registering a plain extern "C" function with no captured state.
        unsafe { libc::atexit(cleanup) };
    });
    if let Ok(mut dirs) = DIRS.lock() {
        dirs.push(dir.to_path_buf());
    }
}

/// Spawns `cmd` so that it dies with the test process, even when the fixture lives in a
/// `static` (never dropped) or the test binary is killed: the child gets `PR_SET_PDEATHSIG`,
/// which fires when the spawning *thread* exits, so all spawns happen on one thread that lives as
/// long as the process.
fn spawn_tied_to_process(mut cmd: Command) -> io::Result<Child> {
    type Request = (Command, mpsc::Sender<io::Result<Child>>);
    static SPAWNER: OnceLock<Mutex<mpsc::Sender<Request>>> = OnceLock::new();
    let tx = SPAWNER.get_or_init(|| {
        let (tx, rx) = mpsc::channel::<Request>();
        std::thread::Builder::new()
            .name("testsupport-spawner".into())
            .spawn(move || {
                for (mut cmd, reply) in rx {
                    // SAFETY: prctl and getppid are async-signal-safe.
                    unsafe {
                        cmd.pre_exec(|| {
                            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                                return Err(io::Error::last_os_error());
                            }
                            Ok(())
                        });
                    }
                    let _ = reply.send(cmd.spawn());
                }
            })
            .expect("spawning the testsupport spawner thread");
        Mutex::new(tx)
    });
    let (reply_tx, reply_rx) = mpsc::channel();
    tx.lock()
        .map_err(|_| io::Error::other("spawner lock poisoned"))?
        .send((std::mem::replace(&mut cmd, Command::new("true")), reply_tx))
        .map_err(|_| io::Error::other("spawner thread is gone"))?;
    reply_rx
        .recv()
        .map_err(|_| io::Error::other("spawner thread is gone"))?
}

/// Writes an unencrypted ed25519 key pair at `path` / `path.pub`.
fn keygen(path: &Path, comment: &str) -> io::Result<()> {
    let out = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", comment, "-f"])
        .arg(path)
        .stdin(Stdio::null())
        .output()?;
    if !out.status.success() {
        return Err(io::Error::other(format!(
            "ssh-keygen failed: {}",
            String::from_utf8_lossy(&out.stderr)
        )));
    }
    Ok(())
}

/// A loopback port that was free a moment ago.
pub fn free_port() -> io::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// Waits until something on `addr` sends an `SSH-` banner, bounded by `timeout`.
pub fn wait_banner(addr: SocketAddr, timeout: Duration) -> io::Result<()> {
    let deadline = Instant::now() + timeout;
    let mut last = io::Error::other("no attempt");
    while Instant::now() < deadline {
        match TcpStream::connect_timeout(&addr, Duration::from_millis(500)) {
            Ok(mut s) => {
                s.set_read_timeout(Some(Duration::from_secs(2)))?;
                let mut buf = [0u8; 4];
                match s.read_exact(&mut buf) {
                    Ok(()) if &buf == b"SSH-" => return Ok(()),
                    Ok(()) => last = io::Error::other("not an SSH banner"),
                    Err(e) => last = e,
                }
            }
            Err(e) => last = e,
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Err(io::Error::new(
        io::ErrorKind::TimedOut,
        format!("no SSH banner on {addr} within {timeout:?}: {last}"),
    ))
}

/// The name of the user running the tests.
pub fn current_user() -> String {
    // SAFETY: getpwuid returns a pointer into static storage or null; we copy the name at once.
    unsafe {
        let pw = libc::getpwuid(libc::getuid());
        if !pw.is_null()
            && let Ok(name) = std::ffi::CStr::from_ptr((*pw).pw_name).to_str()
        {
            return name.to_string();
        }
    }
    std::env::var("USER").unwrap_or_else(|_| "root".into())
}

/// All descendants of `root` according to /proc (children before grandchildren).
fn descendants_of(root: i32) -> Vec<i32> {
    let mut parent_of = Vec::new();
    if let Ok(rd) = fs::read_dir("/proc") {
        for e in rd.flatten() {
            let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else {
                continue;
            };
            let Ok(stat) = fs::read_to_string(format!("/proc/{pid}/stat")) else {
                continue;
            };
            // Fields after the last ')' (comm may contain spaces): state ppid ...
            let Some(rest) = stat.rsplit_once(')').map(|(_, r)| r) else {
                continue;
            };
            let mut it = rest.split_whitespace();
            let _state = it.next();
            if let Some(ppid) = it.next().and_then(|p| p.parse::<i32>().ok()) {
                parent_of.push((pid, ppid));
            }
        }
    }
    let mut out = Vec::new();
    let mut frontier = vec![root];
    while let Some(p) = frontier.pop() {
        for &(pid, ppid) in &parent_of {
            if ppid == p && !out.contains(&pid) {
                out.push(pid);
                frontier.push(pid);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn starts_accepts_key_restarts_and_dies() {
        let mut sshd = Sshd::start().expect("start sshd");
        let out = sshd
            .ssh_command()
            .unwrap()
            .arg("echo hello-$((1+1))")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "ssh failed: {}\n{}",
            String::from_utf8_lossy(&out.stderr),
            sshd.log()
        );
        assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "hello-2");

        sshd.set_env(&[("HARNESS_MARK", "v2")]).unwrap();
        sshd.restart().unwrap();
        let out = sshd
            .ssh_command()
            .unwrap()
            .arg("echo $HARNESS_MARK")
            .output()
            .unwrap();
        assert_eq!(
            String::from_utf8_lossy(&out.stdout).trim(),
            "v2",
            "{}",
            sshd.log()
        );

        sshd.set_env(&[("HARNESS_MARK", "v3")]).unwrap();
        sshd.reload().unwrap();
        let out = sshd
            .ssh_command()
            .unwrap()
            .arg("echo $HARNESS_MARK")
            .output()
            .unwrap();
        assert_eq!(
            String::from_utf8_lossy(&out.stdout).trim(),
            "v3",
            "{}",
            sshd.log()
        );

        let port = sshd.port();
        sshd.kill();
        assert!(TcpStream::connect(("127.0.0.1", port)).is_err());
    }
}
