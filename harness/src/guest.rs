//! The bridge between a provision guest [`Session`] and suites' [`Executor`]: suites knows
//! nothing of VMs, so harness backs its executor with the guest session.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use provision::GuestOs;
use provision::session::{
    CancelHandle, RemoteCommand, Session, SessionError, Stream as GuestStream,
};

use crate::crash::CrashGuard;
use suites::{ExecError, ExecOutcome, ExecRequest, Executor, Stream, TargetOs, UploadFilter};

/// Runs suites' commands in the guest over SSH.
///
/// The session gets a private cancel handle (`abort`) that a small thread raises on Ctrl-C
/// (sticky, as before) or when the crash watch hears of a crash this executor has not reported
/// yet (reset once it is reported), so a command in a crashed guest ends at once.
pub struct SessionExecutor {
    session: Session,
    ctrl_c: CancelHandle,
    abort: CancelHandle,
    crash: Option<Arc<CrashGuard>>,
    /// The crash generation this executor has reported (shared with its mirror thread; the
    /// mutex makes "check and cancel" and "mark reported and reset" exclusive).
    seen: Arc<(AtomicU64, std::sync::Mutex<()>)>,
    stop: Arc<AtomicBool>,
    mirror: Option<std::thread::JoinHandle<()>>,
}

impl SessionExecutor {
    pub fn new(session: Session) -> Self {
        Self::build(session, None)
    }

    /// An executor that reports guest crashes and can bring the guest back.
    pub fn with_crash_guard(session: Session, guard: Arc<CrashGuard>) -> Self {
        Self::build(session, Some(guard))
    }

    fn build(session: Session, crash: Option<Arc<CrashGuard>>) -> Self {
        let ctrl_c = session.cancel_handle();
        let abort = CancelHandle::default();
        let session = session.with_cancel(abort.clone());
        let seen = Arc::new((
            AtomicU64::new(crash.as_ref().map_or(0, |g| g.state.generation())),
            std::sync::Mutex::new(()),
        ));
        let stop = Arc::new(AtomicBool::new(false));
        let mirror = {
            let (ctrl_c, abort, stop, seen) =
                (ctrl_c.clone(), abort.clone(), stop.clone(), seen.clone());
            let state = crash.as_ref().map(|g| g.state.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::SeqCst) {
                    {
                        let _gate = seen.1.lock().expect("crash gate");
                        let crashed = state
                            .as_ref()
                            .is_some_and(|s| s.generation() > seen.0.load(Ordering::SeqCst));
                        if ctrl_c.is_cancelled() || crashed {
                            abort.cancel();
                        }
                    }
                    std::thread::sleep(Duration::from_millis(100));
                }
            })
        };
        SessionExecutor {
            session,
            ctrl_c,
            abort,
            crash,
            seen,
            stop,
            mirror: Some(mirror),
        }
    }

    /// The session (for steps after the suites).
    pub fn session_mut(&mut self) -> &mut Session {
        &mut self.session
    }

    /// A crash this executor has not reported yet: marks it reported and returns its error.
    fn unreported_crash(&mut self) -> Option<ExecError> {
        let g = self.crash.clone()?;
        let now = g.state.generation();
        if now <= self.seen.0.load(Ordering::SeqCst) {
            return None;
        }
        self.mark_seen(now);
        self.session.disconnect();
        Some(ExecError::TargetCrashed {
            reason: g.state.reason(),
        })
    }
}

impl SessionExecutor {
    /// Crashes up to `generation` are reported: the abort handle goes down (unless Ctrl-C).
    fn mark_seen(&mut self, generation: u64) {
        let _gate = self.seen.1.lock().expect("crash gate");
        self.seen.0.store(generation, Ordering::SeqCst);
        if !self.ctrl_c.is_cancelled() {
            self.abort.reset();
        }
    }
}

impl Drop for SessionExecutor {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.mirror.take() {
            let _ = t.join();
        }
    }
}

/// The Windows form of an argv: PowerShell that runs the program with literal arguments and
/// passes its exit code on.
pub fn powershell_invocation(argv: &[String]) -> String {
    let quoted: Vec<String> = argv
        .iter()
        .map(|a| provision::session::wrap::ps_quote(a))
        .collect();
    format!("& {}\nexit $LASTEXITCODE", quoted.join(" "))
}

fn remote_command(os: GuestOs, req: &ExecRequest) -> RemoteCommand {
    let mut cmd = match os {
        GuestOs::Linux => RemoteCommand::new(req.argv.iter().cloned()),
        GuestOs::Windows => RemoteCommand::script(powershell_invocation(&req.argv)),
    };
    for (k, v) in &req.env {
        cmd = cmd.env(k.clone(), v.clone());
    }
    if let Some(d) = &req.cwd {
        cmd = cmd.cwd(d.clone());
    }
    let cmd = cmd.timeout(req.timeout);
    if req.dump_on_timeout {
        cmd.dump_on_timeout()
    } else {
        cmd
    }
}

fn lost(e: SessionError) -> ExecError {
    ExecError::TargetLost {
        detail: e.to_string(),
    }
}

impl Executor for SessionExecutor {
    fn os(&self) -> TargetOs {
        match self.session.os() {
            GuestOs::Linux => TargetOs::Linux,
            GuestOs::Windows => TargetOs::Windows,
        }
    }

    fn run(
        &mut self,
        req: &ExecRequest,
        on_line: &mut dyn FnMut(Stream, &[u8]),
    ) -> Result<ExecOutcome, ExecError> {
        if let Some(e) = self.unreported_crash() {
            return Err(e);
        }
        if !self.session.is_connected() {
            self.session
                .reconnect(Duration::from_secs(30))
                .map_err(lost)?;
        }
        let cmd = remote_command(self.session.os(), req);
        // The session's cancel handle is the Ctrl-C flag; a request may carry its own.
        let cancel = req.cancel.clone();
        let handle = self.session.cancel_handle();
        let watcher = cancel.map(|flag| {
            let handle = handle.clone();
            let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
            let stop2 = stop.clone();
            let t = std::thread::spawn(move || {
                while !stop2.load(Ordering::SeqCst) {
                    if flag.is_cancelled() {
                        handle.cancel();
                        return;
                    }
                    std::thread::sleep(Duration::from_millis(100));
                }
            });
            (stop, t)
        });
        let result = self.session.exec(&cmd, &mut |s, line| {
            let s = match s {
                GuestStream::Stdout => Stream::Stdout,
                GuestStream::Stderr => Stream::Stderr,
            };
            on_line(s, line.as_bytes());
        });
        if let Some((stop, t)) = watcher {
            stop.store(true, Ordering::SeqCst);
            let _ = t.join();
        }
        // Whatever the command did, a crash under it voids it.
        if let Some(e) = self.unreported_crash() {
            return Err(e);
        }
        if let (Err(e), Some(g)) = (&result, &self.crash)
            && e.is_connection_error()
            && g.rebooted(self.session.endpoint(), self.session.options())
            && let Some(e) = self.unreported_crash()
        {
            return Err(e);
        }
        match result {
            Ok(status) => Ok(ExecOutcome {
                exit_code: Some(status.code),
                timed_out: false,
                cancelled: false,
            }),
            Err(SessionError::Timeout { .. }) => Ok(ExecOutcome {
                exit_code: None,
                timed_out: true,
                cancelled: false,
            }),
            Err(SessionError::Cancelled { .. }) => Ok(ExecOutcome {
                exit_code: None,
                timed_out: false,
                cancelled: true,
            }),
            Err(e) if e.is_connection_error() => Err(lost(e)),
            Err(e) => Err(ExecError::Spawn {
                program: req.argv.first().cloned().unwrap_or_default(),
                detail: e.to_string(),
            }),
        }
    }

    fn upload_tree(
        &mut self,
        local: &Path,
        remote: &str,
        skip: UploadFilter<'_>,
    ) -> Result<(), ExecError> {
        let upload_err = |detail: String| ExecError::upload(local, remote, detail);
        // The session sends whole trees; stage the kept entries as hard links (copies across
        // filesystems) so the filter costs no data copy.
        let staged = tempfile::Builder::new()
            .prefix("harness-upload-")
            .tempdir()
            .map_err(|e| upload_err(e.to_string()))?;
        stage(local, local, staged.path(), skip).map_err(|e| upload_err(e.to_string()))?;
        match self.session.upload_tree(staged.path(), remote) {
            Ok(_) => Ok(()),
            Err(e) if e.is_connection_error() => Err(lost(e)),
            Err(e) => Err(upload_err(e.to_string())),
        }
    }

    fn remote_dir(&self, name: &str) -> String {
        match self.session.os() {
            GuestOs::Linux => format!("/tmp/harness/{name}"),
            GuestOs::Windows => format!(r"C:\harness\work\{name}"),
        }
    }

    fn download(&mut self, remote: &str, local: &Path) -> Result<u64, ExecError> {
        match self.session.download_file(remote, local) {
            Ok(n) => Ok(n),
            Err(e) if e.is_connection_error() => Err(lost(e)),
            Err(e) => Err(ExecError::Io {
                what: format!("fetching {remote} from the guest"),
                source: std::io::Error::other(e.to_string()),
            }),
        }
    }

    /// Brings a crashed guest back (see [`crate::crash`]); without a crash guard it cannot.
    fn recover(&mut self, reason: &str) -> Result<String, ExecError> {
        let Some(g) = self.crash.clone() else {
            return Err(ExecError::TargetLost {
                detail: format!(
                    "guest crashed ({reason}) and harness has no VM to bring back here"
                ),
            });
        };
        let note = g
            .recover(reason, self.session.endpoint(), self.session.options())
            .map_err(|detail| ExecError::TargetLost { detail })?;
        self.mark_seen(g.state.generation());
        self.session.disconnect();
        Ok(note)
    }

    /// A second SSH connection to the same guest (same endpoint, options and Ctrl-C flag), so
    /// that suites can upload and run packages side by side; `None` when it cannot connect.
    fn try_clone(&self) -> Option<Box<dyn Executor>> {
        match Session::connect(self.session.endpoint(), self.session.options()) {
            Ok(s) => Some(Box::new(SessionExecutor::build(
                s.with_cancel(self.ctrl_c.clone()),
                self.crash.clone(),
            ))),
            Err(e) => {
                tracing::warn!("could not open another session to the guest: {e}");
                None
            }
        }
    }
}

/// Mirrors the kept entries of `dir` into `out`: files as hard links (copies keeping their mtime
/// across filesystems), symlinks as the same links (suites has already decided which links a
/// target gets), and an error for anything else, so that nothing is left out silently.
fn stage(root: &Path, dir: &Path, out: &Path, skip: UploadFilter<'_>) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let path = entry.path();
        let rel = path.strip_prefix(root).expect("under root");
        if skip(rel) {
            continue;
        }
        let target = out.join(rel);
        let ft = entry.file_type()?;
        if ft.is_dir() {
            std::fs::create_dir_all(&target)?;
            stage(root, &path, out, skip)?;
        } else if ft.is_file() {
            suites::stage::link_or_copy(&path, &target)?;
        } else if ft.is_symlink() {
            std::os::unix::fs::symlink(std::fs::read_link(&path)?, &target)?;
        } else {
            return Err(std::io::Error::other(format!(
                "{} is a special file (fifo, socket or device), which cannot be uploaded; remove it from the tree",
                path.display()
            )));
        }
    }
    Ok(())
}

/// Takes the VM's lock shared for a command that uses the VM (`exec`, `cp`, `ssh`, `test`,
/// `install`, `ext`), so `down`, `reset` and `destroy` refuse to pull it away meanwhile. Held
/// until the returned value is dropped. When a command that drives the VM (`up`, `run`, …) holds
/// the lock, this one goes ahead without it, with a warning: that command keeps the VM up
/// (`run`), or the connection fails anyway (`down`, `reset`).
pub fn hold_vm(
    ctx: &crate::context::Context,
) -> anyhow::Result<Option<provision::vm::lock::VmLock>> {
    let dirs = ctx.vm_dirs();
    match provision::vm::use_lock(&ctx.config.vm, &dirs) {
        Ok(l) => Ok(Some(l)),
        Err(e @ provision::vm::VmError::Busy { .. }) => {
            eprintln!("warning: {e}; going ahead without sharing the VM lock");
            Ok(None)
        }
        Err(e) => Err(anyhow::Error::new(e).context("taking the VM lock")),
    }
}

/// A session to the configured VM or host, wherever its SSH endpoint is: the qemu backend keeps
/// the forwarded port in its state, libvirt asks virsh, the ssh backend takes `[vm]`.
/// QEMU VMs pin host keys in their own known_hosts and accept the key of a freshly made disk.
pub fn session(
    ctx: &crate::context::Context,
    accept_new_host_key: bool,
    connect_timeout: Duration,
) -> anyhow::Result<Session> {
    use anyhow::Context as _;
    let cfg = &ctx.config.vm;
    let dirs = ctx.vm_dirs();
    let mut vm = provision::vm::Vm::inspect(cfg, &dirs).context("looking up the VM")?;
    let ep = vm.endpoint().context("finding the VM's SSH endpoint")?;
    let Some(ep) = ep else {
        anyhow::bail!(
            "VM '{}' is not running: start it with `harness up` (or set [vm] backend = \"ssh\" with host and port for an existing machine)",
            cfg.name
        );
    };
    if ep.port == 0 {
        anyhow::bail!(
            "no SSH port for the guest: set [vm] port (22 for a normal sshd) or start a VM with `harness up`"
        );
    }
    let mut opts = provision::session::SessionOptions::new(vm.known_hosts());
    // The qemu backend pins the key itself while it (re)creates the VM; after that a changed key
    // is refused like any other.
    opts.accept_new_host_key = accept_new_host_key;
    let s = Session::connect_with_retry(&ep, &opts, connect_timeout.max(Duration::from_secs(1)))
        .with_context(|| format!("connecting to the guest at {ep}"))?;
    Ok(s.with_cancel(ctx.cancel.clone()))
}

/// Fills the efW fields of the provenance from the host's record of what harness installed in
/// this VM (`<state>/vms/<vm>/installed.json`); the tests get the version as `CI_EFW_VERSION`.
pub fn fill_provenance(ctx: &crate::context::Context, prov: &mut suites::Provenance) {
    let path = provision::install::host_record_path(&ctx.paths.state, &ctx.config.vm.name);
    let record = if crate::pipeline::efw_none(&ctx.config.efw.source) {
        Ok(None) // no runtime on purpose: CI_EFW_VERSION stays unset, no warning
    } else {
        provision::install::load_host_record(&path)
    };
    match record {
        Ok(Some(rec)) => {
            prov.efw_source = Some(rec.build.source.clone());
            prov.efw_run_id = rec.build.run_id.map(|r| r.to_string());
            prov.efw_sha = rec.build.head_sha.clone();
            prov.efw_version = rec.ci_efw_version();
            prov.extra
                .insert("efw_build_key".into(), rec.build.key.clone());
        }
        Ok(None) if crate::pipeline::efw_none(&ctx.config.efw.source) => {}
        Ok(None) => tracing::warn!(
            "no efW install recorded for VM '{}' ({}): CI_EFW_VERSION stays unset; run `harness install` first",
            ctx.config.vm.name,
            path.display()
        ),
        Err(e) => tracing::warn!("cannot read {}: {e}", path.display()),
    }
    if ctx.label.is_some() {
        // One VM of `run --vms N`: which one ran these packages.
        prov.extra.insert("vm".into(), ctx.config.vm.name.clone());
    }
    prov.guest_os = Some(
        serde_json::to_value(ctx.config.vm.os)
            .ok()
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_default(),
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_invocation_quotes_every_argument() {
        let s = powershell_invocation(&[
            r"C:\harness\work\x\link.test.exe".into(),
            "-test.run=^(TestA|TestB)$".into(),
            "it's".into(),
        ]);
        assert_eq!(
            s,
            "& 'C:\\harness\\work\\x\\link.test.exe' '-test.run=^(TestA|TestB)$' 'it''s'\nexit $LASTEXITCODE"
        );
    }

    #[test]
    fn staging_applies_the_filter() {
        let src = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(src.path().join(".git/objects")).unwrap();
        std::fs::write(src.path().join(".git/objects/x"), "x").unwrap();
        std::fs::create_dir_all(src.path().join("pkg/testdata")).unwrap();
        std::fs::write(src.path().join("pkg/testdata/a"), "a").unwrap();
        std::fs::write(src.path().join("go.mod"), "module m").unwrap();
        std::os::unix::fs::symlink("a", src.path().join("pkg/testdata/link")).unwrap();
        let out = tempfile::tempdir().unwrap();
        stage(src.path(), src.path(), out.path(), &|p: &Path| {
            p.starts_with(".git")
        })
        .unwrap();
        assert!(out.path().join("pkg/testdata/a").is_file());
        assert!(out.path().join("go.mod").is_file());
        assert!(!out.path().join(".git").exists());
        let link = out.path().join("pkg/testdata/link");
        assert_eq!(
            std::fs::read_link(&link).unwrap(),
            Path::new("a"),
            "links are sent as links, not dropped"
        );
    }
}
