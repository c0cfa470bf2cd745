//! The crash watch: a thread that holds the VM's second QMP monitor open during a run and
//! reports `GUEST_PANICKED` (pvpanic: a Linux kernel panic, a Windows bugcheck; with Hyper-V's
//! `hv-crash` QEMU adds the bugcheck code and parameters). QEMU runs with `-action panic=none`,
//! so the guest goes on (Windows writes its dump, Linux with `panic=N` reboots).

use std::path::Path;
use std::time::{Duration, SystemTime};

use serde_json::Value;

use super::error::VmError;
use super::qmp::Qmp;
use crate::session::GuestOs;

/// One guest panic QEMU reported.
#[derive(Debug, Clone, PartialEq)]
pub struct GuestPanic {
    /// For people: `kernel panic`, `bugcheck`, `bugcheck 0x0000003b (0x…, 0x…, 0x…, 0x…)`.
    pub reason: String,
    /// When harness heard it.
    pub at: SystemTime,
    /// The event as QEMU sent it.
    pub event: Value,
}

/// What a `GUEST_PANICKED` event says, for a guest of `os` (pure).
pub fn reason(os: GuestOs, event: &Value) -> String {
    let info = &event["data"]["info"];
    if info["type"] == "hyper-v" {
        let arg = |k: &str| info[k].as_u64().unwrap_or(0);
        return format!(
            "bugcheck 0x{:08x} (0x{:x}, 0x{:x}, 0x{:x}, 0x{:x})",
            arg("arg1"),
            arg("arg2"),
            arg("arg3"),
            arg("arg4"),
            arg("arg5")
        );
    }
    match os {
        GuestOs::Linux => "kernel panic".into(),
        GuestOs::Windows => "bugcheck".into(),
    }
}

/// The running watch; stops (and joins its thread) when dropped.
#[derive(Debug)]
pub struct PanicWatch {
    _worker: hostproc::Worker,
}

impl PanicWatch {
    /// Connects to the events monitor at `socket` and calls `on_panic` for every guest panic
    /// until dropped. The thread polls its stop flag at least every second.
    pub fn start(
        socket: &Path,
        os: GuestOs,
        on_panic: Box<dyn Fn(GuestPanic) + Send>,
    ) -> Result<PanicWatch, VmError> {
        let mut qmp = Qmp::connect(socket, Duration::from_secs(5))?;
        let worker = hostproc::Worker::spawn("harness-panic-watch", move |stop| {
            while !stop.is_cancelled() {
                match qmp.next_event(Duration::from_millis(500)) {
                    Ok(Some(ev)) if ev["event"] == "GUEST_PANICKED" => {
                        let p = GuestPanic {
                            reason: reason(os, &ev),
                            at: SystemTime::now(),
                            event: ev,
                        };
                        tracing::warn!("the guest panicked: {}", p.reason);
                        on_panic(p);
                    }
                    Ok(Some(ev)) => tracing::debug!("QMP event: {ev}"),
                    Ok(None) => {}
                    Err(e) => {
                        // QEMU went away (powered off); nothing more to hear.
                        tracing::debug!("crash watch ends: {e}");
                        return;
                    }
                }
            }
        })
        .map_err(|e| VmError::Qmp {
            command: "crash watch".into(),
            detail: format!("starting its thread: {e}"),
        })?;
        Ok(PanicWatch { _worker: worker })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use std::io::{BufRead, Write};

    #[test]
    fn reasons_name_the_crash() {
        let pv = json!({"event": "GUEST_PANICKED", "data": {"action": "run"}});
        assert_eq!(reason(GuestOs::Linux, &pv), "kernel panic");
        assert_eq!(reason(GuestOs::Windows, &pv), "bugcheck");
        let hv = json!({"event": "GUEST_PANICKED", "data": {"action": "run", "info": {
            "type": "hyper-v", "arg1": 59, "arg2": 3221225477u64, "arg3": 1, "arg4": 2, "arg5": 0}}});
        assert_eq!(
            reason(GuestOs::Windows, &hv),
            "bugcheck 0x0000003b (0xc0000005, 0x1, 0x2, 0x0)"
        );
    }

    #[test]
    fn a_panic_event_reaches_the_callback_and_others_do_not() {
        let (_dir, sock, server) = crate::vm::qmp::fake::server(|mut w, mut r| {
            let mut line = String::new();
            r.read_line(&mut line).unwrap();
            writeln!(w, r#"{{"return": {{}}}}"#).unwrap();
            writeln!(w, r#"{{"event": "RESET", "data": {{"guest": true}}}}"#).unwrap();
            // An event split across writes, as a slow socket may deliver it.
            write!(w, r#"{{"event": "GUEST_PANICKED", "#).unwrap();
            w.flush().unwrap();
            std::thread::sleep(Duration::from_millis(700));
            writeln!(w, r#""data": {{"action": "run"}}}}"#).unwrap();
            std::thread::sleep(Duration::from_millis(500));
        });
        let (tx, rx) = std::sync::mpsc::channel();
        let watch = PanicWatch::start(
            &sock,
            GuestOs::Linux,
            Box::new(move |p| {
                let _ = tx.send(p);
            }),
        )
        .unwrap();
        let p = rx.recv_timeout(Duration::from_secs(10)).unwrap();
        assert_eq!(p.reason, "kernel panic");
        assert!(rx.recv_timeout(Duration::from_millis(300)).is_err());
        server.join().unwrap();
        drop(watch);
    }
}
