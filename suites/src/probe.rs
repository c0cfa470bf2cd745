//! Asking a test binary what it holds before running it: its tests (`-test.list`), so that
//! tests it never reached are reported "not run", and its flags (`-h`), so that a flag such as
//! ebpf-go's `-trace-log` goes only to binaries that define it.

use std::collections::BTreeSet;

use crate::event::{Action, NOT_RUN_MARK, TestEvent};
use crate::flags::GoTestFlags;
use crate::model::{Execution, Outcome};

#[cfg(test)]
mod tests;

/// The `-test.list` pattern for a run with these flags: the root part of `-run` (tests below
/// the root are not listed), or every test.
pub fn list_pattern(flags: &GoTestFlags) -> String {
    flags
        .get("run")
        .map(|r| split_unbracketed(r)[0].to_string())
        .filter(|r| !r.is_empty())
        .unwrap_or_else(|| ".".to_string())
}

/// Splits a `-run`/`-skip` pattern at the slashes outside brackets and parentheses, as Go does.
fn split_unbracketed(p: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let (mut depth, mut start) = (0i32, 0usize);
    let mut escaped = false;
    for (i, c) in p.char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' => escaped = true,
            '[' | '(' => depth += 1,
            ']' | ')' => depth -= 1,
            '/' if depth <= 0 => {
                out.push(&p[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    out.push(&p[start..]);
    out
}

/// The tests that a `-test.list` output names and that a run executes: tests, examples and fuzz
/// targets (run on their seed corpus); benchmarks only run with `-bench`. Root tests that
/// `-skip` drops are left out.
pub fn parse_test_list(lines: &[String], flags: &GoTestFlags) -> Vec<String> {
    let skip = flags
        .get("skip")
        .map(|s| split_unbracketed(s)[0].to_string())
        .filter(|s| !s.is_empty())
        .and_then(|s| regex::Regex::new(&s).ok());
    lines
        .iter()
        .map(|l| l.trim())
        .filter(|l| {
            ["Test", "Example", "Fuzz"].iter().any(|p| l.starts_with(p))
                && l.chars().all(|c| c.is_alphanumeric() || c == '_')
        })
        .filter(|l| !skip.as_ref().is_some_and(|re| re.is_match(l)))
        .map(str::to_string)
        .collect()
}

/// The flag names a binary's `-h` output defines (`-trace-log`, `-test.run`, …), without dashes.
pub fn parse_flag_names(lines: &[String]) -> BTreeSet<String> {
    lines
        .iter()
        .filter_map(|l| {
            let t = l.strip_prefix("  -")?;
            let name = t.split([' ', '\t', '=']).next()?;
            (!name.is_empty()).then(|| name.to_string())
        })
        .collect()
}

/// The flag name of a pass-through argument (`-trace-log`, `--x=1` → `trace-log`, `x`).
fn flag_name(arg: &str) -> Option<&str> {
    let a = arg.strip_prefix('-')?;
    let a = a.strip_prefix('-').unwrap_or(a);
    a.split('=').next().filter(|n| !n.is_empty())
}

/// Drops the pass-through flags a binary does not define (with the value that follows a dropped
/// flag written without `=`). Returns the flags dropped.
pub fn keep_defined(f: &mut GoTestFlags, defined: &BTreeSet<String>) -> Vec<String> {
    let mut kept = Vec::new();
    let mut dropped = Vec::new();
    let mut dropping_value = false;
    for a in std::mem::take(&mut f.passthrough) {
        match flag_name(&a) {
            Some(n) if defined.contains(n) => {
                dropping_value = false;
                kept.push(a);
            }
            Some(_) => {
                dropping_value = !a.contains('=');
                dropped.push(a);
            }
            None if dropping_value => dropping_value = false,
            None => kept.push(a),
        }
    }
    f.passthrough = kept;
    dropped
}

/// Events that record as "not run" every expected root test of `pkg` that its latest run never
/// started, naming the tests that killed the binary (those the harness declared failed because
/// they never reported a result).
pub fn not_run_events(ex: &Execution, pkg: &str, expected: &[String]) -> Vec<TestEvent> {
    let Some(p) = ex.package(pkg) else {
        return Vec::new();
    };
    // The tests the harness charged (still running when the binary died) killed it; failing
    // that (Go reported the panic itself), the last root test that started and failed.
    let failed_now = |synth: bool| {
        p.started_this_run()
            .iter()
            .filter(|n| !n.contains('/'))
            .filter_map(|n| p.test(n))
            .filter(move |t| {
                t.attempts.last().is_some_and(|a| {
                    a.outcome == Outcome::Fail && (!synth || a.synthesized.is_some())
                })
            })
            .map(|t| t.name.as_str())
    };
    let mut killers: Vec<&str> = failed_now(true).collect();
    if killers.is_empty() {
        killers.extend(failed_now(false).next_back());
    }
    let why = match killers.as_slice() {
        [] => "the test binary exited before this test started".to_string(),
        ks => format!(
            "the test binary exited during {} before this test started",
            ks.join(", ")
        ),
    };
    let mut out = Vec::new();
    for name in expected {
        if p.ran_this_run(name) {
            continue;
        }
        out.push(TestEvent::synth(Action::Run, pkg, Some(name)));
        out.push(TestEvent::synth_output(
            pkg,
            Some(name),
            &format!("{NOT_RUN_MARK}{why}"),
        ));
        out.push(TestEvent::synth(Action::Skip, pkg, Some(name)));
    }
    out
}

/// Output lines per package of a `go test -json` run (guest mode's probes).
fn output_by_package(lines: &[String]) -> std::collections::BTreeMap<String, Vec<String>> {
    let mut out: std::collections::BTreeMap<String, Vec<String>> = Default::default();
    for l in lines {
        if let Some(e) = crate::event::parse_line(l)
            && e.action == Action::Output
            && let (Some(p), Some(o)) = (e.package, e.output)
        {
            out.entry(p).or_default().push(o.trim_end().to_string());
        }
    }
    out
}

/// Guest mode: runs `req` (a `go test -json …` probe) and returns each package's output lines.
pub(crate) fn guest_probe(
    exec: &mut dyn crate::exec::Executor,
    req: &crate::exec::ExecRequest,
) -> Result<std::collections::BTreeMap<String, Vec<String>>, String> {
    let mut lines = Vec::new();
    let out = exec
        .run(req, &mut |_, l| {
            lines.push(String::from_utf8_lossy(l).into_owned())
        })
        .map_err(|e| e.to_string())?;
    if out.timed_out || out.cancelled {
        return Err(format!("`{}` did not finish", req.argv.join(" ")));
    }
    Ok(output_by_package(&lines))
}
