//! Decisions, free of I/O: which method, which guest paths, and whether to install at all.

use crate::config::{InstallConfig, InstallMethod};
use crate::session::GuestOs;

use super::record::InstallRecord;

/// What the build directory on the host offers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct BuildLayout {
    /// `setup-ebpf.ps1` at the root.
    pub setup_ebpf_ps1: bool,
    /// `install_ebpf.psm1` at the root.
    pub install_ebpf_psm1: bool,
    /// `setup.sh` at the root (Linux guests).
    pub setup_sh: bool,
}

impl BuildLayout {
    /// Looks at the files at the root of an unpacked build.
    pub fn of_dir(dir: &std::path::Path) -> Self {
        Self {
            setup_ebpf_ps1: dir.join("setup-ebpf.ps1").is_file(),
            install_ebpf_psm1: dir.join("install_ebpf.psm1").is_file(),
            setup_sh: dir.join("setup.sh").is_file(),
        }
    }

    fn found(&self) -> String {
        let mut v = Vec::new();
        if self.setup_ebpf_ps1 {
            v.push("setup-ebpf.ps1");
        }
        if self.install_ebpf_psm1 {
            v.push("install_ebpf.psm1");
        }
        if self.setup_sh {
            v.push("setup.sh");
        }
        if v.is_empty() {
            "none of setup-ebpf.ps1, install_ebpf.psm1, setup.sh".into()
        } else {
            v.join(", ")
        }
    }
}

/// Resolves `auto` and checks the method fits the guest and the build. Auto prefers
/// `install_ebpf.psm1` (ebpf-go's CI path, which reports failures by throwing) over
/// `setup-ebpf.ps1`.
pub(crate) fn choose_method(
    configured: InstallMethod,
    os: GuestOs,
    layout: BuildLayout,
) -> Result<InstallMethod, String> {
    let method = match (configured, os) {
        (InstallMethod::Auto, GuestOs::Linux) => InstallMethod::SetupSh,
        (InstallMethod::Auto, GuestOs::Windows) if layout.install_ebpf_psm1 => {
            InstallMethod::InstallPsm1
        }
        (InstallMethod::Auto, GuestOs::Windows) if layout.setup_ebpf_ps1 => {
            InstallMethod::SetupEbpf
        }
        (InstallMethod::Auto, GuestOs::Windows) => {
            return Err(format!(
                "the build has no installer for a Windows guest (expected install_ebpf.psm1 or \
                 setup-ebpf.ps1 at its root; found {})",
                layout.found()
            ));
        }
        (InstallMethod::SetupSh, GuestOs::Windows) => {
            return Err(
                "install method `setup-sh` is for Linux guests; this guest runs Windows \
                        (set [install] method = \"auto\")"
                    .into(),
            );
        }
        (InstallMethod::SetupEbpf | InstallMethod::InstallPsm1, GuestOs::Linux) => {
            return Err(format!(
                "install method `{}` needs a Windows guest; this guest runs Linux \
                 (set [install] method = \"auto\" or \"setup-sh\")",
                method_name(configured)
            ));
        }
        (m, _) => m,
    };
    let present = match method {
        InstallMethod::SetupEbpf => layout.setup_ebpf_ps1,
        InstallMethod::InstallPsm1 => layout.install_ebpf_psm1,
        InstallMethod::SetupSh => layout.setup_sh,
        InstallMethod::Auto => unreachable!("auto resolved above"),
    };
    if !present {
        return Err(format!(
            "install method `{}` needs {} at the build root, but the build has {}",
            method_name(method),
            method_file(method),
            layout.found()
        ));
    }
    Ok(method)
}

/// The config spelling of a method.
pub fn method_name(m: InstallMethod) -> &'static str {
    match m {
        InstallMethod::Auto => "auto",
        InstallMethod::SetupEbpf => "setup-ebpf",
        InstallMethod::InstallPsm1 => "install-psm1",
        InstallMethod::SetupSh => "setup-sh",
    }
}

fn method_file(m: InstallMethod) -> &'static str {
    match m {
        InstallMethod::SetupEbpf => "setup-ebpf.ps1",
        InstallMethod::InstallPsm1 => "install_ebpf.psm1",
        InstallMethod::SetupSh => "setup.sh",
        InstallMethod::Auto => "an installer",
    }
}

/// A build key must be usable as one guest directory name without quoting: install_ebpf.psm1
/// breaks on spaces, and a separator would escape the harness directory.
pub(crate) fn validate_key(key: &str) -> Result<(), String> {
    if key.is_empty() {
        return Err("the build key is empty".into());
    }
    if key == "." || key == ".." {
        return Err(format!("the build key `{key}` is not a directory name"));
    }
    if let Some(c) = key
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
    {
        return Err(format!(
            "the build key `{key}` contains {c:?}; only letters, digits, '.', '_' and '-' are allowed \
             (it becomes a guest directory name)"
        ));
    }
    Ok(())
}

/// Joins guest path segments with the guest's separator.
pub fn guest_join(os: GuestOs, root: &str, name: &str) -> String {
    let sep = match os {
        GuestOs::Windows => '\\',
        GuestOs::Linux => '/',
    };
    let root = root.trim_end_matches(['\\', '/']);
    format!("{root}{sep}{name}")
}

/// The configured root of the build directories in a guest of `os`: `[install] guest_dir` on
/// Windows, `linux_guest_dir` on Linux.
pub fn guest_root(cfg: &InstallConfig, os: GuestOs) -> &str {
    match os {
        GuestOs::Windows => &cfg.guest_dir,
        GuestOs::Linux => &cfg.linux_guest_dir,
    }
}

/// Guest paths for one install, derived from the configured root.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GuestPaths {
    /// Root holding one directory per build.
    pub root: String,
    /// This build's directory.
    pub build_dir: String,
    /// The install record.
    pub marker: String,
}

impl GuestPaths {
    /// Paths for `key` under `root`. The root must not contain whitespace (install_ebpf.psm1).
    pub(crate) fn new(os: GuestOs, root: &str, key: &str) -> Result<Self, String> {
        validate_key(key)?;
        if root.trim().is_empty() {
            return Err("the guest install directory is empty (set [install] guest_dir)".into());
        }
        if root.chars().any(char::is_whitespace) {
            return Err(format!(
                "the guest install directory `{root}` contains whitespace; install_ebpf.psm1 breaks \
                 on such paths (set [install] guest_dir to a path without spaces)"
            ));
        }
        Ok(Self {
            root: root.to_string(),
            build_dir: guest_join(os, root, key),
            marker: guest_join(os, root, "installed.json"),
        })
    }
}

/// What to do, given what the guest has and what is wanted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Plan {
    /// The same build is recorded; check it still works before deciding.
    CheckCurrent,
    /// The same build is installed and verified: nothing to do.
    NothingToDo,
    /// Install; first uninstall what is there.
    Install {
        /// The recorded build to uninstall with its own scripts, if any.
        replace: Option<Box<InstallRecord>>,
        /// A runtime is present without a harness record (installed by hand, or a half-done
        /// install): uninstall it with the new build's scripts.
        unknown_runtime: bool,
    },
}

/// Decides the next step. `current_ok` is `None` until the recorded build has been checked.
pub fn decide(
    current: Option<&InstallRecord>,
    runtime_present: bool,
    wanted_key: &str,
    force: bool,
    current_ok: Option<bool>,
) -> Plan {
    let same = current.is_some_and(|r| r.build.key == wanted_key);
    if same && !force {
        match current_ok {
            None => return Plan::CheckCurrent,
            Some(true) => return Plan::NothingToDo,
            Some(false) => {}
        }
    }
    Plan::Install {
        replace: current.cloned().map(Box::new),
        unknown_runtime: current.is_none() && runtime_present,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::install::record::InstalledBuild;

    fn layout(ps1: bool, psm1: bool, sh: bool) -> BuildLayout {
        BuildLayout {
            setup_ebpf_ps1: ps1,
            install_ebpf_psm1: psm1,
            setup_sh: sh,
        }
    }

    #[test]
    fn method_choice_table() {
        use GuestOs::*;
        use InstallMethod::*;
        let cases: &[(
            InstallMethod,
            GuestOs,
            BuildLayout,
            Result<InstallMethod, &str>,
        )] = &[
            (Auto, Windows, layout(true, true, false), Ok(InstallPsm1)),
            (Auto, Windows, layout(true, false, false), Ok(SetupEbpf)),
            (
                Auto,
                Windows,
                layout(false, false, true),
                Err("no installer for a Windows guest"),
            ),
            (Auto, Linux, layout(false, false, true), Ok(SetupSh)),
            (
                Auto,
                Linux,
                layout(true, true, false),
                Err("needs setup.sh"),
            ),
            (SetupEbpf, Windows, layout(true, true, false), Ok(SetupEbpf)),
            (
                SetupEbpf,
                Windows,
                layout(false, true, false),
                Err("needs setup-ebpf.ps1"),
            ),
            (
                InstallPsm1,
                Windows,
                layout(true, false, false),
                Err("needs install_ebpf.psm1"),
            ),
            (
                SetupSh,
                Windows,
                layout(false, false, true),
                Err("for Linux guests"),
            ),
            (
                InstallPsm1,
                Linux,
                layout(false, true, true),
                Err("needs a Windows guest"),
            ),
        ];
        for (configured, os, l, want) in cases {
            let got = choose_method(*configured, *os, *l);
            match (want, &got) {
                (Ok(m), Ok(g)) => assert_eq!(m, g, "{configured:?} {os:?} {l:?}"),
                (Err(frag), Err(msg)) => {
                    assert!(
                        msg.contains(frag),
                        "{configured:?} {os:?}: {msg:?} lacks {frag:?}"
                    )
                }
                _ => panic!("{configured:?} {os:?} {l:?}: want {want:?}, got {got:?}"),
            }
        }
    }

    #[test]
    fn keys_and_paths() {
        assert!(validate_key("run-123_Build-x64-Debug.1").is_ok());
        for bad in ["", "..", "a b", "a/b", r"a\b", "a;b", "é"] {
            assert!(validate_key(bad).is_err(), "{bad:?} accepted");
        }
        let p = GuestPaths::new(GuestOs::Windows, r"C:\harness\efw\", "k1").unwrap();
        assert_eq!(p.build_dir, r"C:\harness\efw\k1");
        assert_eq!(p.marker, r"C:\harness\efw\installed.json");
        let p = GuestPaths::new(GuestOs::Linux, "/var/tmp/h", "k1").unwrap();
        assert_eq!(p.build_dir, "/var/tmp/h/k1");
        let err = GuestPaths::new(GuestOs::Windows, r"C:\Program Files\h", "k1").unwrap_err();
        assert!(err.contains("whitespace"), "{err}");
    }

    fn rec(key: &str) -> InstallRecord {
        InstallRecord {
            build: InstalledBuild {
                key: key.into(),
                ..Default::default()
            },
            method: InstallMethod::SetupSh,
            guest_dir: format!("/x/{key}"),
            installed_at: 0,
            harness_version: "0".into(),
            runtime_version: None,
        }
    }

    #[test]
    fn decision_table() {
        let a = rec("a");
        // (current, runtime_present, wanted, force, current_ok) → plan
        // (current, runtime_present, wanted, force, current_ok) → plan
        type Case<'a> = (
            Option<&'a InstallRecord>,
            bool,
            &'a str,
            bool,
            Option<bool>,
            Plan,
        );
        let cases: Vec<Case> = vec![
            (
                None,
                false,
                "a",
                false,
                None,
                Plan::Install {
                    replace: None,
                    unknown_runtime: false,
                },
            ),
            (
                None,
                true,
                "a",
                false,
                None,
                Plan::Install {
                    replace: None,
                    unknown_runtime: true,
                },
            ),
            (Some(&a), true, "a", false, None, Plan::CheckCurrent),
            (Some(&a), true, "a", false, Some(true), Plan::NothingToDo),
            (
                Some(&a),
                true,
                "a",
                false,
                Some(false),
                Plan::Install {
                    replace: Some(Box::new(a.clone())),
                    unknown_runtime: false,
                },
            ),
            (
                Some(&a),
                true,
                "a",
                true,
                None,
                Plan::Install {
                    replace: Some(Box::new(a.clone())),
                    unknown_runtime: false,
                },
            ),
            (
                Some(&a),
                true,
                "b",
                false,
                None,
                Plan::Install {
                    replace: Some(Box::new(a.clone())),
                    unknown_runtime: false,
                },
            ),
        ];
        for (cur, present, wanted, force, ok, want) in cases {
            assert_eq!(
                decide(cur, present, wanted, force, ok),
                want,
                "{cur:?} {present} {wanted} {force} {ok:?}"
            );
        }
    }
}
