//! The guest doctor in harness: what to check for (from the configuration), how to print the
//! report, and the `run` phase that stops before the suites when a check fails.

use std::path::Path;

use anyhow::Context as _;
use provision::GuestOs;
use provision::health::{self, DoctorOptions, GuestReport, Status};
use provision::session::Session;

use crate::config::Config;
use crate::context::Context;

/// What the doctor checks for, from `[vm]`, `[efw]` and the enabled `[extensions.*]`.
pub fn options(cfg: &Config, source_override: Option<&str>) -> DoctorOptions {
    let source = source_override.unwrap_or(&cfg.efw.source);
    DoctorOptions {
        min_free_mib: cfg.vm.min_free_mib,
        efw: !crate::pipeline::efw_none(source),
        install_dir: provision::install::EFW_INSTALL_DIR.to_string(),
        extensions: cfg
            .extensions
            .iter()
            .filter(|(_, e)| e.install.enabled)
            .map(|(n, e)| (n.clone(), e.install.program_types.clone()))
            .collect(),
    }
}

/// Whether any of these suites may run ebpf-go with `-trace-log` (in its flags, in the extra
/// `go test` arguments, or on reruns).
pub fn wants_trace_log(cfg: &Config, suites: &[String], extra: &[String]) -> bool {
    let flag = |a: &String| a == "-trace-log" || a.starts_with("-trace-log=");
    extra.iter().any(flag)
        || suites
            .iter()
            .filter_map(|n| cfg.suites.get(n))
            .any(|s| s.trace_log_on_rerun || s.flags.iter().any(flag))
}

/// The report as text: one line per check, the fix under each that is not ok.
pub fn render(r: &GuestReport) -> String {
    let mut out = String::new();
    for c in &r.checks {
        let mark = match c.status {
            Status::Ok => "ok  ",
            Status::Warn => "warn",
            Status::Fail => "FAIL",
        };
        out.push_str(&format!("{mark} {:<27} {}\n", c.name, c.detail));
        if let Some(fix) = c.fix.as_ref().filter(|_| c.status != Status::Ok) {
            out.push_str(&format!("     {:<27} fix: {fix}\n", ""));
        }
    }
    out
}

/// The error `run` stops with: each failed check and its fix.
pub fn failure_message(r: &GuestReport) -> String {
    let lines: Vec<String> = r
        .failures()
        .map(|c| {
            format!(
                "  {}: {}\n    fix: {}",
                c.name,
                c.detail,
                c.fix
                    .as_deref()
                    .unwrap_or("see the README's guest doctor section")
            )
        })
        .collect();
    format!(
        "the guest is not fit for the tests ({} check(s) failed); the suites did not start:\n{}\nFix the guest, then rerun; `harness doctor --guest` checks it again without running anything",
        lines.len(),
        lines.join("\n")
    )
}

/// `run`'s doctor phase: checks the guest; before a `-trace-log` run also stops stale ETW
/// sessions of crashed ebpf-go runs; writes `doctor.json` into the results folder; fails when a
/// check fails. Returns the report and the phase's one-line detail.
pub fn run_phase(
    ctx: &Context,
    session: &mut Session,
    source_override: Option<&str>,
    trace_log: bool,
    out: &Path,
) -> anyhow::Result<(GuestReport, String)> {
    let mut report = health::guest_doctor(session, &options(&ctx.config, source_override))
        .context("checking the guest (the guest doctor)")?;
    let mut notes = Vec::new();
    if trace_log && session.os() == GuestOs::Windows && !report.stale_etw_sessions.is_empty() {
        let cleanup = health::stop_stale_etw(session)
            .context("stopping stale ETW sessions before a -trace-log run")?;
        health::etw::apply_etw_cleanup(&mut report, &cleanup);
        if !cleanup.stopped.is_empty() {
            notes.push(format!(
                "stopped stale ETW session(s) {}",
                cleanup.stopped.join(", ")
            ));
        }
    }
    let path = out.join("doctor.json");
    std::fs::write(&path, serde_json::to_vec_pretty(&report)?)
        .with_context(|| format!("writing {}", path.display()))?;
    if report.failed() {
        anyhow::bail!(failure_message(&report));
    }
    let warns = report
        .checks
        .iter()
        .filter(|c| c.status == Status::Warn)
        .count();
    let mut detail = format!("{} checks ok", report.checks.len() - warns);
    if warns > 0 {
        detail.push_str(&format!(
            ", {warns} warning(s) (doctor.json, or `harness doctor --guest`)"
        ));
    }
    if let Some(b) = &report.guest_build {
        detail.push_str(&format!(", build {b}"));
    }
    for n in notes {
        detail.push_str(&format!("; {n}"));
    }
    Ok((report, detail))
}

/// Stops stale ETW sessions before a `-trace-log` rerun (`repro --trace-log`); the detail says
/// what was stopped. Fails when one will not stop, since `-trace-log` would then fail too.
pub fn stop_etw_before_trace_log(session: &mut Session) -> anyhow::Result<((), String)> {
    let c = health::stop_stale_etw(session)
        .context("stopping stale ETW sessions before a -trace-log run")?;
    if !c.failed.is_empty() {
        let failed: Vec<String> = c
            .failed
            .iter()
            .map(|(n, why)| format!("{n} ({why})"))
            .collect();
        anyhow::bail!(
            "stale ETW session(s) of crashed ebpf-go runs would not stop: {}; -trace-log would fail. Reboot the guest (ETW sessions do not survive a reboot), or stop them by hand: `harness exec -- logman stop NAME -ets`",
            failed.join("; ")
        );
    }
    Ok((
        (),
        if c.stopped.is_empty() {
            "no stale ebpf-go ETW sessions".into()
        } else {
            format!("stopped stale ETW session(s) {}", c.stopped.join(", "))
        },
    ))
}

#[cfg(test)]
mod tests {
    use provision::health::GuestCheck;

    use super::*;

    fn report(checks: Vec<GuestCheck>) -> GuestReport {
        GuestReport {
            os: GuestOs::Windows,
            checks,
            guest_build: Some("26100.2605".into()),
            stale_etw_sessions: vec![],
        }
    }

    #[test]
    fn the_failure_message_lists_each_failed_check_with_its_fix() {
        let r = report(vec![
            GuestCheck::ok("disk", "40 GiB free"),
            GuestCheck::fail("test-signing", "off", "bcdedit /set testsigning on"),
            GuestCheck::warn("etw-sessions", "1 stale", "logman stop x -ets"),
            GuestCheck::fail("bpffs", "not mounted", "mount -t bpf bpf /sys/fs/bpf"),
        ]);
        let m = failure_message(&r);
        assert!(m.contains("2 check(s) failed"), "{m}");
        assert!(m.contains("test-signing: off\n    fix: bcdedit /set testsigning on"));
        assert!(m.contains("bpffs: not mounted\n    fix: mount -t bpf"));
        assert!(!m.contains("etw-sessions"));
        assert!(m.contains("harness doctor --guest"));
    }

    #[test]
    fn rendering_shows_fixes_only_for_what_is_not_ok() {
        let r = report(vec![
            GuestCheck::ok("disk", "40 GiB free"),
            GuestCheck::fail("path", "not on PATH", "harness install --force"),
        ]);
        let text = render(&r);
        assert!(text.starts_with("ok   disk"), "{text}");
        assert!(text.contains("FAIL path"));
        assert_eq!(text.matches("fix:").count(), 1, "{text}");
    }

    #[test]
    fn options_follow_the_config() {
        let mut cfg: Config = toml::from_str(crate::config::DEFAULTS_TOML).unwrap();
        let o = options(&cfg, None);
        assert!(o.efw);
        assert_eq!(o.min_free_mib, cfg.vm.min_free_mib);
        assert_eq!(
            o.extensions,
            [(
                "ntosebpfext".to_string(),
                vec!["22ea7b37-1043-4d0d-b60d-cafa1c7b638e".to_string()]
            )]
        );
        assert!(!options(&cfg, Some("none")).efw);
        cfg.extensions
            .get_mut("ntosebpfext")
            .unwrap()
            .install
            .enabled = false;
        assert!(options(&cfg, None).extensions.is_empty());
    }

    #[test]
    fn trace_log_is_wanted_by_flags_reruns_or_extra_args() {
        let mut cfg: crate::config::Config = toml::from_str(crate::config::DEFAULTS_TOML).unwrap();
        let all: Vec<String> = cfg.suites.keys().cloned().collect();
        // The default suite reruns failures with -trace-log.
        assert!(wants_trace_log(&cfg, &all, &[]));
        for s in cfg.suites.values_mut() {
            s.trace_log_on_rerun = false;
        }
        assert!(!wants_trace_log(&cfg, &all, &[]));
        assert!(wants_trace_log(&cfg, &all, &["-trace-log".into()]));
        cfg.suites
            .values_mut()
            .next()
            .unwrap()
            .flags
            .push("-trace-log".into());
        assert!(wants_trace_log(&cfg, &all, &[]));
        assert!(!wants_trace_log(&cfg, &[], &[]));
    }
}
