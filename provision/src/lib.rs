//! VM backends, guest sessions over SSH, and installing the efW runtime and extensions in a guest.
pub mod config;
pub mod install;
pub mod session;
pub use config::{
    Accel, BackendKind, ConsoleKind, ExtensionConfig, InstallConfig, InstallMethod, VmConfig,
};
pub use session::GuestOs;
pub mod media;
pub mod vm;
