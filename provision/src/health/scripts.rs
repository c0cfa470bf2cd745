//! The guest doctor's scripts, embedded at build time (one step each; JSON on stdout).

use crate::session::Script;

embedded_script!(WIN_BUILD, "windows", "health", "build.ps1");
embedded_script!(WIN_TEST_SIGNING, "windows", "health", "test_signing.ps1");
embedded_script!(WIN_SECURE_BOOT, "windows", "health", "secure_boot.ps1");
embedded_script!(WIN_HVCI, "windows", "health", "hvci.ps1");
embedded_script!(WIN_SERVICES, "windows", "health", "services.ps1");
embedded_script!(WIN_PATH, "windows", "health", "path.ps1");
embedded_script!(WIN_PROGRAM_TYPES, "windows", "health", "program_types.ps1");
embedded_script!(WIN_ETW_SESSIONS, "windows", "health", "etw_sessions.ps1");
embedded_script!(WIN_ETW_STOP, "windows", "health", "etw_stop.ps1");
embedded_script!(WIN_DISK, "windows", "health", "disk.ps1");

embedded_script!(LINUX_FACTS, "linux", "health", "facts.sh");

/// Every Windows health script.
pub const WINDOWS_ALL: &[Script] = &[
    WIN_BUILD,
    WIN_TEST_SIGNING,
    WIN_SECURE_BOOT,
    WIN_HVCI,
    WIN_SERVICES,
    WIN_PATH,
    WIN_PROGRAM_TYPES,
    WIN_ETW_SESSIONS,
    WIN_ETW_STOP,
    WIN_DISK,
];

/// Every Linux health script.
pub const LINUX_ALL: &[Script] = &[LINUX_FACTS];

#[cfg(test)]
mod tests {
    use super::*;
    use crate::session::script::table_checks::{assert_embedded, assert_sh_parses};

    #[test]
    fn every_script_file_is_embedded_and_documents_its_output() {
        assert_embedded("windows", "health", WINDOWS_ALL);
        assert_embedded("linux", "health", LINUX_ALL);
        for s in WINDOWS_ALL.iter().chain(LINUX_ALL) {
            assert!(
                s.source.starts_with(&format!("# {}:", s.name)),
                "{}",
                s.name
            );
        }
    }

    #[test]
    fn shell_scripts_parse_under_sh_n() {
        assert_sh_parses(LINUX_ALL);
    }
}
