//! Every `.ps1` in the repository, and every PowerShell program the session generates around the
//! embedded scripts, parses under tree-sitter-powershell (see `testsupport::ps1` for the allowlist).

use std::path::Path;

use provision::session::script::builtin;
use provision::session::wrap;

#[test]
fn every_ps1_in_the_repo_parses() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    let files = testsupport::ps1::find_ps1(root);
    assert!(
        files
            .iter()
            .any(|f| f.ends_with("provision/scripts/windows/session/restart_sshd.ps1")),
        "the walk did not find the session scripts: {files:?}"
    );
    let failures: Vec<String> = files
        .iter()
        .filter_map(|f| testsupport::ps1::check(f).err())
        .collect();
    assert!(
        failures.is_empty(),
        "PowerShell syntax problems:\n{}",
        failures.join("\n")
    );
}

#[test]
fn generated_wrappers_parse() {
    for script in builtin::ALL
        .iter()
        .chain(provision::install::scripts::WINDOWS_ALL)
        .chain(provision::health::scripts::WINDOWS_ALL)
        .chain(provision::debugger::WINDOWS_ALL)
        .chain(provision::forensics::WINDOWS_ALL)
        .filter(|s| s.os == provision::session::GuestOs::Windows)
    {
        let cmd = script
            .command(&[
                ("Dir", r"C:\it's here".into()),
                ("Names", "epbf-go-1\nebpf-go-2".into()),
                ("Since", "2026-01-01T00:00:00Z".into()),
            ])
            .unwrap()
            .env("GOFLAGS", "-count=1")
            .cwd(r"C:\work");
        let src = wrap::windows_source(&cmd).unwrap();
        let problems = testsupport::ps1::check_source(&src);
        assert!(problems.is_empty(), "{}: {problems:?}\n{src}", script.name);
    }
    let kill =
        wrap::windows_source(&wrap::kill_tree(provision::session::GuestOs::Windows, 42)).unwrap();
    assert_eq!(testsupport::ps1::check_source(&kill), vec![]);
}
