//! Fixtures shared by harness's tests (a dev-dependency only).
//!
//! - `sshd`: a real OpenSSH server on loopback with its own host key and authorized key.
//! - `github`: a local HTTP server speaking the GitHub REST subset harness uses, with failure injection.
//! - `faulty`: a fault-injecting HTTP file server (resets, drops every N bytes, stalls, 5xx, slow drip).
//! - `guest`: a small Linux guest (kernel + busybox + sshd initramfs) built from Debian's packages, cached under `target/`.
//! - `gomod`: the fixture Go module used by the suites tests.
//! - `bounded`: runs a tool in its own process group with a deadline; `chromium`: headless
//!   Chromium for the HTML report's tests.

pub mod bench;
pub mod bounded;
pub mod chromium;
pub mod demo;
pub mod faulty;
pub mod github;
pub mod gomod;
pub mod guest;
pub mod ps1;
pub mod sshd;
pub mod standin;
pub mod wiremod;
