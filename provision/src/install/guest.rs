//! The thin shell between the install engine and a guest session: run a step script and read its
//! typed result, check cancellation, fetch logs.

use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;

use crate::session::{Script, Session};
use std::time::Duration;

use super::error::InstallError;
use super::events::Step;
use super::logs;

/// Runs a step script with named arguments (Windows: `-Name value`; Linux: positional, in order)
/// and parses its JSON result into `T`.
pub fn run<T: DeserializeOwned>(
    session: &mut Session,
    step: Step,
    script: Script,
    args: &[(&str, String)],
) -> Result<T, InstallError> {
    let value = session
        .run_script(&script, args)
        .map_err(InstallError::session(step))?;
    typed(step, script, value)
}

/// Like [`run`], with a timeout of its own (the installer may take far longer than a query).
pub fn run_with_timeout<T: DeserializeOwned>(
    session: &mut Session,
    step: Step,
    script: Script,
    timeout: Duration,
    args: &[(&str, String)],
) -> Result<T, InstallError> {
    let value = session
        .run_script_with(&script, args, Some(timeout), &mut |_, _| {})
        .map_err(InstallError::session(step))?;
    typed(step, script, value)
}

fn typed<T: DeserializeOwned>(
    step: Step,
    script: Script,
    value: serde_json::Value,
) -> Result<T, InstallError> {
    serde_json::from_value(value.clone()).map_err(|e| InstallError::BadResult {
        step,
        detail: format!("{}: {e}; got {value}", script.name),
    })
}

/// Cancellation between steps (a running remote command is killed by the session itself).
pub fn check_cancel(cancel: &Option<hostproc::Cancel>, step: Step) -> Result<(), InstallError> {
    match cancel {
        Some(flag) if flag.is_cancelled() => Err(InstallError::Cancelled { step }),
        _ => Ok(()),
    }
}

/// Downloads guest files into `dir` (created), naming each after its guest basename. Returns the
/// saved files and notices about what could not be fetched: log collection never hides the error
/// it collects for.
pub fn fetch_logs(
    session: &mut Session,
    guest_paths: &[String],
    dir: &Path,
) -> (Vec<PathBuf>, Vec<String>) {
    let mut saved = Vec::new();
    let mut notices = Vec::new();
    if let Err(e) = std::fs::create_dir_all(dir) {
        notices.push(format!(
            "cannot create {}: {e}; install logs not collected",
            dir.display()
        ));
        return (saved, notices);
    }
    for gp in guest_paths {
        let mut name = logs::local_name(gp);
        let mut n = 1;
        while saved
            .iter()
            .any(|p: &PathBuf| p.file_name().is_some_and(|f| f == name.as_str()))
        {
            n += 1;
            name = format!("{n}-{}", logs::local_name(gp));
        }
        let local = dir.join(&name);
        match session.download_file(gp, &local) {
            Ok(_) => saved.push(local),
            Err(e) => notices.push(format!("could not collect {gp}: {e}")),
        }
    }
    (saved, notices)
}

/// The relevant lines of the collected logs (preferring `prefer` names first), plus extra lines.
pub fn excerpt(files: &[PathBuf], prefer: &[&str], extra: &[String], max: usize) -> Vec<String> {
    let mut ordered: Vec<&PathBuf> = files.iter().collect();
    ordered.sort_by_key(|p| {
        let name = p
            .file_name()
            .map(|f| f.to_string_lossy().to_lowercase())
            .unwrap_or_default();
        prefer
            .iter()
            .position(|w| name.contains(w))
            .unwrap_or(prefer.len())
    });
    let mut out = Vec::new();
    for f in ordered {
        let Ok(bytes) = std::fs::read(f) else {
            continue;
        };
        let lines = logs::relevant_lines(&logs::decode_log(&bytes), max);
        if lines.is_empty() {
            continue;
        }
        out.push(format!(
            "[{}]",
            f.file_name()
                .map(|n| n.to_string_lossy())
                .unwrap_or_default()
        ));
        out.extend(lines);
        if out.len() >= max * 2 {
            break;
        }
    }
    let extra_lines = logs::relevant_lines(&extra.join("\n"), max);
    if !extra_lines.is_empty() {
        out.push("[installer output]".into());
        out.extend(extra_lines);
    }
    out
}
