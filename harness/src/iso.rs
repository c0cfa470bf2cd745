//! `[vm] iso = "url:https://…"`: CI keeps its Windows ISO on an internal mirror. It is downloaded
//! once through the artifacts client (resume, stall bound, Ctrl-C, progress), verified against
//! `[vm] iso_sha256`, and kept in `<cache>/isos/<sha256>.iso`; provision only ever sees a path.

use std::path::{Path, PathBuf};

use anyhow::Context as _;

use crate::context::Context;

/// What `[vm] iso` names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IsoSpec {
    Unset,
    Path(PathBuf),
    Url(String),
}

impl IsoSpec {
    /// Reads `[vm] iso` (pure).
    pub fn of(iso: Option<&Path>) -> IsoSpec {
        match iso {
            None => IsoSpec::Unset,
            Some(p) => match p.to_str().and_then(|s| s.strip_prefix("url:")) {
                Some(url) => IsoSpec::Url(url.trim().to_string()),
                None => IsoSpec::Path(p.to_path_buf()),
            },
        }
    }
}

/// The problem with an ISO URL and its digest, if any (pure; for `config check` and `up`).
pub fn url_problem(url: &str, sha256: &str) -> Option<String> {
    if !(url.starts_with("https://") || url.starts_with("http://")) {
        return Some(format!("`url:{url}` needs an http:// or https:// address"));
    }
    if !is_sha256(sha256) {
        return Some(
            "an ISO from a URL needs vm.iso_sha256 (64 hex digits, e.g. from `sha256sum` of the mirror's copy) so harness can verify what it downloads".into(),
        );
    }
    None
}

pub fn is_sha256(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// Where a verified ISO with this digest is kept.
pub fn cached_path(cache: &Path, sha256: &str) -> PathBuf {
    cache
        .join("isos")
        .join(format!("{}.iso", sha256.to_ascii_lowercase()))
}

/// The ISO path provision should use: a local path as it is, a URL downloaded and verified once.
pub fn resolve(ctx: &Context, iso: Option<&Path>) -> anyhow::Result<Option<PathBuf>> {
    let url = match IsoSpec::of(iso) {
        IsoSpec::Unset => return Ok(None),
        IsoSpec::Path(p) => return Ok(Some(p)),
        IsoSpec::Url(u) => u,
    };
    let sha = ctx.config.vm.iso_sha256.trim().to_ascii_lowercase();
    if let Some(why) = url_problem(&url, &sha) {
        anyhow::bail!("[vm] iso: {why}");
    }
    download(ctx, &url, &sha).map(Some)
}

/// Download `url` into the ISO cache unless a verified copy is there.
pub fn download(ctx: &Context, url: &str, sha: &str) -> anyhow::Result<PathBuf> {
    download_with(ctx.fetch_options(), url, sha)
}

/// [`download`] with the client's options given (the cache directory is `opts`'s).
pub fn download_with(
    opts: artifacts::FetchOptions,
    url: &str,
    sha: &str,
) -> anyhow::Result<PathBuf> {
    let dest = cached_path(&opts.cache_dir, sha);
    if dest.is_file() {
        return Ok(dest);
    }
    let dir = dest.parent().expect("isos dir");
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let part = dest.with_extension("iso.part");
    let fetcher = artifacts::Fetcher::new(opts)?;
    fetcher.download_to(url, &part, Some(sha)).with_context(|| {
        format!(
            "downloading the Windows ISO from {url} (a partial download stays in {} and resumes next time)",
            part.display()
        )
    })?;
    std::fs::rename(&part, &dest)
        .with_context(|| format!("moving the ISO to {}", dest.display()))?;
    Ok(dest)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn iso_specs() {
        assert_eq!(IsoSpec::of(None), IsoSpec::Unset);
        assert_eq!(
            IsoSpec::of(Some(Path::new("/isos/win.iso"))),
            IsoSpec::Path("/isos/win.iso".into())
        );
        assert_eq!(
            IsoSpec::of(Some(Path::new("url:https://m/win.iso"))),
            IsoSpec::Url("https://m/win.iso".into())
        );
        let sha = "a".repeat(64);
        assert_eq!(url_problem("https://m/win.iso", &sha), None);
        assert!(
            url_problem("https://m/win.iso", "")
                .unwrap()
                .contains("iso_sha256")
        );
        assert!(
            url_problem("ftp://m/win.iso", &sha)
                .unwrap()
                .contains("http")
        );
        assert_eq!(
            cached_path(Path::new("/c"), &"AB".repeat(32)),
            PathBuf::from(format!("/c/isos/{}.iso", "ab".repeat(32)))
        );
    }

    /// From a mirror that drops the connection every 256 KiB: resumed, verified, cached; the
    /// second time no request at all; a wrong digest leaves no ISO in the cache.
    #[test]
    fn an_iso_from_a_url_is_downloaded_once_resumed_and_verified() {
        use testsupport::faulty::{Fault, FaultyServer};
        let server = FaultyServer::start();
        let iso: Vec<u8> = (0..3u32 << 20).map(|i| (i % 251) as u8).collect();
        server.put("/win.iso", iso.clone());
        server.fault(Fault::DropAfter(256 << 10), Some(4));
        let cache = tempfile::tempdir().unwrap();
        let opts = || artifacts::FetchOptions::new(cache.path().to_path_buf());
        let sha = testsupport::github::sha256_hex(&iso);
        let url = server.url("/win.iso");
        let got = download_with(opts(), &url, &sha).unwrap();
        assert_eq!(got, cached_path(cache.path(), &sha));
        assert_eq!(std::fs::read(&got).unwrap(), iso);
        let hits = server.hits().len();
        assert!(hits >= 5, "resumed after each drop: {hits} requests");
        assert_eq!(download_with(opts(), &url, &sha).unwrap(), got);
        assert_eq!(server.hits().len(), hits, "the cached ISO needs no request");

        let wrong = "0".repeat(64);
        let err = format!("{:#}", download_with(opts(), &url, &wrong).unwrap_err());
        assert!(err.contains("sha256") && err.contains(&url), "{err}");
        assert!(!cached_path(cache.path(), &wrong).exists());
    }
}
