//! The cache lock: an exclusive `flock` on `<cache>/.lock`. Waiting for it is bounded, honours
//! Ctrl-C, and says who holds it (the holder writes its pid and command line into the file; the
//! kernel's `/proc/locks` confirms the pid even for a holder that wrote nothing).

use std::fs::File;
use std::io::{Read, Seek, Write};
use std::path::Path;
use std::time::{Duration, Instant};

use crate::error::{ArtifactError, Result};

/// Default bound on the wait for another process's lock.
pub(crate) const LOCK_WAIT: Duration = Duration::from_secs(600);
const POLL: Duration = Duration::from_millis(50);

/// Takes the lock on `path`, waiting at most `wait` (Ctrl-C through `cancel`), and records who
/// holds it. The lock lasts as long as the returned file is open.
pub(crate) fn acquire(
    path: &Path,
    wait: Duration,
    cancel: Option<&hostproc::Cancel>,
) -> Result<File> {
    let mut file = File::options()
        .create(true)
        .truncate(false)
        .read(true)
        .write(true)
        .open(path)
        .map_err(|e| ArtifactError::io("cannot open cache lock", path, e))?;
    let started = Instant::now();
    let mut told = false;
    loop {
        match file.try_lock() {
            Ok(()) => break,
            Err(std::fs::TryLockError::WouldBlock) => {}
            Err(std::fs::TryLockError::Error(e)) => {
                return Err(ArtifactError::io("cannot lock cache", path, e));
            }
        }
        if cancel.is_some_and(hostproc::Cancel::is_cancelled) {
            return Err(ArtifactError::Cancelled);
        }
        if started.elapsed() >= wait {
            return Err(ArtifactError::CacheLocked {
                path: path.parent().unwrap_or(path).to_path_buf(),
                holder: holder(&file),
                waited_secs: started.elapsed().as_secs_f64().ceil() as u64,
            });
        }
        if !told {
            told = true;
            tracing::warn!(
                "waiting for the build cache lock {} held by {} (at most {} s; Ctrl-C stops)",
                path.display(),
                holder(&file),
                wait.as_secs()
            );
        }
        std::thread::sleep(POLL.min(wait.saturating_sub(started.elapsed())));
    }
    let me = format!(
        "pid {} ({})\n",
        std::process::id(),
        command_line(std::process::id()).unwrap_or_default()
    );
    let _ = file
        .set_len(0)
        .and_then(|_| file.rewind())
        .and_then(|_| file.write_all(me.as_bytes()));
    Ok(file)
}

/// `pid N (command line)` of the lock's holder, as far as it can be told.
fn holder(file: &File) -> String {
    let mut recorded = String::new();
    let _ = (&*file)
        .rewind()
        .and_then(|_| (&*file).read_to_string(&mut recorded));
    let recorded = recorded.trim().to_string();
    // The kernel names the process that took the lock; it may have exited since, leaving the
    // lock with a process that inherited the descriptor, so fall back to who has the file open.
    let pid = kernel_holder(file)
        .filter(|p| Path::new(&format!("/proc/{p}")).exists())
        .or_else(|| openers(file).into_iter().next());
    match pid {
        Some(pid) if recorded.starts_with(&format!("pid {pid} ")) => recorded,
        Some(pid) => match command_line(pid) {
            Some(cmd) => format!("pid {pid} ({cmd})"),
            None => format!("pid {pid}"),
        },
        None if !recorded.is_empty() => recorded,
        None => "another process (not visible to this user)".to_string(),
    }
}

/// Other processes (of this user) that have the lock file open.
fn openers(file: &File) -> Vec<u32> {
    use std::os::unix::fs::MetadataExt;
    let Ok(md) = file.metadata() else {
        return Vec::new();
    };
    let me = std::process::id();
    let Ok(procs) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    procs
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| *pid != me)
        .filter(|pid| {
            std::fs::read_dir(format!("/proc/{pid}/fd")).is_ok_and(|fds| {
                fds.filter_map(|fd| fd.ok())
                    .filter_map(|fd| std::fs::metadata(fd.path()).ok())
                    .any(|m| m.ino() == md.ino() && m.dev() == md.dev())
            })
        })
        .collect()
}

/// The pid `/proc/locks` names for a `FLOCK` on this file.
fn kernel_holder(file: &File) -> Option<u32> {
    use std::os::unix::fs::MetadataExt;
    let md = file.metadata().ok()?;
    let (major, minor) = (libc::major(md.dev()), libc::minor(md.dev()));
    let id = format!("{major:02x}:{minor:02x}:{}", md.ino());
    let locks = std::fs::read_to_string("/proc/locks").ok()?;
    parse_locks(&locks, &id)
}

/// From `/proc/locks` text, the pid holding a lock on `dev:ino` (`maj:min:inode`, hex devices).
pub(crate) fn parse_locks(text: &str, id: &str) -> Option<u32> {
    text.lines().find_map(|line| {
        let f: Vec<&str> = line.split_whitespace().collect();
        // "1: FLOCK  ADVISORY  WRITE 1234 08:01:5678 0 EOF"; waiters are marked "->".
        (f.len() >= 6 && f[1] == "FLOCK" && f[5] == id).then(|| f[4].parse().ok())?
    })
}

/// A process's command line, shortened for a message.
fn command_line(pid: u32) -> Option<String> {
    let raw = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    let text: String = String::from_utf8_lossy(&raw)
        .split('\0')
        .filter(|s| !s.is_empty())
        .collect::<Vec<_>>()
        .join(" ");
    let short: String = text.chars().take(160).collect();
    (!short.is_empty()).then_some(short)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_proc_locks() {
        let text = "1: POSIX  ADVISORY  WRITE 99 08:01:42 0 EOF\n\
                    2: FLOCK  ADVISORY  WRITE 1234 00:2f:5678 0 EOF\n\
                    2: -> FLOCK  ADVISORY  WRITE 777 00:2f:5678 0 EOF\n";
        assert_eq!(parse_locks(text, "00:2f:5678"), Some(1234));
        assert_eq!(
            parse_locks(text, "08:01:42"),
            None,
            "POSIX locks are not ours"
        );
        assert_eq!(parse_locks(text, "00:2f:1"), None);
    }

    #[test]
    fn a_held_lock_is_waited_for_boundedly_and_names_its_holder() {
        let t = tempfile::tempdir().unwrap();
        let path = t.path().join(".lock");
        let held = acquire(&path, LOCK_WAIT, None).unwrap();
        let started = Instant::now();
        let err = acquire(&path, Duration::from_millis(300), None).unwrap_err();
        assert!(started.elapsed() < Duration::from_secs(2));
        let text = err.to_string();
        assert!(
            matches!(err, ArtifactError::CacheLocked { .. })
                && text.contains(&format!("pid {}", std::process::id())),
            "{text}"
        );
        let cancel = hostproc::Cancel::default();
        cancel.cancel();
        let err = acquire(&path, LOCK_WAIT, Some(&cancel)).unwrap_err();
        assert!(matches!(err, ArtifactError::Cancelled), "{err}");
        drop(held);
        assert!(acquire(&path, Duration::from_millis(300), None).is_ok());
    }
}
