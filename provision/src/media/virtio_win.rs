//! The virtio-win driver ISO: a pinned release, downloaded once into the cache and verified.
//!
//! The pinned release is the one cilium/ebpf's `setup.sh` uses. Its size is pinned; its SHA-256
//! is recorded on the first download (trust on first use) unless `[vm] virtio_win_iso` points at
//! a local copy. Set `HARNESS_VIRTIO_WIN_SHA256` to pin the digest explicitly.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::Duration;

use sha2::{Digest, Sha256};

use super::{MediaError, io_err};

pub const VERSION: &str = "0.1.266";
pub const URL: &str = "https://fedorapeople.org/groups/virt/virtio-win/direct-downloads/archive-virtio/virtio-win-0.1.266-1/virtio-win-0.1.266.iso";
/// Size in bytes of the pinned release.
pub const SIZE: u64 = 724_434_944;

/// SHA-256 of a file, streamed.
pub fn sha256_file(path: &Path) -> Result<String, MediaError> {
    let mut f = std::fs::File::open(path).map_err(io_err("reading", path))?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf).map_err(io_err("reading", path))?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(base16ct::lower::encode_string(&h.finalize()))
}

/// Verify a downloaded file: size must match, and the digest must match the expected one when
/// there is one (pure apart from the digest it is given).
pub fn verify(
    size: u64,
    digest: &str,
    expected_size: u64,
    expected_digest: Option<&str>,
) -> Result<(), MediaError> {
    if size != expected_size {
        return Err(MediaError::VirtioWin(format!(
            "size {size} bytes, expected {expected_size}: incomplete or wrong download"
        )));
    }
    if let Some(want) = expected_digest
        && !want.eq_ignore_ascii_case(digest)
    {
        return Err(MediaError::VirtioWin(format!(
            "SHA-256 {digest}, expected {want}: corrupted or tampered download"
        )));
    }
    Ok(())
}

/// The virtio-win ISO: the configured local file, else the cached pinned download.
pub fn ensure(configured: Option<&Path>, cache_dir: &Path) -> Result<PathBuf, MediaError> {
    if let Some(p) = configured {
        if !p.is_file() {
            return Err(MediaError::VirtioWin(format!(
                "[vm] virtio_win_iso {} does not exist",
                p.display()
            )));
        }
        return Ok(p.to_path_buf());
    }
    std::fs::create_dir_all(cache_dir)
        .map_err(io_err("creating the cache directory", cache_dir))?;
    let iso = cache_dir.join(format!("virtio-win-{VERSION}.iso"));
    let digest_file = cache_dir.join(format!("virtio-win-{VERSION}.iso.sha256"));
    let pinned = std::env::var("HARNESS_VIRTIO_WIN_SHA256").ok();
    let recorded = std::fs::read_to_string(&digest_file)
        .ok()
        .map(|s| s.trim().to_string());
    if iso.is_file() {
        let size = std::fs::metadata(&iso)
            .map_err(io_err("reading", &iso))?
            .len();
        let digest = sha256_file(&iso)?;
        verify(
            size,
            &digest,
            SIZE,
            pinned.as_deref().or(recorded.as_deref()),
        )?;
        return Ok(iso);
    }
    let partial = iso.with_extension("iso.partial");
    let args: Vec<&std::ffi::OsStr> = vec![
        "--fail".as_ref(),
        "--location".as_ref(),
        "--silent".as_ref(),
        "--show-error".as_ref(),
        "--continue-at".as_ref(),
        "-".as_ref(),
        "--connect-timeout".as_ref(),
        "30".as_ref(),
        "--output".as_ref(),
        partial.as_os_str(),
        URL.as_ref(),
    ];
    crate::vm::process::run_tool("curl", &args, Duration::from_secs(3600)).map_err(|e| {
        MediaError::VirtioWin(format!(
            "downloading {URL} failed: {e}; download it yourself and set [vm] virtio_win_iso"
        ))
    })?;
    let size = std::fs::metadata(&partial)
        .map_err(io_err("reading", &partial))?
        .len();
    let digest = sha256_file(&partial)?;
    verify(size, &digest, SIZE, pinned.as_deref())?;
    std::fs::write(&digest_file, format!("{digest}\n"))
        .map_err(io_err("recording the digest", &digest_file))?;
    std::fs::rename(&partial, &iso).map_err(io_err("storing the download", &iso))?;
    Ok(iso)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verification_checks_size_then_digest() {
        verify(SIZE, "ab", SIZE, None).unwrap();
        verify(SIZE, "AB", SIZE, Some("ab")).unwrap();
        assert!(
            verify(SIZE - 1, "ab", SIZE, None)
                .unwrap_err()
                .to_string()
                .contains("incomplete")
        );
        assert!(
            verify(SIZE, "ab", SIZE, Some("cd"))
                .unwrap_err()
                .to_string()
                .contains("tampered")
        );
    }

    #[test]
    fn digest_of_a_file() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("f");
        std::fs::write(&p, "abc").unwrap();
        assert_eq!(
            sha256_file(&p).unwrap(),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn a_configured_iso_must_exist() {
        let d = tempfile::tempdir().unwrap();
        assert!(ensure(Some(&d.path().join("nope.iso")), d.path()).is_err());
        let p = d.path().join("v.iso");
        std::fs::write(&p, "x").unwrap();
        assert_eq!(ensure(Some(&p), d.path()).unwrap(), p);
    }
}
