//! `go test` flags, split the way `go test` itself splits them: build flags go to `go test -c`,
//! testing flags go to the test binary as `-test.NAME`, unknown flags pass through unchanged.

/// Flags of the `testing` package (given to a test binary as `-test.NAME`). In this table and
/// [`BUILD_FLAGS`], a trailing `=` marks a flag that takes a value (the next argument when written
/// without `=`).
const TESTING_FLAGS: &[&str] = &[
    "bench=",
    "benchmem",
    "benchtime=",
    "blockprofile=",
    "blockprofilerate=",
    "count=",
    "coverprofile=",
    "cpu=",
    "cpuprofile=",
    "failfast",
    "fullpath",
    "fuzz=",
    "fuzzcachedir=",
    "fuzzminimizetime=",
    "fuzztime=",
    "list=",
    "memprofile=",
    "memprofilerate=",
    "mutexprofile=",
    "mutexprofilefraction=",
    "outputdir=",
    "parallel=",
    "run=",
    "short",
    "shuffle=",
    "skip=",
    "timeout=",
    "trace=",
    "v",
    "artifacts",
];

/// Flags of `go build` that `go test -c` accepts.
const BUILD_FLAGS: &[&str] = &[
    "a",
    "race",
    "msan",
    "asan",
    "cover",
    "covermode=",
    "coverpkg=",
    "buildmode=",
    "buildvcs",
    "compiler=",
    "gccgoflags=",
    "gcflags=",
    "installsuffix=",
    "ldflags=",
    "linkshared",
    "mod=",
    "modcacherw",
    "modfile=",
    "overlay=",
    "pgo=",
    "pkgdir=",
    "tags=",
    "trimpath",
    "toolexec=",
    "work",
    "x",
    "n",
    "p=",
    "vet=",
    "C=",
];

/// Flags the harness sets itself; a user's is dropped, with its value (`=` as above).
const OWNED_FLAGS: &[&str] = &["json", "v", "c", "o=", "exec="];

/// A bad flag list.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum FlagError {
    /// A flag that needs a value came last.
    #[error("go test flag `-{0}` needs a value; write it as `-{0}=VALUE` in the suite's flags")]
    MissingValue(String),
    /// `-race` cannot work with the cross-compiled static binaries of host mode.
    #[error(
        "`-race` needs cgo, which host mode disables for cross-compiled binaries; use `mode = \"guest\"` for race tests or drop `-race`"
    )]
    RaceInHostMode,
}

/// A parsed flag list.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GoTestFlags {
    /// Build flags, as written (`-tags=x`).
    pub build: Vec<(String, Option<String>)>,
    /// Testing flags by bare name (`run`, `count`, …).
    pub testing: Vec<(String, Option<String>)>,
    /// Flags for the test binary itself (e.g. ebpf-go's `-trace-log`), passed through unchanged.
    pub passthrough: Vec<String>,
}

/// Looks `name` up in a flag table: whether it takes a value, when the table lists it.
fn lookup(table: &[&str], name: &str) -> Option<bool> {
    table.iter().find_map(|f| match f.strip_suffix('=') {
        Some(n) => (n == name).then_some(true),
        None => (*f == name).then_some(false),
    })
}

fn name_and_value(arg: &str) -> Option<(String, Option<String>)> {
    let body = arg.strip_prefix("--").or_else(|| arg.strip_prefix('-'))?;
    if body.is_empty() {
        return None;
    }
    let body = body.strip_prefix("test.").unwrap_or(body);
    Some(match body.split_once('=') {
        Some((n, v)) => (n.to_string(), Some(v.to_string())),
        None => (body.to_string(), None),
    })
}

impl GoTestFlags {
    /// Parses a `go test` flag list (suite flags, then command-line extras).
    pub fn parse(args: &[String]) -> Result<Self, FlagError> {
        let mut out = GoTestFlags::default();
        let mut it = args.iter();
        while let Some(arg) = it.next() {
            if arg == "-args" || arg == "--args" {
                out.passthrough.extend(it.by_ref().cloned());
                break;
            }
            let Some((name, mut value)) = name_and_value(arg) else {
                out.passthrough.push(arg.clone());
                continue;
            };
            let testing = lookup(TESTING_FLAGS, &name);
            let build = lookup(BUILD_FLAGS, &name);
            let owned = lookup(OWNED_FLAGS, &name);
            if value.is_none() && testing.or(build).or(owned) == Some(true) {
                value = Some(
                    it.next()
                        .ok_or_else(|| FlagError::MissingValue(name.clone()))?
                        .clone(),
                );
            }
            if owned.is_some() {
                continue;
            }
            if testing.is_some() {
                out.testing.retain(|(n, _)| *n != name);
                out.testing.push((name, value));
            } else if build.is_some() {
                out.build.push((name, value));
            } else {
                out.passthrough.push(arg.clone());
            }
        }
        Ok(out)
    }

    /// Sets (or replaces) a testing flag.
    pub fn set(&mut self, name: &str, value: &str) {
        self.testing.retain(|(n, _)| n != name);
        self.testing
            .push((name.to_string(), Some(value.to_string())));
    }

    /// Removes a testing flag.
    pub fn unset(&mut self, name: &str) {
        self.testing.retain(|(n, _)| n != name);
    }

    /// The value of a testing flag.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.testing
            .iter()
            .find(|(n, _)| n == name)
            .and_then(|(_, v)| v.as_deref())
    }

    /// Whether a build flag is present (e.g. `race`).
    pub fn has_build(&self, name: &str) -> bool {
        self.build.iter().any(|(n, _)| n == name)
    }

    fn fmt(prefix: &str, (n, v): &(String, Option<String>)) -> String {
        match v {
            Some(v) => format!("-{prefix}{n}={v}"),
            None => format!("-{prefix}{n}"),
        }
    }

    /// Arguments for `go test -c`.
    pub fn build_args(&self) -> Vec<String> {
        self.build.iter().map(|f| Self::fmt("", f)).collect()
    }

    /// Arguments for a test binary run directly (host mode).
    pub fn binary_args(&self) -> Vec<String> {
        let mut v: Vec<String> = self.testing.iter().map(|f| Self::fmt("test.", f)).collect();
        v.extend(self.passthrough.iter().cloned());
        v
    }

    /// Arguments for `go test` before the package list (guest mode).
    pub fn go_test_args(&self) -> Vec<String> {
        self.build
            .iter()
            .chain(&self.testing)
            .map(|f| Self::fmt("", f))
            .collect()
    }

    /// Arguments after the package list (`-args …`), empty when nothing passes through.
    pub fn go_test_trailer(&self) -> Vec<String> {
        if self.passthrough.is_empty() {
            return Vec::new();
        }
        std::iter::once("-args".to_string())
            .chain(self.passthrough.iter().cloned())
            .collect()
    }
}

/// The `-run` pattern that selects exactly these root tests.
pub fn run_regex<S: AsRef<str>>(tests: &[S]) -> String {
    let names: Vec<String> = tests.iter().map(|t| regex::escape(t.as_ref())).collect();
    format!("^({})$", names.join("|"))
}

/// Parses a Go duration such as `90s`, `10m`, `1h30m`, `1.5s` into seconds.
pub fn parse_go_duration(s: &str) -> Option<f64> {
    if s == "0" {
        return Some(0.0);
    }
    let mut total = 0.0;
    let mut num = String::new();
    let mut chars = s.chars().peekable();
    let mut any = false;
    while let Some(c) = chars.next() {
        if c.is_ascii_digit() || c == '.' {
            num.push(c);
            continue;
        }
        let mut unit = c.to_string();
        if (c == 'm' || c == 'u' || c == 'n' || c == 'µ') && chars.peek() == Some(&'s') {
            unit.push(chars.next()?);
        }
        let n: f64 = num.parse().ok()?;
        num.clear();
        total += n * match unit.as_str() {
            "h" => 3600.0,
            "m" => 60.0,
            "s" => 1.0,
            "ms" => 1e-3,
            "us" | "µs" => 1e-6,
            "ns" => 1e-9,
            _ => return None,
        };
        any = true;
    }
    (any && num.is_empty()).then_some(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn owned_flags_are_dropped_with_their_values() {
        let args: Vec<String> = [
            "-exec",
            "wrapper",
            "-o",
            "out.test",
            "-json",
            "-run=X",
            "-trace-log",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let f = GoTestFlags::parse(&args).unwrap();
        assert_eq!(f.get("run"), Some("X"));
        assert_eq!(f.passthrough, ["-trace-log"], "{f:?}");
        assert!(f.build.is_empty(), "{f:?}");
    }

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn splits_like_go_test() {
        let f = GoTestFlags::parse(&s(&[
            "-short",
            "-count=1",
            "-run",
            "TestA",
            "-tags=x",
            "-v",
            "-json",
            "-trace-log",
            "-timeout",
            "5m",
        ]))
        .unwrap();
        assert_eq!(f.build_args(), s(&["-tags=x"]));
        assert_eq!(
            f.binary_args(),
            s(&[
                "-test.short",
                "-test.count=1",
                "-test.run=TestA",
                "-test.timeout=5m",
                "-trace-log"
            ])
        );
        assert_eq!(
            f.go_test_args(),
            s(&["-tags=x", "-short", "-count=1", "-run=TestA", "-timeout=5m"])
        );
        assert_eq!(f.go_test_trailer(), s(&["-args", "-trace-log"]));
    }

    #[test]
    fn later_flags_override_and_set_replaces() {
        let mut f = GoTestFlags::parse(&s(&["-run=A", "-test.run=B", "-args", "-x", "y"])).unwrap();
        assert_eq!(f.get("run"), Some("B"));
        assert_eq!(f.passthrough, s(&["-x", "y"]));
        f.set("run", "^(C)$");
        f.set("count", "1");
        assert_eq!(
            f.binary_args(),
            s(&["-test.run=^(C)$", "-test.count=1", "-x", "y"])
        );
        f.unset("run");
        assert_eq!(f.get("run"), None);
    }

    #[test]
    fn only_value_flags_take_the_next_argument() {
        let f =
            GoTestFlags::parse(&s(&["-tags", "x", "-race", "-benchmem", "-count", "2"])).unwrap();
        assert_eq!(f.build_args(), s(&["-tags=x", "-race"]));
        assert_eq!(f.binary_args(), s(&["-test.benchmem", "-test.count=2"]));
    }

    #[test]
    fn missing_value_is_an_error() {
        assert_eq!(
            GoTestFlags::parse(&s(&["-run"])),
            Err(FlagError::MissingValue("run".into()))
        );
    }

    #[test]
    fn run_regex_escapes() {
        assert_eq!(run_regex(&["TestA", "TestB"]), "^(TestA|TestB)$");
        assert_eq!(run_regex(&["Test.X"]), "^(Test\\.X)$");
    }

    #[test]
    fn go_durations() {
        let cases = [
            ("90s", Some(90.0)),
            ("10m", Some(600.0)),
            ("1h30m", Some(5400.0)),
            ("1.5s", Some(1.5)),
            ("250ms", Some(0.25)),
            ("0", Some(0.0)),
            ("abc", None),
            ("5", None),
        ];
        for (i, want) in cases {
            assert_eq!(parse_go_duration(i), want, "{i}");
        }
    }
}
