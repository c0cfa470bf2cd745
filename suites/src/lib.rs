//! Suite definitions, Go test execution through an executor, test2json parsing, results and reports.
//! Knows nothing of VMs.
pub mod config;
pub use config::{RunMode, SuiteConfig};
