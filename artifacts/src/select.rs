//! Pure decisions: which run's artifact to take.

use crate::github::{Artifact, Job};

/// What a run offers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RunVerdict {
    /// Live artifact, and the build job (or the whole run) succeeded.
    Good,
    /// Live artifact, but the build may be partial; the text says why.
    Partial(String),
    /// No artifact of that name.
    NoArtifact,
    /// The artifact exists but has expired.
    Expired,
}

/// Case-insensitive match where `*` stands for any run of characters.
pub fn glob_match(pattern: &str, text: &str) -> bool {
    let p: Vec<char> = pattern.to_lowercase().chars().collect();
    let t: Vec<char> = text.to_lowercase().chars().collect();
    let (mut pi, mut ti) = (0, 0);
    let (mut star, mut mark) = (None, 0);
    while ti < t.len() {
        if pi < p.len() && p[pi] != '*' && p[pi] == t[ti] {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some(pi);
            mark = ti;
            pi += 1;
        } else if let Some(s) = star {
            pi = s + 1;
            mark += 1;
            ti = mark;
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|c| *c == '*')
}

/// Judges a run. `jobs` is needed only when the run itself did not conclude `success`.
pub fn judge_run(
    run_conclusion: Option<&str>,
    artifact: Option<&Artifact>,
    jobs: Option<&[Job]>,
    job_pattern: &str,
) -> RunVerdict {
    let Some(artifact) = artifact else {
        return RunVerdict::NoArtifact;
    };
    if artifact.expired {
        return RunVerdict::Expired;
    }
    if run_conclusion == Some("success") {
        return RunVerdict::Good;
    }
    let matching: Vec<&Job> = jobs
        .unwrap_or(&[])
        .iter()
        .filter(|j| glob_match(job_pattern, &j.name))
        .collect();
    if matching.is_empty() {
        return RunVerdict::Partial(format!(
            "no job matches the build-job pattern {job_pattern:?}, so the build's outcome is unknown (set build_job)"
        ));
    }
    match matching
        .iter()
        .find(|j| j.conclusion.as_deref() != Some("success"))
    {
        None => RunVerdict::Good,
        Some(j) => RunVerdict::Partial(format!(
            "its build job {:?} concluded {}",
            j.name,
            j.conclusion.as_deref().unwrap_or("nothing (still running)")
        )),
    }
}

/// The outcome of the search.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Pick {
    /// Take the run at this index; `warning` is set when it is a fallback.
    Chosen {
        index: usize,
        warning: Option<String>,
    },
    /// Nothing usable; the text summarises what was seen.
    Nothing(String),
}

/// Newest good run; else the newest run with a live artifact, with a warning; else why not.
pub fn pick(run_ids: &[u64], verdicts: &[RunVerdict], artifact: &str) -> Pick {
    if let Some(index) = verdicts.iter().position(|v| *v == RunVerdict::Good) {
        return Pick::Chosen {
            index,
            warning: None,
        };
    }
    if let Some((index, why)) = verdicts.iter().enumerate().find_map(|(i, v)| match v {
        RunVerdict::Partial(why) => Some((i, why)),
        _ => None,
    }) {
        return Pick::Chosen {
            index,
            warning: Some(format!(
                "none of the {} runs searched has a successful build with a live {artifact}; using run {}, but {why}: the build may be partial",
                verdicts.len(),
                run_ids[index]
            )),
        };
    }
    let missing = verdicts
        .iter()
        .filter(|v| **v == RunVerdict::NoArtifact)
        .count();
    let expired = verdicts
        .iter()
        .filter(|v| **v == RunVerdict::Expired)
        .count();
    Pick::Nothing(format!(
        "searched {} completed runs: {missing} have no artifact {artifact}, {expired} have it expired. Try a larger search_runs, a release (--source release:<version>), or --offline",
        verdicts.len()
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn art(expired: bool) -> Artifact {
        Artifact {
            id: 1,
            name: "Build-x64-Debug".into(),
            size_in_bytes: 1,
            archive_download_url: "u".into(),
            expired,
            created_at: None,
            digest: None,
        }
    }
    fn job(name: &str, c: &str) -> Job {
        Job {
            name: name.into(),
            status: Some("completed".into()),
            conclusion: Some(c.into()),
        }
    }

    #[test]
    fn glob() {
        let cases = [
            ("regular / build (Debug)", "regular / build (Debug)", true),
            ("regular / build (Debug)", "Regular / Build (debug)", true),
            (
                "regular / build (Debug)",
                "regular / build (FuzzerDebug)",
                false,
            ),
            (
                "regular / build (Debug)",
                "regular_native-only / build (NativeOnlyDebug)",
                false,
            ),
            (
                "regular / build (Debug)",
                "regular_vs2022 / build (Debug)",
                false,
            ),
            ("*", "", true),
            ("a*b*c", "aXbYc", true),
            ("a*b*c", "aXbY", false),
            ("exact", "exact", true),
            ("exact", "exactly", false),
        ];
        for (p, t, want) in cases {
            assert_eq!(glob_match(p, t), want, "{p} vs {t}");
        }
    }

    #[test]
    fn judging() {
        let pat = "regular / build (Debug)";
        let ok = [
            job("regular / build (Debug)", "success"),
            job("regular / build (Release)", "failure"),
            // A different build (it uploads Build-x64-vs2022-Debug): not ours to judge by.
            job("regular_vs2022 / build (Debug)", "failure"),
        ];
        let bad = [
            job("regular / build (Debug)", "failure"),
            job("driver_tests", "failure"),
        ];
        let a = art(false);
        assert_eq!(
            judge_run(Some("success"), None, None, pat),
            RunVerdict::NoArtifact
        );
        assert_eq!(
            judge_run(Some("success"), Some(&art(true)), None, pat),
            RunVerdict::Expired
        );
        assert_eq!(
            judge_run(Some("success"), Some(&a), None, pat),
            RunVerdict::Good
        );
        assert_eq!(
            judge_run(Some("failure"), Some(&a), Some(&ok), pat),
            RunVerdict::Good
        );
        assert!(
            matches!(judge_run(Some("failure"), Some(&a), Some(&bad), pat), RunVerdict::Partial(w) if w.contains("concluded failure"))
        );
        assert!(
            matches!(judge_run(Some("failure"), Some(&a), Some(&[]), pat), RunVerdict::Partial(w) if w.contains("no job matches"))
        );
    }

    #[test]
    fn picking() {
        use RunVerdict::*;
        let ids = [5, 4, 3, 2];
        assert_eq!(
            pick(&ids, &[NoArtifact, Partial("x".into()), Good], "A"),
            Pick::Chosen {
                index: 2,
                warning: None
            }
        );
        match pick(
            &ids,
            &[
                Expired,
                Partial("its build job failed".into()),
                Partial("y".into()),
            ],
            "A",
        ) {
            Pick::Chosen {
                index: 1,
                warning: Some(w),
            } => assert!(w.contains("run 4") && w.contains("partial"), "{w}"),
            other => panic!("{other:?}"),
        }
        match pick(&ids, &[NoArtifact, Expired, Expired], "A") {
            Pick::Nothing(w) => {
                assert!(w.contains("1 have no artifact A, 2 have it expired"), "{w}")
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(pick(&[], &[], "A"), Pick::Nothing(_)));
    }
}
