//! Bounded waits with named phases: each phase reports its elapsed time and fails at its own
//! timeout, or as soon as Ctrl-C sets the cancel flag.

use std::io::Read;
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use super::events::{Phase, VmEvent};

/// How a phase ended without success.
#[derive(Debug)]
pub enum WaitError<E> {
    TimedOut { elapsed: Duration, limit: Duration },
    Cancelled,
    Failed(E),
}

/// Poll `check` (about every `interval`) until it yields a value, the phase times out, or the
/// cancel flag is set. Emits `Started`, `Waiting` once a second, and `Finished`.
pub fn wait_phase<T, E>(
    phase: Phase,
    limit: Duration,
    interval: Duration,
    cancel: Option<&hostproc::Cancel>,
    on_event: &mut dyn FnMut(VmEvent),
    mut check: impl FnMut() -> Result<Option<T>, E>,
) -> Result<T, WaitError<E>> {
    let start = Instant::now();
    on_event(VmEvent::Started {
        phase,
        timeout: limit,
    });
    let mut last_tick = start;
    loop {
        if cancel.is_some_and(hostproc::Cancel::is_cancelled) {
            return Err(WaitError::Cancelled);
        }
        match check() {
            Ok(Some(v)) => {
                on_event(VmEvent::Finished {
                    phase,
                    elapsed: start.elapsed(),
                });
                return Ok(v);
            }
            Ok(None) => {}
            Err(e) => return Err(WaitError::Failed(e)),
        }
        let elapsed = start.elapsed();
        if elapsed >= limit {
            return Err(WaitError::TimedOut { elapsed, limit });
        }
        if last_tick.elapsed() >= Duration::from_secs(1) {
            last_tick = Instant::now();
            on_event(VmEvent::Waiting { phase, elapsed });
        }
        std::thread::sleep(interval.min(limit.saturating_sub(elapsed)));
    }
}

/// The SSH identification line if `127.0.0.1:port` sends one within `timeout`.
///
/// QEMU user networking accepts forwarded connections even before the guest listens, so a TCP
/// connect alone proves nothing: only the `SSH-2.0-` banner does.
pub fn ssh_banner(port: u16, timeout: Duration) -> Option<String> {
    ssh_banner_at(SocketAddr::from(([127, 0, 0, 1], port)), timeout)
}

/// The SSH identification line if `addr` sends one within `timeout`.
pub fn ssh_banner_at(addr: SocketAddr, timeout: Duration) -> Option<String> {
    let mut s = TcpStream::connect_timeout(&addr, timeout).ok()?;
    s.set_read_timeout(Some(timeout)).ok()?;
    let deadline = Instant::now() + timeout;
    let mut got = Vec::new();
    let mut buf = [0u8; 256];
    while Instant::now() < deadline && !got.contains(&b'\n') && got.len() < 512 {
        match s.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => got.extend_from_slice(&buf[..n]),
        }
    }
    parse_banner(&got)
}

/// The first line if it is an SSH 2 identification string.
pub fn parse_banner(bytes: &[u8]) -> Option<String> {
    let text = String::from_utf8_lossy(bytes);
    let line = text.lines().next()?.trim_end();
    (line.starts_with("SSH-2.0-") || line.starts_with("SSH-1.99-")).then(|| line.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn banners_are_recognised() {
        assert_eq!(
            parse_banner(b"SSH-2.0-OpenSSH_9.2p1 Debian\r\n").as_deref(),
            Some("SSH-2.0-OpenSSH_9.2p1 Debian")
        );
        assert_eq!(parse_banner(b"HTTP/1.1 400\r\n"), None);
        assert_eq!(parse_banner(b""), None);
    }

    #[test]
    fn banner_probe_needs_a_real_banner() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        let t = std::thread::spawn(move || {
            let (mut a, _) = l.accept().unwrap();
            drop(a.write_all(b"SSH-2.0-test\r\n"));
            let (b, _) = l.accept().unwrap();
            drop(b); // accepts and closes, like QEMU's forwarder with no guest listener
        });
        assert_eq!(
            ssh_banner(port, Duration::from_secs(2)).as_deref(),
            Some("SSH-2.0-test")
        );
        assert_eq!(ssh_banner(port, Duration::from_secs(2)), None);
        t.join().unwrap();
    }

    #[test]
    fn phases_finish_time_out_and_cancel() {
        let mut events = Vec::new();
        let mut n = 0;
        let r: Result<u32, WaitError<()>> = wait_phase(
            Phase::Booting,
            Duration::from_secs(5),
            Duration::from_millis(1),
            None,
            &mut |e| events.push(e),
            || {
                n += 1;
                Ok((n == 3).then_some(n))
            },
        );
        assert_eq!(r.unwrap(), 3);
        assert!(matches!(
            events.first(),
            Some(VmEvent::Started {
                phase: Phase::Booting,
                ..
            })
        ));
        assert!(matches!(
            events.last(),
            Some(VmEvent::Finished {
                phase: Phase::Booting,
                ..
            })
        ));

        let r: Result<(), WaitError<()>> = wait_phase(
            Phase::WaitingForSsh,
            Duration::from_millis(50),
            Duration::from_millis(5),
            None,
            &mut |_| {},
            || Ok(None),
        );
        assert!(
            matches!(r, Err(WaitError::TimedOut { limit, .. }) if limit == Duration::from_millis(50))
        );

        let flag = hostproc::Cancel::default();
        flag.cancel();
        let r: Result<(), WaitError<()>> = wait_phase(
            Phase::Booting,
            Duration::from_secs(60),
            Duration::from_millis(5),
            Some(&flag),
            &mut |_| {},
            || Ok(None),
        );
        assert!(matches!(r, Err(WaitError::Cancelled)));

        let r: Result<(), WaitError<&str>> = wait_phase(
            Phase::Booting,
            Duration::from_secs(60),
            Duration::from_millis(5),
            None,
            &mut |_| {},
            || Err("qemu died"),
        );
        assert!(matches!(r, Err(WaitError::Failed("qemu died"))));
    }
}
