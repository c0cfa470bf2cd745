//! VM backends, guest sessions over SSH, installing the efW runtime and extensions in a guest,
//! and the guest doctor (is the guest fit for ebpf-go's tests?).
pub mod config;
pub mod health;
pub mod install;
pub mod session;
pub use config::{
    Accel, BackendKind, ConsoleKind, ExtensionConfig, InstallConfig, InstallMethod, VmConfig,
};
pub use session::GuestOs;
pub mod media;
pub mod vm;
