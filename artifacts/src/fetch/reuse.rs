//! Reusing what the cache holds: builds checked against their manifest before they are handed
//! out, and `url:` builds revalidated against the server.

use super::*;
use crate::download::Validators;
use crate::source::{url_address, url_digest};

impl Fetcher {
    /// The cached build `key`, if present and unchanged since it was unpacked. A changed one is
    /// discarded with a warning, so the caller fetches (and verifies) it again.
    pub(super) fn reuse(&self, key: &str) -> Option<Build> {
        let build = self.cache.get(key)?;
        let changes = match self.cache.changes(&build) {
            Ok(c) => c,
            Err(e) => vec![format!("it cannot be checked ({e})")],
        };
        if changes.is_empty() {
            return Some(build);
        }
        let shown: Vec<&str> = changes.iter().take(5).map(String::as_str).collect();
        let more = changes.len().saturating_sub(shown.len());
        let note = format!(
            "cached build {key} was modified after it was unpacked ({}{}); it was discarded and is fetched again",
            shown.join("; "),
            if more > 0 {
                format!("; {more} more")
            } else {
                String::new()
            }
        );
        tracing::warn!("{note}");
        self.notes.lock().expect("notes").push(note);
        if let Err(e) = self.cache.discard(key) {
            tracing::warn!("{e}");
        }
        None
    }

    /// The newest unchanged cached build answering `spec`.
    pub(super) fn newest_unchanged(
        &self,
        cfg: &BuildSourceConfig,
        spec: &SourceSpec,
    ) -> Result<Option<Build>> {
        let mut tried = std::collections::HashSet::new();
        while let Some(b) = self.cache.newest_for(cfg, spec)? {
            if !tried.insert(b.meta.key.clone()) {
                break; // could not be discarded: do not offer it again
            }
            if let Some(ok) = self.reuse(&b.meta.key) {
                return Ok(Some(ok));
            }
        }
        Ok(None)
    }

    /// `url:` builds are keyed by content. A cached one is revalidated with a conditional
    /// request (`If-None-Match`/`If-Modified-Since`), so new content at the same URL is seen; with
    /// `#sha256=<hex>` the download must have that digest, and a cached build with it needs no
    /// request at all.
    pub(super) fn url_build(
        &self,
        cfg: &BuildSourceConfig,
        spec: &SourceSpec,
        url_text: &str,
    ) -> Result<Build> {
        let address = url_address(url_text);
        let digest = url_digest(url_text);
        if let Some(d) = &digest
            && let Some(hit) = self.reuse(&format!("sha256-{}", &d[..16]))
            && hit.meta.sha256 == *d
        {
            return Ok(hit);
        }
        let url = parse_url(address, "the url: source")?;
        let previous = self.newest_unchanged(cfg, spec)?;
        let validators = previous.as_ref().map(|b| Validators {
            etag: b.meta.etag.clone(),
            last_modified: b.meta.last_modified.clone(),
        });
        let validators = validators.filter(|v| v.etag.is_some() || v.last_modified.is_some());
        let part = self
            .cache
            .part_path(&format!("url-{}", short_hash(address.as_bytes())))?;
        let target = Target {
            url: &url,
            accept: ACCEPT_BYTES,
            part: &part,
            what: address,
            repo: "",
        };
        let got = match self
            .http
            .download(&target, digest.as_deref(), validators.as_ref())?
        {
            Got::NotModified => {
                let hit = previous.expect("a conditional request has a cached build");
                tracing::info!(
                    "{address} is unchanged (HTTP 304): using cached build {}",
                    hit.meta.key
                );
                return Ok(hit);
            }
            Got::Fresh(got) => got,
        };
        let key = format!("sha256-{}", &got.sha256[..16]);
        if let Some(mut hit) = self.reuse(&key) {
            let _ = std::fs::remove_file(&part);
            self.cache.remember_url(&key, address, &got)?;
            hit.cached = false;
            return Ok(hit);
        }
        if let Some(old) = &previous {
            tracing::info!(
                "{address} has new content: replacing cached build {}",
                old.meta.key
            );
        }
        let meta = BuildMeta {
            size: got.size,
            sha256: got.sha256,
            url: Some(address.to_string()),
            etag: got.etag,
            last_modified: got.last_modified,
            ..BuildMeta::new(key, spec, cfg)
        };
        self.install_zip(cfg, meta, &part, true)
    }
}
