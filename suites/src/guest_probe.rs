//! Guest mode's questions to the test binaries, through `go test` in the guest: which tests a
//! package has (`go test -list`), and which flags its binary defines (`-args -h`).

use std::collections::{BTreeMap, BTreeSet};

use crate::event::HARNESS_MARK;
use crate::exec::{ExecRequest, Executor};
use crate::flags::GoTestFlags;
use crate::runner::State;

/// Guest mode: the root tests of each package (`go test -list`), so that tests a crashed binary
/// never reached are reported "not run". A failed listing is a note, not a failure.
pub(crate) fn guest_list(
    exec: &mut dyn Executor,
    st: &mut State<'_>,
    req: &dyn Fn(Vec<String>) -> ExecRequest,
    guest_go: &str,
    f: &GoTestFlags,
    pkgs: &[String],
) -> BTreeMap<String, Vec<String>> {
    let mut lf = f.clone();
    lf.set("list", &crate::probe::list_pattern(f));
    lf.passthrough.clear();
    let mut argv = vec![guest_go.to_string(), "test".into(), "-json".into()];
    argv.extend(lf.go_test_args());
    argv.extend(pkgs.iter().cloned());
    match crate::probe::guest_probe(exec, &req(argv)) {
        Ok(by_pkg) => by_pkg
            .into_iter()
            .map(|(p, lines)| {
                let tests = crate::probe::parse_test_list(&lines, f);
                (p, tests)
            })
            .collect(),
        Err(e) => {
            st.note(&format!(
                "{HARNESS_MARK}could not list the tests ({e}); tests a crashed binary never reaches will not be reported"
            ));
            BTreeMap::new()
        }
    }
}

/// Guest mode: drops the pass-through flags that `pkg`'s test binary does not define (asked
/// once per package with `go test -run '^$' PKG -args -h`).
pub(crate) fn guest_keep_defined(
    exec: &mut dyn Executor,
    st: &mut State<'_>,
    req: &dyn Fn(Vec<String>) -> ExecRequest,
    guest_go: &str,
    pkg: &str,
    f: &mut GoTestFlags,
    defined: &mut BTreeMap<String, BTreeSet<String>>,
) {
    if f.passthrough.is_empty() {
        return;
    }
    if !defined.contains_key(pkg) {
        let mut hf = f.clone();
        hf.set("run", "^$");
        hf.passthrough = vec!["-h".into()];
        let mut argv = vec![guest_go.to_string(), "test".into(), "-json".into()];
        argv.extend(hf.go_test_args());
        argv.push(pkg.to_string());
        argv.extend(hf.go_test_trailer());
        match crate::probe::guest_probe(exec, &req(argv)) {
            Ok(by_pkg) => {
                let lines = by_pkg.get(pkg).cloned().unwrap_or_default();
                defined.insert(pkg.to_string(), crate::probe::parse_flag_names(&lines));
            }
            Err(e) => {
                st.note(&format!(
                    "{HARNESS_MARK}could not ask {pkg} for its flags ({e}); passing {} as given",
                    f.passthrough.join(" ")
                ));
                return;
            }
        }
    }
    let dropped = crate::probe::keep_defined(f, &defined[pkg]);
    if !dropped.is_empty() {
        st.note(&format!(
            "{HARNESS_MARK}{pkg} does not define {}: not passed to its test binary",
            dropped.join(" ")
        ));
    }
}
