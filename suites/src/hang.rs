//! The local side of "dump a hung test before killing it" ([`crate::LocalExecutor`]): SIGQUIT
//! to every Go test binary (`*.test`) in the command's process group, so Go prints every
//! goroutine's stack on stderr. Guests do the same through their executor (harness's session).

use std::time::Duration;

/// How long the command may keep printing (or exit) after SIGQUIT before it is killed.
pub(crate) const GRACE: Duration = Duration::from_secs(10);

/// Sends SIGQUIT to the `*.test` processes of process group `pgid`; returns the note for the
/// command's output (`harness: …`).
pub(crate) fn quit_test_binaries(pgid: i32, timeout: Duration) -> String {
    let mut who = Vec::new();
    for (pid, exe) in group_members(pgid) {
        if exe.ends_with(".test") {
            // SAFETY: kill(2) on a process of the group we created.
            if unsafe { libc::kill(pid, libc::SIGQUIT) } == 0 {
                who.push(format!("{exe} (pid {pid})"));
            }
        }
    }
    let after = timeout.as_secs();
    if who.is_empty() {
        format!(
            "harness: timed out after {after}s; no Go test binary (*.test) in the process group to dump"
        )
    } else {
        format!(
            "harness: timed out after {after}s; sent SIGQUIT to {} for a goroutine dump",
            who.join(", ")
        )
    }
}

/// (pid, executable path) of the processes in group `pgid`, from `/proc`.
fn group_members(pgid: i32) -> Vec<(i32, String)> {
    let Ok(rd) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for e in rd.flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|n| n.parse::<i32>().ok()) else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(e.path().join("stat")) else {
            continue;
        };
        if stat_pgrp(&stat) != Some(pgid) {
            continue;
        }
        if let Ok(exe) = std::fs::read_link(e.path().join("exe")) {
            // A binary removed while it runs reads as `PATH (deleted)`.
            let exe = exe.display().to_string();
            let exe = exe.strip_suffix(" (deleted)").unwrap_or(&exe).to_string();
            out.push((pid, exe));
        }
    }
    out
}

/// The process group in a `/proc/PID/stat` line (the name may hold spaces and parentheses).
fn stat_pgrp(stat: &str) -> Option<i32> {
    let rest = &stat[stat.rfind(") ")? + 2..];
    rest.split_whitespace().nth(2)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn process_group_is_read_after_the_name() {
        assert_eq!(stat_pgrp("42 (a) b (c)) S 1 4242 4242 0 -1"), Some(4242));
        assert_eq!(stat_pgrp("garbage"), None);
    }

    #[test]
    fn our_own_group_is_found() {
        // SAFETY: getpgrp(2) has no preconditions.
        let me = unsafe { libc::getpgrp() };
        let members = group_members(me);
        assert!(
            members.iter().any(|(p, _)| *p == std::process::id() as i32),
            "{members:?}"
        );
    }
}
