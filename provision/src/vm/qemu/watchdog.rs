//! The boot watchdog: a guest that shows no sign of life under KVM is not left to run out the
//! whole boot timeout.
//!
//! Signs of life are cheap to read from outside: the serial log grows, or the screen changes
//! (a QMP screendump every few seconds, compared by hash). A guest with neither for
//! `[vm] boot_watchdog` seconds is stuck; under `accel = "auto"` the caller then falls back to
//! TCG and remembers why.

use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::super::qmp::Qmp;

/// How often the screen is sampled.
const SCREEN_EVERY: Duration = Duration::from_secs(3);

/// Watches one boot for progress.
#[derive(Debug)]
pub(crate) struct BootWatch {
    limit: Duration,
    serial: PathBuf,
    qmp: PathBuf,
    shot: PathBuf,
    serial_len: u64,
    screen: Option<u64>,
    last_change: Instant,
    last_shot: Option<Instant>,
}

/// A sample of what the guest shows (pure comparison in [`Sample::differs`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Sample {
    pub serial_len: u64,
    pub screen: Option<u64>,
}

impl Sample {
    /// Whether `self` shows progress over `before` (an unreadable screen is no evidence).
    pub fn differs(&self, before: &Sample) -> bool {
        self.serial_len != before.serial_len
            || matches!((self.screen, before.screen), (Some(a), Some(b)) if a != b)
            || (self.screen.is_some() && before.screen.is_none())
    }
}

impl BootWatch {
    pub fn new(limit: Duration, serial: &Path, qmp: &Path, scratch: &Path) -> BootWatch {
        BootWatch {
            limit,
            serial: serial.to_path_buf(),
            qmp: qmp.to_path_buf(),
            shot: scratch.join("watchdog.png"),
            serial_len: file_len(serial),
            screen: None,
            last_change: Instant::now(),
            last_shot: None,
        }
    }

    /// `Err(why)` once the guest has shown nothing new for the limit.
    pub fn check(&mut self) -> Result<(), String> {
        let before = Sample {
            serial_len: self.serial_len,
            screen: self.screen,
        };
        let mut now = Sample {
            serial_len: file_len(&self.serial),
            screen: self.screen,
        };
        if self.last_shot.is_none_or(|t| t.elapsed() >= SCREEN_EVERY) {
            self.last_shot = Some(Instant::now());
            if let Some(h) = self.screen_hash() {
                now.screen = Some(h);
            }
        }
        if now.differs(&before) {
            self.last_change = Instant::now();
        }
        self.serial_len = now.serial_len;
        self.screen = now.screen;
        if self.last_change.elapsed() >= self.limit {
            return Err(format!(
                "the guest showed no progress (serial output or screen change) for {} s",
                self.limit.as_secs()
            ));
        }
        Ok(())
    }

    fn screen_hash(&self) -> Option<u64> {
        let mut q = Qmp::connect(&self.qmp, Duration::from_secs(2)).ok()?;
        let file = q.screendump(&self.shot).ok()?;
        let bytes = std::fs::read(&file).ok()?;
        let _ = std::fs::remove_file(&file);
        let mut h = std::collections::hash_map::DefaultHasher::new();
        bytes.hash(&mut h);
        Some(h.finish())
    }
}

fn file_len(p: &Path) -> u64 {
    std::fs::metadata(p).map(|m| m.len()).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn progress_is_serial_growth_or_a_new_screen() {
        let s = |serial_len, screen| Sample { serial_len, screen };
        assert!(!s(10, Some(1)).differs(&s(10, Some(1))));
        assert!(s(11, Some(1)).differs(&s(10, Some(1))));
        assert!(s(10, Some(2)).differs(&s(10, Some(1))));
        assert!(s(10, Some(2)).differs(&s(10, None)), "first screen");
        assert!(!s(10, None).differs(&s(10, Some(1))), "unreadable screen");
    }

    #[test]
    fn a_silent_guest_trips_the_watchdog_and_a_chatty_one_does_not() {
        let d = tempfile::tempdir().unwrap();
        let serial = d.path().join("serial.log");
        std::fs::write(&serial, "").unwrap();
        let qmp = d.path().join("no-qmp.sock");
        let mut w = BootWatch::new(Duration::from_millis(300), &serial, &qmp, d.path());
        let t = Instant::now();
        while t.elapsed() < Duration::from_millis(250) {
            std::fs::write(&serial, "x".repeat(t.elapsed().as_millis() as usize + 1)).unwrap();
            w.check().unwrap();
            std::thread::sleep(Duration::from_millis(20));
        }
        let t = Instant::now();
        let why = loop {
            match w.check() {
                Ok(()) => assert!(t.elapsed() < Duration::from_secs(2), "never tripped"),
                Err(why) => break why,
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        assert!(
            t.elapsed() >= Duration::from_millis(250),
            "{:?}",
            t.elapsed()
        );
        assert!(why.contains("no progress"), "{why}");
    }
}
