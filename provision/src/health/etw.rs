//! Stale ETW sessions: ebpf-go's testmain starts one per `-trace-log` run and a crashed run
//! leaves it behind, after which `-trace-log` fails. Listed with `logman query -ets`, stopped
//! with `logman stop <name> -ets`.

use serde::Deserialize;

use crate::install::checks::lines;
use crate::session::Session;

use super::windows::CommandLines;
use super::{EtwCleanup, GuestCheck, GuestReport, HealthError, Status, run, scripts};

/// Name prefixes of the ETW sessions ebpf-go's testmain starts for `-trace-log`: the code says
/// `epbf-go-<pid>` (sic), the docs `ebpf-go`.
pub const ETW_PREFIXES: [&str; 2] = ["epbf-go-", "ebpf-go-"];

/// `etw_stop.ps1`.
#[derive(Debug, Clone, Deserialize)]
struct EtwStop {
    #[serde(default)]
    stopped: Vec<EtwStopped>,
}

#[derive(Debug, Clone, Deserialize)]
struct EtwStopped {
    name: String,
    exit_code: Option<i64>,
    #[serde(default, deserialize_with = "lines")]
    output: Vec<String>,
}

/// Session names in `logman query -ets` output (after the dashes line; the last two columns are
/// type and status).
pub fn etw_session_names(output: &[String]) -> Vec<String> {
    let mut names = Vec::new();
    let mut in_table = false;
    for line in output {
        let t = line.trim();
        if t.starts_with("---") {
            in_table = true;
            continue;
        }
        if !in_table || t.is_empty() {
            continue;
        }
        if t.starts_with("The command completed") {
            break;
        }
        if t.split_whitespace().count() < 3 {
            continue;
        }
        let mut cut = t;
        for _ in 0..2 {
            let i = cut.rfind(char::is_whitespace).unwrap_or(0);
            cut = cut[..i].trim_end();
        }
        names.push(cut.to_string());
    }
    names
}

/// Whether an ETW session is one of ebpf-go's `-trace-log` sessions.
pub fn is_ebpf_go_session(name: &str) -> bool {
    let n = name.to_ascii_lowercase();
    ETW_PREFIXES.iter().any(|p| n.starts_with(p))
}

/// The stale sessions in a `logman query -ets` result.
pub(super) fn stale_etw(c: &CommandLines) -> Result<Vec<String>, HealthError> {
    if c.exit_code != Some(0) {
        return Err(HealthError::BadResult {
            script: scripts::WIN_ETW_SESSIONS.name,
            detail: format!(
                "`logman query -ets` exited with {:?}: {}",
                c.exit_code,
                c.output.join(" / ")
            ),
        });
    }
    Ok(etw_session_names(&c.output)
        .into_iter()
        .filter(|n| is_ebpf_go_session(n))
        .collect())
}

/// The ETW check and the stale sessions.
pub fn judge_etw(c: &CommandLines) -> (GuestCheck, Vec<String>) {
    const NAME: &str = "etw-sessions";
    if c.exit_code != Some(0) {
        let c = GuestCheck::warn(
            NAME,
            format!(
                "`logman query -ets` exited with {:?}: {}",
                c.exit_code,
                c.output.join(" / ")
            ),
            "logman needs an administrator: make the SSH user a member of Administrators",
        );
        return (c, Vec::new());
    }
    let all = etw_session_names(&c.output);
    let stale: Vec<String> = all
        .iter()
        .filter(|n| is_ebpf_go_session(n))
        .cloned()
        .collect();
    if stale.is_empty() {
        let c = GuestCheck::ok(
            NAME,
            format!("no stale ebpf-go sessions ({} running)", all.len()),
        );
        return (c, stale);
    }
    let c = GuestCheck::warn(
        NAME,
        format!(
            "{} stale ETW session(s) of crashed ebpf-go runs: {} (`-trace-log` fails while they exist)",
            stale.len(),
            stale.join(", ")
        ),
        format!(
            "`harness run` stops them before any -trace-log run; by hand: {}",
            stale
                .iter()
                .map(|n| format!("`logman stop {n} -ets`"))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    );
    (c, stale)
}

/// Stops the named ETW sessions.
pub(super) fn stop_etw(session: &mut Session, names: &[String]) -> Result<EtwCleanup, HealthError> {
    if names.is_empty() {
        return Ok(EtwCleanup::default());
    }
    let r: EtwStop = run(
        session,
        scripts::WIN_ETW_STOP,
        &[("Names", names.join("\n"))],
    )?;
    let mut out = EtwCleanup::default();
    for s in r.stopped {
        if s.exit_code == Some(0) {
            out.stopped.push(s.name);
        } else {
            let said = s
                .output
                .iter()
                .map(|l| l.trim())
                .filter(|l| !l.is_empty())
                .collect::<Vec<_>>();
            out.failed.push((
                s.name,
                format!("exit code {:?}: {}", s.exit_code, said.join(" ")),
            ));
        }
    }
    Ok(out)
}

/// Records a cleanup in the report's ETW check.
pub fn apply_etw_cleanup(report: &mut GuestReport, cleanup: &EtwCleanup) {
    let Some(c) = report.checks.iter_mut().find(|c| c.name == "etw-sessions") else {
        return;
    };
    if cleanup.failed.is_empty() {
        *c = GuestCheck::ok(
            c.name.clone(),
            format!(
                "stopped stale ebpf-go session(s): {}",
                cleanup.stopped.join(", ")
            ),
        );
        report.stale_etw_sessions.clear();
    } else {
        let failed: Vec<String> = cleanup
            .failed
            .iter()
            .map(|(n, why)| format!("{n} ({why})"))
            .collect();
        c.status = Status::Fail;
        c.detail = format!(
            "could not stop stale ebpf-go session(s): {}; `-trace-log` would fail",
            failed.join("; ")
        );
        c.fix = Some("reboot the guest (ETW sessions do not survive a reboot), then save the ready snapshot again".into());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `logman query -ets` as Windows 11 prints it (trimmed), with two stale sessions.
    pub const LOGMAN: &str = "\r
Data Collector Set                      Type                          Status\r
-------------------------------------------------------------------------------\r
Circular Kernel Context Logger          Trace                         Running\r
Eventlog-Security                       Trace                         Running\r
epbf-go-4242                            Trace                         Running\r
EBPF-GO-77                              Trace                         Running\r
my ebpf-go-1 session                    Trace                         Running\r
\r
The command completed successfully.\r
";

    fn lines_of(s: &str) -> CommandLines {
        CommandLines {
            exit_code: Some(0),
            output: s.lines().map(str::to_string).collect(),
        }
    }

    #[test]
    fn logman_names_with_spaces_are_read_and_only_ebpf_go_ones_are_stale() {
        let names = etw_session_names(&lines_of(LOGMAN).output);
        assert_eq!(
            names,
            [
                "Circular Kernel Context Logger",
                "Eventlog-Security",
                "epbf-go-4242",
                "EBPF-GO-77",
                "my ebpf-go-1 session"
            ]
        );
        let (check, stale) = judge_etw(&lines_of(LOGMAN));
        assert_eq!(stale, ["epbf-go-4242", "EBPF-GO-77"]);
        assert_eq!(check.status, Status::Warn);
        assert!(
            check
                .fix
                .unwrap()
                .contains("`logman stop epbf-go-4242 -ets`")
        );
        assert_eq!(stale_etw(&lines_of(LOGMAN)).unwrap(), stale);
    }

    #[test]
    fn no_stale_sessions_is_ok_and_a_failing_logman_is_reported() {
        let clean = LOGMAN
            .replace("epbf-go-4242", "Other")
            .replace("EBPF-GO-77", "Other2");
        let (check, stale) = judge_etw(&lines_of(&clean));
        assert_eq!((check.status, stale.len()), (Status::Ok, 0));
        assert!(check.detail.contains("5 running"), "{}", check.detail);
        let denied = CommandLines {
            exit_code: Some(5),
            output: vec!["Access is denied.".into()],
        };
        assert_eq!(judge_etw(&denied).0.status, Status::Warn);
        assert!(stale_etw(&denied).is_err());
    }

    #[test]
    fn a_cleanup_turns_the_check_ok_or_failed() {
        let mut report = GuestReport {
            os: crate::session::GuestOs::Windows,
            checks: vec![judge_etw(&lines_of(LOGMAN)).0],
            guest_build: None,
            stale_etw_sessions: vec!["epbf-go-4242".into()],
        };
        let mut r2 = report.clone();
        apply_etw_cleanup(
            &mut report,
            &EtwCleanup {
                stopped: vec!["epbf-go-4242".into()],
                failed: vec![],
            },
        );
        assert_eq!(report.checks[0].status, Status::Ok);
        assert!(report.checks[0].detail.contains("stopped"));
        assert!(report.stale_etw_sessions.is_empty());
        apply_etw_cleanup(
            &mut r2,
            &EtwCleanup {
                stopped: vec![],
                failed: vec![("epbf-go-4242".into(), "exit code Some(1)".into())],
            },
        );
        assert_eq!(r2.checks[0].status, Status::Fail);
        assert!(r2.failed());
    }
}
