//! VM backends, guest sessions over SSH, installing the efW runtime and extensions in a guest,
//! and the guest doctor (is the guest fit for ebpf-go's tests?).

/// Embeds `scripts/<os>/<area>/<file>` as a [`session::Script`] constant: the guest-side steps
/// are files (one step each, JSON on stdout), built into the binary.
macro_rules! embedded_script {
    ($ident:ident, "windows", $area:literal, $file:literal) => {
        #[doc = concat!("`scripts/windows/", $area, "/", $file, "`.")]
        pub const $ident: $crate::session::Script = $crate::session::Script::windows(
            concat!($area, "/", $file),
            include_str!(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/scripts/windows/",
                $area,
                "/",
                $file
            )),
        );
    };
    ($ident:ident, "linux", $area:literal, $file:literal) => {
        #[doc = concat!("`scripts/linux/", $area, "/", $file, "`.")]
        pub const $ident: $crate::session::Script = $crate::session::Script::linux(
            concat!($area, "/", $file),
            include_str!(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/scripts/linux/",
                $area,
                "/",
                $file
            )),
        );
    };
}

/// Embeds the scripts of `scripts/<os>/<area>/` (one [`embedded_script!`] constant each) and
/// `$all`, the table of them in that order (tests check it against the files on disk).
macro_rules! embedded_scripts {
    ($os:tt, $area:tt, $(#[$meta:meta])* $all:ident = [$($ident:ident: $file:literal),+ $(,)?]) => {
        $(embedded_script!($ident, $os, $area, $file);)+
        $(#[$meta])*
        pub const $all: &[$crate::session::Script] = &[$($ident),+];
    };
}

pub mod config;
pub mod debugger;
pub mod forensics;
pub mod health;
pub mod install;
pub mod session;
pub use config::{
    Accel, BackendKind, ConsoleKind, ExtensionConfig, InstallConfig, InstallMethod, VmConfig,
};
pub use hostproc::Cancel;
pub use session::GuestOs;
pub mod media;
pub mod vm;
