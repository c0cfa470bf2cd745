//! The install step scripts, embedded at build time (one step each; JSON on stdout).

use crate::session::Script;

embedded_script!(WIN_QUERY, "windows", "install", "query.ps1");
embedded_script!(WIN_PREPARE_DIR, "windows", "install", "prepare_dir.ps1");
embedded_script!(WIN_UNINSTALL, "windows", "install", "uninstall.ps1");
embedded_script!(WIN_INSTALL, "windows", "install", "install.ps1");
embedded_script!(WIN_ENSURE_PATH, "windows", "install", "ensure_path.ps1");
embedded_script!(WIN_VERIFY, "windows", "install", "verify.ps1");
embedded_script!(WIN_LIST_LOGS, "windows", "install", "list_logs.ps1");
embedded_script!(WIN_RECORD, "windows", "install", "record.ps1");
embedded_script!(WIN_FORGET, "windows", "install", "forget.ps1");
embedded_script!(WIN_EXT_QUERY, "windows", "install", "ext_query.ps1");
embedded_script!(WIN_EXT_REMOVE, "windows", "install", "ext_remove.ps1");
embedded_script!(WIN_EXT_CREATE, "windows", "install", "ext_create.ps1");
embedded_script!(WIN_EXT_START, "windows", "install", "ext_start.ps1");
embedded_script!(WIN_EXT_EXPORT, "windows", "install", "ext_export.ps1");
embedded_script!(
    WIN_EXT_PROGRAM_TYPES,
    "windows",
    "install",
    "ext_program_types.ps1"
);

embedded_script!(LINUX_QUERY, "linux", "install", "query.sh");
embedded_script!(LINUX_PREPARE_DIR, "linux", "install", "prepare_dir.sh");
embedded_script!(LINUX_RUN_SETUP, "linux", "install", "run_setup.sh");
embedded_script!(LINUX_RECORD, "linux", "install", "record.sh");
embedded_script!(LINUX_FORGET, "linux", "install", "forget.sh");

/// Every Windows step script (for the grammar check in tests).
pub const WINDOWS_ALL: &[Script] = &[
    WIN_QUERY,
    WIN_PREPARE_DIR,
    WIN_UNINSTALL,
    WIN_INSTALL,
    WIN_ENSURE_PATH,
    WIN_VERIFY,
    WIN_LIST_LOGS,
    WIN_RECORD,
    WIN_FORGET,
    WIN_EXT_QUERY,
    WIN_EXT_REMOVE,
    WIN_EXT_CREATE,
    WIN_EXT_START,
    WIN_EXT_EXPORT,
    WIN_EXT_PROGRAM_TYPES,
];

/// Every Linux step script.
pub const LINUX_ALL: &[Script] = &[
    LINUX_QUERY,
    LINUX_PREPARE_DIR,
    LINUX_RUN_SETUP,
    LINUX_RECORD,
    LINUX_FORGET,
];

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
