//! The install step scripts, embedded at build time (one step each; JSON on stdout).

embedded_scripts!(
    "windows",
    "install",
    /// Every Windows step script (for the grammar check in tests).
    WINDOWS_ALL = [
        WIN_QUERY: "query.ps1",
        WIN_PREPARE_DIR: "prepare_dir.ps1",
        WIN_UNINSTALL: "uninstall.ps1",
        WIN_INSTALL: "install.ps1",
        WIN_ENSURE_PATH: "ensure_path.ps1",
        WIN_VERIFY: "verify.ps1",
        WIN_LIST_LOGS: "list_logs.ps1",
        WIN_RECORD: "record.ps1",
        WIN_FORGET: "forget.ps1",
        WIN_EXT_QUERY: "ext_query.ps1",
        WIN_EXT_REMOVE: "ext_remove.ps1",
        WIN_EXT_CREATE: "ext_create.ps1",
        WIN_EXT_START: "ext_start.ps1",
        WIN_EXT_EXPORT: "ext_export.ps1",
        WIN_EXT_PROGRAM_TYPES: "ext_program_types.ps1",
    ]
);

embedded_scripts!(
    "linux",
    "install",
    /// Every Linux step script.
    LINUX_ALL = [
        LINUX_QUERY: "query.sh",
        LINUX_PREPARE_DIR: "prepare_dir.sh",
        LINUX_RUN_SETUP: "run_setup.sh",
        LINUX_RECORD: "record.sh",
        LINUX_FORGET: "forget.sh",
    ]
);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::session::script::table_checks::{assert_embedded, assert_sh_parses};

    #[test]
    fn every_script_file_is_embedded_and_documents_its_output() {
        assert_embedded("windows", "install", WINDOWS_ALL);
        assert_embedded("linux", "install", LINUX_ALL);
    }

    #[test]
    fn shell_scripts_parse_under_sh_n() {
        assert_sh_parses(LINUX_ALL);
    }
}
