//! The guest doctor's scripts, embedded at build time (one step each; JSON on stdout).

embedded_scripts!(
    "windows",
    "health",
    /// Every Windows health script.
    WINDOWS_ALL = [
        WIN_BUILD: "build.ps1",
        WIN_TEST_SIGNING: "test_signing.ps1",
        WIN_SECURE_BOOT: "secure_boot.ps1",
        WIN_HVCI: "hvci.ps1",
        WIN_SERVICES: "services.ps1",
        WIN_PATH: "path.ps1",
        WIN_PROGRAM_TYPES: "program_types.ps1",
        WIN_ETW_SESSIONS: "etw_sessions.ps1",
        WIN_ETW_STOP: "etw_stop.ps1",
        WIN_DISK: "disk.ps1",
    ]
);

embedded_scripts!(
    "linux",
    "health",
    /// Every Linux health script.
    LINUX_ALL = [LINUX_FACTS: "facts.sh"]
);

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
