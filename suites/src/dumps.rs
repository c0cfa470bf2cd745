//! Goroutine dumps of hung test binaries, pulled out of the event stream for the results folder
//! (`dumps/<package>.goroutines.txt`): on a package timeout the executor sends SIGQUIT before
//! the kill (see [`crate::ExecRequest::dump_on_timeout`]), and Go prints every goroutine's stack,
//! which reaches the stream as the package's output.

use crate::event::parse_line;

/// The line Go's runtime prints first on SIGQUIT.
const SIGQUIT_LINE: &str = "SIGQUIT: quit";
/// The note harness puts in the output when it asks for a dump.
const NOTE: &str = "harness: timed out after";

/// (package, dump text) for each package run whose output holds a SIGQUIT goroutine dump, in
/// stream order: from harness's note (or the SIGQUIT line) to the end of that run.
pub fn goroutine_dumps(events: &[String]) -> Vec<(String, String)> {
    let mut open: Vec<(String, String)> = Vec::new();
    let mut done: Vec<(String, String)> = Vec::new();
    for raw in events {
        let Some(ev) = parse_line(raw) else { continue };
        let Some(pkg) = ev.package.clone() else {
            continue;
        };
        let ends_run = ev.test.is_none()
            && matches!(
                ev.action,
                crate::event::Action::Pass
                    | crate::event::Action::Fail
                    | crate::event::Action::Skip
            );
        let out = ev.output.as_deref().unwrap_or("");
        let at = open.iter().position(|(p, _)| *p == pkg);
        match at {
            Some(i) => open[i].1.push_str(out),
            None if out.starts_with(NOTE) || out.starts_with(SIGQUIT_LINE) => {
                open.push((pkg.clone(), out.to_string()));
            }
            None => {}
        }
        if ends_run && let Some(i) = open.iter().position(|(p, _)| *p == pkg) {
            done.push(open.remove(i));
        }
    }
    done.extend(open);
    done.retain(|(_, text)| text.contains(SIGQUIT_LINE) || text.contains("goroutine "));
    done
}

#[cfg(test)]
mod tests {
    use super::*;

    fn out(pkg: &str, test: Option<&str>, text: &str) -> String {
        let mut v = serde_json::json!({"Action": "output", "Package": pkg, "Output": text});
        if let Some(t) = test {
            v["Test"] = t.into();
        }
        v.to_string()
    }

    #[test]
    fn the_dump_of_each_hung_run_is_found() {
        let events = vec![
            out("m/a", Some("TestA"), "=== RUN   TestA\n"),
            out(
                "m/a",
                Some("TestA"),
                "harness: timed out after 3s; sent SIGQUIT to /t/a.test (pid 7) for a goroutine dump\n",
            ),
            out("m/b", None, "ok\n"),
            out("m/a", Some("TestA"), "SIGQUIT: quit\n"),
            out("m/a", Some("TestA"), "goroutine 1 [sleep]:\n"),
            r#"{"Action":"fail","Package":"m/a"}"#.to_string(),
            out("m/a", None, "later run\n"),
            out("m/c", None, "no dump here\n"),
        ];
        let d = goroutine_dumps(&events);
        assert_eq!(d.len(), 1, "{d:?}");
        assert_eq!(d[0].0, "m/a");
        assert!(
            d[0].1.starts_with("harness: timed out after 3s"),
            "{}",
            d[0].1
        );
        assert!(d[0].1.contains("goroutine 1 [sleep]:"), "{}", d[0].1);
        assert!(!d[0].1.contains("later run"), "{}", d[0].1);
        // A note without a dump (no Go test binary found) leaves no file.
        let none = goroutine_dumps(&[out(
            "m/a",
            None,
            "harness: timed out after 3s; no Go test binary (*.test) in the process group to dump\n",
        )]);
        assert!(none.is_empty(), "{none:?}");
    }
}
