//! One harness process drives a VM at a time: an advisory lock on `<vm>/lock`.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};

use super::error::VmError;

/// Held while a harness process drives a VM; released on drop (or when the process dies).
#[derive(Debug)]
pub struct VmLock {
    _file: File,
    path: PathBuf,
}

impl VmLock {
    /// Take the lock without waiting; [`VmError::Busy`] names the holder's pid when known.
    pub fn acquire(path: &Path, name: &str) -> Result<VmLock, VmError> {
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)
                .map_err(VmError::io("creating the VM state directory", parent))?;
        }
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)
            .map_err(VmError::io("opening the VM lock file", path))?;
        match file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                let mut text = String::new();
                let _ = file.read_to_string(&mut text);
                return Err(VmError::Busy {
                    name: name.to_string(),
                    holder: text.trim().parse().ok(),
                    lock: path.to_path_buf(),
                });
            }
            Err(TryLockError::Error(e)) => return Err(VmError::io("locking the VM", path)(e)),
        }
        let _ = file.set_len(0);
        let _ = file.rewind();
        let _ = write!(file, "{}", std::process::id());
        let _ = file.flush();
        Ok(VmLock {
            _file: file,
            path: path.to_path_buf(),
        })
    }

    /// The lock file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn second_lock_is_refused_with_the_holder_pid_and_freed_on_drop() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("vm/lock");
        let first = VmLock::acquire(&p, "t").unwrap();
        match VmLock::acquire(&p, "t") {
            Err(VmError::Busy { holder, name, .. }) => {
                assert_eq!(holder, Some(std::process::id()));
                assert_eq!(name, "t");
            }
            other => panic!("expected Busy, got {other:?}"),
        }
        drop(first);
        VmLock::acquire(&p, "t").unwrap();
    }
}
