//! Pure decisions: which packages a shard runs, which tests a rerun or a repro runs.

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;

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
    /// The `-run` value, if any.
    pub fn run_regex(&self) -> Option<String> {
        self.tests.as_ref().map(|t| run_regex(t))
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

impl ReproPlan {
    /// The equivalent `go test` command for one target, for the user to copy.
    pub fn command(&self, t: &RerunTarget) -> String {
        let mut parts = vec!["go".to_string(), "test".to_string()];
        parts.extend(self.args.iter().filter(|a| *a != "-trace-log").cloned());
        if let Some(re) = t.run_regex() {
            parts.push(format!("-run='{re}'"));
        }
        parts.push(t.package.clone());
        if self.args.iter().any(|a| a == "-trace-log") {
            parts.push("-args".into());
            parts.push("-trace-log".into());
        }
        parts.join(" ")
    }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::parse_line;

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
            all.command(&all.targets[0]),
            "go test -v -count=3 -run='^(TestA|TestB)$' p -args -trace-log"
        );
        assert_eq!(
            all.command(&all.targets[1]),
            "go test -v -count=3 q -args -trace-log"
        );
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
