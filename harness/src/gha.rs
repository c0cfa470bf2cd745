//! GitHub Actions output: a collapsible group per phase, an error annotation per failed test,
//! and the run's summary appended to `$GITHUB_STEP_SUMMARY`. Active when `GITHUB_ACTIONS=true`.
//!
//! Workflow commands are plain lines on stdout; their values need escaping
//! (<https://docs.github.com/actions/reference/workflow-commands-for-github-actions>).

use std::io::Write;
use std::path::Path;

/// Whether we run inside GitHub Actions.
pub fn active() -> bool {
    std::env::var("GITHUB_ACTIONS").is_ok_and(|v| v == "true")
}

/// `::group::<title>`.
pub fn group(title: &str) -> String {
    format!("::group::{}", escape_data(title))
}

/// `::endgroup::`.
pub fn endgroup() -> &'static str {
    "::endgroup::"
}

/// Where a failure points in the source, as Go prints it (`file_test.go:42: message`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Location {
    pub file: String,
    pub line: u32,
}

/// The first `something.go:N:` in a test's output, the way `t.Errorf` and `t.Fatalf` report.
pub fn location(output: &str) -> Option<Location> {
    for line in output.lines() {
        let t = line.trim_start();
        let Some(idx) = t.find(".go:") else { continue };
        let file = &t[..idx + 3];
        if file.is_empty() || file.contains(char::is_whitespace) {
            continue;
        }
        let rest = &t[idx + 4..];
        let digits: String = rest.chars().take_while(|c| c.is_ascii_digit()).collect();
        if digits.is_empty() || !rest[digits.len()..].starts_with(':') {
            continue;
        }
        if let Ok(line) = digits.parse() {
            return Some(Location {
                file: file.to_string(),
                line,
            });
        }
    }
    None
}

/// `::error file=…,line=…,title=…::message` for one failed test, with an `explain:` line per efW
/// or Windows error code in the output (see `suites::explain`). `package_dir` is the
/// package's path relative to the repository root, so the annotation lands on the right file.
pub fn error_annotation(package_dir: &str, test: &str, output: &str) -> String {
    let title = format!("{test} failed");
    let excerpt: Vec<&str> = output
        .lines()
        .filter(|l| {
            let t = l.trim();
            !t.is_empty() && !t.starts_with("=== ") && !t.starts_with("--- FAIL")
        })
        .take(10)
        .collect();
    let mut message = if excerpt.is_empty() {
        format!("{test} failed (no output)")
    } else {
        excerpt.join("\n")
    };
    for e in suites::explain::scan(output) {
        message.push_str(&format!("\nexplain: {}", e.text()));
    }
    let mut props = Vec::new();
    if let Some(loc) = location(output) {
        let dir = package_dir.trim_matches('/');
        let file = if dir.is_empty() || dir == "." || loc.file.contains('/') {
            loc.file.clone()
        } else {
            format!("{dir}/{}", loc.file)
        };
        props.push(format!("file={}", escape_property(&file)));
        props.push(format!("line={}", loc.line));
    }
    props.push(format!("title={}", escape_property(&title)));
    format!("::error {}::{}", props.join(","), escape_data(&message))
}

/// Appends Markdown to the step summary file, if GitHub gave one.
pub fn append_step_summary(markdown: &str) -> std::io::Result<bool> {
    let Some(path) = std::env::var_os("GITHUB_STEP_SUMMARY") else {
        return Ok(false);
    };
    append_to(Path::new(&path), markdown)?;
    Ok(true)
}

fn append_to(path: &Path, markdown: &str) -> std::io::Result<()> {
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)?;
    writeln!(f, "{markdown}")
}

fn escape_data(s: &str) -> String {
    s.replace('%', "%25")
        .replace('\r', "%0D")
        .replace('\n', "%0A")
}

fn escape_property(s: &str) -> String {
    escape_data(s).replace(':', "%3A").replace(',', "%2C")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_go_location_of_a_failure() {
        let out =
            "=== RUN   TestMap\n    map_test.go:123: got 1, want 2\n--- FAIL: TestMap (0.00s)\n";
        assert_eq!(
            location(out),
            Some(Location {
                file: "map_test.go".into(),
                line: 123
            })
        );
        assert_eq!(location("panic: boom\n\ngoroutine 7 [running]:\n"), None);
        assert_eq!(location("see foo.go:abc: nothing"), None);
        assert_eq!(
            location("\t/src/ebpf/link/link_windows_test.go:88 +0x1d\n  x_test.go:9: y")
                .unwrap()
                .line,
            9,
            "stack frames (no colon after the line) are not failure locations"
        );
    }

    #[test]
    fn annotation_format() {
        let out = "=== RUN   TestMap\n    map_test.go:123: got 1, want 2\n    100% wrong: a,b\n--- FAIL: TestMap (0.00s)\n";
        assert_eq!(
            error_annotation("internal/sys", "TestMap", out),
            "::error file=internal/sys/map_test.go,line=123,title=TestMap failed::    map_test.go:123: got 1, want 2%0A    100%25 wrong: a,b"
        );
        assert_eq!(
            error_annotation(".", "TestX/sub:case", "panic: oops\n"),
            "::error title=TestX/sub%3Acase failed::panic: oops"
        );
        assert_eq!(
            error_annotation("", "TestQuiet", ""),
            "::error title=TestQuiet failed::TestQuiet failed (no output)"
        );
        let a = error_annotation(".", "TestMap", "    map_test.go:7: update: Errno(119)\n");
        assert!(
            a.ends_with(
                "update: Errno(119)%0Aexplain: Errno(119): errno 119 is ENOBUFS in Windows' errno.h \
                 (Linux's ENOBUFS is 105): efW returns it for EBPF_INSUFFICIENT_BUFFER \
                 (a buffer of insufficient size was supplied); a buffer ebpf-go passed was too \
                 small for what efW had to return; not a socket buffer as ENOBUFS would suggest \
                 on Linux"
            ),
            "{a}"
        );
    }

    #[test]
    fn groups_escape_newlines() {
        assert_eq!(group("install\nefW"), "::group::install%0AefW");
        assert_eq!(endgroup(), "::endgroup::");
    }

    #[test]
    fn step_summary_appends() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("summary.md");
        append_to(&p, "# one").unwrap();
        append_to(&p, "# two").unwrap();
        assert_eq!(std::fs::read_to_string(&p).unwrap(), "# one\n# two\n");
    }
}
