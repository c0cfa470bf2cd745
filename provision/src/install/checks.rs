//! The JSON each step script prints, and the judgement of it. The reference install scripts end
//! with `exit 0` even when parts failed, so success is decided here from what is really there.

use std::collections::BTreeMap;

use serde::{Deserialize, Deserializer};

/// Services the runtime must leave running.
pub const RUNTIME_SERVICES: [&str; 2] = ["eBPFCore", "NetEbpfExt"];

/// Accepts a JSON array of strings, a single string, or null (PowerShell 5.1 collapses
/// one-element arrays in some pipelines).
pub fn lines<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum OneOrMany {
        One(String),
        Many(Vec<Option<String>>),
        Null(()),
    }
    Ok(match Option::<OneOrMany>::deserialize(d)? {
        None | Some(OneOrMany::Null(())) => Vec::new(),
        Some(OneOrMany::One(s)) => s.lines().map(str::to_string).collect(),
        Some(OneOrMany::Many(v)) => v.into_iter().map(Option::unwrap_or_default).collect(),
    })
}

/// `query.ps1`.
#[derive(Debug, Clone, Deserialize)]
pub struct QueryResult {
    /// The install record, if any.
    pub marker: Option<serde_json::Value>,
    /// eBPF services and their status (`null` = absent).
    #[serde(default)]
    pub services: BTreeMap<String, Option<String>>,
    /// Whether `C:\Program Files\ebpf-for-windows` exists.
    #[serde(default)]
    pub program_files: bool,
}

impl QueryResult {
    /// Any sign of an installed runtime.
    pub fn runtime_present(&self) -> bool {
        self.program_files || self.services.values().any(Option::is_some)
    }
}

/// `uninstall.ps1`.
#[derive(Debug, Clone, Deserialize)]
pub struct UninstallResult {
    /// Directory whose scripts were used; `None` when neither directory has an uninstaller.
    pub dir: Option<String>,
    /// `setup-ebpf` or `install-psm1`.
    pub method: Option<String>,
    /// Exit code of the child PowerShell.
    pub exit_code: Option<i64>,
    /// Last lines of its output.
    #[serde(default, deserialize_with = "lines")]
    pub output_tail: Vec<String>,
    /// Services afterwards.
    #[serde(default)]
    pub services_after: BTreeMap<String, Option<String>>,
}

/// Problems after an uninstall: non-zero exit, or runtime services still registered.
pub fn judge_uninstall(r: &UninstallResult) -> Vec<String> {
    let mut problems = Vec::new();
    if r.exit_code != Some(0) {
        problems.push(format!(
            "the uninstaller ({} in {}) exited with {}",
            r.method.as_deref().unwrap_or("none"),
            r.dir.as_deref().unwrap_or("no directory"),
            code_text(r.exit_code)
        ));
    }
    for name in RUNTIME_SERVICES {
        if let Some(Some(state)) = r.services_after.get(name) {
            problems.push(format!(
                "service {name} is still registered ({state}) after uninstall"
            ));
        }
    }
    problems
}

/// `install.ps1`.
#[derive(Debug, Clone, Deserialize)]
pub struct InstallResult {
    /// Method used.
    pub method: String,
    /// Exit code of the child PowerShell.
    pub exit_code: Option<i64>,
    /// Last lines of its output.
    #[serde(default, deserialize_with = "lines")]
    pub output_tail: Vec<String>,
    /// Runtime services and their status.
    #[serde(default)]
    pub services: BTreeMap<String, Option<String>>,
    /// Path of ebpfapi.dll in the install directory, if present.
    pub ebpfapi_dll: Option<String>,
    /// Whether PsExec64.exe was beside the installer.
    #[serde(default)]
    pub psexec_present: bool,
    /// The MSI log, if written.
    pub msi_log: Option<String>,
}

/// Problems after an install: exit code *and* results.
pub fn judge_install(r: &InstallResult) -> Vec<String> {
    let mut problems = Vec::new();
    if r.exit_code != Some(0) {
        problems.push(format!(
            "the installer ({}) exited with {}",
            r.method,
            code_text(r.exit_code)
        ));
    }
    problems.extend(service_problems(&r.services));
    if r.ebpfapi_dll.is_none() {
        problems.push(
            "ebpfapi.dll is not in C:\\Program Files\\ebpf-for-windows (the MSI did not install the \
             user-mode runtime)"
                .into(),
        );
    }
    problems
}

/// `verify.ps1`.
#[derive(Debug, Clone, Deserialize)]
pub struct VerifyResult {
    /// Runtime services and their status.
    #[serde(default)]
    pub services: BTreeMap<String, Option<String>>,
    /// Where ebpfapi.dll was found through this session's PATH.
    pub ebpfapi_dll: Option<String>,
    /// This session's PATH.
    #[serde(default)]
    pub path: String,
    /// Exit code of `netsh ebpf show programs`.
    pub netsh_exit_code: Option<i64>,
    /// Its first lines.
    #[serde(default, deserialize_with = "lines")]
    pub netsh_output: Vec<String>,
    /// The installed runtime's version (MSI DisplayVersion or ebpfapi.dll's), if found.
    #[serde(default)]
    pub runtime_version: Option<String>,
}

/// Problems seen from a fresh session; the PATH problem names PATH, because that is what
/// `load ebpfapi.dll: not found` in ebpf-go means.
pub fn judge_verify(r: &VerifyResult, install_dir: &str) -> Vec<String> {
    let mut problems = service_problems(&r.services);
    if r.ebpfapi_dll.is_none() {
        problems.push(format!(
            "ebpfapi.dll is not resolvable on PATH in a new SSH session (ebpf-go would fail with \
             `load ebpfapi.dll: not found`): `{install_dir}` is not on the session's PATH, which is \
             `{}`. The machine PATH was updated and sshd restarted; check that sshd really restarted \
             (Restart-Service sshd) and that the directory holds ebpfapi.dll",
            r.path
        ));
    }
    if r.netsh_exit_code != Some(0) {
        let first = r.netsh_output.iter().find(|l| !l.trim().is_empty());
        problems.push(format!(
            "`netsh ebpf show programs` exited with {}{}",
            code_text(r.netsh_exit_code),
            first.map(|l| format!(": {}", l.trim())).unwrap_or_default()
        ));
    }
    problems
}

fn service_problems(services: &BTreeMap<String, Option<String>>) -> Vec<String> {
    let mut problems = Vec::new();
    for name in RUNTIME_SERVICES {
        match services.get(name) {
            Some(Some(s)) if s == "Running" => {}
            Some(Some(s)) => problems.push(format!("service {name} is {s}, not Running")),
            _ => problems.push(format!("service {name} does not exist")),
        }
    }
    problems
}

fn code_text(code: Option<i64>) -> String {
    match code {
        Some(c) => format!("exit code {c}"),
        None => "no exit code".into(),
    }
}

/// `list_logs.ps1`.
#[derive(Debug, Clone, Deserialize)]
pub struct LogList {
    /// Log files in the guest.
    #[serde(default)]
    pub files: Vec<GuestFile>,
}

/// A file in the guest.
#[derive(Debug, Clone, Deserialize)]
pub struct GuestFile {
    /// Full guest path.
    pub path: String,
    /// Size in bytes.
    #[serde(default)]
    pub size: u64,
}

/// `ensure_path.ps1`.
#[derive(Debug, Clone, Deserialize)]
pub struct EnsurePathResult {
    /// Whether the machine PATH was changed.
    pub changed: bool,
    /// The machine PATH afterwards.
    #[serde(default)]
    pub machine_path: String,
}

/// Linux `run_setup.sh`.
#[derive(Debug, Clone, Deserialize)]
pub struct SetupShResult {
    /// Exit code of `sh setup.sh`; 127 when there is no setup.sh.
    pub exit_code: i64,
    /// Guest path of its log.
    pub log: Option<String>,
}

/// `ext_query.ps1`.
#[derive(Debug, Clone, Deserialize)]
pub struct ExtQuery {
    /// Service name.
    pub service: String,
    /// Its status, `None` if absent.
    pub status: Option<String>,
    /// Its ImagePath.
    pub binary_path: Option<String>,
    /// eBPFCore's status, `None` if absent.
    pub ebpfcore: Option<String>,
}

/// `ext_remove.ps1`.
#[derive(Debug, Clone, Deserialize)]
pub struct ExtRemove {
    /// Whether the service existed.
    pub existed: bool,
    /// `sc.exe stop` exit code, if run.
    pub stop_exit_code: Option<i64>,
    /// `sc.exe delete` exit code, if run.
    pub delete_exit_code: Option<i64>,
    /// Output of sc.exe.
    #[serde(default, deserialize_with = "lines")]
    pub output: Vec<String>,
    /// Whether the service is gone now.
    pub gone: bool,
}

/// Problems after removing a service. `sc.exe stop` on a stopped driver fails with 1062, which is
/// fine; what matters is that delete succeeded and the service is gone.
pub fn judge_ext_remove(r: &ExtRemove, service: &str) -> Vec<String> {
    let mut problems = Vec::new();
    if !r.existed {
        return problems;
    }
    if let Some(code) = r.stop_exit_code
        && code != 0
        && code != 1062
    {
        problems.push(format!("`sc.exe stop {service}` exited with {code}"));
    }
    match r.delete_exit_code {
        Some(0) => {}
        // 1072: marked for deletion; acceptable only if it really went away.
        Some(1072) if r.gone => {}
        other => problems.push(format!(
            "`sc.exe delete {service}` exited with {}",
            code_text(other)
        )),
    }
    if !r.gone {
        problems.push(format!(
            "service {service} still exists after deletion (a handle may keep it; a reboot clears it)"
        ));
    }
    problems
}

/// `ext_create.ps1` and `ext_export.ps1`.
#[derive(Debug, Clone, Deserialize)]
pub struct ToolRun {
    /// Exit code.
    pub exit_code: Option<i64>,
    /// Output lines.
    #[serde(default, deserialize_with = "lines")]
    pub output: Vec<String>,
}

/// `ext_start.ps1`.
#[derive(Debug, Clone, Deserialize)]
pub struct ExtStart {
    /// Last status seen.
    pub status: Option<String>,
    /// Attempts made.
    pub attempts: u32,
    /// Last `sc.exe start` exit code.
    pub last_exit_code: Option<i64>,
    /// Output of sc.exe.
    #[serde(default, deserialize_with = "lines")]
    pub output: Vec<String>,
}

/// `ext_program_types.ps1`.
#[derive(Debug, Clone, Deserialize)]
pub struct ProgramTypes {
    /// Registered program types.
    #[serde(default)]
    pub program_types: Vec<ProgramType>,
}

/// One program type in the eBPF store.
#[derive(Debug, Clone, Deserialize)]
pub struct ProgramType {
    /// Provider key name.
    #[serde(default)]
    pub provider: String,
    /// Program type GUID (key name, usually in braces).
    pub guid: String,
    /// Its `Name` value.
    pub name: Option<String>,
}

/// Normalizes a GUID for comparison: no braces, lower case.
pub fn norm_guid(g: &str) -> String {
    g.trim()
        .trim_start_matches('{')
        .trim_end_matches('}')
        .to_ascii_lowercase()
}

/// Splits expected program types into (present, missing). An expectation matches a registered
/// type by GUID or, failing that, by name (case-insensitive).
pub fn match_program_types(
    expected: &[String],
    found: &[ProgramType],
) -> (Vec<String>, Vec<String>) {
    let mut present = Vec::new();
    let mut missing = Vec::new();
    for want in expected {
        let w = norm_guid(want);
        let hit = found.iter().any(|t| {
            norm_guid(&t.guid) == w
                || t.name
                    .as_deref()
                    .is_some_and(|n| n.eq_ignore_ascii_case(want.trim()))
        });
        if hit {
            present.push(want.clone());
        } else {
            missing.push(want.clone());
        }
    }
    (present, missing)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn services(core: Option<&str>, net: Option<&str>) -> BTreeMap<String, Option<String>> {
        BTreeMap::from([
            ("eBPFCore".to_string(), core.map(str::to_string)),
            ("NetEbpfExt".to_string(), net.map(str::to_string)),
        ])
    }

    #[test]
    fn install_judged_by_results_not_only_exit_code() {
        let ok = InstallResult {
            method: "install-psm1".into(),
            exit_code: Some(0),
            output_tail: vec![],
            services: services(Some("Running"), Some("Running")),
            ebpfapi_dll: Some(r"C:\Program Files\ebpf-for-windows\ebpfapi.dll".into()),
            psexec_present: true,
            msi_log: None,
        };
        assert!(judge_install(&ok).is_empty());
        // setup-ebpf.ps1's `exit 0` after a failed MSI: services missing.
        let lying = InstallResult {
            services: services(None, None),
            ebpfapi_dll: None,
            ..ok.clone()
        };
        let p = judge_install(&lying);
        assert_eq!(p.len(), 3, "{p:?}");
        assert!(p[0].contains("eBPFCore does not exist"));
        let stopped = InstallResult {
            services: services(Some("Running"), Some("Stopped")),
            ..ok.clone()
        };
        assert_eq!(
            judge_install(&stopped),
            vec!["service NetEbpfExt is Stopped, not Running"]
        );
        let threw = InstallResult {
            exit_code: Some(1),
            ..ok
        };
        assert!(judge_install(&threw)[0].contains("exit code 1"));
    }

    #[test]
    fn verify_names_path_when_dll_not_resolvable() {
        let r = VerifyResult {
            services: services(Some("Running"), Some("Running")),
            ebpfapi_dll: None,
            path: r"C:\Windows\system32;C:\Windows".into(),
            netsh_exit_code: Some(0),
            netsh_output: vec![],
            runtime_version: None,
        };
        let p = judge_verify(&r, r"C:\Program Files\ebpf-for-windows");
        assert_eq!(p.len(), 1);
        assert!(p[0].contains("not resolvable on PATH"), "{}", p[0]);
        assert!(p[0].contains(r"C:\Windows\system32;C:\Windows"), "{}", p[0]);
        let netsh = VerifyResult {
            ebpfapi_dll: Some("x".into()),
            netsh_exit_code: Some(1),
            netsh_output: vec![
                "".into(),
                "The following command was not found: ebpf show programs.".into(),
            ],
            ..r
        };
        let p = judge_verify(&netsh, "d");
        assert_eq!(
            p,
            vec![
                "`netsh ebpf show programs` exited with exit code 1: The following command was not found: ebpf show programs."
            ]
        );
    }

    #[test]
    fn lines_accepts_string_array_or_null() {
        let r: ToolRun = serde_json::from_str(r#"{"exit_code":0,"output":"a\nb"}"#).unwrap();
        assert_eq!(r.output, vec!["a", "b"]);
        let r: ToolRun = serde_json::from_str(r#"{"exit_code":0,"output":["a",null]}"#).unwrap();
        assert_eq!(r.output, vec!["a", ""]);
        let r: ToolRun = serde_json::from_str(r#"{"exit_code":0,"output":null}"#).unwrap();
        assert!(r.output.is_empty());
        let r: ToolRun = serde_json::from_str(r#"{"exit_code":0}"#).unwrap();
        assert!(r.output.is_empty());
    }

    #[test]
    fn ext_remove_table() {
        let base = ExtRemove {
            existed: true,
            stop_exit_code: Some(0),
            delete_exit_code: Some(0),
            output: vec![],
            gone: true,
        };
        assert!(judge_ext_remove(&base, "s").is_empty());
        assert!(
            judge_ext_remove(
                &ExtRemove {
                    stop_exit_code: Some(1062),
                    ..base.clone()
                },
                "s"
            )
            .is_empty()
        );
        assert!(
            judge_ext_remove(
                &ExtRemove {
                    existed: false,
                    gone: true,
                    delete_exit_code: None,
                    stop_exit_code: None,
                    ..base.clone()
                },
                "s"
            )
            .is_empty()
        );
        assert_eq!(
            judge_ext_remove(
                &ExtRemove {
                    delete_exit_code: Some(5),
                    ..base.clone()
                },
                "s"
            )
            .len(),
            1
        );
        assert_eq!(
            judge_ext_remove(
                &ExtRemove {
                    gone: false,
                    delete_exit_code: Some(1072),
                    ..base
                },
                "s"
            )
            .len(),
            2
        );
    }

    #[test]
    fn program_types_match_by_guid_or_name() {
        let found = vec![
            ProgramType {
                provider: "p".into(),
                guid: "{22EA7B37-1043-4D0D-B60D-CAFA1C7B638E}".into(),
                name: Some("process".into()),
            },
            ProgramType {
                provider: "p".into(),
                guid: "{608c517c-6c52-4a26-b677-bb1c34425adf}".into(),
                name: Some("bind".into()),
            },
        ];
        let (p, m) = match_program_types(
            &[
                "22ea7b37-1043-4d0d-b60d-cafa1c7b638e".into(),
                "BIND".into(),
                "{66e20687-9805-4458-a0db-38e220d31685}".into(),
            ],
            &found,
        );
        assert_eq!(p, vec!["22ea7b37-1043-4d0d-b60d-cafa1c7b638e", "BIND"]);
        assert_eq!(m, vec!["{66e20687-9805-4458-a0db-38e220d31685}"]);
    }
}
