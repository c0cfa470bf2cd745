//! Pure decisions: which packages a shard runs, which tests a rerun or a repro runs.

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;

use crate::exec::TargetOs;
use crate::flags::run_regex;
use crate::model::{Execution, Outcome};

/// `--shard I/N`: the I-th (1-based) of N shards.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Shard {
    /// 1-based index.
    pub index: u32,
    /// Number of shards.
    pub total: u32,
}

/// A `--shard` value that does not parse.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("invalid shard `{0}`: write it as I/N with 1 ≤ I ≤ N, e.g. `--shard 2/4`")]
pub struct ShardParseError(pub String);

impl std::str::FromStr for Shard {
    type Err = ShardParseError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = || ShardParseError(s.to_string());
        let (i, n) = s.split_once('/').ok_or_else(err)?;
        let (index, total): (u32, u32) = (
            i.trim().parse().map_err(|_| err())?,
            n.trim().parse().map_err(|_| err())?,
        );
        if index == 0 || total == 0 || index > total {
            return Err(err());
        }
        Ok(Shard { index, total })
    }
}

impl std::fmt::Display for Shard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.index, self.total)
    }
}

/// The packages of one shard. Deterministic: the same inputs give the same split on every
/// machine. Without durations, packages are sorted and dealt round-robin; with durations of a
/// previous run (seconds by package), the longest go first to the least-loaded shard, and unknown
/// packages count as the mean of the known ones. Every package lands in exactly one shard.
pub fn shard_packages(
    packages: &[String],
    shard: Shard,
    durations: Option<&BTreeMap<String, f64>>,
) -> Vec<String> {
    let mut sorted: Vec<&String> = packages
        .iter()
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let n = shard.total as usize;
    let want = shard.index as usize - 1;
    let Some(durations) = durations.filter(|d| !d.is_empty()) else {
        return sorted
            .into_iter()
            .enumerate()
            .filter(|(i, _)| i % n == want)
            .map(|(_, p)| p.clone())
            .collect();
    };
    let known: Vec<f64> = sorted
        .iter()
        .filter_map(|p| durations.get(*p).copied())
        .collect();
    let mean = if known.is_empty() {
        1.0
    } else {
        known.iter().sum::<f64>() / known.len() as f64
    };
    let cost = |p: &String| durations.get(p).copied().unwrap_or(mean);
    sorted.sort_by(|a, b| cost(b).total_cmp(&cost(a)).then_with(|| a.cmp(b)));
    let mut load = vec![0.0f64; n];
    let mut mine = Vec::new();
    for p in sorted {
        let (slot, _) = load
            .iter()
            .enumerate()
            .min_by(|a, b| a.1.total_cmp(b.1).then_with(|| a.0.cmp(&b.0)))
            .expect("at least one shard");
        load[slot] += cost(p);
        if slot == want {
            mine.push(p.clone());
        }
    }
    mine.sort();
    mine
}

/// Per-package durations of a previous run, for balancing shards.
pub fn durations_of(ex: &Execution) -> BTreeMap<String, f64> {
    ex.packages
        .iter()
        .map(|p| (p.name.clone(), p.elapsed))
        .collect()
}

/// What to run again in one package.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RerunTarget {
    /// Import path.
    pub package: String,
    /// Root tests to select with `-run`; `None` reruns the whole package (it failed with no
    /// failing test to blame, e.g. a TestMain failure).
    pub tests: Option<Vec<String>>,
}

impl RerunTarget {
    /// The `-run` value, if any: `^(TestA|TestB)$` for root tests, `^TestA$/^Sub$` for one
    /// subtest (a mix selects, level by level, every name given at that level).
    pub fn run_regex(&self) -> Option<String> {
        let tests = self.tests.as_ref()?;
        if tests.iter().all(|t| !t.contains('/')) {
            return Some(run_regex(tests));
        }
        let depth = tests
            .iter()
            .map(|t| t.split('/').count())
            .max()
            .unwrap_or(1);
        let levels: Vec<String> = (0..depth)
            .map(|i| {
                let names: BTreeSet<&str> =
                    tests.iter().filter_map(|t| t.split('/').nth(i)).collect();
                let names: Vec<&str> = names.into_iter().collect();
                match names.as_slice() {
                    [one] => format!("^{}$", regex::escape(one)),
                    _ => run_regex(&names),
                }
            })
            .collect();
        Some(levels.join("/"))
    }
}

/// Which tests to rerun: the root of every test whose last attempt failed (a failing subtest
/// reruns its parent, since `-run` selects roots), per package. Packages with an infrastructure
/// error or a build failure are not rerun: nothing would change.
pub fn rerun_targets(ex: &Execution) -> Vec<RerunTarget> {
    let mut out = Vec::new();
    for p in &ex.packages {
        if p.error.is_some() || p.build_failed {
            continue;
        }
        let roots: BTreeSet<String> = p
            .tests
            .iter()
            .filter(|t| t.outcome() == Outcome::Fail)
            .map(|t| t.root().to_string())
            .collect();
        if !roots.is_empty() {
            out.push(RerunTarget {
                package: p.name.clone(),
                tests: Some(roots.into_iter().collect()),
            });
        } else if p.failed_without_test() {
            out.push(RerunTarget {
                package: p.name.clone(),
                tests: None,
            });
        }
    }
    out
}

/// What `harness repro` reruns.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ReproPlan {
    /// One entry per package with failures.
    pub targets: Vec<RerunTarget>,
    /// `go test` arguments shared by all targets (verbose, count, trace log).
    pub args: Vec<String>,
}

/// Failed tests of a previous run as `(package, test)`, e.g. read back from `junit.xml`
/// (`TestMain` stands for a package-level failure).
pub type FailedTests = Vec<(String, String)>;

/// Builds the repro plan: the failed tests (optionally only those whose name or root equals
/// `only`), rerun verbosely `count` times, with `-trace-log` when asked.
pub fn repro_plan(
    failed: &FailedTests,
    only: Option<&str>,
    count: u32,
    trace_log: bool,
) -> ReproPlan {
    let mut by_pkg: BTreeMap<&str, (BTreeSet<String>, bool)> = BTreeMap::new();
    for (pkg, test) in failed {
        let root = test.split('/').next().unwrap_or(test);
        if let Some(o) = only
            && o != test
            && o != root
        {
            continue;
        }
        let e = by_pkg.entry(pkg.as_str()).or_default();
        if test == "TestMain" {
            e.1 = true;
        } else if only == Some(test.as_str()) {
            // Asked for by name: exactly that test, a subtest included.
            e.0.insert(test.to_string());
        } else {
            e.0.insert(root.to_string());
        }
    }
    let targets = by_pkg
        .into_iter()
        .map(|(pkg, (tests, whole))| RerunTarget {
            package: pkg.to_string(),
            tests: if whole || tests.is_empty() {
                None
            } else {
                Some(tests.into_iter().collect())
            },
        })
        .collect();
    let mut args = vec!["-v".to_string(), format!("-count={}", count.max(1))];
    if trace_log {
        args.push("-trace-log".into());
    }
    ReproPlan { targets, args }
}

/// What reproduces one repro target by hand.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ReproCommands {
    /// Where the tests ran: host mode runs the test binary in its package directory in the
    /// guest; guest mode runs `go test` there.
    pub target: String,
    /// On the host, in the module: `go test` with the suite's flags.
    pub host: String,
}

/// Shell-quotes one word for the target (POSIX `'…'`, PowerShell `'…'` with `''`).
fn quote(os: TargetOs, w: &str) -> String {
    let plain = w
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || "-_./=:,+@".contains(c));
    match os {
        _ if plain && !w.is_empty() => w.to_string(),
        TargetOs::Linux => format!("'{}'", w.replace('\'', "'\\''")),
        TargetOs::Windows => format!("'{}'", w.replace('\'', "''")),
    }
}

/// The commands that reproduce `t` by hand: the suite's flags (`suite_flags`, e.g. `-short`) and
/// the plan's (`-v`, `-count`, `-trace-log`), with the target's `-run`. `pkg_dir` is the
/// package's directory on the target; `host_mode` says whether a test binary ran there.
pub fn repro_commands(
    plan: &ReproPlan,
    t: &RerunTarget,
    suite_flags: &[String],
    host_mode: bool,
    os: TargetOs,
    pkg_dir: &str,
) -> Result<ReproCommands, crate::flags::FlagError> {
    let mut all = suite_flags.to_vec();
    all.extend(plan.args.iter().cloned());
    let mut f = crate::flags::GoTestFlags::parse(&all)?;
    match t.run_regex() {
        Some(re) => f.set("run", &re),
        None => f.unset("run"),
    }
    let q = |w: &str| quote(os, w);
    let mut host = vec!["go".to_string(), "test".into(), "-v".into()];
    host.extend(f.go_test_args().iter().map(|a| quote(TargetOs::Linux, a)));
    host.push(t.package.clone());
    host.extend(f.go_test_trailer());
    let cd = match os {
        TargetOs::Linux => format!("cd {} &&", q(pkg_dir)),
        TargetOs::Windows => format!("Set-Location {};", q(pkg_dir)),
    };
    let mut target = vec![cd];
    if host_mode {
        let base = t.package.rsplit('/').next().unwrap_or("pkg");
        let bin = format!("{base}.test{}", os.exe_suffix());
        target.push(match os {
            TargetOs::Linux => format!("./{bin}"),
            TargetOs::Windows => format!("& .\\{bin}"),
        });
        target.push("-test.v".into());
        target.extend(f.binary_args().iter().map(|a| q(a)));
    } else {
        target.extend(["go".to_string(), "test".into(), "-v".into()]);
        target.extend(f.go_test_args().iter().map(|a| q(a)));
        target.push(".".into());
        target.extend(f.go_test_trailer());
    }
    Ok(ReproCommands {
        target: target.join(" "),
        host: host.join(" "),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::parse_line;

    #[test]
    fn repro_commands_keep_the_suite_flags_and_rerun_exactly_a_subtest() {
        let failed: FailedTests = vec![
            ("m/link".into(), "TestTracing/AttachModifyReturn".into()),
            ("m/link".into(), "TestTracing".into()),
        ];
        let plan = repro_plan(&failed, Some("TestTracing/AttachModifyReturn"), 1, true);
        let t = &plan.targets[0];
        assert_eq!(
            t.run_regex().as_deref(),
            Some("^TestTracing$/^AttachModifyReturn$")
        );
        let flags = vec!["-short".to_string(), "-count=1".to_string()];
        let c = repro_commands(
            &plan,
            t,
            &flags,
            true,
            TargetOs::Linux,
            "/tmp/harness/s/link",
        )
        .unwrap();
        assert_eq!(
            c.target,
            "cd /tmp/harness/s/link && ./link.test -test.v -test.short -test.count=1 '-test.run=^TestTracing$/^AttachModifyReturn$' -trace-log"
        );
        assert_eq!(
            c.host,
            "go test -v -short -count=1 '-run=^TestTracing$/^AttachModifyReturn$' m/link -args -trace-log"
        );
        let w = repro_commands(&plan, t, &flags, true, TargetOs::Windows, "C:\\h\\link").unwrap();
        assert!(
            w.target
                .starts_with("Set-Location 'C:\\h\\link'; & .\\link.test.exe -test.v -test.short"),
            "{}",
            w.target
        );
        let g = repro_commands(&plan, t, &flags, false, TargetOs::Linux, "/src/link").unwrap();
        assert!(
            g.target
                .starts_with("cd /src/link && go test -v -short -count=1 '-run="),
            "{}",
            g.target
        );
        // Without --test a failing subtest reruns its root, as reruns do.
        let all = repro_plan(&failed, None, 1, false);
        assert_eq!(all.targets[0].tests, Some(vec!["TestTracing".to_string()]));
    }

    fn pkgs(n: usize) -> Vec<String> {
        (0..n).map(|i| format!("m/p{i:02}")).collect()
    }

    #[test]
    fn shard_parse() {
        assert_eq!("2/3".parse::<Shard>(), Ok(Shard { index: 2, total: 3 }));
        for bad in ["0/3", "4/3", "x/3", "3", "1/0"] {
            assert!(bad.parse::<Shard>().is_err(), "{bad}");
        }
    }

    #[test]
    fn shards_partition_without_and_with_durations() {
        let all = pkgs(11);
        let mut durations = BTreeMap::new();
        for (i, p) in all.iter().enumerate().take(8) {
            durations.insert(p.clone(), (i * 7 % 5) as f64 + 0.5);
        }
        for d in [None, Some(&durations)] {
            for total in 1..=4 {
                let mut seen = Vec::new();
                for index in 1..=total {
                    let s = shard_packages(&all, Shard { index, total }, d);
                    assert_eq!(
                        s,
                        shard_packages(&all, Shard { index, total }, d),
                        "deterministic"
                    );
                    seen.extend(s);
                }
                seen.sort();
                assert_eq!(
                    seen,
                    all,
                    "partition for {total} shards, durations {}",
                    d.is_some()
                );
            }
        }
    }

    #[test]
    fn balanced_shards_split_the_heavy_ones() {
        let all = pkgs(4);
        let d: BTreeMap<String, f64> = [
            (all[0].clone(), 100.0),
            (all[1].clone(), 90.0),
            (all[2].clone(), 5.0),
            (all[3].clone(), 5.0),
        ]
        .into();
        let a = shard_packages(&all, Shard { index: 1, total: 2 }, Some(&d));
        let b = shard_packages(&all, Shard { index: 2, total: 2 }, Some(&d));
        assert_eq!(a, vec![all[0].clone()]);
        assert_eq!(b, vec![all[1].clone(), all[2].clone(), all[3].clone()]);
    }

    #[test]
    fn rerun_targets_pick_roots_and_whole_packages() {
        let lines = [
            r#"{"Action":"start","Package":"a"}"#,
            r#"{"Action":"run","Package":"a","Test":"TestX"}"#,
            r#"{"Action":"run","Package":"a","Test":"TestX/sub"}"#,
            r#"{"Action":"fail","Package":"a","Test":"TestX/sub"}"#,
            r#"{"Action":"fail","Package":"a","Test":"TestX"}"#,
            r#"{"Action":"run","Package":"a","Test":"TestY"}"#,
            r#"{"Action":"pass","Package":"a","Test":"TestY"}"#,
            r#"{"Action":"fail","Package":"a"}"#,
            r#"{"Action":"start","Package":"b"}"#,
            r#"{"Action":"fail","Package":"b"}"#,
            r#"{"Action":"start","Package":"c"}"#,
            r#"{"Action":"output","Package":"c","Output":"harness: error: target lost\n"}"#,
            r#"{"Action":"fail","Package":"c"}"#,
            r#"{"Action":"start","Package":"d"}"#,
            r#"{"Action":"pass","Package":"d"}"#,
        ];
        let evs: Vec<_> = lines.iter().map(|l| parse_line(l).unwrap()).collect();
        let t = rerun_targets(&Execution::from_events(&evs));
        assert_eq!(
            t,
            vec![
                RerunTarget {
                    package: "a".into(),
                    tests: Some(vec!["TestX".into()])
                },
                RerunTarget {
                    package: "b".into(),
                    tests: None
                },
            ]
        );
        assert_eq!(t[0].run_regex().as_deref(), Some("^(TestX)$"));
    }

    #[test]
    fn repro_plan_filters_and_builds_commands() {
        let failed: FailedTests = vec![
            ("p".into(), "TestA/sub".into()),
            ("p".into(), "TestA".into()),
            ("p".into(), "TestB".into()),
            ("q".into(), "TestMain".into()),
        ];
        let all = repro_plan(&failed, None, 3, true);
        assert_eq!(all.targets.len(), 2);
        assert_eq!(
            all.targets[0].run_regex().as_deref(),
            Some("^(TestA|TestB)$")
        );
        assert_eq!(
            all.targets[1].tests, None,
            "TestMain reruns the whole package"
        );
        assert_eq!(all.args, ["-v", "-count=3", "-trace-log"]);
        let one = repro_plan(&failed, Some("TestB"), 1, false);
        assert_eq!(
            one.targets,
            vec![RerunTarget {
                package: "p".into(),
                tests: Some(vec!["TestB".into()])
            }]
        );
        assert!(
            repro_plan(&failed, Some("TestZ"), 1, false)
                .targets
                .is_empty()
        );
    }
}
