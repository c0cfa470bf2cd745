//! Crash forensics during `harness run`: the glue between the VM's crash watch
//! (`provision::vm::panic_watch`), the guest sessions of the suites ([`crate::guest`]) and the
//! forensics steps (`provision::forensics`).
//!
//! A guest panic (QMP `GUEST_PANICKED`), or a dropped connection after which the guest answers
//! with a new boot id, raises the crash generation. Every session then aborts its command and
//! reports `TargetCrashed`; the suites runner errors the running packages "guest crashed (…)"
//! and calls [`CrashGuard::recover`]: wait for the guest to come back (else restore the ready
//! snapshot), run `[vm] setup` again, put the efW runtime back if the reboot lost it, keep the serial console's tail and the guest's new dumps in
//! `results/dumps/`, and go on with the remaining packages.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use provision::session::{Endpoint, GuestOs, Session, SessionOptions};
use provision::vm::panic_watch::GuestPanic;
use provision::vm::{UpOptions, UpOutcome, Vm};

/// Puts the efW runtime back after a crash when the reboot lost it (a guest whose disk is RAM);
/// a no-op when it still verifies. Returns what it did.
pub type Reinstall = Box<dyn Fn(&mut Session) -> Result<String, String> + Send + Sync>;

/// Lines of the serial console kept per crash.
const SERIAL_TAIL_LINES: usize = 200;

/// What the crash watch has heard, shared by every session of the run.
#[derive(Debug, Default)]
pub struct CrashState {
    generation: AtomicU64,
    reasons: Mutex<Vec<String>>,
}

impl CrashState {
    /// How many crashes so far.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::SeqCst)
    }

    /// The reason of the latest crash.
    pub fn reason(&self) -> String {
        self.reasons
            .lock()
            .expect("crash reasons")
            .last()
            .cloned()
            .unwrap_or_else(|| "unknown".into())
    }

    /// Records a crash (the watch's callback, or a session that found a new boot id).
    pub fn record(&self, reason: &str) {
        self.reasons
            .lock()
            .expect("crash reasons")
            .push(reason.to_string());
        self.generation.fetch_add(1, Ordering::SeqCst);
    }

    /// Records a guest panic QEMU reported, unless one was recorded in the last seconds (a
    /// Windows guest may report more than once per bugcheck).
    pub fn record_panic(&self, p: &GuestPanic, last: &Mutex<Option<Instant>>) {
        let mut l = last.lock().expect("last panic");
        if l.is_some_and(|t| t.elapsed() < Duration::from_secs(10)) {
            return;
        }
        *l = Some(Instant::now());
        self.record(&p.reason);
    }
}

/// Everything needed to bring the guest back and keep what a crash left.
pub struct CrashGuard {
    pub state: Arc<CrashState>,
    vm: Arc<Mutex<Vm>>,
    up: UpOutcome,
    os: GuestOs,
    setup: bool,
    reinstall: Option<Reinstall>,
    ready_snapshot: String,
    boot_timeout: Duration,
    /// `results/dumps`.
    pub dumps_dir: PathBuf,
    /// When the run began (UTC, RFC 3339): dumps written after it are new.
    pub since: String,
    /// The boot id when the suites began (or after the last recovery).
    boot_id: Mutex<String>,
    /// Guest files already fetched (not reported twice).
    fetched: Mutex<Vec<String>>,
    /// Files kept in `dumps_dir` so far.
    pub kept: Mutex<Vec<PathBuf>>,
}

impl std::fmt::Debug for CrashGuard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CrashGuard")
            .field("dumps_dir", &self.dumps_dir)
            .finish_non_exhaustive()
    }
}

/// The settings of a [`CrashGuard`].
pub struct GuardSettings {
    pub os: GuestOs,
    pub setup: bool,
    /// The installed runtime, put back after each recovery.
    pub reinstall: Option<Reinstall>,
    pub ready_snapshot: String,
    pub boot_timeout: Duration,
    pub dumps_dir: PathBuf,
    pub since: String,
}

impl CrashGuard {
    pub fn new(
        state: Arc<CrashState>,
        vm: Arc<Mutex<Vm>>,
        up: UpOutcome,
        s: GuardSettings,
        boot_id: String,
    ) -> Self {
        CrashGuard {
            state,
            vm,
            up,
            os: s.os,
            setup: s.setup,
            reinstall: s.reinstall,
            ready_snapshot: s.ready_snapshot,
            boot_timeout: s.boot_timeout,
            dumps_dir: s.dumps_dir,
            since: s.since,
            boot_id: Mutex::new(boot_id),
            fetched: Mutex::new(Vec::new()),
            kept: Mutex::new(Vec::new()),
        }
    }

    fn connect(&self, ep: &Endpoint, opts: &SessionOptions) -> Result<Session, String> {
        Session::connect_with_retry(ep, opts, self.boot_timeout).map_err(|e| e.to_string())
    }

    /// After a dropped connection: is the guest back with a new boot id (it rebooted under the
    /// run)? Waits up to `[vm] boot_timeout`; records the crash when so.
    pub fn rebooted(&self, ep: &Endpoint, opts: &SessionOptions) -> bool {
        let Ok(mut s) = self.connect(ep, opts) else {
            return false;
        };
        let Ok(now) = s.boot_id() else { return false };
        let before = self.boot_id.lock().expect("boot id").clone();
        if now.is_empty() || now == before {
            return false;
        }
        self.state
            .record("guest rebooted unexpectedly (new boot id)");
        true
    }

    /// Brings the guest back after crash number `n` and keeps what it left; returns a note.
    pub fn recover(
        &self,
        reason: &str,
        ep: &Endpoint,
        opts: &SessionOptions,
    ) -> Result<String, String> {
        let n = self.state.generation();
        let serial = self.keep_serial(n);
        let (mut session, how) = match self.connect(ep, opts) {
            Ok(s) => (s, "the guest is back"),
            Err(e) => (
                self.restore(&e)?,
                "restored the ready snapshot (the guest's own dumps are lost)",
            ),
        };
        let boot = session.boot_id().unwrap_or_default();
        let how = if how == "the guest is back" {
            if self.setup {
                let vm = self.vm.lock().expect("vm");
                vm.rerun_setup(&self.up, &mut |_| {})
                    .map_err(|e| format!("`[vm] setup` after the reboot failed: {e}"))?;
            }
            format!("{how} (new boot id)")
        } else {
            how.to_string()
        };
        let how = match &self.reinstall {
            Some(reinstall) => {
                let did = reinstall(&mut session).map_err(|e| {
                    format!("reinstalling the efW runtime after the crash failed: {e}")
                })?;
                format!("{how}; {did}")
            }
            None => how,
        };
        *self.boot_id.lock().expect("boot id") = boot;
        let (fetched, bugcheck) = self.fetch_new(&mut session);
        let mut kept: Vec<String> = serial.into_iter().collect();
        kept.extend(fetched);
        let record = serde_json::json!({
            "crash": n,
            "reason": reason,
            "bugcheck": bugcheck,
            "recovery": how,
            "files": kept,
        });
        let path = self.dumps_dir.join(format!("crash-{n}.json"));
        let _ = std::fs::create_dir_all(&self.dumps_dir);
        if std::fs::write(
            &path,
            serde_json::to_vec_pretty(&record).unwrap_or_default(),
        )
        .is_ok()
        {
            self.kept.lock().expect("kept").push(path);
        }
        let bug = bugcheck
            .map(|b| format!("; the System log says bugcheck {b}"))
            .unwrap_or_default();
        Ok(format!(
            "{how}; kept {} in {}{bug}",
            if kept.is_empty() {
                "nothing".to_string()
            } else {
                kept.join(", ")
            },
            self.dumps_dir.display()
        ))
    }

    fn restore(&self, why: &str) -> Result<Session, String> {
        let mut vm = self.vm.lock().expect("vm");
        let opts = UpOptions {
            restore: Some(self.ready_snapshot.clone()),
            ..Default::default()
        };
        let up = vm.up(&opts, &mut |_| {}).map_err(|e| {
            format!(
                "the guest did not come back ({why}) and restoring snapshot '{}' failed: {e}",
                self.ready_snapshot
            )
        })?;
        let mut o = SessionOptions::new(up.known_hosts.clone());
        o.accept_new_host_key = false;
        self.connect(&up.endpoint, &o)
            .map_err(|e| format!("the guest did not answer after the snapshot restore: {e}"))
    }

    /// `crash-N-serial.log`: the serial console's tail (qemu backend).
    fn keep_serial(&self, n: u64) -> Option<String> {
        let log = self.vm.lock().expect("vm").serial_log()?;
        let text = provision::forensics::tail(&log, SERIAL_TAIL_LINES);
        if text.trim().is_empty() {
            return None;
        }
        let name = format!("crash-{n}-serial.log");
        let path = self.dumps_dir.join(&name);
        std::fs::create_dir_all(&self.dumps_dir).ok()?;
        std::fs::write(&path, text).ok()?;
        self.kept.lock().expect("kept").push(path);
        Some(name)
    }

    /// Fetches the guest's dumps written since the run began and not fetched yet; returns the
    /// file names kept and the bugcheck the System log recorded.
    pub fn fetch_new(&self, session: &mut Session) -> (Vec<String>, Option<String>) {
        if self.os != GuestOs::Windows {
            return (Vec::new(), None);
        }
        let list = match provision::forensics::list_new(session, &self.since) {
            Ok(l) => l,
            Err(e) => {
                tracing::warn!("could not list the guest's crash dumps: {e}");
                return (
                    vec![format!("(listing the guest's dumps failed: {e})")],
                    None,
                );
            }
        };
        let mut fetched = self.fetched.lock().expect("fetched");
        let fresh: Vec<_> = list
            .dumps
            .into_iter()
            .filter(|d| !fetched.contains(&d.path))
            .collect();
        let mut names = Vec::new();
        for f in provision::forensics::fetch(session, &fresh, &self.dumps_dir) {
            fetched.push(f.dump.path.clone());
            match (f.local, f.error) {
                (Some(l), _) => {
                    names.push(
                        l.file_name()
                            .unwrap_or_default()
                            .to_string_lossy()
                            .into_owned(),
                    );
                    self.kept.lock().expect("kept").push(l);
                }
                (None, e) => names.push(format!(
                    "(not fetched: {} in the guest: {})",
                    f.dump.path,
                    e.unwrap_or_default()
                )),
            }
        }
        (names, list.bugcheck)
    }
}

/// Starts crash forensics for `harness run` (unless `[vm] crash_watch = false`): the crash
/// watch on the VM (qemu backend) and an executor that reports crashes and brings the guest
/// back; dumps go to `<out>/dumps`. Returns the executor, its guard and the watch (keep it).
pub fn watch(
    ctx: &crate::context::Context,
    vm: Vm,
    up: UpOutcome,
    mut session: Session,
    out: &std::path::Path,
    since: String,
    reinstall: Option<Reinstall>,
) -> (
    crate::guest::SessionExecutor,
    Option<Arc<CrashGuard>>,
    Option<provision::vm::panic_watch::PanicWatch>,
) {
    let cfg = &ctx.config.vm;
    if !cfg.crash_watch {
        return (crate::guest::SessionExecutor::new(session), None, None);
    }
    let state = Arc::new(CrashState::default());
    let vm = Arc::new(Mutex::new(vm));
    let last = Mutex::new(None);
    let (st, shown) = (state.clone(), ctx.output().clone());
    let on_panic = Box::new(move |p: GuestPanic| {
        let note = format!(
            "harness: guest crashed ({}): the running packages fail, waiting for the guest to come back",
            p.reason
        );
        shown.emit(&crate::render::Event::Notice(&note));
        st.record_panic(&p, &last);
    });
    let watch = match vm.lock().expect("vm").panic_watch(cfg.os, on_panic) {
        Ok(w) => w,
        Err(e) => {
            tracing::warn!("no crash watch (QMP events): {e}; a crash shows as a new boot id");
            None
        }
    };
    let boot_id = session.boot_id().unwrap_or_default();
    let settings = GuardSettings {
        os: cfg.os,
        setup: !cfg.setup.is_empty(),
        reinstall,
        ready_snapshot: cfg.ready_snapshot.clone(),
        boot_timeout: Duration::from_secs(cfg.boot_timeout.max(1)),
        dumps_dir: out.join("dumps"),
        since,
    };
    let guard = Arc::new(CrashGuard::new(state, vm, up, settings, boot_id));
    let exec = crate::guest::SessionExecutor::with_crash_guard(session, guard.clone());
    (exec, Some(guard), watch)
}

/// After the suites: fetches the guest's dumps not fetched yet and says what the run left in
/// `dumps/`; returns how many files are there (more than zero fails the run).
pub fn final_dumps(
    ctx: &crate::context::Context,
    guard: Option<&CrashGuard>,
    exec: &mut crate::guest::SessionExecutor,
) -> usize {
    let Some(g) = guard else { return 0 };
    let (names, _) = g.fetch_new(exec.session_mut());
    for n in names.iter().filter(|n| n.starts_with('(')) {
        eprintln!("warning: {n}");
    }
    let kept = g.kept.lock().expect("kept").len();
    if kept > 0 {
        let note = format!(
            "harness: {kept} crash file(s) in {} ({} crash(es) during the run): failing the run",
            g.dumps_dir.display(),
            g.state.generation()
        );
        ctx.output().emit(&crate::render::Event::Notice(&note));
    }
    kept
}
