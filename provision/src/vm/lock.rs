//! Who may touch a VM: an advisory lock (flock) on `<vm>/lock`.
//!
//! Commands that only use the VM (`exec`, `cp`, `ssh`, `test`) take it shared, so any number run
//! side by side. Commands that change the VM's lifecycle (`up`, `down`, `reset`, `destroy`,
//! snapshots) take it exclusive, so they never stop a VM under a command that is using it. Each
//! holder records its pid and command line in `<vm>/users/<pid>`, so a refusal can say who holds
//! the lock; the kernel drops the lock when a holder dies, and records of dead pids are ignored.

use std::fs::{File, OpenOptions, TryLockError};
use std::path::{Path, PathBuf};

use super::error::VmError;

/// How a lock is held.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LockMode {
    /// Using the VM: any number of holders, no exclusive one.
    Shared,
    /// Changing the VM: the only holder.
    Exclusive,
}

/// A process holding (or having recorded itself as holding) a VM's lock.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Holder {
    pub pid: u32,
    /// Its command line, e.g. `harness test ebpf-go`.
    pub command: String,
}

impl std::fmt::Display for Holder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "`{}` (pid {})", self.command, self.pid)
    }
}

/// Held while a harness process uses or drives a VM; released on drop (or when the process dies).
#[derive(Debug)]
pub struct VmLock {
    file: File,
    path: PathBuf,
    mode: LockMode,
    record: PathBuf,
}

impl VmLock {
    /// Take the lock exclusively without waiting; [`VmError::Busy`] names the holders.
    pub fn acquire(path: &Path, name: &str) -> Result<VmLock, VmError> {
        Self::acquire_mode(path, name, LockMode::Exclusive)
    }

    /// Take the lock in `mode` without waiting; [`VmError::Busy`] names the holders.
    pub fn acquire_mode(path: &Path, name: &str, mode: LockMode) -> Result<VmLock, VmError> {
        let dir = path.parent().unwrap_or(Path::new("."));
        std::fs::create_dir_all(dir)
            .map_err(VmError::io("creating the VM state directory", dir))?;
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)
            .map_err(VmError::io("opening the VM lock file", path))?;
        let taken = match mode {
            LockMode::Shared => file.try_lock_shared(),
            LockMode::Exclusive => file.try_lock(),
        };
        match taken {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                return Err(VmError::Busy {
                    name: name.to_string(),
                    holders: holders(path),
                    lock: path.to_path_buf(),
                });
            }
            Err(TryLockError::Error(e)) => return Err(VmError::io("locking the VM", path)(e)),
        }
        let record = users_dir(path).join(std::process::id().to_string());
        // Best effort: the record only makes a refusal more helpful.
        let _ = std::fs::create_dir_all(users_dir(path));
        let _ = std::fs::write(&record, own_command());
        Ok(VmLock {
            file,
            path: path.to_path_buf(),
            mode,
            record,
        })
    }

    /// The lock file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// How the lock is held.
    pub fn mode(&self) -> LockMode {
        self.mode
    }
}

impl Drop for VmLock {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.record);
        let _ = self.file.unlock();
    }
}

/// `` `harness test` (pid 12) and `harness exec -- x` (pid 13) ``, or "another harness process"
/// when no holder left a record.
pub fn describe(holders: &[Holder]) -> String {
    match holders {
        [] => "another harness process".into(),
        hs => hs
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(" and "),
    }
}

fn users_dir(lock: &Path) -> PathBuf {
    lock.with_file_name("users")
}

/// This process's command line (program file name and up to 6 arguments).
fn own_command() -> String {
    let mut args = std::env::args();
    let program = args
        .next()
        .map(|p| {
            Path::new(&p)
                .file_name()
                .map_or(p.clone(), |f| f.to_string_lossy().into_owned())
        })
        .unwrap_or_else(|| "?".into());
    std::iter::once(program)
        .chain(args.take(6))
        .collect::<Vec<_>>()
        .join(" ")
}

/// The live processes recorded as holding the lock at `lock` (oldest pid first), other than
/// this one.
pub fn holders(lock: &Path) -> Vec<Holder> {
    let me = std::process::id();
    let Ok(entries) = std::fs::read_dir(users_dir(lock)) else {
        return Vec::new();
    };
    let mut out: Vec<Holder> = entries
        .flatten()
        .filter_map(|e| {
            let pid: u32 = e.file_name().to_str()?.parse().ok()?;
            if pid == me || !super::process::alive(pid) {
                return None;
            }
            let command = std::fs::read_to_string(e.path()).unwrap_or_default();
            Some(Holder {
                pid,
                command: command.trim().to_string(),
            })
        })
        .collect();
    out.sort_by_key(|h| h.pid);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn second_exclusive_lock_is_refused_and_freed_on_drop() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("vm/lock");
        let first = VmLock::acquire(&p, "t").unwrap();
        assert!(
            p.with_file_name("users")
                .join(std::process::id().to_string())
                .is_file()
        );
        match VmLock::acquire(&p, "t") {
            Err(VmError::Busy { name, .. }) => assert_eq!(name, "t"),
            other => panic!("expected Busy, got {other:?}"),
        }
        drop(first);
        assert!(
            !p.with_file_name("users")
                .join(std::process::id().to_string())
                .exists()
        );
        VmLock::acquire(&p, "t").unwrap();
    }

    #[test]
    fn shared_locks_coexist_and_keep_an_exclusive_one_out() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("vm/lock");
        let a = VmLock::acquire_mode(&p, "t", LockMode::Shared).unwrap();
        let b = VmLock::acquire_mode(&p, "t", LockMode::Shared).unwrap();
        assert!(matches!(
            VmLock::acquire(&p, "t"),
            Err(VmError::Busy { .. })
        ));
        drop(a);
        assert!(matches!(
            VmLock::acquire(&p, "t"),
            Err(VmError::Busy { .. })
        ));
        drop(b);
        let x = VmLock::acquire(&p, "t").unwrap();
        assert!(matches!(
            VmLock::acquire_mode(&p, "t", LockMode::Shared),
            Err(VmError::Busy { .. })
        ));
        drop(x);
    }

    #[test]
    fn records_of_dead_processes_are_ignored() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("vm/lock");
        std::fs::create_dir_all(p.with_file_name("users")).unwrap();
        // A pid that cannot be alive (above the kernel's pid_max limit).
        std::fs::write(p.with_file_name("users").join("4194305"), "harness test").unwrap();
        assert!(holders(&p).is_empty());
    }

    /// Run as a second process by the race tests: take the lock named by the environment, say
    /// whether it was taken, hold it until stdin closes.
    #[test]
    #[ignore = "run by lock_races_between_processes as a child process"]
    fn child_takes_the_lock() {
        use std::io::Read;
        let (Ok(path), Ok(mode)) = (
            std::env::var("HARNESS_LOCK_CHILD_PATH"),
            std::env::var("HARNESS_LOCK_CHILD_MODE"),
        ) else {
            return;
        };
        let mode = if mode == "shared" {
            LockMode::Shared
        } else {
            LockMode::Exclusive
        };
        let held = VmLock::acquire_mode(Path::new(&path), "race", mode);
        println!(
            "{}",
            if held.is_ok() {
                "CHILD-LOCKED"
            } else {
                "CHILD-BUSY"
            }
        );
        let _ = std::io::stdin().read_to_end(&mut Vec::new());
    }

    struct Child {
        proc: std::process::Child,
        locked: bool,
    }

    /// Starts a test-binary child that takes the lock; returns once it has tried.
    fn child(path: &Path, mode: &str) -> Child {
        use std::io::BufRead;
        let mut proc = std::process::Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "vm::lock::tests::child_takes_the_lock",
                "--ignored",
                "--nocapture",
            ])
            .env("HARNESS_LOCK_CHILD_PATH", path)
            .env("HARNESS_LOCK_CHILD_MODE", mode)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let out = std::io::BufReader::new(proc.stdout.take().unwrap());
        let verdict = out
            .lines()
            .map_while(Result::ok)
            .find(|l| l.starts_with("CHILD-"))
            .expect("the child reports whether it took the lock");
        Child {
            proc,
            locked: verdict == "CHILD-LOCKED",
        }
    }

    impl Child {
        fn release(mut self) {
            drop(self.proc.stdin.take());
            let _ = self.proc.wait();
        }
    }

    #[test]
    fn lock_races_between_processes() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("vm/lock");

        // Another process uses the VM: an exclusive lock here is refused, naming it.
        let user = child(&p, "shared");
        assert!(user.locked);
        match VmLock::acquire(&p, "race") {
            Err(e @ VmError::Busy { .. }) => {
                let VmError::Busy { holders, .. } = &e else {
                    unreachable!()
                };
                assert_eq!(holders.len(), 1, "{holders:?}");
                assert_eq!(holders[0].pid, user.proc.id());
                assert!(
                    holders[0].command.contains("child_takes_the_lock"),
                    "{holders:?}"
                );
                let msg = e.to_string();
                assert!(msg.contains(&format!("(pid {})", user.proc.id())), "{msg}");
            }
            other => panic!("expected Busy, got {other:?}"),
        }
        // Using it alongside is fine.
        let mine = VmLock::acquire_mode(&p, "race", LockMode::Shared).unwrap();
        drop(mine);
        user.release();
        // Once it is gone (even without tidying up), the exclusive lock is free.
        let x = VmLock::acquire(&p, "race").unwrap();
        let refused = child(&p, "shared");
        assert!(
            !refused.locked,
            "a user must not get in while the VM is being changed"
        );
        refused.release();
        drop(x);

        // Two processes after the exclusive lock, the second starting while the first holds it:
        // exactly one gets it, every round.
        for round in 0..5 {
            let a = child(&p, "exclusive");
            let b = child(&p, "exclusive");
            assert!(
                a.locked ^ b.locked,
                "round {round}: a {} b {}",
                a.locked,
                b.locked
            );
            a.release();
            b.release();
        }
    }
}
