//! A target that crashed under the run (guest kernel panic, Windows bugcheck) and came back.
//!
//! The executor reports the crash as [`ExecError::TargetCrashed`]: the packages running then are
//! errored "guest crashed (…)", the others are left alone (not marked "not run"), and the run
//! stops its current segment. [`after_segment`] then asks the executor to bring the target back
//! ([`crate::Executor::recover`]) and runs the packages the segment never reached as a new
//! segment: listed, built and uploaded again (a rebooted guest may have lost the uploads), with
//! reruns only for the new segment's failures. At most [`MAX_RECOVERIES`] crashes are recovered;
//! after that, or when the target cannot come back, the rest is marked not run.

use std::collections::BTreeSet;
use std::time::Duration;

use crate::event::{ERROR_MARK, HARNESS_MARK};
use crate::exec::{ExecError, Executor};
use crate::plan::RerunTarget;
use crate::runner::{RunOptions, State};

/// How many crashes of one run are recovered before the run gives up on the target.
pub const MAX_RECOVERIES: usize = 3;

impl State<'_> {
    /// The target crashed while `pkg` was being handled: a running package is errored "guest
    /// crashed (…)"; one that had not started is left for the next segment.
    pub(crate) fn crashed_under(&mut self, pkg: &str, reason: &str, took: Option<Duration>) {
        self.crashed.get_or_insert_with(|| reason.to_string());
        self.close(pkg, ERROR_MARK, &format!("guest crashed ({reason})"), took);
    }

    /// Applies an error that ended work on the target: crash, lost target, or anything else.
    pub(crate) fn target_error(&mut self, e: &ExecError) {
        match e {
            ExecError::TargetCrashed { reason } => {
                self.crashed.get_or_insert_with(|| reason.clone());
            }
            e if e.is_target_lost() => {
                self.lost.get_or_insert(e.to_string());
            }
            e => {
                self.error.get_or_insert(e.to_string());
            }
        }
    }
}

/// The options of a later segment: only `rest`, no sharding (it was applied to the first).
pub(crate) fn segment_options(opts: &RunOptions, rest: Option<&[String]>) -> Option<RunOptions> {
    let rest = rest?;
    let mut o = opts.clone();
    o.suite.packages = rest.to_vec();
    o.shard = None;
    o.shard_durations = None;
    if let Some(t) = &mut o.targets {
        t.retain(|t| rest.contains(&t.package));
    }
    Some(o)
}

/// Reruns stay inside the current segment (earlier segments had their own).
pub(crate) fn in_segment(st: &State<'_>, mut targets: Vec<RerunTarget>) -> Vec<RerunTarget> {
    if let Some(seg) = &st.segment {
        targets.retain(|t| seg.contains(&t.package));
    }
    targets
}

/// After a segment: `None` when the run is over; else the packages of the next segment (the
/// target crashed, came back, and these were never reached).
pub(crate) fn after_segment(
    exec: &mut dyn Executor,
    opts: &RunOptions,
    st: &mut State<'_>,
) -> Option<Vec<String>> {
    let reason = st.crashed.take()?;
    st.crashes.push(reason.clone());
    let rest: Vec<String> = st
        .planned
        .iter()
        .filter(|p| st.ex.package(p).is_none())
        .cloned()
        .collect();
    let stop = if opts
        .cancel
        .as_ref()
        .is_some_and(hostproc::Cancel::is_cancelled)
    {
        Some("cancelled by the user (Ctrl-C)".to_string())
    } else if st.crashes.len() > MAX_RECOVERIES {
        Some(format!(
            "the guest crashed {} times; not bringing it back again",
            st.crashes.len()
        ))
    } else if st.planned.is_empty() {
        Some("the packages left to run are unknown (the host could not list them)".to_string())
    } else {
        None
    };
    let recovered = match stop {
        Some(why) => Err(why),
        None => {
            st.phase("recovering");
            exec.recover(&reason).map_err(|e| e.to_string())
        }
    };
    match recovered {
        Ok(note) => {
            st.note(&format!("{HARNESS_MARK}guest crashed ({reason}); {note}"));
            if rest.is_empty() {
                return None;
            }
            st.note(&format!(
                "{HARNESS_MARK}continuing with the {} package(s) not run yet",
                rest.len()
            ));
            st.segment = Some(rest.iter().cloned().collect::<BTreeSet<_>>());
            st.planned.clear();
            Some(rest)
        }
        Err(why) => {
            let msg = format!("guest crashed ({reason}): {why}");
            for p in &rest {
                st.errored(p, &format!("not run: {msg}"));
            }
            st.lost.get_or_insert(msg);
            None
        }
    }
}
