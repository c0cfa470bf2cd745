//! A run that could not happen: when the target never came up (a VM of `harness run --vms N`
//! that failed to boot), its share of the packages is still recorded, each one "not run" with the
//! reason, so that merged results never pretend those packages passed or did not exist.

use std::time::Instant;

use crate::event::{Action, ERROR_MARK, TestEvent};
use crate::exec::TargetOs;
use crate::model::Execution;
use crate::results::RunRecord;
use crate::runner::{RunOptions, SuiteError, flags_for, host_go, run_meta, select};
use crate::summary::RunMeta;

/// Lists the packages `opts` selects (its shard included) with the host's Go for `os`/`arch`,
/// and records every one as not run because of `why`. The record's `error` is `why`, so its
/// verdict is an infrastructure error (exit 2).
pub fn not_run_record(
    opts: &RunOptions,
    os: TargetOs,
    arch: &str,
    why: &str,
) -> Result<RunRecord, SuiteError> {
    let t0 = Instant::now();
    let started = crate::event::now_rfc3339();
    let flags = flags_for(opts)?;
    let env = crate::debug::target_env(os, arch);
    let listed = host_go(opts, env).list(&opts.suite.packages, &flags.build_args())?;
    let listed = select(opts, listed);
    let mut events = Vec::new();
    for p in &listed {
        let pkg = p.import_path.as_str();
        events.push(TestEvent::synth(Action::Start, pkg, None));
        if p.has_tests() {
            events.push(TestEvent::synth_output(
                pkg,
                None,
                &format!("{ERROR_MARK}not run: {why}"),
            ));
            let mut e = TestEvent::synth(Action::Fail, pkg, None);
            e.elapsed = Some(0.0);
            events.push(e);
        } else {
            events.push(TestEvent::synth_output(
                pkg,
                None,
                &format!("?   \t{pkg}\t[no test files]"),
            ));
            let mut e = TestEvent::synth(Action::Skip, pkg, None);
            e.elapsed = Some(0.0);
            events.push(e);
        }
    }
    let execution = Execution::from_events(&events);
    let meta = RunMeta {
        error: Some(why.to_string()),
        ..run_meta(opts, &flags, "host", started, t0)
    };
    Ok(RunRecord {
        execution,
        events: events.iter().map(TestEvent::to_line).collect(),
        other_output: vec![format!("{ERROR_MARK}{why}")],
        meta,
        package_dirs: Vec::new(),
        cores: Vec::new(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::PackageStatus;
    use crate::plan::Shard;

    fn module() -> tempfile::TempDir {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join("go.mod"), "module example.com/m\n\ngo 1.21\n").unwrap();
        for (dir, file, body) in [
            (
                "a",
                "a_test.go",
                "package a\nimport \"testing\"\nfunc TestA(t *testing.T) {}\n",
            ),
            (
                "b",
                "b_test.go",
                "package b\nimport \"testing\"\nfunc TestB(t *testing.T) {}\n",
            ),
            ("c", "c.go", "package c\n"),
        ] {
            std::fs::create_dir_all(d.path().join(dir)).unwrap();
            std::fs::write(d.path().join(dir).join(file), body).unwrap();
        }
        d
    }

    #[test]
    fn every_package_of_the_shard_is_recorded_as_not_run() {
        let m = module();
        let suite = crate::SuiteConfig {
            packages: vec!["./...".into()],
            ..Default::default()
        };
        let mut all = Vec::new();
        for index in 1..=2 {
            let mut opts = RunOptions::new("s", suite.clone(), m.path());
            opts.shard = Some(Shard { index, total: 2 });
            let why = "VM 'x-2' failed to boot: timed out";
            let rec = not_run_record(&opts, TargetOs::Linux, "amd64", why).unwrap();
            assert_eq!(rec.meta.error.as_deref(), Some(why));
            assert_eq!(rec.meta.shard.as_deref(), Some(&*format!("{index}/2")));
            for p in &rec.execution.packages {
                all.push(p.name.clone());
                if p.name.ends_with("/c") {
                    continue;
                }
                assert_eq!(p.status, PackageStatus::Fail, "{}", p.name);
            }
            let s = crate::summary::summarize(
                &rec.execution,
                &rec.meta,
                &Default::default(),
                &Default::default(),
            );
            assert_eq!(s.exit_code, 2);
        }
        all.sort();
        assert_eq!(
            all,
            ["example.com/m/a", "example.com/m/b", "example.com/m/c"]
        );
    }
}
