use super::*;
use crate::event::parse_line;

fn lines(s: &[&str]) -> Vec<String> {
    s.iter().map(|l| l.to_string()).collect()
}

#[test]
fn list_pattern_takes_the_root_of_run() {
    let mut f = GoTestFlags::default();
    assert_eq!(list_pattern(&f), ".");
    f.set("run", "^TestA$/^Sub$");
    assert_eq!(list_pattern(&f), "^TestA$");
    f.set("run", "^(TestA|Test[/x])$");
    assert_eq!(list_pattern(&f), "^(TestA|Test[/x])$");
}

#[test]
fn test_list_keeps_runnable_names_and_honours_skip() {
    let out = lines(&[
        "TestA",
        "TestB",
        "BenchmarkX",
        "ExampleY",
        "FuzzZ",
        "some TestMain chatter",
        "ok  \tm\t0.01s",
    ]);
    let mut f = GoTestFlags::default();
    assert_eq!(
        parse_test_list(&out, &f),
        ["TestA", "TestB", "ExampleY", "FuzzZ"]
    );
    f.set("skip", "^TestB$");
    assert_eq!(parse_test_list(&out, &f), ["TestA", "ExampleY", "FuzzZ"]);
}

#[test]
fn flags_from_help_and_filtering() {
    let help = lines(&[
        "Usage of /tmp/link.test:",
        "  -test.run regexp",
        "    \trun only tests matching regexp",
        "  -trace-log",
        "    \tenable the trace log",
        "  -n=3 int",
    ]);
    let defined = parse_flag_names(&help);
    assert!(defined.contains("trace-log") && defined.contains("test.run"));
    assert!(!defined.contains("run"));
    let mut f = GoTestFlags {
        passthrough: lines(&["-trace-log", "-other", "value", "--n=4"]),
        ..Default::default()
    };
    let dropped = keep_defined(&mut f, &defined);
    assert_eq!(dropped, ["-other"]);
    assert_eq!(f.passthrough, ["-trace-log", "--n=4"]);
}

#[test]
fn not_run_names_the_test_that_killed_the_binary() {
    let evs: Vec<_> = [
        r#"{"Action":"start","Package":"p"}"#,
        r#"{"Action":"run","Package":"p","Test":"TestBefore"}"#,
        r#"{"Action":"pass","Package":"p","Test":"TestBefore"}"#,
        r#"{"Action":"run","Package":"p","Test":"TestPanics"}"#,
        r#"{"Action":"output","Package":"p","Test":"TestPanics","Output":"panic: boom\n"}"#,
        r#"{"Action":"fail","Package":"p"}"#,
    ]
    .iter()
    .map(|l| parse_line(l).unwrap())
    .collect();
    let mut ex = Execution::new();
    for e in &evs {
        ex.apply(e);
    }
    let expected = lines(&["TestBefore", "TestPanics", "TestNeverRuns", "TestAlso"]);
    let more = not_run_events(&ex, "p", &expected);
    assert_eq!(more.len(), 6, "three events for each of two tests");
    for e in &more {
        ex.apply(e);
    }
    let t = ex.totals();
    assert_eq!((t.tests, t.passed, t.failed, t.not_run), (4, 1, 1, 2));
    let p = ex.package("p").unwrap();
    let never = &p.test("TestNeverRuns").unwrap().attempts[0];
    assert_eq!(never.outcome, Outcome::NotRun);
    assert!(
        never
            .output
            .contains("not run: the test binary exited during TestPanics"),
        "{}",
        never.output
    );
    // Folding again from the events alone gives the same.
    let mut all = evs.clone();
    all.extend(more);
    assert_eq!(Execution::from_events(&all).totals(), t);
}
