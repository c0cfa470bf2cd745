//! Find, download, verify, cache and unpack eBPF for Windows builds (and extension builds).
pub mod config;
pub use config::BuildSourceConfig;
