//! The Linux-guest install flow against a real sshd on loopback: `sh setup.sh` changes what a
//! *new* SSH session sees (an sshd `SetEnv` include), so the verify command only passes after
//! harness restarted sshd and reconnected.

use std::fs;
use std::path::{Path, PathBuf};

use provision::InstallConfig;
use provision::install::{
    self, BuildToInstall, InstallError, InstallEvent, InstallOptions, InstallOutcome,
    InstalledBuild, Step,
};
use provision::session::{Endpoint, GuestOs, Session, SessionOptions};
use testsupport::sshd::{Sshd, SshdOptions};

/// One sshd whose config includes `<env dir>/*.conf`, where fixture builds write `SetEnv`.
struct Lab {
    sshd: Sshd,
    tmp: tempfile::TempDir,
}

impl Lab {
    fn start() -> Lab {
        let tmp = tempfile::tempdir().unwrap();
        fs::create_dir_all(tmp.path().join("env")).unwrap();
        fs::create_dir_all(tmp.path().join("state")).unwrap();
        let sshd = Sshd::start_with(SshdOptions {
            extra_config: vec![format!("Include {}/env/*.conf", tmp.path().display())],
            ..Default::default()
        })
        .expect("start sshd");
        Lab { sshd, tmp }
    }

    fn session(&self) -> Session {
        self.session_restarting_with(&format!(
            "kill -HUP \"$(cat {})\"",
            self.sshd.pid_file().display()
        ))
    }

    /// A session whose sshd "restart" runs `restart` instead.
    fn session_restarting_with(&self, restart: &str) -> Session {
        let ep = Endpoint {
            host: self.sshd.host().into(),
            port: self.sshd.port(),
            user: self.sshd.user(),
            identity: Some(self.sshd.client_key()),
            os: GuestOs::Linux,
        };
        let mut opts = SessionOptions::new(self.tmp.path().join("known_hosts"));
        opts.linux_restart_command = restart.to_string();
        Session::connect(&ep, &opts).expect("connect")
    }

    fn state(&self) -> PathBuf {
        self.tmp.path().join("state")
    }

    fn options(&self, results: &Path) -> InstallOptions {
        let config = InstallConfig {
            linux_guest_dir: self.tmp.path().join("guest").display().to_string(),
            verify_command: format!(
                "test -n \"$EFW_INSTALLED\" && test \"$EFW_INSTALLED\" = \"$(cat {}/installed-key)\"",
                self.state().display()
            ),
            restart_timeout: 60,
            timeout: 60,
            ..InstallConfig::default()
        };
        InstallOptions::new(config, results)
    }

    /// A build dir whose setup.sh installs `key` (writes the SetEnv include and a state file) or,
    /// with `--uninstall`, removes them; every action is appended to `state/events`.
    fn build(&self, key: &str) -> BuildToInstall {
        let dir = self.tmp.path().join("builds").join(key);
        fs::create_dir_all(dir.join("bin")).unwrap();
        fs::write(dir.join("bin/ebpfapi.so"), format!("runtime {key}\n")).unwrap();
        fs::write(dir.join("VERSION"), "0.7.1\n").unwrap();
        let env = self.tmp.path().join("env");
        let state = self.state();
        fs::write(
            dir.join("setup.sh"),
            format!(
                r#"set -e
if [ "${{1:-}}" = "--uninstall" ]; then
    echo "uninstall {key}" >> {state}/events
    rm -f {env}/efw.conf {state}/installed-key
    echo "removed {key}"
    exit 0
fi
test -f bin/ebpfapi.so
echo "install {key}" >> {state}/events
printf 'SetEnv EFW_INSTALLED={key}\n' > {env}/efw.conf
echo {key} > {state}/installed-key
echo "installed {key}"
"#,
                state = state.display(),
                env = env.display()
            ),
        )
        .unwrap();
        BuildToInstall {
            local_dir: dir,
            provenance: InstalledBuild {
                key: key.into(),
                source: format!("file:{key}"),
                version: None,
                ..Default::default()
            },
        }
    }

    fn events(&self) -> Vec<String> {
        fs::read_to_string(self.state().join("events"))
            .unwrap_or_default()
            .lines()
            .map(str::to_string)
            .collect()
    }

    /// What a brand-new session (system ssh client) sees.
    fn fresh_env(&self) -> String {
        let out = self
            .sshd
            .ssh_command()
            .unwrap()
            .arg("echo \"[$EFW_INSTALLED]\"")
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }
}

fn steps(events: &[InstallEvent]) -> Vec<Step> {
    events
        .iter()
        .filter_map(|e| match e {
            InstallEvent::StepFinished { step, ok: true, .. } => Some(*step),
            _ => None,
        })
        .collect()
}

#[test]
fn install_restarts_sshd_then_noop_then_replaces_with_uninstall_first() {
    let lab = Lab::start();
    let results = tempfile::tempdir().unwrap();
    let opts = lab.options(results.path());
    let mut session = lab.session();

    // First install: setup.sh runs, sshd restarts, the verify command passes in a fresh session.
    let build_a = lab.build("build-a");
    let mut ev = Vec::new();
    let report =
        install::install_runtime(&mut session, &build_a, &opts, &mut |e| ev.push(e.clone()))
            .unwrap_or_else(|e| panic!("install A: {e}\n--- sshd log ---\n{}", lab.sshd.log()));
    assert_eq!(report.outcome, InstallOutcome::Installed { replaced: None });
    assert_eq!(report.record.build.key, "build-a");
    assert_eq!(report.record.runtime_version.as_deref(), Some("0.7.1"));
    assert_eq!(report.record.ci_efw_version().as_deref(), Some("0.7.1"));
    assert!(report.checks.iter().all(|c| c.ok), "{:?}", report.checks);
    let s = steps(&ev);
    for want in [
        Step::Query,
        Step::Upload,
        Step::Install,
        Step::RestartSshd,
        Step::Verify,
        Step::Record,
    ] {
        assert!(s.contains(&want), "{want:?} missing from {s:?}");
    }
    assert!(!s.contains(&Step::Uninstall), "{s:?}");
    assert_eq!(lab.events(), vec!["install build-a"]);
    assert_eq!(lab.fresh_env(), "[build-a]");
    assert!(
        report
            .logs
            .iter()
            .any(|p| p.ends_with("harness-setup.log") && p.starts_with(results.path()))
    );
    assert!(
        ev.iter().any(|e| matches!(e, InstallEvent::StepFinished { step: Step::RestartSshd, elapsed, .. } if !elapsed.is_zero()))
    );
    // The guest holds the record; the host can read it back.
    let rec = install::installed(&mut session, &opts.config)
        .unwrap()
        .expect("record");
    assert_eq!(rec.build, build_a.provenance);

    // Same build again: verified in place, nothing uploaded, setup.sh not run.
    let mut ev = Vec::new();
    let again =
        install::install_runtime(&mut session, &build_a, &opts, &mut |e| ev.push(e.clone()))
            .unwrap();
    assert_eq!(again.outcome, InstallOutcome::AlreadyInstalled);
    assert_eq!(steps(&ev), vec![Step::Query, Step::CheckCurrent]);
    assert!(ev.iter().any(|e| matches!(e, InstallEvent::Skipped { .. })));
    assert_eq!(lab.events(), vec!["install build-a"]);

    // A different build: the old one is uninstalled (its own setup.sh) before the new installs.
    let build_b = lab.build("build-b");
    let mut ev = Vec::new();
    let replaced =
        install::install_runtime(&mut session, &build_b, &opts, &mut |e| ev.push(e.clone()))
            .unwrap_or_else(|e| panic!("install B: {e}\n--- sshd log ---\n{}", lab.sshd.log()));
    assert_eq!(
        replaced.outcome,
        InstallOutcome::Installed {
            replaced: Some(build_a.provenance.clone())
        }
    );
    assert_eq!(
        lab.events(),
        vec!["install build-a", "uninstall build-a", "install build-b"]
    );
    assert_eq!(lab.fresh_env(), "[build-b]");
    let s = steps(&ev);
    let pos = |st| s.iter().position(|x| *x == st).unwrap();
    assert!(pos(Step::Uninstall) < pos(Step::Install), "{s:?}");

    // --force reinstalls the same build (uninstall, then install again).
    let mut forced = opts.clone();
    forced.force = true;
    let r = install::install_runtime(&mut session, &build_b, &forced, &mut |_| {}).unwrap();
    assert_eq!(
        r.outcome,
        InstallOutcome::Installed {
            replaced: Some(build_b.provenance.clone())
        }
    );
    assert_eq!(lab.events()[3..], ["uninstall build-b", "install build-b"]);
}

#[test]
fn failing_setup_sh_reports_its_log_excerpt_and_records_nothing() {
    let lab = Lab::start();
    let results = tempfile::tempdir().unwrap();
    let opts = lab.options(results.path());
    let mut session = lab.session();

    let build = lab.build("broken");
    fs::write(
        build.local_dir.join("setup.sh"),
        "echo 'copying runtime files'\necho 'error: cannot load driver ebpfcore.sys (0xC0000428)' >&2\nexit 3\n",
    )
    .unwrap();
    let mut ev = Vec::new();
    let err = install::install_runtime(&mut session, &build, &opts, &mut |e| ev.push(e.clone()))
        .unwrap_err();
    match &err {
        InstallError::SetupShFailed {
            uninstall: false,
            code: 3,
            excerpt,
            log: Some(log),
            ..
        } => {
            assert!(
                excerpt
                    .iter()
                    .any(|l| l.contains("cannot load driver ebpfcore.sys")),
                "{excerpt:?}"
            );
            assert!(log.starts_with(results.path()), "{}", log.display());
            assert!(
                fs::read_to_string(log)
                    .unwrap()
                    .contains("copying runtime files")
            );
        }
        other => panic!("unexpected error: {other}"),
    }
    let msg = err.to_string();
    assert!(
        msg.contains("exit code 3") && msg.contains("cannot load driver"),
        "{msg}"
    );
    // The failed step is reported as failed, and sshd was never restarted.
    assert!(ev.iter().any(|e| matches!(
        e,
        InstallEvent::StepFinished {
            step: Step::Install,
            ok: false,
            ..
        }
    )));
    assert!(!steps(&ev).contains(&Step::RestartSshd));
    assert_eq!(
        install::installed(&mut session, &opts.config).unwrap(),
        None
    );
}

#[test]
fn a_build_without_setup_sh_is_refused_before_touching_the_guest() {
    let lab = Lab::start();
    let results = tempfile::tempdir().unwrap();
    let opts = lab.options(results.path());
    let mut session = lab.session();
    let build = lab.build("nosetup");
    fs::remove_file(build.local_dir.join("setup.sh")).unwrap();
    let mut ev = Vec::new();
    let err = install::install_runtime(&mut session, &build, &opts, &mut |e| ev.push(e.clone()))
        .unwrap_err();
    assert!(matches!(err, InstallError::Invalid(_)), "{err}");
    assert!(err.to_string().contains("needs setup.sh"), "{err}");
    assert!(ev.is_empty(), "{ev:?}");
}

#[test]
fn without_a_real_sshd_restart_the_new_environment_is_not_seen_and_verify_fails() {
    let lab = Lab::start();
    let results = tempfile::tempdir().unwrap();
    let mut opts = lab.options(results.path());
    opts.config.restart_timeout = 3;
    // "Restarting" sshd does nothing: sessions opened afterwards keep the old environment.
    let mut session = lab.session_restarting_with("true");
    let build = lab.build("build-a");
    let err = install::install_runtime(&mut session, &build, &opts, &mut |_| {}).unwrap_err();
    assert!(matches!(err, InstallError::VerifyFailed { .. }), "{err}");
    assert!(err.to_string().contains("after sshd restarted"), "{err}");
    assert_eq!(lab.events(), vec!["install build-a"], "setup.sh did run");
    assert_eq!(
        lab.fresh_env(),
        "[]",
        "a new session without the restart sees nothing"
    );
    assert_eq!(
        install::installed(&mut session, &opts.config).unwrap(),
        None
    );
}
