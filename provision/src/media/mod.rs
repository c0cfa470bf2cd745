//! Windows install media: the unattended answer file, the remastered install ISO that boots
//! without a key press, and the pinned virtio-win driver ISO.

pub mod remaster;
pub mod unattend;
pub mod virtio_win;

/// Why media could not be prepared.
#[derive(Debug, thiserror::Error)]
pub enum MediaError {
    #[error("the answer-file template is broken: {0}")]
    Template(String),
    #[error("{what} ({}): {source}", path.display())]
    Io {
        what: String,
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{0}")]
    Tool(String),
    #[error(
        "{} does not look like a Windows install ISO: {missing} is missing; pass an en-US Windows 11 ISO with --iso or [vm] iso",
        iso.display()
    )]
    NotWindowsIso {
        iso: std::path::PathBuf,
        missing: String,
    },
    #[error("virtio-win ISO: {0}")]
    VirtioWin(String),
}

pub(crate) fn io_err(
    what: &str,
    path: &std::path::Path,
) -> impl FnOnce(std::io::Error) -> MediaError {
    let what = what.to_string();
    let path = path.to_path_buf();
    move |source| MediaError::Io { what, path, source }
}
