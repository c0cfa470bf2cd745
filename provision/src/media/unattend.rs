//! `autounattend.xml` from the template in `provision/templates/`, plus the first-logon scripts
//! that go next to it on the answer media.

use std::path::Path;

use super::{MediaError, io_err};

/// The answer-file template (placeholders in double braces).
pub const TEMPLATE: &str = include_str!("../../templates/autounattend.xml");
/// Installs and configures the OpenSSH server at first logon.
pub const SETUP_OPENSSH_PS1: &str = include_str!("../../templates/windows/setup-openssh.ps1");
/// Base setup before the golden image is frozen (PsExec64, optional Go).
pub const BASE_SETUP_PS1: &str = include_str!("../../templates/windows/base-setup.ps1");
/// Bumped when the template or scripts change meaningfully: part of the golden image key.
pub const TEMPLATE_VERSION: &str = "1";

/// The base-setup script invoked with its parameters (guest paths of uploaded files) (pure).
pub fn base_setup_source(psexec: Option<&str>, go_zip: Option<&str>) -> String {
    let mut args = Vec::new();
    if let Some(p) = psexec {
        args.push(format!("-PsExec {}", crate::session::wrap::ps_quote(p)));
    }
    if let Some(g) = go_zip {
        args.push(format!("-GoZip {}", crate::session::wrap::ps_quote(g)));
    }
    format!("& {{\n{BASE_SETUP_PS1}\n}} {}", args.join(" "))
        .trim_end()
        .to_string()
}

/// virtio-win folders whose drivers Windows Setup may need (storage, network, balloon, panic).
const VIRTIO_DRIVERS: &[&str] = &[
    "viostor",
    "vioscsi",
    "NetKVM",
    "Balloon",
    "pvpanic",
    "vioserial",
];

/// What varies between installs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// Local administrator (autologon, SSH user).
    pub user: String,
    /// `/IMAGE/NAME` in install.wim, e.g. "Windows 11 Pro".
    pub edition: String,
    pub product_key: String,
    pub computer_name: String,
    /// Authorized keys for the administrator (OpenSSH public key lines).
    pub authorized_keys: String,
}

/// Escape text for XML element content and attribute values.
pub fn xml_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&apos;")
}

/// `PathAndCredentials` entries for the virtio-win drivers on any of the likely CD letters.
fn driver_paths() -> String {
    let mut out = String::new();
    let mut key = 1;
    for letter in ['D', 'E', 'F'] {
        for d in VIRTIO_DRIVERS {
            out.push_str(&format!(
                "        <PathAndCredentials wcm:action=\"add\" wcm:keyValue=\"{key}\">\n          <Path>{letter}:\\{d}\\w11\\amd64</Path>\n        </PathAndCredentials>\n"
            ));
            key += 1;
        }
    }
    out.trim_end().to_string()
}

/// Render the template; fails if a placeholder is unknown or left over.
pub fn render(template: &str, s: &Settings) -> Result<String, MediaError> {
    if s.user.is_empty()
        || s.user.len() > 20
        || s.user.contains([
            '"', '/', '\\', '[', ']', ':', ';', '|', '=', ',', '+', '*', '?', '<', '>', '@', ' ',
        ])
    {
        return Err(MediaError::Template(format!(
            "user {:?} is not a valid Windows account name (1-20 characters, no spaces or \"/\\[]:;|=,+*?<>@)",
            s.user
        )));
    }
    let subs = [
        ("{{USER}}", xml_escape(&s.user)),
        ("{{EDITION}}", xml_escape(&s.edition)),
        ("{{PRODUCT_KEY}}", xml_escape(&s.product_key)),
        ("{{COMPUTER_NAME}}", xml_escape(&s.computer_name)),
        ("{{VIRTIO_DRIVER_PATHS}}", driver_paths()),
    ];
    let mut out = template.to_string();
    for (k, v) in &subs {
        out = out.replace(k, v);
    }
    if let Some(pos) = out.find("{{") {
        let end = out[pos..]
            .find("}}")
            .map(|e| pos + e + 2)
            .unwrap_or(out.len().min(pos + 40));
        return Err(MediaError::Template(format!(
            "unknown placeholder {}",
            &out[pos..end]
        )));
    }
    Ok(out)
}

/// Write the answer media tree: `autounattend.xml`, `harness/setup-openssh.ps1`,
/// `harness/base-setup.ps1` and `harness/authorized_keys`.
pub fn write_media_tree(dir: &Path, s: &Settings) -> Result<(), MediaError> {
    let xml = render(TEMPLATE, s)?;
    let harness = dir.join("harness");
    std::fs::create_dir_all(&harness)
        .map_err(io_err("creating the answer media directory", &harness))?;
    let files = [
        (dir.join("autounattend.xml"), xml),
        (
            harness.join("setup-openssh.ps1"),
            SETUP_OPENSSH_PS1.to_string(),
        ),
        (harness.join("base-setup.ps1"), BASE_SETUP_PS1.to_string()),
        (
            harness.join("authorized_keys"),
            format!("{}\r\n", s.authorized_keys.trim()),
        ),
    ];
    for (path, text) in files {
        std::fs::write(&path, text).map_err(io_err("writing the answer media", &path))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use quick_xml::events::Event;

    fn settings() -> Settings {
        Settings {
            user: "harness".into(),
            edition: "Windows 11 Pro".into(),
            product_key: "VK7JG-NPHTM-C97JM-9MPGT-3V66T".into(),
            computer_name: "EFW-TEST".into(),
            authorized_keys: "ssh-ed25519 AAAAC3Nza test@host".into(),
        }
    }

    fn rendered() -> String {
        render(TEMPLATE, &settings()).unwrap()
    }

    /// Well-formed XML: every element closes; collect (path, text) pairs for assertions.
    fn elements(xml: &str) -> Vec<(String, String)> {
        let mut r = quick_xml::Reader::from_str(xml);
        let mut stack: Vec<(String, String)> = Vec::new();
        let mut out = Vec::new();
        loop {
            match r
                .read_event()
                .unwrap_or_else(|e| panic!("not well-formed at {}: {e}", r.buffer_position()))
            {
                Event::Start(e) => stack.push((
                    String::from_utf8_lossy(e.local_name().as_ref()).into_owned(),
                    String::new(),
                )),
                Event::End(_) => {
                    let path = stack
                        .iter()
                        .map(|(n, _)| n.as_str())
                        .collect::<Vec<_>>()
                        .join("/");
                    let (_, text) = stack.pop().expect("balanced");
                    if !text.trim().is_empty() {
                        out.push((path, text.trim().to_string()));
                    }
                }
                Event::Text(t) => {
                    if let Some(top) = stack.last_mut() {
                        top.1.push_str(&t.decode().unwrap());
                    }
                }
                Event::GeneralRef(g) => {
                    let name = g.decode().unwrap().into_owned();
                    let ch = match name.as_str() {
                        "amp" => "&",
                        "lt" => "<",
                        "gt" => ">",
                        "quot" => "\"",
                        "apos" => "'",
                        other => panic!("unexpected entity &{other};"),
                    };
                    if let Some(top) = stack.last_mut() {
                        top.1.push_str(ch);
                    }
                }
                Event::Eof => break,
                _ => {}
            }
        }
        assert!(stack.is_empty(), "unclosed elements: {stack:?}");
        out
    }

    fn has(xml: &str, path_suffix: &str, text: &str) -> bool {
        elements(xml)
            .iter()
            .any(|(p, t)| p.ends_with(path_suffix) && t == text)
    }

    fn has_command(xml: &str, needle: &str) -> bool {
        elements(xml).iter().any(|(p, t)| {
            (p.ends_with("/Path") || p.ends_with("/CommandLine")) && t.contains(needle)
        })
    }

    #[test]
    fn rendered_xml_is_well_formed_and_fully_substituted() {
        let x = rendered();
        assert!(!x.contains("{{"));
        assert!(!elements(&x).is_empty());
    }

    #[test]
    fn language_is_en_us() {
        let x = rendered();
        assert!(has(&x, "SetupUILanguage/UILanguage", "en-US"));
        for f in ["InputLocale", "SystemLocale", "UserLocale"] {
            assert!(
                has(
                    &x,
                    &format!("Microsoft-Windows-International-Core/{f}"),
                    "en-US"
                ) || has(&x, f, "en-US"),
                "{f}"
            );
        }
    }

    #[test]
    fn disk_is_gpt_with_efi_msr_and_windows() {
        let x = rendered();
        assert!(has(&x, "CreatePartition/Type", "EFI"));
        assert!(has(&x, "CreatePartition/Type", "MSR"));
        assert!(has(&x, "CreatePartition/Type", "Primary"));
        assert!(has(&x, "ModifyPartition/Format", "FAT32"));
        assert!(has(&x, "Disk/WillWipeDisk", "true"));
        assert!(has(&x, "InstallTo/PartitionID", "3"));
    }

    #[test]
    fn labconfig_bypasses_tpm_secure_boot_and_ram_checks() {
        let x = rendered();
        for check in ["BypassTPMCheck", "BypassSecureBootCheck", "BypassRAMCheck"] {
            assert!(
                has_command(
                    &x,
                    &format!(r"HKLM\SYSTEM\Setup\LabConfig /v {check} /t REG_DWORD /d 1")
                ),
                "{check}"
            );
        }
    }

    #[test]
    fn local_admin_with_autologon() {
        let x = rendered();
        assert!(has(&x, "LocalAccount/Name", "harness"));
        assert!(has(&x, "LocalAccount/Group", "Administrators"));
        assert!(has(&x, "AutoLogon/Enabled", "true"));
        assert!(has(&x, "AutoLogon/Username", "harness"));
    }

    #[test]
    fn defender_is_off() {
        let x = rendered();
        assert!(has_command(
            &x,
            r#""HKLM\SOFTWARE\Policies\Microsoft\Windows Defender" /v DisableAntiSpyware /t REG_DWORD /d 1"#
        ));
        assert!(has_command(
            &x,
            "DisableRealtimeMonitoring /t REG_DWORD /d 1"
        ));
    }

    #[test]
    fn test_signing_is_on() {
        assert!(has_command(&rendered(), "bcdedit.exe /set TESTSIGNING ON"));
    }

    #[test]
    fn openssh_server_is_installed_automatic_with_powershell_and_admin_keys() {
        let x = rendered();
        assert!(has_command(&x, r"harness\setup-openssh.ps1"));
        assert!(has_command(&x, r"-KeyFile %d:\harness\authorized_keys"));
        let ps = SETUP_OPENSSH_PS1;
        assert!(ps.contains("Add-WindowsCapability -Online"));
        assert!(ps.contains("Set-Service -Name sshd -StartupType Automatic"));
        assert!(
            ps.contains("-Name DefaultShell")
                && ps.contains(r"WindowsPowerShell\v1.0\powershell.exe")
        );
        assert!(ps.contains("administrators_authorized_keys"));
        assert!(ps.contains("/inheritance:r /grant 'Administrators:F' /grant 'SYSTEM:F'"));
    }

    #[test]
    fn inbound_ssh_is_allowed() {
        assert!(has_command(
            &rendered(),
            "advfirewall firewall add rule name=harness-ssh-in dir=in action=allow protocol=TCP localport=22"
        ));
    }

    #[test]
    fn crash_dumps_are_full_and_wer_dumps_go_to_c_dumps() {
        let x = rendered();
        assert!(has_command(
            &x,
            r"CrashControl /v CrashDumpEnabled /t REG_DWORD /d 1"
        ));
        assert!(has_command(
            &x,
            r#""HKLM\SOFTWARE\Microsoft\Windows\Windows Error Reporting\LocalDumps" /v DumpFolder /t REG_EXPAND_SZ /d C:\dumps"#
        ));
        assert!(has_command(
            &x,
            r#"LocalDumps" /v DumpType /t REG_DWORD /d 2"#
        ));
    }

    #[test]
    fn no_sleep() {
        let x = rendered();
        assert!(has_command(&x, "powercfg.exe /change standby-timeout-ac 0"));
        assert!(has_command(&x, "powercfg.exe /hibernate off"));
    }

    #[test]
    fn virtio_drivers_come_from_the_virtio_win_iso() {
        let x = rendered();
        for d in ["viostor", "NetKVM", "vioscsi"] {
            assert!(
                has(&x, "PathAndCredentials/Path", &format!(r"E:\{d}\w11\amd64")),
                "{d}"
            );
        }
    }

    #[test]
    fn values_are_escaped_and_bad_users_rejected() {
        let x = render(
            TEMPLATE,
            &Settings {
                edition: "A & <B>".into(),
                ..settings()
            },
        )
        .unwrap();
        assert!(has(&x, "MetaData/Value", "A & <B>"));
        for bad in ["", "a b", "x/y", "averyveryverylongusername"] {
            assert!(
                render(
                    TEMPLATE,
                    &Settings {
                        user: bad.into(),
                        ..settings()
                    }
                )
                .is_err(),
                "{bad:?}"
            );
        }
        assert!(
            render("<a>{{NOPE}}</a>", &settings())
                .unwrap_err()
                .to_string()
                .contains("{{NOPE}}")
        );
    }

    #[test]
    fn media_tree_has_the_answer_file_scripts_and_key() {
        let d = tempfile::tempdir().unwrap();
        write_media_tree(d.path(), &settings()).unwrap();
        for f in [
            "autounattend.xml",
            "harness/setup-openssh.ps1",
            "harness/base-setup.ps1",
        ] {
            assert!(d.path().join(f).is_file(), "{f}");
        }
        let keys = std::fs::read_to_string(d.path().join("harness/authorized_keys")).unwrap();
        assert_eq!(keys, "ssh-ed25519 AAAAC3Nza test@host\r\n");
    }
}
